//! Helpers shared by the integration tests: test images with holes, standard tools, a server.
#![allow(dead_code, missing_docs)]

#[path = "../../../tests/src/http.rs"]
pub mod http;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;

/// Deterministic pseudo-random bytes that do not compress to nothing.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A sparse image of `size` bytes with data at the given (offset, len) places, the rest holes.
pub fn sparse_image(path: &Path, size: u64, data: &[(u64, usize)]) -> Vec<u8> {
    let file = File::create(path).expect("create image");
    file.set_len(size).expect("size image");
    let mut whole = vec![0u8; size as usize];
    for (i, &(off, len)) in data.iter().enumerate() {
        let bytes = noise(len, i as u64 + 7);
        file.write_all_at(&bytes, off).expect("write image");
        whole[off as usize..off as usize + len].copy_from_slice(&bytes);
    }
    whole
}

/// The standard test image: 24 MiB, about 3 MiB of data in three places, a tail that is not a
/// multiple of 4 KiB.
pub fn standard_image(path: &Path) -> Vec<u8> {
    sparse_image(
        path,
        24 * 1024 * 1024 + 1000,
        &[(0, 1 << 20), (9 << 20, 1_500_000), (20 << 20, 600_000)],
    )
}

/// Writes an MBR into the first sector of the image at `path` (and into `bytes`, its
/// content): one Linux partition from sector 2048 to the last whole sector, so the image reads
/// as a disk image (piimg checks what it decompresses as a base for a partition table).
pub fn add_mbr(path: &Path, bytes: &mut [u8]) {
    let sectors = (bytes.len() / 512) as u32;
    let mut entry = [0u8; 16];
    entry[4] = 0x83;
    entry[8..12].copy_from_slice(&2048u32.to_le_bytes());
    entry[12..16].copy_from_slice(&(sectors - 2048).to_le_bytes());
    bytes[446..462].copy_from_slice(&entry);
    bytes[462..510].fill(0);
    bytes[510] = 0x55;
    bytes[511] = 0xAA;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open image");
    file.write_all_at(&bytes[..512], 0).expect("write MBR");
}

/// [`standard_image`] with an MBR: what a base image looks like to piimg's checks.
pub fn standard_disk_image(path: &Path) -> Vec<u8> {
    let mut bytes = standard_image(path);
    add_mbr(path, &mut bytes);
    bytes
}

/// Bytes actually allocated on disk.
pub fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).expect("stat").blocks() * 512
}

/// Runs a shell command and panics with its output when it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes bytes to a new file.
pub fn write(path: &Path, bytes: &[u8]) {
    File::create(path)
        .and_then(|mut f| f.write_all(bytes))
        .expect("write file");
}

/// Names in a folder, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}
