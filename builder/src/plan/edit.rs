//! The typed edits a plan is made of, and how each reads to a human.

use super::text::{self, FstabEntry};
use super::user::UserSpec;
use crate::secrets::Secret;
use crate::spec::HostsEntry;
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;

/// Modes read best in octal: JSON carries them as `"0755"`.
fn octal<S: serde::Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:04o}"))
}

/// What a file written by the plan contains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    /// Text the plan made (shown in full by `piimg plan`).
    Text(String),
    /// Text holding a secret: masked in Display, Debug and JSON; [`Secret::expose`] to write it.
    Secret(Secret),
    /// A file from the workstation or the cache, which must still have this SHA-256 when applied.
    Source {
        /// Where to read it (for a catalogue artifact not yet fetched, its URL).
        path: PathBuf,
        /// Its SHA-256.
        sha256: String,
    },
}

impl fmt::Display for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Content::Text(t) if t.len() <= 60 && !t.trim_end().contains('\n') => {
                write!(f, "{:?}", t)
            }
            Content::Text(t) => write!(f, "text ({} lines)", t.lines().count()),
            Content::Secret(_) => write!(f, "{} (secret)", crate::secrets::MASK),
            Content::Source { path, sha256 } => write!(
                f,
                "from {} (sha256 {})",
                path.display(),
                sha256.get(..12).unwrap_or(sha256)
            ),
        }
    }
}

/// One change to an image. Boot edits work on the boot (FAT) partition, paths relative to its
/// root; the others on the root filesystem, absolute paths. Each is idempotent.
///
/// The apply stage creates missing parent folders as 0755 root:root, sets timestamps from
/// `SOURCE_DATE_EPOCH`, and replaces whatever is at a written path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "edit", rename_all = "snake_case")]
pub enum Edit {
    /// Run [`text::cmdline_ensure`] on a boot-partition file.
    EnsureCmdlineParams {
        /// `cmdline.txt` or `current/cmdline.txt`.
        file: String,
        /// Parameters that must be present.
        params: Vec<String>,
    },
    /// Run [`text::config_txt_set`] on the boot partition's `config.txt`.
    SetConfigTxt {
        /// `config.txt`.
        file: String,
        /// Section filter without brackets (`pi5`, `all`).
        section: String,
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
    /// Write a file on the boot partition.
    WriteBootFile {
        /// Path on the boot partition.
        path: String,
        /// Content.
        content: Content,
    },
    /// Write a file in the root filesystem.
    WriteFile {
        /// Absolute path.
        path: String,
        /// Content.
        content: Content,
        /// Permission bits.
        #[serde(serialize_with = "octal")]
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// Create a folder (or fix its mode and owner).
    Mkdir {
        /// Absolute path.
        path: String,
        /// Permission bits.
        #[serde(serialize_with = "octal")]
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// Create a symlink, replacing what is at `path`. Owned by root.
    Symlink {
        /// Absolute path of the link.
        path: String,
        /// Its target, stored as given.
        target: String,
    },
    /// Remove a file or symlink if present (never a folder tree).
    Remove {
        /// Absolute path.
        path: String,
    },
    /// Enable a systemd unit: the symlink `/etc/systemd/system/<wanted_by>.wants/<unit>` →
    /// `<unit_dir>/<unit>` (see [`Edit::enable_link`]).
    EnableUnit {
        /// Unit name.
        unit: String,
        /// Folder holding the unit file.
        unit_dir: String,
        /// Target that wants it.
        wanted_by: String,
    },
    /// Mask a systemd unit: `/etc/systemd/system/<unit>` → `/dev/null`, which survives
    /// package upgrades (the package's files stay untouched).
    MaskUnit {
        /// Unit name.
        unit: String,
    },
    /// Edit `/etc/fstab` with [`text::fstab_remove_swap`] then [`text::fstab_ensure`].
    EditFstab {
        /// Lines to ensure, by mount point.
        ensure: Vec<FstabEntry>,
        /// Drop swap lines.
        remove_swap: bool,
    },
    /// Edit `/etc/hosts` with [`text::hosts_set_hostname`] and [`text::hosts_ensure`].
    EditHosts {
        /// The hostname.
        hostname: String,
        /// Other names to map (the k3s server's), each on its own line.
        entries: Vec<HostsEntry>,
    },
    /// Edit `/etc/passwd`, `group`, `shadow`, `gshadow` with [`super::user::ensure_user`].
    EnsureUser(UserSpec),
}

impl Edit {
    /// For [`Edit::EnableUnit`] and [`Edit::MaskUnit`]: the (link path, target) to create.
    pub fn enable_link(&self) -> Option<(String, String)> {
        match self {
            Edit::EnableUnit {
                unit,
                unit_dir,
                wanted_by,
            } => Some((
                format!("/etc/systemd/system/{wanted_by}.wants/{unit}"),
                format!("{unit_dir}/{unit}"),
            )),
            Edit::MaskUnit { unit } => {
                Some((format!("/etc/systemd/system/{unit}"), "/dev/null".into()))
            }
            _ => None,
        }
    }

    /// For edits that transform one text file: which file (boot-relative or absolute) and
    /// the new text for `old`. None for other edits.
    pub fn transform(&self, old: &str) -> Option<(String, String)> {
        Some(match self {
            Edit::EnsureCmdlineParams { file, params } => {
                (file.clone(), text::cmdline_ensure(old, params))
            }
            Edit::SetConfigTxt {
                file,
                section,
                key,
                value,
            } => (file.clone(), text::config_txt_set(old, section, key, value)),
            Edit::EditFstab {
                ensure,
                remove_swap,
            } => {
                let mut t = if *remove_swap {
                    text::fstab_remove_swap(old)
                } else {
                    old.to_string()
                };
                for e in ensure {
                    t = text::fstab_ensure(&t, e);
                }
                ("/etc/fstab".into(), t)
            }
            Edit::EditHosts { hostname, entries } => {
                let mut t = text::hosts_set_hostname(old, hostname);
                for e in entries {
                    t = text::hosts_ensure(&t, &e.address, &e.name);
                }
                ("/etc/hosts".into(), t)
            }
            _ => return None,
        })
    }

    /// Whether the edit works on the boot partition.
    pub fn is_boot(&self) -> bool {
        matches!(
            self,
            Edit::EnsureCmdlineParams { .. }
                | Edit::SetConfigTxt { .. }
                | Edit::WriteBootFile { .. }
        )
    }
}

impl fmt::Display for Edit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Edit::EnsureCmdlineParams { file, params } => {
                write!(f, "boot:{file}: ensure parameters {}", params.join(" "))
            }
            Edit::SetConfigTxt {
                file,
                section,
                key,
                value,
            } => write!(f, "boot:{file}: [{section}] {key}={value}"),
            Edit::WriteBootFile { path, content } => write!(f, "boot:{path}: write {content}"),
            Edit::WriteFile {
                path,
                content,
                mode,
                uid,
                gid,
            } => write!(f, "{path}: write {mode:04o} {uid}:{gid} {content}"),
            Edit::Mkdir {
                path,
                mode,
                uid,
                gid,
            } => write!(f, "{path}/: folder {mode:04o} {uid}:{gid}"),
            Edit::Symlink { path, target } => write!(f, "{path}: symlink -> {target}"),
            Edit::Remove { path } => write!(f, "{path}: remove"),
            Edit::EnableUnit {
                unit, wanted_by, ..
            } => write!(f, "systemd: enable {unit} (wanted by {wanted_by})"),
            Edit::MaskUnit { unit } => write!(f, "systemd: mask {unit}"),
            Edit::EditFstab {
                ensure,
                remove_swap,
            } => {
                write!(f, "/etc/fstab:")?;
                if *remove_swap {
                    write!(f, " remove swap lines;")?;
                }
                for e in ensure {
                    write!(f, " ensure `{}`", e.line().replace('\t', " "))?;
                }
                Ok(())
            }
            Edit::EditHosts { hostname, entries } => {
                write!(f, "/etc/hosts: 127.0.1.1 {hostname}")?;
                for e in entries {
                    write!(f, "; {} {}", e.address, e.name)?;
                }
                Ok(())
            }
            Edit::EnsureUser(u) => write!(
                f,
                "user {} (uid {}, {}, groups {}), no password",
                u.name,
                u.uid,
                u.home,
                u.groups.join(",")
            ),
        }
    }
}
