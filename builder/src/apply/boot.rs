//! Boot-partition edits. The FAT is read first and every edit is worked out in memory; only
//! when some file really changes is the partition opened for writing, once, and only the
//! changed files are written. An already-baked image is therefore not touched at all (fatfs
//! would otherwise still stamp the volume's dirty flag and FSInfo).

use super::content::{digest_matches, inline};
use super::target::Target;
use super::ApplyError;
use crate::disk::Partition;
use crate::fs::fat::{BootFs, FatError};
use crate::plan::{Content, Edit};
use std::collections::BTreeMap;
use std::path::Path;

/// Applies the boot edits in order; returns how many changed something.
pub(super) fn apply(
    target: &Target<'_>,
    boot: Option<&Partition>,
    edits: &[&Edit],
    epoch: i64,
) -> Result<usize, ApplyError> {
    let image = target.name();
    let Some(first) = edits.first() else {
        return Ok(0);
    };
    let Some(part) = boot else {
        return Err(ApplyError::NoBoot {
            image: image.to_path_buf(),
            edit: first.to_string(),
        });
    };
    let fat_err = |edit: &Edit, source: FatError| ApplyError::Fat {
        image: image.to_path_buf(),
        partition: part.number,
        edit: edit.to_string(),
        source: Box::new(source),
    };
    let open = |writable: bool| {
        let view = target.partition(part, writable)?;
        // The image and partition are named by ApplyError::Fat around this.
        BootFs::open_named(view, epoch, "the FAT boot filesystem").map_err(|e| fat_err(first, e))
    };

    // Pass 1, read-only: the wanted content of every file, and which edits change it.
    let fat = open(false)?;
    let mut files: BTreeMap<String, (Option<Vec<u8>>, Vec<u8>)> = BTreeMap::new();
    let mut changed = 0;
    for edit in edits {
        let file = match edit {
            Edit::WriteBootFile { path, .. } => path.clone(),
            other => match other.transform("") {
                Some((file, _)) => file,
                None => continue,
            },
        };
        let current = match files.get(&file) {
            Some((_, now)) => Some(now.clone()),
            None if fat.exists(&file) => Some(fat.read_file(&file).map_err(|e| fat_err(edit, e))?),
            None => None,
        };
        let want = wanted(image, edit, current.as_deref())?;
        if current.as_deref() != Some(want.as_slice()) {
            changed += 1;
        }
        files
            .entry(file)
            .or_insert_with(|| (current.clone(), Vec::new()))
            .1 = want;
    }
    drop(fat);
    if changed == 0 {
        return Ok(0);
    }

    // Pass 2: write what differs from the original, in one read-write session.
    let mut fat = open(true)?;
    for (file, (original, want)) in &files {
        if original.as_deref() == Some(want.as_slice()) {
            continue;
        }
        if let Some((dir, _)) = file.rsplit_once('/') {
            fat.mkdir_all(dir).map_err(|e| fat_err(first, e))?;
        }
        let edit = edits
            .iter()
            .rev()
            .find(|e| touches(e, file))
            .copied()
            .unwrap_or(first);
        fat.write_file(file, want).map_err(|e| fat_err(edit, e))?;
    }
    fat.close().map_err(|e| fat_err(first, e))?;
    Ok(changed)
}

/// The content `edit` wants for its file, given the current content.
fn wanted(image: &Path, edit: &Edit, current: Option<&[u8]>) -> Result<Vec<u8>, ApplyError> {
    let old = current.map(String::from_utf8_lossy).unwrap_or_default();
    match edit {
        Edit::WriteBootFile { content, .. } => match content {
            Content::Source { path, sha256 } => {
                let data = std::fs::read(path).map_err(|source| ApplyError::SourceRead {
                    image: image.to_path_buf(),
                    edit: edit.to_string(),
                    file: path.clone(),
                    source,
                })?;
                if !digest_matches(&data, sha256) {
                    return Err(ApplyError::SourceDigest {
                        image: image.to_path_buf(),
                        edit: edit.to_string(),
                        file: path.clone(),
                        expected: sha256.clone(),
                        actual: super::content::sha256_hex(&data),
                    });
                }
                Ok(data)
            }
            other => Ok(inline(other).unwrap_or_default().to_vec()),
        },
        other => Ok(other
            .transform(&old)
            .map(|(_, t)| t.into_bytes())
            .unwrap_or_default()),
    }
}

fn touches(edit: &Edit, file: &str) -> bool {
    match edit {
        Edit::WriteBootFile { path, .. } => path == file,
        other => other.transform("").is_some_and(|(f, _)| f == file),
    }
}
