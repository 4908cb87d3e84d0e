//! Files the user hands piimg by path (a base image, a k3s or first-boot binary, profile and
//! overlay files): opened only when they are regular files, and read streaming, never whole.
//!
//! `--base /dev/zero` or `files[].source = "/dev/zero"` used to hang or grow until killed; a
//! FIFO would block the open itself. The open here never blocks (`O_NONBLOCK`, which a regular
//! file ignores) and the kind is checked on the open descriptor, so nothing can be swapped in
//! between the check and the read.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// What kind of file `meta` describes, for the message.
fn kind_name(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a folder"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a named pipe"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading if it is a regular file (symlinks followed). Anything else gives
/// an `InvalidInput` error saying what it is, so callers can name the file and the fix.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "it is {}: give a regular file (a device or pipe never ends)",
                kind_name(&meta)
            ),
        ));
    }
    Ok(file)
}

/// The SHA-256 (lower-case hex) of a regular file, read in 1 MiB chunks.
pub fn sha256_regular(path: &Path) -> io::Result<String> {
    let mut file = open_regular(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_pipes_and_folders_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        for (path, what) in [
            (Path::new("/dev/zero"), "character device"),
            (fifo.as_path(), "named pipe"),
            (dir.path(), "folder"),
        ] {
            let e = open_regular(path).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{path:?}");
            assert!(e.to_string().contains(what), "{path:?}: {e}");
        }
        let file = dir.path().join("f");
        std::fs::write(&file, b"abc").unwrap();
        assert_eq!(
            sha256_regular(&file).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
