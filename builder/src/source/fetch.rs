//! Gets a source (base image or pinned artifact) from a local path or an http(s) URL and
//! proves it is the pinned one. A download goes to a partial file that later runs resume
//! (HTTP `Range`) and reaches its cache name only once its SHA-256 checks out.

use super::cache::Cache;
use super::digest::{hash_into, Sha256Hex};
use super::digest_memo::DigestMemo;
use super::error::{read_error, write_error};
use super::SourceError;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a source comes from and, when pinned, what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    /// A local path, or an `http://` / `https://` URL.
    pub location: String,
    /// The pinned SHA-256 (hex). `None` for a local override: its digest is computed and
    /// recorded instead of checked.
    pub sha256: Option<String>,
}

/// A verified source ready to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The file: the user's own path for a local source (only read), else the cache blob.
    pub path: PathBuf,
    /// Its SHA-256, to record in the build record.
    pub sha256: Sha256Hex,
}

/// A base image ready to copy: decompressed, sparse, in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    /// The raw image in the cache (never to be modified).
    pub image: PathBuf,
    /// SHA-256 of the file as downloaded (compressed), which names the cached base.
    pub sha256: Sha256Hex,
}

/// Fetches `src` (or finds it in the cache) and verifies it. With `offline`, only the cache
/// and local paths are used.
pub fn resolve(src: &SourceSpec, cache: &Cache, offline: bool) -> Result<Fetched, SourceError> {
    let pinned = src
        .sha256
        .as_deref()
        .map(|s| Sha256Hex::parse(s, &src.location))
        .transpose()?;
    if !is_url(&src.location) {
        return resolve_local(Path::new(&src.location), &src.location, pinned, cache);
    }
    match pinned {
        Some(sha) => {
            if let Some(path) = cache.verified_blob(&sha)? {
                return Ok(Fetched { path, sha256: sha });
            }
            if offline {
                return Err(SourceError::OfflineMissing {
                    location: src.location.clone(),
                    sha256: sha.to_string(),
                    cache: cache.root().to_path_buf(),
                });
            }
            let partial = cache.partial_path(sha.as_str())?;
            let actual = download_verified(&src.location, &partial, Some(&sha))?;
            let path = cache.insert_blob(&partial, &actual)?;
            Ok(Fetched {
                path,
                sha256: actual,
            })
        }
        None => {
            if offline {
                return Err(SourceError::OfflineUnpinned {
                    location: src.location.clone(),
                });
            }
            let key = format!(
                "url-{}",
                hex::encode(Sha256::digest(src.location.as_bytes()))
            );
            let partial = cache.partial_path(&key)?;
            let actual = download_verified(&src.location, &partial, None)?;
            tracing::info!(url = %src.location, sha256 = %actual, "no pinned digest; recorded this one");
            let path = cache.insert_blob(&partial, &actual)?;
            Ok(Fetched {
                path,
                sha256: actual,
            })
        }
    }
}

/// Resolves a base image and returns its decompressed copy in the cache. When the digest is
/// pinned and the base is already decompressed, neither the download nor the network is
/// touched: that is the warm path of every build after the first.
pub fn resolve_base(
    src: &SourceSpec,
    cache: &Cache,
    offline: bool,
) -> Result<BaseImage, SourceError> {
    if let (true, Some(sha)) = (is_url(&src.location), src.sha256.as_deref()) {
        let sha = Sha256Hex::parse(sha, &src.location)?;
        if let Some(image) = cache.cached_base(&sha) {
            return Ok(BaseImage { image, sha256: sha });
        }
    }
    if !is_url(&src.location) {
        check_local_raw(Path::new(&src.location))?;
    }
    let fetched = resolve(src, cache, offline)?;
    let shown = Path::new(&src.location);
    let image = cache.base_image_named(&fetched.path, &fetched.sha256, shown)?;
    Ok(BaseImage {
        image,
        sha256: fetched.sha256,
    })
}

/// Reads the partition table of a local raw base before anything else: the table is in the
/// first sectors (and a GPT's backup in the last), so a file that is no disk image (a 100 GB
/// file of zeros) is refused at once, instead of after hashing and copying all of it (issue
/// 15.10). A compressed base is checked as it decodes (see `bounded`).
fn check_local_raw(path: &Path) -> Result<(), SourceError> {
    if super::Compression::detect(path)? != super::Compression::None {
        return Ok(());
    }
    crate::disk::Layout::read(path)
        .map(|_| ())
        .map_err(|e| SourceError::BaseTable(Box::new(e)))
}

fn is_url(location: &str) -> bool {
    let lower = location.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

fn resolve_local(
    path: &Path,
    location: &str,
    pinned: Option<Sha256Hex>,
    cache: &Cache,
) -> Result<Fetched, SourceError> {
    if location.contains("://") {
        return Err(SourceError::BadLocation {
            location: location.to_string(),
        });
    }
    let actual = DigestMemo::new(cache.root()).sha256(path)?;
    if let Some(expected) = pinned {
        if expected != actual {
            return Err(SourceError::DigestMismatch {
                location: location.to_string(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
    }
    Ok(Fetched {
        path: path.to_path_buf(),
        sha256: actual,
    })
}

/// Downloads (resuming `partial` if present) and checks the digest. A mismatch after a
/// resume may come from a stale partial file, so it retries once from scratch before failing.
fn download_verified(
    url: &str,
    partial: &Path,
    expected: Option<&Sha256Hex>,
) -> Result<Sha256Hex, SourceError> {
    let resumed = partial.exists();
    let actual = download(url, partial)?;
    match expected {
        Some(exp) if *exp != actual => {
            let _ = std::fs::remove_file(partial);
            if resumed {
                tracing::warn!(
                    url,
                    "resumed download has the wrong digest; downloading again from the start"
                );
                return download_verified(url, partial, expected);
            }
            Err(SourceError::DigestMismatch {
                location: url.to_string(),
                expected: exp.to_string(),
                actual: actual.to_string(),
            })
        }
        _ => Ok(actual),
    }
}

/// Downloads `url` into `partial`, continuing from its current length, and returns the
/// SHA-256 of the whole file. A cut connection leaves `partial` for the next run.
fn download(url: &str, partial: &Path) -> Result<Sha256Hex, SourceError> {
    let http = |detail: String| SourceError::Http {
        url: url.to_string(),
        detail,
    };
    let mut hasher = Sha256::new();
    let mut have = match File::open(partial) {
        Ok(mut f) => hash_into(&mut f, &mut hasher).map_err(|e| read_error(partial, e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(read_error(partial, e)),
    };
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .timeout(None)
        .build()
        .map_err(|e| http(e.to_string()))?;
    let mut request = client.get(url);
    if have > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut response = request.send().map_err(|e| http(e.to_string()))?;
    let status = response.status();
    let append = match status.as_u16() {
        206 if content_range_start(&response) == Some(have) => true,
        // A part that does not start where our file ends cannot be appended: start over.
        206 if have > 0 => {
            drop(response);
            std::fs::remove_file(partial).map_err(|e| write_error(partial, e))?;
            return download(url, partial);
        }
        200 => false,
        // Nothing left to send: the partial file is already complete.
        416 if have > 0 => return Ok(Sha256Hex::from_hasher(hasher)),
        _ => return Err(http(format!("HTTP {status}"))),
    };
    if !append {
        have = 0;
        hasher = Sha256::new();
    }
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(partial)
        .map_err(|e| write_error(partial, e))?;
    let total = response.content_length().map(|len| have + len);
    if append {
        tracing::info!(url, from = have, "resuming download");
    }
    let bar = progress_bar(total, have);
    let mut got = have;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match response.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                bar.abandon();
                tracing::debug!(url, error = %e, "body read failed");
                let _ = file.sync_all();
                return Err(SourceError::TruncatedDownload {
                    url: url.to_string(),
                    expected: total.unwrap_or(got),
                    got,
                });
            }
        };
        file.write_all(&buf[..n])
            .map_err(|e| write_error(partial, e))?;
        hasher.update(&buf[..n]);
        got += n as u64;
        bar.set_position(got);
    }
    bar.finish_and_clear();
    file.sync_all().map_err(|e| write_error(partial, e))?;
    if let Some(total) = total {
        if got < total {
            return Err(SourceError::TruncatedDownload {
                url: url.to_string(),
                expected: total,
                got,
            });
        }
    }
    Ok(Sha256Hex::from_hasher(hasher))
}

/// The first byte of a `Content-Range: bytes A-B/T` answer.
fn content_range_start(response: &reqwest::blocking::Response) -> Option<u64> {
    let value = response
        .headers()
        .get(reqwest::header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    let rest = value.trim().strip_prefix("bytes ")?;
    rest.split('-').next()?.trim().parse().ok()
}

/// A progress bar on stderr when it is a terminal, hidden otherwise (logs and CI stay clean).
fn progress_bar(total: Option<u64>, at: u64) -> indicatif::ProgressBar {
    if !io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::new_spinner(),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} downloading {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_position(at);
    bar
}
