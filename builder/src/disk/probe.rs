//! Recognising the filesystem in a partition by its on-disk signature, as `blkid` would, so
//! that `inspect` and the edit code can tell the boot, root and swap partitions apart without
//! trusting partition type bytes.

use std::io::{self, Read, Seek, SeekFrom};

/// The kinds of filesystem an OS image carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    /// FAT12/16/32 (the boot partition, the ESP).
    Vfat,
    /// ext2, ext3 or ext4 (they share one superblock format).
    Ext4,
    /// A Linux swap area.
    Swap,
    /// Anything else, or nothing.
    Unknown,
}

/// Reads up to `buf.len()` bytes at `offset`; fewer at the end of the partition.
fn read_at(view: &mut (impl Read + Seek), offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    view.seek(SeekFrom::Start(offset))?;
    let mut filled = 0;
    while filled < buf.len() {
        match view.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// A label from a fixed-size, NUL- or space-padded field; `None` when empty.
fn label(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let s = String::from_utf8_lossy(&bytes[..end])
        .trim_end()
        .to_string();
    (!s.is_empty() && s != "NO NAME").then_some(s)
}

/// Identifies the filesystem in `view` (positioned anywhere) and its label.
///
/// ext: magic 0xEF53 in the superblock at byte 1024, label at 1024+120. FAT: the boot sector
/// signature plus the "FAT" type string of a FAT32 or FAT12/16 extended BPB, label from that
/// BPB. Swap: "SWAPSPACE2" at the end of the first page (4, 8, 16 or 64 KiB pages), label at
/// 1052.
pub fn probe(view: &mut (impl Read + Seek)) -> io::Result<(FsKind, Option<String>)> {
    let mut sb = [0u8; 1024];
    if read_at(view, 1024, &mut sb)? >= 136 && sb[56..58] == [0x53, 0xEF] {
        return Ok((FsKind::Ext4, label(&sb[120..136])));
    }

    let mut boot = [0u8; 512];
    if read_at(view, 0, &mut boot)? == 512 && boot[510..512] == [0x55, 0xAA] {
        // FAT32 extended BPB: signature 0x29 at 66, label at 71, type at 82.
        if boot[66] == 0x29 && boot[82..85] == *b"FAT" {
            return Ok((FsKind::Vfat, label(&boot[71..82])));
        }
        // FAT12/16 extended BPB: signature 0x29 at 38, label at 43, type at 54.
        if boot[38] == 0x29 && boot[54..57] == *b"FAT" {
            return Ok((FsKind::Vfat, label(&boot[43..54])));
        }
    }

    for page in [4096u64, 8192, 16384, 65536] {
        let mut magic = [0u8; 10];
        if read_at(view, page - 10, &mut magic)? == 10
            && (&magic == b"SWAPSPACE2" || &magic == b"SWAP-SPACE")
        {
            let mut name = [0u8; 16];
            let n = read_at(view, 1052, &mut name)?;
            return Ok((FsKind::Swap, label(&name[..n])));
        }
    }
    Ok((FsKind::Unknown, None))
}
