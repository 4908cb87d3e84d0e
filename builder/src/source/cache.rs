//! The content-addressed cache under `$XDG_CACHE_HOME/piimg`: downloads as
//! `blobs/sha256/<hex>`, decompressed bases as `bases/<sha256 of the compressed file>.img`
//! (sparse). Entries appear only by rename of a complete temporary file and are never changed
//! in place, so a crash or a concurrent build never sees half an entry.

use super::decompress::{decompress_to_locked, DiskImage};
use super::digest::{sha256_file, Sha256Hex};
use super::error::write_error;
use super::SourceError;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A cache folder.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// The cache at `root` (created on first write). Tests pass a temporary folder.
    pub fn new(root: PathBuf) -> Cache {
        Cache { root }
    }

    /// The user's cache: `$XDG_CACHE_HOME/piimg`, else `$HOME/.cache/piimg`.
    pub fn from_env() -> Result<Cache, SourceError> {
        Self::default_root(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
            .map(Cache::new)
    }

    /// The default root from the two variables (an empty or relative XDG value is ignored,
    /// as the XDG spec says).
    pub fn default_root(
        xdg_cache_home: Option<OsString>,
        home: Option<OsString>,
    ) -> Result<PathBuf, SourceError> {
        if let Some(xdg) = xdg_cache_home.map(PathBuf::from) {
            if xdg.is_absolute() {
                return Ok(xdg.join("piimg"));
            }
        }
        match home {
            Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".cache").join("piimg")),
            _ => Err(SourceError::NoCacheDir),
        }
    }

    /// The cache folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn bases_dir(&self) -> PathBuf {
        self.root.join("bases")
    }

    /// Where the blob with this digest lives (whether or not it exists).
    pub fn blob_path(&self, sha256: &Sha256Hex) -> PathBuf {
        self.blobs_dir().join(sha256.as_str())
    }

    /// Where an interrupted download is kept for resuming; `key` is the pinned digest, or a
    /// digest of the URL when none is pinned.
    pub(crate) fn partial_path(&self, key: &str) -> Result<PathBuf, SourceError> {
        let dir = self.root.join("partial");
        std::fs::create_dir_all(&dir).map_err(|e| write_error(&dir, e))?;
        Ok(dir.join(key))
    }

    /// The blob with this digest if it is cached and still has that digest. A blob whose
    /// bytes no longer match is evicted with a warning, so the caller fetches it again.
    pub fn verified_blob(&self, sha256: &Sha256Hex) -> Result<Option<PathBuf>, SourceError> {
        let path = self.blob_path(sha256);
        if !path.exists() {
            return Ok(None);
        }
        let actual = sha256_file(&path)?;
        if &actual == sha256 {
            return Ok(Some(path));
        }
        tracing::warn!(
            path = %path.display(),
            expected = %sha256,
            actual = %actual,
            "cache entry is corrupt; evicting it and fetching again"
        );
        std::fs::remove_file(&path).map_err(|e| write_error(&path, e))?;
        Ok(None)
    }

    /// Moves a complete, verified file into the cache under its digest.
    pub(crate) fn insert_blob(
        &self,
        file: &Path,
        sha256: &Sha256Hex,
    ) -> Result<PathBuf, SourceError> {
        let dir = self.blobs_dir();
        std::fs::create_dir_all(&dir).map_err(|e| write_error(&dir, e))?;
        let path = self.blob_path(sha256);
        std::fs::rename(file, &path).map_err(|e| write_error(&path, e))?;
        Ok(path)
    }

    /// Where the decompressed base of a compressed file with this digest lives.
    pub fn base_path(&self, compressed_sha256: &Sha256Hex) -> PathBuf {
        self.bases_dir()
            .join(format!("{}.img", compressed_sha256.as_str()))
    }

    /// The decompressed base if it is already cached: the warm path of a build, which then
    /// needs neither the download nor a pass over it.
    pub fn cached_base(&self, compressed_sha256: &Sha256Hex) -> Option<PathBuf> {
        let path = self.base_path(compressed_sha256);
        path.is_file().then_some(path)
    }

    /// The decompressed (sparse) base of `compressed`, whose digest is `sha256`, decompressing
    /// it into the cache once.
    pub fn base_image(
        &self,
        compressed: &Path,
        sha256: &Sha256Hex,
    ) -> Result<PathBuf, SourceError> {
        self.base_image_named(compressed, sha256, compressed)
    }

    /// [`Self::base_image`], naming the base `shown` in errors (the path or URL the user
    /// gave, where `compressed` may be the cache's own download). The decoded image is checked
    /// as a disk image before it gets its cache name (bounded by its own partition table, its
    /// table read); a base refused there leaves nothing in the cache: neither the decoded
    /// image nor, when it was downloaded, the download (issue 15.10).
    pub fn base_image_named(
        &self,
        compressed: &Path,
        sha256: &Sha256Hex,
        shown: &Path,
    ) -> Result<PathBuf, SourceError> {
        if let Some(path) = self.cached_base(sha256) {
            return Ok(path);
        }
        let dir = self.bases_dir();
        std::fs::create_dir_all(&dir).map_err(|e| write_error(&dir, e))?;
        let path = self.base_path(sha256);
        tracing::info!(input = %shown.display(), "decompressing base into the cache");
        let disk = DiskImage { shown };
        match decompress_to_locked(compressed, &path, Some(disk)) {
            Ok(_) => Ok(path),
            Err(e) => {
                if !matches!(e, SourceError::Write { .. } | SourceError::Read { .. }) {
                    self.evict_base(sha256);
                }
                Err(e)
            }
        }
    }

    /// Removes a refused base from the cache: its decoded image and its download (files
    /// outside the cache, such as the user's own `--base`, are never touched). A later run
    /// fetches it again, rather than finding the refused file for ever.
    pub fn evict_base(&self, sha256: &Sha256Hex) {
        // Logged by digest: messages about a base name the user's file, not the cache's copy.
        for (what, path) in [
            ("decoded image", self.base_path(sha256)),
            ("download", self.blob_path(sha256)),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(%sha256, what, "removed the refused base from the cache"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(
                    %sha256, what, error = %e,
                    "cannot remove the refused base from the cache"
                ),
            }
        }
    }
}
