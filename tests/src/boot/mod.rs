//! Booting baked images in QEMU (the `PIIMG_E2E=1` tests, `scripts/e2e-boot`): the bootable
//! Debian base and the guest binaries ([`guest`]), a cluster folder wired for the VM
//! ([`cluster`]), `piimg watch` on the host ([`watch`]), the VM itself ([`vm`]) and what a user
//! checks on a booted node ([`verdict`]).

pub mod cluster;
pub mod guest;
pub mod verdict;
pub mod vm;
pub mod watch;

use std::path::PathBuf;

/// Where the boot test `test` keeps what a person needs after a failure (serial logs, the
/// watch's output, the SSD files): `<workspace>/target/e2e-boot/TEST/`, emptied when the test
/// starts.
pub fn logs_dir(test: &str) -> PathBuf {
    let dir = crate::workspace_root()
        .join("target")
        .join("e2e-boot")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("{}: cannot create: {e}", dir.display()));
    dir
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
