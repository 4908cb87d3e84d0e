//! Writes a byte stream into a file so that runs of zero blocks become holes, because a
//! decompressed base is mostly empty space and writing it would cost disk and time.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

/// Block granularity of hole detection: the page size of every filesystem we meet.
pub(crate) const BLOCK: usize = 4096;
/// How much of the stream is held at once; bounds memory.
const BUFFER: usize = 1 << 20;

/// Why copying a stream into a sparse file stopped.
pub(crate) enum CopyError {
    /// The reader (the decoder) failed.
    Read(io::Error),
    /// The output file failed.
    Write(io::Error),
}

/// Copies `reader` into `out` from offset 0, leaving all-zero 4 KiB blocks as holes, and sets the
/// file length to the number of bytes read. `out` must be empty. Returns that length.
pub(crate) fn copy_sparse(reader: &mut dyn Read, out: &File) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; BUFFER];
    let mut pos: u64 = 0;
    loop {
        let filled = read_full(reader, &mut buf).map_err(CopyError::Read)?;
        if filled == 0 {
            break;
        }
        write_data_blocks(out, pos, &buf[..filled]).map_err(CopyError::Write)?;
        pos += filled as u64;
        if filled < buf.len() {
            break;
        }
    }
    out.set_len(pos).map_err(CopyError::Write)?;
    Ok(pos)
}

/// Reads until `buf` is full or the reader is at its end.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Writes the non-zero blocks of `data` at `base`, each run of them with one call.
fn write_data_blocks(out: &File, base: u64, data: &[u8]) -> io::Result<()> {
    let mut run_start: Option<usize> = None;
    let mut offset = 0;
    for block in data.chunks(BLOCK) {
        if is_zero(block) {
            if let Some(start) = run_start.take() {
                out.write_all_at(&data[start..offset], base + start as u64)?;
            }
        } else if run_start.is_none() {
            run_start = Some(offset);
        }
        offset += block.len();
    }
    if let Some(start) = run_start {
        out.write_all_at(&data[start..], base + start as u64)?;
    }
    Ok(())
}

/// True when every byte is zero. An OR-fold without early exit, because the compiler turns it
/// into wide vector operations, which beats a byte-by-byte scan on 4 KiB blocks.
pub(crate) fn is_zero(block: &[u8]) -> bool {
    block.iter().fold(0u8, |acc, &b| acc | b) == 0
}
