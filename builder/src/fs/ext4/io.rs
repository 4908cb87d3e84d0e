//! A libext2fs io manager whose channels read and write a [`Device`] instead of a file path,
//! so the filesystem can be edited inside a copy-on-write overlay over a cached base image.
//!
//! libext2fs opens its io channel itself, from a name (`ext2fs_open2` calls the manager's
//! `open`), so the device cannot be passed as an argument: [`open`] parks it in a thread-local
//! slot just before `ext2fs_open2` and the manager's `open` takes it from there on the same
//! thread. Each channel owns its `Arc<dyn Device>`; `close` drops it when libext2fs releases
//! the channel's last reference.
//!
//! Unlike unix_io this manager keeps no block cache (the device does any caching it wants),
//! never fsyncs (only `flush` reaches [`Device::flush`]), and reports no I/O statistics, so
//! the superblock's "lifetime writes" counter is left as it was.
//!
//! The callbacks catch panics from the device (unwinding into C is undefined) and turn every
//! failure into an `errcode_t` as unix_io does: the OS errno when there is one, otherwise
//! `EXT2_ET_SHORT_READ`/`EXT2_ET_SHORT_WRITE` for ranges past the end of the device, or EIO.
#![allow(unsafe_code)]

use super::ffi;
use super::sys::{Errcode, Fs};
use crate::image::Device;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_ulong, c_ulonglong, c_void, CStr, CString};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;

/// `EIO` on Linux: the error for a device failure that carries no errno.
const EIO: Errcode = 5;

const MAGIC_CHANNEL: ffi::errcode_t = ffi::EXT2_ET_MAGIC_IO_CHANNEL as ffi::errcode_t;

thread_local! {
    /// The device the next `open` callback on this thread hands to libext2fs.
    static PENDING: RefCell<Option<Arc<dyn Device>>> = const { RefCell::new(None) };
}

/// Opens the filesystem in `device` (io options such as `offset=N` apply to it) through
/// this module's io manager. `name` is what libext2fs records as the device name.
pub(super) fn open(
    device: Arc<dyn Device>,
    name: &CStr,
    io_options: &CStr,
    write: bool,
) -> Result<Fs, Errcode> {
    PENDING.with(|slot| *slot.borrow_mut() = Some(device));
    let result = Fs::open_with(name, io_options, write, manager());
    // Normally taken by `dev_open`; still here if ext2fs_open2 failed before opening.
    PENDING.with(|slot| slot.borrow_mut().take());
    result
}

/// The manager table. libext2fs only ever reads an io manager, so a shared static is enough.
struct Manager(ffi::struct_io_manager);

// SAFETY: the table is immutable (function pointers and a static name); libext2fs reads it
// from whatever thread uses the filesystem and never writes it.
unsafe impl Sync for Manager {}

static MANAGER: Manager = Manager(ffi::struct_io_manager {
    magic: ffi::EXT2_ET_MAGIC_IO_MANAGER as ffi::errcode_t,
    name: c"piimg device I/O manager".as_ptr(),
    open: Some(dev_open),
    close: Some(dev_close),
    set_blksize: Some(dev_set_blksize),
    read_blk: Some(dev_read_blk),
    write_blk: Some(dev_write_blk),
    flush: Some(dev_flush),
    write_byte: Some(dev_write_byte),
    set_option: Some(dev_set_option),
    // Null: ext2fs_flush then leaves s_kbytes_written alone.
    get_stats: None,
    read_blk64: Some(dev_read_blk64),
    write_blk64: Some(dev_write_blk64),
    // Null: only mke2fs/e2fsck discard; libext2fs treats a missing one as unsupported.
    discard: None,
    // Null: ext2fs_open2 ignores the result of its readahead hint.
    cache_readahead: None,
    // Null: ext2fs_zero_blocks2 falls back to writing zeroed blocks through write_blk64.
    zeroout: None,
    reserved: [0; 14],
});

fn manager() -> ffi::io_manager {
    // libext2fs' io_manager type is a mutable pointer, but it never writes through it.
    ptr::addr_of!(MANAGER.0).cast_mut()
}

/// What a channel's `private_data` points to.
struct Channel {
    device: Arc<dyn Device>,
    /// Byte offset of the filesystem in the device (the `offset=` option).
    offset: u64,
    writable: bool,
}

/// Runs a callback body, turning a panic into EIO so it never unwinds into C.
fn guard(body: impl FnOnce() -> Result<(), Errcode>) -> ffi::errcode_t {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => 0,
        Ok(Err(code)) => code as ffi::errcode_t,
        Err(_) => {
            tracing::error!("the image device panicked inside a libext2fs I/O call");
            EIO as ffi::errcode_t
        }
    }
}

fn check(code: ffi::errcode_t) -> Result<(), Errcode> {
    if code == 0 {
        Ok(())
    } else {
        Err(code as Errcode)
    }
}

/// The errcode unix_io would give for `err`: its errno, `past_end` for a range outside the
/// device, EIO otherwise.
fn errcode(err: &io::Error, past_end: Errcode) -> Errcode {
    match err.raw_os_error() {
        Some(errno) if errno > 0 => Errcode::from(errno),
        _ if err.kind() == io::ErrorKind::UnexpectedEof => past_end,
        _ => EIO,
    }
}

/// The channel's private data, after checking the channel's magic.
///
/// # Safety
/// `io` must be null or a channel made by `dev_open` and not yet freed.
unsafe fn channel<'a>(io: ffi::io_channel) -> Result<&'a Channel, Errcode> {
    // SAFETY: per the contract, a non-null `io` points to a live channel.
    if io.is_null() || unsafe { (*io).magic } != MAGIC_CHANNEL {
        return Err(ffi::EXT2_ET_MAGIC_IO_CHANNEL as Errcode);
    }
    // SAFETY: `dev_open` set private_data to a leaked Box<Channel>, freed only in `dev_close`.
    let data = unsafe { (*io).private_data }.cast::<Channel>();
    if data.is_null() {
        return Err(ffi::EXT2_ET_MAGIC_IO_CHANNEL as Errcode);
    }
    // SAFETY: as above; libext2fs never touches private_data's contents.
    Ok(unsafe { &*data })
}

/// Byte position and length of `count` blocks at `block` (`count < 0`: `-count` bytes).
///
/// # Safety
/// `io` must be a live channel (as for [`channel`]).
unsafe fn span(
    io: ffi::io_channel,
    ch: &Channel,
    block: u64,
    count: c_int,
) -> Option<(u64, usize)> {
    // SAFETY: live channel per the contract.
    let block_size = u64::try_from(unsafe { (*io).block_size }).ok()?;
    let len = if count < 0 {
        u64::from(count.unsigned_abs())
    } else {
        u64::from(count.unsigned_abs()).checked_mul(block_size)?
    };
    let pos = block.checked_mul(block_size)?.checked_add(ch.offset)?;
    Some((pos, usize::try_from(len).ok()?))
}

/// The channel and the byte range of a block read or write; `None` for an empty one.
///
/// # Safety
/// `io` must be null or a live channel (as for [`channel`]).
unsafe fn locate<'a>(
    io: ffi::io_channel,
    block: u64,
    count: c_int,
) -> Result<Option<(&'a Channel, u64, usize)>, Errcode> {
    // SAFETY: per the contract.
    let ch = unsafe { channel(io) }?;
    // SAFETY: `channel` checked that `io` is live.
    let (pos, len) =
        unsafe { span(io, ch, block, count) }.ok_or(ffi::EXT2_ET_INVALID_ARGUMENT as Errcode)?;
    Ok((len > 0).then_some((ch, pos, len)))
}

unsafe extern "C" fn dev_open(
    name: *const c_char,
    flags: c_int,
    out: *mut ffi::io_channel,
) -> ffi::errcode_t {
    guard(|| {
        if name.is_null() || out.is_null() {
            return Err(ffi::EXT2_ET_BAD_DEVICE_NAME as Errcode);
        }
        let device = PENDING
            .with(|slot| slot.borrow_mut().take())
            .ok_or(ffi::EXT2_ET_BAD_DEVICE_NAME as Errcode)?;
        // SAFETY: libext2fs passes its NUL-terminated copy of the device name.
        let name = unsafe { CStr::from_ptr(name) }.to_owned();
        let data = Box::new(Channel {
            device,
            offset: 0,
            writable: flags & ffi::IO_FLAG_RW as c_int != 0,
        });
        let io = Box::new(ffi::struct_io_channel {
            magic: MAGIC_CHANNEL,
            manager: manager(),
            name: name.into_raw(),
            block_size: 1024,
            refcount: 1,
            private_data: Box::into_raw(data).cast(),
            ..Default::default()
        });
        // SAFETY: `out` is libext2fs' valid out pointer; ownership passes to the channel,
        // which `dev_close` frees.
        unsafe { *out = Box::into_raw(io) };
        Ok(())
    })
}

unsafe extern "C" fn dev_close(io: ffi::io_channel) -> ffi::errcode_t {
    guard(|| {
        // SAFETY: libext2fs passes a channel it opened through this manager.
        unsafe { channel(io) }?;
        // SAFETY: checked live above; refcount is a plain field libext2fs also bumps.
        unsafe {
            (*io).refcount -= 1;
            if (*io).refcount > 0 {
                return Ok(());
            }
            // Last reference: take back everything `dev_open` leaked (libext2fs drops its
            // pointer to the channel after this call).
            let io = Box::from_raw(io);
            drop(Box::from_raw(io.private_data.cast::<Channel>()));
            drop(CString::from_raw(io.name));
        }
        Ok(())
    })
}

unsafe extern "C" fn dev_set_blksize(io: ffi::io_channel, blksize: c_int) -> ffi::errcode_t {
    guard(|| {
        // SAFETY: libext2fs passes a channel it opened through this manager.
        unsafe { channel(io) }?;
        if blksize <= 0 {
            return Err(ffi::EXT2_ET_INVALID_ARGUMENT as Errcode);
        }
        // SAFETY: checked live above.
        unsafe { (*io).block_size = blksize };
        Ok(())
    })
}

unsafe extern "C" fn dev_read_blk(
    io: ffi::io_channel,
    block: c_ulong,
    count: c_int,
    data: *mut c_void,
) -> ffi::errcode_t {
    // SAFETY: same contract as read_blk64.
    unsafe { dev_read_blk64(io, c_ulonglong::from(block), count, data) }
}

unsafe extern "C" fn dev_read_blk64(
    io: ffi::io_channel,
    block: c_ulonglong,
    count: c_int,
    data: *mut c_void,
) -> ffi::errcode_t {
    guard(|| {
        // SAFETY: libext2fs passes a channel it opened through this manager.
        let Some((ch, pos, len)) = (unsafe { locate(io, block, count) })? else {
            return Ok(());
        };
        // SAFETY: libext2fs' buffer holds `count` blocks (or -count bytes) = `len` bytes.
        let buf = unsafe { std::slice::from_raw_parts_mut(data.cast::<u8>(), len) };
        let Err(err) = ch.device.read_at(buf, pos) else {
            return Ok(());
        };
        let code = errcode(&err, ffi::EXT2_ET_SHORT_READ as Errcode);
        tracing::warn!(device = %ch.device.name().display(), pos, len, error = %err, "ext4 read failed");
        // Like unix_io: what was not read is zeros, and the channel's handler may decide.
        buf.fill(0);
        // SAFETY: live channel; read_error is a field libext2fs' users may set.
        match unsafe { (*io).read_error } {
            // SAFETY: the handler gets the arguments libext2fs documents for it.
            Some(handler) => check(unsafe {
                handler(
                    io,
                    block as c_ulong,
                    count,
                    data,
                    len,
                    0,
                    code as ffi::errcode_t,
                )
            }),
            None => Err(code),
        }
    })
}

unsafe extern "C" fn dev_write_blk(
    io: ffi::io_channel,
    block: c_ulong,
    count: c_int,
    data: *const c_void,
) -> ffi::errcode_t {
    // SAFETY: same contract as write_blk64.
    unsafe { dev_write_blk64(io, c_ulonglong::from(block), count, data) }
}

unsafe extern "C" fn dev_write_blk64(
    io: ffi::io_channel,
    block: c_ulonglong,
    count: c_int,
    data: *const c_void,
) -> ffi::errcode_t {
    guard(|| {
        // SAFETY: libext2fs passes a channel it opened through this manager.
        let Some((ch, pos, len)) = (unsafe { locate(io, block, count) })? else {
            return Ok(());
        };
        // SAFETY: libext2fs' buffer holds `len` bytes and is only read here.
        let buf = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) };
        let Err(code) = write(ch, buf, pos) else {
            return Ok(());
        };
        // SAFETY: live channel; write_error is a field libext2fs' users may set.
        match unsafe { (*io).write_error } {
            // SAFETY: the handler gets the arguments libext2fs documents for it.
            Some(handler) => check(unsafe {
                handler(
                    io,
                    block as c_ulong,
                    count,
                    data,
                    len,
                    0,
                    code as ffi::errcode_t,
                )
            }),
            None => Err(code),
        }
    })
}

unsafe extern "C" fn dev_write_byte(
    io: ffi::io_channel,
    offset: c_ulong,
    count: c_int,
    data: *const c_void,
) -> ffi::errcode_t {
    guard(|| {
        // SAFETY: libext2fs passes a channel it opened through this manager.
        let ch = unsafe { channel(io) }?;
        let len = usize::try_from(count).map_err(|_| ffi::EXT2_ET_INVALID_ARGUMENT as Errcode)?;
        #[allow(clippy::useless_conversion)] // c_ulong is u32 on some targets
        let pos = u64::from(offset)
            .checked_add(ch.offset)
            .ok_or(ffi::EXT2_ET_INVALID_ARGUMENT as Errcode)?;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: libext2fs' buffer holds `count` bytes and is only read here.
        let buf = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) };
        write(ch, buf, pos)
    })
}

fn write(ch: &Channel, buf: &[u8], pos: u64) -> Result<(), Errcode> {
    if !ch.writable {
        return Err(ffi::EXT2_ET_RO_FILSYS as Errcode);
    }
    ch.device.write_at(buf, pos).map_err(|err| {
        tracing::warn!(device = %ch.device.name().display(), pos, len = buf.len(), error = %err, "ext4 write failed");
        errcode(&err, ffi::EXT2_ET_SHORT_WRITE as Errcode)
    })
}

unsafe extern "C" fn dev_flush(io: ffi::io_channel) -> ffi::errcode_t {
    guard(|| {
        // SAFETY: libext2fs passes a channel it opened through this manager.
        let ch = unsafe { channel(io) }?;
        ch.device.flush().map_err(|err| {
            tracing::warn!(device = %ch.device.name().display(), error = %err, "flushing the image device failed");
            errcode(&err, EIO)
        })
    })
}

unsafe extern "C" fn dev_set_option(
    io: ffi::io_channel,
    option: *const c_char,
    arg: *const c_char,
) -> ffi::errcode_t {
    guard(|| {
        // SAFETY: libext2fs passes a channel it opened through this manager.
        unsafe { channel(io) }?;
        let invalid = ffi::EXT2_ET_INVALID_ARGUMENT as Errcode;
        if option.is_null() || arg.is_null() {
            return Err(invalid);
        }
        // SAFETY: io_channel_set_options passes NUL-terminated pieces of its option string.
        let (option, arg) = unsafe { (CStr::from_ptr(option), CStr::from_ptr(arg)) };
        if option != c"offset" {
            return Err(invalid);
        }
        let offset = parse_offset(arg).ok_or(invalid)?;
        // SAFETY: live channel (checked above); private_data is our Channel, which only this
        // thread touches while libext2fs is inside this call.
        unsafe { (*(*io).private_data.cast::<Channel>()).offset = offset };
        Ok(())
    })
}

/// `offset=` values as unix_io accepts them (strtoull base 0): decimal, `0x` hex, `0` octal.
fn parse_offset(arg: &CStr) -> Option<u64> {
    let text = arg.to_str().ok()?;
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if text.len() > 1 && text.starts_with('0') {
        u64::from_str_radix(&text[1..], 8).ok()
    } else {
        text.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_like_strtoull() {
        assert_eq!(parse_offset(c"1048576"), Some(1 << 20));
        assert_eq!(parse_offset(c"0x100000"), Some(1 << 20));
        assert_eq!(parse_offset(c"010"), Some(8));
        assert_eq!(parse_offset(c"0"), Some(0));
        assert_eq!(parse_offset(c""), None);
        assert_eq!(parse_offset(c"12k"), None);
        assert_eq!(parse_offset(c"-1"), None);
    }

    #[test]
    fn errors_keep_errno_or_become_short_io() {
        let enospc = io::Error::from_raw_os_error(28);
        assert_eq!(errcode(&enospc, 1), 28);
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "past the end");
        assert_eq!(errcode(&eof, 77), 77);
        assert_eq!(errcode(&io::Error::other("overlay bug"), 77), EIO);
    }

    #[test]
    fn opening_without_a_parked_device_is_refused() {
        let err = Fs::open_with(c"nothing", c"offset=0", false, manager()).err();
        assert_eq!(err, Some(ffi::EXT2_ET_BAD_DEVICE_NAME as Errcode));
    }

    /// A device whose reads panic: the panic must become an error, not unwind into C.
    struct Panicky;

    impl Device for Panicky {
        fn name(&self) -> &std::path::Path {
            std::path::Path::new("panicky")
        }
        fn size(&self) -> u64 {
            1 << 20
        }
        fn read_at(&self, _: &mut [u8], _: u64) -> io::Result<()> {
            panic!("device bug")
        }
        fn write_at(&self, _: &[u8], _: u64) -> io::Result<()> {
            panic!("device bug")
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_panicking_device_gives_eio() {
        let device: Arc<dyn Device> = Arc::new(Panicky);
        let err = open(device.clone(), c"panicky", c"offset=0", true).err();
        assert_eq!(err, Some(EIO));
        assert_eq!(Arc::strong_count(&device), 1);
        assert!(PENDING.with(|slot| slot.borrow().is_none()));
    }

    #[test]
    fn unknown_io_options_are_refused() {
        let device: Arc<dyn Device> = Arc::new(Panicky);
        for options in [c"cache=off", c"offset", c"offset=12k"] {
            let err = open(device.clone(), c"panicky", options, false).err();
            assert_eq!(
                err,
                Some(ffi::EXT2_ET_INVALID_ARGUMENT as Errcode),
                "{options:?}"
            );
        }
        assert_eq!(Arc::strong_count(&device), 1);
    }
}
