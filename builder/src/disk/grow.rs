//! Growing an image file and its last partition, the way first-boot "expand rootfs" scripts
//! would on the device, but ahead of time and on the file.

use std::fs::{File, OpenOptions};
use std::path::Path;

use super::read::read_sector0;
use super::{gpt, mbr, DiskError, Layout, TableKind, SECTOR_SIZE};

/// Extends the image file to `new_size` bytes (sparse) and partition `partition`, which must be
/// the last on the disk, to its end.
///
/// The disk identifier and every PARTUUID stay unchanged, so `root=PARTUUID=…` and fstab keep
/// working. The filesystem inside is not touched: growing it is the filesystem module's job.
/// MBR partitions are limited to 2 TiB; for GPT the backup header and array move to the new
/// end and every CRC is recomputed. Everything is checked before the file is extended, but
/// the rewrite itself is not atomic: run it on a working copy, never on a cached base.
pub fn grow(image: &Path, new_size: u64, partition: u32) -> Result<Layout, DiskError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .map_err(|e| DiskError::io(image, "cannot open for writing", e))?;
    let size = file
        .metadata()
        .map_err(|e| DiskError::io(image, "cannot stat", e))?
        .len();
    let bad_size = |reason: String| DiskError::BadSize {
        path: image.to_path_buf(),
        requested: new_size,
        reason,
    };
    if new_size % SECTOR_SIZE != 0 {
        return Err(bad_size(format!(
            "not a multiple of the {SECTOR_SIZE}-byte sector size"
        )));
    }
    if new_size < size {
        return Err(bad_size(format!(
            "the image already has {size} bytes; shrinking is not supported"
        )));
    }

    let sector0 = read_sector0(&mut file, image, size)?;
    let gpt_table = if mbr::has_protective_entry(&sector0) {
        Some(gpt::read(&mut file, image, size)?)
    } else {
        None
    };
    let layout = match &gpt_table {
        Some(t) => t.layout.clone(),
        None => mbr::read(&mut file, image, size)?,
    };
    check_last(image, &layout, partition)?;
    if layout.kind == TableKind::Mbr {
        mbr::check_growable(image, &layout, partition)?;
    }

    let new_sectors = new_size / SECTOR_SIZE;
    if layout.kind == TableKind::Mbr && new_sectors > u64::from(u32::MAX) {
        return Err(bad_size(
            "an MBR disk cannot address more than 2^32 sectors (2 TiB)".into(),
        ));
    }
    extend(&file, image, new_size)?;
    match &gpt_table {
        Some(t) => gpt::grow(&mut file, image, t, partition, new_sectors)?,
        None => mbr::grow(&mut file, image, partition, new_sectors)?,
    }
    file.sync_all()
        .map_err(|e| DiskError::io(image, "cannot sync", e))?;
    tracing::info!(image = %image.display(), new_size, partition, "grew image and partition");
    drop(file);
    Layout::read(image)
}

/// Refuses a partition that does not exist or is not the last on the disk.
fn check_last(image: &Path, layout: &Layout, number: u32) -> Result<(), DiskError> {
    if layout.partition(number).is_none() {
        return Err(DiskError::NoSuchPartition {
            path: image.to_path_buf(),
            number,
        });
    }
    match layout.last_on_disk() {
        Some(last) if last.number == number => Ok(()),
        Some(last) => Err(DiskError::NotLast {
            path: image.to_path_buf(),
            number,
            last: last.number,
        }),
        None => Err(DiskError::NoSuchPartition {
            path: image.to_path_buf(),
            number,
        }),
    }
}

/// Extends the file without writing data, so the new space is a hole.
fn extend(file: &File, image: &Path, new_size: u64) -> Result<(), DiskError> {
    file.set_len(new_size)
        .map_err(|e| DiskError::io(image, "cannot extend the file", e))
}
