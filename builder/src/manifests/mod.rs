//! Base-service manifests: render `manifests/` (and a profile's own folder) into the files
//! k3s auto-deploys on the server, strictly.
//!
//! Strict means every problem is found at build time, on the workstation, with the file and
//! line named, instead of at first boot on a headless node: an unknown or empty `${variable}`,
//! YAML that does not parse, a document without `apiVersion`/`kind`/`metadata.name`, a
//! `HelmChart` whose `valuesContent` does not parse, a file name k3s cannot use as an addon
//! name, two files k3s would treat as one addon, a service on whose dependency is off.
//!
//! Layout of `manifests/`: top-level `*.yaml` files (e.g. `namespaces.yaml`) apply to every
//! cluster, except documents labelled `piimg.dev/service: NAME` whose service is off; one
//! folder per [`Service`], left out whole when the service is off. `*.md` and dot-files are
//! documentation, not manifests; anything else is refused. Credentials never pass through
//! templates: [`credentials::secret_files`] renders them as separate `Secret` files.

pub mod credentials;
mod documents;
mod error;
mod services;
mod template;
mod values;

pub use credentials::ServiceCredentials;
pub use error::ManifestError;
pub use services::{Service, ServiceSelection};
pub use template::substitute;
pub use values::{TemplateValues, BUILTIN_VARIABLES};

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Label that ties a document in a top-level file to one service, so the document is left out
/// when that service is off (used for the per-service namespaces in `namespaces.yaml`).
pub const SERVICE_LABEL: &str = "piimg.dev/service";

/// One file for k3s's auto-deploy directory.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Path below the staged manifests directory, `/`-separated (e.g. `minio/minio.yaml`).
    pub rel_path: PathBuf,
    /// The rendered content.
    pub bytes: Vec<u8>,
    /// Holds credentials: the builder writes it mode 0600 and never prints it.
    pub secret: bool,
}

impl fmt::Debug for RenderedFile {
    /// Content is left out: a secret file's bytes must never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderedFile")
            .field("rel_path", &self.rel_path)
            .field("len", &self.bytes.len())
            .field("secret", &self.secret)
            .finish()
    }
}

/// Renders the manifests of the services that are on, plus every file of `extra_dirs`
/// (a profile's own manifests folders, staged under their folder name), sorted by path.
///
/// Credentials are not part of this output; see [`render_all`].
pub fn render(
    manifests_dir: &Path,
    values: &TemplateValues,
    services: &ServiceSelection,
    extra_dirs: &[PathBuf],
) -> Result<Vec<RenderedFile>, ManifestError> {
    if let Some(name) = values.shadowed_builtin() {
        return Err(ManifestError::ShadowedVariable {
            name: name.to_string(),
        });
    }
    if let Some((service, needs)) = services.missing_dependencies().into_iter().next() {
        return Err(ManifestError::DependencyOff {
            service: service.to_string(),
            needs: needs.to_string(),
        });
    }
    let mut sources = base_sources(manifests_dir, services)?;
    for dir in extra_dirs {
        sources.extend(extra_sources(dir, &sources)?);
    }
    let mut out = Vec::new();
    for (file, rel_path) in sources {
        let text = read_text(&file)?;
        let text = template::substitute(&file, &text, values)?;
        if let Some(kept) = documents::select(&file, &text, services)? {
            out.push(RenderedFile {
                rel_path,
                bytes: kept.into_bytes(),
                secret: false,
            });
        }
    }
    finish(out)
}

/// [`render`] plus the credential `Secret`s of the services that are on: everything the
/// server image needs under its staged manifests directory.
pub fn render_all(
    manifests_dir: &Path,
    values: &TemplateValues,
    services: &ServiceSelection,
    credentials: &ServiceCredentials,
    extra_dirs: &[PathBuf],
) -> Result<Vec<RenderedFile>, ManifestError> {
    let mut out = render(manifests_dir, values, services, extra_dirs)?;
    out.extend(credentials::secret_files(credentials, services)?);
    finish(out)
}

/// Addon names of the manifests k3s ships and writes into `<data-dir>/server/manifests` at every
/// start (k3s-io/k3s `manifests/`, every release: `ccm`, `coredns`, `local-storage`,
/// `metrics-server/…`, `rolebindings`, `runtimes`, `traefik` with its `traefik-crd` chart; newer
/// ones `runtimeclass`, `snapshot-controller`, `gateway-api-crd`). The deploy controller names an
/// addon by the file's name up to its first dot, anywhere in the tree (`pkg/deploy/controller.go`
/// `basename`), so a file of ours with one of these names would be overwritten at every start,
/// or would fight the packaged addon over the same `Addon` object.
pub const K3S_PACKAGED_ADDONS: [&str; 11] = [
    "ccm",
    "coredns",
    "local-storage",
    "metrics-server",
    "rolebindings",
    "runtimes",
    "traefik",
    "traefik-crd",
    "runtimeclass",
    "snapshot-controller",
    "gateway-api-crd",
];

/// Sorts by path and refuses names k3s cannot use, would merge, or owns itself.
fn finish(mut out: Vec<RenderedFile>) -> Result<Vec<RenderedFile>, ManifestError> {
    out.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    let mut addons: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in &out {
        let addon = addon_name(&file.rel_path)?;
        if K3S_PACKAGED_ADDONS.contains(&addon.as_str()) {
            return Err(ManifestError::PackagedAddon {
                file: file.rel_path.clone(),
                addon,
            });
        }
        if let Some(first) = addons.insert(addon.clone(), file.rel_path.clone()) {
            return Err(ManifestError::DuplicateAddon {
                addon,
                first,
                second: file.rel_path.clone(),
            });
        }
    }
    Ok(out)
}

/// The k3s addon name of a manifest file: its name up to the first dot, which must be an
/// RFC 1123 label because k3s creates an `Addon` object of that name.
pub fn addon_name(rel_path: &Path) -> Result<String, ManifestError> {
    let name = rel_path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let addon = name.split('.').next().unwrap_or_default();
    let ok = !addon.is_empty()
        && addon.len() <= 63
        && addon
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !addon.starts_with('-')
        && !addon.ends_with('-');
    if ok {
        Ok(addon.to_string())
    } else {
        Err(ManifestError::BadFileName {
            file: rel_path.to_path_buf(),
            reason: format!(
                "`{addon}` (the name up to the first dot) is not a valid k3s addon name: use lowercase letters, digits and `-`, at most 63, starting and ending with a letter or digit"
            ),
        })
    }
}

/// Top-level files, then the folders of the services that are on.
fn base_sources(
    dir: &Path,
    services: &ServiceSelection,
) -> Result<Vec<(PathBuf, PathBuf)>, ManifestError> {
    if !dir.is_dir() {
        return Err(ManifestError::Missing {
            path: dir.to_path_buf(),
            fix: "point the build at the repository's `manifests/` folder".into(),
        });
    }
    let mut sources = Vec::new();
    for entry in sorted_entries(dir)? {
        let name = entry
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if entry.is_dir() {
            let Some(service) = Service::from_name(&name) else {
                return Err(ManifestError::BadFileName {
                    file: entry,
                    reason: "not a service folder: name it after a service, or move it into a profile's own manifests folder".into(),
                });
            };
            if services.is_enabled(service) {
                collect_tree(&entry, Path::new(&name), &mut sources)?;
            }
        } else if is_manifest(&entry)? {
            sources.push((entry, PathBuf::from(name)));
        }
    }
    for service in services.enabled() {
        let folder = dir.join(service.name());
        if !folder.is_dir() {
            return Err(ManifestError::Missing {
                path: folder,
                fix: format!("service {service} is on but has no folder: restore it, or set `{service} = false` under [services] in cluster.toml"),
            });
        }
    }
    Ok(sources)
}

/// A profile's own folder, staged under its folder name; it may not reuse a staged path.
fn extra_sources(
    dir: &Path,
    taken: &[(PathBuf, PathBuf)],
) -> Result<Vec<(PathBuf, PathBuf)>, ManifestError> {
    if !dir.is_dir() {
        return Err(ManifestError::Missing {
            path: dir.to_path_buf(),
            fix: "the profile names a manifests folder that does not exist: create it or remove the setting".into(),
        });
    }
    let prefix = dir.file_name().map(PathBuf::from).unwrap_or_default();
    if Service::from_name(&prefix.to_string_lossy()).is_some()
        || taken.iter().any(|(_, rel)| rel.starts_with(&prefix))
    {
        return Err(ManifestError::BadFileName {
            file: dir.to_path_buf(),
            reason: "this folder name is already used by the base manifests: rename the profile's folder".into(),
        });
    }
    let mut sources = Vec::new();
    collect_tree(dir, &prefix, &mut sources)?;
    Ok(sources)
}

fn collect_tree(
    dir: &Path,
    rel: &Path,
    out: &mut Vec<(PathBuf, PathBuf)>,
) -> Result<(), ManifestError> {
    for entry in sorted_entries(dir)? {
        let name = entry.file_name().map(PathBuf::from).unwrap_or_default();
        if entry.is_dir() {
            if !name.to_string_lossy().starts_with('.') {
                collect_tree(&entry, &rel.join(&name), out)?;
            }
        } else if is_manifest(&entry)? {
            out.push((entry, rel.join(name)));
        }
    }
    Ok(())
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let io = |source| ManifestError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    entries.sort();
    Ok(entries)
}

/// YAML is a manifest; Markdown and dot-files are documentation; anything else is refused so
/// a stray file is noticed rather than silently dropped.
fn is_manifest(path: &Path) -> Result<bool, ManifestError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if name.starts_with('.') || name.ends_with(".md") {
        return Ok(false);
    }
    if name.ends_with(".yaml") || name.ends_with(".yml") {
        return Ok(true);
    }
    Err(ManifestError::BadFileName {
        file: path.to_path_buf(),
        reason: "not a manifest: manifests are `.yaml` files (documentation may be `.md`)".into(),
    })
}

fn read_text(file: &Path) -> Result<String, ManifestError> {
    let bytes = std::fs::read(file).map_err(|source| ManifestError::Io {
        path: file.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| ManifestError::NotUtf8 {
        file: file.to_path_buf(),
    })
}
