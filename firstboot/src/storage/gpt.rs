//! Reads the GPT entries first boot needs to recognise its own disk layout: a single Linux
//! partition named `piimg-<cluster id>`. Writing the SSD's table is left to `sfdisk`; growing
//! the root partition's entry is [`crate::rootfs::table`]'s, which reads its entries here.

/// One used GPT entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based partition number.
    pub index: u32,
    /// First sector.
    pub first_lba: u64,
    /// Last sector (inclusive).
    pub last_lba: u64,
    /// The partition name.
    pub name: String,
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

pub(crate) fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// The used entries of the primary GPT in `head` (the disk's first bytes), or `None` when there
/// is no primary GPT or its entries lie beyond `head`.
pub fn entries(head: &[u8], sector: u64) -> Option<Vec<Entry>> {
    let hdr = usize::try_from(sector).ok()?;
    if head.get(hdr..hdr + 8)? != b"EFI PART" {
        return None;
    }
    let table = usize::try_from(u64_at(head, hdr + 72)?.checked_mul(sector)?).ok()?;
    let count = u32_at(head, hdr + 80)? as usize;
    let size = u32_at(head, hdr + 84)? as usize;
    if !(128..=4096).contains(&size) || count > 1024 {
        return None;
    }
    let mut out = Vec::new();
    for i in 0..count {
        let e = head.get(table + i * size..table + (i + 1) * size)?;
        if e[..16].iter().all(|&b| b == 0) {
            continue;
        }
        let units: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        out.push(Entry {
            index: u32::try_from(i + 1).ok()?,
            first_lba: u64_at(e, 32)?,
            last_lba: u64_at(e, 40)?,
            name: String::from_utf16_lossy(&units),
        });
    }
    Some(out)
}
