//! Why `piimg flash` refused or failed. Every message names the file or device, what is wrong
//! and what to do, since it is printed as is.

use std::io;
use std::path::PathBuf;

/// A refusal or failure of `piimg flash`.
#[derive(Debug, thiserror::Error)]
pub enum FlashError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}; check that it exists and is readable")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The target could not be opened or written.
    #[error("cannot write {path}: {source}; check the device is present, writable by you (e.g. group 'disk'), and not in use")]
    Write {
        /// The target.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The image has no block map next to it.
    #[error("{image}: no block map at {bmap}; build the image with piimg (it writes one), or pass --bmap FILE")]
    NoBmap {
        /// The image.
        image: PathBuf,
        /// Where the map was looked for.
        bmap: PathBuf,
    },
    /// The block map is unusable.
    #[error(transparent)]
    BadBmap(#[from] crate::bmap::BmapError),
    /// The image's bytes do not match its map (wrong map, or a damaged image).
    #[error("{image}: blocks {first}-{last} do not match the checksum in {bmap}; the image or its map is damaged or they do not belong together; nothing past that range was written, rebuild or re-download the image")]
    ImageMismatch {
        /// The image.
        image: PathBuf,
        /// The map.
        bmap: PathBuf,
        /// First block of the range.
        first: u64,
        /// Last block of the range.
        last: u64,
    },
    /// The image ended before the map said it would.
    #[error("{image}: ends before {size} bytes, the size {bmap} gives; the image is truncated or the map belongs to another image")]
    ImageTooShort {
        /// The image.
        image: PathBuf,
        /// The map.
        bmap: PathBuf,
        /// Size the map gives.
        size: u64,
    },
    /// Read-back after writing found different bytes.
    #[error("{device}: verify failed, blocks {first}-{last} read back differ from the image; the card may be failing or counterfeit: try another one")]
    VerifyFailed {
        /// The target.
        device: PathBuf,
        /// First block.
        first: u64,
        /// Last block.
        last: u64,
    },
    /// The target is smaller than the image.
    #[error(
        "{device}: holds {device_size} bytes but the image needs {image_size}; use a larger card"
    )]
    TooSmall {
        /// The target.
        device: PathBuf,
        /// Its size.
        device_size: u64,
        /// The image size.
        image_size: u64,
    },
    /// The kernel refused exclusive access to the block device.
    #[error("refusing to write {device}: the kernel reports it busy (EBUSY on exclusive open): a partition of it is mounted or active swap, something is stacked on it (LVM, dm-crypt, md RAID), or a program has it open; see what with: lsblk -o NAME,TYPE,MOUNTPOINTS {device} and fuser -v {device}; release it (umount, swapoff, vgchange -an, cryptsetup close, mdadm --stop, or quit the program) and retry")]
    Busy {
        /// The target.
        device: PathBuf,
    },
    /// A target piimg will not write to.
    #[error("refusing to write {device}: {why}")]
    Refused {
        /// The target.
        device: PathBuf,
        /// Why, with what to do.
        why: String,
    },
}
