//! What first boot knows of the machine's disks and mounts, and why asking failed.
//!
//! The types both halves of the seam speak: [`crate::sysfs`] fills them from a real kernel,
//! [`crate::system`] hands them to the steps. Kept apart from both so neither imports the
//! other back.

use std::path::PathBuf;

/// A whole disk the node can see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Device node (or, through the devices-file seam, an image file).
    pub path: PathBuf,
    /// Its names under `/dev/disk/by-id/`.
    pub ids: Vec<String>,
    /// Serial number, when the device reports one.
    pub serial: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// `usb`, `nvme`, `sata`, `mmc`, … when known.
    pub transport: Option<String>,
    /// Whether the root filesystem lives on it.
    pub holds_root: bool,
    /// Logical sector size in bytes.
    pub sector_size: u64,
}

impl Disk {
    /// How the disk is named to people: its first by-id name, else its path.
    pub fn display_name(&self) -> String {
        self.ids
            .first()
            .cloned()
            .unwrap_or_else(|| self.path.display().to_string())
    }
}

/// Where a partition's bytes are, for `mkfs` and `mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockTarget {
    /// The device (or file) to open.
    pub path: PathBuf,
    /// Byte offset of the partition inside `path` (0 for a partition device node).
    pub offset: u64,
}

/// Why talking to the system failed.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// I/O on a named path.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A command failed.
    #[error("{command} failed: {detail}")]
    Command {
        /// The command line, without secrets (none of ours carry any).
        command: String,
        /// Exit status and stderr.
        detail: String,
    },
    /// The devices file is not valid.
    #[error("devices file {path}: {detail}")]
    Devices {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A program first boot needs is not in the image.
    #[error("{program} is not installed: add the package {package} to the image")]
    Missing {
        /// The program.
        program: String,
        /// The package that provides it.
        package: &'static str,
    },
    /// Something else about the system, explained.
    #[error("{0}")]
    Other(String),
}

/// The block device the root filesystem (`/`) is mounted from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootDevice {
    /// How people know it (`/dev/sda2`; through the devices-file seam, the image file).
    pub name: String,
    /// Filesystem type as the kernel mounted it (`None` through the seam: no kernel).
    pub fstype: Option<String>,
    /// Where the filesystem's bytes are, for reading its superblock and `resize2fs`.
    pub fs: BlockTarget,
    /// The partition it is, or `None` for a whole disk, device mapper, md or similar.
    pub partition: Option<RootPartition>,
}

/// The partition holding the root filesystem, as the running kernel sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootPartition {
    /// The whole disk (or image file) holding it.
    pub disk: PathBuf,
    /// The disk's size in bytes.
    pub disk_bytes: u64,
    /// The disk's logical sector size (the unit of its partition table).
    pub sector_size: u64,
    /// 1-based partition number.
    pub number: u32,
    /// Start, in bytes.
    pub start: u64,
    /// Size the kernel has for it, in bytes.
    pub size: u64,
}

/// What is mounted at a mount point, as far as first boot needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountedAt {
    /// Nothing: first boot mounts the chosen disk there.
    Nothing,
    /// The chosen disk's filesystem (fstab mounted it on a later boot).
    Chosen,
    /// Something else, named as the system names it (a device or another disk's file).
    Other(String),
}
