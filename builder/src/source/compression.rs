//! How a downloaded file is compressed, told by its magic bytes, never by its name (cached
//! downloads are named by digest). Below both the decoders (`decompress`) and the QCOW2
//! converter (`qcow2`), which each need it.

use super::error::read_error;
use super::SourceError;
use std::fmt;
use std::io::{self, Read};
use std::path::Path;

/// How a file is compressed, as told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A raw image (or anything without a known magic).
    None,
    /// `.xz` (one or more concatenated streams, possibly multi-block).
    Xz,
    /// `.gz` (one or more members).
    Gzip,
    /// `.zst` (one or more frames).
    Zstd,
    /// A QCOW2 disk image (Ubuntu's amd64 cloud image, whatever its name), converted with
    /// `qemu-img` (see `source/qcow2.rs`).
    Qcow2,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "raw",
            Compression::Xz => ".xz",
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zst",
            Compression::Qcow2 => "QCOW2",
        })
    }
}

pub(crate) const XZ_MAGIC: &[u8] = &[0xFD, b'7', b'z', b'X', b'Z', 0x00];
const GZIP_MAGIC: &[u8] = &[0x1F, 0x8B];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xB5, 0x2F, 0xFD];
/// QCOW2's magic (`QFI\xfb`, qemu docs/interop/qcow2.txt).
pub(crate) const QCOW2_MAGIC: &[u8] = b"QFI\xfb";

impl Compression {
    /// Detects the format from the first bytes of a file.
    pub fn from_magic(head: &[u8]) -> Compression {
        if head.starts_with(XZ_MAGIC) {
            Compression::Xz
        } else if head.starts_with(GZIP_MAGIC) {
            Compression::Gzip
        } else if head.starts_with(ZSTD_MAGIC) {
            Compression::Zstd
        } else if head.starts_with(QCOW2_MAGIC) {
            Compression::Qcow2
        } else {
            Compression::None
        }
    }

    /// Detects the format of the file at `path` by reading its first bytes.
    pub fn detect(path: &Path) -> Result<Compression, SourceError> {
        let mut file =
            crate::input_file::open_regular(path).map_err(|source| read_error(path, source))?;
        let mut head = [0u8; 6];
        let mut filled = 0;
        while filled < head.len() {
            match file.read(&mut head[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(read_error(path, source)),
            }
        }
        Ok(Compression::from_magic(&head[..filled]))
    }
}
