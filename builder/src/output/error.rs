//! The one error type of the output stage. Messages name the file, say what went wrong and
//! what to do, because they end up verbatim on the terminal.

use std::io;

/// Why an output could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// An image file could not be read or written.
    #[error(transparent)]
    File(#[from] crate::image::FileError),
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
    crate::image::read_error(path, source).into()
}

pub(crate) fn write_error(path: &std::path::Path, source: io::Error) -> OutputError {
    crate::image::write_error(path, source).into()
}
