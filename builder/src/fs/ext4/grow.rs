//! Growing the filesystem after its partition grew: libext2fs has no in-process resize, so
//! this runs e2fsprogs' own `resize2fs` on `image?offset=N`, after the same checks `open`
//! makes, with its clock pinned to the filesystem's last write time for reproducibility.

use super::{Access, Ext4, Ext4Error};
use std::path::Path;
use std::process::Command;

/// Grows the ext4 filesystem at `offset` in `image` to `new_size_bytes` (rounded down to
/// whole blocks). The image file must already be at least `offset + new_size_bytes` long.
pub fn grow_fs(image: &Path, offset: u64, new_size_bytes: u64) -> Result<(), Ext4Error> {
    let fail = |message: String| Ext4Error::Grow { image: image.to_path_buf(), offset, message };
    let (block_size, blocks, wtime) = {
        let fs = Ext4::open(image, offset, Access::ReadOnly)?;
        let info = fs.fs.super_info();
        (info.block_size, info.blocks, info.wtime)
    };
    let new_blocks = new_size_bytes / block_size;
    if new_blocks < blocks {
        return Err(fail(format!(
            "the new size ({new_size_bytes} bytes) is smaller than the filesystem ({} bytes); piimg only grows",
            blocks * block_size
        )));
    }
    if new_blocks == blocks {
        return Ok(());
    }
    let file_len = std::fs::metadata(image).map_err(|e| fail(e.to_string()))?.len();
    if file_len < offset.saturating_add(new_blocks * block_size) {
        return Err(fail(format!(
            "the image is {file_len} bytes, too short for {new_size_bytes} bytes at offset {offset}; grow the image file and partition first"
        )));
    }
    let mut target = image.as_os_str().to_owned();
    target.push(format!("?offset={offset}"));
    // -f: skip resize2fs' "run e2fsck first" heuristic (mount time newer than last check,
    // true of every real base image); `open` above already refused unclean filesystems.
    let output = Command::new("resize2fs")
        .arg("-f")
        .arg(&target)
        .arg(new_blocks.to_string())
        .env("E2FSPROGS_FAKE_TIME", wtime.to_string())
        .output()
        .map_err(|e| fail(format!("cannot run resize2fs ({e}); install e2fsprogs")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(fail(format!("resize2fs exited with {}: {}", output.status, stderr.trim())));
    }
    tracing::debug!(image = %image.display(), offset, new_blocks, "grew ext4 filesystem");
    Ok(())
}
