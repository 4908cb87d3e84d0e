//! `piimg inspect --json` of an image, and where its root filesystem starts: what tests read
//! an image back through.

use std::path::Path;
use std::process::Command;

/// `piimg inspect --json IMAGE`, asserting success.
pub fn inspect_json(image: &Path) -> serde_json::Value {
    let out = Command::new(crate::piimg_bin())
        .args(["inspect", "--json"])
        .arg(image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Byte offset of the root partition `piimg inspect` reports (`report` is its JSON).
pub fn root_start(image: &Path, report: &serde_json::Value) -> u64 {
    let n = report["root_partition"].as_u64().unwrap();
    crate::partitions(image)
        .iter()
        .find(|p| u64::from(p.number) == n)
        .unwrap()
        .start
}

/// Byte offset of `image`'s root partition, as `piimg inspect` finds it.
pub fn image_root_start(image: &Path) -> u64 {
    root_start(image, &inspect_json(image))
}

/// Runs `debugfs -w -R REQUEST` on the ext4 at `start` in `image`, asserting success.
pub fn debugfs_write(image: &Path, start: u64, request: &str) {
    let out = Command::new("debugfs")
        .arg("-w")
        .arg("-R")
        .arg(request)
        .arg(crate::offset_spec(image, start))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "debugfs {request}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
