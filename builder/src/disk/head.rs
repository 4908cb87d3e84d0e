//! What the first sectors of a disk image say about where the disk ends, read from bytes
//! rather than from a file: a decoder checks the head of an image while it is still
//! decompressing it, before the rest exists (issue 15.10). The full checks are
//! [`super::Layout::read`]'s, on the whole file; this only needs to be right about the bound.

use super::mbr::has_protective_entry;
use super::{TableKind, SECTOR_SIZE};
use gpt::disk::LogicalBlockSize;

/// Bytes of an image's head [`table_end`] reads: the MBR and the primary GPT header.
pub const HEAD_BYTES: usize = 2 * SECTOR_SIZE as usize;

/// Where an image's partition table says its disk ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableEnd {
    /// MBR or GPT.
    pub kind: TableKind,
    /// One past the last byte the table accounts for: the end of the partition that ends last
    /// (MBR), or of the backup GPT header. 0 for an MBR without partitions.
    pub end: u64,
}

/// Why the head of an image holds no partition table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Fewer bytes than one sector.
    #[error("only {0} bytes, too small to be a disk image")]
    TooSmall(usize),
    /// No 0x55AA boot signature in the first sector.
    #[error("no partition table (no MBR boot signature in the first sector)")]
    NoTable,
}

/// Reads where the disk ends from the first [`HEAD_BYTES`] of an image (fewer when the image
/// is that short). A GPT whose primary header is damaged falls back to its protective MBR
/// entry, which covers the disk (up to the 2 TiB its 32-bit fields can say).
pub fn table_end(head: &[u8]) -> Result<TableEnd, HeadError> {
    let Some(sector0) = head.first_chunk::<512>() else {
        return Err(HeadError::TooSmall(head.len()));
    };
    if sector0[510..512] != [0x55, 0xAA] {
        return Err(HeadError::NoTable);
    }
    let mbr_end = (0..4)
        .map(|i| {
            let e = &sector0[446 + 16 * i..462 + 16 * i];
            let le = |o: usize| u64::from(u32::from_le_bytes([e[o], e[o + 1], e[o + 2], e[o + 3]]));
            if e[4] == 0 {
                0
            } else {
                (le(8) + le(12)) * SECTOR_SIZE
            }
        })
        .max()
        .unwrap_or(0);
    if !has_protective_entry(sector0) {
        return Ok(TableEnd {
            kind: TableKind::Mbr,
            end: mbr_end,
        });
    }
    let end = gpt_backup_lba(head)
        .map(|lba| lba.saturating_add(1).saturating_mul(SECTOR_SIZE))
        .unwrap_or(mbr_end);
    Ok(TableEnd {
        kind: TableKind::Gpt,
        end,
    })
}

/// The backup header's sector, from a primary GPT header whose signature and CRC check out.
fn gpt_backup_lba(head: &[u8]) -> Option<u64> {
    let bytes = head.get(..HEAD_BYTES)?;
    let mut device = std::io::Cursor::new(bytes);
    gpt::header::read_header_from_arbitrary_device(&mut device, LogicalBlockSize::Lb512)
        .ok()
        .map(|h| h.backup_lba)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbr(entries: &[(u8, u32, u32)]) -> Vec<u8> {
        let mut s = vec![0u8; 1024];
        for (i, &(ty, first, sectors)) in entries.iter().enumerate() {
            let e = 446 + 16 * i;
            s[e + 4] = ty;
            s[e + 8..e + 12].copy_from_slice(&first.to_le_bytes());
            s[e + 12..e + 16].copy_from_slice(&sectors.to_le_bytes());
        }
        s[510] = 0x55;
        s[511] = 0xAA;
        s
    }

    #[test]
    fn mbr_ends_with_its_last_partition() {
        let head = mbr(&[(0x0c, 8192, 1024), (0x83, 16384, 4096), (0x83, 9216, 100)]);
        assert_eq!(
            table_end(&head),
            Ok(TableEnd {
                kind: TableKind::Mbr,
                end: (16384 + 4096) * 512
            })
        );
    }

    #[test]
    fn zeros_and_short_heads_have_no_table() {
        assert_eq!(table_end(&[0u8; 1024]), Err(HeadError::NoTable));
        assert_eq!(table_end(&[0u8; 100]), Err(HeadError::TooSmall(100)));
    }

    #[test]
    fn a_gpt_without_a_valid_header_falls_back_to_the_protective_entry() {
        let head = mbr(&[(0xee, 1, 131_071)]);
        assert_eq!(
            table_end(&head),
            Ok(TableEnd {
                kind: TableKind::Gpt,
                end: 131_072 * 512
            })
        );
    }
}
