//! Reading and creating the secrets file.

use super::secret::Secret;
use crate::manifests::{credentials, ServiceCredentials};
use serde::{Deserialize, Serialize};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Version of the secrets file format.
pub const SECRETS_SCHEMA: u32 = 1;

/// Everything secret about a cluster, plus its non-secret id.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSecrets {
    /// Must equal [`SECRETS_SCHEMA`].
    pub schema: u32,
    /// Non-secret identifier (16 hex digits); names the SSD's filesystem label so a disk from
    /// another cluster is never taken for ours.
    pub cluster_id: String,
    /// The k3s server token (short form): only the server image carries it.
    pub k3s_token: Secret,
    /// The k3s agent token: what agent images carry, so a stolen worker SD card cannot add servers.
    pub agent_token: Secret,
    /// Hex key for the HMAC that signs readiness reports.
    pub report_key: Secret,
    /// Seed of the per-node k3s passwords (see [`super::node_password`]).
    pub node_password_seed: Secret,
    /// Per-service credentials, `[services.<service>] <key> = "…"`: the logins of the base
    /// services, rendered as Kubernetes Secrets into the server image.
    #[serde(default)]
    pub services: ServiceCredentials,
}

/// Why the secrets file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The file is not there.
    #[error(
        "{path}: the cluster secrets file does not exist: create it with `piimg secrets init`"
    )]
    Missing {
        /// The secrets file.
        path: PathBuf,
    },
    /// Group or others may read it.
    #[error("{path}: the secrets file has mode {mode:04o}, readable by group or others: run `chmod 600 {path}`")]
    TooOpen {
        /// The secrets file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Not valid TOML or not our schema. The TOML error never quotes values, only keys and lines.
    #[error("{path}: not a valid secrets file ({reason}): fix the key named, or move it away and run `piimg secrets init`")]
    Invalid {
        /// The secrets file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `init` found a file already there.
    #[error("{path}: a secrets file already exists; refusing to overwrite it (every node image of the cluster depends on it). Move it away first if you really mean to start a new cluster")]
    Exists {
        /// The secrets file.
        path: PathBuf,
    },
    /// The OS failed us.
    #[error("{path}: {op}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What we were doing.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

impl SecretsError {
    /// The file at fault.
    pub fn path(&self) -> &Path {
        match self {
            SecretsError::Missing { path }
            | SecretsError::TooOpen { path, .. }
            | SecretsError::Invalid { path, .. }
            | SecretsError::Exists { path }
            | SecretsError::Io { path, .. } => path,
        }
    }

    /// The message without the leading path, split at the fix: (problem, fix).
    pub fn problem_and_fix(&self) -> (String, String) {
        let text = self.to_string();
        let prefix = format!("{}: ", self.path().display());
        let text = text.strip_prefix(&prefix).unwrap_or(&text).to_string();
        match self {
            SecretsError::Io { .. } => (text, "check the path and permissions".into()),
            SecretsError::Exists { .. } => (text, "move the existing file away first".into()),
            _ => match text.rsplit_once(": ") {
                Some((problem, fix)) => (problem.to_string(), fix.to_string()),
                None => (text, String::new()),
            },
        }
    }
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> SecretsError + 'a {
    move |source| SecretsError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Reads the secrets file, refusing one that group or others can read.
pub fn load(path: &Path) -> Result<ClusterSecrets, SecretsError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(SecretsError::Missing {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(io_err(path, "cannot read its metadata")(e)),
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretsError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = fs::read_to_string(path).map_err(io_err(path, "cannot read it"))?;
    let secrets: ClusterSecrets = toml::from_str(&text).map_err(|e| SecretsError::Invalid {
        path: path.to_path_buf(),
        // Only the message: toml's Display quotes the offending source line, which may hold a secret.
        reason: e.message().to_string(),
    })?;
    if secrets.schema != SECRETS_SCHEMA {
        return Err(SecretsError::Invalid {
            path: path.to_path_buf(),
            reason: format!(
                "schema {} where this piimg reads {SECRETS_SCHEMA}",
                secrets.schema
            ),
        });
    }
    Ok(secrets)
}

/// The form written to disk: the only place secrets are serialised with their values.
#[derive(Serialize)]
struct Plain<'a> {
    schema: u32,
    cluster_id: &'a str,
    k3s_token: &'a str,
    agent_token: &'a str,
    report_key: &'a str,
    node_password_seed: &'a str,
    services: &'a ServiceCredentials,
}

impl ClusterSecrets {
    /// Fresh secrets from the OS's random generator, with a login for every base service.
    pub fn generate() -> Result<Self, getrandom::Error> {
        Ok(ClusterSecrets {
            schema: SECRETS_SCHEMA,
            cluster_id: random_hex(8)?,
            k3s_token: Secret::new(random_hex(32)?),
            agent_token: Secret::new(random_hex(32)?),
            report_key: Secret::new(random_hex(32)?),
            node_password_seed: Secret::new(random_hex(32)?),
            services: credentials::generate(&mut rand::rng()),
        })
    }

    fn to_toml(&self) -> String {
        let plain = Plain {
            schema: self.schema,
            cluster_id: &self.cluster_id,
            k3s_token: self.k3s_token.expose(),
            agent_token: self.agent_token.expose(),
            report_key: self.report_key.expose(),
            node_password_seed: self.node_password_seed.expose(),
            services: &self.services,
        };
        let body = toml::to_string_pretty(&plain).unwrap_or_default();
        format!(
            "# piimg cluster secrets, made by `piimg secrets init`. Keep this file private (mode 0600)\n\
             # and backed up: every node image of the cluster is built from it. Never commit it.\n{body}"
        )
    }
}

fn random_hex(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(hex::encode(buf))
}

/// Creates the secrets file at `path` (mode 0600), refusing to overwrite one.
///
/// The content goes to a fresh temporary file (created exclusively, 0600 from the start, synced)
/// which is then hard-linked to the final name: the link fails if a file appeared there
/// meanwhile, so an existing secrets file is never replaced and a crash leaves no half file.
pub fn init(path: &Path) -> Result<ClusterSecrets, SecretsError> {
    if path.symlink_metadata().is_ok() {
        return Err(SecretsError::Exists {
            path: path.to_path_buf(),
        });
    }
    let secrets = ClusterSecrets::generate().map_err(|e| SecretsError::Io {
        path: path.to_path_buf(),
        op: "cannot get random bytes from the OS",
        source: io::Error::other(e.to_string()),
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(io_err(&dir, "cannot create the folder"))?;
    let tmp = temp_beside(path);
    let result = write_new(&tmp, secrets.to_toml().as_bytes()).and_then(|()| {
        fs::hard_link(&tmp, path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                SecretsError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                io_err(path, "cannot create it")(e)
            }
        })
    });
    let _ = fs::remove_file(&tmp);
    result?;
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(secrets)
}

/// Adds the service credentials the file lacks (a cluster made by an older piimg, or a
/// service added since), generated fresh; existing values are never changed. Returns the
/// `(service, key)` names added, never values. The new file replaces the old by rename (0600
/// from the start), so a crash leaves either the old or the new file, never half of one.
pub fn add_services(path: &Path) -> Result<Vec<(String, String)>, SecretsError> {
    let mut secrets = load(path)?;
    let added: Vec<(String, String)> = secrets
        .services
        .missing()
        .into_iter()
        .map(|(s, k)| (s.to_string(), k.to_string()))
        .collect();
    if added.is_empty() {
        return Ok(added);
    }
    secrets.services.fill_missing(&mut rand::rng());
    let tmp = temp_beside(path);
    let result = write_new(&tmp, secrets.to_toml().as_bytes())
        .and_then(|()| fs::rename(&tmp, path).map_err(io_err(path, "cannot replace it")));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| added)
}

fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "secrets".into());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), SecretsError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path, "cannot create a temporary file"))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io_err(path, "cannot write"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_0600_and_load_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.toml");
        let made = init(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let read = load(&path).unwrap();
        assert_eq!(read, made);
        assert_eq!(read.cluster_id.len(), 16);
        assert!(
            read.services.missing().is_empty(),
            "every service login made"
        );
        assert!(read.services.get("minio", "root-password").is_some());
    }

    #[test]
    fn init_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.toml");
        init(&path).unwrap();
        let before = fs::read(&path).unwrap();
        let err = init(&path).unwrap_err();
        assert!(matches!(err, SecretsError::Exists { .. }), "{err}");
        assert!(err.to_string().contains("refusing to overwrite"));
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[test]
    fn load_refuses_group_or_world_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.toml");
        let made = init(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("0644") && err.contains("chmod 600"), "{err}");
        assert!(!err.contains(made.k3s_token.expose()));
    }

    /// A file from before service credentials existed, with one service partly filled.
    fn old_file(path: &Path) -> ClusterSecrets {
        let made = init(path).unwrap();
        let text = fs::read_to_string(path).unwrap();
        let cut = text.find("[services").unwrap();
        let kept = made.services.get("mlflow", "admin-password").unwrap();
        fs::write(
            path,
            format!(
                "{}[services.mlflow]\nadmin-password = \"{kept}\"\n",
                &text[..cut]
            ),
        )
        .unwrap();
        load(path).unwrap()
    }

    #[test]
    fn add_services_fills_missing_and_keeps_existing_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.toml");
        let old = old_file(&path);
        assert!(!old.services.missing().is_empty());
        let added = add_services(&path).unwrap();
        assert!(added.contains(&("minio".to_string(), "root-password".to_string())));
        assert!(!added.iter().any(|(s, _)| s == "mlflow"), "{added:?}");
        let read = load(&path).unwrap();
        assert!(read.services.missing().is_empty());
        assert_eq!(
            read.services.get("mlflow", "admin-password"),
            old.services.get("mlflow", "admin-password")
        );
        assert_eq!(read.k3s_token, old.k3s_token);
        assert_eq!(read.cluster_id, old.cluster_id);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let before = fs::read(&path).unwrap();
        assert!(add_services(&path).unwrap().is_empty());
        assert_eq!(
            fs::read(&path).unwrap(),
            before,
            "nothing missing: untouched"
        );
    }

    #[test]
    fn debug_and_json_never_show_service_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let made = init(&dir.path().join("secrets.toml")).unwrap();
        let shown = format!("{made:?}{}", serde_json::to_string(&made).unwrap());
        for value in made.services.values() {
            assert!(!shown.contains(value), "{shown}");
        }
    }

    #[test]
    fn invalid_file_error_quotes_no_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.toml");
        fs::write(&path, "schema = 1\nk3s_token = \"topsecretvalue\nbroken").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(!err.contains("topsecretvalue"), "{err}");
    }
}
