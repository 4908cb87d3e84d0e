//! Grows one partition's entry in a disk's partition table, in place: GPT or MBR.
//!
//! Only what growing the last partition to the end of its disk needs is written, and nothing
//! that is not understood is: a table that does not check out (bad signature or CRC, entries
//! beyond what the spec allows, a hybrid MBR, a logical partition) is refused before anything
//! is written.
//!
//! Layouts: the GPT header and entries as in the UEFI specification (2.10, section 5.3 "GUID
//! Partition Table (GPT) Disk Layout": header fields, CRC32 of the header with its CRC field
//! zeroed and of the entry array, backup header in the disk's last LBA with the backup array
//! just before it, protective MBR with one `0xEE` entry); the MBR as in the classic PC layout
//! (four 16-byte entries at byte 446, signature `55 AA` at 510, start and count in sectors).

use crate::storage::gpt::{u32_at, u64_at};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The kind of table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// GUID partition table.
    Gpt,
    /// DOS/MBR partition table.
    Mbr,
}

impl Kind {
    /// As people call it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gpt => "GPT",
            Kind::Mbr => "MBR",
        }
    }
}

/// One partition as the table has it, and how far it may grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The table's kind.
    pub kind: Kind,
    /// 1-based partition number.
    pub number: u32,
    /// First sector.
    pub first: u64,
    /// Last sector (inclusive).
    pub last: u64,
    /// The last sector it may end at once the table fills the disk.
    pub max_last: u64,
}

/// Why a table is not grown.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// Reading or writing the disk.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The disk.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// Something first boot does not grow; nothing was written.
    #[error("{path}: {detail}; the partition table was left untouched (grow it by hand with growpart or sfdisk, or set [root] grow = false)")]
    Refused {
        /// The disk.
        path: PathBuf,
        /// What is odd.
        detail: String,
    },
}

/// CRC-32 (IEEE 802.3, reflected, as the UEFI specification uses for GPT).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// GPT partition entries and headers never need more than this (the spec's minimum array is
/// 16 KiB; large ones stay well below).
const MAX_ARRAY_BYTES: u64 = 1 << 20;

const MBR_ENTRIES: usize = 446;
const PROTECTIVE: u8 = 0xEE;
const EXTENDED: &[u8] = &[0x05, 0x0F, 0x85];

struct Disk<'a> {
    file: &'a File,
    path: &'a Path,
    bytes: u64,
    sector: u64,
}

impl Disk<'_> {
    fn sectors(&self) -> u64 {
        self.bytes / self.sector
    }

    fn refuse(&self, detail: impl Into<String>) -> TableError {
        TableError::Refused {
            path: self.path.to_owned(),
            detail: detail.into(),
        }
    }

    fn read(&self, lba: u64, len: u64, what: &'static str) -> Result<Vec<u8>, TableError> {
        let end = lba
            .checked_mul(self.sector)
            .and_then(|o| o.checked_add(len).map(|e| (o, e)));
        let Some((offset, end)) = end.filter(|(_, e)| *e <= self.bytes) else {
            return Err(self.refuse(format!("{what} would lie beyond the disk's end")));
        };
        let mut buf = vec![0; usize::try_from(end - offset).unwrap_or(0)];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|source| TableError::Io {
                path: self.path.to_owned(),
                what,
                source,
            })?;
        Ok(buf)
    }

    fn write(&self, lba: u64, buf: &[u8], what: &'static str) -> Result<(), TableError> {
        let io = |source| TableError::Io {
            path: self.path.to_owned(),
            what,
            source,
        };
        self.file.write_all_at(buf, lba * self.sector).map_err(io)?;
        self.file.sync_all().map_err(io)
    }
}

/// A parsed primary GPT.
struct Gpt {
    header: Vec<u8>,
    header_size: usize,
    entries_lba: u64,
    entry_size: u64,
    array: Vec<u8>,
    array_sectors: u64,
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn header_crc(header: &[u8], size: usize) -> u32 {
    let mut h = header[..size].to_vec();
    put_u32(&mut h, 16, 0);
    crc32(&h)
}

fn read_gpt(d: &Disk<'_>) -> Result<Gpt, TableError> {
    let header = d.read(1, d.sector, "reading the GPT header")?;
    if header.get(..8) != Some(b"EFI PART".as_slice()) {
        return Err(d.refuse("protective MBR but no GPT header in LBA 1"));
    }
    let size = u32_at(&header, 12).unwrap_or(0) as usize;
    if !(92..=header.len()).contains(&size) {
        return Err(d.refuse(format!("GPT header size {size} is not valid")));
    }
    if u32_at(&header, 16) != Some(header_crc(&header, size)) {
        return Err(d.refuse("the primary GPT header's CRC does not match"));
    }
    if u64_at(&header, 24) != Some(1) {
        return Err(d.refuse("the primary GPT header does not say it is in LBA 1"));
    }
    let entries_lba = u64_at(&header, 72).unwrap_or(0);
    let count = u64::from(u32_at(&header, 80).unwrap_or(0));
    let entry_size = u64::from(u32_at(&header, 84).unwrap_or(0));
    let array_bytes = count * entry_size;
    if entry_size < 128 || !entry_size.is_power_of_two() || array_bytes > MAX_ARRAY_BYTES {
        return Err(d.refuse(format!(
            "GPT entry array of {count} entries of {entry_size} bytes is not valid"
        )));
    }
    if entries_lba < 2 {
        return Err(d.refuse("the GPT entry array overlaps its header"));
    }
    let array = d.read(entries_lba, array_bytes, "reading the GPT entries")?;
    if u32_at(&header, 88) != Some(crc32(&array)) {
        return Err(d.refuse("the primary GPT entry array's CRC does not match"));
    }
    Ok(Gpt {
        header,
        header_size: size,
        entries_lba,
        entry_size,
        array_sectors: array_bytes.div_ceil(d.sector),
        array,
    })
}

fn gpt_slot(d: &Disk<'_>, g: &Gpt, number: u32) -> Result<Slot, TableError> {
    // The entries, as the SSD code reads them: a head holding header and array.
    let mut head = vec![0; usize::try_from(g.entries_lba * d.sector).unwrap_or(0)];
    head[usize::try_from(d.sector).unwrap_or(0)..][..g.header.len()].copy_from_slice(&g.header);
    head.extend_from_slice(&g.array);
    let entries = crate::storage::gpt::entries(&head, d.sector)
        .ok_or_else(|| d.refuse("the GPT entries cannot be read"))?;
    let root = entries
        .iter()
        .find(|e| e.index == number)
        .ok_or_else(|| d.refuse(format!("the GPT has no partition {number}")))?;
    if let Some(after) = entries.iter().find(|e| e.first_lba > root.first_lba) {
        return Err(d.refuse(format!(
            "partition {number} is not the last on the disk (partition {} starts after it)",
            after.index
        )));
    }
    let last_usable = u64_at(&g.header, 48).unwrap_or(0);
    if root.last_lba < root.first_lba || root.last_lba > last_usable {
        return Err(d.refuse(format!(
            "GPT partition {number} ends outside the usable sectors"
        )));
    }
    // The backup array and header go at the very end (UEFI 5.3.1).
    let max_last = d
        .sectors()
        .checked_sub(2 + g.array_sectors)
        .filter(|&m| m >= last_usable)
        .ok_or_else(|| d.refuse("the disk is smaller than its GPT says"))?;
    Ok(Slot {
        kind: Kind::Gpt,
        number,
        first: root.first_lba,
        last: root.last_lba,
        max_last,
    })
}

struct MbrEntry {
    kind: u8,
    start: u64,
    count: u64,
}

fn mbr_entries(lba0: &[u8]) -> Vec<MbrEntry> {
    (0..4)
        .map(|i| {
            let e = &lba0[MBR_ENTRIES + 16 * i..][..16];
            MbrEntry {
                kind: e[4],
                start: u64::from(u32_at(e, 8).unwrap_or(0)),
                count: u64::from(u32_at(e, 12).unwrap_or(0)),
            }
        })
        .collect()
}

fn mbr_slot(d: &Disk<'_>, entries: &[MbrEntry], number: u32) -> Result<Slot, TableError> {
    let Some(root) = number
        .checked_sub(1)
        .and_then(|i| entries.get(i as usize))
        .filter(|e| e.kind != 0 && e.count > 0)
    else {
        return Err(d.refuse(format!(
            "partition {number} is not a primary partition of the MBR (a logical partition is not grown)"
        )));
    };
    if EXTENDED.contains(&root.kind) {
        return Err(d.refuse(format!("partition {number} is an extended partition")));
    }
    if let Some(i) = entries
        .iter()
        .position(|e| e.kind != 0 && e.start > root.start)
    {
        return Err(d.refuse(format!(
            "partition {number} is not the last on the disk (partition {} starts after it)",
            i + 1
        )));
    }
    // An MBR entry counts sectors in 32 bits: nothing beyond 2^32 sectors is addressable.
    let end = d.sectors().min(root.start + u64::from(u32::MAX));
    let last = root.start + root.count - 1;
    if last >= d.sectors() {
        return Err(d.refuse(format!("MBR partition {number} ends beyond the disk")));
    }
    Ok(Slot {
        kind: Kind::Mbr,
        number,
        first: root.start,
        last,
        max_last: end - 1,
    })
}

/// Reads partition `number` of the table on `file` (the whole disk, `bytes` long, with
/// `sector`-byte logical sectors).
pub fn read_slot(
    file: &File,
    path: &Path,
    bytes: u64,
    sector: u64,
    number: u32,
) -> Result<Slot, TableError> {
    let d = Disk {
        file,
        path,
        bytes,
        sector,
    };
    let lba0 = d.read(0, sector.max(512), "reading the MBR")?;
    if lba0[510..512] != [0x55, 0xAA] {
        return Err(d.refuse("no partition table (no MBR signature in sector 0)"));
    }
    let entries = mbr_entries(&lba0);
    if entries.iter().any(|e| e.kind == PROTECTIVE) {
        if entries[0].kind != PROTECTIVE || entries[1..].iter().any(|e| e.kind != 0) {
            return Err(d.refuse("a hybrid MBR beside the GPT"));
        }
        let g = read_gpt(&d)?;
        gpt_slot(&d, &g, number)
    } else {
        mbr_slot(&d, &entries, number)
    }
}

/// Cylinder-head-sector bytes of an MBR entry for `lba`, with the 255 heads and 63 sectors
/// every tool assumes; past what CHS can say, the `FE FF FF` that means "use the LBA".
fn chs(lba: u64) -> [u8; 3] {
    const HEADS: u64 = 255;
    const SECTORS: u64 = 63;
    if lba >= 1024 * HEADS * SECTORS {
        return [0xFE, 0xFF, 0xFF];
    }
    let c = lba / (HEADS * SECTORS);
    let h = (lba / SECTORS) % HEADS;
    let s = lba % SECTORS + 1;
    [
        h as u8,
        (s as u8) | (((c >> 2) & 0xC0) as u8),
        (c & 0xFF) as u8,
    ]
}

/// Rewrites the table so `slot` ends at `slot.max_last`, re-reading and re-checking it first.
///
/// GPT: the backup array and header at the disk's new end first, synced (libfdisk writes the
/// backup first too, util-linux `libfdisk/src/gpt.c` `gpt_write_disklabel`: from memory,
/// unverified here); then the primary header together with the changed entry's sector in one
/// write request (when the array starts in LBA 2, as every tool makes it), synced; then the
/// protective MBR's size. A power cut before the primary is written leaves the old, consistent
/// table, which the next boot grows again. The primary matters most: the Linux kernel reads
/// it, finds the backup through its `alternate_lba`, and looks at the disk's last LBA only with
/// `gpt` on the command line (`block/partitions/efi.c`, `find_valid_gpt`), so a torn primary
/// would hide the partitions; one request for header and entry keeps that window to a torn
/// multi-sector write. MBR: the one sector holding the entry, one write.
pub fn grow(
    file: &File,
    path: &Path,
    bytes: u64,
    sector: u64,
    slot: &Slot,
) -> Result<(), TableError> {
    let d = Disk {
        file,
        path,
        bytes,
        sector,
    };
    let again = read_slot(file, path, bytes, sector, slot.number)?;
    if &again != slot {
        return Err(d.refuse("the partition table changed while it was being read"));
    }
    let mut lba0 = d.read(0, sector.max(512), "reading the MBR")?;
    match slot.kind {
        Kind::Mbr => {
            let e = MBR_ENTRIES + 16 * (slot.number as usize - 1);
            let count = u32::try_from(slot.max_last - slot.first + 1)
                .map_err(|_| d.refuse("the grown MBR partition would not fit 2^32 sectors"))?;
            lba0[e + 5..e + 8].copy_from_slice(&chs(slot.max_last));
            put_u32(&mut lba0, e + 12, count);
            d.write(0, &lba0, "writing the MBR")
        }
        Kind::Gpt => {
            let g = read_gpt(&d)?;
            let mut array = g.array.clone();
            let entry = (u64::from(slot.number) - 1) * g.entry_size;
            let entry = usize::try_from(entry).unwrap_or(usize::MAX);
            put_u64(&mut array, entry + 40, slot.max_last);
            let alternate = d.sectors() - 1;
            let backup_array = alternate - g.array_sectors;
            let mut primary = g.header.clone();
            put_u64(&mut primary, 32, alternate);
            put_u64(&mut primary, 48, backup_array - 1);
            put_u32(&mut primary, 88, crc32(&array));
            let mut backup = primary.clone();
            let crc = header_crc(&primary, g.header_size);
            put_u32(&mut primary, 16, crc);
            put_u64(&mut backup, 24, alternate);
            put_u64(&mut backup, 32, 1);
            put_u64(&mut backup, 72, backup_array);
            let crc = header_crc(&backup, g.header_size);
            put_u32(&mut backup, 16, crc);

            let sector_bytes = usize::try_from(sector).unwrap_or(512);
            let mut tail = array.clone();
            tail.resize(g.array_sectors as usize * sector_bytes, 0);
            tail.extend_from_slice(&backup);
            d.write(backup_array, &tail, "writing the backup GPT")?;

            let changed = entry / sector_bytes;
            let entry_sector =
                &array_padded(&array, sector_bytes)[changed * sector_bytes..][..sector_bytes];
            if g.entries_lba == 2 && changed == 0 {
                let mut head = primary.clone();
                head.extend_from_slice(entry_sector);
                d.write(1, &head, "writing the primary GPT")?;
            } else {
                d.write(
                    g.entries_lba + changed as u64,
                    entry_sector,
                    "writing the primary GPT entries",
                )?;
                d.write(1, &primary, "writing the primary GPT header")?;
            }
            // The protective MBR covers the whole disk, or as much as 32 bits say (UEFI 5.2.3).
            let size = u32::try_from(d.sectors() - 1).unwrap_or(u32::MAX);
            if u32_at(&lba0, MBR_ENTRIES + 12) != Some(size) {
                put_u32(&mut lba0, MBR_ENTRIES + 12, size);
                d.write(0, &lba0, "writing the protective MBR")?;
            }
            Ok(())
        }
    }
}

fn array_padded(array: &[u8], sector: usize) -> Vec<u8> {
    let mut a = array.to_vec();
    a.resize(array.len().div_ceil(sector) * sector, 0);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_the_ieee_one() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn chs_of_small_and_large_sectors() {
        assert_eq!(chs(0), [0, 1, 0]);
        assert_eq!(chs(2048), [32, 33, 0]);
        assert_eq!(chs(1 << 30), [0xFE, 0xFF, 0xFF]);
    }
}
