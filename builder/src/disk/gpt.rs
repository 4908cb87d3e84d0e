//! The GUID partition table: reading it through the `gpt` crate (headers and partition array
//! with their CRCs, falling back to the backup copy when the primary is damaged) and growing
//! the last partition by moving the backup table to the new end of the disk.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use gpt::disk::LogicalBlockSize;
use gpt::header::{read_header_from_arbitrary_device, Header, HeaderError};
use gpt::partition::file_read_partitions;

use super::layout::{check_extents, Extent};
use super::type_names::gpt_type_name;
use super::{DiskError, Layout, Partition, PartitionView, TableKind, SECTOR_SIZE};

const TABLE: &str = "GPT";
const LB: LogicalBlockSize = LogicalBlockSize::Lb512;
/// Larger arrays than this are garbage (sfdisk writes 128 entries).
const MAX_ENTRIES: u32 = 4096;
const ENTRY_SIZE: u32 = 128;

/// A GPT as read: the layout plus what `grow` needs to rewrite it.
pub(crate) struct GptTable {
    pub layout: Layout,
    pub header: Header,
    pub from_backup: bool,
}

/// Why one copy (primary or backup) could not be used.
enum CopyError {
    Crc(&'static str),
    Other(DiskError),
}

/// Reads the header at `lba` through the `gpt` crate, which checks signature and CRC.
fn header_at(file: &mut File, lba: u64) -> Result<Header, HeaderError> {
    // The crate reads headers at LBA 1 of a device: present it a window that starts one
    // sector before the wanted header.
    let start = (lba - 1) * SECTOR_SIZE;
    let mut view = PartitionView::new(&mut *file, start, 2 * SECTOR_SIZE)?;
    read_header_from_arbitrary_device(&mut view, LB)
}

fn array_sectors(h: &Header) -> u64 {
    (u64::from(h.num_parts) * u64::from(h.part_size)).div_ceil(SECTOR_SIZE)
}

/// Checks a CRC-valid header for values the `gpt` crate or the grow code cannot take.
fn check_header(image: &Path, h: &Header, lba: u64, size: u64) -> Result<(), DiskError> {
    let bad = |reason: String| Err(DiskError::garbage(image, TABLE, reason));
    if h.part_size != ENTRY_SIZE {
        return Err(DiskError::Unsupported {
            path: image.to_path_buf(),
            table: TABLE,
            reason: format!(
                "partition entries of {} bytes (only 128 is supported)",
                h.part_size
            ),
        });
    }
    if h.num_parts == 0 || h.num_parts > MAX_ENTRIES {
        return bad(format!(
            "the header claims {} partition entries",
            h.num_parts
        ));
    }
    if h.current_lba != lba {
        return bad(format!(
            "the header at sector {lba} says it is at sector {}",
            h.current_lba
        ));
    }
    if h.first_usable > h.last_usable || h.part_start < 2 {
        return bad("the usable area is empty or overlaps the header".into());
    }
    let array_end = (h.part_start + array_sectors(h)) * SECTOR_SIZE;
    if array_end > size {
        return Err(DiskError::Truncated {
            path: image.to_path_buf(),
            what: "the GPT partition array".into(),
            end: array_end,
            size,
        });
    }
    Ok(())
}

/// Reads one copy of the table (header at `lba` and its array).
fn read_copy(
    file: &mut File,
    image: &Path,
    lba: u64,
    size: u64,
) -> Result<(Header, BTreeMap<u32, gpt::partition::Partition>), CopyError> {
    let header = match header_at(file, lba) {
        Ok(h) => h,
        Err(HeaderError::InvalidCRC32Checksum) => return Err(CopyError::Crc("header")),
        Err(e) => {
            return Err(CopyError::Other(DiskError::garbage(
                image,
                TABLE,
                format!("no valid header at sector {lba} ({e})"),
            )))
        }
    };
    check_header(image, &header, lba, size).map_err(CopyError::Other)?;
    match file_read_partitions(file, &header, LB) {
        Ok(parts) => Ok((header, parts)),
        Err(e) if e.to_string().contains("CRC") => Err(CopyError::Crc("partition array")),
        Err(e) => Err(CopyError::Other(DiskError::io(
            image,
            "cannot read the GPT partition array",
            e,
        ))),
    }
}

/// Reads the GPT, preferring the primary copy and falling back to the backup with a warning.
pub(crate) fn read(file: &mut File, image: &Path, size: u64) -> Result<GptTable, DiskError> {
    if size < 3 * SECTOR_SIZE {
        return Err(DiskError::TooSmall {
            path: image.to_path_buf(),
            size,
        });
    }
    let last_lba = size / SECTOR_SIZE - 1;
    let (header, parts, from_backup) = match read_copy(file, image, 1, size) {
        Ok((h, p)) => {
            let backup_end = h.backup_lba.saturating_add(1).saturating_mul(SECTOR_SIZE);
            if backup_end > size {
                return Err(DiskError::Truncated {
                    path: image.to_path_buf(),
                    what: "the GPT backup header".into(),
                    end: backup_end,
                    size,
                });
            }
            check_backup_agrees(file, image, size, &h, &p)?;
            (h, p, false)
        }
        Err(primary_err) => match read_copy(file, image, last_lba, size) {
            Ok((h, p)) => {
                tracing::warn!(image = %image.display(), "primary GPT is damaged; using the backup copy");
                (h, p, true)
            }
            Err(_) => {
                return Err(match primary_err {
                    CopyError::Crc(what) => DiskError::GptCrc {
                        path: image.to_path_buf(),
                        what,
                    },
                    CopyError::Other(e) => e,
                })
            }
        },
    };

    let mut extents = Vec::new();
    let mut partitions = Vec::new();
    for (&number, p) in &parts {
        if p.first_lba < header.first_usable
            || p.last_lba < p.first_lba
            || p.last_lba > header.last_usable
        {
            return Err(DiskError::garbage(
                image,
                TABLE,
                format!(
                    "partition {number} (sectors {}..={}) lies outside the usable area {}..={}",
                    p.first_lba, p.last_lba, header.first_usable, header.last_usable
                ),
            ));
        }
        let sectors = p.last_lba - p.first_lba + 1;
        extents.push(Extent {
            number,
            first: p.first_lba,
            sectors,
        });
        let type_id = p
            .part_type_guid
            .guid
            .as_hyphenated()
            .to_string()
            .to_uppercase();
        partitions.push(Partition {
            number,
            start: p.first_lba * SECTOR_SIZE,
            size: sectors * SECTOR_SIZE,
            type_name: gpt_type_name(&type_id).map(str::to_owned),
            type_id,
            partuuid: p.part_guid.as_hyphenated().to_string().to_lowercase(),
            name: (!p.name.is_empty()).then(|| p.name.clone()),
        });
    }
    check_extents(image, TABLE, &extents, size)?;
    let layout = Layout {
        kind: TableKind::Gpt,
        disk_id: header.disk_guid.as_hyphenated().to_string().to_lowercase(),
        sector_size: SECTOR_SIZE,
        disk_size: size,
        partitions,
    };
    Ok(GptTable {
        layout,
        header,
        from_backup,
    })
}

/// Refuses a table whose backup copy is intact (its CRCs check out) but says something else
/// than the primary: a partition moved, renamed, added or removed in one copy only. Which copy
/// is right cannot be told from the disk, and firmware or the kernel may read either one, so
/// piimg edits neither. A backup that is damaged (bad CRC, no signature) is only a warning:
/// the primary is then the one every reader uses, and a grow rewrites the backup from it.
fn check_backup_agrees(
    file: &mut File,
    image: &Path,
    size: u64,
    primary: &Header,
    primary_parts: &BTreeMap<u32, gpt::partition::Partition>,
) -> Result<(), DiskError> {
    if primary.backup_lba < 2 {
        return Err(DiskError::garbage(
            image,
            TABLE,
            format!(
                "the primary header places the backup at sector {}",
                primary.backup_lba
            ),
        ));
    }
    let (backup, backup_parts) = match read_copy(file, image, primary.backup_lba, size) {
        Ok(copy) => copy,
        Err(e) => {
            let why = match e {
                CopyError::Crc(what) => format!("its {what} fails its CRC32 check"),
                CopyError::Other(e) => e.to_string(),
            };
            tracing::warn!(image = %image.display(), backup_lba = primary.backup_lba, %why, "the backup GPT is damaged; using the primary");
            return Ok(());
        }
    };
    let differences = disagreements(primary, primary_parts, &backup, &backup_parts);
    if differences.is_empty() {
        return Ok(());
    }
    Err(DiskError::GptDisagree {
        path: image.to_path_buf(),
        differences: differences.join("; "),
    })
}

/// What an intact backup copy says differently from the primary, in words (at most a few
/// items: enough to recognise the damage, not a diff of 128 entries).
fn disagreements(
    primary: &Header,
    primary_parts: &BTreeMap<u32, gpt::partition::Partition>,
    backup: &Header,
    backup_parts: &BTreeMap<u32, gpt::partition::Partition>,
) -> Vec<String> {
    const MAX_ITEMS: usize = 4;
    let mut out = Vec::new();
    let mut field = |name: &str, p: String, b: String| {
        if p != b {
            out.push(format!("{name}: {p} in the primary, {b} in the backup"));
        }
    };
    field(
        "disk GUID",
        primary.disk_guid.to_string(),
        backup.disk_guid.to_string(),
    );
    field(
        "usable sectors",
        format!("{}..={}", primary.first_usable, primary.last_usable),
        format!("{}..={}", backup.first_usable, backup.last_usable),
    );
    field(
        "partition entries",
        primary.num_parts.to_string(),
        backup.num_parts.to_string(),
    );
    if backup.backup_lba != primary.current_lba {
        out.push(format!(
            "the backup header places the primary at sector {}, not {}",
            backup.backup_lba, primary.current_lba
        ));
    }
    let numbers: std::collections::BTreeSet<u32> = primary_parts
        .keys()
        .chain(backup_parts.keys())
        .copied()
        .collect();
    for n in numbers {
        let describe = |p: &gpt::partition::Partition| {
            let name = if p.name.is_empty() {
                String::new()
            } else {
                format!(" named {:?}", p.name)
            };
            format!("sectors {}..={}{name}", p.first_lba, p.last_lba)
        };
        match (primary_parts.get(&n), backup_parts.get(&n)) {
            (Some(p), Some(b)) if p == b => {}
            (Some(p), Some(b)) => {
                let (dp, db) = (describe(p), describe(b));
                if dp != db {
                    out.push(format!(
                        "partition {n}: {dp} in the primary, {db} in the backup"
                    ));
                } else {
                    out.push(format!(
                        "partition {n}: its type, GUID or flags differ between the copies"
                    ));
                }
            }
            (Some(p), None) => out.push(format!(
                "partition {n} ({}) is only in the primary",
                describe(p)
            )),
            (None, Some(b)) => out.push(format!(
                "partition {n} ({}) is only in the backup",
                describe(b)
            )),
            (None, None) => {}
        }
    }
    if out.is_empty() && primary.crc32_parts != backup.crc32_parts {
        out.push("the partition arrays differ in unused entries".into());
    }
    if out.len() > MAX_ITEMS {
        let more = out.len() - MAX_ITEMS;
        out.truncate(MAX_ITEMS);
        out.push(format!("{more} more"));
    }
    out
}

fn write_at(file: &mut File, image: &Path, offset: u64, data: &[u8]) -> Result<(), DiskError> {
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.write_all(data))
        .map_err(|e| DiskError::io(image, "cannot write the GPT", e))
}

/// Moves the backup table to the end of a disk that now has `new_sectors` sectors and extends
/// partition `number` to the new last usable sector. The caller has extended the file and
/// checked that the partition is the last one. Entry order, GUIDs and names stay unchanged.
pub(crate) fn grow(
    file: &mut File,
    image: &Path,
    table: &GptTable,
    number: u32,
    new_sectors: u64,
) -> Result<(), DiskError> {
    if table.from_backup {
        return Err(DiskError::GptPrimaryDamaged {
            path: image.to_path_buf(),
        });
    }
    let old = &table.header;
    let array_len = u64::from(old.num_parts) * u64::from(old.part_size);
    let new_backup_lba = new_sectors - 1;
    let new_last_usable = new_backup_lba
        .checked_sub(array_sectors(old) + 1)
        .filter(|&l| l >= old.last_usable)
        .ok_or_else(|| DiskError::BadSize {
            path: image.to_path_buf(),
            requested: new_sectors * SECTOR_SIZE,
            reason: "no room for the backup GPT at the new end; choose a larger size".into(),
        })?;

    // The array bytes exactly as stored, with only the grown entry's last LBA changed.
    let mut array = vec![0u8; array_len as usize];
    file.seek(SeekFrom::Start(old.part_start * SECTOR_SIZE))
        .and_then(|_| file.read_exact(&mut array))
        .map_err(|e| DiskError::io(image, "cannot read the GPT partition array", e))?;
    let entry = (number as usize - 1) * old.part_size as usize;
    array[entry + 40..entry + 48].copy_from_slice(&new_last_usable.to_le_bytes());

    // Wipe the old backup copy: it now lies inside the grown partition.
    let old_backup_area = (old.last_usable + 1)..=old.backup_lba;
    if *old_backup_area.end() < new_last_usable + 1 {
        let zeros = vec![0u8; ((old.backup_lba - old.last_usable) * SECTOR_SIZE) as usize];
        write_at(file, image, (old.last_usable + 1) * SECTOR_SIZE, &zeros)?;
    }

    let backup_part_start = new_last_usable + 1;
    write_at(file, image, old.part_start * SECTOR_SIZE, &array)?;
    write_at(file, image, backup_part_start * SECTOR_SIZE, &array)?;

    let gpt_err =
        |e: HeaderError| DiskError::garbage(image, TABLE, format!("cannot write a header: {e}"));
    let mut primary = old.clone();
    primary.backup_lba = new_backup_lba;
    primary.last_usable = new_last_usable;
    let mut backup = primary.clone();
    backup.current_lba = new_backup_lba;
    backup.backup_lba = primary.current_lba;
    backup.part_start = backup_part_start;
    // The crate computes the array CRC from the array it finds at part_start on the device.
    backup.write_backup(file, LB).map_err(gpt_err)?;
    primary.write_primary(file, LB).map_err(gpt_err)?;
    update_protective_mbr(file, image, new_sectors)
}

/// Makes the protective MBR entry cover the grown disk, as the UEFI spec asks.
fn update_protective_mbr(file: &mut File, image: &Path, new_sectors: u64) -> Result<(), DiskError> {
    let mut header = mbrman::MBRHeader::read_from(file)
        .map_err(|e| DiskError::garbage(image, "protective MBR", e.to_string()))?;
    for (_, e) in header.iter_mut() {
        if e.sys == 0xEE && e.starting_lba == 1 {
            e.sectors = u32::try_from(new_sectors - 1).unwrap_or(u32::MAX);
            e.last_chs = mbrman::CHS::new(1023, 254, 63);
        }
    }
    header
        .write_into(file)
        .map_err(|e| DiskError::garbage(image, "protective MBR", format!("cannot write it: {e}")))
}
