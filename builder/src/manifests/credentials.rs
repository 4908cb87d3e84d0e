//! Service credentials: which services need which, generating them, and rendering them as the
//! Kubernetes `Secret`s the charts reference (`existingSecret`-style), so no chart ever falls
//! back to a default login.
//!
//! The values live in the cluster secrets file (owned by the secrets module, which stores a
//! [`ServiceCredentials`]); here they only become `Secret` documents, in files marked
//! `secret: true` that the builder writes 0600. A value can be needed in several namespaces
//! (MLflow's database password is also the PostgreSQL role's), so each Secret below names
//! where each of its keys comes from.

use super::error::ManifestError;
use super::services::{Service, ServiceSelection};
use super::RenderedFile;
use base64::Engine as _;
use rand::{CryptoRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Length of a generated password: 32 characters of `[A-Za-z0-9]`, about 190 bits, and long
/// enough for JupyterHub's shared-password admin minimum (32).
const PASSWORD_LEN: usize = 32;

/// What kind of value a credential is, which decides how it is generated.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A login name: `admin-` and 8 lowercase letters or digits (some services need names
    /// that are valid identifiers; a random one is not guessable like `admin`).
    User,
    /// A password or secret key.
    Password,
}

/// Every credential, by service, in generation order.
const CREDENTIALS: &[(Service, &[(&str, Kind)])] = &[
    (
        Service::Minio,
        &[
            ("root-user", Kind::User),
            ("root-password", Kind::Password),
            ("mlflow-secret-key", Kind::Password),
        ],
    ),
    (
        Service::Postgresql,
        &[
            ("superuser-password", Kind::Password),
            ("mlflow-password", Kind::Password),
            ("jupyterhub-password", Kind::Password),
        ],
    ),
    (Service::Mlflow, &[("admin-password", Kind::Password)]),
    (
        Service::Jupyterhub,
        &[
            ("admin-password", Kind::Password),
            ("user-password", Kind::Password),
        ],
    ),
    (
        Service::Monitoring,
        &[("grafana-admin-password", Kind::Password)],
    ),
];

/// Which services need which credentials: `(service, keys)`. Services not listed (Dask, Ray,
/// Jaeger, the OpenTelemetry Collector, Loki and Alloy) have no login; their UIs are not exposed.
pub fn required() -> &'static [(&'static str, &'static [&'static str])] {
    const REQUIRED: &[(&str, &[&str])] = &[
        (
            "minio",
            &["root-user", "root-password", "mlflow-secret-key"],
        ),
        (
            "postgresql",
            &[
                "superuser-password",
                "mlflow-password",
                "jupyterhub-password",
            ],
        ),
        ("mlflow", &["admin-password"]),
        ("jupyterhub", &["admin-password", "user-password"]),
        ("monitoring", &["grafana-admin-password"]),
    ];
    REQUIRED
}

/// One credential value. Debug and Display never show it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CredentialValue(String);

impl CredentialValue {
    /// The secret text, for the one place that must write it (a `Secret`, a login prompt).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CredentialValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Every service credential of a cluster: service name → key → value.
///
/// Serialises as nested tables (`[<table>.minio] root-user = "…"`) so the secrets file stays
/// readable; Debug lists services and keys only.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ServiceCredentials {
    services: BTreeMap<String, BTreeMap<String, CredentialValue>>,
}

impl fmt::Debug for ServiceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (service, keys) in &self.services {
            map.entry(service, &keys.keys().collect::<Vec<_>>());
        }
        map.finish()
    }
}

impl ServiceCredentials {
    /// The value of `key` for `service`.
    pub fn get(&self, service: &str, key: &str) -> Option<&str> {
        self.services
            .get(service)?
            .get(key)
            .map(CredentialValue::expose)
    }

    /// Sets one value (for the secrets module when it rotates or imports a credential).
    pub fn insert(&mut self, service: &str, key: &str, value: String) {
        self.services
            .entry(service.to_string())
            .or_default()
            .insert(key.to_string(), CredentialValue(value));
    }

    /// Generates every credential that [`required`] lists and this set lacks, keeping the
    /// others: how an existing cluster gets the login of a service added by a newer piimg.
    pub fn fill_missing<R: CryptoRng + ?Sized>(&mut self, rng: &mut R) {
        for (service, keys) in CREDENTIALS {
            for (key, kind) in *keys {
                if self.get(service.name(), key).is_none() {
                    let value = generate_value(rng, *kind);
                    self.insert(service.name(), key, value);
                }
            }
        }
    }

    /// `(service, key)` pairs that [`required`] lists and this set lacks.
    pub fn missing(&self) -> Vec<(&'static str, &'static str)> {
        required()
            .iter()
            .flat_map(|(service, keys)| keys.iter().map(move |key| (*service, *key)))
            .filter(|(service, key)| self.get(service, key).is_none())
            .collect()
    }

    /// Every value, for checks that no value leaked into a non-secret file.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.services
            .values()
            .flat_map(|keys| keys.values().map(CredentialValue::expose))
    }
}

/// Fresh, strong credentials for every service, from a cryptographic RNG: `&mut rand::rng()`
/// in `piimg secrets init`, or a seeded [`rand::rngs::StdRng`] where a test needs the same
/// values twice.
pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> ServiceCredentials {
    let mut creds = ServiceCredentials::default();
    creds.fill_missing(rng);
    creds
}

/// [`generate`] from a 32-byte seed (deterministic; for tests and reproducible fixtures).
pub fn generate_from_seed(seed: [u8; 32]) -> ServiceCredentials {
    generate(&mut rand::rngs::StdRng::from_seed(seed))
}

fn generate_value<R: CryptoRng + ?Sized>(rng: &mut R, kind: Kind) -> String {
    match kind {
        Kind::Password => (0..PASSWORD_LEN)
            .map(|_| char::from(rng.sample(rand::distr::Alphanumeric)))
            .collect(),
        Kind::User => {
            const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
            let tail: String = (0..8)
                .map(|_| char::from(LOWER[rng.random_range(0..LOWER.len())]))
                .collect();
            format!("admin-{tail}")
        }
    }
}

/// The login a person uses for `service` (`piimg secrets show SERVICE`), or `None` when the
/// service has no login or the credentials lack it.
pub fn login_for(service: &str, creds: &ServiceCredentials) -> Option<String> {
    let pair = |user: &str, password: Option<&str>| {
        password.map(|p| format!("user: {user}\npassword: {p}\n"))
    };
    match Service::from_name(service)? {
        Service::Minio => pair(
            creds.get("minio", "root-user")?,
            creds.get("minio", "root-password"),
        ),
        Service::Postgresql => pair("postgres", creds.get("postgresql", "superuser-password")),
        Service::Mlflow => pair("admin", creds.get("mlflow", "admin-password")),
        Service::Jupyterhub => {
            let admin = creds.get("jupyterhub", "admin-password")?;
            let user = creds.get("jupyterhub", "user-password")?;
            Some(format!(
                "user: admin\npassword: {admin}\nany other user name signs in with password: {user}\n"
            ))
        }
        Service::Monitoring => pair("admin", creds.get("monitoring", "grafana-admin-password")),
        _ => None,
    }
}

/// Where one key of a `Secret` takes its value from.
enum Source {
    /// A credential: (service, key).
    Credential(&'static str, &'static str),
    /// A fixed, non-secret value (a user name the charts also know).
    Literal(&'static str),
}

/// One `Secret` a chart references.
struct SecretSpec {
    /// The services that must all be on for this Secret to exist.
    needs: &'static [Service],
    /// Its namespace (one service's), which also decides its file.
    namespace: Service,
    name: &'static str,
    kind: &'static str,
    data: &'static [(&'static str, Source)],
}

/// Every Secret the manifests reference, by namespace. Keep in step with the `existingSecret`
/// names in `manifests/`; the tests check each referenced name exists here.
const SECRETS: &[SecretSpec] = &[
    SecretSpec {
        needs: &[Service::Minio],
        namespace: Service::Minio,
        name: "minio-root",
        kind: "Opaque",
        data: &[
            ("rootUser", Source::Credential("minio", "root-user")),
            ("rootPassword", Source::Credential("minio", "root-password")),
        ],
    },
    // With MinIO, whether or not MLflow is on: minio.yaml always provisions the `mlflow` user
    // and bucket, and the chart's post-install job mounts this Secret in a projected volume
    // that is not optional, so without it the job hangs and no bucket is made (issue 14.2).
    SecretSpec {
        needs: &[Service::Minio],
        namespace: Service::Minio,
        name: "minio-mlflow-user",
        kind: "Opaque",
        data: &[(
            "secretKey",
            Source::Credential("minio", "mlflow-secret-key"),
        )],
    },
    SecretSpec {
        needs: &[Service::Postgresql],
        namespace: Service::Postgresql,
        name: "postgresql-superuser",
        kind: "kubernetes.io/basic-auth",
        data: &[
            ("username", Source::Literal("postgres")),
            (
                "password",
                Source::Credential("postgresql", "superuser-password"),
            ),
        ],
    },
    SecretSpec {
        needs: &[Service::Postgresql],
        namespace: Service::Postgresql,
        name: "postgresql-mlflow",
        kind: "kubernetes.io/basic-auth",
        data: &[
            ("username", Source::Literal("mlflow")),
            (
                "password",
                Source::Credential("postgresql", "mlflow-password"),
            ),
        ],
    },
    SecretSpec {
        needs: &[Service::Postgresql],
        namespace: Service::Postgresql,
        name: "postgresql-jupyterhub",
        kind: "kubernetes.io/basic-auth",
        data: &[
            ("username", Source::Literal("jupyterhub")),
            (
                "password",
                Source::Credential("postgresql", "jupyterhub-password"),
            ),
        ],
    },
    SecretSpec {
        needs: &[Service::Mlflow],
        namespace: Service::Mlflow,
        name: "mlflow-database",
        kind: "Opaque",
        data: &[
            ("username", Source::Literal("mlflow")),
            (
                "password",
                Source::Credential("postgresql", "mlflow-password"),
            ),
        ],
    },
    SecretSpec {
        needs: &[Service::Mlflow],
        namespace: Service::Mlflow,
        name: "mlflow-s3",
        kind: "Opaque",
        data: &[
            ("AWS_ACCESS_KEY_ID", Source::Literal("mlflow")),
            (
                "AWS_SECRET_ACCESS_KEY",
                Source::Credential("minio", "mlflow-secret-key"),
            ),
        ],
    },
    SecretSpec {
        needs: &[Service::Mlflow],
        namespace: Service::Mlflow,
        name: "mlflow-admin",
        kind: "Opaque",
        data: &[
            ("username", Source::Literal("admin")),
            ("password", Source::Credential("mlflow", "admin-password")),
        ],
    },
    SecretSpec {
        needs: &[Service::Jupyterhub],
        namespace: Service::Jupyterhub,
        name: "jupyterhub-credentials",
        kind: "Opaque",
        data: &[
            (
                "admin-password",
                Source::Credential("jupyterhub", "admin-password"),
            ),
            (
                "user-password",
                Source::Credential("jupyterhub", "user-password"),
            ),
            (
                "db-password",
                Source::Credential("postgresql", "jupyterhub-password"),
            ),
        ],
    },
    SecretSpec {
        needs: &[Service::Monitoring],
        namespace: Service::Monitoring,
        name: "grafana-admin",
        kind: "Opaque",
        data: &[
            ("admin-user", Source::Literal("admin")),
            (
                "admin-password",
                Source::Credential("monitoring", "grafana-admin-password"),
            ),
        ],
    },
];

/// `(namespace, name)` of every Secret [`secret_files`] can render, for cross-checks.
pub fn secret_names() -> Vec<(&'static str, &'static str)> {
    SECRETS
        .iter()
        .map(|s| (s.namespace.namespace(), s.name))
        .collect()
}

/// The `Secret` files of the services that are on: one file per namespace,
/// `<service>/<service>-credentials.yaml`, marked `secret: true`.
pub fn secret_files(
    creds: &ServiceCredentials,
    services: &ServiceSelection,
) -> Result<Vec<RenderedFile>, ManifestError> {
    let mut by_namespace: BTreeMap<&'static str, String> = BTreeMap::new();
    for spec in SECRETS
        .iter()
        .filter(|s| s.needs.iter().all(|n| services.is_enabled(*n)))
    {
        let text = by_namespace
            .entry(spec.namespace.name())
            .or_insert_with(|| {
                "# Rendered by piimg from the cluster secrets file; do not edit, do not commit.\n"
                    .to_string()
            });
        if text.contains("kind: Secret") {
            text.push_str("---\n");
        }
        render_secret(spec, creds, text)?;
    }
    Ok(by_namespace
        .into_iter()
        .map(|(service, text)| RenderedFile {
            rel_path: PathBuf::from(service).join(format!("{service}-credentials.yaml")),
            bytes: text.into_bytes(),
            secret: true,
        })
        .collect())
}

fn render_secret(
    spec: &SecretSpec,
    creds: &ServiceCredentials,
    out: &mut String,
) -> Result<(), ManifestError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    out.push_str(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {}\n  namespace: {}\n  labels:\n    app.kubernetes.io/managed-by: piimg\n    {}: {}\ntype: {}\ndata:\n",
        spec.name,
        spec.namespace.namespace(),
        super::SERVICE_LABEL,
        spec.namespace.name(),
        spec.kind
    ));
    for (key, source) in spec.data {
        let value = match source {
            Source::Literal(text) => *text,
            Source::Credential(service, name) => {
                creds
                    .get(service, name)
                    .ok_or_else(|| ManifestError::MissingCredential {
                        service: service.to_string(),
                        key: name.to_string(),
                    })?
            }
        };
        out.push_str(&format!("  {key}: {}\n", b64.encode(value)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_credentials_cover_required_and_are_strong() {
        let creds = generate(&mut rand::rng());
        assert!(creds.missing().is_empty());
        for (service, keys) in required() {
            for key in *keys {
                let value = creds.get(service, key).unwrap();
                if key.ends_with("user") {
                    assert!(value.starts_with("admin-") && value.len() == 14);
                } else {
                    assert_eq!(value.len(), PASSWORD_LEN);
                    assert!(value.bytes().all(|b| b.is_ascii_alphanumeric()));
                }
            }
        }
        let other = generate(&mut rand::rng());
        assert_ne!(creds, other);
    }

    #[test]
    fn required_matches_the_generation_table() {
        let table: Vec<(&str, Vec<&str>)> = CREDENTIALS
            .iter()
            .map(|(s, keys)| (s.name(), keys.iter().map(|(k, _)| *k).collect()))
            .collect();
        let listed: Vec<(&str, Vec<&str>)> =
            required().iter().map(|(s, k)| (*s, k.to_vec())).collect();
        assert_eq!(table, listed);
    }

    #[test]
    fn seeded_generation_is_deterministic() {
        assert_eq!(generate_from_seed([7; 32]), generate_from_seed([7; 32]));
    }

    #[test]
    fn debug_never_shows_values() {
        let creds = generate_from_seed([1; 32]);
        let debug = format!("{creds:?}");
        for value in creds.values() {
            assert!(!debug.contains(value), "{debug}");
        }
        assert!(debug.contains("root-password"));
    }

    #[test]
    fn serde_round_trip_through_toml() {
        let creds = generate_from_seed([2; 32]);
        let text = toml::to_string(&creds).unwrap();
        assert!(text.contains("[minio]"), "{text}");
        let back: ServiceCredentials = toml::from_str(&text).unwrap();
        assert_eq!(back, creds);
    }

    #[test]
    fn login_for_services_with_and_without_login() {
        let creds = generate_from_seed([3; 32]);
        let login = login_for("minio", &creds).unwrap();
        assert!(login.contains(creds.get("minio", "root-password").unwrap()));
        assert!(login_for("ray", &creds).is_none());
        assert!(login_for("nope", &creds).is_none());
    }

    #[test]
    fn missing_credential_is_an_error_naming_service_and_key() {
        let mut creds = generate_from_seed([4; 32]);
        creds.services.get_mut("monitoring").unwrap().clear();
        let err = secret_files(&creds, &ServiceSelection::all())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("monitoring") && err.contains("grafana-admin-password"),
            "{err}"
        );
        let mut sel = ServiceSelection::all();
        sel.monitoring = false;
        sel.otel_collector = false;
        assert!(secret_files(&creds, &sel).is_ok());
    }
}
