//! What the firstboot crate's integration tests share.

use std::process::Command;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_piimg-firstboot");

/// The binary under test. When these tests are cross-built for arm64 and run under
/// `qemu-aarch64-static` (scripts/test-firstboot-arm64), the host cannot exec the arm64 binary
/// itself (no binfmt_misc needed or assumed), so it runs through the same cargo runner.
pub fn firstboot_command() -> Command {
    let runner_var = if cfg!(target_arch = "aarch64") {
        "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER"
    } else {
        return Command::new(BIN);
    };
    match std::env::var(runner_var) {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut cmd = Command::new(runner.trim());
            cmd.arg(BIN);
            cmd
        }
        _ => Command::new(BIN),
    }
}
