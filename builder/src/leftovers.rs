//! piimg's own temporary files and folders, and the sweep that removes those an interrupted
//! run left behind.
//!
//! Every temporary entry piimg makes in a folder it owns (the cache, `--out`, the system temp
//! folder for `inspect`) is created under a shared `flock` on that folder and then holds an
//! exclusive `flock` on itself for as long as the run uses it. A killed run's locks go with
//! its process, so at the start of the next run [`sweep`] takes the folder's lock exclusively
//! (no entry is between creation and lock meanwhile) and removes each entry that matches one
//! of piimg's own [`Leftover`] patterns and whose lock it can take. A running build's entries
//! are locked and stay.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// A kind of temporary entry piimg makes, recognised by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    /// `.piimg-decompress-XXXXXX`: a base being decompressed (cache `bases/`, or the temp folder).
    Decompress,
    /// `.frames-XXXXXX/`: a base's frame cache being written (cache `frames/`).
    Frames,
    /// `.NODE.work-XXXXXX/`: a node's work folder, a full copy of the base (`--out`).
    Work,
    /// `.NAME.XXXXXX.tmp`: an output file before its rename (`--out`).
    OutputTemp,
    /// `piimg-image-XXXXXX.img`: a compressed image decompressed for `inspect` (temp folder).
    InspectImage,
}

impl Leftover {
    /// Whether `name` is one of this kind's names.
    pub fn matches(self, name: &str) -> bool {
        match self {
            Leftover::Decompress => name.starts_with(".piimg-decompress-"),
            Leftover::Frames => name.starts_with(".frames-"),
            Leftover::Work => {
                name.starts_with('.') && name.len() > 1 && name[1..].contains(".work-")
            }
            Leftover::OutputTemp => {
                // `.` + final name + `.` + random + `.tmp`; final names are piimg's outputs.
                name.starts_with('.')
                    && name.ends_with(".tmp")
                    && [".img", ".bmap", ".sha256", ".build.json"]
                        .iter()
                        .any(|ext| name.contains(&format!("{ext}.")))
            }
            Leftover::InspectImage => name.starts_with("piimg-image-") && name.ends_with(".img"),
        }
    }
}

/// The patterns of what piimg leaves in its cache folders (`bases/`, `frames/`).
pub const CACHE: &[Leftover] = &[Leftover::Decompress, Leftover::Frames];
/// The patterns of what piimg leaves in `--out`.
pub const OUT: &[Leftover] = &[Leftover::Work, Leftover::OutputTemp];
/// The patterns of what piimg leaves in the system temp folder.
pub const TEMP: &[Leftover] = &[Leftover::InspectImage, Leftover::Decompress];

/// An exclusive lock on one temporary entry, held until dropped (the end of the run).
#[derive(Debug)]
pub struct EntryLock {
    _lock: Flock<File>,
}

/// A shared lock on a folder, held while an entry is created in it and locked.
struct DirGuard {
    _lock: Flock<File>,
}

fn lock_dir_shared(dir: &Path) -> io::Result<DirGuard> {
    let file = File::open(dir)?;
    let lock = Flock::lock(file, FlockArg::LockShared).map_err(|(_, e)| io::Error::from(e))?;
    Ok(DirGuard { _lock: lock })
}

/// Locks the entry at `path` (a file or a folder) exclusively, without waiting.
fn try_lock_entry(path: &Path) -> io::Result<Option<EntryLock>> {
    let file = File::open(path)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(EntryLock { _lock: lock })),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(io::Error::from(e)),
    }
}

fn locked(path: &Path) -> io::Result<EntryLock> {
    try_lock_entry(path)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("{}: already locked", path.display()),
        )
    })
}

/// A temporary file made by `builder` in `dir`, locked for the life of the returned lock.
pub fn temp_file(
    builder: &tempfile::Builder<'_, '_>,
    dir: &Path,
) -> io::Result<(tempfile::NamedTempFile, EntryLock)> {
    let _guard = lock_dir_shared(dir)?;
    let temp = builder.tempfile_in(dir)?;
    let lock = locked(temp.path())?;
    Ok((temp, lock))
}

/// A temporary folder made by `builder` in `dir`, locked for the life of the returned lock.
pub fn temp_dir(
    builder: &tempfile::Builder<'_, '_>,
    dir: &Path,
) -> io::Result<(tempfile::TempDir, EntryLock)> {
    let _guard = lock_dir_shared(dir)?;
    let temp = builder.tempdir_in(dir)?;
    let lock = locked(temp.path())?;
    Ok((temp, lock))
}

/// Removes from `dir` the entries matching `patterns` that no live process holds locked, and
/// returns what it removed. A missing folder, or one being swept or written by another run
/// at this moment, is left for a later run; entries that cannot be opened or removed (another
/// user's, in a shared temp folder) are skipped.
pub fn sweep(dir: &Path, patterns: &[Leftover]) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(dir_file) = File::open(dir) else {
        return removed;
    };
    let Ok(_guard) = Flock::lock(dir_file, FlockArg::LockExclusiveNonblock) else {
        tracing::debug!(dir = %dir.display(), "folder busy; leftovers left for a later run");
        return removed;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !patterns.iter().any(|p| p.matches(name)) {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_symlink() || !(kind.is_file() || kind.is_dir()) {
            continue;
        }
        let path = entry.path();
        let Ok(Some(_lock)) = try_lock_entry(&path) else {
            continue;
        };
        let result = if kind.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match result {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed a leftover of an interrupted run");
                removed.push(path);
            }
            Err(e) => tracing::debug!(path = %path.display(), error = %e, "leftover not removed"),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(Leftover::Decompress.matches(".piimg-decompress-a1B2c3"));
        assert!(Leftover::Frames.matches(".frames-a1B2c3"));
        assert!(Leftover::Work.matches(".worker-2.work-a1B2c3"));
        assert!(Leftover::OutputTemp.matches(".worker-2.img.zst.a1B2c3.tmp"));
        assert!(Leftover::OutputTemp.matches(".worker-2.bmap.a1B2c3.tmp"));
        assert!(!Leftover::OutputTemp.matches(".bashrc.tmp"));
        assert!(!Leftover::OutputTemp.matches("worker-2.img"));
        assert!(Leftover::InspectImage.matches("piimg-image-a1B2c3.img"));
        assert!(!Leftover::Work.matches("worker-2.img.zst"));
    }

    #[test]
    fn unlocked_leftovers_go_and_locked_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        // A killed run's: made by hand, nothing holds them.
        let dead_file = dir.path().join(".piimg-decompress-dead00");
        std::fs::write(&dead_file, b"x").unwrap();
        let dead_dir = dir.path().join(".frames-dead00");
        std::fs::create_dir(&dead_dir).unwrap();
        std::fs::write(dead_dir.join("frames"), b"x").unwrap();
        // A live run's: made and locked through this module.
        let mut b = tempfile::Builder::new();
        b.prefix(".piimg-decompress-");
        let (live_file, _l1) = temp_file(&b, dir.path()).unwrap();
        let mut b = tempfile::Builder::new();
        b.prefix(".frames-");
        let (live_dir, _l2) = temp_dir(&b, dir.path()).unwrap();
        // Not piimg's.
        let other = dir.path().join("notes.txt");
        std::fs::write(&other, b"x").unwrap();

        let removed = sweep(dir.path(), CACHE);
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(!dead_file.exists() && !dead_dir.exists());
        assert!(live_file.path().exists() && live_dir.path().exists() && other.exists());
    }
}
