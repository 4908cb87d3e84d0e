//! `piimg inspect`: what a disk image holds, read without changing a byte of it.
//!
//! The report is a value (serialised as stable JSON, rendered as a table for people) built from
//! the partition table, a probe of each partition, the boot partition's command line and the
//! root filesystem's os-release, fstab, swap set-up and piimg build record.

mod boot;
pub mod fstab;
mod render;
pub mod swap;

use crate::disk::{self, FsKind, Layout, Partition, TableKind};
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
    /// The partition holding `/etc/os-release`; `None` when no partition holds a readable
    /// root filesystem (then `os`, `fstab` and `swap` are empty and `swap_state` is
    /// `unknown`).
    pub root_partition: Option<u32>,
    /// The OS in the root filesystem.
    pub os: Option<os::OsInfo>,
    /// `/etc/fstab` of the root filesystem.
    pub fstab: Vec<fstab::FstabEntry>,
    /// Every swap mechanism found (empty: none found; see `swap_state`).
    pub swap: Vec<swap::SwapMechanism>,
    /// Swap as a whole: `active`, `off`, `none`, `unreadable` (a file that decides it could
    /// not be read) or `unknown` (no root filesystem). See [`swap::state`].
    pub swap_state: &'static str,
    /// piimg's build record (`/etc/piimg/build.json`) when piimg built this image.
    pub piimg: Option<serde_json::Value>,
    /// What exists but could not be read (damaged or hostile): files of the root filesystem
    /// (`/etc/fstab`), whole partitions (`p1`) and files of the boot partition
    /// (`p1:cmdline.txt`). What is shown above without them is incomplete.
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
    /// The decompressed copy of a compressed image is bad.
    #[error("{image} (decompressed): {source}")]
    Decompressed {
        /// The compressed image the user named.
        image: PathBuf,
        /// What is wrong with its content.
        source: Box<InspectError>,
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

/// Describes the raw image. Only an unreadable partition table is an error: the table is
/// what everything else hangs from. Past it, inspect reports what it could read and lists
/// what it could not in `unreadable`, rather than failing on the first damaged part (issue
/// 15.9): a partition without a filesystem, an image without a root, a damaged FAT or inode.
fn inspect_raw(raw: &Path, image: &Path) -> Result<Report, InspectError> {
    let layout = Layout::read(raw)?;
    let mut unreadable = Vec::new();
    let mut partitions = Vec::new();
    let mut kinds = Vec::new();
    for part in &layout.partitions {
        let probed =
            disk::open_partition(raw, part, false).and_then(|mut view| disk::probe(&mut view));
        let (filesystem, label) = match probed {
            Ok((kind, label)) => {
                kinds.push((part, kind));
                (fs_name(kind), label)
            }
            Err(e) => {
                unreadable.push(whole_partition(part.number, &e));
                ("unreadable", None)
            }
        };
        partitions.push(PartitionInfo {
            number: part.number,
            start: part.start,
            size: part.size,
            type_id: part.type_id.clone(),
            type_name: part.type_name.clone(),
            partuuid: part.partuuid.clone(),
            filesystem,
            label,
        });
    }
    let boot = match crate::locate::find_boot(raw, &layout, &kinds) {
        // An ESP (found by its GPT type) without a FAT on it has nothing to read: no
        // filesystem is not a damaged one.
        Ok(Some(part)) if !kinds.contains(&(&part, FsKind::Vfat)) => None,
        Ok(Some(part)) => boot::find(raw, &part).unwrap_or_else(|u| {
            unreadable.push(u);
            None
        }),
        Ok(None) => None,
        Err(e) => {
            unreadable.push(located_error(raw, image, e));
            None
        }
    };
    let mut report = Report {
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
        root_partition: None,
        os: None,
        fstab: Vec::new(),
        swap: Vec::new(),
        swap_state: swap::UNKNOWN,
        piimg: None,
        unreadable: Vec::new(),
    };
    if let Some((part, fs)) = find_root(raw, image, &kinds, &mut unreadable) {
        describe_root(&mut report, part.number, &fs, &mut unreadable);
    }
    report.unreadable = unreadable;
    Ok(report)
}

/// The first ext4 partition that holds os-release, opened; ext4 partitions that cannot be
/// opened are noted as unreadable and passed over.
fn find_root<'a>(
    raw: &Path,
    image: &Path,
    kinds: &[(&'a Partition, FsKind)],
    unreadable: &mut Vec<rootfs::Unreadable>,
) -> Option<(&'a Partition, Ext4)> {
    for (part, _) in kinds.iter().filter(|(_, k)| *k == FsKind::Ext4) {
        match Ext4::open(raw, part.start, Access::ReadOnly) {
            Ok(fs) if crate::locate::holds_os_release(&fs) => return Some((part, fs)),
            Ok(_) => {}
            Err(e) => unreadable.push(whole_partition(part.number, &e.shown_as(&[raw], image))),
        }
    }
    None
}

/// Fills in what the root filesystem says: OS, fstab, swap, piimg's build record.
fn describe_root(
    report: &mut Report,
    number: u32,
    fs: &Ext4,
    unreadable: &mut Vec<rootfs::Unreadable>,
) {
    let tree = crate::locate::rootfs::Ext4Tree::new(fs);
    report.root_partition = Some(number);
    report.os = os::detect(&tree);
    // Files met while reading fstab and the swap set-up that could not be read leave the
    // swap state open, whatever was found.
    let before = tree.unreadable().len();
    report.fstab = tree
        .text("/etc/fstab")
        .map(|t| fstab::parse(&t))
        .unwrap_or_default();
    report.swap = swap::detect(&tree, &report.fstab);
    report.swap_state = swap::state(&report.swap, tree.unreadable().len() > before);
    report.piimg = tree
        .read(crate::plan::BUILD_RECORD_PATH)
        .and_then(|b| serde_json::from_slice(&b).ok());
    unreadable.extend(tree.unreadable());
}

/// A whole partition that could not be read (`p2`).
fn whole_partition(number: u32, e: &dyn std::fmt::Display) -> rootfs::Unreadable {
    rootfs::Unreadable {
        path: format!("p{number}"),
        error: e.to_string(),
    }
}

/// What finding the boot partition ran into, as the partition it concerns.
fn located_error(
    raw: &Path,
    image: &Path,
    mut e: crate::locate::LocateError,
) -> rootfs::Unreadable {
    use crate::locate::LocateError;
    e.rename(&[raw], image);
    match e {
        LocateError::Fat {
            partition, source, ..
        } => whole_partition(partition, &source),
        LocateError::Partition {
            partition, source, ..
        } => whole_partition(partition, &source),
        LocateError::Ext4 {
            partition, source, ..
        } => whole_partition(partition, &source),
        other => rootfs::Unreadable {
            path: "partition table".into(),
            error: other.to_string(),
        },
    }
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
