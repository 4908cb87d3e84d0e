//! Recognises what a disk already carries from its first and last MiB, the way `wipefs` and
//! libblkid do for the common cases: a disk is formatted only when this finds nothing.

use std::fmt;

/// Something found on a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// ext2/3/4 with its label.
    Ext {
        /// The volume label (may be empty).
        label: String,
    },
    /// XFS.
    Xfs,
    /// Btrfs.
    Btrfs,
    /// FAT12/16/32.
    Vfat,
    /// exFAT.
    Exfat,
    /// NTFS.
    Ntfs,
    /// Linux swap.
    Swap,
    /// LUKS encrypted volume.
    Luks,
    /// LVM physical volume.
    Lvm,
    /// An MBR (DOS) partition table.
    Mbr,
    /// A GPT (primary or backup header).
    Gpt,
    /// Non-zero bytes no rule recognises: data of some kind, so not blank.
    Unknown,
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signature::Ext { label } => write!(f, "an ext2/3/4 filesystem labelled {label:?}"),
            Signature::Xfs => f.write_str("an XFS filesystem"),
            Signature::Btrfs => f.write_str("a Btrfs filesystem"),
            Signature::Vfat => f.write_str("a FAT filesystem"),
            Signature::Exfat => f.write_str("an exFAT filesystem"),
            Signature::Ntfs => f.write_str("an NTFS filesystem"),
            Signature::Swap => f.write_str("a swap area"),
            Signature::Luks => f.write_str("a LUKS volume"),
            Signature::Lvm => f.write_str("an LVM physical volume"),
            Signature::Mbr => f.write_str("an MBR partition table"),
            Signature::Gpt => f.write_str("a GPT partition table"),
            Signature::Unknown => f.write_str("unrecognised data"),
        }
    }
}

fn at(buf: &[u8], off: usize, magic: &[u8]) -> bool {
    buf.get(off..off + magic.len()) == Some(magic)
}

/// The filesystem (or volume) whose superblock starts at `buf[0]`, if any.
pub fn filesystem(buf: &[u8]) -> Option<Signature> {
    if at(buf, 1080, &[0x53, 0xEF]) {
        let raw = buf.get(1144..1160).unwrap_or(&[]);
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let label = String::from_utf8_lossy(&raw[..end]).into_owned();
        return Some(Signature::Ext { label });
    }
    if at(buf, 0, b"XFSB") {
        return Some(Signature::Xfs);
    }
    if at(buf, 65536 + 64, b"_BHRfS_M") {
        return Some(Signature::Btrfs);
    }
    if at(buf, 0, b"LUKS\xba\xbe") {
        return Some(Signature::Luks);
    }
    if at(buf, 3, b"EXFAT   ") {
        return Some(Signature::Exfat);
    }
    if at(buf, 3, b"NTFS    ") {
        return Some(Signature::Ntfs);
    }
    if at(buf, 54, b"FAT1") || at(buf, 82, b"FAT32") || at(buf, 54, b"FAT ") {
        return Some(Signature::Vfat);
    }
    for page in [4096usize, 8192, 16384, 65536] {
        if at(buf, page - 10, b"SWAPSPACE2") || at(buf, page - 10, b"SWAP-SPACE") {
            return Some(Signature::Swap);
        }
    }
    if (0..4).any(|s| at(buf, s * 512, b"LABELONE")) {
        return Some(Signature::Lvm);
    }
    None
}

/// Everything recognisable in a disk's first (`head`) and last (`tail`) MiB.
pub fn scan(head: &[u8], tail: &[u8]) -> Vec<Signature> {
    let mut found = Vec::new();
    let fs = filesystem(head);
    let is_boot_sector_fs = matches!(
        fs,
        Some(Signature::Vfat | Signature::Exfat | Signature::Ntfs)
    );
    if let Some(fs) = fs {
        found.push(fs);
    }
    let gpt = at(head, 512, b"EFI PART")
        || at(head, 4096, b"EFI PART")
        || tail.len() >= 512 && at(tail, tail.len() - 512, b"EFI PART")
        || tail.len() >= 4096 && at(tail, tail.len() - 4096, b"EFI PART");
    if gpt {
        found.push(Signature::Gpt);
    } else if at(head, 510, &[0x55, 0xAA]) && !is_boot_sector_fs {
        found.push(Signature::Mbr);
    }
    if found.is_empty() && (head.iter().any(|&b| b != 0) || tail.iter().any(|&b| b != 0)) {
        found.push(Signature::Unknown);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank() -> Vec<u8> {
        vec![0; 1 << 20]
    }

    #[test]
    fn blank_is_blank() {
        assert!(scan(&blank(), &blank()).is_empty());
    }

    #[test]
    fn recognises_each_kind() {
        let mut ext = blank();
        ext[1080..1082].copy_from_slice(&[0x53, 0xEF]);
        ext[1144..1149].copy_from_slice(b"hello");
        assert_eq!(
            scan(&ext, &blank()),
            vec![Signature::Ext {
                label: "hello".into()
            }]
        );
        let cases: &[(usize, &[u8], Signature)] = &[
            (0, b"XFSB", Signature::Xfs),
            (65536 + 64, b"_BHRfS_M", Signature::Btrfs),
            (0, b"LUKS\xba\xbe", Signature::Luks),
            (3, b"EXFAT   ", Signature::Exfat),
            (3, b"NTFS    ", Signature::Ntfs),
            (82, b"FAT32", Signature::Vfat),
            (4086, b"SWAPSPACE2", Signature::Swap),
            (512, b"LABELONE", Signature::Lvm),
        ];
        for (off, magic, sig) in cases {
            let mut head = blank();
            head[*off..off + magic.len()].copy_from_slice(magic);
            assert_eq!(scan(&head, &blank()), vec![sig.clone()], "{sig}");
        }
    }

    #[test]
    fn partition_tables_and_stray_data() {
        let mut mbr = blank();
        mbr[510..512].copy_from_slice(&[0x55, 0xAA]);
        assert_eq!(scan(&mbr, &blank()), vec![Signature::Mbr]);
        let mut tail = blank();
        let n = tail.len();
        tail[n - 512..n - 504].copy_from_slice(b"EFI PART");
        assert_eq!(scan(&blank(), &tail), vec![Signature::Gpt]);
        let mut junk = blank();
        junk[777] = 1;
        assert_eq!(scan(&blank(), &junk), vec![Signature::Unknown]);
    }
}
