//! Which partition is the root filesystem and which is the boot partition: found by content,
//! not by number, because Raspberry Pi OS, Ubuntu for Raspberry Pi and Ubuntu amd64 number
//! them differently (amd64 even has a second ext4 partition, `/boot`).
//!
//! With [`os`] (which OS the root holds) and [`tree`]/[`rootfs`] (reading the root as a
//! tree of files), this is the layer both `apply` and `inspect` stand on: finding and reading
//! a base, never changing it.

pub mod os;
pub mod rootfs;
pub mod tree;

use crate::disk::{self, FsKind, Layout, Partition, TableKind};
use crate::fs::ext4::Ext4Error;
use crate::fs::ext4::{Access, Ext4, FileKind};
use crate::fs::fat::{BootFs, FatError};
use std::path::Path;
use std::path::PathBuf;

/// The ESP's GPT type GUID (how `sfdisk` spells it, uppercase).
const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

/// Where os-release may live; `/etc/os-release` is usually a symlink to the second.
pub const OS_RELEASE: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];

/// Why the boot and root partitions of an image could not be found.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// The partition table could not be read (the disk error names the image).
    #[error("{source}")]
    Disk {
        /// The image.
        image: PathBuf,
        /// What the disk module said.
        #[source]
        source: Box<crate::disk::DiskError>,
    },
    /// A partition could not be opened (truncated image, unreadable file).
    #[error("{image}: partition {partition}: {source}")]
    Partition {
        /// The image.
        image: PathBuf,
        /// Partition number.
        partition: u32,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An ext4 partition could not be opened to look for os-release.
    #[error("{image}: partition {partition}: opening to look for os-release: {source}")]
    Ext4 {
        /// The image.
        image: PathBuf,
        /// Partition number.
        partition: u32,
        /// What libext2fs said.
        #[source]
        source: Box<Ext4Error>,
    },
    /// A FAT partition is there but damaged: it is the boot partition, refused as such.
    #[error("{image}: partition {partition}: checking the boot partition: {source}")]
    Fat {
        /// The image.
        image: PathBuf,
        /// Partition number.
        partition: u32,
        /// What the FAT check found.
        #[source]
        source: Box<crate::fs::fat::FatError>,
    },
    /// No partition holds a root filesystem with an os-release file.
    #[error(
        "{image}: no root filesystem found ({found}); is this a Raspberry Pi OS or Ubuntu image?"
    )]
    NoRoot {
        /// The image.
        image: PathBuf,
        /// What the partitions hold, for the message.
        found: String,
    },
}

impl LocateError {
    /// Names the image `shown` (what the user gave) where it says one of `real` (piimg's
    /// cached or work copy), here and in the disk and ext4 errors inside.
    pub fn rename(&mut self, real: &[&Path], shown: &Path) {
        match self {
            Self::Disk { image, .. }
            | Self::Partition { image, .. }
            | Self::Ext4 { image, .. }
            | Self::Fat { image, .. }
            | Self::NoRoot { image, .. } => {
                if real.iter().any(|r| r == image) {
                    *image = shown.to_path_buf();
                }
            }
        }
        match self {
            Self::Disk { source, .. } => source.rename(real, shown),
            Self::Ext4 { source, .. } => source.rename(real, shown),
            _ => {}
        }
    }
}

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
pub fn locate(image: &Path) -> Result<Located, LocateError> {
    let layout = Layout::read(image).map_err(|source| LocateError::Disk {
        image: image.to_path_buf(),
        source: Box::new(source),
    })?;
    let mut kinds = Vec::new();
    for part in &layout.partitions {
        let mut view =
            disk::open_partition(image, part, false).map_err(|source| LocateError::Partition {
                image: image.to_path_buf(),
                partition: part.number,
                source,
            })?;
        let (kind, _) = disk::probe(&mut view).map_err(|source| LocateError::Partition {
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

fn find_root(image: &Path, kinds: &[(&Partition, FsKind)]) -> Result<Partition, LocateError> {
    for (part, _) in kinds.iter().filter(|(_, k)| *k == FsKind::Ext4) {
        let fs = Ext4::open(image, part.start, Access::ReadOnly).map_err(|source| {
            LocateError::Ext4 {
                image: image.to_path_buf(),
                partition: part.number,
                source: Box::new(source),
            }
        })?;
        if holds_os_release(&fs) {
            return Ok((*part).clone());
        }
    }
    let found = kinds
        .iter()
        .map(|(p, k)| format!("p{} {}", p.number, fs_name(*k)))
        .collect::<Vec<_>>()
        .join(", ");
    Err(LocateError::NoRoot {
        image: image.to_path_buf(),
        found: if found.is_empty() {
            "no partitions".into()
        } else {
            found
        },
    })
}

/// Whether an ext4 filesystem holds an os-release file: what makes it a root filesystem.
pub fn holds_os_release(fs: &Ext4) -> bool {
    OS_RELEASE.iter().any(|p| follow_file(fs, p).is_some())
}

/// The boot partition among probed partitions: a FAT holding `cmdline.txt` or `config.txt`,
/// else on GPT the ESP. A FAT that is there but damaged is an error (it is the boot partition).
pub fn find_boot(
    image: &Path,
    layout: &Layout,
    kinds: &[(&Partition, FsKind)],
) -> Result<Option<Partition>, LocateError> {
    for (part, _) in kinds.iter().filter(|(_, k)| *k == FsKind::Vfat) {
        let view =
            disk::open_partition(image, part, false).map_err(|source| LocateError::Partition {
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
                return Err(LocateError::Fat {
                    image: image.to_path_buf(),
                    partition: part.number,
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
