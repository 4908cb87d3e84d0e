//! Finding the `piimg` binary under test from this crate, where cargo does not provide
//! `CARGO_BIN_EXE_piimg` (that variable exists only in the piimg crate's own tests).

use crate::cmd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The `piimg` binary of the same build profile as the running test, rebuilt if stale.
///
/// `$PIIMG_BIN` overrides the search (e.g. to test an installed or release binary). Otherwise
/// the binary sits next to this test's `deps/` directory (`<target>/<profile>/piimg`), and the
/// first call per process runs `cargo build -p piimg --bin piimg` for that profile and target
/// directory, which is a no-op when it is up to date.
pub fn piimg_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(locate_and_build).clone()
}

fn locate_and_build() -> PathBuf {
    if let Some(bin) = std::env::var_os("PIIMG_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "PIIMG_BIN={} is not a file", bin.display());
        return bin;
    }
    let exe = std::env::current_exe()
        .unwrap_or_else(|e| panic!("cannot tell where the running test binary is: {e}"));
    let profile_dir = profile_dir(&exe).unwrap_or_else(|| {
        panic!(
            "{}: not under <target>/<profile>/deps; set PIIMG_BIN to the piimg binary",
            exe.display()
        )
    });
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_string();
    let target_dir = profile_dir.parent().unwrap_or(&profile_dir).to_path_buf();
    let mut build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    build
        .current_dir(crate::fixture::workspace_root())
        .env("CARGO_TARGET_DIR", &target_dir)
        .args([
            "build",
            "--quiet",
            "-p",
            "piimg",
            "--bin",
            "piimg",
            "--profile",
        ])
        .arg(if profile == "debug" {
            "dev"
        } else {
            profile.as_str()
        });
    cmd::success(&mut build);
    let bin = profile_dir.join(format!("piimg{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{}: missing after cargo build -p piimg",
        bin.display()
    );
    bin
}

/// The cargo target directory the running test was built in (`<target>` of
/// `<target>/<profile>/deps/<test>`), so helpers build more binaries beside it.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe()
        .unwrap_or_else(|e| panic!("cannot tell where the running test binary is: {e}"));
    profile_dir(&exe)
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| panic!("{}: not under <target>/<profile>/deps", exe.display()))
}

/// `<target>/<profile>` for a test binary at `<target>/<profile>/deps/<name>`.
fn profile_dir(exe: &Path) -> Option<PathBuf> {
    let deps = exe.parent()?;
    if deps.file_name()? != "deps" {
        return None;
    }
    Some(deps.parent()?.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::profile_dir;
    use std::path::Path;

    #[test]
    fn profile_dir_is_the_parent_of_deps() {
        assert_eq!(
            profile_dir(Path::new("/w/target/debug/deps/fixtures-0123")).as_deref(),
            Some(Path::new("/w/target/debug"))
        );
        assert_eq!(profile_dir(Path::new("/w/target/debug/fixtures")), None);
    }
}
