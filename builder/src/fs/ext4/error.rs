//! The one error type of `fs::ext4`: every variant names the image file and, where there is
//! one, the path inside the filesystem, so a user can tell which edit of which image failed.

use std::path::PathBuf;

/// Why an ext4 operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Ext4Error {
    /// The image could not be opened as an ext4 filesystem at all (not ext4, zeroed or
    /// truncated superblock, wrong offset, unreadable file).
    #[error("{image}: cannot open the ext4 filesystem at byte offset {offset}: {message}; check that the offset points at the root partition and that the image is not truncated or corrupt")]
    Open {
        /// Image file.
        image: PathBuf,
        /// Byte offset of the partition.
        offset: u64,
        /// libext2fs' explanation.
        message: String,
    },
    /// The filesystem uses features this module does not know to be safe to read and write.
    #[error("{image}: the ext4 filesystem uses unsupported feature(s) {}; piimg refuses to edit it rather than risk corrupting it (use a base image made with the usual mkfs.ext4 defaults)", features.join(", "))]
    UnsupportedFeatures {
        /// Image file.
        image: PathBuf,
        /// Feature names as e2fsprogs spells them.
        features: Vec<String>,
    },
    /// The filesystem is not clean (journal needs replay, errors recorded, orphans pending).
    #[error("{image}: the ext4 filesystem is not clean ({reason}); run `e2fsck -fy '{}?offset={offset}'` on a copy and use that as the base", image.display())]
    NotClean {
        /// Image file.
        image: PathBuf,
        /// Byte offset of the partition.
        offset: u64,
        /// What is unclean.
        reason: String,
    },
    /// A path argument is not an absolute, normal path.
    #[error("{image}: invalid path {path:?} inside the filesystem: {reason}")]
    InvalidPath {
        /// Image file.
        image: PathBuf,
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The path (or one of its parent directories) does not exist.
    #[error("{image}: {path} does not exist in the ext4 filesystem")]
    NotFound {
        /// Image file.
        image: PathBuf,
        /// Path inside the filesystem.
        path: String,
    },
    /// A directory piimg writes into is a symlink in the base that leads nowhere (issue 15.14).
    #[error("{image}: {path} is a symlink in the base (to `{target}`) where piimg needs a directory, and its target does not exist; piimg does not create directories through symlinks in the base: use a base where {path} is a real directory, or remove the symlink from the base")]
    SymlinkInBase {
        /// Image file.
        image: PathBuf,
        /// Path inside the filesystem.
        path: String,
        /// Where the symlink points.
        target: String,
    },
    /// The path exists but is the wrong kind of file for the operation.
    #[error("{image}: {path} is {found}, expected {expected}")]
    WrongKind {
        /// Image file.
        image: PathBuf,
        /// Path inside the filesystem.
        path: String,
        /// What the operation needs ("a directory", "a regular file", ...).
        expected: &'static str,
        /// What is there.
        found: &'static str,
    },
    /// A file whose recorded size piimg will not read: bigger than the whole filesystem (a
    /// damaged or hostile inode), or bigger than what piimg holds in memory for a file it
    /// parses (a command line, an fstab, the account files: kilobytes).
    #[error("{image}: {path} in the image claims {size} bytes, more than {limit} bytes ({why}); check the base with `e2fsck -fn` and use an undamaged image")]
    FileTooLarge {
        /// Image file.
        image: PathBuf,
        /// Path inside the filesystem.
        path: String,
        /// The size the inode records.
        size: u64,
        /// The bound it exceeds.
        limit: u64,
        /// Which bound.
        why: &'static str,
    },
    /// A write was attempted on a filesystem opened read-only.
    #[error("{image}: cannot change {path}: the ext4 filesystem was opened read-only")]
    ReadOnly {
        /// Image file.
        image: PathBuf,
        /// Path inside the filesystem.
        path: String,
    },
    /// The filesystem has too little room; grow the image and the filesystem, then retry.
    #[error("{image}: no space left in the ext4 filesystem writing {path}: about {needed} bytes needed, {free} free; grow the image (and the root filesystem) first")]
    NoSpace {
        /// Image file.
        image: PathBuf,
        /// Path inside the filesystem.
        path: String,
        /// Bytes the write needed (data rounded up to blocks).
        needed: u64,
        /// Bytes free in the filesystem.
        free: u64,
    },
    /// libext2fs reported an error.
    #[error("{image}: {op} {path} failed in libext2fs: {message}{}", host_hint(*code))]
    Lib {
        /// Image file.
        image: PathBuf,
        /// Path inside the filesystem (empty for whole-filesystem operations).
        path: String,
        /// What was being done.
        op: &'static str,
        /// libext2fs/com_err error code.
        code: i64,
        /// The library's message for `code`.
        message: String,
    },
    /// Reading the caller's data or writing to the caller's sink failed.
    #[error("{image}: I/O error while copying {path}: {source}")]
    Io {
        /// Image file.
        image: PathBuf,
        /// Path inside the filesystem.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Growing the filesystem with resize2fs failed.
    #[error("{image}: growing the ext4 filesystem at byte offset {offset} failed: {message}")]
    Grow {
        /// Image file.
        image: PathBuf,
        /// Byte offset of the partition.
        offset: u64,
        /// What went wrong (resize2fs output or spawn error).
        message: String,
    },
}

/// What to do when libext2fs passes on an errno from the disk the image (or its overlay) is
/// written to: the host's disk or limits, not the filesystem inside the image, ran out.
fn host_hint(code: i64) -> &'static str {
    const EFBIG: i64 = 27;
    const ENOSPC: i64 = 28;
    const EDQUOT: i64 = 122;
    match code {
        ENOSPC | EDQUOT | EFBIG => {
            "; the disk holding the output folder is full or a file-size limit was reached: free space there (or raise the limit) and build again"
        }
        _ => "",
    }
}

impl Ext4Error {
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
            Self::Open { image, .. }
            | Self::UnsupportedFeatures { image, .. }
            | Self::NotClean { image, .. }
            | Self::InvalidPath { image, .. }
            | Self::NotFound { image, .. }
            | Self::WrongKind { image, .. }
            | Self::SymlinkInBase { image, .. }
            | Self::FileTooLarge { image, .. }
            | Self::ReadOnly { image, .. }
            | Self::NoSpace { image, .. }
            | Self::Lib { image, .. }
            | Self::Io { image, .. }
            | Self::Grow { image, .. } => {
                if real.iter().any(|r| r == image) {
                    *image = shown.to_path_buf();
                }
            }
        }
    }
}
