//! What runs inside the VM: the bootable Debian base (made by `scripts/e2e-base`, cached by
//! the script's digest under `target/e2e-base/`) and static x86_64 musl builds of
//! `piimg-firstboot` and the stand-in k3s (`tests/k3s-stand-in`).

use crate::cmd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The musl target the guest binaries are built for (static: the guest's libc does not matter).
pub const GUEST_TARGET: &str = "x86_64-unknown-linux-musl";

/// A bootable base and what a direct kernel boot needs.
#[derive(Debug, Clone)]
pub struct Base {
    /// The disk image (GPT, ESP, ext4 root labelled [`ROOT_LABEL`] last).
    pub image: PathBuf,
    /// Its kernel.
    pub kernel: PathBuf,
    /// Its initramfs.
    pub initrd: PathBuf,
    /// The image's SHA-256 (what the test catalogue pins).
    pub sha256: String,
}

/// The root filesystem's label, for `root=LABEL=…`.
pub const ROOT_LABEL: &str = "e2e-rootfs";

/// The base, built on first use (about a minute with a Debian mirror; needs mmdebstrap).
/// Boot tests running at the same time share one build.
pub fn base() -> Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(build_base).clone()
}

fn build_base() -> Base {
    let script = crate::workspace_root().join("scripts").join("e2e-base");
    let cache = crate::workspace_root().join("target").join("e2e-base");
    let out = cmd::success(Command::new(&script).arg(&cache));
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let sha256 = std::fs::read_to_string(dir.join("base.sha256"))
        .unwrap_or_else(|e| panic!("{}: no base.sha256: {e}", dir.display()))
        .trim()
        .to_string();
    Base {
        image: dir.join("base.img"),
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        sha256,
    }
}

/// Builds `bin` of `package` for [`GUEST_TARGET`] in the running test's target directory;
/// returns its path. piimg-firstboot with `release-firstboot`, as nodes get it; the stand-in
/// k3s with the quicker `e2e-stand-in` profile (test code).
pub fn binary(package: &str, bin: &str) -> PathBuf {
    let profile = if package == "piimg-k3s-stand-in" {
        "e2e-stand-in"
    } else {
        "release-firstboot"
    };
    // One cargo at a time from this process (cargo would wait on its own lock anyway).
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    let target_dir = crate::bins::target_dir();
    let mut build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    build
        .current_dir(crate::workspace_root())
        .env("CARGO_TARGET_DIR", &target_dir)
        .args(["build", "--quiet", "--profile", profile, "--target"])
        .arg(GUEST_TARGET)
        .args(["-p", package, "--bin", bin]);
    cmd::success(&mut build);
    let path = target_dir.join(GUEST_TARGET).join(profile).join(bin);
    assert!(
        path.is_file(),
        "{}: missing after cargo build",
        path.display()
    );
    path
}
