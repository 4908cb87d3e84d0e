//! The server's base-service manifests for a build or a plan: credentials made sure of, then
//! `manifests/` rendered with the cluster's values and credentials.

use crate::manifests::{self, ManifestError};
use crate::plan::RenderedManifest;
use crate::secrets::{self, Secret, SecretsError};
use crate::spec::NodeSpec;

/// Renders what the node stages under `/var/lib/piimg/manifests`: every enabled service's
/// manifests, the profile's own folder and the credential Secrets, for the server; nothing
/// for an agent (k3s deploys manifests from the server to the whole cluster).
///
/// Reads the manifests folders named in the spec; the credentials come from `spec.secrets`
/// (call [`ensure_service_credentials`] first when the file may predate them).
pub fn render_manifests(spec: &NodeSpec) -> Result<Vec<RenderedManifest>, ManifestError> {
    let Some(m) = &spec.manifests else {
        return Ok(Vec::new());
    };
    let files = manifests::render_all(
        &m.dir,
        &m.values,
        &m.services,
        &spec.secrets.services,
        &m.extra_dirs,
    )?;
    Ok(files
        .into_iter()
        .map(|f| RenderedManifest {
            // `/`-separated by construction (relative paths joined from UTF-8 names).
            rel_path: f.rel_path.to_string_lossy().into_owned(),
            content: Secret::new(String::from_utf8_lossy(&f.bytes).into_owned()),
            secret: f.secret,
        })
        .collect())
}

/// Makes sure the secrets file holds every service credential a server build renders: a
/// cluster whose file predates them (or a service added by a newer piimg) gets the missing
/// ones generated into the file, once, keeping every existing value and mode 0600. Agents
/// need none. Logs the names added, never a value.
pub fn ensure_service_credentials(spec: &mut NodeSpec) -> Result<(), SecretsError> {
    if spec.manifests.is_none() || spec.secrets.services.missing().is_empty() {
        return Ok(());
    }
    let added = secrets::add_services(&spec.secrets_file)?;
    if !added.is_empty() {
        let names: Vec<String> = added.iter().map(|(s, k)| format!("{s}.{k}")).collect();
        tracing::info!(
            "{}: generated missing service credentials: {}",
            spec.secrets_file.display(),
            names.join(", ")
        );
    }
    spec.secrets = secrets::load(&spec.secrets_file)?;
    Ok(())
}
