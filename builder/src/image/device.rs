//! A byte-addressed image store that filesystem code can read and write without knowing
//! whether it is a plain file or an overlay.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Storage for a whole disk image. Shared (`Arc`) between the filesystem layers of one build,
/// hence `&self` methods: implementations synchronise internally.
pub trait Device: Send + Sync {
    /// The image's name in messages (a path, or a description of the overlay).
    fn name(&self) -> &Path;
    /// Size of the image in bytes; fixed for the device's life.
    fn size(&self) -> u64;
    /// Fills `buf` from `offset`; a read reaching past [`Device::size`] fails with
    /// `UnexpectedEof` and fills nothing useful.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`; a write reaching past [`Device::size`] fails whole.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes the writes so far visible to readers of the underlying files.
    fn flush(&self) -> io::Result<()>;
}

/// Checks that `len` bytes at `offset` lie inside an image of `size` bytes.
pub(crate) fn check_range(name: &Path, size: u64, offset: u64, len: usize) -> io::Result<()> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{}: {len} bytes at offset {offset} pass the end of the image ({size} bytes)",
                name.display()
            ),
        )),
    }
}

/// A plain image file as a [`Device`].
#[derive(Debug)]
pub struct FileDevice {
    file: File,
    path: PathBuf,
    size: u64,
}

impl FileDevice {
    /// Opens `path` for reading, and writing when `writable`.
    pub fn open(path: &Path, writable: bool) -> io::Result<FileDevice> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)?;
        let size = file.metadata()?.len();
        Ok(FileDevice {
            file,
            path: path.to_path_buf(),
            size,
        })
    }
}

impl Device for FileDevice {
    fn name(&self) -> &Path {
        &self.path
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(&self.path, self.size, offset, buf.len())?;
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        check_range(&self.path, self.size, offset, buf.len())?;
        self.file.write_all_at(buf, offset)
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

/// `Read + Write + Seek` over a shared [`Device`], for code written against streams (fatfs,
/// the partition-table readers). Reads stop at the end of the image; writes past it fail.
pub struct DeviceCursor {
    device: Arc<dyn Device>,
    pos: u64,
}

impl DeviceCursor {
    /// A cursor at offset 0 of `device`.
    pub fn new(device: Arc<dyn Device>) -> DeviceCursor {
        DeviceCursor { device, pos: 0 }
    }
}

impl Read for DeviceCursor {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.device.size();
        if self.pos >= size {
            return Ok(0);
        }
        let n = usize::try_from(size - self.pos).map_or(buf.len(), |room| room.min(buf.len()));
        self.device.read_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for DeviceCursor {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.device.write_at(buf, self.pos)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.device.flush()
    }
}

impl Seek for DeviceCursor {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.device.size().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let n = new.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the image",
            )
        })?;
        self.pos = n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_device_refuses_ranges_past_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.img");
        std::fs::write(&path, [7u8; 100]).unwrap();
        let dev = FileDevice::open(&path, true).unwrap();
        let mut buf = [0u8; 10];
        assert!(dev.read_at(&mut buf, 95).is_err());
        assert!(dev.write_at(&buf, 91).is_err());
        dev.write_at(&[1, 2], 98).unwrap();
        let mut cursor = DeviceCursor::new(Arc::new(dev));
        cursor.seek(SeekFrom::Start(96)).unwrap();
        let mut rest = Vec::new();
        cursor.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, [7, 7, 1, 2]);
    }
}
