//! Uses of a disk that the mount table does not show: a partition (or the whole disk) that is
//! active swap, and one held by a stacked device (LVM, dm-crypt, md RAID, bcache). Overwriting
//! either corrupts a live system as surely as overwriting a mounted filesystem. Each refusal
//! names the device, what uses it and the command that releases it; `--force` never overrides
//! these (it only allows non-removable disks).

use super::error::FlashError;
use super::kernel_names::Member;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// Why the disk must not be written when one of `devices` is listed in `swaps` (the
/// `/proc/swaps` format), or `None`. A missing swaps file means the kernel has no swap.
pub(super) fn active_swap(devices: &[Member], swaps: &Path) -> Result<Option<String>, FlashError> {
    let text = match std::fs::read_to_string(swaps) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(FlashError::Read {
                path: swaps.to_path_buf(),
                source: e,
            })
        }
    };
    for area in parse_swaps(&text) {
        if let Some(member) = devices.iter().find(|m| is_same_device(&area, m)) {
            return Ok(Some(format!(
                "{} is active swap ({area} in {}); turn it off first: sudo swapoff {area} (and drop it from /etc/fstab if it is listed there, or it comes back at the next boot)",
                member.label(),
                swaps.display()
            )));
        }
    }
    Ok(None)
}

/// The swap area names of `/proc/swaps` (first column, after the header; spaces as `\040`).
fn parse_swaps(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .map(|name| name.replace("\\040", " "))
        .collect()
}

/// Whether the swap area `area` is `member`: by device number when `area` is a device node
/// here, else by kernel name (`/dev/mapper/x` resolves to `/dev/dm-N`; the name is what sysfs
/// uses too, which is also how stand-in trees are matched).
fn is_same_device(area: &str, member: &Member) -> bool {
    let path = Path::new(area);
    if let (Ok(meta), Some(devno)) = (std::fs::metadata(path), member.devno) {
        if meta.file_type().is_block_device() {
            return super::kernel_names::DevNo::from_rdev(meta.rdev()) == devno;
        }
        // A swap file: it lives on a filesystem, which the mount check covers.
        return false;
    }
    let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    resolved.starts_with("/dev")
        && resolved
            .file_name()
            .is_some_and(|n| n.to_string_lossy() == member.name)
}

/// Why the disk must not be written when the disk or a partition has holders (sysfs
/// `holders/`: device-mapper, md and bcache devices built on it), or `None`.
pub(super) fn held(devices: &[Member]) -> Option<String> {
    for member in devices {
        let Ok(entries) = std::fs::read_dir(member.dir.join("holders")) else {
            continue;
        };
        let mut holders: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        holders.sort();
        if let Some(name) = holders.first() {
            let holder_dir = std::fs::canonicalize(member.dir.join("holders").join(name))
                .unwrap_or_else(|_| member.dir.join("holders").join(name));
            let (what, release) = describe_holder(name, &holder_dir);
            return Some(format!(
                "{} is in use by {what} (/dev/{name}); release it first: {release} (stop or unmount whatever is on top of it before; lsblk /dev/{} shows the whole stack)",
                member.label(),
                devices.first().map(|d| d.name.as_str()).unwrap_or(&member.name),
            ));
        }
    }
    None
}

/// What a holder is and the command that releases it, from its sysfs folder: device-mapper
/// devices say their owner in `dm/uuid` (`LVM-…`, `CRYPT-…`), md arrays have an `md/` folder.
fn describe_holder(name: &str, dir: &Path) -> (String, String) {
    let read = |rel: &str| {
        std::fs::read_to_string(dir.join(rel))
            .map(|s| s.trim().to_string())
            .ok()
    };
    if dir.join("dm").is_dir() {
        let uuid = read("dm/uuid").unwrap_or_default();
        let dm_name = read("dm/name").unwrap_or_else(|| name.to_string());
        if uuid.starts_with("LVM-") {
            let vg = lvm_volume_group(&dm_name);
            return (
                format!("LVM logical volume {dm_name} of volume group {vg}"),
                format!("sudo vgchange -an {vg}"),
            );
        }
        if uuid.starts_with("CRYPT-") {
            return (
                format!("the dm-crypt (LUKS) mapping {dm_name}"),
                format!("sudo cryptsetup close {dm_name}"),
            );
        }
        return (
            format!("the device-mapper device {dm_name}"),
            format!("sudo dmsetup remove {dm_name}"),
        );
    }
    if dir.join("md").is_dir() || name.starts_with("md") {
        return (
            format!("the RAID array {name}"),
            format!("sudo mdadm --stop /dev/{name}"),
        );
    }
    if dir.join("bcache").is_dir() || name.starts_with("bcache") {
        return (
            format!("the bcache device {name}"),
            format!("echo 1 | sudo tee /sys/block/{name}/bcache/stop"),
        );
    }
    (
        format!("the stacked device {name}"),
        format!("remove /dev/{name} with the tool that created it"),
    )
}

/// The volume group of an LVM device-mapper name `vg-lv`, where LVM doubles each `-` inside
/// the names themselves (`my--vg-root` is `my-vg`/`root`).
fn lvm_volume_group(dm_name: &str) -> String {
    let bytes = dm_name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'-' {
            if bytes.get(i + 1) == Some(&b'-') {
                i += 2;
                continue;
            }
            return dm_name[..i].replace("--", "-");
        }
        i += 1;
    }
    dm_name.replace("--", "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_group_from_dm_name() {
        assert_eq!(lvm_volume_group("vg0-root"), "vg0");
        assert_eq!(lvm_volume_group("my--vg-my--lv"), "my-vg");
        assert_eq!(lvm_volume_group("plain"), "plain");
    }

    #[test]
    fn swaps_columns() {
        let text = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
                    /dev/sda3                               partition\t8388604\t\t0\t\t-2\n\
                    /my\\040swap                              file\t\t1048572\t\t0\t\t-3\n";
        assert_eq!(parse_swaps(text), vec!["/dev/sda3", "/my swap"]);
    }
}
