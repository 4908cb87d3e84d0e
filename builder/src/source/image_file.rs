//! Opens an image for reading whatever its compression, so `piimg inspect` takes what users
//! download as well as what piimg writes.

use super::decompress::{decompress_to_locked, DiskImage};
use super::error::{read_error, write_error};
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
    /// Held while `_temp` exists, so no other run's sweep takes it (see `leftovers`).
    _lock: Option<(crate::leftovers::EntryLock, crate::leftovers::EntryLock)>,
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
            _lock: None,
        });
    }
    let temp_dir = std::env::temp_dir();
    crate::leftovers::sweep(&temp_dir, crate::leftovers::TEMP);
    let mut builder = tempfile::Builder::new();
    builder.prefix("piimg-image-").suffix(".img");
    let (temp, lock) =
        crate::leftovers::temp_file(&builder, &temp_dir).map_err(|e| write_error(&temp_dir, e))?;
    let temp = temp.into_temp_path();
    // The decoded file replaces the one made above, and brings its own lock.
    // Checked as a disk image: bounded by its own table, refused without one (issue 15.10).
    let disk = Some(DiskImage { shown: path });
    let (_, lock) =
        decompress_to_locked(path, &temp, disk).map(|(size, new)| (size, (lock, new)))?;
    Ok(ImageFile {
        path: temp.to_path_buf(),
        compression,
        _temp: Some(temp),
        _lock: Some(lock),
    })
}
