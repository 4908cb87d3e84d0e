//! The one error type of the output stage. Messages name the file, say what went wrong and
//! what to do, because they end up verbatim on the terminal.

use std::io;
use std::path::PathBuf;

/// Why an output could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
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
    /// An output name that cannot be used for a file.
    #[error(
        "{name:?} is not a usable output name; use a node name made of letters, digits and '-'"
    )]
    BadName {
        /// The name as given.
        name: String,
    },
}

pub(crate) fn read_error(path: &std::path::Path, source: io::Error) -> OutputError {
    OutputError::Read {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn write_error(path: &std::path::Path, source: io::Error) -> OutputError {
    OutputError::Write {
        path: path.to_path_buf(),
        source,
    }
}
