//! Growing the filesystem after its partition grew. libext2fs has no in-process resize, so
//! this runs e2fsprogs' own `resize2fs` on `image?offset=N`, after the same checks `open`
//! makes, with its clock pinned to the filesystem's last write time for reproducibility.
//!
//! One trap, handled here: resize2fs 1.47 treats a regular file as the whole device and, on
//! exit, truncates it to the new filesystem size, ignoring `offset=`, which would cut `offset`
//! bytes off the end of the new filesystem. So the file is handed over exactly that long
//! (everything past it is new, still unused space, plus any trailer such as a GPT backup
//! header, which is saved) and restored to its length afterwards.

use super::{Access, Ext4, Ext4Error};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

/// Largest trailer (bytes after the partition) this keeps in memory across the resize.
const MAX_TRAILER: u64 = 64 << 20;

/// Grows the ext4 filesystem at `offset` in `image` to `new_size_bytes` (rounded down to
/// whole blocks). The image file must already hold `offset + new_size_bytes` bytes, and the
/// growth must be at least `offset` bytes (see the module docs for why).
pub fn grow_fs(image: &Path, offset: u64, new_size_bytes: u64) -> Result<(), Ext4Error> {
    let fail = |message: String| Ext4Error::Grow {
        image: image.to_path_buf(),
        offset,
        message,
    };
    let (block_size, blocks, wtime) = {
        let fs = Ext4::open(image, offset, Access::ReadOnly)?;
        let info = fs.fs.super_info();
        (info.block_size, info.blocks, info.wtime)
    };
    let old_bytes = blocks * block_size;
    let new_blocks = new_size_bytes / block_size;
    let new_bytes = new_blocks * block_size;
    if new_blocks < blocks {
        return Err(fail(format!(
            "the new size ({new_size_bytes} bytes) is smaller than the filesystem ({old_bytes} bytes); piimg only grows"
        )));
    }
    if new_blocks == blocks {
        return Ok(());
    }
    if new_bytes < offset + old_bytes {
        return Err(fail(format!(
            "growing by {} bytes is less than the partition offset ({offset} bytes), which resize2fs on an image file cannot do safely; grow by at least {offset} bytes",
            new_bytes - old_bytes
        )));
    }
    let file_len = std::fs::metadata(image)
        .map_err(|e| fail(e.to_string()))?
        .len();
    let new_end = offset + new_bytes;
    if file_len < new_end {
        return Err(fail(format!(
            "the image is {file_len} bytes, too short for {new_bytes} bytes at offset {offset}; grow the image file and partition first"
        )));
    }
    if file_len - new_end > MAX_TRAILER {
        return Err(fail(format!(
            "{} bytes follow the partition; growing is only supported for the last partition of the image",
            file_len - new_end
        )));
    }
    let image_str = image.to_str().filter(|s| !s.contains('?')).ok_or_else(|| {
        fail(
            "resize2fs cannot open an image whose path is not UTF-8 or contains '?'; rename it"
                .into(),
        )
    })?;

    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .map_err(|e| fail(e.to_string()))?;
    let mut trailer = vec![0u8; (file_len - new_end) as usize];
    file.read_exact_at(&mut trailer, new_end)
        .map_err(|e| fail(format!("reading the bytes after the partition: {e}")))?;
    file.set_len(new_bytes).map_err(|e| fail(e.to_string()))?;

    // -f: skip resize2fs' "run e2fsck first" heuristic (mount time newer than last check,
    // true of every real base image); `open` above already refused unclean filesystems.
    let output = Command::new("resize2fs")
        .arg("-f")
        .arg(format!("{image_str}?offset={offset}"))
        .arg(new_blocks.to_string())
        .env("E2FSPROGS_FAKE_TIME", wtime.to_string())
        .output();

    let restored = file
        .set_len(file_len)
        .and_then(|()| file.write_all_at(&trailer, new_end))
        .and_then(|()| file.sync_all());
    let output =
        output.map_err(|e| fail(format!("cannot run resize2fs ({e}); install e2fsprogs")))?;
    restored.map_err(|e| fail(format!("restoring the image length after resize2fs: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(fail(format!(
            "resize2fs exited with {}: {}",
            output.status,
            stderr.trim()
        )));
    }
    tracing::debug!(image = %image.display(), offset, new_blocks, "grew ext4 filesystem");
    Ok(())
}
