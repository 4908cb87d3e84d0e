//! The FAT boot partition (`cmdline.txt`, `config.txt`, the ESP), edited in-process through the
//! `fatfs` crate on any `Read + Write + Seek` (normally a [`crate::disk::PartitionView`]).
//!
//! Every timestamp written comes from the caller's `SOURCE_DATE_EPOCH`, so two runs with the
//! same inputs produce the same bytes.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::io::{Seek, SeekFrom};
use std::sync::{Arc, Mutex, OnceLock};

use fatfs::{Date, DateTime, FileSystem, FsOptions, Time, TimeProvider};

use super::fat_check::{self, Finding};
use super::fat_dot_entries;

/// Why a FAT operation failed. Each message names the filesystem and the path.
#[derive(Debug, thiserror::Error)]
pub enum FatError {
    /// The boot sector is not that of a FAT filesystem, or cannot be read.
    #[error("{fs}: not a usable FAT filesystem: {source}; is this the boot partition?")]
    Open {
        /// Which filesystem (image and partition).
        fs: String,
        /// What fatfs reported.
        #[source]
        source: io::Error,
    },
    /// The volume is damaged (a chain that loops, ends in a free, bad or reserved cluster, is
    /// shared by two files, or does not match its file's size): refused before anything is
    /// read from it or written to it.
    #[error("{fs} is damaged: `{path}` {what}; run `fsck.fat -a` on a copy of the image (or of the partition), or use a fresh download")]
    Damaged {
        /// Which filesystem (image and partition).
        fs: String,
        /// The file inside the FAT ("/" for the volume itself).
        path: String,
        /// What is wrong with it.
        what: String,
    },
    /// A path component does not exist.
    #[error("{fs}: `{path}` does not exist{hint}")]
    NotFound {
        /// Which filesystem.
        fs: String,
        /// The path asked for.
        path: String,
        /// How to fix it, when there is an obvious way.
        hint: &'static str,
    },
    /// A file was expected but a directory is there, or the other way round.
    #[error("{fs}: `{path}` is {found}, expected {expected}")]
    WrongKind {
        /// Which filesystem.
        fs: String,
        /// The path asked for.
        path: String,
        /// "a directory" / "a file".
        found: &'static str,
        /// "a file" / "a directory".
        expected: &'static str,
    },
    /// The path cannot name anything on FAT.
    #[error("{fs}: invalid path `{path}`: {reason}; use '/'-separated names relative to the partition root")]
    BadPath {
        /// Which filesystem.
        fs: String,
        /// The path given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Reading or writing failed (disk full, I/O error, directory not empty…).
    #[error("{fs}: cannot {action} `{path}`: {source}")]
    Io {
        /// Which filesystem.
        fs: String,
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// One directory entry as [`BootFs::list`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FatEntry {
    /// The long file name (the short 8.3 name when there is no long one).
    pub name: String,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Size in bytes (0 for directories).
    pub size: u64,
}

/// A mounted FAT filesystem with deterministic timestamps.
pub struct BootFs<T: fatfs::ReadWriteSeek> {
    fs: FileSystem<SharedIo<T>>,
    /// The same device, for the raw repair pass that works around fatfs' directory bug.
    io: SharedIo<T>,
    name: String,
}

/// One device used both by fatfs and by the raw repair pass, one at a time.
struct SharedIo<T>(Arc<Mutex<T>>);

impl<T> Clone for SharedIo<T> {
    fn clone(&self) -> Self {
        SharedIo(Arc::clone(&self.0))
    }
}

impl<T> SharedIo<T> {
    fn with<R>(&self, f: impl FnOnce(&mut T) -> io::Result<R>) -> io::Result<R> {
        let mut guard = self
            .0
            .lock()
            .map_err(|_| io::Error::other("FAT device lock poisoned"))?;
        f(&mut guard)
    }
}

impl<T: Read> Read for SharedIo<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.with(|io| io.read(buf))
    }
}

impl<T: Write> Write for SharedIo<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.with(|io| io.write(buf))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.with(|io| io.flush())
    }
}

impl<T: Seek> Seek for SharedIo<T> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.with(|io| io.seek(to))
    }
}

impl<T: fatfs::ReadWriteSeek> std::fmt::Debug for BootFs<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootFs")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<T: fatfs::ReadWriteSeek> BootFs<T> {
    /// Mounts the FAT filesystem in `io` (positioned at its offset 0); `epoch` (seconds since
    /// 1970, UTC, normally `SOURCE_DATE_EPOCH`) is the time of every timestamp written.
    pub fn open(io: T, epoch: i64) -> Result<Self, FatError> {
        Self::open_named(io, epoch, "FAT filesystem")
    }

    /// Like [`BootFs::open`], with the name errors use for this filesystem (for example
    /// "worker-2.img partition 1"), so a message points at the right image.
    pub fn open_named(io: T, epoch: i64, name: impl Into<String>) -> Result<Self, FatError> {
        let name = name.into();
        let options = FsOptions::new()
            .update_accessed_date(false)
            .time_provider(clock(epoch));
        let io = SharedIo(Arc::new(Mutex::new(io)));
        let fs = match FileSystem::new(io.clone(), options) {
            Ok(fs) => fs,
            Err(source) => return Err(FatError::Open { fs: name, source }),
        };
        match fat_check::check(&mut io.clone()) {
            Ok(()) => Ok(BootFs { fs, io, name }),
            Err(Finding::Damaged { path, what }) => Err(FatError::Damaged {
                fs: name,
                path,
                what,
            }),
            Err(Finding::Io(source)) => Err(FatError::Open { fs: name, source }),
        }
    }

    /// Whether a file or directory exists at `path` (the root always exists).
    pub fn exists(&self, path: &str) -> bool {
        match normalize(path) {
            Ok(p) if p.is_empty() => true,
            Ok(p) => {
                let root = self.fs.root_dir();
                root.open_file(&p).is_ok() || root.open_dir(&p).is_ok()
            }
            Err(_) => false,
        }
    }

    /// The whole content of the file at `path`.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, FatError> {
        let p = self.path(path)?;
        let mut file = self
            .fs
            .root_dir()
            .open_file(&p)
            .map_err(|e| self.lookup_err(&p, e, false))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .map_err(|e| self.io_err("read", &p, e))?;
        Ok(data)
    }

    /// The entries of directory `dir` ("" or "/" for the root), without "." and "..",
    /// sorted by name.
    pub fn list(&self, dir: &str) -> Result<Vec<FatEntry>, FatError> {
        let p = normalize(dir).map_err(|reason| self.bad_path(dir, reason))?;
        let root = self.fs.root_dir();
        let d = if p.is_empty() {
            root
        } else {
            root.open_dir(&p)
                .map_err(|e| self.lookup_err(&p, e, true))?
        };
        let mut out = Vec::new();
        for entry in d.iter() {
            let entry = entry.map_err(|e| self.io_err("list", &p, e))?;
            let name = entry.file_name();
            if name == "." || name == ".." {
                continue;
            }
            out.push(FatEntry {
                is_dir: entry.is_dir(),
                size: if entry.is_dir() { 0 } else { entry.len() },
                name,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Creates or replaces the file at `path` with exactly `data` (a shorter content frees the
    /// clusters it no longer needs). The parent directory must exist: see [`BootFs::mkdir_all`].
    pub fn write_file(&mut self, path: &str, data: &[u8]) -> Result<(), FatError> {
        let p = self.path(path)?;
        if p.is_empty() {
            return Err(self.bad_path(path, "the root is a directory"));
        }
        let root = self.fs.root_dir();
        if let Some((parent, _)) = p.rsplit_once('/') {
            root.open_dir(parent)
                .map_err(|e| self.lookup_err(parent, e, true))?;
        }
        if root.open_dir(&p).is_ok() {
            return Err(self.wrong_kind(&p, "a directory", "a file"));
        }
        let mut file = root
            .create_file(&p)
            .map_err(|e| self.io_err("create", &p, e))?;
        file.write_all(data)
            .map_err(|e| self.io_err("write", &p, e))?;
        file.truncate()
            .map_err(|e| self.io_err("truncate", &p, e))?;
        file.flush().map_err(|e| self.io_err("write", &p, e))?;
        tracing::debug!(fs = %self.name, path = %p, bytes = data.len(), "wrote FAT file");
        Ok(())
    }

    /// Removes the file or empty directory at `path`.
    pub fn remove(&mut self, path: &str) -> Result<(), FatError> {
        let p = self.path(path)?;
        if p.is_empty() {
            return Err(self.bad_path(path, "cannot remove the root"));
        }
        let root = self.fs.root_dir();
        if !(root.open_file(&p).is_ok() || root.open_dir(&p).is_ok()) {
            return Err(FatError::NotFound {
                fs: self.name.clone(),
                path: p,
                hint: "",
            });
        }
        root.remove(&p).map_err(|e| self.io_err("remove", &p, e))
    }

    /// Creates directory `path` and any missing parents; existing directories are fine.
    pub fn mkdir_all(&mut self, path: &str) -> Result<(), FatError> {
        let p = self.path(path)?;
        let root = self.fs.root_dir();
        let mut prefix = String::new();
        let mut created = false;
        for component in p.split('/').filter(|c| !c.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(component);
            if root.open_dir(&prefix).is_ok() {
                continue;
            }
            if root.open_file(&prefix).is_ok() {
                return Err(self.wrong_kind(&prefix, "a file", "a directory"));
            }
            root.create_dir(&prefix)
                .map_err(|e| self.io_err("create directory", &prefix, e))?;
            created = true;
        }
        if created {
            let mut raw = self.io.clone();
            let fixed = fat_dot_entries::repair(&mut raw)
                .map_err(|e| self.io_err("repair directory", &p, e))?;
            tracing::debug!(fs = %self.name, path = %p, fixed, "repaired fatfs dot entries");
        }
        Ok(())
    }

    /// Unmounts cleanly: writes the FSInfo sector and clears the dirty flag, so `fsck.fat`
    /// and the firmware see a clean volume.
    pub fn close(self) -> Result<(), FatError> {
        let name = self.name;
        self.fs.unmount().map_err(|source| FatError::Io {
            fs: name,
            action: "unmount",
            path: "/".into(),
            source,
        })
    }

    fn path(&self, path: &str) -> Result<String, FatError> {
        normalize(path).map_err(|reason| self.bad_path(path, reason))
    }

    fn bad_path(&self, path: &str, reason: &'static str) -> FatError {
        FatError::BadPath {
            fs: self.name.clone(),
            path: path.to_string(),
            reason,
        }
    }

    fn wrong_kind(&self, path: &str, found: &'static str, expected: &'static str) -> FatError {
        FatError::WrongKind {
            fs: self.name.clone(),
            path: path.to_string(),
            found,
            expected,
        }
    }

    fn io_err(&self, action: &'static str, path: &str, source: io::Error) -> FatError {
        FatError::Io {
            fs: self.name.clone(),
            action,
            path: path.to_string(),
            source,
        }
    }

    /// Maps a failed open: not found, the wrong kind of entry, or an I/O error.
    fn lookup_err(&self, path: &str, e: io::Error, want_dir: bool) -> FatError {
        if e.kind() == io::ErrorKind::NotFound {
            let hint = if want_dir {
                " (create it with mkdir_all first)"
            } else {
                ""
            };
            return FatError::NotFound {
                fs: self.name.clone(),
                path: path.to_string(),
                hint,
            };
        }
        let root = self.fs.root_dir();
        match (
            want_dir,
            root.open_file(path).is_ok(),
            root.open_dir(path).is_ok(),
        ) {
            (true, true, _) => self.wrong_kind(path, "a file", "a directory"),
            (false, _, true) => self.wrong_kind(path, "a directory", "a file"),
            _ => self.io_err("open", path, e),
        }
    }
}

/// Canonical form of a path: no leading or trailing '/', no empty, "." or ".." components.
fn normalize(path: &str) -> Result<String, &'static str> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    let mut parts = Vec::new();
    for c in trimmed.split('/') {
        match c {
            "" => return Err("empty path component ('//')"),
            "." | ".." => return Err("'.' and '..' are not allowed"),
            c if c.contains('\\') || c.contains('\0') => {
                return Err("'\\' and NUL are not allowed")
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// A clock frozen at one instant, for fatfs' timestamps.
#[derive(Debug)]
struct EpochClock(DateTime);

impl TimeProvider for EpochClock {
    fn get_current_date(&self) -> Date {
        self.0.date
    }
    fn get_current_date_time(&self) -> DateTime {
        self.0
    }
}

/// fatfs wants a `&'static` time provider: keep one per distinct epoch for the life of the
/// process (a build uses one or two), instead of leaking one per mount.
fn clock(epoch: i64) -> &'static EpochClock {
    static CLOCKS: OnceLock<Mutex<HashMap<i64, &'static EpochClock>>> = OnceLock::new();
    let mut clocks = CLOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    clocks
        .entry(epoch)
        .or_insert_with(|| Box::leak(Box::new(EpochClock(dos_date_time(epoch)))))
}

/// UTC calendar time of `epoch`, clamped to what FAT can store (1980-01-01 to 2107-12-31).
/// FAT stores local time; we store UTC so the result does not depend on the build machine.
pub(crate) fn dos_date_time(epoch: i64) -> DateTime {
    const MIN: i64 = 315_532_800; // 1980-01-01T00:00:00Z
    const MAX: i64 = 4_354_819_199; // 2107-12-31T23:59:59Z
    let t = epoch.clamp(MIN, MAX);
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm), valid for the clamped range.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    DateTime {
        date: Date {
            year: year as u16,
            month: month as u16,
            day: day as u16,
        },
        time: Time {
            hour: (secs / 3600) as u16,
            min: (secs / 60 % 60) as u16,
            sec: (secs % 60) as u16,
            millis: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_converts_to_utc_calendar_time() {
        let dt = dos_date_time(1_700_000_000); // 2023-11-14T22:13:20Z
        assert_eq!((dt.date.year, dt.date.month, dt.date.day), (2023, 11, 14));
        assert_eq!((dt.time.hour, dt.time.min, dt.time.sec), (22, 13, 20));
        let leap = dos_date_time(951_782_400); // 2000-02-29T00:00:00Z
        assert_eq!(
            (leap.date.year, leap.date.month, leap.date.day),
            (2000, 2, 29)
        );
        assert_eq!(dos_date_time(0).date.year, 1980);
        assert_eq!(dos_date_time(i64::MAX).date.year, 2107);
    }

    #[test]
    fn paths_are_normalized_or_refused() {
        assert_eq!(
            normalize("/current/cmdline.txt").as_deref(),
            Ok("current/cmdline.txt")
        );
        assert_eq!(normalize("/").as_deref(), Ok(""));
        assert!(normalize("a//b").is_err());
        assert!(normalize("../x").is_err());
    }
}
