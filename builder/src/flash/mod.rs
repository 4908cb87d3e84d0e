//! `piimg flash IMAGE DEVICE`: writes only the mapped blocks of an image (raw or compressed)
//! to a card, then reads every mapped range back and checks it against the `.bmap` SHA-256s.
//!
//! Why not `dd`: a node image is mostly holes, and writing them costs minutes on an SD card;
//! a card that silently drops writes (failing or counterfeit) is only caught by reading back.
//! The image's own bytes are hashed while they are written, so a damaged image is stopped at
//! the first bad range. Block devices are checked by [`safety`] first, then opened with
//! `O_EXCL`, so the kernel itself refuses (EBUSY) a disk that is mounted or held by anything
//! our checks missed; a regular file target is allowed (that is how tests and people preparing
//! images for later run it).
//!
//! Durability: by default writes go through the page cache with an `fdatasync` every
//! [`SYNC_EVERY`] bytes; `--direct` writes with `O_DIRECT` instead (falling back, with a
//! warning, where the kernel refuses it). Either way the target is `fsync`ed before the
//! read-back. On a block device the read-back cannot come from the page cache: its pages are
//! dropped (`BLKFLSBUF` when privileged, `posix_fadvise(DONTNEED)` always) and the reads use
//! `O_DIRECT`. Afterwards the kernel is asked to re-read the partition table (`BLKRRPART`).

mod blkdev;
mod error;
mod in_use;
mod kernel_names;
pub mod safety;
mod target;

pub use crate::bmap::parse_bmap;
pub use error::FlashError;
pub use kernel_names::DevNo;
pub use safety::{check_block_device, SystemPaths};

use crate::bmap::{BlockRange, Bmap, BMAP_BLOCK_SIZE};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use target::{AlignedBuffer, Target};

/// Bytes written between two `fdatasync`s: keeps the kernel's dirty pages (and so memory and
/// the final sync's stall) bounded, and the progress bar honest about what reached the card.
const SYNC_EVERY: u64 = 64 << 20;
/// Read/write buffer (a multiple of the direct I/O alignment).
const BUFFER: usize = 4 << 20;

/// What to flash, where, and how carefully.
#[derive(Debug, Clone)]
pub struct FlashRequest {
    /// The image: raw, or compressed as .zst/.xz/.gz (told by its magic bytes).
    pub image: PathBuf,
    /// The target block device or regular file.
    pub device: PathBuf,
    /// The block map; `None` looks beside the image (see [`default_bmap_path`]).
    pub bmap: Option<PathBuf>,
    /// Allow a non-removable disk.
    pub force: bool,
    /// Write with `O_DIRECT` instead of the page cache and periodic `fdatasync`: steadier
    /// progress and no dirty pages piling up in memory; falls back where refused.
    pub direct: bool,
    /// Where `/proc` and `/sys` views are read (the seam tests use).
    pub system: SystemPaths,
    /// Draw a progress bar (on a terminal).
    pub progress: bool,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashReport {
    /// Image size in bytes.
    pub image_size: u64,
    /// Bytes written (the mapped blocks).
    pub written: u64,
    /// Whether every mapped range was read back and matched.
    pub verified: bool,
    /// Whether every write bypassed the page cache (`O_DIRECT` asked for and accepted).
    pub direct: bool,
}

/// `node.img.zst` → `node.bmap` (as `piimg build` names it), else `IMAGE.bmap` or the image
/// name with its extensions replaced, the first that exists.
pub fn default_bmap_path(image: &Path) -> PathBuf {
    let name = image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.split('.').next().unwrap_or(&name).to_string();
    let mut candidates = Vec::new();
    for ext in [".img.zst", ".img.xz", ".img.gz", ".img"] {
        if let Some(base) = name.strip_suffix(ext) {
            candidates.push(image.with_file_name(format!("{base}.bmap")));
        }
    }
    candidates.push(image.with_file_name(format!("{name}.bmap")));
    candidates.push(image.with_file_name(format!("{stem}.bmap")));
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| candidates[0].clone())
}

/// Flashes `req.image` to `req.device`; see the module docs.
pub fn flash(req: &FlashRequest) -> Result<FlashReport, FlashError> {
    let bmap_path = req
        .bmap
        .clone()
        .unwrap_or_else(|| default_bmap_path(&req.image));
    let text = match std::fs::read_to_string(&bmap_path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound && req.bmap.is_none() => {
            return Err(FlashError::NoBmap {
                image: req.image.clone(),
                bmap: bmap_path,
            })
        }
        Err(e) => {
            return Err(FlashError::Read {
                path: bmap_path,
                source: e,
            })
        }
    };
    let bmap = parse_bmap(&bmap_path, &text)?;
    let mut target = open_target(req, bmap.image_size)?;
    if req.direct {
        target.try_direct("writing");
    }
    let bar = progress_bar(req.progress, bmap.mapped_blocks() * BMAP_BLOCK_SIZE);
    let written = write_ranges(req, &bmap_path, &bmap, &mut target, &bar)?;
    bar.finish_and_clear();
    let direct = target.wrote_direct();
    verify(&req.device, &mut target, &bmap)?;
    target.commit().map_err(|e| FlashError::Write {
        path: req.device.clone(),
        source: e,
    })?;
    if target.is_block_device() {
        reread_partition_table(&req.device, &target);
    }
    tracing::info!(device = %req.device.display(), written, direct, "flashed and verified");
    Ok(FlashReport {
        image_size: bmap.image_size,
        written,
        verified: true,
        direct,
    })
}

/// Opens the target for writing after the safety checks; a regular file is made exactly the
/// image's size with holes, so flashing to a file reproduces the image.
fn open_target(req: &FlashRequest, image_size: u64) -> Result<Target, FlashError> {
    let dev = &req.device;
    let write_err = |e| FlashError::Write {
        path: dev.clone(),
        source: e,
    };
    let same = |a: &Path, b: &Path| matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y);
    if same(dev, &req.image) {
        return Err(FlashError::Refused {
            device: dev.clone(),
            why: "it is the image itself; give the card's device or another file".to_string(),
        });
    }
    match std::fs::metadata(dev) {
        Ok(meta) if meta.file_type().is_block_device() => {
            check_block_device(dev, DevNo::from_rdev(meta.rdev()), &req.system, req.force)?;
            // O_EXCL on a block device fails (EBUSY) while the kernel has it or a partition
            // mounted, as swap, or claimed by a stacked device or another exclusive opener.
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(nix::libc::O_EXCL)
                .open(dev)
                .map_err(|e| {
                    if e.raw_os_error() == Some(nix::libc::EBUSY) {
                        FlashError::Busy { device: dev.clone() }
                    } else {
                        write_err(e)
                    }
                })?;
            let size = file.seek(SeekFrom::End(0)).map_err(write_err)?;
            if size < image_size {
                return Err(FlashError::TooSmall {
                    device: dev.clone(),
                    device_size: size,
                    image_size,
                });
            }
            Ok(Target::new(file, dev, true))
        }
        Ok(meta) if !meta.is_file() => Err(FlashError::Refused {
            device: dev.clone(),
            why: "it is neither a block device nor a regular file; give /dev/sdX, /dev/mmcblkN or a file path".to_string(),
        }),
        found => {
            if let Ok(meta) = &found {
                if meta.len() > 0 && !req.force {
                    return Err(FlashError::Refused {
                        device: dev.clone(),
                        why: format!("it is an existing file of {} bytes, which flashing would replace; give a new path, or --force to replace it", meta.len()),
                    });
                }
            }
            // Written beside the target and renamed over it once verified: a flash killed
            // half-way leaves a `.NAME.piimg-flash-*` file, never a torn NAME.
            let dir = match dev.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let name = dev.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let temp = tempfile::Builder::new()
                .prefix(&format!(".{name}.piimg-flash-"))
                .tempfile_in(&dir)
                .map_err(write_err)?;
            let (file, pending) = temp.into_parts();
            file.set_len(image_size).map_err(write_err)?;
            Ok(Target::pending_file(file, dev, pending))
        }
    }
}

/// Reads the image forward (compressed images cannot seek), writes each mapped range,
/// hashing it on the way; syncs every [`SYNC_EVERY`] bytes (unless writing directly) and
/// at the end.
fn write_ranges(
    req: &FlashRequest,
    bmap_path: &Path,
    bmap: &Bmap,
    target: &mut Target,
    bar: &indicatif::ProgressBar,
) -> Result<u64, FlashError> {
    let read_err = |e| FlashError::Read {
        path: req.image.clone(),
        source: e,
    };
    let write_err = |e| FlashError::Write {
        path: req.device.clone(),
        source: e,
    };
    let format = crate::source::Compression::detect(&req.image).map_err(|e| FlashError::Read {
        path: req.image.clone(),
        source: io::Error::other(e.to_string()),
    })?;
    let file = File::open(&req.image).map_err(read_err)?;
    let mut reader =
        crate::source::decoder_for(format, io::BufReader::with_capacity(1 << 20, file))
            .map_err(read_err)?;
    let mut pos = 0u64;
    let mut storage = AlignedBuffer::new(BUFFER);
    let buf = storage.as_mut_slice();
    let mut written = 0u64;
    let mut unsynced = 0u64;
    for range in &bmap.ranges {
        let (start, end) = byte_span(range, bmap.image_size);
        skip(&mut reader, &mut pos, start, buf).map_err(|e| short(req, bmap_path, bmap, e))?;
        let mut hasher = Sha256::new();
        while pos < end {
            let n = ((end - pos) as usize).min(buf.len());
            reader
                .read_exact(&mut buf[..n])
                .map_err(|e| short(req, bmap_path, bmap, e))?;
            hasher.update(&buf[..n]);
            target.write_at(&buf[..n], pos).map_err(write_err)?;
            pos += n as u64;
            written += n as u64;
            unsynced += n as u64;
            bar.inc(n as u64);
            if unsynced >= SYNC_EVERY && !target.wrote_direct() {
                target.file().sync_data().map_err(write_err)?;
                unsynced = 0;
            }
        }
        if hex::encode(hasher.finalize()) != range.sha256 {
            return Err(FlashError::ImageMismatch {
                image: req.image.clone(),
                bmap: bmap_path.to_path_buf(),
                first: range.first,
                last: range.last,
            });
        }
    }
    // O_DIRECT skips the page cache, not the device's write cache: fsync flushes that too.
    target.file().sync_all().map_err(write_err)?;
    Ok(written)
}

/// An early end of the image is the map's size disagreeing with it; other errors stay reads.
fn short(req: &FlashRequest, bmap_path: &Path, bmap: &Bmap, e: io::Error) -> FlashError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        FlashError::ImageTooShort {
            image: req.image.clone(),
            bmap: bmap_path.to_path_buf(),
            size: bmap.image_size,
        }
    } else {
        FlashError::Read {
            path: req.image.clone(),
            source: e,
        }
    }
}

/// Reads and drops bytes until `to` (holes of a compressed stream must still be decoded).
fn skip(reader: &mut dyn Read, pos: &mut u64, to: u64, buf: &mut [u8]) -> io::Result<()> {
    while *pos < to {
        let n = ((to - *pos) as usize).min(buf.len());
        reader.read_exact(&mut buf[..n])?;
        *pos += n as u64;
    }
    Ok(())
}

/// Byte offsets `[start, end)` of a range, the last block cut at the image end.
fn byte_span(range: &BlockRange, image_size: u64) -> (u64, u64) {
    (
        range.first * BMAP_BLOCK_SIZE,
        ((range.last + 1) * BMAP_BLOCK_SIZE).min(image_size),
    )
}

/// Reads every mapped range back from the target and compares its SHA-256. The target's
/// cached pages are dropped first (after the sync): `BLKFLSBUF` on a block device where we
/// are privileged, `posix_fadvise(DONTNEED)` always; on a block device the reads also use
/// `O_DIRECT`, so what is compared came from the card, not from our own writes.
fn verify(device: &Path, target: &mut Target, bmap: &Bmap) -> Result<(), FlashError> {
    let read_err = |e| FlashError::Read {
        path: device.to_path_buf(),
        source: e,
    };
    if target.is_block_device() {
        if let Err(e) = blkdev::flush_buffers(target.file()) {
            tracing::debug!(device = %device.display(), "BLKFLSBUF: {e} (needs root; DONTNEED and O_DIRECT reads still apply)");
        }
    }
    let _ = nix::fcntl::posix_fadvise(
        target.file(),
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    if target.is_block_device() {
        target.try_direct("the read-back");
    }
    let mut storage = AlignedBuffer::new(BUFFER);
    let buf = storage.as_mut_slice();
    for range in &bmap.ranges {
        let (start, end) = byte_span(range, bmap.image_size);
        let mut hasher = Sha256::new();
        let mut at = start;
        while at < end {
            let n = ((end - at) as usize).min(buf.len());
            target.read_at(&mut buf[..n], at).map_err(read_err)?;
            hasher.update(&buf[..n]);
            at += n as u64;
        }
        if hex::encode(hasher.finalize()) != range.sha256 {
            return Err(FlashError::VerifyFailed {
                device: device.to_path_buf(),
                first: range.first,
                last: range.last,
            });
        }
    }
    Ok(())
}

/// Asks the kernel to re-read the new partition table, so `/dev/sdX1…` describe the image
/// (coreos-installer does the same). It needs root; otherwise udev does it when we close the
/// device (its `watch` on block devices), so a refusal is only reported, never an error.
fn reread_partition_table(device: &Path, target: &Target) {
    match blkdev::reread_partitions(target.file()) {
        Ok(()) => tracing::debug!(device = %device.display(), "partition table re-read"),
        Err(nix::errno::Errno::EACCES | nix::errno::Errno::EPERM) => tracing::debug!(
            device = %device.display(),
            "BLKRRPART needs root; udev re-reads the partition table when the device is closed"
        ),
        Err(e) => tracing::warn!(
            device = %device.display(),
            "the kernel did not re-read the new partition table ({e}); the image is written and verified, but its partitions may not show until you unplug and replug the card (or run: sudo partprobe {})",
            device.display()
        ),
    }
}

fn progress_bar(show: bool, total: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}
