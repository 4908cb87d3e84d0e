//! The one error type of the sources stage. Every message names the file or URL, what is wrong
//! and what the user can do about it, because these errors end up verbatim on the terminal.

use super::Compression;
use std::io;
use std::path::PathBuf;

/// Why a source could not be read, fetched, verified, cached or decompressed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The input file could not be opened or read.
    #[error("cannot read {path}: {source}; check that the file exists and is readable")]
    Read {
        /// The file that failed.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// An output or cache file could not be created, written or renamed.
    #[error("cannot write {path}: {source}; check free space and write permission in its folder")]
    Write {
        /// The file that failed.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A compressed input ends before its stream does.
    #[error(
        "{path}: truncated {format} stream ({detail}); the file is incomplete: download it again"
    )]
    Truncated {
        /// The compressed file.
        path: PathBuf,
        /// Which format it was detected as.
        format: Compression,
        /// The decoder's words.
        detail: String,
    },
    /// A compressed input holds data its decoder rejects.
    #[error("{path}: corrupt {format} stream ({detail}); the file is damaged: download it again and check its SHA-256")]
    Corrupt {
        /// The compressed file.
        path: PathBuf,
        /// Which format it was detected as.
        format: Compression,
        /// The decoder's words.
        detail: String,
    },
    /// A compressed image whose first decoded sector holds no partition table: not a disk
    /// image at all, stopped before decoding the rest (issue 15.10).
    #[error("{path}: the {format} stream does not hold a disk image: {detail}; check that this is the image you meant (a whole-disk image such as Raspberry Pi OS's `.img.xz`, not a single filesystem or another file)")]
    NotADiskImage {
        /// The file as the user named it (path or URL).
        path: PathBuf,
        /// Which format it was detected as.
        format: Compression,
        /// What the first sector lacks.
        detail: String,
    },
    /// A compressed image that decodes past the disk its own partition table describes: a
    /// damaged file or a decompression bomb, stopped there (issue 15.10).
    #[error("{path}: the {format} stream decodes past the end of the disk its own partition table describes (the {table} partition table ends at byte {table_end}; stopped after {limit} bytes): the file is damaged or a decompression bomb; download the image again and check its SHA-256")]
    BeyondTable {
        /// The file as the user named it (path or URL).
        path: PathBuf,
        /// Which format it was detected as.
        format: Compression,
        /// MBR or GPT.
        table: crate::disk::TableKind,
        /// Where the table says the disk ends.
        table_end: u64,
        /// Where decoding stopped.
        limit: u64,
    },
    /// A base whose partition table is refused, before it is hashed, copied or cached (the
    /// disk error names the file as the user gave it).
    #[error(transparent)]
    BaseTable(Box<crate::disk::DiskError>),
    /// A download or local file does not have the pinned SHA-256.
    #[error("{location}: SHA-256 mismatch: expected {expected}, got {actual}; the file is not the pinned one (fix the pin in the catalogue if the new file is trusted)")]
    DigestMismatch {
        /// URL or path of the source.
        location: String,
        /// The pinned digest.
        expected: String,
        /// The digest of what was read.
        actual: String,
    },
    /// The server answered with an error status or the connection failed.
    #[error("{url}: download failed: {detail}; check the URL and the network, then run again (a partial download resumes)")]
    Http {
        /// The URL.
        url: String,
        /// Status line or transport error.
        detail: String,
    },
    /// The server closed the connection before sending the whole body.
    #[error("{url}: download truncated: got {got} of {expected} bytes; run again to resume it")]
    TruncatedDownload {
        /// The URL.
        url: String,
        /// Bytes the server announced.
        expected: u64,
        /// Bytes we have.
        got: u64,
    },
    /// Offline mode and the pinned digest is not in the cache.
    #[error("offline: {location} (sha256 {sha256}) is not in the cache at {cache}; run once without --offline to fetch it")]
    OfflineMissing {
        /// URL of the source.
        location: String,
        /// The pinned digest that is missing.
        sha256: String,
        /// The cache folder looked in.
        cache: PathBuf,
    },
    /// Offline mode with a URL that has no pinned digest: nothing to look up in the cache.
    #[error("offline: {location} has no pinned sha256, so it cannot be found in the cache; pin its sha256 or run without --offline")]
    OfflineUnpinned {
        /// URL of the source.
        location: String,
    },
    /// A pinned digest that is not 64 hex digits.
    #[error("{location}: sha256 {value:?} is not 64 hexadecimal digits; copy the digest from `sha256sum`")]
    BadDigest {
        /// URL or path of the source.
        location: String,
        /// The value as given.
        value: String,
    },
    /// A location that is neither an existing path nor an http(s) URL.
    #[error("{location}: unsupported source; give a local path or an http:// or https:// URL")]
    BadLocation {
        /// The location as given.
        location: String,
    },
    /// A QCOW2 image that reads data from other files.
    #[error("{path}: this QCOW2 image {reason}; piimg takes only self-contained images: flatten it with `qemu-img convert -O raw` and pass the raw file")]
    Qcow2NotSelfContained {
        /// The image.
        path: PathBuf,
        /// What makes it depend on other files.
        reason: String,
    },
    /// A helper program could not be run.
    #[error("{path}: cannot run {tool} ({detail}); install it (Debian and Ubuntu: `apt install qemu-utils`) and run again")]
    Tool {
        /// The program.
        tool: &'static str,
        /// The file it was to read.
        path: PathBuf,
        /// Why it could not run.
        detail: String,
    },
    /// No cache folder could be determined.
    #[error("no cache folder: neither XDG_CACHE_HOME nor HOME is set; set XDG_CACHE_HOME")]
    NoCacheDir,
}

pub(crate) fn read_error(path: &std::path::Path, source: io::Error) -> SourceError {
    SourceError::Read {
        path: PathBuf::from(path),
        source,
    }
}

pub(crate) fn write_error(path: &std::path::Path, source: io::Error) -> SourceError {
    SourceError::Write {
        path: PathBuf::from(path),
        source,
    }
}
