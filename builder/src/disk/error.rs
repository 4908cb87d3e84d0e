//! Errors of the partition-table layer. Each names the image file, says what is wrong and how
//! to fix it, because the user usually only sees this one line.

use std::io;
use std::path::PathBuf;

/// Why a partition table could not be read, or an image could not be grown.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The image could not be opened, read or written.
    #[error("{path}: {action}: {source}")]
    Io {
        /// The image file.
        path: PathBuf,
        /// What was being done ("cannot read", "cannot extend the file", …).
        action: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file is too small to hold any partition table.
    #[error(
        "{path}: only {size} bytes, too small to be a disk image (truncated or not an image?)"
    )]
    TooSmall {
        /// The image file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
    /// No MBR boot signature (0x55AA) in the first sector.
    #[error("{path}: no partition table (no MBR boot signature in the first sector); is this a raw disk image, not a compressed or single-filesystem file?")]
    NoTable {
        /// The image file.
        path: PathBuf,
    },
    /// The table is there but inconsistent: bad entries, overlaps, partitions past the end.
    #[error("{path}: corrupt {table} partition table: {reason}; recreate the image or repair it with sfdisk")]
    Garbage {
        /// The image file.
        path: PathBuf,
        /// "MBR" or "GPT".
        table: &'static str,
        /// What exactly is wrong.
        reason: String,
    },
    /// A partition (or the GPT backup header) lies beyond the end of the file.
    #[error("{path}: truncated image: {what} ends at byte {end} but the file has only {size} bytes; download or copy the image again")]
    Truncated {
        /// The image file.
        path: PathBuf,
        /// What lies beyond the end.
        what: String,
        /// Where it ends, in bytes.
        end: u64,
        /// The file size in bytes.
        size: u64,
    },
    /// Neither GPT header (or its partition array) passes its CRC check.
    #[error("{path}: GPT {what} fails its CRC32 check in both the primary and the backup copy; the image is damaged, recreate it")]
    GptCrc {
        /// The image file.
        path: PathBuf,
        /// "header" or "partition array".
        what: &'static str,
    },
    /// The primary GPT is damaged; writing would have to start from the backup.
    #[error("{path}: the primary GPT header is damaged (only the backup is valid); repair it first with `sfdisk --relocate gpt-bak-std` or recreate the image")]
    GptPrimaryDamaged {
        /// The image file.
        path: PathBuf,
    },
    /// Both GPT copies are intact (their CRCs check out) but say different things: which one
    /// is right cannot be told from the disk, and a firmware or kernel may read either.
    #[error("{path}: the primary and the backup GPT disagree ({differences}); both copies are intact, so it is not clear which partitions the disk has. If the primary is right (`sfdisk --dump {path}` shows it), rewrite the backup from it with `sfdisk --relocate gpt-bak-std {path}` (or `sgdisk -e {path}`); otherwise recreate the image")]
    GptDisagree {
        /// The image file.
        path: PathBuf,
        /// What differs, in words.
        differences: String,
    },
    /// The requested partition number does not exist.
    #[error("{path}: there is no partition {number}; `piimg inspect` lists the partitions")]
    NoSuchPartition {
        /// The image file.
        path: PathBuf,
        /// The partition number asked for.
        number: u32,
    },
    /// Only the partition that ends last on the disk can grow into the new space.
    #[error("{path}: partition {number} is not the last on the disk (partition {last} is); only the last partition can be grown")]
    NotLast {
        /// The image file.
        path: PathBuf,
        /// The partition asked for.
        number: u32,
        /// The partition that actually ends last.
        last: u32,
    },
    /// The requested size is not usable for growing.
    #[error("{path}: cannot grow to {requested} bytes: {reason}")]
    BadSize {
        /// The image file.
        path: PathBuf,
        /// The requested new size in bytes.
        requested: u64,
        /// Why not, and what would work.
        reason: String,
    },
    /// The table uses something this code does not handle (rather than guess, refuse).
    #[error("{path}: unsupported {table} partition table: {reason}")]
    Unsupported {
        /// The image file.
        path: PathBuf,
        /// "MBR" or "GPT".
        table: &'static str,
        /// What is not supported.
        reason: String,
    },
}

impl DiskError {
    /// Wraps an I/O error with the image path and what was being done.
    pub(crate) fn io(path: &std::path::Path, action: &'static str, source: io::Error) -> Self {
        DiskError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }

    /// A corrupt-table error.
    pub(crate) fn garbage(
        path: &std::path::Path,
        table: &'static str,
        reason: impl Into<String>,
    ) -> Self {
        DiskError::Garbage {
            path: path.to_path_buf(),
            table,
            reason: reason.into(),
        }
    }
}

impl DiskError {
    /// The same error naming `shown` (the file the user gave, such as `--base c/x.img`)
    /// wherever it names one of `real`, piimg's own copies of it (the cached base, the node's
    /// work image), so a message points at a file the user knows. Issue 15.8.
    pub fn shown_as(mut self, real: &[&std::path::Path], shown: &std::path::Path) -> Self {
        self.rename(real, shown);
        self
    }

    /// [`Self::shown_as`] in place.
    pub fn rename(&mut self, real: &[&std::path::Path], shown: &std::path::Path) {
        match self {
            Self::Io { path, .. }
            | Self::TooSmall { path, .. }
            | Self::NoTable { path, .. }
            | Self::Garbage { path, .. }
            | Self::Truncated { path, .. }
            | Self::GptCrc { path, .. }
            | Self::GptPrimaryDamaged { path, .. }
            | Self::GptDisagree { path, .. }
            | Self::NoSuchPartition { path, .. }
            | Self::NotLast { path, .. }
            | Self::BadSize { path, .. }
            | Self::Unsupported { path, .. } => {
                if real.iter().any(|r| r == path) {
                    *path = shown.to_path_buf();
                }
            }
        }
    }
}
