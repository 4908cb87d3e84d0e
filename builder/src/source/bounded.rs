//! Decompression of a disk image, bounded by the image's own partition table (issue 15.10).
//!
//! A disk image holds nothing its table does not account for: partitions end where the table
//! says, a GPT's backup header is the last sector. So the decoder's first bytes (the table)
//! say how much output there can be, and a stream that goes on far past that is a damaged file
//! or a decompression bomb (an `.xz` of 200 GiB of zeros is a few MB). Decoding stops there,
//! instead of running for minutes; a stream whose first sector holds no table at all stops at
//! once.

use crate::disk::{table_end, HeadError, TableKind, HEAD_BYTES};
use std::io::{self, Read};

/// Output a stream may carry past its table's end, at least: images are sometimes padded to
/// a round size past their last partition.
pub(crate) const MARGIN_MIN: u64 = 64 << 20;

/// How far a stream may decode for a table that ends at `end`: the end, plus 1/16 of it or
/// [`MARGIN_MIN`], whichever is more.
pub(crate) fn limit_for(end: u64) -> u64 {
    end.saturating_add(MARGIN_MIN.max(end / 16))
}

/// Why a bounded decode stopped; carried inside the `io::Error` the reader returns.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BoundError {
    /// The first sector holds no partition table.
    #[error("{0}")]
    NoTable(HeadError),
    /// The stream decoded past what its table accounts for.
    #[error("decoded past {limit} bytes; the {kind} partition table ends at byte {table_end}")]
    Beyond {
        /// MBR or GPT.
        kind: TableKind,
        /// Where the table says the disk ends.
        table_end: u64,
        /// Where decoding stopped.
        limit: u64,
    },
}

impl BoundError {
    /// The bound error inside `err`, when it is one.
    pub(crate) fn of(err: &io::Error) -> Option<&BoundError> {
        err.get_ref()?.downcast_ref::<BoundError>()
    }
}

/// A reader of a decompressed disk image that reads the table from the first bytes and then
/// fails once the output passes [`limit_for`] of its end.
pub(crate) struct TableBounded<R> {
    inner: R,
    /// The first bytes, read ahead to find the table; handed out before anything else.
    head: Vec<u8>,
    /// How much of `head` has been handed out.
    served: usize,
    /// Where the table ends and where decoding stops, once the head has been read.
    bound: Option<(TableKind, u64, u64)>,
    /// Bytes read from `inner` so far (the head included).
    total: u64,
}

impl<R: Read> TableBounded<R> {
    /// Wraps a decoder.
    pub(crate) fn new(inner: R) -> Self {
        TableBounded {
            inner,
            head: Vec::with_capacity(HEAD_BYTES),
            served: 0,
            bound: None,
            total: 0,
        }
    }

    /// Reads the head (or the whole stream, if shorter) and the bound it gives.
    fn read_head(&mut self) -> io::Result<(TableKind, u64, u64)> {
        let mut chunk = [0u8; HEAD_BYTES];
        while self.head.len() < HEAD_BYTES {
            let want = HEAD_BYTES - self.head.len();
            match self.inner.read(&mut chunk[..want]) {
                Ok(0) => break,
                Ok(n) => self.head.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.total = self.head.len() as u64;
        let table = table_end(&self.head).map_err(|e| io::Error::other(BoundError::NoTable(e)))?;
        let bound = (table.kind, table.end, limit_for(table.end));
        tracing::debug!(kind = %table.kind, table_end = table.end, limit = bound.2, "decoding bounded by the partition table");
        self.bound = Some(bound);
        Ok(bound)
    }
}

impl<R: Read> Read for TableBounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (kind, table_end, limit) = match self.bound {
            Some(bound) => bound,
            None => self.read_head()?,
        };
        if self.served < self.head.len() {
            let n = buf.len().min(self.head.len() - self.served);
            buf[..n].copy_from_slice(&self.head[self.served..self.served + n]);
            self.served += n;
            return Ok(n);
        }
        let n = self.inner.read(buf)?;
        self.total += n as u64;
        if self.total > limit {
            return Err(io::Error::other(BoundError::Beyond {
                kind,
                table_end,
                limit,
            }));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(end_sectors: u32, len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        bytes[446 + 4] = 0x83;
        bytes[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        bytes[446 + 12..446 + 16].copy_from_slice(&(end_sectors - 1).to_le_bytes());
        bytes[510] = 0x55;
        bytes[511] = 0xAA;
        bytes
    }

    #[test]
    fn an_image_within_its_table_reads_whole() {
        let bytes = image(2048, 2048 * 512);
        let mut out = Vec::new();
        TableBounded::new(&bytes[..])
            .read_to_end(&mut out)
            .expect("within the bound");
        assert_eq!(out, bytes);
    }

    #[test]
    fn output_past_the_margin_stops() {
        let bytes = image(2048, (MARGIN_MIN + 2 * 2048 * 512) as usize);
        let err = TableBounded::new(&bytes[..])
            .read_to_end(&mut Vec::new())
            .expect_err("past the bound");
        assert!(matches!(
            BoundError::of(&err),
            Some(BoundError::Beyond {
                table_end: 1_048_576,
                ..
            })
        ));
    }

    #[test]
    fn a_stream_without_a_table_stops_at_once() {
        let zeros = vec![0u8; 1 << 20];
        let mut reader = TableBounded::new(&zeros[..]);
        let err = reader.read(&mut [0u8; 16]).expect_err("no table");
        assert!(matches!(
            BoundError::of(&err),
            Some(BoundError::NoTable(HeadError::NoTable))
        ));
        assert_eq!(reader.total, HEAD_BYTES as u64);
    }
}
