//! The open flash target and how its bytes reach the medium: through the page cache with the
//! caller's periodic `fdatasync`, or with `O_DIRECT` (`--direct`, like `dd oflag=direct` and
//! bmaptool's default), which needs buffers, offsets and lengths aligned to the device's
//! block size. Where the kernel refuses `O_DIRECT` (EINVAL: a filesystem without it, or an
//! unaligned tail), the target says so once and carries on buffered rather than failing a
//! flash that can still be done safely.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// Alignment of direct I/O buffers and offsets: the largest logical block size in common use
/// (SD cards and USB disks are 512, 4Kn disks 4096), and the `.bmap` block size.
pub(super) const DIRECT_ALIGN: usize = 4096;

/// The target file or block device, open for reading and writing.
#[derive(Debug)]
pub(super) struct Target {
    file: File,
    path: PathBuf,
    block_device: bool,
    /// Whether `O_DIRECT` is set on the descriptor now.
    direct: bool,
    /// Whether a direct write was refused, so the data went through the page cache.
    fell_back: bool,
    /// For a regular-file target: the temporary file beside it that is written and verified,
    /// then renamed over the target, so a killed flash never leaves a half-written file under
    /// the name the user gave.
    pending: Option<tempfile::TempPath>,
}

impl Target {
    pub(super) fn new(file: File, path: &Path, block_device: bool) -> Target {
        Target {
            file,
            path: path.to_path_buf(),
            block_device,
            direct: false,
            fell_back: false,
            pending: None,
        }
    }

    /// A regular-file target written through `pending`, renamed to `path` by [`Target::commit`].
    pub(super) fn pending_file(file: File, path: &Path, pending: tempfile::TempPath) -> Target {
        Target {
            pending: Some(pending),
            ..Target::new(file, path, false)
        }
    }

    /// Puts a pending file in place (after it was written and verified); nothing for a device.
    pub(super) fn commit(&mut self) -> io::Result<()> {
        match self.pending.take() {
            Some(p) => {
                self.file.sync_all()?;
                p.persist(&self.path).map_err(|e| e.error)
            }
            None => Ok(()),
        }
    }

    pub(super) fn file(&self) -> &File {
        &self.file
    }

    pub(super) fn is_block_device(&self) -> bool {
        self.block_device
    }

    /// Whether every write so far bypassed the page cache.
    pub(super) fn wrote_direct(&self) -> bool {
        self.direct && !self.fell_back
    }

    /// Turns `O_DIRECT` on; where the kernel refuses it, says so and returns false.
    pub(super) fn try_direct(&mut self, purpose: &str) -> bool {
        match self.set_direct(true) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(
                    target = %self.path.display(),
                    "O_DIRECT refused for {purpose} ({e}; the filesystem does not support it): using the page cache{}",
                    if purpose == "writing" { " with periodic fdatasync" } else { "" }
                );
                false
            }
        }
    }

    fn set_direct(&mut self, on: bool) -> nix::Result<()> {
        let flags = OFlag::from_bits_retain(fcntl(&self.file, FcntlArg::F_GETFL)?);
        let flags = if on {
            flags | OFlag::O_DIRECT
        } else {
            flags - OFlag::O_DIRECT
        };
        fcntl(&self.file, FcntlArg::F_SETFL(flags))?;
        self.direct = on;
        Ok(())
    }

    /// Writes `data` at `pos`; a direct write the kernel refuses is redone through the page
    /// cache, and direct I/O stays off from then on.
    pub(super) fn write_at(&mut self, data: &[u8], pos: u64) -> io::Result<()> {
        match self.file.write_all_at(data, pos) {
            Err(e) if self.direct && e.raw_os_error() == Some(nix::libc::EINVAL) => {
                tracing::warn!(
                    target = %self.path.display(),
                    "O_DIRECT write of {} bytes at offset {pos} refused (EINVAL: not aligned to the device's or filesystem's block size); writing the rest through the page cache with periodic fdatasync",
                    data.len()
                );
                self.set_direct(false).map_err(io::Error::from)?;
                self.fell_back = true;
                self.file.write_all_at(data, pos)
            }
            other => other,
        }
    }

    /// Reads `buf.len()` bytes at `pos`; an unaligned direct read (the image's tail) is done
    /// through the page cache, which the caller has emptied of this file's pages.
    pub(super) fn read_at(&mut self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        match self.file.read_exact_at(buf, pos) {
            Err(e) if self.direct && e.raw_os_error() == Some(nix::libc::EINVAL) => {
                tracing::debug!(
                    target = %self.path.display(),
                    pos,
                    len = buf.len(),
                    "unaligned read-back through the page cache"
                );
                self.set_direct(false).map_err(io::Error::from)?;
                let result = self.file.read_exact_at(buf, pos);
                // Later ranges are aligned again; a failure to go back only costs the cache.
                let _ = self.set_direct(true);
                result
            }
            other => other,
        }
    }
}

/// A heap buffer whose start is [`DIRECT_ALIGN`]-aligned (a `Vec<u8>` alone is only
/// byte-aligned), without `unsafe`: a slice of a slightly larger vector.
pub(super) struct AlignedBuffer {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuffer {
    /// `len` bytes (a multiple of [`DIRECT_ALIGN`] keeps every full chunk aligned).
    pub(super) fn new(len: usize) -> AlignedBuffer {
        let storage = vec![0u8; len + DIRECT_ALIGN];
        // align_offset may give up (usize::MAX); an unaligned buffer then only costs the
        // direct I/O (the kernel refuses it and the target falls back).
        let start = match storage.as_ptr().align_offset(DIRECT_ALIGN) {
            n if n <= DIRECT_ALIGN => n,
            _ => 0,
        };
        AlignedBuffer {
            storage,
            start,
            len,
        }
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_refusing_o_direct_falls_back() {
        // procfs has no direct I/O: the kernel refuses O_DIRECT with EINVAL, like a
        // filesystem without it would for a target file.
        let file = File::open("/proc/self/stat").expect("open /proc/self/stat");
        let mut target = Target::new(file, Path::new("/proc/self/stat"), false);
        assert!(!target.try_direct("writing"));
        assert!(!target.wrote_direct());
        let mut buf = [0u8; 1];
        target
            .read_at(&mut buf, 0)
            .expect("buffered read still works");
    }

    #[test]
    fn aligned_buffer_is_aligned() {
        for len in [DIRECT_ALIGN, 4 << 20] {
            let mut b = AlignedBuffer::new(len);
            let s = b.as_mut_slice();
            assert_eq!(s.len(), len);
            assert_eq!(s.as_ptr() as usize % DIRECT_ALIGN, 0);
        }
    }
}
