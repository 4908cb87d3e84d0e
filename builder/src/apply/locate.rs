//! Which partition is the root filesystem and which is the boot partition: found by content,
//! not by number, because Raspberry Pi OS, Ubuntu for Raspberry Pi and Ubuntu amd64 number
//! them differently (amd64 even has a second ext4 partition, `/boot`).

use super::ApplyError;
use crate::disk::{self, FsKind, Layout, Partition, TableKind};
use crate::fs::ext4::{Access, Ext4, FileKind};
use crate::fs::fat::{BootFs, FatError};
use std::path::Path;

/// The ESP's GPT type GUID (how `sfdisk` spells it, uppercase).
const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

/// Where os-release may live; `/etc/os-release` is usually a symlink to the second.
pub const OS_RELEASE: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];

/// The partitions an image's edits go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The partition table as read.
    pub layout: Layout,
    /// The FAT partition with `cmdline.txt`/`config.txt`, or the ESP on GPT; `None` if neither.
    pub boot: Option<Partition>,
    /// The ext4 partition holding os-release.
    pub root: Partition,
}

/// Finds the root and boot partitions of `image` (raw). Never writes.
pub fn locate(image: &Path) -> Result<Located, ApplyError> {
    let layout = Layout::read(image).map_err(|source| ApplyError::Disk {
        image: image.to_path_buf(),
        source: Box::new(source),
    })?;
    let mut kinds = Vec::new();
    for part in &layout.partitions {
        let mut view =
            disk::open_partition(image, part, false).map_err(|source| ApplyError::Partition {
                image: image.to_path_buf(),
                partition: part.number,
                source,
            })?;
        let (kind, _) = disk::probe(&mut view).map_err(|source| ApplyError::Partition {
            image: image.to_path_buf(),
            partition: part.number,
            source,
        })?;
        kinds.push((part, kind));
    }
    let root = find_root(image, &kinds)?;
    let boot = find_boot(image, &layout, &kinds)?;
    Ok(Located { layout, boot, root })
}

fn find_root(image: &Path, kinds: &[(&Partition, FsKind)]) -> Result<Partition, ApplyError> {
    for (part, _) in kinds.iter().filter(|(_, k)| *k == FsKind::Ext4) {
        let fs =
            Ext4::open(image, part.start, Access::ReadOnly).map_err(|source| ApplyError::Ext4 {
                image: image.to_path_buf(),
                partition: part.number,
                edit: "opening to look for os-release".into(),
                source: Box::new(source),
            })?;
        if OS_RELEASE.iter().any(|p| follow_file(&fs, p).is_some()) {
            return Ok((*part).clone());
        }
    }
    let found = kinds
        .iter()
        .map(|(p, k)| format!("p{} {}", p.number, fs_name(*k)))
        .collect::<Vec<_>>()
        .join(", ");
    Err(ApplyError::NoRoot {
        image: image.to_path_buf(),
        found: if found.is_empty() {
            "no partitions".into()
        } else {
            found
        },
    })
}

fn find_boot(
    image: &Path,
    layout: &Layout,
    kinds: &[(&Partition, FsKind)],
) -> Result<Option<Partition>, ApplyError> {
    for (part, _) in kinds.iter().filter(|(_, k)| *k == FsKind::Vfat) {
        let view =
            disk::open_partition(image, part, false).map_err(|source| ApplyError::Partition {
                image: image.to_path_buf(),
                partition: part.number,
                source,
            })?;
        // Opened only to look: the epoch matters for writes alone.
        let fat = match BootFs::open_named(view, 0, "the FAT boot filesystem") {
            Ok(fat) => fat,
            // A FAT that is there but damaged is the boot partition, and must be refused as
            // such, not taken for a base without one.
            Err(source @ FatError::Damaged { .. }) => {
                return Err(ApplyError::Fat {
                    image: image.to_path_buf(),
                    partition: part.number,
                    edit: "checking the boot partition".into(),
                    source: Box::new(source),
                })
            }
            Err(_) => continue,
        };
        if ["cmdline.txt", "config.txt", "current/cmdline.txt"]
            .iter()
            .any(|f| fat.exists(f))
        {
            return Ok(Some((*part).clone()));
        }
    }
    if layout.kind == TableKind::Gpt {
        return Ok(layout
            .partitions
            .iter()
            .find(|p| p.type_id.eq_ignore_ascii_case(ESP_TYPE))
            .cloned());
    }
    Ok(None)
}

/// Names a probed filesystem for messages.
pub(crate) fn fs_name(kind: FsKind) -> &'static str {
    match kind {
        FsKind::Vfat => "vfat",
        FsKind::Ext4 => "ext4",
        FsKind::Swap => "swap",
        FsKind::Unknown => "unknown",
    }
}

/// The path of the regular file `path` names, following symlinks (relative or absolute,
/// resolved inside the image, at most 8); `None` when missing or not a file.
pub fn follow_file(fs: &Ext4, path: &str) -> Option<String> {
    let mut current = path.to_string();
    for _ in 0..8 {
        let st = fs.stat(&current).ok()?;
        match st.kind {
            FileKind::File => return Some(current),
            FileKind::Symlink => {
                let target = fs.read_link(&current).ok()?;
                current = if target.starts_with('/') {
                    normalize(&target)?
                } else {
                    let dir = current.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    normalize(&format!("{dir}/{target}"))?
                };
            }
            _ => return None,
        }
    }
    None
}

/// Resolves `.` and `..` in an absolute path (`..` at the root stays at the root).
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn normalizes_relative_links() {
        assert_eq!(
            normalize("/etc/../usr/lib/os-release").as_deref(),
            Some("/usr/lib/os-release")
        );
        assert_eq!(normalize("/../../x").as_deref(), Some("/x"));
        assert_eq!(normalize("/"), None);
    }
}
