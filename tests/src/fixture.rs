//! Look-alike base images built by `scripts/mkfixture` and cached between test runs.
//!
//! Real Raspberry Pi OS and Ubuntu images cannot be downloaded in tests, so each kind is built
//! rootless by the script, once per version of the script: the cache name carries the script's
//! digest, so editing the script rebuilds every fixture and nothing stale is ever reused.

use crate::cmd;
use crate::digest::sha256_file;
use fd_lock::RwLock;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// The `SOURCE_DATE_EPOCH` every fixture is built with, so the cache key (the script's digest)
/// fully determines the image bytes whatever the caller's environment says.
pub const FIXTURE_EPOCH: &str = "1700000000";

/// Which real base image a fixture imitates (see `scripts/fixtures/INDEX.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Raspberry Pi OS Lite arm64, bookworm: MBR, `bootfs` FAT32 + `rootfs` ext4, dphys-swapfile.
    RaspiosBookworm,
    /// Raspberry Pi OS Lite arm64, trixie: as bookworm, with rpi-swap and a cloud-init seed.
    RaspiosTrixie,
    /// Ubuntu Server 24.04 for Raspberry Pi: MBR, `system-boot` FAT32 + `writable` ext4.
    UbuntuRaspi,
    /// Ubuntu 24.04 amd64: GPT with BIOS boot, ESP `UEFI`, `/boot` `BOOT`, root last.
    UbuntuAmd64,
}

impl Kind {
    /// Every kind, so a test can run one scenario on all of them.
    pub const ALL: [Kind; 4] = [
        Kind::RaspiosBookworm,
        Kind::RaspiosTrixie,
        Kind::UbuntuRaspi,
        Kind::UbuntuAmd64,
    ];

    /// The KIND argument of `scripts/mkfixture`, also the cache file's prefix.
    pub fn name(self) -> &'static str {
        match self {
            Kind::RaspiosBookworm => "raspios-bookworm",
            Kind::RaspiosTrixie => "raspios-trixie",
            Kind::UbuntuRaspi => "ubuntu-raspi",
            Kind::UbuntuAmd64 => "ubuntu-amd64",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The fixture script, `<workspace>/scripts/mkfixture`.
pub fn mkfixture_script() -> PathBuf {
    workspace_root().join("scripts").join("mkfixture")
}

/// Where fixtures are cached: `$PIIMG_FIXTURE_DIR`, else `<workspace>/target/fixtures`.
pub fn fixture_dir() -> PathBuf {
    match std::env::var_os("PIIMG_FIXTURE_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("target").join("fixtures"),
    }
}

/// The cached image for `kind`, built by `scripts/mkfixture` on first use.
///
/// Treat it as read-only (use [`copy_fixture`] to get one to change). Safe when many threads
/// and processes ask at once: one builds under an exclusive lock into a temporary name and
/// renames it into place, the others wait on the lock and then find the file.
/// Panics with the script's output if the build fails.
pub fn fixture(kind: Kind) -> PathBuf {
    fixture_in(kind, &fixture_dir())
}

/// [`fixture`] with the cache in `dir` instead of [`fixture_dir`].
pub fn fixture_in(kind: Kind, dir: &Path) -> PathBuf {
    let script = mkfixture_script();
    let digest = sha256_file(&script);
    build_cached(kind, &script, dir, &format!("{kind}-{}.img", &digest[..12]))
}

fn build_cached(kind: Kind, script: &Path, dir: &Path, name: &str) -> PathBuf {
    let image = dir.join(name);
    if image.is_file() {
        return image;
    }
    fs::create_dir_all(dir)
        .unwrap_or_else(|e| panic!("{}: cannot create the fixture cache: {e}", dir.display()));
    let lock_path = dir.join(format!("{name}.lock"));
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("{}: cannot open lock file: {e}", lock_path.display()));
    let mut lock = RwLock::new(lock_file);
    let _guard = lock
        .write()
        .unwrap_or_else(|e| panic!("{}: cannot lock: {e}", lock_path.display()));
    if image.is_file() {
        return image;
    }
    let tmp = dir.join(format!(".{name}.tmp-{}", unique_suffix()));
    build(kind, script, &tmp);
    fs::rename(&tmp, &image).unwrap_or_else(|e| {
        panic!(
            "cannot rename {} to {}: {e}",
            tmp.display(),
            image.display()
        )
    });
    image
}

/// Builds `kind` into `out` with the script, whatever is cached (for reproducibility tests).
pub fn build_fixture_to(kind: Kind, out: &Path) {
    build(kind, &mkfixture_script(), out);
}

fn build(kind: Kind, script: &Path, out: &Path) {
    let mut command = Command::new("bash");
    command
        .arg(script)
        .arg(kind.name())
        .arg(out)
        .env("SOURCE_DATE_EPOCH", FIXTURE_EPOCH);
    let result = cmd::output(&mut command);
    if !result.status.success() {
        let _ = fs::remove_file(out);
        panic!(
            "building fixture {kind} failed\n{}",
            cmd::describe(&command, &result)
        );
    }
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A sparse copy of the cached fixture in `dir`, named `<kind>.img`, for a test to change.
pub fn copy_fixture(kind: Kind, dir: &Path) -> PathBuf {
    let src = fixture(kind);
    let dst = dir.join(format!("{kind}.img"));
    cmd::success(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(&src)
            .arg(&dst),
    );
    dst
}
