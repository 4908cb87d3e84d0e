//! The two block-device ioctls `piimg flash` sends after writing, as coreos-installer does:
//! `BLKFLSBUF` (drop the device's cached pages, so the read-back comes from the card) and
//! `BLKRRPART` (re-read the partition table, so `/dev/sdX1…` match what was just written).
//! nix offers them only as its ioctl macros, whose calls are `unsafe`; this module holds the
//! only `unsafe` of `flash`, two calls on a file descriptor we own and keep open.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;

// <linux/fs.h>: BLKRRPART _IO(0x12, 95), BLKFLSBUF _IO(0x12, 97).
nix::ioctl_none!(blkrrpart, 0x12, 95);
nix::ioctl_none!(blkflsbuf, 0x12, 97);

/// Flushes and drops the block device's buffer cache (needs CAP_SYS_ADMIN).
pub(super) fn flush_buffers(device: &File) -> nix::Result<()> {
    // SAFETY: BLKFLSBUF takes no argument; the descriptor is open for the call's duration.
    unsafe { blkflsbuf(device.as_raw_fd()) }.map(|_| ())
}

/// Asks the kernel to re-read the disk's partition table (needs CAP_SYS_ADMIN; EBUSY while
/// a partition is open).
pub(super) fn reread_partitions(device: &File) -> nix::Result<()> {
    // SAFETY: BLKRRPART takes no argument; the descriptor is open for the call's duration.
    unsafe { blkrrpart(device.as_raw_fd()) }.map(|_| ())
}
