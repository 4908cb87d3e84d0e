//! Test seam: `PIIMG_FIRSTBOOT_CRASH_AFTER=<point>` kills the process with SIGKILL right after
//! that point, as a power cut would, so tests can prove the next run resumes.
//! Points: `partition`, `format`, `grow-table` (root partition table written, filesystem not
//! yet grown), and after each step by its name (`grow-root`, `storage`, `k3s-data`,
//! `join`, `prune`, `report`, …).

/// The environment variable naming the crash point.
pub const CRASH_ENV: &str = "PIIMG_FIRSTBOOT_CRASH_AFTER";

/// Dies here if the crash point is `name`.
pub fn point(name: &str) {
    if std::env::var(CRASH_ENV).is_ok_and(|v| v == name) {
        tracing::warn!(point = name, "test seam: killing myself");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        std::process::abort();
    }
}
