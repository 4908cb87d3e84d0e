//! Step 2: sync staged manifests (server) and air-gap images into the k3s data-dir.
//!
//! The data-dir is on the SSD and outlives the image, so the list of files first boot placed
//! there is kept beside them (`<data-dir>/piimg-sync.json`), not in the state file: a newer
//! image that drops a manifest removes the file the older image put there, and files the owner
//! added by hand are never touched. A file is rewritten only when its content changed, because
//! k3s re-applies a manifest whenever its modification time changes.

use crate::config::Role;
use crate::run::Ctx;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Name of the record of files first boot placed in the data-dir.
pub const RECORD: &str = "piimg-sync.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    #[serde(default)]
    manifests: Vec<String>,
    #[serde(default)]
    images: Vec<String>,
}

/// Why syncing failed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {what}: {source}")]
pub struct SyncError {
    path: PathBuf,
    what: &'static str,
    source: std::io::Error,
}

fn err(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> SyncError {
    let path = path.to_owned();
    move |source| SyncError { path, what, source }
}

/// What changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Files written (new or changed).
    pub written: Vec<String>,
    /// Files removed because the image no longer stages them.
    pub removed: Vec<String>,
}

fn staged_files(dir: &Path) -> Result<Vec<String>, SyncError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err(dir, "listing staged files")(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(err(dir, "listing staged files"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.path().is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn same_content(a: &Path, b: &Path, compare_bytes: bool) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(ma), Ok(mb)) if ma.len() == mb.len() => {
            !compare_bytes || std::fs::read(a).ok() == std::fs::read(b).ok()
        }
        _ => false,
    }
}

fn copy_atomic(from: &Path, to: &Path) -> Result<(), SyncError> {
    let dir = to.parent().unwrap_or(Path::new("."));
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.piimg-tmp"));
    std::fs::copy(from, &tmp).map_err(err(from, "copying"))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(err(&tmp, "syncing"))?;
    std::fs::rename(&tmp, to).map_err(err(to, "renaming into place"))
}

fn sync_dir(
    ctx: &Ctx<'_>,
    staged: &Path,
    dest: &Path,
    previous: &[String],
    compare_bytes: bool,
    changes: &mut Changes,
) -> Result<Vec<String>, SyncError> {
    let names = staged_files(staged)?;
    if !ctx.dry_run {
        std::fs::create_dir_all(dest).map_err(err(dest, "creating"))?;
    }
    for name in &names {
        let (from, to) = (staged.join(name), dest.join(name));
        if !same_content(&from, &to, compare_bytes) {
            if !ctx.dry_run {
                copy_atomic(&from, &to)?;
            }
            changes.written.push(to.display().to_string());
        }
    }
    for gone in previous.iter().filter(|p| !names.contains(p)) {
        let path = dest.join(gone);
        if path.exists() {
            if !ctx.dry_run {
                std::fs::remove_file(&path).map_err(err(&path, "removing a dropped file"))?;
            }
            changes.removed.push(path.display().to_string());
        }
    }
    Ok(names)
}

/// Runs the sync step.
pub fn sync(ctx: &Ctx<'_>) -> Result<Changes, SyncError> {
    let k3s = &ctx.cfg.k3s;
    let data_dir = ctx.paths.node(&k3s.data_dir);
    let record_path = data_dir.join(RECORD);
    let previous: Record = std::fs::read(&record_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut changes = Changes::default();
    let manifests = if ctx.cfg.role == Role::Server {
        sync_dir(
            ctx,
            &ctx.paths.node(&k3s.staged_manifests),
            &data_dir.join("server/manifests"),
            &previous.manifests,
            true,
            &mut changes,
        )?
    } else {
        Vec::new()
    };
    // Images are large: equal size is taken as equal content (names carry versions).
    let images = sync_dir(
        ctx,
        &ctx.paths.node(&k3s.staged_images),
        &data_dir.join("agent/images"),
        &previous.images,
        false,
        &mut changes,
    )?;
    if ctx.dry_run {
        for w in &changes.written {
            println!("would write {w}");
        }
        for r in &changes.removed {
            println!("would remove {r}");
        }
        return Ok(changes);
    }
    let record = Record { manifests, images };
    let bytes = serde_json::to_vec_pretty(&record).unwrap_or_default();
    crate::state::write_atomic(&record_path, &bytes, 0o644).map_err(|(what, source)| {
        SyncError {
            path: record_path.clone(),
            what,
            source,
        }
    })?;
    Ok(changes)
}
