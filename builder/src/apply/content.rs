//! The bytes a `Content` stands for: text in memory, or a file streamed while hashing, so a
//! file that changed since the plan recorded its digest is caught without reading it twice.

use crate::plan::Content;
use sha2::{Digest, Sha256};
use std::io::{self, Read};

/// The in-memory bytes of `Text` and `Secret` content; `None` for `Source`.
pub fn inline(content: &Content) -> Option<&[u8]> {
    match content {
        Content::Text(t) => Some(t.as_bytes()),
        Content::Secret(s) => Some(s.expose().as_bytes()),
        Content::Source { .. } => None,
    }
}

/// A reader that hashes what passes through it.
pub struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Hashing<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The lowercase hex SHA-256 of everything read so far.
    pub fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A writer that only hashes (to digest a file inside the image without holding it).
#[derive(Default)]
pub struct HashWriter(Sha256);

impl HashWriter {
    /// The lowercase hex SHA-256 of everything written.
    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

impl io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Whether `data` has the SHA-256 `sha256` (hex, any case).
pub fn digest_matches(data: &[u8], sha256: &str) -> bool {
    sha256_hex(data).eq_ignore_ascii_case(sha256)
}
