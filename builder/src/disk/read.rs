//! The entry point that reads an image's partition table: the first sector says which kind
//! (a protective MBR means GPT), and that kind's reader fills the [`Layout`].

use super::{gpt, mbr, DiskError, Layout, SECTOR_SIZE};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

impl Layout {
    /// Reads and checks the partition table of an image file.
    ///
    /// A protective MBR (type 0xEE) means GPT. Never panics on garbage: every inconsistency is
    /// a [`DiskError`] naming the file.
    pub fn read(image: &Path) -> Result<Layout, DiskError> {
        let mut file = File::open(image).map_err(|e| DiskError::io(image, "cannot open", e))?;
        let size = file
            .metadata()
            .map_err(|e| DiskError::io(image, "cannot stat", e))?
            .len();
        let sector0 = read_sector0(&mut file, image, size)?;
        if mbr::has_protective_entry(&sector0) {
            gpt::read(&mut file, image, size).map(|t| t.layout)
        } else {
            mbr::read(&mut file, image, size)
        }
    }
}

/// Reads the first sector, refusing files too small to be images and sectors without the
/// 0x55AA boot signature.
pub(crate) fn read_sector0(
    file: &mut File,
    image: &Path,
    size: u64,
) -> Result<[u8; 512], DiskError> {
    if size < SECTOR_SIZE {
        return Err(DiskError::TooSmall {
            path: image.to_path_buf(),
            size,
        });
    }
    let mut sector0 = [0u8; 512];
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_exact(&mut sector0))
        .map_err(|e| DiskError::io(image, "cannot read the first sector", e))?;
    if sector0[510..512] != [0x55, 0xAA] {
        return Err(DiskError::NoTable {
            path: image.to_path_buf(),
        });
    }
    Ok(sector0)
}
