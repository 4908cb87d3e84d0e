//! Starts a node image as a copy of the cached base that costs (almost) nothing: a reflink
//! where the filesystem can, else a copy of only the data extents, so holes stay holes.

use super::extents::extents_of;
use super::file_error::{read_error, write_error, FileError};
use super::reflink::clone_file;
use nix::fcntl::copy_file_range;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// How a copy was made, for logs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneMethod {
    /// Shared blocks (`FICLONE`): instant, no space used until written.
    Reflink,
    /// Data extents copied with `copy_file_range` (in-kernel), holes left as holes.
    SparseCopy,
}

/// Copies `src` to `dst` (created with mode 0600 or truncated), as a reflink when possible,
/// else as a sparse copy. `src` is only read.
pub fn clone_sparse(src: &Path, dst: &Path) -> Result<CloneMethod, FileError> {
    let input = File::open(src).map_err(|e| read_error(src, e))?;
    let output = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dst)
        .map_err(|e| write_error(dst, e))?;
    clone_into(&input, &output).map_err(|e| match e {
        Side::Read(e) => read_error(src, e),
        Side::Write(e) => write_error(dst, e),
    })
}

/// Which side of a copy failed.
pub(crate) enum Side {
    Read(io::Error),
    Write(io::Error),
}

/// Copies an open file into an open, empty file: reflink, else sparse copy.
pub(crate) fn clone_into(src: &File, dst: &File) -> Result<CloneMethod, Side> {
    match clone_file(src, dst) {
        Ok(()) => {
            tracing::debug!("copied by reflink");
            return Ok(CloneMethod::Reflink);
        }
        Err(e) => tracing::debug!(error = %e, "no reflink here; sparse copy"),
    }
    let size = src.metadata().map_err(Side::Read)?.len();
    dst.set_len(size).map_err(Side::Write)?;
    for extent in extents_of(src).map_err(Side::Read)? {
        copy_range(src, dst, extent.offset, extent.len)?;
    }
    Ok(CloneMethod::SparseCopy)
}

/// Copies one byte range in the kernel, falling back to read/write where the kernel refuses
/// (e.g. across some filesystems).
fn copy_range(src: &File, dst: &File, offset: u64, len: u64) -> Result<(), Side> {
    let mut done = 0u64;
    while done < len {
        let mut off_in = to_i64(offset + done)?;
        let mut off_out = off_in;
        let want = usize::try_from(len - done)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want) {
            Ok(0) => return Err(Side::Read(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => done += n as u64,
            Err(nix::errno::Errno::EINTR) => {}
            Err(
                nix::errno::Errno::EXDEV
                | nix::errno::Errno::ENOSYS
                | nix::errno::Errno::EOPNOTSUPP
                | nix::errno::Errno::EINVAL,
            ) => return copy_range_userspace(src, dst, offset + done, len - done),
            // The kernel does not say which side failed; ENOSPC/EFBIG/EDQUOT are the
            // destination's, everything else is blamed on the destination too since reads of a
            // regular file rarely fail.
            Err(e) => return Err(Side::Write(e.into())),
        }
    }
    Ok(())
}

fn copy_range_userspace(src: &File, dst: &File, offset: u64, len: u64) -> Result<(), Side> {
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let n = usize::try_from(len - done)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        src.read_exact_at(&mut buf[..n], offset + done)
            .map_err(Side::Read)?;
        dst.write_all_at(&buf[..n], offset + done)
            .map_err(Side::Write)?;
        done += n as u64;
    }
    Ok(())
}

fn to_i64(v: u64) -> Result<i64, Side> {
    i64::try_from(v).map_err(|_| Side::Read(io::Error::other("offset beyond 2^63")))
}
