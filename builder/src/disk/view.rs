//! A bounded window onto one partition of an image file, so that filesystem code can treat the
//! partition as a whole device and can never read or write a neighbour by mistake.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::Partition;
use crate::image::{Device, DeviceCursor};
use std::sync::Arc;

/// `Read + Write + Seek` over the byte range `[start, start + len)` of `F`.
///
/// Offsets are relative to the start of the range. Reads at or past the end return 0 bytes
/// (end of file); a write that would reach past the end fails as a whole with an I/O error and
/// writes nothing, so a filesystem bug can never spill into the next partition.
#[derive(Debug)]
pub struct PartitionView<F> {
    inner: F,
    start: u64,
    len: u64,
    pos: u64,
}

impl<F: Seek> PartitionView<F> {
    /// Wraps `inner`; positions the view at its offset 0.
    pub fn new(inner: F, start: u64, len: u64) -> io::Result<Self> {
        if start.checked_add(len).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("partition range {start}+{len} overflows a 64-bit offset"),
            ));
        }
        Ok(PartitionView {
            inner,
            start,
            len,
            pos: 0,
        })
    }
}

impl<F> PartitionView<F> {
    /// The length of the window in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The byte offset of the window in the underlying file.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Gives the underlying file back.
    pub fn into_inner(self) -> F {
        self.inner
    }
}

impl<F: Read + Seek> Read for PartitionView<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let room = self.len - self.pos;
        let want = usize::try_from(room).map_or(buf.len(), |r| r.min(buf.len()));
        self.inner.seek(SeekFrom::Start(self.start + self.pos))?;
        let n = self.inner.read(&mut buf[..want])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<F: Write + Seek> Write for PartitionView<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let end = self.pos.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.len) {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "write of {} bytes at offset {} would pass the end of the partition ({} bytes)",
                    buf.len(),
                    self.pos,
                    self.len
                ),
            ));
        }
        self.inner.seek(SeekFrom::Start(self.start + self.pos))?;
        let n = self.inner.write(buf)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<F> Seek for PartitionView<F> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(n) if self.start.checked_add(n).is_some() => {
                self.pos = n;
                Ok(n)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the partition or past 2^64",
            )),
        }
    }
}

/// Opens the image file and returns a view of partition `p`; `writable` opens it read-write.
///
/// Refuses a partition that ends past the end of the file (a truncated image), so that reads
/// never silently return short data.
pub fn open_partition(
    image: &Path,
    p: &Partition,
    writable: bool,
) -> io::Result<PartitionView<File>> {
    let file = OpenOptions::new()
        .read(true)
        .write(writable)
        .open(image)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: cannot open: {e}", image.display())))?;
    check_within(image, file.metadata()?.len(), p)?;
    PartitionView::new(file, p.start, p.size)
}

/// [`open_partition`] on a [`Device`] (for example the overlay of a compressed build).
pub fn device_partition(
    device: Arc<dyn Device>,
    p: &Partition,
) -> io::Result<PartitionView<DeviceCursor>> {
    check_within(device.name(), device.size(), p)?;
    PartitionView::new(DeviceCursor::new(device), p.start, p.size)
}

/// Refuses a partition that ends past the end of an image of `size` bytes.
fn check_within(image: &Path, size: u64, p: &Partition) -> io::Result<()> {
    let end = p.start.checked_add(p.size);
    if end.is_none_or(|e| e > size) {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{}: partition {} ends past the end of the file ({size} bytes): truncated image",
                image.display(),
                p.number
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn view() -> PartitionView<Cursor<Vec<u8>>> {
        PartitionView::new(Cursor::new((0u8..32).collect()), 8, 8).unwrap()
    }

    #[test]
    fn reads_stop_at_the_end() {
        let mut v = view();
        let mut buf = [0u8; 32];
        assert_eq!(v.read(&mut buf).unwrap(), 8);
        assert_eq!(&buf[..8], &[8, 9, 10, 11, 12, 13, 14, 15]);
        assert_eq!(v.read(&mut buf).unwrap(), 0);
        v.seek(SeekFrom::Start(100)).unwrap();
        assert_eq!(v.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn writes_past_the_end_fail_without_writing() {
        let mut v = view();
        v.seek(SeekFrom::Start(6)).unwrap();
        assert!(v.write(&[0xff; 3]).is_err());
        v.write_all(&[0xee; 2]).unwrap();
        let inner = v.into_inner().into_inner();
        assert_eq!(&inner[14..17], &[0xee, 0xee, 16]);
    }

    #[test]
    fn seeks_are_relative_to_the_window() {
        let mut v = view();
        assert_eq!(v.seek(SeekFrom::End(-2)).unwrap(), 6);
        assert_eq!(v.seek(SeekFrom::Current(1)).unwrap(), 7);
        assert!(v.seek(SeekFrom::Current(-8)).is_err());
        assert!(PartitionView::new(Cursor::new(Vec::<u8>::new()), u64::MAX, 2).is_err());
    }
}
