//! Safe wrappers over the libext2fs calls piimg needs: the only place that touches raw
//! pointers, so every other module of `fs::ext4` is ordinary safe Rust.
//!
//! Each wrapper returns the library's `errcode_t` on failure; `super::error` turns it into an
//! [`super::Ext4Error`] that names the image and the path. Invariant of [`Fs`]: `raw` points to
//! a filesystem opened by `ext2fs_open2` and not yet closed, so it is valid for every call.
#![allow(unsafe_code)]

use super::ffi;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::marker::PhantomData;
use std::ptr;
use std::sync::Once;

/// A libext2fs / com_err error code (`errcode_t`).
pub(super) type Errcode = i64;

/// Root directory inode of every ext2/3/4 filesystem.
pub(super) const ROOT_INO: u32 = ffi::EXT2_ROOT_INO;

fn init_error_table() {
    static ONCE: Once = Once::new();
    // SAFETY: registers a static table with libcom_err; no arguments, guarded to run once.
    ONCE.call_once(|| unsafe { ffi::initialize_ext2_error_table() });
}

/// The human message for an error code (the ext2fs table, or strerror for errno values).
pub(super) fn message(code: Errcode) -> String {
    init_error_table();
    // SAFETY: error_message returns a pointer to a static or thread-local NUL-terminated string.
    let text = unsafe { ffi::error_message(code as _) };
    if text.is_null() {
        return format!("error code {code}");
    }
    // SAFETY: checked non-null above; the string lives at least until the next call.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

fn check(code: ffi::errcode_t) -> Result<(), Errcode> {
    if code == 0 {
        Ok(())
    } else {
        Err(code as Errcode)
    }
}

/// The superblock values the safe layer reads (copied, so no borrow of the C struct escapes).
#[derive(Debug, Clone)]
pub(super) struct SuperInfo {
    pub compat: u32,
    pub incompat: u32,
    pub ro_compat: u32,
    pub state: u16,
    pub label: [u8; 16],
    pub block_size: u64,
    pub blocks: u64,
    pub free_blocks: u64,
    pub wtime: i64,
}

/// An open libext2fs filesystem.
pub(super) struct Fs {
    raw: ffi::ext2_filsys,
}

// SAFETY: an ext2_filsys is plain heap state owned by this handle; libext2fs keeps no
// thread-affine data in it, so moving it to another thread (never sharing) is sound.
unsafe impl Send for Fs {}

impl Fs {
    /// Opens the filesystem that `manager` opens under `name`, with the given io options.
    pub fn open_with(
        name: &CStr,
        io_options: &CStr,
        write: bool,
        manager: ffi::io_manager,
    ) -> Result<Fs, Errcode> {
        init_error_table();
        let mut flags = ffi::EXT2_FLAG_64BITS as c_int;
        if write {
            flags |= ffi::EXT2_FLAG_RW as c_int;
        }
        let mut raw: ffi::ext2_filsys = ptr::null_mut();
        // SAFETY: valid C strings; `manager` is a complete, static io manager table; on
        // failure ext2fs_open2 frees what it allocated (closing the channel) and leaves
        // `raw` unusable.
        let code = unsafe {
            ffi::ext2fs_open2(
                name.as_ptr(),
                io_options.as_ptr(),
                flags,
                0,
                0,
                manager,
                &mut raw,
            )
        };
        check(code)?;
        Ok(Fs { raw })
    }

    /// Copies the superblock values the caller needs.
    pub fn super_info(&self) -> SuperInfo {
        // SAFETY: `raw` is open (type invariant), so `super_` points to its superblock.
        unsafe {
            let sb = &*(*self.raw).super_;
            let label: [u8; 16] = sb.s_volume_name;
            SuperInfo {
                compat: sb.s_feature_compat,
                incompat: sb.s_feature_incompat,
                ro_compat: sb.s_feature_ro_compat,
                state: sb.s_state,
                label,
                block_size: u64::from((*self.raw).blocksize),
                blocks: ffi::ext2fs_blocks_count((*self.raw).super_),
                free_blocks: ffi::ext2fs_free_blocks_count((*self.raw).super_),
                wtime: i64::from(sb.s_wtime) | (i64::from(sb.s_wtime_hi) << 32),
            }
        }
    }

    /// Sets the time libext2fs stamps on everything it creates (`fs->now`), so no clock is read.
    pub fn set_now(&mut self, now: i64) {
        // SAFETY: `raw` is open; `now` is a plain field.
        unsafe { (*self.raw).now = now as _ };
    }

    /// The time libext2fs currently stamps with.
    pub fn now(&self) -> i64 {
        // SAFETY: `raw` is open; `now` is a plain field. (time_t is not i64 everywhere.)
        #[allow(clippy::unnecessary_cast)]
        unsafe {
            (*self.raw).now as i64
        }
    }

    /// Loads the inode and block bitmaps (needed before anything is allocated or freed).
    pub fn read_bitmaps(&mut self) -> Result<(), Errcode> {
        // SAFETY: `raw` is open.
        check(unsafe { ffi::ext2fs_read_bitmaps(self.raw) })
    }

    /// Resolves an absolute path (intermediate symlinks followed, the last one not).
    pub fn namei(&self, path: &CStr) -> Result<u32, Errcode> {
        let mut ino = 0;
        // SAFETY: `raw` is open, `path` a valid C string, `ino` a valid out pointer.
        self.kept(check(unsafe {
            ffi::ext2fs_namei(self.raw, ROOT_INO, ROOT_INO, path.as_ptr(), &mut ino)
        }))?;
        Ok(ino)
    }

    /// Passes `result` on, dropping libext2fs' inode cache when it is an error.
    ///
    /// Why: `ext2fs_read_inode2` reads an inode into the next slot of that cache before it
    /// checks the inode's checksum, and on a mismatch leaves the slot labelled with the inode
    /// it held before, so the next read of *that* inode (often the root directory) returns the
    /// damaged one's bytes (e2fsprogs 1.47, lib/ext2fs/inode.c). Without this, one garbage
    /// inode made later lookups of unrelated paths fail or read garbage. The cache only saves
    /// re-reads; dropping it costs a few reads after an error.
    fn kept<T>(&self, result: Result<T, Errcode>) -> Result<T, Errcode> {
        if result.is_err() {
            // SAFETY: `raw` is open; flushing only marks every cache slot empty.
            unsafe { ffi::ext2fs_flush_icache(self.raw) };
        }
        result
    }

    /// Looks one name up in directory `dir`; `None` when it is not there.
    pub fn lookup(&self, dir: u32, name: &[u8]) -> Result<Option<u32>, Errcode> {
        let mut ino = 0;
        let len =
            c_int::try_from(name.len()).map_err(|_| ffi::EXT2_ET_INVALID_ARGUMENT as Errcode)?;
        // SAFETY: `name` is valid for `len` bytes (lookup takes a length, not a C string).
        let code = unsafe {
            ffi::ext2fs_lookup(
                self.raw,
                dir,
                name.as_ptr().cast(),
                len,
                ptr::null_mut(),
                &mut ino,
            )
        };
        if code as Errcode == ffi::EXT2_ET_FILE_NOT_FOUND as Errcode {
            return Ok(None);
        }
        self.kept(check(code))?;
        Ok(Some(ino))
    }

    /// Reads a whole (large) inode.
    pub fn read_inode(&self, ino: u32) -> Result<Inode, Errcode> {
        let mut inode = Inode::default();
        // SAFETY: the buffer is an ext2_inode_large and its size is passed along.
        self.kept(check(unsafe {
            ffi::ext2fs_read_inode_full(
                self.raw,
                ino,
                (&mut inode.0 as *mut ffi::ext2_inode_large).cast(),
                std::mem::size_of::<ffi::ext2_inode_large>() as c_int,
            )
        }))?;
        Ok(inode)
    }

    /// Writes a whole (large) inode back, checksum included.
    pub fn write_inode(&mut self, ino: u32, inode: &Inode) -> Result<(), Errcode> {
        let mut copy = inode.0;
        // SAFETY: as read_inode; libext2fs only reads the buffer.
        check(unsafe {
            ffi::ext2fs_write_inode_full(
                self.raw,
                ino,
                (&mut copy as *mut ffi::ext2_inode_large).cast(),
                std::mem::size_of::<ffi::ext2_inode_large>() as c_int,
            )
        })
    }

    /// Writes a freshly allocated inode (initialises the large-inode tail, crtime from `now`).
    pub fn write_new_inode(&mut self, ino: u32, inode: &Inode) -> Result<(), Errcode> {
        let mut copy = inode.0;
        // SAFETY: write_new_inode reads the leading struct ext2_inode of the buffer.
        check(unsafe {
            ffi::ext2fs_write_new_inode(
                self.raw,
                ino,
                (&mut copy as *mut ffi::ext2_inode_large).cast(),
            )
        })
    }

    /// Picks a free inode near directory `dir` (does not mark it used).
    pub fn new_inode(&mut self, dir: u32, mode: u16) -> Result<u32, Errcode> {
        let mut ino = 0;
        // SAFETY: `raw` is open with bitmaps loaded; NULL map means the fs inode map.
        check(unsafe {
            ffi::ext2fs_new_inode(self.raw, dir, c_int::from(mode), ptr::null_mut(), &mut ino)
        })?;
        Ok(ino)
    }

    /// Adds `name` → `ino` to directory `dir` (htree-aware in 1.47).
    pub fn link(&mut self, dir: u32, name: &CStr, ino: u32, file_type: u32) -> Result<(), Errcode> {
        // SAFETY: valid C string; `raw` is open.
        check(unsafe { ffi::ext2fs_link(self.raw, dir, name.as_ptr(), ino, file_type as c_int) })
    }

    /// Removes the entry `name` (pointing at `ino`) from directory `dir`.
    pub fn unlink(&mut self, dir: u32, name: &CStr, ino: u32) -> Result<(), Errcode> {
        // SAFETY: valid C string; `raw` is open.
        check(unsafe { ffi::ext2fs_unlink(self.raw, dir, name.as_ptr(), ino, 0) })
    }

    /// Adds one block to directory `dir` when it has no room for another entry.
    pub fn expand_dir(&mut self, dir: u32) -> Result<(), Errcode> {
        // SAFETY: `raw` is open.
        check(unsafe { ffi::ext2fs_expand_dir(self.raw, dir) })
    }

    /// Marks an inode used (+1) or free (-1) in the bitmap and the group/superblock counts.
    pub fn inode_alloc_stats(&mut self, ino: u32, delta: i32, is_dir: bool) {
        // SAFETY: `raw` is open with bitmaps loaded.
        unsafe { ffi::ext2fs_inode_alloc_stats2(self.raw, ino, delta, c_int::from(is_dir)) }
    }

    /// Turns an empty inode into an extent-mapped one (header in i_block, EXTENTS_FL set).
    pub fn init_extents(&mut self, ino: u32, inode: &mut Inode) -> Result<(), Errcode> {
        let mut handle: ffi::ext2_extent_handle_t = ptr::null_mut();
        // SAFETY: extent_open2 initialises the header in the inode we pass and returns a
        // handle that we free straight away, as mkfs' create_inode.c does.
        unsafe {
            check(ffi::ext2fs_extent_open2(
                self.raw,
                ino,
                (&mut inode.0 as *mut ffi::ext2_inode_large).cast(),
                &mut handle,
            ))?;
            ffi::ext2fs_extent_free(handle);
        }
        Ok(())
    }

    /// Creates directory `name` in `parent` (mode 0755, root-owned; the caller fixes meta).
    pub fn mkdir(&mut self, parent: u32, name: &CStr) -> Result<(), Errcode> {
        // SAFETY: valid C string; inode 0 asks the library to allocate one.
        check(unsafe { ffi::ext2fs_mkdir(self.raw, parent, 0, name.as_ptr()) })
    }

    /// Creates symlink `name` → `target` in `parent` (fast or slow as the length needs).
    pub fn symlink(&mut self, parent: u32, name: &CStr, target: &CStr) -> Result<(), Errcode> {
        // SAFETY: valid C strings; inode 0 asks the library to allocate one.
        check(unsafe { ffi::ext2fs_symlink(self.raw, parent, 0, name.as_ptr(), target.as_ptr()) })
    }

    /// Whether the inode's i_block holds block references (not a fast symlink's text).
    pub fn has_valid_blocks(&self, inode: &Inode) -> bool {
        let mut copy = inode.0;
        // SAFETY: the function only reads the inode.
        unsafe {
            ffi::ext2fs_inode_has_valid_blocks2(
                self.raw,
                (&mut copy as *mut ffi::ext2_inode_large).cast(),
            ) != 0
        }
    }

    /// Marks every data and extent-tree block of `ino` free, as debugfs' kill_file does.
    /// (Not `ext2fs_punch`: in 1.47.0 it refuses extents that end at the filesystem's last
    /// block, an off-by-one that a full filesystem hits.) The inode itself is not changed.
    pub fn release_blocks(&mut self, ino: u32) -> Result<(), Errcode> {
        // SAFETY: read-only iteration; the callback only updates the allocation bitmaps.
        check(unsafe {
            ffi::ext2fs_block_iterate3(
                self.raw,
                ino,
                ffi::BLOCK_FLAG_READ_ONLY as c_int,
                ptr::null_mut(),
                Some(release_block),
                ptr::null_mut(),
            )
        })
    }

    /// Drops the inode's reference on its extended-attribute block, freeing it at zero.
    pub fn release_xattr_block(&mut self, ino: u32, inode: &mut Inode) -> Result<(), Errcode> {
        let blk = inode.file_acl();
        if blk == 0 {
            return Ok(());
        }
        let mut count: ffi::__u32 = 0;
        // SAFETY: a NULL block buffer makes the library allocate its own.
        check(unsafe {
            ffi::ext2fs_adjust_ea_refcount3(self.raw, blk, ptr::null_mut(), -1, &mut count, ino)
        })?;
        if count == 0 {
            // SAFETY: `raw` is open with bitmaps loaded.
            unsafe { ffi::ext2fs_block_alloc_stats2(self.raw, blk, -1) };
        }
        inode.set_file_acl(0);
        Ok(())
    }

    /// Allocates initialised blocks for logical blocks `start..start+len` of `ino` (the
    /// library reads and writes the inode itself).
    pub fn fallocate(&mut self, ino: u32, start: u64, len: u64) -> Result<(), Errcode> {
        // SAFETY: a NULL inode makes the library read and write it; goal !0 means "near it".
        check(unsafe {
            ffi::ext2fs_fallocate(
                self.raw,
                ffi::EXT2_FALLOCATE_FORCE_INIT as c_int,
                ino,
                ptr::null_mut(),
                !0,
                start,
                len,
            )
        })
    }

    /// Lists the live entries of a directory as (name bytes, inode, file type).
    pub fn read_dir(&self, dir: u32) -> Result<Vec<(Vec<u8>, u32, u8)>, Errcode> {
        let mut entries: Vec<(Vec<u8>, u32, u8)> = Vec::new();
        // SAFETY: the callback only runs during this call and gets `entries` back as priv_data.
        self.kept(check(unsafe {
            ffi::ext2fs_dir_iterate2(
                self.raw,
                dir,
                0,
                ptr::null_mut(),
                Some(collect_entry),
                (&mut entries as *mut Vec<(Vec<u8>, u32, u8)>).cast(),
            )
        }))?;
        Ok(entries)
    }

    /// Opens a file of the filesystem for reading or writing.
    pub fn open_file(&self, ino: u32, write: bool) -> Result<File<'_>, Errcode> {
        let mut raw: ffi::ext2_file_t = ptr::null_mut();
        let flags = if write {
            ffi::EXT2_FILE_WRITE as c_int
        } else {
            0
        };
        // SAFETY: `raw` is open; a NULL inode makes the library read it.
        self.kept(check(unsafe {
            ffi::ext2fs_file_open2(self.raw, ino, ptr::null_mut(), flags, &mut raw)
        }))?;
        Ok(File {
            raw,
            _fs: PhantomData,
        })
    }

    /// Flushes (when writable and dirty) and frees the filesystem, surfacing flush errors.
    pub fn close(mut self) -> Result<(), Errcode> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> Result<(), Errcode> {
        let raw = std::mem::replace(&mut self.raw, ptr::null_mut());
        if raw.is_null() {
            return Ok(());
        }
        // SAFETY: `raw` is open and, being swapped out, used here for the last time.
        let code = unsafe { ffi::ext2fs_close2(raw, 0) };
        if code != 0 {
            // close2 leaves the handle allocated when flushing fails: free it anyway.
            // SAFETY: still a valid handle, never used again.
            unsafe { ffi::ext2fs_free(raw) };
        }
        check(code)
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        if let Err(code) = self.close_inner() {
            tracing::warn!("closing ext4 filesystem failed: {}", message(code));
        }
    }
}

unsafe extern "C" fn release_block(
    fs: ffi::ext2_filsys,
    blocknr: *mut ffi::blk64_t,
    _blockcnt: ffi::e2_blkcnt_t,
    _ref_blk: ffi::blk64_t,
    _ref_offset: c_int,
    _priv_data: *mut c_void,
) -> c_int {
    // SAFETY: called by ext2fs_block_iterate3 with its open fs and a valid block pointer.
    unsafe { ffi::ext2fs_block_alloc_stats2(fs, *blocknr, -1) };
    0
}

unsafe extern "C" fn collect_entry(
    _dir: ffi::ext2_ino_t,
    _entry: c_int,
    dirent: *mut ffi::ext2_dir_entry,
    _offset: c_int,
    _blocksize: c_int,
    _buf: *mut c_char,
    priv_data: *mut c_void,
) -> c_int {
    // SAFETY: libext2fs passes a valid entry inside its block buffer and our priv_data.
    let (dirent, entries) =
        unsafe { (&*dirent, &mut *priv_data.cast::<Vec<(Vec<u8>, u32, u8)>>()) };
    let len = usize::from(dirent.name_len & 0xff).min(dirent.name.len());
    let file_type = (dirent.name_len >> 8) as u8;
    let name: Vec<u8> = dirent.name[..len].iter().map(|&c| c as u8).collect();
    if dirent.inode != 0 && name != b"." && name != b".." {
        entries.push((name, dirent.inode, file_type));
    }
    0
}

/// An open file inside the filesystem; closed (inode size and blocks written) on close/drop.
pub(super) struct File<'a> {
    raw: ffi::ext2_file_t,
    _fs: PhantomData<&'a Fs>,
}

impl File<'_> {
    /// Reads up to `buf.len()` bytes (capped at 1 GiB per call); 0 at end of file.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, Errcode> {
        let want = buf.len().min(1 << 30) as u32;
        let mut got = 0;
        // SAFETY: `buf` is valid for `want` bytes; the file is open.
        check(unsafe { ffi::ext2fs_file_read(self.raw, buf.as_mut_ptr().cast(), want, &mut got) })?;
        Ok(got as usize)
    }

    /// Moves the file position to `offset` bytes from the start.
    pub fn seek(&mut self, offset: u64) -> Result<(), Errcode> {
        // SAFETY: open file handle; whence 0 is EXT2_SEEK_SET; the new position is not needed.
        check(unsafe { ffi::ext2fs_file_llseek(self.raw, offset, 0, ptr::null_mut()) })
    }

    /// Writes up to `buf.len()` bytes (capped at 1 GiB per call), returning how many went in.
    pub fn write(&mut self, buf: &[u8]) -> Result<usize, Errcode> {
        let want = buf.len().min(1 << 30) as u32;
        let mut written = 0;
        // SAFETY: `buf` is valid for `want` bytes; the library only reads it.
        check(unsafe {
            ffi::ext2fs_file_write(self.raw, buf.as_ptr().cast(), want, &mut written)
        })?;
        Ok(written as usize)
    }

    /// Sets the file size (zeroing the last block past it, freeing blocks beyond it).
    pub fn set_size(&mut self, size: u64) -> Result<(), Errcode> {
        let size =
            ffi::ext2_off64_t::try_from(size).map_err(|_| ffi::EXT2_ET_FILE_TOO_BIG as Errcode)?;
        // SAFETY: open file handle.
        check(unsafe { ffi::ext2fs_file_set_size2(self.raw, size) })
    }

    /// Flushes the file's buffer and inode and releases it.
    pub fn close(mut self) -> Result<(), Errcode> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> Result<(), Errcode> {
        let raw = std::mem::replace(&mut self.raw, ptr::null_mut());
        if raw.is_null() {
            return Ok(());
        }
        // SAFETY: open file handle, swapped out so it is closed exactly once.
        check(unsafe { ffi::ext2fs_file_close(raw) })
    }
}

impl Drop for File<'_> {
    fn drop(&mut self) {
        let _ = self.close_inner();
    }
}

/// A large on-disk inode, with typed accessors for the fields split across lo/hi halves.
#[derive(Clone, Copy, Default)]
pub(super) struct Inode(ffi::ext2_inode_large);

fn encode_time(t: i64) -> (u32, u32) {
    let lo = t as i32;
    let epoch = ((t - i64::from(lo)) >> 32) & 3;
    (lo as u32, epoch as u32)
}

impl Inode {
    /// Full st_mode (type and permission bits).
    pub fn mode(&self) -> u16 {
        self.0.i_mode
    }
    pub fn set_mode(&mut self, mode: u16) {
        self.0.i_mode = mode;
    }
    pub fn uid(&self) -> u32 {
        // SAFETY: on Linux-created filesystems osd2 is always the linux2 variant.
        u32::from(self.0.i_uid) | (u32::from(unsafe { self.0.osd2.linux2.l_i_uid_high }) << 16)
    }
    pub fn gid(&self) -> u32 {
        // SAFETY: as uid.
        u32::from(self.0.i_gid) | (u32::from(unsafe { self.0.osd2.linux2.l_i_gid_high }) << 16)
    }
    pub fn set_owner(&mut self, uid: u32, gid: u32) {
        self.0.i_uid = uid as u16;
        self.0.i_gid = gid as u16;
        // Writing a Copy union field is safe; linux2 is the variant Linux filesystems use.
        self.0.osd2.linux2.l_i_uid_high = (uid >> 16) as u16;
        self.0.osd2.linux2.l_i_gid_high = (gid >> 16) as u16;
    }
    pub fn size(&self) -> u64 {
        u64::from(self.0.i_size) | (u64::from(self.0.i_size_high) << 32)
    }
    pub fn links(&self) -> u16 {
        self.0.i_links_count
    }
    pub fn set_links(&mut self, links: u16) {
        self.0.i_links_count = links;
    }
    pub fn file_acl(&self) -> u64 {
        // SAFETY: as uid.
        u64::from(self.0.i_file_acl)
            | (u64::from(unsafe { self.0.osd2.linux2.l_i_file_acl_high }) << 32)
    }
    fn set_file_acl(&mut self, blk: u64) {
        self.0.i_file_acl = blk as u32;
        self.0.osd2.linux2.l_i_file_acl_high = (blk >> 32) as u16;
    }
    fn has_extra_times(&self) -> bool {
        // i_extra_isize covers ctime/mtime/atime_extra, crtime and crtime_extra from 24 on.
        self.0.i_extra_isize >= 24
    }
    pub fn mtime(&self) -> i64 {
        let epoch = if self.has_extra_times() {
            i64::from(self.0.i_mtime_extra & 3)
        } else {
            0
        };
        i64::from(self.0.i_mtime as i32) + (epoch << 32)
    }
    /// Sets atime, ctime, mtime and crtime to `t` (whole seconds; ext4 holds 1901..2446).
    pub fn set_all_times(&mut self, t: i64) {
        let (lo, extra) = encode_time(t);
        self.0.i_atime = lo;
        self.0.i_ctime = lo;
        self.0.i_mtime = lo;
        if self.has_extra_times() {
            self.0.i_atime_extra = extra;
            self.0.i_ctime_extra = extra;
            self.0.i_mtime_extra = extra;
            self.0.i_crtime = lo;
            self.0.i_crtime_extra = extra;
        }
    }
    /// Sets mtime and ctime to `t` (what a directory gets when an entry changes).
    pub fn set_change_times(&mut self, t: i64) {
        let (lo, extra) = encode_time(t);
        self.0.i_ctime = lo;
        self.0.i_mtime = lo;
        if self.has_extra_times() {
            self.0.i_ctime_extra = extra;
            self.0.i_mtime_extra = extra;
        }
    }
    pub fn set_dtime(&mut self, t: i64) {
        self.0.i_dtime = t as u32;
    }
    /// The raw i_block area: the target text of a fast symlink.
    pub fn block_bytes(&self) -> Vec<u8> {
        self.0
            .i_block
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .collect()
    }
    /// Whether `ext2fs_is_fast_symlink` holds (target stored in i_block).
    pub fn is_fast_symlink(&self) -> bool {
        let mut copy = self.0;
        // SAFETY: the function only reads the inode.
        unsafe {
            ffi::ext2fs_is_fast_symlink((&mut copy as *mut ffi::ext2_inode_large).cast()) != 0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_past_2038() {
        for t in [
            0,
            1_700_000_000,
            (1 << 31) - 1,
            1 << 31,
            4_000_000_000,
            15_000_000_000,
            -1_000_000_000,
        ] {
            let mut inode = Inode::default();
            inode.0.i_extra_isize = 32;
            inode.set_all_times(t);
            assert_eq!(inode.mtime(), t, "{t}");
        }
    }

    #[test]
    fn owner_uses_high_halves() {
        let mut inode = Inode::default();
        inode.set_owner(70_000, 1_000_000);
        assert_eq!((inode.uid(), inode.gid()), (70_000, 1_000_000));
    }
}
