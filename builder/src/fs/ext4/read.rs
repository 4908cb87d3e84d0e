//! Lookups and reads: resolve paths, stat inodes, read files, directories and symlinks.

use super::path::FsPath;
use super::{ffi, kind_of_mode, sys, DirEntry, Ext4, Ext4Error, FileKind, Stat};
use std::io::Write;

/// Chunk size for streaming file data out of the filesystem.
const READ_CHUNK: usize = 1 << 20;

/// The most [`Ext4::read_file`] holds in memory: the files piimg parses (a command line,
/// fstab, the account files, a build record) are kilobytes.
pub const MAX_IN_MEMORY: u64 = 16 << 20;

impl Ext4 {
    /// The inode number `path` names, `None` when it (or a parent) does not exist.
    /// Symlinks in parent directories are followed inside the image; the last one is not.
    pub fn lookup(&self, path: &str) -> Result<Option<u32>, Ext4Error> {
        let path = self.parse(path)?;
        self.resolve(&path)
    }

    pub(super) fn resolve(&self, path: &FsPath) -> Result<Option<u32>, Ext4Error> {
        if path.is_root() {
            return Ok(Some(sys::ROOT_INO));
        }
        match self.fs.namei(&path.to_cstring()) {
            Ok(ino) => Ok(Some(ino)),
            Err(code) if is_missing(code) => Ok(None),
            Err(code) => Err(self.lib_err("looking up", path, code)),
        }
    }

    /// Resolves `path` through a trailing symlink too (`path/.`), for directories such as a
    /// usr-merged `/lib`; `None` when missing, `WrongKind` when it is not a directory.
    pub(super) fn resolve_dir(&self, path: &FsPath) -> Result<Option<u32>, Ext4Error> {
        if path.is_root() {
            return Ok(Some(sys::ROOT_INO));
        }
        let mut c = path.to_cstring().into_bytes();
        c.extend_from_slice(b"/.");
        let c = std::ffi::CString::new(c).map_err(|_| self.not_found(path))?;
        match self.fs.namei(&c) {
            Ok(ino) => Ok(Some(ino)),
            Err(code) if code == ffi::EXT2_ET_NO_DIRECTORY as sys::Errcode => {
                let kind = self
                    .stat_path(path)
                    .map(|s| s.kind)
                    .unwrap_or(FileKind::Other);
                Err(self.wrong_kind(path, "a directory", kind))
            }
            Err(code) if is_missing(code) => Ok(None),
            Err(code) => Err(self.lib_err("looking up", path, code)),
        }
    }

    pub(super) fn existing(&self, path: &FsPath) -> Result<u32, Ext4Error> {
        self.resolve(path)?.ok_or_else(|| self.not_found(path))
    }

    /// Kind, mode, owner, size and mtime of `path` (the final symlink is not followed).
    pub fn stat(&self, path: &str) -> Result<Stat, Ext4Error> {
        let path = self.parse(path)?;
        self.stat_path(&path)
    }

    pub(super) fn stat_path(&self, path: &FsPath) -> Result<Stat, Ext4Error> {
        let ino = self.existing(path)?;
        self.stat_ino(path, ino)
    }

    pub(super) fn stat_ino(&self, path: &FsPath, ino: u32) -> Result<Stat, Ext4Error> {
        let inode = self
            .fs
            .read_inode(ino)
            .map_err(|code| self.lib_err("reading the inode of", path, code))?;
        let mode = u32::from(inode.mode());
        Ok(Stat {
            kind: kind_of_mode(mode),
            mode,
            uid: inode.uid(),
            gid: inode.gid(),
            size: inode.size(),
            mtime: inode.mtime(),
            ino,
        })
    }

    /// The whole content of a regular file, at most [`MAX_IN_MEMORY`] bytes: what piimg reads
    /// into memory are small text files it parses, and an inode's size field is not trusted
    /// (a damaged one may claim terabytes of holes, which would be read as zeros).
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, Ext4Error> {
        let parsed = self.parse(path)?;
        let stat = self.stat_path(&parsed)?;
        if stat.kind == FileKind::File && stat.size > MAX_IN_MEMORY {
            return Err(self.too_large(
                &parsed,
                stat.size,
                MAX_IN_MEMORY,
                "what piimg reads of a file it parses",
            ));
        }
        let mut out = Vec::with_capacity(stat.size as usize);
        self.read_file_to(path, &mut out)?;
        Ok(out)
    }

    /// Streams a regular file's content into `out` in 1 MiB chunks; returns the byte count.
    /// A file claiming more bytes than the whole filesystem holds is refused before any read,
    /// so a lying size costs neither memory nor hours of zeros.
    pub fn read_file_to(&self, path: &str, out: &mut dyn Write) -> Result<u64, Ext4Error> {
        let path = self.parse(path)?;
        let stat = self.stat_path(&path)?;
        if stat.kind != FileKind::File {
            return Err(self.wrong_kind(&path, "a regular file", stat.kind));
        }
        let fs_bytes = self.fs.super_info().blocks.saturating_mul(self.block_size);
        if stat.size > fs_bytes {
            return Err(self.too_large(
                &path,
                stat.size,
                fs_bytes,
                "the size of the whole filesystem",
            ));
        }
        self.copy_out(&path, stat.ino, out)
    }

    fn too_large(&self, path: &FsPath, size: u64, limit: u64, why: &'static str) -> Ext4Error {
        Ext4Error::FileTooLarge {
            image: self.image.clone(),
            path: path.to_string(),
            size,
            limit,
            why,
        }
    }

    fn copy_out(&self, path: &FsPath, ino: u32, out: &mut dyn Write) -> Result<u64, Ext4Error> {
        let mut file = self
            .fs
            .open_file(ino, false)
            .map_err(|code| self.lib_err("opening", path, code))?;
        let mut buf = vec![0u8; READ_CHUNK];
        let mut total = 0u64;
        loop {
            let got = file
                .read(&mut buf)
                .map_err(|code| self.lib_err("reading", path, code))?;
            if got == 0 {
                break;
            }
            out.write_all(&buf[..got]).map_err(|source| Ext4Error::Io {
                image: self.image.clone(),
                path: path.to_string(),
                source,
            })?;
            total += got as u64;
        }
        file.close()
            .map_err(|code| self.lib_err("closing", path, code))?;
        Ok(total)
    }

    /// The entries of a directory, sorted by name, without `.` and `..`.
    /// A symlink to a directory is followed (as `ls path/` would).
    pub fn read_dir(&self, path: &str) -> Result<Vec<DirEntry>, Ext4Error> {
        let path = self.parse(path)?;
        let ino = self
            .resolve_dir(&path)?
            .ok_or_else(|| self.not_found(&path))?;
        let raw = self
            .fs
            .read_dir(ino)
            .map_err(|code| self.lib_err("listing", &path, code))?;
        let mut entries = Vec::with_capacity(raw.len());
        for (name, ino, file_type) in raw {
            let kind = match u32::from(file_type) {
                ffi::EXT2_FT_REG_FILE => FileKind::File,
                ffi::EXT2_FT_DIR => FileKind::Dir,
                ffi::EXT2_FT_SYMLINK => FileKind::Symlink,
                ffi::EXT2_FT_UNKNOWN => {
                    let inode = self
                        .fs
                        .read_inode(ino)
                        .map_err(|code| self.lib_err("listing", &path, code))?;
                    kind_of_mode(u32::from(inode.mode()))
                }
                _ => FileKind::Other,
            };
            entries.push(DirEntry {
                name: String::from_utf8_lossy(&name).into_owned(),
                kind,
                ino,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// The target of a symlink, fast (stored in the inode) or slow (stored in a block).
    pub fn read_link(&self, path: &str) -> Result<String, Ext4Error> {
        let path = self.parse(path)?;
        let stat = self.stat_path(&path)?;
        if stat.kind != FileKind::Symlink {
            return Err(self.wrong_kind(&path, "a symlink", stat.kind));
        }
        let inode = self
            .fs
            .read_inode(stat.ino)
            .map_err(|code| self.lib_err("reading the inode of", &path, code))?;
        let target = if inode.is_fast_symlink() {
            let bytes = inode.block_bytes();
            let len = (inode.size() as usize).min(bytes.len());
            bytes[..len].to_vec()
        } else {
            let mut out = Vec::new();
            self.copy_out(&path, stat.ino, &mut out)?;
            out
        };
        Ok(String::from_utf8_lossy(&target).into_owned())
    }
}

/// Error codes that mean "no such path" rather than a real failure.
pub(super) fn is_missing(code: sys::Errcode) -> bool {
    code == ffi::EXT2_ET_FILE_NOT_FOUND as sys::Errcode
        || code == ffi::EXT2_ET_NO_DIRECTORY as sys::Errcode
}
