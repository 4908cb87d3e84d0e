//! The DOS/MBR partition table: reading it (primaries through `mbrman`, logical partitions by
//! walking the EBR chain with bounds checks) and growing its last primary partition.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use mbrman::{MBRHeader, CHS};

use super::layout::{check_extents, Extent};
use super::type_names::mbr_type_name;
use super::{DiskError, Layout, Partition, TableKind, SECTOR_SIZE};

const TABLE: &str = "MBR";
/// More logical partitions than this means a looping or garbage EBR chain.
const MAX_LOGICAL: u32 = 128;

/// Whether any primary slot of this first sector is a GPT protective entry (type 0xEE).
pub(crate) fn has_protective_entry(sector0: &[u8; 512]) -> bool {
    (0..4).any(|i| sector0[446 + 16 * i + 4] == 0xEE)
}

fn is_extended(sys: u8) -> bool {
    matches!(sys, 0x05 | 0x0f | 0x85)
}

/// One raw 16-byte entry: (boot flag, type, start LBA, sector count).
fn raw_entry(bytes: &[u8]) -> (u8, u8, u32, u32) {
    let le = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    (bytes[0], bytes[4], le(8), le(12))
}

fn partition(disk_id: &str, number: u32, sys: u8, first: u64, sectors: u64) -> Partition {
    Partition {
        number,
        start: first * SECTOR_SIZE,
        size: sectors * SECTOR_SIZE,
        type_id: format!("{sys:02x}"),
        type_name: mbr_type_name(sys).map(str::to_owned),
        partuuid: format!("{disk_id}-{number:02x}"),
        name: None,
    }
}

/// Reads an MBR table (the caller has checked the boot signature and that it is not GPT).
pub(crate) fn read(file: &mut File, image: &Path, size: u64) -> Result<Layout, DiskError> {
    let header =
        MBRHeader::read_from(file).map_err(|e| DiskError::garbage(image, TABLE, e.to_string()))?;
    let disk_id = format!("{:08x}", u32::from_le_bytes(header.disk_signature));

    let mut partitions = Vec::new();
    let mut primaries = Vec::new();
    let mut extended = None;
    for (i, e) in header.iter() {
        if e.is_unused() {
            continue;
        }
        let number = i as u32;
        if e.starting_lba == 0 || e.sectors == 0 {
            return Err(DiskError::garbage(
                image,
                TABLE,
                format!(
                    "partition {number} starts at sector {} with {} sectors",
                    e.starting_lba, e.sectors
                ),
            ));
        }
        let (first, sectors) = (u64::from(e.starting_lba), u64::from(e.sectors));
        if is_extended(e.sys) {
            if extended.is_some() {
                return Err(DiskError::garbage(
                    image,
                    TABLE,
                    "more than one extended partition",
                ));
            }
            extended = Some((first, sectors));
        }
        primaries.push(Extent {
            number,
            first,
            sectors,
        });
        partitions.push(partition(&disk_id, number, e.sys, first, sectors));
    }
    check_extents(image, TABLE, &primaries, size)?;

    if let Some((ext_first, ext_sectors)) = extended {
        let logicals = read_logicals(file, image, ext_first, ext_sectors)?;
        let extents: Vec<Extent> = logicals
            .iter()
            .map(|&(number, _, first, sectors)| Extent {
                number,
                first,
                sectors,
            })
            .collect();
        check_extents(image, TABLE, &extents, size)?;
        for (number, sys, first, sectors) in logicals {
            partitions.push(partition(&disk_id, number, sys, first, sectors));
        }
    }
    partitions.sort_by_key(|p| p.number);
    Ok(Layout {
        kind: TableKind::Mbr,
        disk_id,
        sector_size: SECTOR_SIZE,
        disk_size: size,
        partitions,
    })
}

/// Walks the chain of extended boot records; every logical partition must lie inside the
/// extended container and the chain must move forward, so garbage cannot loop.
fn read_logicals(
    file: &mut File,
    image: &Path,
    ext_first: u64,
    ext_sectors: u64,
) -> Result<Vec<(u32, u8, u64, u64)>, DiskError> {
    let ext_end = ext_first + ext_sectors;
    let mut out = Vec::new();
    let mut rel = 0u64;
    for number in 5..5 + MAX_LOGICAL {
        let ebr_lba = ext_first + rel;
        if ebr_lba >= ext_end {
            return Err(DiskError::garbage(
                image,
                TABLE,
                "an extended boot record lies outside the extended partition",
            ));
        }
        let mut sector = [0u8; 512];
        file.seek(SeekFrom::Start(ebr_lba * SECTOR_SIZE))
            .and_then(|_| file.read_exact(&mut sector))
            .map_err(|e| DiskError::io(image, "cannot read an extended boot record", e))?;
        if sector[510..512] != [0x55, 0xAA] {
            if rel == 0 {
                return Ok(out); // an empty extended partition needs no EBR
            }
            return Err(DiskError::garbage(
                image,
                TABLE,
                format!("the extended boot record of partition {number} has no signature"),
            ));
        }
        let (boot, sys, start, sectors) = raw_entry(&sector[446..462]);
        let (_, next_sys, next_rel, _) = raw_entry(&sector[462..478]);
        if sys != 0 {
            let first = ebr_lba + u64::from(start);
            let sectors = u64::from(sectors);
            if boot & 0x7f != 0 || start == 0 || sectors == 0 || first + sectors > ext_end {
                return Err(DiskError::garbage(
                    image,
                    TABLE,
                    format!("logical partition {number} is not inside the extended partition"),
                ));
            }
            out.push((number, sys, first, sectors));
        }
        if next_sys == 0 || next_rel == 0 {
            return Ok(out);
        }
        if u64::from(next_rel) <= rel {
            return Err(DiskError::garbage(
                image,
                TABLE,
                "the extended boot record chain goes backwards",
            ));
        }
        rel = u64::from(next_rel);
    }
    Err(DiskError::garbage(
        image,
        TABLE,
        format!("more than {MAX_LOGICAL} logical partitions"),
    ))
}

/// Refuses what [`grow`] cannot do on this table, before anything is written: disks with
/// logical partitions (their EBR chain would need rewriting).
pub(crate) fn check_growable(image: &Path, layout: &Layout, number: u32) -> Result<(), DiskError> {
    if layout.partitions.iter().any(|p| p.number > 4) || !(1..=4).contains(&number) {
        return Err(DiskError::Unsupported {
            path: image.to_path_buf(),
            table: TABLE,
            reason: "growing a disk with logical partitions is not supported".into(),
        });
    }
    Ok(())
}

/// Extends primary partition `number` of an MBR disk of `new_sectors` sectors to the end of
/// the disk. The caller has run [`check_growable`], checked that it is the last partition and
/// extended the file; the disk signature and every other byte of the boot sector stay as they
/// were.
pub(crate) fn grow(
    file: &mut File,
    image: &Path,
    number: u32,
    new_sectors: u64,
) -> Result<(), DiskError> {
    let mut header =
        MBRHeader::read_from(file).map_err(|e| DiskError::garbage(image, TABLE, e.to_string()))?;
    let entry = header
        .get_mut(number as usize)
        .ok_or_else(|| DiskError::NoSuchPartition {
            path: image.to_path_buf(),
            number,
        })?;
    let count = new_sectors - u64::from(entry.starting_lba);
    entry.sectors = u32::try_from(count).map_err(|_| DiskError::BadSize {
        path: image.to_path_buf(),
        requested: new_sectors * SECTOR_SIZE,
        reason: "an MBR partition holds at most 2^32-1 sectors (2 TiB); use a smaller size".into(),
    })?;
    let last = entry.starting_lba + entry.sectors - 1;
    entry.last_chs = CHS::from_lba_exact(last, 1023, 255, 63).unwrap_or(CHS::new(1023, 254, 63));
    header
        .write_into(file)
        .map_err(|e| DiskError::garbage(image, TABLE, format!("cannot write the table: {e}")))
}
