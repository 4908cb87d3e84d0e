//! A copy-on-write overlay: a node image as the cached base (never written) plus the blocks
//! the build wrote, kept in a sparse delta file at their own offsets and marked in a bitmap.
//!
//! Why: a compressed node image differs from its base in about 70 MB of a 3 GB image. Copying
//! the whole base for every node costs a full read and write of it (and libext2fs' unix io
//! manager then syncs those gigabytes on open); with the overlay the copy is gone and the
//! bitmap tells publishing exactly which chunks changed, so nothing is read to find out.
//!
//! Granularity is [`BLOCK`] bytes, the block size of the filesystems the work folder lives on:
//! a block written in place in a sparse copy becomes a data block of that copy, and a block
//! written here becomes a marked block, so [`Overlay::data_extents`] equals what
//! `SEEK_DATA`/`SEEK_HOLE` would report for the same edits made in a copy.

use super::device::{check_range, Device};
use super::extents::Extent;
use super::file_error::{read_error, write_error, FileError};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Bytes per tracked block.
pub const BLOCK: u64 = 4096;

/// A node image as the cached base plus the blocks written over it.
#[derive(Debug)]
pub struct Overlay {
    base: File,
    base_path: PathBuf,
    delta: File,
    delta_path: PathBuf,
    name: PathBuf,
    size: u64,
    /// One bit per [`BLOCK`]: set once the block's bytes live in the delta file.
    written: Mutex<Vec<u64>>,
}

impl Overlay {
    /// An overlay over `base` (opened read-only, never written) whose written blocks go to a
    /// new sparse file at `delta`, mode 0600 (the edits include the join token), at their
    /// own offsets (the file is only as long as the last written block). `name` is how
    /// messages call the node image.
    pub fn create(base: &Path, delta: &Path, name: &Path) -> io::Result<Overlay> {
        let base_file = File::open(base)?;
        let size = base_file.metadata()?.len();
        let delta_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(delta)?;
        let blocks = size.div_ceil(BLOCK);
        Ok(Overlay {
            base: base_file,
            base_path: base.to_path_buf(),
            delta: delta_file,
            delta_path: delta.to_path_buf(),
            name: name.to_path_buf(),
            size,
            written: Mutex::new(vec![0; blocks.div_ceil(64) as usize]),
        })
    }

    /// The base image the overlay reads unwritten blocks from.
    pub fn base_path(&self) -> &Path {
        &self.base_path
    }

    /// The sparse file holding the written blocks.
    pub fn delta_path(&self) -> &Path {
        &self.delta_path
    }

    fn bits(&self) -> MutexGuard<'_, Vec<u64>> {
        // A panic while holding the lock leaves only whole bits behind: still consistent.
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The byte ranges written (whole blocks, merged, in order).
    pub fn written_runs(&self) -> Vec<Extent> {
        let bits = self.bits();
        let blocks = self.size.div_ceil(BLOCK);
        let mut runs: Vec<Extent> = Vec::new();
        let mut b = 0;
        while b < blocks {
            if !is_set(&bits, b) {
                b += 1;
                continue;
            }
            let start = b;
            while b < blocks && is_set(&bits, b) {
                b += 1;
            }
            let offset = start * BLOCK;
            runs.push(Extent {
                offset,
                len: (b * BLOCK).min(self.size) - offset,
            });
        }
        runs
    }

    /// Whether any block in `offset..offset + len` was written.
    pub fn any_written(&self, offset: u64, len: u64) -> bool {
        if len == 0 {
            return false;
        }
        let bits = self.bits();
        (offset / BLOCK..=(offset + len - 1) / BLOCK).any(|b| is_set(&bits, b))
    }

    /// The data extents the node image would have as a sparse file: the base's (given, as
    /// `SEEK_DATA` found them) merged with the written blocks.
    pub fn data_extents(&self, base_extents: &[Extent]) -> Vec<Extent> {
        merge(base_extents, &self.written_runs())
    }

    /// Overwrites the parts of `buf` (the base's bytes at `offset`) that the node wrote.
    pub fn patch(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check_range(&self.name, self.size, offset, buf.len())?;
        let bits = self.bits();
        self.read_runs(&bits, offset, buf, true)
    }

    /// Writes the node image as a sparse file at `to`: a reflink or sparse copy of the base,
    /// then the written blocks. For raw output, or when an edit needs a real file (growing).
    pub fn materialize(&self, to: &Path) -> Result<(), FileError> {
        super::copy::clone_sparse(&self.base_path, to)?;
        let out = OpenOptions::new()
            .write(true)
            .open(to)
            .map_err(|e| write_error(to, e))?;
        let mut buf = vec![0u8; 1 << 20];
        for run in self.written_runs() {
            let mut at = run.offset;
            while at < run.end() {
                let n = (run.end() - at).min(buf.len() as u64) as usize;
                self.delta
                    .read_exact_at(&mut buf[..n], at)
                    .map_err(|e| read_error(&self.delta_path, e))?;
                out.write_all_at(&buf[..n], at)
                    .map_err(|e| write_error(to, e))?;
                at += n as u64;
            }
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset`, block runs from the delta or the base; with
    /// `only_written`, leaves unwritten runs of `buf` as they are.
    fn read_runs(
        &self,
        bits: &[u64],
        offset: u64,
        buf: &mut [u8],
        only_written: bool,
    ) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        let mut at = offset;
        while at < end {
            let written = is_set(bits, at / BLOCK);
            let mut next = (at / BLOCK + 1) * BLOCK;
            while next < end && is_set(bits, next / BLOCK) == written {
                next += BLOCK;
            }
            let to = next.min(end);
            let part = &mut buf[(at - offset) as usize..(to - offset) as usize];
            if written {
                self.delta.read_exact_at(part, at)?;
            } else if !only_written {
                self.base.read_exact_at(part, at)?;
            }
            at = to;
        }
        Ok(())
    }
}

impl Device for Overlay {
    fn name(&self) -> &Path {
        &self.name
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(&self.name, self.size, offset, buf.len())?;
        let bits = self.bits();
        self.read_runs(&bits, offset, buf, false)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        check_range(&self.name, self.size, offset, buf.len())?;
        if buf.is_empty() {
            return Ok(());
        }
        let end = offset + buf.len() as u64;
        let (first, last) = (offset / BLOCK, (end - 1) / BLOCK);
        let mut bits = self.bits();
        // A block written only in part takes the rest of its bytes from the base first.
        for b in [first, last] {
            let (from, to) = (b * BLOCK, ((b + 1) * BLOCK).min(self.size));
            if !is_set(&bits, b) && (from < offset || to > end) {
                let mut block = vec![0u8; (to - from) as usize];
                self.base.read_exact_at(&mut block, from)?;
                self.delta.write_all_at(&block, from)?;
                set(&mut bits, b);
            }
        }
        self.delta.write_all_at(buf, offset)?;
        for b in first..=last {
            set(&mut bits, b);
        }
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

fn is_set(bits: &[u64], block: u64) -> bool {
    bits.get((block / 64) as usize)
        .is_some_and(|w| w & (1 << (block % 64)) != 0)
}

fn set(bits: &mut [u64], block: u64) {
    if let Some(w) = bits.get_mut((block / 64) as usize) {
        *w |= 1 << (block % 64);
    }
}

/// The union of two ordered lists of extents, merged where they touch or overlap.
fn merge(a: &[Extent], b: &[Extent]) -> Vec<Extent> {
    let mut all: Vec<Extent> = a.iter().chain(b).copied().collect();
    all.sort_by_key(|e| e.offset);
    let mut out: Vec<Extent> = Vec::with_capacity(all.len());
    for e in all {
        match out.last_mut() {
            Some(last) if e.offset <= last.end() => {
                let end = last.end().max(e.end());
                last.len = end - last.offset;
            }
            _ => out.push(e),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(base_bytes: &[u8]) -> (tempfile::TempDir, Overlay) {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.img");
        std::fs::write(&base, base_bytes).unwrap();
        let o = Overlay::create(&base, &dir.path().join("delta"), Path::new("node.img")).unwrap();
        (dir, o)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn reads_the_base_until_written_then_the_writes() {
        let base = pattern(5 * BLOCK as usize + 100);
        let (_d, o) = setup(&base);
        let mut model = base.clone();
        // Partial block, a write across a block boundary, a whole block, the short last block.
        for (at, len, v) in [
            (10u64, 5usize, 1u8),
            (4090, 20, 2),
            (8192, 4096, 3),
            (20490, 6, 4),
        ] {
            o.write_at(&vec![v; len], at).unwrap();
            model[at as usize..at as usize + len].fill(v);
        }
        let mut all = vec![0u8; model.len()];
        o.read_at(&mut all, 0).unwrap();
        assert_eq!(all, model);
        let mut mid = vec![0u8; 5000];
        o.read_at(&mut mid, 3000).unwrap();
        assert_eq!(mid, model[3000..8000]);
        assert!(o.write_at(&[0; 2], model.len() as u64 - 1).is_err());
        assert_eq!(
            o.written_runs(),
            vec![
                Extent {
                    offset: 0,
                    len: 3 * BLOCK
                },
                Extent {
                    offset: 5 * BLOCK,
                    len: 100
                }
            ]
        );
        assert!(o.any_written(BLOCK * 2, 1));
        assert!(!o.any_written(BLOCK * 3, BLOCK * 2));
        // The base file is untouched.
        assert_eq!(std::fs::read(o.base_path()).unwrap(), base);
    }

    #[test]
    fn materialize_equals_the_same_writes_made_in_a_copy() {
        let base = pattern(64 * BLOCK as usize);
        let (d, o) = setup(&base);
        let copy = d.path().join("copy.img");
        std::fs::write(&copy, &base).unwrap();
        let f = OpenOptions::new().write(true).open(&copy).unwrap();
        for (at, len) in [(100u64, 9000usize), (40000, 1), (200000, 60000)] {
            let data = vec![0xA5; len];
            o.write_at(&data, at).unwrap();
            f.write_all_at(&data, at).unwrap();
        }
        let out = d.path().join("node.img");
        o.materialize(&out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&copy).unwrap());
        let mut patched = base[..8192].to_vec();
        o.patch(0, &mut patched).unwrap();
        assert_eq!(patched, std::fs::read(&copy).unwrap()[..8192]);
    }

    #[test]
    fn extents_merge_where_they_touch() {
        let e = |offset, len| Extent { offset, len };
        assert_eq!(
            merge(&[e(0, 10), e(100, 10)], &[e(8, 4), e(110, 5), e(200, 1)]),
            vec![e(0, 12), e(100, 15), e(200, 1)]
        );
    }
}
