//! File digests, for "the input is byte-identical afterwards" and reproducibility checks.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io;
use std::path::Path;

/// The lowercase hex SHA-256 of a file's bytes, streamed so big sparse images stay out of RAM.
pub fn sha256_file(path: &Path) -> String {
    let mut file =
        File::open(path).unwrap_or_else(|e| panic!("{}: cannot open to hash: {e}", path.display()));
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)
        .unwrap_or_else(|e| panic!("{}: cannot read to hash: {e}", path.display()));
    hex::encode(hasher.finalize())
}
