//! `piimg inspect`: what a disk image holds, read without changing a byte of it.
//!
//! The report is a value (serialised as stable JSON, rendered as a table for people) built from
//! the partition table, a probe of each partition, the boot partition's command line and the
//! root filesystem's os-release, fstab, swap set-up and piimg build record.

mod boot;
pub mod fstab;
mod render;
pub mod swap;

use crate::disk::{self, FsKind, Layout, TableKind};
use crate::fs::ext4::{Access, Ext4};
use crate::locate::{os, rootfs};
use serde::Serialize;
use std::path::{Path, PathBuf};

pub use render::render_human;

/// Version of the JSON document; bumped only on incompatible changes (fields may be added).
pub const REPORT_SCHEMA: u32 = 1;

/// Everything `piimg inspect` knows about an image. Serialised field names are a stable API.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`REPORT_SCHEMA`].
    pub schema: u32,
    /// The image as the user named it.
    pub image: PathBuf,
    /// Size of the raw (decompressed) image in bytes.
    pub size: u64,
    /// The partition table.
    pub table: TableInfo,
    /// Every partition, by number.
    pub partitions: Vec<PartitionInfo>,
    /// The boot partition's kernel command line, where the base has one (Raspberry Pi images).
    pub boot: Option<BootInfo>,
    /// The partition holding `/etc/os-release`.
    pub root_partition: u32,
    /// The OS in the root filesystem.
    pub os: Option<os::OsInfo>,
    /// `/etc/fstab` of the root filesystem.
    pub fstab: Vec<fstab::FstabEntry>,
    /// Every swap mechanism found (empty: no swap).
    pub swap: Vec<swap::SwapMechanism>,
    /// piimg's build record (`/etc/piimg/build.json`) when piimg built this image.
    pub piimg: Option<serde_json::Value>,
    /// Files of the root filesystem that exist but could not be read (damaged or hostile
    /// inodes): what is shown above without them is incomplete.
    pub unreadable: Vec<rootfs::Unreadable>,
}

/// The partition table itself.
#[derive(Debug, Clone, Serialize)]
pub struct TableInfo {
    /// `mbr` or `gpt`.
    pub kind: &'static str,
    /// MBR disk identifier (8 hex digits) or GPT disk GUID.
    pub disk_id: String,
    /// Logical sector size in bytes.
    pub sector_size: u64,
}

/// One partition and what is on it.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionInfo {
    /// Partition number (`p2` is 2).
    pub number: u32,
    /// Start, in bytes from the start of the image.
    pub start: u64,
    /// Size in bytes.
    pub size: u64,
    /// MBR type byte (`0c`) or GPT type GUID.
    pub type_id: String,
    /// A name for the type, where known.
    pub type_name: Option<String>,
    /// What `root=PARTUUID=` and fstab call it.
    pub partuuid: String,
    /// `vfat`, `ext4`, `swap` or `unknown`.
    pub filesystem: &'static str,
    /// The filesystem label.
    pub label: Option<String>,
}

/// The boot partition's command line.
#[derive(Debug, Clone, Serialize)]
pub struct BootInfo {
    /// The FAT partition holding it.
    pub partition: u32,
    /// Path inside that partition (`cmdline.txt`, or `current/cmdline.txt` on Ubuntu 25.10+).
    pub cmdline_path: String,
    /// The command line, trimmed.
    pub cmdline: String,
    /// The `kernel=` set in config.txt, if any (Pi 5: `kernel8.img` selects 4K pages).
    pub kernel: Option<String>,
}

/// Why an image cannot be inspected. Every variant names the image.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The partition table could not be read.
    #[error(transparent)]
    Disk(#[from] disk::DiskError),
    /// A compressed image could not be decompressed.
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// A filesystem could not be read.
    #[error("{image}: partition {partition}: {source}")]
    Filesystem {
        /// The image.
        image: PathBuf,
        /// The partition number.
        partition: u32,
        /// What libext2fs or fatfs said.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The decompressed copy of a compressed image is bad.
    #[error("{image} (decompressed): {source}")]
    Decompressed {
        /// The compressed image the user named.
        image: PathBuf,
        /// What is wrong with its content.
        source: Box<InspectError>,
    },
    /// The partitions could not be told apart (see [`crate::locate::locate`]).
    #[error(transparent)]
    Locate(Box<crate::locate::LocateError>),
    /// No partition holds a root filesystem with `/etc/os-release`.
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

/// Inspects an image (raw, compressed as .xz/.gz/.zst, or QCOW2). Never writes to it.
pub fn inspect(image: &Path) -> Result<Report, InspectError> {
    let opened = crate::source::open_image(image)?;
    let raw = opened.path();
    inspect_raw(raw, image).map_err(|e| {
        if raw == image {
            e
        } else {
            InspectError::Decompressed {
                image: image.to_path_buf(),
                source: Box::new(e),
            }
        }
    })
}

fn inspect_raw(raw: &Path, image: &Path) -> Result<Report, InspectError> {
    let layout = Layout::read(raw)?;
    let mut partitions = Vec::new();
    for part in &layout.partitions {
        let mut view =
            disk::open_partition(raw, part, false).map_err(|e| fs_err(image, part.number, e))?;
        let (kind, label) = disk::probe(&mut view).map_err(|e| fs_err(image, part.number, e))?;
        partitions.push(PartitionInfo {
            number: part.number,
            start: part.start,
            size: part.size,
            type_id: part.type_id.clone(),
            type_name: part.type_name.clone(),
            partuuid: part.partuuid.clone(),
            filesystem: fs_name(kind),
            label,
        });
    }
    let located = crate::locate::locate(raw).map_err(|e| locate_err(raw, image, e))?;
    let root_partition = located.root.number;
    let root_fs = Ext4::open(raw, located.root.start, Access::ReadOnly)
        .map_err(|e| fs_err(image, root_partition, e))?;
    let tree = crate::locate::rootfs::Ext4Tree::new(&root_fs);
    let os = os::detect(&tree);
    let fstab = tree
        .text("/etc/fstab")
        .map(|t| fstab::parse(&t))
        .unwrap_or_default();
    let swap = swap::detect(&tree, &fstab);
    let piimg = tree
        .read(crate::plan::BUILD_RECORD_PATH)
        .and_then(|b| serde_json::from_slice(&b).ok());
    let boot = boot::find(raw, image, located.boot.as_ref())?;
    Ok(Report {
        schema: REPORT_SCHEMA,
        image: image.to_path_buf(),
        size: layout.disk_size,
        table: TableInfo {
            kind: match layout.kind {
                TableKind::Mbr => "mbr",
                TableKind::Gpt => "gpt",
            },
            disk_id: layout.disk_id.clone(),
            sector_size: layout.sector_size,
        },
        partitions,
        boot,
        root_partition,
        os,
        fstab,
        swap,
        piimg,
        unreadable: tree.unreadable(),
    })
}

use crate::locate::tree::Tree;

fn fs_name(kind: FsKind) -> &'static str {
    match kind {
        FsKind::Vfat => "vfat",
        FsKind::Ext4 => "ext4",
        FsKind::Swap => "swap",
        FsKind::Unknown => "unknown",
    }
}

fn fs_err(
    image: &Path,
    partition: u32,
    source: impl std::error::Error + Send + Sync + 'static,
) -> InspectError {
    InspectError::Filesystem {
        image: image.to_path_buf(),
        partition,
        source: Box::new(source),
    }
}

/// Locating names the raw file; the user named `image` (they differ for compressed images).
fn locate_err(raw: &Path, image: &Path, e: crate::locate::LocateError) -> InspectError {
    match e {
        crate::locate::LocateError::NoRoot { found, .. } => InspectError::NoRoot {
            image: image.to_path_buf(),
            found,
        },
        crate::locate::LocateError::Disk { source, .. } => InspectError::Disk(*source),
        other if raw == image => InspectError::Locate(Box::new(other)),
        other => InspectError::Decompressed {
            image: image.to_path_buf(),
            source: Box::new(InspectError::Locate(Box::new(other))),
        },
    }
}
