//! Remembers the SHA-256 of local files between builds, keyed by what changes whenever the
//! file's bytes can have changed: device, inode, size, and modification and status-change
//! times to the nanosecond (the status-change time cannot be set back by `touch`). Every build
//! of a node checks its base, k3s and first-boot binaries; without this, a warm build re-reads
//! hundreds of MB of unchanged inputs each time. git's index trusts the same fields.
//!
//! The memo is an optimisation only: an unreadable, malformed or stale entry means the file is
//! hashed again, and a failure to write one is logged and ignored.

use super::digest::{sha256_file, Sha256Hex};
use super::SourceError;
use sha2::{Digest, Sha256};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The memo folder of a cache: `<cache>/digests/`.
pub(crate) struct DigestMemo {
    dir: PathBuf,
}

impl DigestMemo {
    pub(crate) fn new(cache_root: &Path) -> DigestMemo {
        DigestMemo {
            dir: cache_root.join("digests"),
        }
    }

    /// The SHA-256 of `path`, from the memo when the file is unchanged since it was hashed.
    pub(crate) fn sha256(&self, path: &Path) -> Result<Sha256Hex, SourceError> {
        let Some((entry, stamp)) = self.entry_and_stamp(path) else {
            return sha256_file(path);
        };
        if let Some(known) = std::fs::read_to_string(&entry)
            .ok()
            .and_then(|text| parse(&text, &stamp))
        {
            tracing::debug!(path = %path.display(), "digest remembered");
            return Ok(known);
        }
        let digest = sha256_file(path)?;
        // Only remember it if the file did not change while it was read.
        if self
            .entry_and_stamp(path)
            .is_some_and(|(_, after)| after == stamp)
        {
            if let Err(e) = self.write(&entry, &stamp, &digest) {
                tracing::debug!(dir = %self.dir.display(), error = %e, "digest not remembered");
            }
        }
        Ok(digest)
    }

    /// Where this file's entry lives, and the stamp it must carry.
    fn entry_and_stamp(&self, path: &Path) -> Option<(PathBuf, String)> {
        let canonical = std::fs::canonicalize(path).ok()?;
        let meta = std::fs::metadata(&canonical).ok()?;
        if !meta.is_file() {
            return None;
        }
        let stamp = format!(
            "{} {} {} {}.{:09} {}.{:09}",
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec()
        );
        let key = hex::encode(Sha256::digest(canonical.as_os_str().as_encoded_bytes()));
        Some((self.dir.join(key), stamp))
    }

    fn write(&self, entry: &Path, stamp: &str, digest: &Sha256Hex) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let temp = tempfile::NamedTempFile::new_in(&self.dir)?;
        std::fs::write(temp.path(), format!("{stamp}\n{digest}\n"))?;
        temp.persist(entry).map_err(|e| e.error)?;
        Ok(())
    }
}

/// The digest of an entry whose first line is `stamp`.
fn parse(text: &str, stamp: &str) -> Option<Sha256Hex> {
    let mut lines = text.lines();
    (lines.next()? == stamp)
        .then(|| Sha256Hex::parse(lines.next()?, "digest memo").ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_notices_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k3s");
        std::fs::write(&file, b"one").unwrap();
        let memo = DigestMemo::new(&dir.path().join("cache"));
        let first = memo.sha256(&file).unwrap();
        assert_eq!(first, sha256_file(&file).unwrap());
        assert_eq!(
            std::fs::read_dir(dir.path().join("cache/digests"))
                .unwrap()
                .count(),
            1
        );
        assert_eq!(memo.sha256(&file).unwrap(), first);
        // Same size, new bytes: the status-change time moves even if mtime is put back.
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, b"two").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let second = memo.sha256(&file).unwrap();
        assert_eq!(second, sha256_file(&file).unwrap());
        assert_ne!(second, first);
    }

    #[test]
    fn a_damaged_entry_is_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("base.img.xz");
        std::fs::write(&file, b"base").unwrap();
        let memo = DigestMemo::new(&dir.path().join("cache"));
        let right = memo.sha256(&file).unwrap();
        let (entry, stamp) = memo.entry_and_stamp(&file).unwrap();
        std::fs::write(&entry, format!("{stamp}\nnot a digest\n")).unwrap();
        assert_eq!(memo.sha256(&file).unwrap(), right);
    }
}
