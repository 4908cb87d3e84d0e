//! First step on Ubuntu and Debian (`[root] grow = true`): grow the root partition to the end
//! of its disk, then its ext4 filesystem.
//!
//! cloud-init's `growpart` and `resizefs` modules did this on those bases, and piimg disables
//! cloud-init (see the README), so a control plane would keep a root the size of the image on
//! a 500 GB disk. Raspberry Pi OS grows its root itself and keeps `grow = false`.
//!
//! Every boot, and idempotent: the partition's end in the table, the kernel's size for it and
//! the filesystem's size are each compared with what they should be, and only what falls
//! short is done, so a power cut between the table write and `resize2fs` is finished on the
//! next boot, and a root that already fills its disk costs reads only. Anything odd (root not
//! on a partition, not the last partition, a table that does not check out, not ext4) is
//! refused before anything is written. The step never stops k3s from starting.

pub mod table;

use crate::context::Ctx;
use crate::system::{BlockTarget, SystemError};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// Free space after the root (or between filesystem and partition end) below which nothing
/// is done: alignment and the backup GPT leave a few sectors, and a few MiB are not worth a
/// table write.
pub const MIN_GROWTH: u64 = 16 << 20;

/// What the step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grown {
    /// The partition's size before and after, in bytes.
    pub partition: (u64, u64),
    /// The filesystem's size before and after, in bytes.
    pub filesystem: (u64, u64),
}

/// Why the root was not grown.
#[derive(Debug, thiserror::Error)]
pub enum GrowError {
    /// Something first boot does not grow; nothing was written.
    #[error("{device}: {reason}; the root filesystem was left as it is (grow it by hand, or set [root] grow = false)")]
    Refused {
        /// The root's device.
        device: String,
        /// Why.
        reason: String,
    },
    /// The partition table.
    #[error(transparent)]
    Table(#[from] table::TableError),
    /// Reading the disk or the filesystem.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The device.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// The system refused (resizepart, resize2fs).
    #[error(transparent)]
    System(#[from] SystemError),
}

/// An ext4 superblock's size, read from its bytes (kernel `Documentation/filesystems/ext4/
/// super.rst`: at byte 1024; `s_blocks_count_lo` at 0x4, `s_log_block_size` at 0x18, magic
/// `0xEF53` at 0x38, `s_feature_incompat` at 0x60 with EXTENTS 0x40 and 64BIT 0x80,
/// `s_blocks_count_hi` at 0x150).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Superblock {
    bytes: u64,
    extents: bool,
}

fn superblock(fs: &BlockTarget) -> Result<Option<Superblock>, GrowError> {
    let io = |what| {
        let path = fs.path.clone();
        move |source| GrowError::Io { path, what, source }
    };
    let f = std::fs::File::open(&fs.path).map_err(io("opening the root filesystem"))?;
    let mut sb = [0u8; 1024];
    f.read_exact_at(&mut sb, fs.offset + 1024)
        .map_err(io("reading the root filesystem's superblock"))?;
    let u32_at = |o: usize| u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]);
    if u16::from_le_bytes([sb[0x38], sb[0x39]]) != 0xEF53 {
        return Ok(None);
    }
    let incompat = u32_at(0x60);
    let mut blocks = u64::from(u32_at(0x4));
    if incompat & 0x80 != 0 {
        blocks |= u64::from(u32_at(0x150)) << 32;
    }
    let log = u32_at(0x18);
    if log > 6 {
        return Ok(None);
    }
    Ok(Some(Superblock {
        bytes: blocks * (1024u64 << log),
        extents: incompat & 0x40 != 0,
    }))
}

/// Runs the step.
pub fn grow(ctx: &Ctx<'_>) -> Result<Option<Grown>, GrowError> {
    let root = ctx.sys.root_device()?;
    let refuse = |reason: String| GrowError::Refused {
        device: root.name.clone(),
        reason,
    };
    if let Some(t) = root.fstype.as_deref().filter(|t| *t != "ext4") {
        return Err(refuse(format!("the root filesystem is {t}, not ext4")));
    }
    let Some(part) = root.partition.clone() else {
        return Err(refuse(
            "the root filesystem is not on a partition (a whole disk, LVM, RAID or similar)".into(),
        ));
    };
    match superblock(&root.fs)? {
        Some(Superblock { extents: true, .. }) => {}
        _ => return Err(refuse("the root filesystem is not ext4".into())),
    }
    let fs_before = superblock(&root.fs)?.map_or(0, |s| s.bytes);
    let io = |what| {
        let path = part.disk.clone();
        move |source| GrowError::Io { path, what, source }
    };
    let ss = part.sector_size;
    let slot = {
        let f = std::fs::File::open(&part.disk).map_err(io("opening the root disk"))?;
        table::read_slot(&f, &part.disk, part.disk_bytes, ss, part.number)?
    };
    if slot.first * ss != part.start {
        return Err(refuse(format!(
            "the kernel has partition {} at byte {}, the {} table at byte {}; reboot and retry",
            part.number,
            part.start,
            slot.kind.as_str(),
            slot.first * ss
        )));
    }
    let table_before = (slot.last - slot.first + 1) * ss;
    let mut last = slot.last;
    if (slot.max_last - slot.last) * ss > MIN_GROWTH {
        if ctx.dry_run {
            println!(
                "would grow partition {} of {} to the end of the disk, then its ext4 filesystem",
                part.number,
                part.disk.display()
            );
            return Ok(None);
        }
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&part.disk)
            .map_err(io("opening the root disk to grow its partition"))?;
        table::grow(&f, &part.disk, part.disk_bytes, ss, &slot)?;
        last = slot.max_last;
        tracing::info!(disk = %part.disk.display(), partition = part.number, table = slot.kind.as_str(), "root partition grown in the table");
        crate::crash::point("grow-table");
    }
    let part_bytes = (last - slot.first + 1) * ss;
    // The kernel read the table at boot; a table grown since must be told to it.
    if part.size < part_bytes && !ctx.dry_run {
        ctx.sys
            .resize_partition(&part.disk, part.number, part_bytes / 512)?;
    }
    if part_bytes.saturating_sub(fs_before) <= MIN_GROWTH {
        return Ok((table_before != part_bytes).then_some(Grown {
            partition: (table_before, part_bytes),
            filesystem: (fs_before, fs_before),
        }));
    }
    if ctx.dry_run {
        println!(
            "would grow the root ext4 filesystem on {} to its partition",
            root.name
        );
        return Ok(None);
    }
    ctx.sys.resize_ext4(&root.fs, part_bytes)?;
    let fs_after = superblock(&root.fs)?.map_or(0, |s| s.bytes);
    tracing::info!(device = %root.name, from = fs_before, to = fs_after, "root filesystem grown");
    Ok(Some(Grown {
        partition: (table_before, part_bytes),
        filesystem: (fs_before, fs_after),
    }))
}
