//! The ext4 root filesystem of an image, edited in place through libext2fs (e2fsprogs).
//!
//! Why libext2fs: it is the reference implementation, it maintains htree-indexed directories,
//! metadata checksums, extents and flex_bg group accounting exactly as e2fsck expects, and it
//! opens a partition inside an image file by byte offset, so no loop device or mount is needed.
//! The FFI lives in `ffi` (generated), `sys` and `io` (the io manager that lets libext2fs
//! read and write an [`crate::image::Device`]; with `sys` the only `unsafe` code); this module
//! and its siblings are the small safe API the rest of piimg uses.
//!
//! Determinism: every timestamp libext2fs would take from the clock comes from the caller
//! (`Meta::mtime` for writes; the superblock's own last-write time until the first write),
//! and nothing touches the UUID or the directory hash seed.

mod error;
mod features;
mod ffi;
mod grow;
mod io;
mod path;
mod read;
mod sys;
mod write;

pub use error::Ext4Error;
pub use grow::grow_fs;

use crate::image::{Device, FileDevice};
use path::FsPath;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How to open the filesystem: reading never needs (or takes) write access to the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only lookups and reads; the image file is opened read-only.
    ReadOnly,
    /// Reads and edits; changes are flushed on `close`.
    ReadWrite,
}

/// Ownership, permissions and time for something the caller creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits including setuid/setgid/sticky (`0o7777` is kept; the type is implied).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Seconds since the epoch for every timestamp the edit writes (SOURCE_DATE_EPOCH).
    pub mtime: i64,
}

/// What kind of inode a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Device, FIFO or socket.
    Other,
}

/// What `stat` reports about an inode (the final symlink is not followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Kind of file.
    pub kind: FileKind,
    /// Full st_mode: type and permission bits.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Size in bytes (a symlink's target length).
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Inode number.
    pub ino: u32,
}

/// One entry of a directory listing (never `.` or `..`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Entry name (bytes that are not UTF-8 are replaced with U+FFFD).
    pub name: String,
    /// Kind of file, from the entry's file type.
    pub kind: FileKind,
    /// Inode number.
    pub ino: u32,
}

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;

fn kind_of_mode(mode: u32) -> FileKind {
    match mode & S_IFMT {
        S_IFREG => FileKind::File,
        S_IFDIR => FileKind::Dir,
        S_IFLNK => FileKind::Symlink,
        _ => FileKind::Other,
    }
}

fn kind_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::File => "a regular file",
        FileKind::Dir => "a directory",
        FileKind::Symlink => "a symlink",
        FileKind::Other => "a special file",
    }
}

fn open_error(image: &Path, offset: u64, message: String) -> Ext4Error {
    Ext4Error::Open {
        image: image.to_path_buf(),
        offset,
        message,
    }
}

/// The filesystem must start inside the image.
fn check_room(image: &Path, offset: u64, image_len: u64) -> Result<(), Ext4Error> {
    if image_len <= offset {
        return Err(open_error(
            image,
            offset,
            format!("the image is only {image_len} bytes long"),
        ));
    }
    Ok(())
}

/// libext2fs io options placing the filesystem `offset` bytes into the image.
fn io_options(offset: u64) -> CString {
    CString::new(format!("offset={offset}")).expect("a formatted number has no NUL byte")
}

/// An ext4 filesystem inside an image file or [`Device`], open for reading or editing.
///
/// Edits go straight to the image through libext2fs' cache; `close` flushes the bitmaps,
/// group descriptors and superblock and reports failure. Dropping without `close` flushes
/// too, but can only log an error, so call `close` after editing. Not `Sync`: one thread at
/// a time (libext2fs is not thread-safe), though it may move between threads.
pub struct Ext4 {
    fs: sys::Fs,
    image: PathBuf,
    access: Access,
    block_size: u64,
    has_extents: bool,
}

impl std::fmt::Debug for Ext4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ext4")
            .field("image", &self.image)
            .field("access", &self.access)
            .finish()
    }
}

impl Ext4 {
    /// Opens the ext4 filesystem that starts `offset` bytes into `image`, refusing features
    /// and states (unclean journal, recorded errors) the writer does not handle.
    pub fn open(image: &Path, offset: u64, access: Access) -> Result<Ext4, Ext4Error> {
        // Through piimg's own io manager over the file, like an overlay: one io path for every
        // build (libext2fs' unix manager would also fsync the whole image on every open).
        let device = FileDevice::open(image, access == Access::ReadWrite)
            .map_err(|e| open_error(image, offset, e.to_string()))?;
        Ext4::open_device(Arc::new(device), offset, access)
    }

    /// Opens the ext4 filesystem that starts `offset` bytes into `device`, with the same
    /// refusals as [`Ext4::open`]. Every read and write goes through the device, so the
    /// filesystem can live in a copy-on-write overlay rather than a file; errors name
    /// `device.name()`. Nothing is fsynced: the device is flushed when the filesystem is.
    pub fn open_device(
        device: Arc<dyn Device>,
        offset: u64,
        access: Access,
    ) -> Result<Ext4, Ext4Error> {
        let name = device.name().to_path_buf();
        let size = device.size();
        check_room(&name, offset, size)?;
        let c_name = CString::new(name.as_os_str().as_bytes())
            .map_err(|_| open_error(&name, offset, "the device name contains a NUL byte".into()))?;
        let fs = io::open(
            device,
            &c_name,
            &io_options(offset),
            access == Access::ReadWrite,
        )
        .map_err(|code| open_error(&name, offset, sys::message(code)))?;
        Ext4::checked(fs, &name, offset, size, access)
    }

    /// The checks both openers share, on a filesystem libext2fs has just opened from an
    /// image of `image_len` bytes.
    fn checked(
        mut fs: sys::Fs,
        image: &Path,
        offset: u64,
        image_len: u64,
        access: Access,
    ) -> Result<Ext4, Ext4Error> {
        let info = fs.super_info();
        let refused = features::unsupported(info.compat, info.incompat, info.ro_compat);
        if !refused.is_empty() {
            return Err(Ext4Error::UnsupportedFeatures {
                image: image.to_path_buf(),
                features: refused,
            });
        }
        if let Some(reason) = features::unclean_reason(
            info.incompat,
            info.ro_compat,
            info.state,
            ffi::EXT2_VALID_FS as u16,
            ffi::EXT2_ERROR_FS as u16,
        ) {
            return Err(Ext4Error::NotClean {
                image: image.to_path_buf(),
                offset,
                reason,
            });
        }
        let fs_bytes = info.blocks.saturating_mul(info.block_size);
        if fs_bytes > image_len - offset {
            return Err(open_error(image, offset, format!(
                "the filesystem is {fs_bytes} bytes but only {} bytes of the image follow the offset (truncated image?)",
                image_len - offset
            )));
        }
        if access == Access::ReadWrite {
            fs.read_bitmaps().map_err(|code| {
                open_error(
                    image,
                    offset,
                    format!("reading the allocation bitmaps: {}", sys::message(code)),
                )
            })?;
            // Until the first edit sets it, stamp with the filesystem's own last-write time,
            // so even a write-open that changes nothing reads no clock.
            fs.set_now(info.wtime);
        }
        tracing::debug!(image = %image.display(), offset, ?access, "opened ext4 filesystem");
        Ok(Ext4 {
            fs,
            image: image.to_path_buf(),
            access,
            block_size: info.block_size,
            has_extents: info.incompat & ffi::EXT3_FEATURE_INCOMPAT_EXTENTS != 0,
        })
    }

    /// The volume label (e.g. `rootfs`, `writable`, `cloudimg-rootfs`).
    pub fn label(&self) -> String {
        let label = self.fs.super_info().label;
        let end = label.iter().position(|&b| b == 0).unwrap_or(label.len());
        String::from_utf8_lossy(&label[..end]).into_owned()
    }

    /// Filesystem block size in bytes.
    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// The filesystem's size in bytes, as its superblock says (block count × block size).
    pub fn size_bytes(&self) -> u64 {
        self.fs.super_info().blocks.saturating_mul(self.block_size)
    }

    /// Free space in bytes (including root-reserved blocks, which libext2fs may use).
    pub fn free_bytes(&self) -> u64 {
        self.fs
            .super_info()
            .free_blocks
            .saturating_mul(self.block_size)
    }

    /// Flushes every change to the image and closes it; errors are reported, unlike on drop.
    pub fn close(self) -> Result<(), Ext4Error> {
        let image = self.image;
        self.fs.close().map_err(|code| Ext4Error::Lib {
            image,
            path: String::new(),
            op: "flushing",
            code,
            message: sys::message(code),
        })
    }

    fn parse(&self, path: &str) -> Result<FsPath, Ext4Error> {
        FsPath::parse(path).map_err(|reason| Ext4Error::InvalidPath {
            image: self.image.clone(),
            path: path.to_string(),
            reason,
        })
    }

    fn lib_err(&self, op: &'static str, path: &FsPath, code: sys::Errcode) -> Ext4Error {
        Ext4Error::Lib {
            image: self.image.clone(),
            path: path.to_string(),
            op,
            code,
            message: sys::message(code),
        }
    }

    fn not_found(&self, path: &FsPath) -> Ext4Error {
        Ext4Error::NotFound {
            image: self.image.clone(),
            path: path.to_string(),
        }
    }

    fn wrong_kind(&self, path: &FsPath, expected: &'static str, found: FileKind) -> Ext4Error {
        Ext4Error::WrongKind {
            image: self.image.clone(),
            path: path.to_string(),
            expected,
            found: kind_name(found),
        }
    }
}
