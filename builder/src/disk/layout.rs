//! What a partition table says, independent of its kind, and the checks both kinds share.
//! The readers (`mbr`, `gpt`) fill it; `read` picks the reader.

use std::fmt;
use std::path::Path;

use super::{DiskError, SECTOR_SIZE};

/// Which kind of partition table a disk carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// A classic DOS/MBR table (Raspberry Pi OS, Ubuntu for Raspberry Pi).
    Mbr,
    /// A GUID partition table behind a protective MBR (Ubuntu amd64).
    Gpt,
}

impl TableKind {
    /// The name `sfdisk` uses for the label type ("dos" / "gpt").
    pub fn sfdisk_label(self) -> &'static str {
        match self {
            TableKind::Mbr => "dos",
            TableKind::Gpt => "gpt",
        }
    }
}

impl fmt::Display for TableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TableKind::Mbr => "MBR",
            TableKind::Gpt => "GPT",
        })
    }
}

/// One partition, in bytes, with the identifiers that kernel command lines and fstabs use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Partition number as Linux numbers it (`/dev/sda<N>`): the MBR slot 1-4 (logical 5+),
    /// or the GPT entry index + 1.
    pub number: u32,
    /// Offset of the first byte in the image.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
    /// MBR: two lowercase hex digits ("0c", "83"); GPT: the type GUID in uppercase.
    pub type_id: String,
    /// The type's name as sfdisk spells it, when it is a well-known type.
    pub type_name: Option<String>,
    /// What `root=PARTUUID=` refers to: MBR "<diskid>-<NN>" in lowercase hex; GPT the unique
    /// partition GUID in lowercase.
    pub partuuid: String,
    /// The GPT partition name, if any (MBR has none).
    pub name: Option<String>,
}

impl Partition {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.size)
    }
}

/// A disk's partition table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// MBR or GPT.
    pub kind: TableKind,
    /// MBR: the 32-bit disk signature as 8 lowercase hex digits; GPT: the disk GUID in
    /// lowercase (as `blkid` shows PTUUID).
    pub disk_id: String,
    /// Bytes per sector (always 512 here).
    pub sector_size: u64,
    /// Size of the image file in bytes.
    pub disk_size: u64,
    /// The partitions, ordered by number.
    pub partitions: Vec<Partition>,
}

impl Layout {
    /// The partition with this number.
    pub fn partition(&self, n: u32) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.number == n)
    }

    /// The partition that ends last on the disk: the one that can grow into added space.
    /// On a tie (an MBR extended container and its last logical) the logical one wins.
    pub fn last_on_disk(&self) -> Option<&Partition> {
        self.partitions.iter().max_by_key(|p| (p.end(), p.number))
    }
}

/// One partition's extent in sectors, for the shared consistency checks.
pub(crate) struct Extent {
    pub number: u32,
    pub first: u64,
    pub sectors: u64,
}

/// Refuses extents that lie past the end of the file or overlap each other.
pub(crate) fn check_extents(
    image: &Path,
    table: &'static str,
    extents: &[Extent],
    size: u64,
) -> Result<(), DiskError> {
    for e in extents {
        let end = e
            .first
            .checked_add(e.sectors)
            .and_then(|s| s.checked_mul(SECTOR_SIZE))
            .ok_or_else(|| {
                DiskError::garbage(
                    image,
                    table,
                    format!("partition {} has an impossible extent", e.number),
                )
            })?;
        if end > size {
            return Err(DiskError::Truncated {
                path: image.to_path_buf(),
                what: format!("partition {}", e.number),
                end,
                size,
            });
        }
    }
    for (i, a) in extents.iter().enumerate() {
        for b in &extents[i + 1..] {
            if a.first < b.first + b.sectors && b.first < a.first + a.sectors {
                return Err(DiskError::garbage(
                    image,
                    table,
                    format!("partitions {} and {} overlap", a.number, b.number),
                ));
            }
        }
    }
    Ok(())
}
