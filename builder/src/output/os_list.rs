//! `os_list.json`: a Raspberry Pi Imager repository file listing the node images in the out
//! folder, so `rpi-imager --repo file:///…/out/os_list.json` (or Imager's "custom repository"
//! setting) offers them.
//!
//! The format follows raspberrypi/rpi-imager's own source at v2.0.11.1-1-g72ad1179
//! (commit 72ad1179ff46a8355291898416fe65cbe6bbd450), not memory:
//! - `doc/json-schema/os-list-schema.json`: top level `{"imager": {...}, "os_list": [...]}`
//!   with `os_list` required; an OS entry requires `name`, `description`, `icon`, `url`,
//!   `extract_size` (integer), `extract_sha256`, `image_download_size` (integer),
//!   `release_date` ("YYYY-MM-DD") and `devices` (tags); `init_format` is one of `""`,
//!   `systemd`, `cloudinit`, `cloudinit-rpi`, `rpi-preseed`, `none` ("Use 'none' or empty
//!   string to explicitly disable customization"); `imager.devices[]` requires `name`,
//!   `description`, `tags`, with optional `matching_type` (default `exclusive`),
//!   `architecture` (`armv8`…); `bmap_url` is optional.
//! - `src/oslistmodel.cpp`: entries with any other `init_format` are pruned; sizes are read
//!   with `toDouble()` (so JSON numbers), the digest, date and URL with `toString()`.
//! - `src/imagewriter.cpp`: `setSrc` maps `init_format` `"none"` to `""`, and
//!   `imageSupportsCustomization()` is `!_initFormat.isEmpty()`: with `"none"` the OS
//!   customisation step is not offered. The device list comes from `imager.devices`
//!   (`setHardwareTags`); `filterOsListWithHWTags` keeps an entry when one of its `devices`
//!   is among the chosen device's `tags`. An image whose size is not a multiple of 512 is
//!   flagged "NOT a valid disk image" and padded (`src/downloadextractthread.cpp`); we refuse
//!   such images instead.
//! - `src/wizard/OSSelectionStep.qml`: the fields passed to `setSrc` (url,
//!   image_download_size, extract_size, extract_sha256, init_format, release_date, bmap_url).
//!
//! Only arm64 images are listed (tag `pi5`): Imager's list is for Raspberry Pis, and the
//! amd64 control plane is flashed with `dd` or `piimg flash`.
//!
//! Imager resolves no relative URL, so URLs are absolute: `file://` of the out folder, or
//! `BASE/<file>` when the user names the web server's base URL.

use super::error::write_error;
use super::Format;
use crate::profile::Arch;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The repository file's name in the out folder.
pub const OS_LIST_FILE: &str = "os_list.json";

/// Imager's device tag for the Raspberry Pi 5.
pub const PI5_TAG: &str = "pi5";

/// What Imager must be told about one published node image.
#[derive(Debug, Clone)]
pub struct ImagerImage {
    /// The node.
    pub node: String,
    /// The image file as published (raw or compressed), in the out folder.
    pub image: PathBuf,
    /// The `.bmap` beside it.
    pub bmap: PathBuf,
    /// SHA-256 of the published file.
    pub download_sha256: String,
    /// Size of the raw image (see [`raw_digest`]).
    pub extract_size: u64,
    /// SHA-256 of the raw image.
    pub extract_sha256: String,
    /// The node's architecture.
    pub arch: Arch,
    /// The catalogue name of its base.
    pub base: String,
    /// The build id baked into it.
    pub build_id: String,
    /// Seconds since 1970 for `release_date` (SOURCE_DATE_EPOCH, else the base's own time).
    pub release_epoch: i64,
    /// A fleet image's member nodes (empty for a node's own image).
    pub members: Vec<String>,
}

/// Why `os_list.json` could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OsListError {
    /// An image Imager could not verify.
    #[error("{path}: the image is {size} bytes, not a multiple of 512; Raspberry Pi Imager cannot verify it (this is a bug in piimg: its images are 4 KiB aligned)")]
    NotSectorMultiple {
        /// The image.
        path: PathBuf,
        /// Its raw size.
        size: u64,
    },
    /// The published image cannot be read back to hash its raw bytes.
    #[error("{path}: cannot read the image back to hash it for os_list.json: {source}")]
    ReadBack {
        /// The image.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The existing repository file is not one this can merge with.
    #[error("{path}: not a Raspberry Pi Imager os_list.json ({why}); move it away or delete it, and build again")]
    Existing {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A base URL that Imager could not open.
    #[error(
        "--imager-base-url {url:?} is not an absolute URL; give e.g. http://192.168.1.10:8000/out"
    )]
    BaseUrl {
        /// The URL as given.
        url: String,
    },
    /// The out folder has no absolute path.
    #[error("{path}: cannot make an absolute file:// URL of the out folder: {source}")]
    OutDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file cannot be written.
    #[error(transparent)]
    Write(#[from] super::OutputError),
}

/// Where the URLs in the list point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImagerBase {
    /// `file:///…/out/<file>`.
    OutDir,
    /// `URL/<file>` (a web server serving the out folder).
    Url(String),
}

impl ImagerBase {
    /// `--imager-base-url URL`, checked: Imager opens absolute URLs only.
    pub fn url(url: &str) -> Result<ImagerBase, OsListError> {
        let trimmed = url.trim_end_matches('/');
        let scheme_ok = trimmed.split_once("://").is_some_and(|(s, rest)| {
            !s.is_empty()
                && !rest.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
        if !scheme_ok || trimmed.chars().any(char::is_whitespace) {
            return Err(OsListError::BaseUrl {
                url: url.to_string(),
            });
        }
        Ok(ImagerBase::Url(trimmed.to_string()))
    }

    fn prefix(&self, out_dir: &Path) -> Result<String, OsListError> {
        match self {
            ImagerBase::Url(u) => Ok(u.clone()),
            ImagerBase::OutDir => {
                let abs = std::fs::canonicalize(out_dir).map_err(|source| OsListError::OutDir {
                    path: out_dir.to_path_buf(),
                    source,
                })?;
                Ok(format!("file://{}", percent_encode_path(&abs)))
            }
        }
    }
}

/// The raw (extracted) size and SHA-256 of a published image: a raw file's own size and
/// digest, a compressed one's by decompressing it (every frame) as Imager will.
pub fn raw_digest(
    image: &Path,
    format: Format,
    published_sha256: &str,
) -> Result<(u64, String), OsListError> {
    let read_back = |source| OsListError::ReadBack {
        path: image.to_path_buf(),
        source,
    };
    if format == Format::Raw {
        let size = std::fs::metadata(image).map_err(read_back)?.len();
        return Ok((size, published_sha256.to_string()));
    }
    let file = std::fs::File::open(image).map_err(read_back)?;
    let file = io::BufReader::with_capacity(1 << 20, file);
    let mut reader: Box<dyn Read> = match format {
        Format::Zstd => Box::new(zstd::stream::read::Decoder::new(file).map_err(read_back)?),
        Format::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(file)),
        Format::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Format::Raw => unreachable!("handled above"),
    };
    let mut hasher = HashCount::default();
    io::copy(&mut reader, &mut hasher).map_err(read_back)?;
    Ok((hasher.len, hex::encode(hasher.sha.finalize())))
}

#[derive(Default)]
struct HashCount {
    sha: Sha256,
    len: u64,
}

impl Write for HashCount {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sha.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes (or updates) `out_dir/os_list.json` with `images` (arm64 ones; others are skipped)
/// merged with the entries already there for other nodes whose image file is still in the
/// out folder with the size recorded. Entries are sorted by name, URLs rewritten to `base`,
/// and the file is replaced atomically. Returns the file, or `None` when there is nothing
/// to list (a stale list is then removed).
pub fn write_os_list(
    out_dir: &Path,
    images: &[ImagerImage],
    base: &ImagerBase,
) -> Result<Option<PathBuf>, OsListError> {
    let path = out_dir.join(OS_LIST_FILE);
    let prefix = base.prefix(out_dir)?;
    let url_of = |file: &str| format!("{prefix}/{}", percent_encode_segment(file));

    let mut entries: Vec<(String, Map<String, Value>)> = Vec::new();
    let built: Vec<&str> = images.iter().map(|i| i.node.as_str()).collect();
    for old in existing_entries(&path)? {
        let Some(file) = old
            .get("url")
            .and_then(Value::as_str)
            .and_then(file_name_of)
        else {
            continue;
        };
        let Some(node) = node_of(&file) else {
            continue;
        };
        let on_disk = std::fs::metadata(out_dir.join(&file)).ok().map(|m| m.len());
        let recorded = old.get("image_download_size").and_then(Value::as_u64);
        if built.contains(&node.as_str()) || on_disk.is_none() || on_disk != recorded {
            continue;
        }
        let mut e = old;
        e.insert("url".into(), url_of(&file).into());
        if e.contains_key("bmap_url") {
            e.insert("bmap_url".into(), url_of(&format!("{node}.bmap")).into());
        }
        entries.push((node, e));
    }
    for img in images.iter().filter(|i| i.arch == Arch::Arm64) {
        let (extract_size, extract_sha256) = (img.extract_size, &img.extract_sha256);
        if extract_size % 512 != 0 {
            return Err(OsListError::NotSectorMultiple {
                path: img.image.clone(),
                size: extract_size,
            });
        }
        let download_size = std::fs::metadata(&img.image)
            .map_err(|source| OsListError::ReadBack {
                path: img.image.clone(),
                source,
            })?
            .len();
        let file = file_name(&img.image);
        let bmap = file_name(&img.bmap);
        let id = &img.build_id[..16.min(img.build_id.len())];
        let (name, description) = if img.members.is_empty() {
            (
                format!("piimg {}", img.node),
                format!(
                    "k3s node {} of this cluster ({}, build {id}); configures itself on first boot, no OS customisation",
                    img.node, img.base
                ),
            )
        } else {
            (
                format!("piimg fleet {}", img.node),
                format!(
                    "one card for k3s nodes {} of this cluster ({}, build {id}): each board takes its node by serial number or MAC on first boot; no OS customisation",
                    img.members.join(", "),
                    img.base
                ),
            )
        };
        let entry = json!({
            "name": name,
            "description": description,
            "icon": "",
            "url": url_of(&file),
            "extract_size": extract_size,
            "extract_sha256": extract_sha256,
            "image_download_size": download_size,
            "image_download_sha256": img.download_sha256,
            "release_date": date_of(img.release_epoch),
            "init_format": "none",
            "devices": [PI5_TAG],
            "architecture": "armv8",
            "bmap_url": url_of(&bmap),
        });
        let Value::Object(entry) = entry else {
            unreachable!("json! of an object")
        };
        entries.push((img.node.clone(), entry));
    }
    if entries.is_empty() {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(write_error(&path, e).into()),
        }
        return Ok(None);
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let doc = json!({
        "imager": {
            "devices": [{
                "name": "Raspberry Pi 5",
                "description": "the cluster's workers",
                "icon": "",
                "tags": [PI5_TAG],
                "matching_type": "exclusive",
                "architecture": "armv8",
                "default": true,
            }],
        },
        "os_list": entries.into_iter().map(|(_, e)| Value::Object(e)).collect::<Vec<_>>(),
    });
    let mut bytes =
        serde_json::to_vec_pretty(&doc).map_err(|e| write_error(&path, io::Error::other(e)))?;
    bytes.push(b'\n');
    write_atomically(&path, &bytes)?;
    Ok(Some(path))
}

fn existing_entries(path: &Path) -> Result<Vec<Map<String, Value>>, OsListError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(OsListError::Existing {
                path: path.to_path_buf(),
                why: e.to_string(),
            })
        }
    };
    let bad = |why: String| OsListError::Existing {
        path: path.to_path_buf(),
        why,
    };
    let doc: Value = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let list = doc
        .get("os_list")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no os_list array".into()))?;
    Ok(list.iter().filter_map(|e| e.as_object().cloned()).collect())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), OsListError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".os_list.json.")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| write_error(path, e))?;
    tmp.write_all(bytes).map_err(|e| write_error(path, e))?;
    tmp.as_file().sync_all().map_err(|e| write_error(path, e))?;
    tmp.persist(path).map_err(|e| write_error(path, e.error))?;
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The last path segment of a URL we wrote, decoded.
fn file_name_of(url: &str) -> Option<String> {
    let seg = url.rsplit('/').next()?;
    let decoded = percent_decode(seg)?;
    (!decoded.is_empty() && !decoded.contains('/') && !decoded.starts_with('.')).then_some(decoded)
}

/// `worker-2.img.zst` → `worker-2`.
fn node_of(file: &str) -> Option<String> {
    [".img.zst", ".img.xz", ".img.gz", ".img"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

/// The format of a published image file, by its name.
pub fn format_of_file(path: &Path) -> Option<Format> {
    let name = file_name(path);
    [Format::Zstd, Format::Xz, Format::Gzip, Format::Raw]
        .into_iter()
        .find(|f| name.ends_with(&format!(".{}", f.extension())))
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

fn percent_encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if unreserved(b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn percent_encode_path(p: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str()
        .as_bytes()
        .iter()
        .map(|&b| {
            if unreserved(b) || b == b'/' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `YYYY-MM-DD` (UTC) of seconds since 1970 (Howard Hinnant's civil_from_days).
pub fn date_of(epoch: i64) -> String {
    let z = epoch.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(951_782_400), "2000-02-29");
        assert_eq!(date_of(1_700_000_000), "2023-11-14");
        assert_eq!(date_of(-1), "1969-12-31");
    }

    #[test]
    fn names() {
        assert_eq!(node_of("worker-2.img.zst").as_deref(), Some("worker-2"));
        assert_eq!(node_of("worker-2.img").as_deref(), Some("worker-2"));
        assert_eq!(node_of("os_list.json"), None);
        assert_eq!(
            file_name_of("file:///a%20b/worker-1.img.xz").as_deref(),
            Some("worker-1.img.xz")
        );
        assert_eq!(percent_encode_path(Path::new("/a b/c")), "/a%20b/c");
    }

    fn image(dir: &Path, node: &str, size: u64, arch: Arch) -> ImagerImage {
        let image = dir.join(format!("{node}.img"));
        std::fs::write(&image, vec![0u8; size as usize]).unwrap();
        ImagerImage {
            node: node.into(),
            image,
            bmap: dir.join(format!("{node}.bmap")),
            download_sha256: "a".repeat(64),
            extract_size: size,
            extract_sha256: "b".repeat(64),
            arch,
            base: "raspios-trixie".into(),
            build_id: "c".repeat(64),
            release_epoch: 1_700_000_000,
            members: Vec::new(),
        }
    }

    fn listed(dir: &Path) -> Vec<String> {
        let doc: Value =
            serde_json::from_slice(&std::fs::read(dir.join(OS_LIST_FILE)).unwrap()).unwrap();
        doc["os_list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn merges_replaces_and_drops() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let base = ImagerBase::Url("http://h/out".into());
        let w1 = image(d, "worker-1", 1024, Arch::Arm64);
        let w2 = image(d, "worker-2", 2048, Arch::Arm64);
        let cp = image(d, "control-plane", 4096, Arch::Amd64);
        assert_eq!(
            write_os_list(d, std::slice::from_ref(&cp), &base).unwrap(),
            None
        );
        assert!(!d.join(OS_LIST_FILE).exists());
        write_os_list(d, std::slice::from_ref(&w2), &base).unwrap();
        write_os_list(d, &[w1.clone(), cp], &base).unwrap();
        assert_eq!(listed(d), ["piimg worker-1", "piimg worker-2"]);
        let both = std::fs::read(d.join(OS_LIST_FILE)).unwrap();
        // Rebuilding replaces the node's entry; the same inputs give the same bytes.
        write_os_list(d, std::slice::from_ref(&w2), &base).unwrap();
        assert_eq!(std::fs::read(d.join(OS_LIST_FILE)).unwrap(), both);
        // An image changed under the list (another size) or gone is dropped.
        std::fs::write(&w1.image, vec![0u8; 512]).unwrap();
        write_os_list(d, &[], &base).unwrap();
        assert_eq!(listed(d), ["piimg worker-2"]);
        std::fs::remove_file(&w2.image).unwrap();
        assert_eq!(write_os_list(d, &[], &base).unwrap(), None);
        assert!(!d.join(OS_LIST_FILE).exists(), "a stale list stays");
    }

    #[test]
    fn refuses_odd_sizes_and_foreign_lists() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut odd = image(d, "worker-1", 1000, Arch::Arm64);
        odd.extract_size = 1000;
        let err = write_os_list(d, &[odd], &ImagerBase::OutDir).unwrap_err();
        assert!(
            matches!(err, OsListError::NotSectorMultiple { size: 1000, .. }),
            "{err}"
        );
        assert!(!d.join(OS_LIST_FILE).exists());
        std::fs::write(d.join(OS_LIST_FILE), b"not json").unwrap();
        let ok = image(d, "worker-2", 1024, Arch::Arm64);
        let err = write_os_list(d, &[ok], &ImagerBase::OutDir).unwrap_err();
        assert!(
            err.to_string().contains("move it away or delete it"),
            "{err}"
        );
        assert_eq!(std::fs::read(d.join(OS_LIST_FILE)).unwrap(), b"not json");
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            ImagerBase::url("http://h:8000/out/").unwrap(),
            ImagerBase::Url("http://h:8000/out".into())
        );
        assert!(ImagerBase::url("out/").is_err());
        assert!(ImagerBase::url("/srv/out").is_err());
        assert!(ImagerBase::url("http://").is_err());
    }
}
