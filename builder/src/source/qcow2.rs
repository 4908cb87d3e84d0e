//! QCOW2 bases: Ubuntu's amd64 cloud image is QCOW2 despite its `.img` name. It is turned into
//! a sparse raw file by `qemu-img convert` (Debian's `qemu-utils`), the reference reader of the
//! format, rather than by a QCOW2 reader of our own.
//!
//! Only self-contained images are accepted: a QCOW2 header can name a backing file or an
//! external data file anywhere on the machine, which `qemu-img` would read into the base.

use super::error::read_error;
use super::{Compression, SourceError};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Incompatible-feature bit of QCOW2 v3: guest data lives in another file.
const EXTERNAL_DATA_FILE: u64 = 1 << 2;

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// Refuses a QCOW2 file that is not self-contained (backing file, external data file).
fn check_header(path: &Path) -> Result<(), SourceError> {
    let mut head = [0u8; 80];
    let mut file = std::fs::File::open(path).map_err(|e| read_error(path, e))?;
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(path, e)),
        }
    }
    let truncated = |detail: &str| SourceError::Truncated {
        path: path.to_path_buf(),
        format: Compression::Qcow2,
        detail: detail.into(),
    };
    // Version 2 headers are 72 bytes, version 3 at least 104.
    if filled < 72 {
        return Err(truncated("shorter than a QCOW2 header"));
    }
    let refused = |reason: &str| SourceError::Qcow2NotSelfContained {
        path: path.to_path_buf(),
        reason: reason.into(),
    };
    if be_u64(&head, 8) != 0 {
        return Err(refused("has a backing file"));
    }
    if be_u32(&head, 4) >= 3 {
        if filled < 80 {
            return Err(truncated("shorter than a QCOW2 v3 header"));
        }
        if be_u64(&head, 72) & EXTERNAL_DATA_FILE != 0 {
            return Err(refused("keeps its data in an external file"));
        }
    }
    Ok(())
}

/// An absolute form of `path`, so `qemu-img` never reads a `name:` prefix as a protocol
/// (`json:`, `nbd:`…) instead of a file name.
fn absolute(path: &Path) -> Result<PathBuf, SourceError> {
    std::path::absolute(path).map_err(|e| read_error(path, e))
}

/// Converts the QCOW2 image `input` into the raw file `output` (created or replaced; holes
/// where the image has no data). The caller writes to a temporary name and renames.
pub fn convert(input: &Path, output: &Path) -> Result<(), SourceError> {
    check_header(input)?;
    let out = Command::new("qemu-img")
        .args(["convert", "-q", "-f", "qcow2", "-O", "raw"])
        .arg(absolute(input)?)
        .arg(absolute(output)?)
        .output()
        .map_err(|e| SourceError::Tool {
            tool: "qemu-img",
            path: input.to_path_buf(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(SourceError::Corrupt {
            path: input.to_path_buf(),
            format: Compression::Qcow2,
            detail: format!("qemu-img convert: {}", stderr.trim()),
        });
    }
    Ok(())
}
