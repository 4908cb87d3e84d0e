//! A consistency check of a FAT volume, run before piimg reads or edits it (issue 15.4).
//!
//! `fatfs` follows whatever the FAT says: a circular chain reads as an empty file, a chain that
//! runs into a free cluster truncates it, a directory entry that claims more bytes than its
//! chain holds reads NULs. Each of those would be published as a boot partition the node cannot
//! boot from, so the volume is walked at the raw level first, the way `fsck.fat -n` does: every
//! chain reachable from the root must end in an end-of-chain mark without passing a free, bad
//! or reserved entry, belong to one file only, and match its file's size.
//!
//! The work is bounded by the volume: the FAT (at most what the partition can hold) is read
//! once, and every cluster is visited at most once, because a visit claims it.

use std::io::{self, Read, Seek, SeekFrom};

use super::fat_dot_entries::{entry_cluster, Geometry, Kind};

const ENTRY: usize = 32;
const ATTR_LFN: u8 = 0x0F;
const ATTR_VOLUME: u8 = 0x08;
const ATTR_DIR: u8 = 0x10;

/// What the check found: the file (a path inside the volume, "/" for the volume itself) and
/// what is wrong with it.
#[derive(Debug)]
pub(super) enum Finding {
    /// The volume is damaged.
    Damaged {
        /// Path inside the FAT ("cmdline.txt", "overlays/x.dtbo", "/").
        path: String,
        /// What is wrong, as a sentence fragment ("has a cluster chain that loops …").
        what: String,
    },
    /// The device could not be read.
    Io(io::Error),
}

impl From<io::Error> for Finding {
    fn from(e: io::Error) -> Self {
        Finding::Io(e)
    }
}

fn damaged(path: &str, what: String) -> Finding {
    Finding::Damaged {
        path: if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
        what,
    }
}

/// Walks the volume in `io` (positioned anywhere; offset 0 is its boot sector).
pub(super) fn check(io: &mut (impl Read + Seek)) -> Result<(), Finding> {
    let g = Geometry::read(io).map_err(|e| damaged("/", format!("has {e}")))?;
    let device = io.seek(SeekFrom::End(0))?;
    let data_end = u64::from(g.clusters)
        .checked_mul(g.cluster_bytes)
        .and_then(|b| b.checked_add(g.data_offset));
    if data_end.is_none_or(|end| end > device) {
        return Err(damaged(
            "/",
            format!(
                "claims {} clusters of {} bytes, more than the {device} bytes of the partition",
                g.clusters, g.cluster_bytes
            ),
        ));
    }
    let mut walk = Walk {
        fat: read_fat(io, &g)?,
        owner: vec![0; g.clusters as usize + 2],
        names: Vec::new(),
        g: &g,
    };
    let mut dirs: Vec<(Vec<(u64, u64)>, String)> = Vec::new();
    if g.kind == Kind::Fat32 {
        let clusters = walk.chain(g.root_cluster, "")?;
        dirs.push((walk.extents(&clusters), String::new()));
    } else {
        dirs.push((
            vec![(g.root_offset, g.root_entries * ENTRY as u64)],
            String::new(),
        ));
    }
    while let Some((extents, dir)) = dirs.pop() {
        for child in walk.entries(io, &extents, &dir)? {
            let Child {
                path,
                is_dir,
                first,
                size,
            } = child;
            if is_dir {
                if !g.valid(first) {
                    return Err(damaged(
                        &path,
                        format!("is a directory whose first cluster {first} is outside the volume"),
                    ));
                }
                let clusters = walk.chain(first, &path)?;
                dirs.push((walk.extents(&clusters), path));
                continue;
            }
            if first == 0 {
                if size != 0 {
                    return Err(damaged(
                        &path,
                        format!("claims {size} bytes but has no clusters"),
                    ));
                }
                continue;
            }
            if !g.valid(first) {
                return Err(damaged(
                    &path,
                    format!("starts at cluster {first}, outside the volume"),
                ));
            }
            let n = walk.chain(first, &path)?.len() as u64;
            let holds = n * g.cluster_bytes;
            let needs = u64::from(size).div_ceil(g.cluster_bytes);
            if u64::from(size) > holds {
                return Err(damaged(
                    &path,
                    format!("claims {size} bytes but its cluster chain holds only {holds}"),
                ));
            }
            if n > needs {
                return Err(damaged(
                    &path,
                    format!(
                        "has a cluster chain of {n} clusters but its size of {size} bytes needs {needs}"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// One entry of a directory, as the walk needs it.
struct Child {
    path: String,
    is_dir: bool,
    first: u32,
    size: u32,
}

struct Walk<'g> {
    g: &'g Geometry,
    /// The first FAT, one value per cluster number.
    fat: Vec<u32>,
    /// Which file (index into `names`, plus one) each cluster belongs to; 0 for none yet.
    owner: Vec<u32>,
    names: Vec<String>,
}

impl Walk<'_> {
    /// The clusters of the chain starting at `first` (a valid cluster), claimed for `path`.
    fn chain(&mut self, first: u32, path: &str) -> Result<Vec<u32>, Finding> {
        let g = self.g;
        self.names.push(path.to_string());
        let me = self.names.len() as u32;
        let (eoc, bad) = match g.kind {
            Kind::Fat12 => (0xFF8, 0xFF7),
            Kind::Fat16 => (0xFFF8, 0xFFF7),
            Kind::Fat32 => (0x0FFF_FFF8, 0x0FFF_FFF7),
        };
        let reserved = bad - 7;
        let mut out = Vec::new();
        let mut c = first;
        loop {
            match self.owner[c as usize] {
                0 => self.owner[c as usize] = me,
                o if o == me => {
                    return Err(damaged(
                        path,
                        format!(
                            "has a circular cluster chain (cluster {c} comes round again after {} clusters)",
                            out.len()
                        ),
                    ))
                }
                o => {
                    let other = self.names[o as usize - 1].clone();
                    return Err(damaged(
                        path,
                        format!(
                            "is cross-linked with `{}` (both use cluster {c})",
                            if other.is_empty() { "/" } else { &other }
                        ),
                    ));
                }
            }
            out.push(c);
            let next = self.fat[c as usize];
            let why = match next {
                n if n >= eoc => return Ok(out),
                0 => "runs into a free cluster",
                n if n == bad => "runs into a cluster marked bad",
                n if n == 1 || n >= reserved => "runs into a reserved FAT value",
                n if !g.valid(n) => "points past the last cluster",
                n => {
                    c = n;
                    continue;
                }
            };
            return Err(damaged(
                path,
                format!(
                    "has a cluster chain that {why} (cluster {c} is followed by {next:#x}, after {} clusters)",
                    out.len()
                ),
            ));
        }
    }

    fn extents(&self, clusters: &[u32]) -> Vec<(u64, u64)> {
        clusters
            .iter()
            .map(|&c| (self.g.cluster_offset(c), self.g.cluster_bytes))
            .collect()
    }

    /// The files and directories of one directory, without ".", ".." and deleted entries.
    fn entries(
        &self,
        io: &mut (impl Read + Seek),
        extents: &[(u64, u64)],
        dir: &str,
    ) -> io::Result<Vec<Child>> {
        let mut out = Vec::new();
        let mut lfn: Vec<(u8, [u16; 13])> = Vec::new();
        'walk: for &(offset, len) in extents {
            let mut buf = vec![0u8; len as usize];
            io.seek(SeekFrom::Start(offset))?;
            io.read_exact(&mut buf)?;
            for e in buf.chunks_exact(ENTRY) {
                match e[0] {
                    0x00 => break 'walk,
                    0xE5 => {
                        lfn.clear();
                        continue;
                    }
                    _ => {}
                }
                let attr = e[11];
                if attr == ATTR_LFN {
                    let mut units = [0u16; 13];
                    let at = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
                    for (u, &o) in units.iter_mut().zip(&at) {
                        *u = u16::from_le_bytes([e[o], e[o + 1]]);
                    }
                    lfn.push((e[0] & 0x1F, units));
                    continue;
                }
                let long = std::mem::take(&mut lfn);
                if attr & ATTR_VOLUME != 0 || &e[..2] == b". " || &e[..3] == b".. " {
                    continue;
                }
                let name = if long.is_empty() {
                    short_name(e)
                } else {
                    long_name(long)
                };
                let path = if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                };
                out.push(Child {
                    path,
                    is_dir: attr & ATTR_DIR != 0,
                    first: entry_cluster(e, self.g.kind),
                    size: u32::from_le_bytes([e[28], e[29], e[30], e[31]]),
                });
            }
        }
        Ok(out)
    }
}

fn short_name(e: &[u8]) -> String {
    let part = |b: &[u8], lower: bool| {
        let s = String::from_utf8_lossy(b).trim_end().to_string();
        if lower {
            s.to_lowercase()
        } else {
            s
        }
    };
    let base = part(&e[..8], e[12] & 0x08 != 0).replacen('\u{5}', "\u{e5}", 1);
    let ext = part(&e[8..11], e[12] & 0x10 != 0);
    if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    }
}

fn long_name(mut parts: Vec<(u8, [u16; 13])>) -> String {
    parts.sort_by_key(|(seq, _)| *seq);
    let units: Vec<u16> = parts
        .iter()
        .flat_map(|(_, u)| u.iter().copied())
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// The first FAT, decoded into one value per cluster number (0 and 1 included).
fn read_fat(io: &mut (impl Read + Seek), g: &Geometry) -> Result<Vec<u32>, Finding> {
    let n = g.clusters as usize + 2;
    let bytes = match g.kind {
        Kind::Fat12 => (n * 3).div_ceil(2),
        Kind::Fat16 => 2 * n,
        Kind::Fat32 => 4 * n,
    };
    let mut buf = vec![0u8; bytes + 1];
    io.seek(SeekFrom::Start(g.fat_offset))?;
    io.read_exact(&mut buf[..bytes])?;
    Ok((0..n)
        .map(|c| match g.kind {
            Kind::Fat12 => {
                let o = c + c / 2;
                let v = u32::from(u16::from_le_bytes([buf[o], buf[o + 1]]));
                if c % 2 == 0 {
                    v & 0xFFF
                } else {
                    v >> 4
                }
            }
            Kind::Fat16 => u32::from(u16::from_le_bytes([buf[2 * c], buf[2 * c + 1]])),
            Kind::Fat32 => {
                u32::from_le_bytes([buf[4 * c], buf[4 * c + 1], buf[4 * c + 2], buf[4 * c + 3]])
                    & 0x0FFF_FFFF
            }
        })
        .collect())
}
