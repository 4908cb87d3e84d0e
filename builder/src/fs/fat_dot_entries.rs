//! Repairs the "." and ".." entries that `fatfs` 0.3.6 writes for new directories.
//!
//! That release gives "." and ".." long-name (LFN) entries, so the first two slots of a new
//! directory are not "." and "..", and on FAT32 it points ".." of a first-level directory at
//! the root cluster instead of 0 (upstream rust-fatfs #99, #100, #117; fixed on its master but
//! not released). `fsck.fat` rejects both. This pass walks the directory tree at the raw level
//! and rewrites such directories as `mkfs.fat`/Linux would: "." and ".." first, the two stray
//! LFN slots marked deleted. It touches nothing else, so it is safe on any valid FAT volume.

use std::collections::HashSet;
use std::io::{self, Read, Seek, SeekFrom, Write};

const ENTRY: usize = 32;
const ATTR_LFN: u8 = 0x0F;
const ATTR_VOLUME: u8 = 0x08;
const ATTR_DIR: u8 = 0x10;
const DOT: &[u8; 11] = b".          ";
const DOTDOT: &[u8; 11] = b"..         ";

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Fat12,
    Fat16,
    Fat32,
}

/// The geometry needed to find directories, from the boot sector.
pub(super) struct Geometry {
    pub(super) kind: Kind,
    pub(super) cluster_bytes: u64,
    pub(super) fat_offset: u64,
    pub(super) root_offset: u64,
    pub(super) root_entries: u64,
    pub(super) data_offset: u64,
    pub(super) clusters: u32,
    pub(super) root_cluster: u32,
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("FAT boot sector: {msg}"),
    )
}

impl Geometry {
    pub(super) fn read(io: &mut (impl Read + Seek)) -> io::Result<Self> {
        let mut b = [0u8; 512];
        io.seek(SeekFrom::Start(0))?;
        io.read_exact(&mut b)?;
        let u16_at = |o: usize| u64::from(u16::from_le_bytes([b[o], b[o + 1]]));
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let bps = u16_at(11);
        let spc = u64::from(b[13]);
        let reserved = u16_at(14);
        let fats = u64::from(b[16]);
        let root_entries = u16_at(17);
        let total = if u16_at(19) != 0 {
            u16_at(19)
        } else {
            u64::from(u32_at(32))
        };
        let fat_sectors = if u16_at(22) != 0 {
            u16_at(22)
        } else {
            u64::from(u32_at(36))
        };
        if bps < 512 || spc == 0 || fats == 0 || fat_sectors == 0 {
            return Err(bad("implausible geometry"));
        }
        let root_sectors = (root_entries * ENTRY as u64).div_ceil(bps);
        let first_data = reserved + fats * fat_sectors + root_sectors;
        let clusters = total
            .checked_sub(first_data)
            .ok_or_else(|| bad("no data area"))?
            / spc;
        let kind = match clusters {
            c if c < 4085 => Kind::Fat12,
            c if c < 65525 => Kind::Fat16,
            _ => Kind::Fat32,
        };
        Ok(Geometry {
            kind,
            cluster_bytes: bps * spc,
            fat_offset: reserved * bps,
            root_offset: (reserved + fats * fat_sectors) * bps,
            root_entries,
            data_offset: first_data * bps,
            clusters: u32::try_from(clusters).map_err(|_| bad("too many clusters"))?,
            root_cluster: if kind == Kind::Fat32 { u32_at(44) } else { 0 },
        })
    }

    pub(super) fn cluster_offset(&self, cluster: u32) -> u64 {
        self.data_offset + u64::from(cluster - 2) * self.cluster_bytes
    }

    pub(super) fn valid(&self, cluster: u32) -> bool {
        cluster >= 2 && cluster < self.clusters + 2
    }

    fn next(&self, io: &mut (impl Read + Seek), cluster: u32) -> io::Result<Option<u32>> {
        let c = u64::from(cluster);
        let next = match self.kind {
            Kind::Fat12 => {
                let mut v = [0u8; 2];
                io.seek(SeekFrom::Start(self.fat_offset + c + c / 2))?;
                io.read_exact(&mut v)?;
                let v = u32::from(u16::from_le_bytes(v));
                if c % 2 == 0 {
                    v & 0xFFF
                } else {
                    v >> 4
                }
            }
            Kind::Fat16 => {
                let mut v = [0u8; 2];
                io.seek(SeekFrom::Start(self.fat_offset + 2 * c))?;
                io.read_exact(&mut v)?;
                u32::from(u16::from_le_bytes(v))
            }
            Kind::Fat32 => {
                let mut v = [0u8; 4];
                io.seek(SeekFrom::Start(self.fat_offset + 4 * c))?;
                io.read_exact(&mut v)?;
                u32::from_le_bytes(v) & 0x0FFF_FFFF
            }
        };
        Ok(self.valid(next).then_some(next))
    }

    /// Byte ranges (offset, length) holding a directory: the FAT12/16 root region, or a
    /// cluster chain (bounded, so a looping chain cannot hang us).
    fn extents(
        &self,
        io: &mut (impl Read + Seek),
        first: Option<u32>,
    ) -> io::Result<Vec<(u64, u64)>> {
        let Some(mut cluster) = first else {
            return Ok(vec![(self.root_offset, self.root_entries * ENTRY as u64)]);
        };
        let mut out = Vec::new();
        while self.valid(cluster) && out.len() <= self.clusters as usize {
            out.push((self.cluster_offset(cluster), self.cluster_bytes));
            match self.next(io, cluster)? {
                Some(n) => cluster = n,
                None => break,
            }
        }
        Ok(out)
    }
}

pub(super) fn entry_cluster(e: &[u8], kind: Kind) -> u32 {
    let lo = u32::from(u16::from_le_bytes([e[26], e[27]]));
    let hi = if kind == Kind::Fat32 {
        u32::from(u16::from_le_bytes([e[20], e[21]]))
    } else {
        0
    };
    hi << 16 | lo
}

/// Repairs every directory on the volume; returns how many it rewrote.
pub(crate) fn repair(io: &mut (impl Read + Write + Seek)) -> io::Result<usize> {
    let g = Geometry::read(io)?;
    let root = (g.kind == Kind::Fat32).then_some(g.root_cluster);
    let mut stack = vec![(root, true)];
    let mut seen = HashSet::new();
    let mut fixed = 0;
    while let Some((first, is_root)) = stack.pop() {
        if let Some(c) = first {
            if !seen.insert(c) {
                continue;
            }
        }
        let extents = g.extents(io, first)?;
        if !is_root {
            if let Some(&(offset, _)) = extents.first() {
                fixed += usize::from(repair_head(io, &g, offset)?);
            }
        }
        'walk: for (offset, len) in extents {
            let mut buf = vec![0u8; len as usize];
            io.seek(SeekFrom::Start(offset))?;
            io.read_exact(&mut buf)?;
            for e in buf.chunks_exact(ENTRY) {
                match e[0] {
                    0x00 => break 'walk,
                    0xE5 => continue,
                    _ => {}
                }
                let attr = e[11];
                if attr == ATTR_LFN || attr & ATTR_VOLUME != 0 || attr & ATTR_DIR == 0 {
                    continue;
                }
                if &e[..11] == DOT || &e[..11] == DOTDOT {
                    continue;
                }
                let child = entry_cluster(e, g.kind);
                if g.valid(child) {
                    stack.push((Some(child), false));
                }
            }
        }
    }
    Ok(fixed)
}

/// Rewrites the first four slots of one directory if they are fatfs' broken layout, and
/// points a FAT32 ".." at 0 when it names the root cluster.
fn repair_head(io: &mut (impl Read + Write + Seek), g: &Geometry, offset: u64) -> io::Result<bool> {
    let mut head = [0u8; 4 * ENTRY];
    io.seek(SeekFrom::Start(offset))?;
    io.read_exact(&mut head)?;
    let slot = |i: usize| &head[i * ENTRY..(i + 1) * ENTRY];
    let mut new = head;
    if slot(0)[11] == ATTR_LFN
        && &slot(1)[..11] == DOT
        && slot(2)[11] == ATTR_LFN
        && &slot(3)[..11] == DOTDOT
    {
        let (dot, dotdot, lfn0, lfn2) = (
            slot(1).to_vec(),
            slot(3).to_vec(),
            slot(0).to_vec(),
            slot(2).to_vec(),
        );
        new[..ENTRY].copy_from_slice(&dot);
        new[ENTRY..2 * ENTRY].copy_from_slice(&dotdot);
        new[2 * ENTRY..3 * ENTRY].copy_from_slice(&lfn0);
        new[3 * ENTRY..].copy_from_slice(&lfn2);
        new[2 * ENTRY] = 0xE5;
        new[3 * ENTRY] = 0xE5;
    }
    if g.kind == Kind::Fat32
        && &new[ENTRY..ENTRY + 11] == DOTDOT
        && entry_cluster(&new[ENTRY..2 * ENTRY], g.kind) == g.root_cluster
    {
        new[ENTRY + 20..ENTRY + 22].fill(0);
        new[ENTRY + 26..ENTRY + 28].fill(0);
    }
    if new == head {
        return Ok(false);
    }
    io.seek(SeekFrom::Start(offset))?;
    io.write_all(&new)?;
    Ok(true)
}
