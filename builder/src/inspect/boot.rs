//! The boot partition's kernel command line and kernel choice.

use super::BootInfo;
use crate::disk::{self, Partition};
use crate::fs::fat::BootFs;
use crate::locate::rootfs::Unreadable;
use std::path::Path;

/// Ubuntu 25.10+ boots through `autoboot.txt` with A/B folders; the live one is `current/`.
const AB_CMDLINE: &str = "current/cmdline.txt";

/// Reads the command line of the boot partition `part`. Bases without `cmdline.txt` (Ubuntu
/// amd64, whose parameters live in GRUB; its ESP is the boot partition there) give `None`.
/// What cannot be read is returned as [`Unreadable`] (`p1` for the partition, `p1:cmdline.txt`
/// for the file), for the report to mark rather than to fail on.
pub fn find(raw: &Path, part: &Partition) -> Result<Option<BootInfo>, Unreadable> {
    let whole = |e: &dyn std::fmt::Display| Unreadable {
        path: format!("p{}", part.number),
        error: e.to_string(),
    };
    let view = disk::open_partition(raw, part, false).map_err(|e| whole(&e))?;
    // Inspect never writes; the epoch only matters for writes.
    let fat = BootFs::open(view, 0).map_err(|e| whole(&e))?;
    let cmdline_path = if fat.exists("autoboot.txt") && fat.exists(AB_CMDLINE) {
        AB_CMDLINE
    } else if fat.exists("cmdline.txt") {
        "cmdline.txt"
    } else {
        return Ok(None);
    };
    let cmdline = fat.read_file(cmdline_path).map_err(|e| Unreadable {
        path: format!("p{}:{cmdline_path}", part.number),
        error: e.to_string(),
    })?;
    let config_dir = cmdline_path.strip_suffix("cmdline.txt").unwrap_or("");
    let kernel = fat
        .read_file(&format!("{config_dir}config.txt"))
        .ok()
        .and_then(|c| kernel_setting(&String::from_utf8_lossy(&c)));
    Ok(Some(BootInfo {
        partition: part.number,
        cmdline_path: cmdline_path.to_string(),
        cmdline: String::from_utf8_lossy(&cmdline).trim().to_string(),
        kernel,
    }))
}

/// The last `kernel=` line of config.txt outside conditional sections other than `[all]`/`[pi5]`.
fn kernel_setting(config: &str) -> Option<String> {
    let mut section = "all".to_string();
    let mut kernel = None;
    for line in config.lines().map(str::trim) {
        if line.starts_with('[') && line.ends_with(']') {
            section = line[1..line.len() - 1].to_ascii_lowercase();
        } else if section == "all" || section == "pi5" {
            if let Some(v) = line.strip_prefix("kernel=") {
                kernel = Some(v.trim().to_string());
            }
        }
    }
    kernel
}

#[cfg(test)]
mod tests {
    use super::kernel_setting;

    #[test]
    fn kernel_from_all_or_pi5_sections_only() {
        let cfg = "[pi4]\nkernel=kernel7l.img\n[all]\narm_64bit=1\n[pi5]\nkernel=kernel8.img\n";
        assert_eq!(kernel_setting(cfg).as_deref(), Some("kernel8.img"));
        assert_eq!(kernel_setting("[pi4]\nkernel=x.img\n"), None);
    }
}
