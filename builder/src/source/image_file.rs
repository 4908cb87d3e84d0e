//! Opens an image for reading whatever its compression, so `piimg inspect` takes what users
//! download as well as what piimg writes.

use super::decompress::{decompress_to, read_error, write_error};
use super::{Compression, SourceError};
use std::path::{Path, PathBuf};

/// A raw image ready to read. For a compressed input it is a temporary decompressed copy that
/// is deleted when this value is dropped; a raw input is the user's file itself, which must
/// only be read.
#[derive(Debug)]
pub struct ImageFile {
    path: PathBuf,
    compression: Compression,
    _temp: Option<tempfile::TempPath>,
}

impl ImageFile {
    /// The raw image to open (read-only).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How the input was compressed.
    pub fn compression(&self) -> Compression {
        self.compression
    }
}

/// Opens `path`: a raw image is used as-is; a compressed one is decompressed (sparse) into a
/// temporary file under the system temp folder that lives as long as the returned value.
pub fn open_image(path: &Path) -> Result<ImageFile, SourceError> {
    let compression = Compression::detect(path)?;
    if compression == Compression::None {
        crate::input_file::open_regular(path).map_err(|e| read_error(path, e))?;
        return Ok(ImageFile {
            path: path.to_path_buf(),
            compression,
            _temp: None,
        });
    }
    let temp = tempfile::Builder::new()
        .prefix("piimg-image-")
        .suffix(".img")
        .tempfile()
        .map_err(|e| write_error(&std::env::temp_dir(), e))?
        .into_temp_path();
    decompress_to(path, &temp)?;
    Ok(ImageFile {
        path: temp.to_path_buf(),
        compression,
        _temp: Some(temp),
    })
}
