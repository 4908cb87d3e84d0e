//! Which on-disk features `fs::ext4` accepts, decided one by one.
//!
//! Accepted: what mkfs.ext4 1.47 and the Raspberry Pi OS / Ubuntu root filesystems use, where
//! libext2fs keeps every write we make correct (it updates checksums, htree indexes, flex_bg
//! group counts and 64-bit descriptors itself). Refused: anything that changes how directory
//! entries, file data or allocations must be written in ways our write path does not handle
//! (inline_data, encryption, casefolding, quotas that would go stale, bigalloc, ...), and any
//! feature we have never heard of.

/// (bit, e2fsprogs name) of every accepted `s_feature_compat` bit.
const COMPAT_OK: &[(u32, &str)] = &[
    (0x0004, "has_journal"),
    (0x0008, "ext_attr"),
    (0x0010, "resize_inode"),
    (0x0020, "dir_index"),
    // The orphan file is only read by the kernel/e2fsck; libext2fs unlink does not use it.
    (0x1000, "orphan_file"),
];
/// Accepted `s_feature_incompat` bits.
const INCOMPAT_OK: &[(u32, &str)] = &[
    (0x0002, "filetype"),
    (0x0040, "extent"),
    (0x0080, "64bit"),
    (0x0200, "flex_bg"),
    (0x2000, "metadata_csum_seed"),
];
/// Accepted `s_feature_ro_compat` bits.
const RO_COMPAT_OK: &[(u32, &str)] = &[
    (0x0001, "sparse_super"),
    (0x0002, "large_file"),
    (0x0008, "huge_file"),
    (0x0010, "uninit_bg"),
    (0x0020, "dir_nlink"),
    (0x0040, "extra_isize"),
    (0x0400, "metadata_csum"),
];

/// Names of known but refused features, so the error can say which one it is.
const KNOWN: &[(usize, u32, &str)] = &[
    (0, 0x0001, "dir_prealloc"),
    (0, 0x0002, "imagic_inodes"),
    (0, 0x0040, "lazy_bg"),
    (0, 0x0080, "snapshot_bitmap"),
    (0, 0x0100, "exclude_bitmap"),
    (0, 0x0200, "sparse_super2"),
    (0, 0x0400, "fast_commit"),
    (0, 0x0800, "stable_inodes"),
    (1, 0x0001, "compression"),
    (1, 0x0004, "needs_recovery"),
    (1, 0x0008, "journal_dev"),
    (1, 0x0010, "meta_bg"),
    (1, 0x0100, "mmp"),
    (1, 0x0400, "ea_inode"),
    (1, 0x1000, "dirdata"),
    (1, 0x4000, "large_dir"),
    (1, 0x8000, "inline_data"),
    (1, 0x10000, "encrypt"),
    (1, 0x20000, "casefold"),
    (2, 0x0004, "btree_dir"),
    (2, 0x0080, "snapshot"),
    (2, 0x0100, "quota"),
    (2, 0x0200, "bigalloc"),
    (2, 0x0800, "replica"),
    (2, 0x1000, "read-only"),
    (2, 0x2000, "project"),
    (2, 0x4000, "shared_blocks"),
    (2, 0x8000, "verity"),
    (2, 0x10000, "orphan_present"),
];

/// Bits that are about state, not format; `open` reports them as "not clean" instead.
const INCOMPAT_RECOVER: u32 = 0x0004;
const RO_COMPAT_ORPHAN_PRESENT: u32 = 0x10000;

/// The unsupported features among the three feature words, by name (unknown bits as
/// `compat:0x...`). Empty when the filesystem is supported.
pub(super) fn unsupported(compat: u32, incompat: u32, ro_compat: u32) -> Vec<String> {
    let words = [
        ("compat", compat, COMPAT_OK),
        ("incompat", incompat & !INCOMPAT_RECOVER, INCOMPAT_OK),
        (
            "ro_compat",
            ro_compat & !RO_COMPAT_ORPHAN_PRESENT,
            RO_COMPAT_OK,
        ),
    ];
    let mut refused = Vec::new();
    for (index, (word_name, word, ok)) in words.into_iter().enumerate() {
        let allowed = ok.iter().fold(0, |acc, (bit, _)| acc | bit);
        let mut rest = word & !allowed;
        while rest != 0 {
            let bit = rest & rest.wrapping_neg();
            rest &= !bit;
            let name = KNOWN
                .iter()
                .find(|(w, b, _)| *w == index && *b == bit)
                .map(|(_, _, n)| (*n).to_string())
                .unwrap_or_else(|| format!("{word_name}:{bit:#x}"));
            refused.push(name);
        }
    }
    refused
}

/// Why the filesystem is unclean, if it is: journal to replay, errors recorded, orphans.
pub(super) fn unclean_reason(
    incompat: u32,
    ro_compat: u32,
    state: u16,
    valid: u16,
    error: u16,
) -> Option<String> {
    let mut reasons = Vec::new();
    if incompat & INCOMPAT_RECOVER != 0 {
        reasons.push("the journal needs recovery");
    }
    if ro_compat & RO_COMPAT_ORPHAN_PRESENT != 0 {
        reasons.push("orphan inodes are pending");
    }
    if state & error != 0 {
        reasons.push("errors were recorded");
    }
    if state & valid == 0 {
        reasons.push("it was not cleanly unmounted");
    }
    (!reasons.is_empty()).then(|| reasons.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mkfs_defaults_are_supported() {
        // mkfs.ext4 1.47: has_journal ext_attr resize_inode dir_index orphan_file /
        // filetype extent 64bit flex_bg metadata_csum_seed / sparse_super large_file
        // huge_file dir_nlink extra_isize metadata_csum.
        assert!(unsupported(0x103c, 0x22c2, 0x047b).is_empty());
    }

    #[test]
    fn refused_features_are_named() {
        assert_eq!(unsupported(0x3c, 0x82c2, 0x47b), vec!["inline_data"]);
        assert_eq!(
            unsupported(0x3c, 0x2c2 | 0x20000, 0x47b | 0x100),
            vec!["casefold", "quota"]
        );
        assert_eq!(
            unsupported(0x8000_0000, 0x2c2, 0x47b),
            vec!["compat:0x80000000"]
        );
    }

    #[test]
    fn recovery_is_unclean_not_unsupported() {
        assert!(unsupported(0x3c, 0x2c6, 0x47b).is_empty());
        assert!(unclean_reason(0x2c6, 0x47b, 1, 1, 2)
            .unwrap()
            .contains("journal"));
        assert!(unclean_reason(0x2c2, 0x47b, 1, 1, 2).is_none());
        assert!(unclean_reason(0x2c2, 0x47b, 3, 1, 2)
            .unwrap()
            .contains("errors"));
    }
}
