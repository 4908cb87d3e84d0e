//! The fixed grid of chunks an image file is read in: the unit of a compressed frame, of a
//! `.bmap`'s range split and of frame reuse, so all three agree on where a chunk starts.

use super::extents::Extent;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Uncompressed bytes per frame. Large enough that frame overhead and lost context cost
/// well under 1% of ratio, small enough that every core has work and memory stays bounded.
pub const CHUNK_SIZE: u64 = 8 << 20;
/// One fixed-size piece of the raw image: the unit that becomes one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Chunk {
    /// Position in the image, counting from 0.
    pub index: u64,
    /// Byte offset in the raw image.
    pub offset: u64,
    /// Length in bytes (`CHUNK_SIZE`, less for the last chunk).
    pub len: u64,
}

/// The chunks of an image of `size` bytes, in order.
pub fn chunks(size: u64) -> impl Iterator<Item = Chunk> {
    (0..size.div_ceil(CHUNK_SIZE)).map(move |index| {
        let offset = index * CHUNK_SIZE;
        Chunk {
            index,
            offset,
            len: CHUNK_SIZE.min(size - offset),
        }
    })
}

/// Reads a chunk of `file` into `buf` (resized to the chunk), reading only data extents and
/// zero-filling holes. Returns whether the chunk is all hole.
pub fn read_chunk(
    file: &File,
    extents: &[Extent],
    chunk: Chunk,
    buf: &mut Vec<u8>,
) -> io::Result<bool> {
    let len = usize::try_from(chunk.len).map_err(io::Error::other)?;
    buf.clear();
    buf.resize(len, 0);
    let end = chunk.offset + chunk.len;
    let first = extents.partition_point(|e| e.end() <= chunk.offset);
    let mut any = false;
    for extent in extents[first..].iter().take_while(|e| e.offset < end) {
        let from = extent.offset.max(chunk.offset);
        let to = extent.end().min(end);
        let at = (from - chunk.offset) as usize;
        let n = (to - from) as usize;
        file.read_exact_at(&mut buf[at..at + n], from)?;
        any = true;
    }
    Ok(!any)
}
