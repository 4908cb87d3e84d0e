//! Edits: create or replace files and symlinks, make directories, unlink, chmod, chown.
//!
//! Each edit follows what mkfs.ext4 -d (misc/create_inode.c) does, so the result is what
//! e2fsck expects: allocate the inode, link it (expanding the directory when full; libext2fs
//! 1.47 keeps htree indexes), count it in the bitmaps, write it with extents, then the data.
//! The parent directory's mtime/ctime are set to the edit's time, as the kernel would.

use super::path::FsPath;
use super::sys::{Errcode, Inode};
use super::{
    ffi, kind_of_mode, sys, Access, Ext4, Ext4Error, FileKind, Meta, S_IFDIR, S_IFLNK, S_IFMT,
    S_IFREG,
};
use std::ffi::CString;
use std::io::{ErrorKind, Read};

/// Bytes read from the caller and written per libext2fs call.
const WRITE_CHUNK: usize = 4 << 20;

fn c_name(name: &str) -> CString {
    // Names come from FsPath, which rejects NUL bytes.
    CString::new(name).unwrap_or_default()
}

/// Whether the filesystem itself is full. Not ENOSPC: libext2fs never makes that errno up,
/// it only passes it on from the disk holding the image (or its overlay), and growing the
/// image would not help there.
fn is_no_space(code: Errcode) -> bool {
    [ffi::EXT2_ET_BLOCK_ALLOC_FAIL, ffi::EXT2_ET_INODE_ALLOC_FAIL]
        .iter()
        .any(|&c| c as Errcode == code)
}

/// Reads until `buf` is full or the reader ends; returns how much was read.
fn fill(data: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match data.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl Ext4 {
    /// Creates `path` (or replaces a file or symlink there: longer or shorter) with the bytes
    /// of `data`, streamed in 4 MiB chunks, owned and stamped as `meta` says. The parent
    /// directory must exist. A full filesystem gives `NoSpace` and leaves no partial file.
    pub fn write_file(
        &mut self,
        path: &str,
        data: &mut dyn Read,
        meta: &Meta,
    ) -> Result<(), Ext4Error> {
        let path = self.parse(path)?;
        let (parent, name) = self.prepare_edit(&path, meta)?;
        self.remove_existing_non_dir(&path, parent, &name)?;
        let ino = self.create_inode(&path, parent, &name, S_IFREG | (meta.mode & 0o7777), meta)?;
        let mut consumed = 0u64;
        match self.copy_in(ino, data, &mut consumed) {
            Ok(()) => {}
            Err(CopyError::Lib(code)) if is_no_space(code) => {
                let written_and_rest = consumed + self.drain_count(data);
                self.remove_entry(&path, parent, &name, ino)?;
                return Err(Ext4Error::NoSpace {
                    image: self.image.clone(),
                    path: path.to_string(),
                    needed: written_and_rest.div_ceil(self.block_size) * self.block_size,
                    free: self.free_bytes(),
                });
            }
            Err(CopyError::Lib(code)) => return Err(self.lib_err("writing", &path, code)),
            Err(CopyError::Io(source)) => {
                let _ = self.remove_entry(&path, parent, &name, ino);
                return Err(Ext4Error::Io {
                    image: self.image.clone(),
                    path: path.to_string(),
                    source,
                });
            }
        }
        self.touch_dir(&path, parent, meta.mtime)
    }

    /// Creates every missing directory of `path` with `meta`; existing ones are left as they
    /// are (a symlink to a directory counts as existing, as with `mkdir -p`).
    pub fn mkdir_p(&mut self, path: &str, meta: &Meta) -> Result<(), Ext4Error> {
        let path = self.parse(path)?;
        self.check_writable(&path)?;
        self.fs.set_now(meta.mtime);
        for dir in path.ancestors_and_self() {
            if self.resolve_dir(&dir)?.is_some() {
                continue;
            }
            if let Some(ino) = self.resolve(&dir)? {
                // Something that is not a directory is there: a dangling symlink in the base
                // (libext2fs would say "directory already exists"), or a file.
                let st = self.stat_ino(&dir, ino)?;
                if st.kind == FileKind::Symlink {
                    return Err(Ext4Error::SymlinkInBase {
                        image: self.image.clone(),
                        path: dir.to_string(),
                        target: self.read_link(&dir.to_string()).unwrap_or_default(),
                    });
                }
                return Err(self.wrong_kind(&dir, "a directory", st.kind));
            }
            let parent_path = dir.parent();
            let parent = self
                .resolve_dir(&parent_path)?
                .ok_or_else(|| self.not_found(&parent_path))?;
            let name = c_name(dir.name().unwrap_or_default());
            self.with_room(&dir, parent, |fs| fs.mkdir(parent, &name))?;
            let ino = self.existing(&dir)?;
            self.update_inode(&dir, ino, |inode| {
                inode.set_mode((S_IFDIR | (meta.mode & 0o7777)) as u16);
                inode.set_owner(meta.uid, meta.gid);
                inode.set_all_times(meta.mtime);
            })?;
            self.touch_dir(&dir, parent, meta.mtime)?;
        }
        Ok(())
    }

    /// Creates (or replaces a file or symlink with) a symlink at `path` pointing to `target`.
    /// Owner and time come from `meta`; symlink permissions are always 0777, as on Linux.
    pub fn symlink(&mut self, path: &str, target: &str, meta: &Meta) -> Result<(), Ext4Error> {
        let path = self.parse(path)?;
        if target.is_empty() || target.contains('\0') || target.len() as u64 >= self.block_size {
            return Err(Ext4Error::InvalidPath {
                image: self.image.clone(),
                path: target.to_string(),
                reason:
                    "a symlink target must be non-empty, without NUL bytes and shorter than a block",
            });
        }
        let (parent, name) = self.prepare_edit(&path, meta)?;
        self.remove_existing_non_dir(&path, parent, &name)?;
        let c_target = CString::new(target).unwrap_or_default();
        let c = c_name(&name);
        self.with_room(&path, parent, |fs| fs.symlink(parent, &c, &c_target))?;
        let ino = self.existing(&path)?;
        self.update_inode(&path, ino, |inode| {
            inode.set_mode((S_IFLNK | 0o777) as u16);
            inode.set_owner(meta.uid, meta.gid);
            inode.set_all_times(meta.mtime);
        })?;
        self.touch_dir(&path, parent, meta.mtime)
    }

    /// Removes a file or symlink; its blocks and inode are freed when no other link is left.
    /// A path that does not exist is not an error (removing is idempotent, as `rm -f`);
    /// a directory is refused.
    pub fn unlink(&mut self, path: &str) -> Result<(), Ext4Error> {
        let path = self.parse(path)?;
        self.check_writable(&path)?;
        let Some(name) = path.name().map(str::to_string) else {
            return Err(self.wrong_kind(&path, "a file or symlink", FileKind::Dir));
        };
        let Some(parent) = self.resolve_dir(&path.parent()).ok().flatten() else {
            return Ok(());
        };
        let Some(ino) = self
            .fs
            .lookup(parent, name.as_bytes())
            .map_err(|c| self.lib_err("looking up", &path, c))?
        else {
            return Ok(());
        };
        let kind = self.stat_ino(&path, ino)?.kind;
        if kind == FileKind::Dir {
            return Err(self.wrong_kind(&path, "a file or symlink", kind));
        }
        self.remove_entry(&path, parent, &name, ino)
    }

    /// Renames `from` to `to` within the same directory (a file, symlink or folder: the inode
    /// and everything below it stay as they are, as `rename(2)` in one directory does; a
    /// folder's `..` still points at the same parent, so no link count changes). `to` must not
    /// exist; a missing `from` is not an error (`Ok(false)`), so the edit can be repeated.
    pub fn rename(&mut self, from: &str, to: &str, mtime: i64) -> Result<bool, Ext4Error> {
        let from = self.parse(from)?;
        let to = self.parse(to)?;
        self.check_writable(&to)?;
        let (Some(old_name), Some(new_name)) = (from.name(), to.name()) else {
            return Err(self.wrong_kind(&from, "a path below /", FileKind::Dir));
        };
        if from.parent().to_string() != to.parent().to_string() {
            return Err(Ext4Error::InvalidPath {
                image: self.image.clone(),
                path: to.to_string(),
                reason: "piimg renames only within one folder",
            });
        }
        let parent_path = from.parent();
        let Some(parent) = self.resolve_dir(&parent_path)? else {
            return Ok(false);
        };
        let lookup = |s: &Self, name: &str, path: &FsPath| {
            s.fs.lookup(parent, name.as_bytes())
                .map_err(|c| s.lib_err("looking up", path, c))
        };
        let Some(ino) = lookup(self, old_name, &from)? else {
            return Ok(false);
        };
        if let Some(existing) = lookup(self, new_name, &to)? {
            let kind = self.stat_ino(&to, existing)?.kind;
            return Err(self.wrong_kind(&to, "nothing (the new name of a rename)", kind));
        }
        let file_type = match self.stat_ino(&from, ino)?.kind {
            FileKind::Dir => ffi::EXT2_FT_DIR,
            FileKind::Symlink => ffi::EXT2_FT_SYMLINK,
            _ => ffi::EXT2_FT_REG_FILE,
        };
        self.fs.set_now(mtime);
        let c_new = c_name(new_name);
        self.with_room(&to, parent, |fs| fs.link(parent, &c_new, ino, file_type))?;
        let c_old = c_name(old_name);
        self.fs
            .unlink(parent, &c_old, ino)
            .map_err(|code| self.lib_err("unlinking", &from, code))?;
        self.touch_dir(&parent_path, parent, mtime)?;
        Ok(true)
    }

    /// Sets the permission bits (`0o7777`) of `path`, keeping its type; ctime is not changed.
    pub fn chmod(&mut self, path: &str, mode: u32) -> Result<(), Ext4Error> {
        let path = self.parse(path)?;
        self.check_writable(&path)?;
        let ino = self.existing(&path)?;
        self.update_inode(&path, ino, |inode| {
            let kept = u32::from(inode.mode()) & S_IFMT;
            inode.set_mode((kept | (mode & 0o7777)) as u16);
        })
    }

    /// Sets the owner of `path` (not following a final symlink); ctime is not changed.
    pub fn chown(&mut self, path: &str, uid: u32, gid: u32) -> Result<(), Ext4Error> {
        let path = self.parse(path)?;
        self.check_writable(&path)?;
        let ino = self.existing(&path)?;
        self.update_inode(&path, ino, |inode| inode.set_owner(uid, gid))
    }

    fn check_writable(&self, path: &FsPath) -> Result<(), Ext4Error> {
        if self.access == Access::ReadOnly {
            return Err(Ext4Error::ReadOnly {
                image: self.image.clone(),
                path: path.to_string(),
            });
        }
        Ok(())
    }

    /// Common start of a create: writable, a name, an existing parent directory, and the
    /// edit's time as libext2fs' `now`.
    fn prepare_edit(&mut self, path: &FsPath, meta: &Meta) -> Result<(u32, String), Ext4Error> {
        self.check_writable(path)?;
        let Some(name) = path.name().map(str::to_string) else {
            return Err(self.wrong_kind(path, "a file path", FileKind::Dir));
        };
        let parent_path = path.parent();
        let parent = self
            .resolve_dir(&parent_path)?
            .ok_or_else(|| self.not_found(&parent_path))?;
        self.fs.set_now(meta.mtime);
        Ok((parent, name))
    }

    fn remove_existing_non_dir(
        &mut self,
        path: &FsPath,
        parent: u32,
        name: &str,
    ) -> Result<(), Ext4Error> {
        let existing = self
            .fs
            .lookup(parent, name.as_bytes())
            .map_err(|c| self.lib_err("looking up", path, c))?;
        if let Some(ino) = existing {
            let kind = self.stat_ino(path, ino)?.kind;
            if kind == FileKind::Dir {
                return Err(self.wrong_kind(path, "a file, a symlink or nothing", kind));
            }
            self.remove_entry(path, parent, name, ino)?;
        }
        Ok(())
    }

    /// Runs a link-creating call, expanding the directory once if it has no room.
    fn with_room(
        &mut self,
        path: &FsPath,
        parent: u32,
        mut call: impl FnMut(&mut sys::Fs) -> Result<(), Errcode>,
    ) -> Result<(), Ext4Error> {
        let mut result = call(&mut self.fs);
        if result == Err(ffi::EXT2_ET_DIR_NO_SPACE as Errcode) {
            self.fs
                .expand_dir(parent)
                .map_err(|c| self.map_err("growing the directory of", path, c))?;
            result = call(&mut self.fs);
        }
        result.map_err(|c| self.map_err("creating", path, c))
    }

    fn map_err(&self, op: &'static str, path: &FsPath, code: Errcode) -> Ext4Error {
        if is_no_space(code) {
            return Ext4Error::NoSpace {
                image: self.image.clone(),
                path: path.to_string(),
                needed: self.block_size,
                free: self.free_bytes(),
            };
        }
        self.lib_err(op, path, code)
    }

    /// Allocates, links and writes a new empty inode (extent-mapped when the fs has extents).
    fn create_inode(
        &mut self,
        path: &FsPath,
        parent: u32,
        name: &str,
        mode: u32,
        meta: &Meta,
    ) -> Result<u32, Ext4Error> {
        let ino = self
            .fs
            .new_inode(parent, mode as u16)
            .map_err(|c| self.map_err("allocating an inode for", path, c))?;
        let c = c_name(name);
        self.with_room(path, parent, |fs| {
            fs.link(parent, &c, ino, ffi::EXT2_FT_REG_FILE)
        })?;
        self.fs.inode_alloc_stats(ino, 1, false);
        let mut inode = Inode::default();
        inode.set_mode(mode as u16);
        inode.set_owner(meta.uid, meta.gid);
        inode.set_links(1);
        inode.set_all_times(meta.mtime);
        if self.has_extents {
            self.fs
                .init_extents(ino, &mut inode)
                .map_err(|c| self.lib_err("creating", path, c))?;
        }
        self.fs
            .write_new_inode(ino, &inode)
            .map_err(|c| self.lib_err("creating", path, c))?;
        // write_new_inode only sets up the large-inode tail; now store the full timestamps.
        self.update_inode(path, ino, |inode| inode.set_all_times(meta.mtime))?;
        Ok(ino)
    }

    /// Streams `data` into the (empty) file `ino`, allocating each chunk's blocks in one
    /// contiguous request before writing it.
    fn copy_in(
        &mut self,
        ino: u32,
        data: &mut dyn Read,
        consumed: &mut u64,
    ) -> Result<(), CopyError> {
        let mut buf = vec![0u8; WRITE_CHUNK];
        let mut offset = 0u64;
        loop {
            let got = fill(data, &mut buf).map_err(CopyError::Io)?;
            *consumed += got as u64;
            if got == 0 {
                break;
            }
            let first = offset / self.block_size;
            let blocks = (offset + got as u64).div_ceil(self.block_size) - first;
            self.fs
                .fallocate(ino, first, blocks)
                .map_err(CopyError::Lib)?;
            // Offsets are block-aligned (chunks are whole blocks), so only the last chunk can
            // end mid-block: write that block whole with zeros after the data, then set the
            // size back, so no stale bytes from the disk end up in the file's last block.
            let padded = (got as u64).div_ceil(self.block_size) * self.block_size;
            let padded = usize::try_from(padded).unwrap_or(got).min(buf.len());
            buf[got..padded].fill(0);
            let mut file = self.fs.open_file(ino, true).map_err(CopyError::Lib)?;
            seek_to(&mut file, offset)?;
            let mut done = 0;
            while done < padded {
                let n = file.write(&buf[done..padded]).map_err(CopyError::Lib)?;
                if n == 0 {
                    return Err(CopyError::Lib(ffi::EXT2_ET_SHORT_WRITE as Errcode));
                }
                done += n;
            }
            if padded != got {
                file.set_size(offset + got as u64).map_err(CopyError::Lib)?;
            }
            file.close().map_err(CopyError::Lib)?;
            offset += got as u64;
            if got < buf.len() {
                break;
            }
        }
        Ok(())
    }

    /// Consumes the rest of `data`, returning how many bytes the whole write would have had.
    fn drain_count(&mut self, data: &mut dyn Read) -> u64 {
        std::io::copy(data, &mut std::io::sink()).unwrap_or(0)
    }

    /// Removes the entry `name` → `ino` from `parent`, dropping one link and freeing the
    /// inode, its blocks and its xattr block when it was the last.
    fn remove_entry(
        &mut self,
        path: &FsPath,
        parent: u32,
        name: &str,
        ino: u32,
    ) -> Result<(), Ext4Error> {
        let c = c_name(name);
        self.fs
            .unlink(parent, &c, ino)
            .map_err(|code| self.lib_err("unlinking", path, code))?;
        let mut inode = self
            .fs
            .read_inode(ino)
            .map_err(|code| self.lib_err("unlinking", path, code))?;
        let links = inode.links().saturating_sub(1);
        inode.set_links(links);
        if links > 0 {
            self.fs
                .write_inode(ino, &inode)
                .map_err(|code| self.lib_err("unlinking", path, code))?;
        } else {
            self.fs
                .release_xattr_block(ino, &mut inode)
                .map_err(|code| self.lib_err("freeing", path, code))?;
            if self.fs.has_valid_blocks(&inode) {
                self.fs
                    .release_blocks(ino)
                    .map_err(|code| self.lib_err("freeing", path, code))?;
            }
            let is_dir = kind_of_mode(u32::from(inode.mode())) == FileKind::Dir;
            inode.set_dtime(self.now());
            self.fs
                .write_inode(ino, &inode)
                .map_err(|code| self.lib_err("freeing", path, code))?;
            self.fs.inode_alloc_stats(ino, -1, is_dir);
        }
        let now = self.now();
        self.touch_dir(path, parent, now)
    }

    fn now(&self) -> i64 {
        self.fs.now()
    }

    fn update_inode(
        &mut self,
        path: &FsPath,
        ino: u32,
        change: impl FnOnce(&mut Inode),
    ) -> Result<(), Ext4Error> {
        let mut inode = self
            .fs
            .read_inode(ino)
            .map_err(|c| self.lib_err("reading the inode of", path, c))?;
        change(&mut inode);
        self.fs
            .write_inode(ino, &inode)
            .map_err(|c| self.lib_err("writing the inode of", path, c))
    }

    /// Stamps a directory's mtime/ctime after one of its entries changed.
    fn touch_dir(&mut self, path: &FsPath, dir: u32, t: i64) -> Result<(), Ext4Error> {
        self.update_inode(path, dir, |inode| inode.set_change_times(t))
    }
}

enum CopyError {
    Lib(Errcode),
    Io(std::io::Error),
}

fn seek_to(file: &mut sys::File<'_>, offset: u64) -> Result<(), CopyError> {
    file.seek(offset).map_err(CopyError::Lib)
}
