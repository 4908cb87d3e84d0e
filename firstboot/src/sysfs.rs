//! Real device discovery: whole disks from `/sys/block`, their by-id names, serials, transports,
//! and which one holds the root filesystem (from `/proc/self/mountinfo`).

use crate::machine::{BlockTarget, Disk, MountedAt, RootDevice, RootPartition, SystemError};
use std::path::{Path, PathBuf};

const SKIP_PREFIXES: &[&str] = &["loop", "ram", "zram", "sr", "fd", "dm-", "md", "nbd"];

fn read_trim(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Every whole disk in `/sys/block`, without virtual devices and eMMC boot areas.
pub fn disks() -> Result<Vec<Disk>, SystemError> {
    let sys_block = Path::new("/sys/block");
    let entries = std::fs::read_dir(sys_block).map_err(|source| SystemError::Io {
        path: sys_block.into(),
        what: "listing block devices".into(),
        source,
    })?;
    let root = root_dev();
    let by_id = by_id_names();
    let mut disks = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if SKIP_PREFIXES.iter().any(|p| name.starts_with(p))
            || name.contains("boot")
            || name.contains("rpmb")
        {
            continue;
        }
        let dir = sys_block.join(&name);
        let sectors: u64 = read_trim(&dir.join("size"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if sectors == 0 {
            continue;
        }
        let dev = PathBuf::from("/dev").join(&name);
        let real = std::fs::canonicalize(&dir).unwrap_or_default();
        let real_s = real.to_string_lossy();
        let transport = if real_s.contains("/usb") {
            Some("usb")
        } else if name.starts_with("nvme") {
            Some("nvme")
        } else if name.starts_with("mmcblk") {
            Some("mmc")
        } else if real_s.contains("/ata") {
            Some("sata")
        } else if name.starts_with("vd") {
            Some("virtio")
        } else {
            None
        };
        let holds_root = root.as_ref().is_some_and(|r| {
            let mut devs = vec![read_trim(&dir.join("dev")).unwrap_or_default()];
            if let Ok(parts) = std::fs::read_dir(&dir) {
                for p in parts.flatten() {
                    if p.path().join("partition").exists() {
                        devs.push(read_trim(&p.path().join("dev")).unwrap_or_default());
                    }
                }
            }
            devs.iter().any(|d| d == r)
        });
        disks.push(Disk {
            ids: by_id
                .iter()
                .filter(|(_, target)| *target == dev)
                .map(|(id, _)| id.clone())
                .collect(),
            serial: serial_of(&dir),
            size: sectors * 512,
            transport: transport.map(str::to_owned),
            holds_root,
            sector_size: read_trim(&dir.join("queue/logical_block_size"))
                .and_then(|s| s.parse().ok())
                .unwrap_or(512),
            path: dev,
        });
    }
    disks.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(disks)
}

/// The serial: the nearest `serial` file walking up from the device (USB bridges keep it on
/// the USB device, NVMe on the controller).
fn serial_of(dir: &Path) -> Option<String> {
    let mut cur = std::fs::canonicalize(dir.join("device")).ok()?;
    for _ in 0..8 {
        if let Some(s) = read_trim(&cur.join("serial")).filter(|s| !s.is_empty()) {
            return Some(s);
        }
        if !cur.pop() {
            break;
        }
    }
    None
}

fn by_id_names() -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir("/dev/disk/by-id") else {
        return Vec::new();
    };
    let mut names: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains("-part") {
                return None;
            }
            Some((name, std::fs::canonicalize(e.path()).ok()?))
        })
        .collect();
    names.sort();
    names
}

/// `major:minor` of the filesystem mounted at `/`.
fn root_dev() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(' ').collect();
        (f.get(4) == Some(&"/")).then(|| f.get(2).map(|s| s.to_string()))?
    })
}

fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn read_u64(path: &Path) -> Result<u64, SystemError> {
    read_trim(path)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| SystemError::Other(format!("{}: cannot read a number", path.display())))
}

/// The block device `/` is mounted from: its `major:minor` from `/proc/self/mountinfo`, then
/// `/sys/dev/block/M:m`. A partition there has `partition` (its number), `start` and `size`
/// (in 512-byte sectors whatever the disk's sector size: kernel
/// `Documentation/ABI/testing/sysfs-block`), and its parent folder is the whole disk.
pub fn root_device() -> Result<RootDevice, SystemError> {
    let text = read_mountinfo()?;
    let m = mount_of(&text, Path::new("/"))
        .ok_or_else(|| SystemError::Other("/proc/self/mountinfo has no mount at /".into()))?;
    let sys = PathBuf::from("/sys/dev/block").join(&m.dev);
    let real = std::fs::canonicalize(&sys).map_err(|_| {
        SystemError::Other(format!(
            "the root filesystem's device {} ({}) is not a block device in {}",
            m.dev,
            m.source,
            sys.display()
        ))
    })?;
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let node = PathBuf::from("/dev").join(&name);
    let fs = BlockTarget {
        path: node.clone(),
        offset: 0,
    };
    let mut root = RootDevice {
        name: node.display().to_string(),
        fstype: Some(m.fstype),
        fs,
        partition: None,
    };
    if !real.join("partition").exists() {
        return Ok(root);
    }
    let number = u32::try_from(read_u64(&real.join("partition"))?).map_err(|_| {
        SystemError::Other(format!("{}: partition number too large", real.display()))
    })?;
    let parent = real
        .parent()
        .ok_or_else(|| SystemError::Other(format!("{}: no parent disk", real.display())))?;
    let disk_name = parent
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    root.partition = Some(RootPartition {
        disk: PathBuf::from("/dev").join(disk_name),
        disk_bytes: read_u64(&parent.join("size"))? * 512,
        sector_size: read_u64(&parent.join("queue/logical_block_size")).unwrap_or(512),
        number,
        start: read_u64(&real.join("start"))? * 512,
        size: read_u64(&real.join("size"))? * 512,
    });
    Ok(root)
}

fn device_number(device: &Path) -> Result<String, SystemError> {
    let rdev = nix::sys::stat::stat(device)
        .map_err(|e| SystemError::Other(format!("{}: cannot stat: {e}", device.display())))?
        .st_rdev;
    Ok(format!(
        "{}:{}",
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev)
    ))
}

fn read_mountinfo() -> Result<String, SystemError> {
    let info = Path::new("/proc/self/mountinfo");
    std::fs::read_to_string(info).map_err(|source| SystemError::Io {
        path: info.into(),
        what: "reading".into(),
        source,
    })
}

/// What is mounted at `target`, compared with the block device `device` by device number
/// (a mount made through `/dev/disk/by-label/…` names another path for the same device).
pub fn mounted_at(device: &Path, target: &Path) -> Result<MountedAt, SystemError> {
    bound_at(device, "/", target)
}

/// What is mounted at `target`, compared with the folder `root` (`/` for the whole
/// filesystem, `/kubelet` for a bind mount of that folder) of the filesystem on `device`.
/// The `root` field of mountinfo (the 4th, proc(5) "/proc/pid/mountinfo") is the folder of the
/// filesystem that forms the mount's root, so a bind of the right device but the wrong folder
/// is told apart.
pub fn bound_at(device: &Path, root: &str, target: &Path) -> Result<MountedAt, SystemError> {
    let text = read_mountinfo()?;
    let Some(m) = mount_of(&text, target) else {
        return Ok(MountedAt::Nothing);
    };
    let ours = device_number(device)?;
    Ok(if m.dev == ours && m.root == root {
        MountedAt::Chosen
    } else {
        MountedAt::Other(format!(
            "{} (device {}, folder {})",
            m.source, m.dev, m.root
        ))
    })
}

/// One line of mountinfo, the fields first boot reads.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct MountLine {
    /// `major:minor`.
    pub dev: String,
    /// The folder of the filesystem forming the mount's root.
    pub root: String,
    /// The filesystem type.
    pub fstype: String,
    /// The mount source (device path).
    pub source: String,
}

/// The last mount at `target` in a mountinfo text (the last one is the one visible there).
pub(crate) fn mount_of(mountinfo: &str, target: &Path) -> Option<MountLine> {
    mountinfo.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let point = fields.get(4)?;
        if Path::new(&unescape(point)) != target {
            return None;
        }
        let dash = fields.iter().position(|f| *f == "-")?;
        Some(MountLine {
            dev: fields.get(2)?.to_string(),
            root: unescape(fields.get(3)?),
            fstype: fields.get(dash + 1).map_or(String::new(), |s| unescape(s)),
            source: fields.get(dash + 2).map_or(String::new(), |s| unescape(s)),
        })
    })
}

/// The device node of partition `index` of `disk`, waiting for the kernel to show it after
/// `sfdisk` re-read the table.
pub fn partition_node(
    disk: &Disk,
    index: u32,
    wait: impl Fn(),
) -> Result<BlockTarget, SystemError> {
    let name = disk
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = Path::new("/sys/block").join(&name);
    for _ in 0..20 {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if read_trim(&e.path().join("partition")) == Some(index.to_string()) {
                    let node = PathBuf::from("/dev").join(e.file_name());
                    if node.exists() {
                        return Ok(BlockTarget {
                            path: node,
                            offset: 0,
                        });
                    }
                }
            }
        }
        wait();
    }
    Err(SystemError::Other(format!(
        "{}: partition {index} did not appear; unplug and replug the disk, then reboot",
        disk.path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_visible_mount_at_a_point_is_found_with_its_device() {
        let info = "\
22 1 253:2 / / rw,relatime shared:1 - ext4 /dev/vda2 rw
40 22 8:33 / /mnt/storage rw,noatime shared:20 - ext4 /dev/sdc1 rw
41 40 8:17 / /mnt/storage rw,noatime shared:21 - ext4 /dev/disk/by-label/piimg-x rw
42 22 8:1 / /mnt/other\\040dir rw - vfat /dev/sda1 rw
";
        let m = mount_of(info, Path::new("/mnt/storage")).unwrap();
        assert_eq!(
            (m.dev.as_str(), m.root.as_str(), m.source.as_str()),
            ("8:17", "/", "/dev/disk/by-label/piimg-x")
        );
        let m = mount_of(info, Path::new("/mnt/other dir")).unwrap();
        assert_eq!((m.dev.as_str(), m.fstype.as_str()), ("8:1", "vfat"));
        let bind = "50 22 8:33 /kubelet /var/lib/kubelet rw shared:20 - ext4 /dev/sdc1 rw\n";
        assert_eq!(
            mount_of(bind, Path::new("/var/lib/kubelet")).unwrap().root,
            "/kubelet"
        );
        assert_eq!(mount_of(info, Path::new("/mnt")), None);
    }
}
