//! SHA-256 digests as the cache and the catalogue spell them: 64 lowercase hex digits.

use super::error::read_error;
use super::SourceError;
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{self, Read};
use std::path::Path;

/// A validated SHA-256 in lowercase hex; safe to use as a file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    /// Parses a pinned digest (any case, surrounding blanks ignored); `location` names the
    /// source in the error.
    pub fn parse(value: &str, location: &str) -> Result<Sha256Hex, SourceError> {
        let v = value.trim().to_ascii_lowercase();
        if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Sha256Hex(v))
        } else {
            Err(SourceError::BadDigest {
                location: location.to_string(),
                value: value.to_string(),
            })
        }
    }

    /// Wraps a finished hasher.
    pub(crate) fn from_hasher(hasher: Sha256) -> Sha256Hex {
        Sha256Hex(hex::encode(hasher.finalize()))
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Hashes a whole file, streaming.
pub fn sha256_file(path: &Path) -> Result<Sha256Hex, SourceError> {
    let mut file = crate::input_file::open_regular(path).map_err(|e| read_error(path, e))?;
    let mut hasher = Sha256::new();
    hash_into(&mut file, &mut hasher).map_err(|e| read_error(path, e))?;
    Ok(Sha256Hex::from_hasher(hasher))
}

/// Feeds everything `reader` yields into `hasher`; returns the byte count.
pub(crate) fn hash_into(reader: &mut dyn Read, hasher: &mut Sha256) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}
