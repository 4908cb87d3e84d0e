//! Walking overlay folders into a list of root-filesystem entries, so the plan stays pure.

use crate::profile::ProfileError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// One thing to create in the root filesystem, from an overlay or a profile's `[[files]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootEntry {
    /// Absolute path in the image.
    pub path: String,
    /// File, folder or symlink.
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// What a [`RootEntry`] is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A file copied from the workstation, with the digest it had when the spec was resolved.
    File {
        /// Where to read it.
        source: PathBuf,
        /// Its SHA-256.
        sha256: String,
    },
    /// Inline text from a profile.
    Text {
        /// The content.
        content: String,
    },
    /// A folder.
    Dir,
    /// A symbolic link.
    Symlink {
        /// Its target, as stored.
        target: String,
    },
}

/// Sidecar entry: `overlays/<name>.owners.toml` maps image paths to owner and mode.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Owner {
    #[serde(default)]
    uid: Option<u32>,
    #[serde(default)]
    gid: Option<u32>,
    #[serde(default)]
    mode: Option<String>,
}

/// Name of the sidecar of overlay folder `dir`.
pub fn sidecar_of(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.with_file_name(format!("{name}.owners.toml"))
}

/// Walks `dir` (an overlay) into entries sorted by path; owners are root unless the sidecar
/// says otherwise; modes come from the files (the sidecar may override them).
pub fn walk(dir: &Path, errors: &mut Vec<ProfileError>) -> Vec<RootEntry> {
    let mut owners: BTreeMap<String, Owner> = BTreeMap::new();
    let sidecar = sidecar_of(dir);
    if sidecar.is_file() {
        match std::fs::read_to_string(&sidecar)
            .map_err(|e| e.to_string())
            .and_then(|t| toml::from_str(&t).map_err(|e| e.message().to_string()))
        {
            Ok(map) => owners = map,
            Err(e) => errors.push(ProfileError::new(
                &sidecar,
                "",
                format!("not a valid owners file: {e}"),
                "write `[\"/path/in/image\"]` tables with uid, gid and mode keys only",
            )),
        }
    }
    let mut out = Vec::new();
    walk_into(dir, dir, &mut out, errors);
    out.sort_by(|a, b| a.path.cmp(&b.path));
    for entry in &mut out {
        if let Some(o) = owners.remove(&entry.path) {
            entry.uid = o.uid.unwrap_or(0);
            entry.gid = o.gid.unwrap_or(0);
            if let Some(m) = o.mode {
                match super::check::parse_mode(&m) {
                    Some(mode) => entry.mode = mode,
                    None => errors.push(ProfileError::new(
                        &sidecar,
                        format!("\"{}\".mode", entry.path),
                        format!("`{m}` is not an octal mode"),
                        "write it like \"0644\"",
                    )),
                }
            }
        }
    }
    for path in owners.keys() {
        errors.push(ProfileError::new(
            &sidecar,
            format!("\"{path}\""),
            format!("no such path in overlay {}", dir.display()),
            "correct the path (absolute, as in the image) or remove the entry",
        ));
    }
    out
}

fn walk_into(root: &Path, dir: &Path, out: &mut Vec<RootEntry>, errors: &mut Vec<ProfileError>) {
    let mut names = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect::<Vec<_>>(),
        Err(e) => {
            errors.push(ProfileError::new(
                dir,
                "",
                format!("cannot read overlay folder: {e}"),
                "check it exists and is readable",
            ));
            return;
        }
    };
    names.sort();
    for path in names {
        let rel = match path.strip_prefix(root) {
            Ok(r) => r,
            Err(_) => continue,
        };
        let name = rel.to_string_lossy();
        if name == ".keep" || name == ".gitkeep" {
            continue;
        }
        let image_path = format!("/{name}");
        let meta = match path.symlink_metadata() {
            Ok(m) => m,
            Err(e) => {
                errors.push(ProfileError::new(
                    &path,
                    "",
                    format!("cannot stat: {e}"),
                    "check permissions",
                ));
                continue;
            }
        };
        let mode = meta.permissions().mode() & 0o7777;
        let kind = if meta.file_type().is_symlink() {
            match std::fs::read_link(&path) {
                Ok(t) => EntryKind::Symlink {
                    target: t.to_string_lossy().into_owned(),
                },
                Err(e) => {
                    errors.push(ProfileError::new(
                        &path,
                        "",
                        format!("cannot read link: {e}"),
                        "check permissions",
                    ));
                    continue;
                }
            }
        } else if meta.is_dir() {
            EntryKind::Dir
        } else if meta.is_file() {
            match crate::input_file::sha256_regular(&path) {
                Ok(sha256) => EntryKind::File {
                    sha256,
                    source: path.clone(),
                },
                Err(e) => {
                    errors.push(ProfileError::new(
                        &path,
                        "",
                        format!("cannot read: {e}"),
                        "check permissions",
                    ));
                    continue;
                }
            }
        } else {
            errors.push(ProfileError::new(
                &path,
                "",
                "neither file, folder nor symlink",
                "remove it from the overlay",
            ));
            continue;
        };
        let is_dir = matches!(kind, EntryKind::Dir);
        out.push(RootEntry {
            path: image_path,
            kind,
            mode: if meta.file_type().is_symlink() {
                0o777
            } else {
                mode
            },
            uid: 0,
            gid: 0,
        });
        if is_dir {
            walk_into(root, &path, out, errors);
        }
    }
}
