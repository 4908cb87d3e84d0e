//! The `FICLONE` ioctl: the only `unsafe` in the output stage, kept to this one call.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

// FICLONE is _IOW(0x94, 9, int): the source descriptor is passed by value.
nix::ioctl_write_int!(ficlone, 0x94, 9);

/// Makes `dst` share all of `src`'s blocks (copy-on-write), when the filesystem supports it
/// (btrfs, XFS, bcachefs…). Fails with EOPNOTSUPP, EXDEV or EINVAL where it cannot.
pub(crate) fn clone_file(src: &File, dst: &File) -> io::Result<()> {
    let src_fd = src.as_raw_fd();
    // SAFETY: both descriptors are owned by live `File`s for the whole call; FICLONE reads
    // only its integer argument and writes nothing into our memory.
    let result = unsafe { ficlone(dst.as_raw_fd(), src_fd as nix::sys::ioctl::ioctl_param_type) };
    result.map(|_| ()).map_err(io::Error::from)
}
