//! Room for the payload: the root edits' bytes are estimated before anything is written and,
//! when the root filesystem is short, the image file, the root partition and the filesystem
//! grow together. Real bases ship with their root filesystem shrunk to fit, so the 70 MB k3s
//! binary usually does not fit without this.

use super::content::inline;
use super::ApplyError;
use crate::disk;
use crate::fs::ext4::{grow_fs, Access, Ext4, FileKind};
use crate::locate::Located;
use crate::plan::user::{ensure_user, UserDb};
use crate::plan::{Content, Edit};
use std::path::Path;

const MIB: u64 = 1 << 20;
/// Slack on top of the estimate for inodes, extent trees and grown directories, added only
/// when some edit writes at all (so re-applying to a full, baked image never grows it).
const MARGIN: u64 = 4 * MIB;
/// How many times growth is retried when the new block groups' own metadata ate the room.
const GROW_ATTEMPTS: usize = 4;

/// Bytes the root edits need beyond what they free: for each written file, its new blocks
/// minus the blocks of what it replaces; a block for each new entry; plus [`MARGIN`] when
/// anything is written. 0 when every edit is already in place.
pub fn needed(image: &Path, fs: &Ext4, edits: &[&Edit]) -> Result<u64, ApplyError> {
    let bs = fs.block_size();
    let blocks = |n: u64| n.div_ceil(bs) * bs;
    let mut total = 0u64;
    let mut writes = false;
    let existing = |path: &str| -> (Option<FileKind>, u64) {
        match fs.lookup(path) {
            Ok(Some(_)) => fs
                .stat(path)
                .map(|s| (Some(s.kind), s.size))
                .unwrap_or((None, 0)),
            _ => (None, 0),
        }
    };
    let text = |path: &str| -> String {
        fs.read_file(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    for edit in edits {
        let (path, new_size) = match edit {
            Edit::WriteFile { path, content, .. } => {
                let size = match content {
                    Content::Source { path: file, .. } => std::fs::metadata(file)
                        .map_err(|source| ApplyError::SourceRead {
                            image: image.to_path_buf(),
                            edit: edit.to_string(),
                            file: file.clone(),
                            source,
                        })?
                        .len(),
                    other => inline(other).map_or(0, |b| b.len() as u64),
                };
                (path.clone(), size)
            }
            Edit::EnsureUser(user) => {
                let db = UserDb {
                    passwd: text("/etc/passwd"),
                    group: text("/etc/group"),
                    shadow: text("/etc/shadow"),
                    gshadow: text("/etc/gshadow"),
                };
                let new = ensure_user(&db, user);
                let grew = [
                    (&db.passwd, &new.passwd),
                    (&db.group, &new.group),
                    (&db.shadow, &new.shadow),
                    (&db.gshadow, &new.gshadow),
                ]
                .iter()
                .filter(|(a, b)| a != b)
                .map(|(a, b)| blocks(b.len() as u64).saturating_sub(blocks(a.len() as u64)) + bs)
                .sum::<u64>();
                if grew > 0 {
                    writes = true;
                    total += grew;
                }
                continue;
            }
            Edit::Mkdir { path, .. } | Edit::Symlink { path, .. } => {
                if existing(path).0.is_none() {
                    writes = true;
                    total += 2 * bs;
                }
                continue;
            }
            other => match (other.enable_link(), other.transform("")) {
                (Some((link, _)), _) => {
                    if existing(&link).0 != Some(FileKind::Symlink) {
                        writes = true;
                        total += 2 * bs;
                    }
                    continue;
                }
                (None, Some((file, _))) => {
                    let old = text(&file);
                    match other.transform(&old) {
                        Some((_, new)) if new != old => (file, new.len() as u64),
                        _ => continue,
                    }
                }
                (None, None) => continue,
            },
        };
        let (kind, old_size) = existing(&path);
        if kind == Some(FileKind::File) && old_size == new_size {
            // Most likely already in place (re-applying); if not, the rewrite frees as many
            // blocks as it takes.
            continue;
        }
        let old = if kind == Some(FileKind::File) {
            old_size
        } else {
            0
        };
        if kind.is_none() {
            total += bs;
        }
        total += blocks(new_size).saturating_sub(blocks(old));
        writes = true;
    }
    Ok(if writes { total + MARGIN } else { 0 })
}

/// Makes sure the root filesystem has `needed` free bytes, growing the image file, the root
/// partition and the filesystem when it has not. Returns the bytes the image grew by.
pub fn ensure_room(
    image: &Path,
    located: &mut Located,
    needed: u64,
) -> Result<Option<u64>, ApplyError> {
    let original = located.layout.disk_size;
    for _ in 0..GROW_ATTEMPTS {
        let free = free_bytes(image, located)?;
        if free >= needed {
            let grown = located.layout.disk_size - original;
            return Ok((grown > 0).then_some(grown));
        }
        grow_once(image, located, needed - free)?;
    }
    let free = free_bytes(image, located)?;
    if free >= needed {
        return Ok(Some(located.layout.disk_size - original));
    }
    Err(ApplyError::StillShort {
        image: image.to_path_buf(),
        partition: located.root.number,
        needed,
        free,
    })
}

pub(super) fn free_bytes(image: &Path, located: &Located) -> Result<u64, ApplyError> {
    Ext4::open(image, located.root.start, Access::ReadOnly)
        .map(|fs| fs.free_bytes())
        .map_err(|source| ApplyError::Ext4 {
            image: image.to_path_buf(),
            partition: located.root.number,
            edit: "measuring free space".into(),
            source: Box::new(source),
        })
}

/// Grows by at least `short` bytes: whole MiB, and never less than the root partition's
/// offset (resize2fs on an image file cannot grow by less, see `ext4::grow_fs`).
fn grow_once(image: &Path, located: &mut Located, short: u64) -> Result<(), ApplyError> {
    let root = located.root.number;
    if let Some(last) = located.layout.last_on_disk() {
        if last.number != root {
            return Err(ApplyError::RootNotLast {
                image: image.to_path_buf(),
                root,
                last: last.number,
                needed: short,
            });
        }
    }
    let by = short.max(located.root.start).div_ceil(MIB) * MIB;
    let old_size = located.layout.disk_size;
    let new_size = (old_size + by).div_ceil(MIB) * MIB;
    let layout = disk::grow(image, new_size, root).map_err(|source| ApplyError::Disk {
        image: image.to_path_buf(),
        source: Box::new(source),
    })?;
    let part =
        layout
            .partition(root)
            .cloned()
            .ok_or_else(|| crate::locate::LocateError::NoRoot {
                image: image.to_path_buf(),
                found: format!("partition {root} vanished while growing"),
            })?;
    grow_fs(image, part.start, part.size).map_err(|source| ApplyError::Ext4 {
        image: image.to_path_buf(),
        partition: root,
        edit: "growing the root filesystem".into(),
        source: Box::new(source),
    })?;
    tracing::info!(
        image = %image.display(),
        "root filesystem grown by {} MiB to fit the payload",
        (new_size - old_size).div_ceil(MIB)
    );
    located.root = part;
    located.layout = layout;
    Ok(())
}
