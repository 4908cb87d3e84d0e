//! The data ranges of a sparse file, found with `SEEK_DATA`/`SEEK_HOLE` so that copying,
//! compressing and mapping an image never read its holes.

use super::file_error::{read_error, FileError};
use nix::errno::Errno;
use nix::unistd::{lseek, Whence};
use std::fs::File;
use std::io;
use std::path::Path;

/// One run of data in a file (it may contain zeros; holes are never inside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Byte offset of the first data byte.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Extent {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// The data extents of the file at `path`, in order. A filesystem without hole reporting
/// reports the whole file as one extent, which is correct, only slower.
pub fn data_extents(path: &Path) -> Result<Vec<Extent>, FileError> {
    let file = File::open(path).map_err(|e| read_error(path, e))?;
    extents_of(&file).map_err(|e| read_error(path, e))
}

/// The data extents of an open file, in order.
pub fn extents_of(file: &File) -> io::Result<Vec<Extent>> {
    let size = file.metadata()?.len();
    let mut extents = Vec::new();
    let mut pos: u64 = 0;
    while pos < size {
        let start = match lseek(file, to_off(pos)?, Whence::SeekData) {
            Ok(off) => from_off(off)?,
            Err(Errno::ENXIO) => break,
            Err(e) => return Err(e.into()),
        };
        if start >= size {
            break;
        }
        let end = match lseek(file, to_off(start)?, Whence::SeekHole) {
            Ok(off) => from_off(off)?.min(size),
            Err(Errno::ENXIO) => size,
            Err(e) => return Err(e.into()),
        };
        if end <= start {
            break;
        }
        extents.push(Extent {
            offset: start,
            len: end - start,
        });
        pos = end;
    }
    Ok(extents)
}

fn to_off(pos: u64) -> io::Result<i64> {
    i64::try_from(pos).map_err(|_| io::Error::other("offset beyond 2^63"))
}

fn from_off(off: i64) -> io::Result<u64> {
    u64::try_from(off).map_err(|_| io::Error::other("negative offset from lseek"))
}
