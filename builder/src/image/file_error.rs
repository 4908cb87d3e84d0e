//! Why reading or writing an image file failed: the one error of the image-file plumbing
//! (extents, sparse copies, chunk reads), which the layers above wrap in their own.

use std::io;
use std::path::{Path, PathBuf};

/// An image file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// An input image could not be read.
    #[error("cannot read {path}: {source}; check that the image exists and is readable")]
    Read {
        /// The file that failed.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// An output could not be written (full disk, file-size limit, permissions).
    #[error("cannot write {path}: {source}; free space (or raise the file-size limit) in the output folder, check it is writable, and build again")]
    Write {
        /// The file that failed.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
}

pub(crate) fn read_error(path: &Path, source: io::Error) -> FileError {
    FileError::Read {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn write_error(path: &Path, source: io::Error) -> FileError {
    FileError::Write {
        path: path.to_path_buf(),
        source,
    }
}
