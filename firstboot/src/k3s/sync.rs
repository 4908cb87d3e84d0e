//! Step 2: sync staged manifests (server) and air-gap images into the k3s data-dir.
//!
//! The data-dir is on the SSD and outlives the image, so the list of files first boot placed
//! there is kept beside them (`<data-dir>/piimg-sync.json`), not in the state file: a newer
//! image that drops a manifest removes the file the older image put there, and files the owner
//! added by hand are never touched. A file is rewritten only when its content changed, because
//! k3s re-applies a manifest whenever its modification time changes.
//!
//! The staged tree is copied recursively with its modes: the server's manifests sit in
//! per-service folders (0700) and Secret manifests are 0600, and they stay so on the SSD.
//!
//! A server manifest the image no longer stages is not deleted but moved to
//! `<data-dir>/piimg-removed/` ([`REMOVED_DIR`]), because k3s does not delete what a vanished
//! manifest created: its deploy controller (k3s-io/k3s `pkg/deploy/controller.go`) only deletes
//! an Addon's objects for files matched by the server's `--disable` list; a file that is gone is
//! simply no longer looked at. [`crate::k3s::prune`] deletes those objects once k3s is up.

use crate::config::Role;
use crate::context::Ctx;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Name of the record of files first boot placed in the data-dir.
pub const RECORD: &str = "piimg-sync.json";

/// Folder of the data-dir (outside `server/manifests`, which k3s watches) where manifests the
/// image dropped wait until their objects are deleted from the cluster. Only first boot puts
/// files here, and only files its own record lists.
pub const REMOVED_DIR: &str = "piimg-removed";

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
    /// Files removed because the image no longer stages them (server manifests: moved to
    /// [`REMOVED_DIR`] for their objects to be deleted).
    pub removed: Vec<String>,
}

/// Every regular file below `dir`, as `/`-separated paths relative to it, sorted. The plan
/// stages manifests in per-service folders (`minio/minio.yaml`), so this walks subfolders.
/// Hidden entries (our own temporary files) and symlinks are skipped: a link could point the
/// copy anywhere on the node.
pub(crate) fn staged_files(dir: &Path) -> Result<Vec<String>, SyncError> {
    let mut names = Vec::new();
    walk(dir, "", &mut names)?;
    names.sort();
    Ok(names)
}

fn walk(dir: &Path, prefix: &str, names: &mut Vec<String>) -> Result<(), SyncError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && prefix.is_empty() => return Ok(()),
        Err(e) => return Err(err(dir, "listing staged files")(e)),
    };
    for entry in entries {
        let entry = entry.map_err(err(dir, "listing staged files"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let kind = entry
            .file_type()
            .map_err(err(&entry.path(), "reading a staged file's type"))?;
        let rel = format!("{prefix}{name}");
        if kind.is_dir() {
            walk(&entry.path(), &format!("{rel}/"), names)?;
        } else if kind.is_file() {
            names.push(rel);
        }
    }
    Ok(())
}

/// Whether `rel` stays below the folder it is relative to. Names in the record come from the
/// SSD, which outlives images and could have been edited: never follow one out of `dest`.
fn is_below(rel: &str) -> bool {
    !rel.is_empty()
        && Path::new(rel)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), SyncError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(err(path, "setting the staged mode"))
}

/// Creates the folders between `dest` and `rel`'s file with the modes of the staged ones
/// (0700 for the server's manifests: some hold credentials), fixing the mode of folders that
/// already exist.
fn make_parents(staged: &Path, dest: &Path, rel: &str) -> Result<(), SyncError> {
    use std::os::unix::fs::DirBuilderExt;
    let mut parts: Vec<&str> = rel.split('/').collect();
    parts.pop();
    let (mut from, mut to) = (staged.to_path_buf(), dest.to_path_buf());
    for part in parts {
        from.push(part);
        to.push(part);
        let mode = mode_of(&from).unwrap_or(0o700);
        match std::fs::DirBuilder::new().mode(mode).create(&to) {
            Ok(()) => set_mode(&to, mode)?, // the umask may have narrowed it
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if mode_of(&to) != Some(mode) {
                    set_mode(&to, mode)?;
                }
            }
            Err(e) => return Err(err(&to, "creating a folder")(e)),
        }
    }
    Ok(())
}

/// Removes the folders between `dest` and `rel`'s file that are now empty (a newer image
/// dropped a whole service); a folder holding anything else stays.
pub(crate) fn remove_empty_parents(dest: &Path, rel: &str) {
    let mut dir = dest.join(rel);
    while dir.pop() && dir.starts_with(dest) && dir != dest {
        if std::fs::remove_dir(&dir).is_err() {
            break;
        }
    }
}

fn same_content(a: &Path, b: &Path, compare_bytes: bool) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(ma), Ok(mb)) if ma.len() == mb.len() => {
            !compare_bytes || std::fs::read(a).ok() == std::fs::read(b).ok()
        }
        _ => false,
    }
}

/// Copies `from` to `to` through a temporary file renamed into place. `std::fs::copy` creates
/// the copy with the source's mode, so a 0600 Secret manifest is never readable by others,
/// not even while it is being written.
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
    park: Option<&Path>,
    changes: &mut Changes,
) -> Result<Vec<String>, SyncError> {
    let names = staged_files(staged)?;
    if !ctx.dry_run {
        std::fs::create_dir_all(dest).map_err(err(dest, "creating"))?;
    }
    for name in &names {
        let (from, to) = (staged.join(name), dest.join(name));
        if let Some(parked) = park.map(|p| p.join(name)).filter(|p| p.is_file()) {
            // Staged again before its objects were deleted (a service turned off, then on):
            // cancel the deletion, or it would delete what the manifest now deploys.
            if !ctx.dry_run {
                std::fs::remove_file(&parked)
                    .map_err(err(&parked, "cancelling a pending deletion"))?;
                if let Some(p) = park {
                    remove_empty_parents(p, name);
                }
            }
        }
        if !ctx.dry_run {
            make_parents(staged, dest, name)?;
        }
        if !same_content(&from, &to, compare_bytes) {
            if !ctx.dry_run {
                copy_atomic(&from, &to)?;
            }
            changes.written.push(to.display().to_string());
        } else if let Some(mode) = mode_of(&from).filter(|m| mode_of(&to) != Some(*m)) {
            // Same content, new mode: fix the mode without rewriting, so k3s (which re-applies
            // a manifest whose modification time changes) leaves it alone.
            if !ctx.dry_run {
                set_mode(&to, mode)?;
            }
        }
    }
    for gone in previous
        .iter()
        .filter(|p| !names.contains(p) && is_below(p))
    {
        let path = dest.join(gone);
        if path.exists() {
            if !ctx.dry_run {
                match park {
                    Some(p) => park_file(dest, p, gone)?,
                    None => {
                        std::fs::remove_file(&path)
                            .map_err(err(&path, "removing a dropped file"))?;
                    }
                }
                remove_empty_parents(dest, gone);
            }
            changes.removed.push(path.display().to_string());
        }
    }
    Ok(names)
}

/// Moves `dest/rel` to `park/rel` with one `rename(2)` (both lie in the data-dir, on one
/// filesystem), so after a power cut the file is in exactly one of the two places: still in
/// `dest` and still in the old record (moved again next boot), or parked.
fn park_file(dest: &Path, park: &Path, rel: &str) -> Result<(), SyncError> {
    let (from, to) = (dest.join(rel), park.join(rel));
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(err(dir, "creating the removed-manifests folder"))?;
        use std::os::unix::fs::PermissionsExt;
        // Parked manifests may be Secrets: the folder is root's alone, like the staged ones.
        std::fs::set_permissions(park, std::fs::Permissions::from_mode(0o700))
            .map_err(err(park, "setting the mode"))?;
    }
    std::fs::rename(&from, &to).map_err(err(&from, "moving a dropped manifest aside"))?;
    if let Some(dir) = to.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            d.sync_all().map_err(err(dir, "syncing"))?;
        }
    }
    Ok(())
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
            Some(&data_dir.join(REMOVED_DIR)),
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
        None,
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
