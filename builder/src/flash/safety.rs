//! Which block devices `piimg flash` may overwrite. Writing an image to the wrong disk destroys
//! it, so the checks read what the kernel says (mount table, swap list, sysfs) rather than
//! trusting names: never a disk with a mounted partition, never the disk the system runs from,
//! never a disk (or partition) that is active swap or held by LVM, dm-crypt or md (none of
//! which shows in the mount table), and a non-removable disk only with `--force`. The paths of `/proc` and `/sys` are a seam, so tests
//! run every refusal against stand-in trees instead of real disks.

use super::error::FlashError;
use super::in_use;
use super::kernel_names::{DevNo, Member};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Where the kernel's views live; [`SystemPaths::default`] is the real system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemPaths {
    /// The mount table (`/proc/self/mountinfo`).
    pub mountinfo: PathBuf,
    /// The sysfs folder of block devices by number (`/sys/dev/block`).
    pub sys_dev_block: PathBuf,
    /// The active swap areas (`/proc/swaps`); a missing file means none (no swap support).
    pub swaps: PathBuf,
}

impl Default for SystemPaths {
    fn default() -> Self {
        SystemPaths {
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
            sys_dev_block: PathBuf::from("/sys/dev/block"),
            swaps: PathBuf::from("/proc/swaps"),
        }
    }
}

/// Refuses `device` (block device `devno`) when it is unsafe to overwrite; see the module docs.
/// `force` overrides only the non-removable check: a mounted disk or the system's own disk is
/// never written.
pub fn check_block_device(
    device: &Path,
    devno: DevNo,
    paths: &SystemPaths,
    force: bool,
) -> Result<(), FlashError> {
    let refuse = |why: String| FlashError::Refused {
        device: device.to_path_buf(),
        why,
    };
    let disk = disk_dir(paths, devno).ok_or_else(|| {
        refuse(format!(
            "the kernel does not list block device {devno} under {}; pass the whole disk (e.g. /dev/sdX, /dev/mmcblkN)",
            paths.sys_dev_block.display()
        ))
    })?;
    let members = disk_and_partitions(&disk);
    let mountinfo = std::fs::read_to_string(&paths.mountinfo).map_err(|e| FlashError::Read {
        path: paths.mountinfo.clone(),
        source: e,
    })?;
    let mounts = parse_mountinfo(&mountinfo);
    if let Some((dev, point)) = mounts.iter().find(|(dev, _)| members.contains(dev)) {
        let part = if *dev == devno || Some(*dev) == read_dev(&disk) {
            "it".to_string()
        } else {
            format!("its partition {dev}")
        };
        return Err(refuse(format!(
            "{part} is mounted at {point}; unmount every partition of it first (umount, or udisksctl unmount -b)"
        )));
    }
    if let Some((root, _)) = mounts.iter().find(|(_, point)| point == "/") {
        let root_disks = underlying_disks(paths, *root);
        if root_disks.contains(&disk) {
            return Err(refuse(
                "it is the disk the running system boots from; pick the card or USB disk you mean to flash (lsblk shows them)"
                    .to_string(),
            ));
        }
    }
    let devices = members_of(&disk);
    if let Some(why) = in_use::active_swap(&devices, &paths.swaps)? {
        return Err(refuse(why));
    }
    if let Some(why) = in_use::held(&devices) {
        return Err(refuse(why));
    }
    let removable = std::fs::read_to_string(disk.join("removable"))
        .map(|s| s.trim() == "1")
        .unwrap_or(false);
    if !removable && !force {
        return Err(refuse(
            "it is not a removable disk (sysfs 'removable' is 0); USB SSDs and some card readers say so too: check with lsblk that it is the disk you mean, then pass --force"
                .to_string(),
        ));
    }
    Ok(())
}

/// The sysfs folder of the whole disk holding `devno` (the device itself when it is a disk).
fn disk_dir(paths: &SystemPaths, devno: DevNo) -> Option<PathBuf> {
    let dir = std::fs::canonicalize(paths.sys_dev_block.join(devno.to_string())).ok()?;
    if dir.join("partition").exists() {
        dir.parent().map(Path::to_path_buf)
    } else {
        Some(dir)
    }
}

/// The device numbers of a disk and of each of its partitions.
fn disk_and_partitions(disk: &Path) -> BTreeSet<DevNo> {
    members_of(disk).iter().filter_map(|m| m.devno).collect()
}

/// The disk, then each of its partitions (sorted by name, so messages are stable).
fn members_of(disk: &Path) -> Vec<Member> {
    let member = |dir: &Path, whole_disk| Member {
        name: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        devno: read_dev(dir),
        dir: dir.to_path_buf(),
        whole_disk,
    };
    let mut parts: Vec<Member> = std::fs::read_dir(disk)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.join("partition").exists())
                .map(|p| member(&p, false))
                .collect()
        })
        .unwrap_or_default();
    parts.sort_by(|a, b| a.name.cmp(&b.name));
    let mut all = vec![member(disk, true)];
    all.extend(parts);
    all
}

fn read_dev(dir: &Path) -> Option<DevNo> {
    DevNo::parse(&std::fs::read_to_string(dir.join("dev")).ok()?)
}

/// The disks beneath a device: itself (or its disk), or, for device-mapper and md devices,
/// the disks of every device in `slaves/`, followed down.
fn underlying_disks(paths: &SystemPaths, devno: DevNo) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::canonicalize(paths.sys_dev_block.join(devno.to_string())) else {
        return out;
    };
    let mut todo = vec![dir];
    while let Some(dir) = todo.pop() {
        let slaves: Vec<PathBuf> = std::fs::read_dir(dir.join("slaves"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| std::fs::canonicalize(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        if slaves.is_empty() {
            if dir.join("partition").exists() {
                out.extend(dir.parent().map(Path::to_path_buf));
            } else {
                out.push(dir);
            }
        } else if out.len() + todo.len() < 64 {
            todo.extend(slaves);
        }
    }
    out
}

/// (device, mount point) of each line of mountinfo (fields 3 and 5).
fn parse_mountinfo(text: &str) -> Vec<(DevNo, String)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let dev = DevNo::parse(fields.nth(2)?)?;
            let point = fields.nth(1)?.replace("\\040", " ");
            Some((dev, point))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdev_split_matches_glibc() {
        // makedev(8, 1) and makedev(259, 65536).
        assert_eq!(DevNo::from_rdev(0x801), DevNo { major: 8, minor: 1 });
        // makedev(259, 65536): major in bits 8..20, minor's high bits from bit 20.
        let rdev = 0x1001_0300;
        assert_eq!(
            DevNo::from_rdev(rdev),
            DevNo {
                major: 259,
                minor: 65536
            }
        );
    }

    #[test]
    fn mountinfo_fields() {
        let text = "22 1 8:2 / / rw,relatime - ext4 /dev/sda2 rw\n\
                    30 22 179:1 / /media/my\\040card rw - vfat /dev/mmcblk0p1 rw\n";
        assert_eq!(
            parse_mountinfo(text),
            vec![
                (DevNo { major: 8, minor: 2 }, "/".to_string()),
                (
                    DevNo {
                        major: 179,
                        minor: 1
                    },
                    "/media/my card".to_string()
                ),
            ]
        );
    }
}
