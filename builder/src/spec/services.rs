//! The base services of a node: `[manifests]` and `[services]` of cluster.toml, the manifests
//! folder, and a profile's own manifests folder, checked before anything is rendered.
//!
//! Only the server gets manifests (k3s deploys them cluster-wide from there), so a server's
//! spec carries a [`ManifestsSpec`] and an agent's carries none.

use super::check::is_rfc1123_label;
use super::resolve::Ctx;
use crate::manifests::{ServiceSelection, TemplateValues, BUILTIN_VARIABLES};
use crate::profile::{LoadedCluster, ProfileError};
use piimg_firstboot::config::Role;
use serde::Serialize;
use std::path::PathBuf;

/// Default manifests folder, relative to the profiles folder.
pub const DEFAULT_MANIFESTS_DIR: &str = "../manifests";

/// What the server's build renders into `/var/lib/piimg/manifests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestsSpec {
    /// The base-service manifests folder (`manifests_dir`, default `../manifests`).
    pub dir: PathBuf,
    /// Cluster values for `${…}`, with `cluster_name` filled from cluster.toml's `name`.
    pub values: TemplateValues,
    /// Which services run.
    pub services: ServiceSelection,
    /// The profile's own manifests folders, staged under their folder names.
    pub extra_dirs: Vec<PathBuf>,
}

/// Problems of `[manifests]` and `[services]` that do not depend on a node.
pub(super) fn check_cluster_services(lc: &LoadedCluster) -> Vec<ProfileError> {
    let c = &lc.cluster;
    let mut errs = Vec::new();
    let mut err = |key: String, problem: String, fix: &str| {
        errs.push(ProfileError::new(&lc.file, key, problem, fix))
    };
    for (service, needs) in c.services.missing_dependencies() {
        err(
            format!("services.{needs}"),
            format!("{needs} is off, but {service} is on and needs it"),
            &format!("turn {needs} back on, or also set `{service} = false` under [services]"),
        );
    }
    let Some(m) = &c.manifests else { return errs };
    if !m.cluster_name.is_empty() {
        err(
            "manifests.cluster_name".into(),
            "the cluster name is not set here".into(),
            "remove the key: `${cluster_name}` is the top-level `name` of cluster.toml",
        );
    }
    if !is_domain(&m.domain) {
        err(
            "manifests.domain".into(),
            format!("`{}` is not a DNS domain", m.domain),
            "give the domain services are served under, e.g. `lab.example` (lower-case labels joined by dots)",
        );
    }
    for (key, value) in [
        ("storage_class", &m.storage_class),
        ("ingress_class", &m.ingress_class),
    ] {
        if !is_domain(value) {
            err(
                format!("manifests.{key}"),
                format!("`{value}` is not a Kubernetes object name"),
                "use lower-case letters, digits, '-' and '.' (k3s ships `local-path` and `traefik`)",
            );
        }
    }
    for name in m.vars.keys() {
        if BUILTIN_VARIABLES.contains(&name.as_str()) {
            err(
                format!("manifests.vars.{name}"),
                format!("`{name}` would replace the built-in variable of that name"),
                "set it in [manifests] itself, or give the variable another name",
            );
        } else if !is_variable_name(name) {
            err(
                format!("manifests.vars.{name}"),
                format!("`{name}` cannot be written as `${{{name}}}` in a template"),
                "use letters, digits and '_', starting with a letter or '_'",
            );
        }
    }
    errs
}

/// The node's manifests: the server's, checked; `None` for an agent (which must not ask for any).
pub(super) fn manifests(ctx: &mut Ctx<'_>, role: Role) -> Option<ManifestsSpec> {
    let own = ctx.p.manifests.clone();
    if role == Role::Agent {
        if own.is_some() {
            let at = ctx.blame("manifests", |l| l.manifests.is_some());
            ctx.err(
                at,
                "an agent gets no manifests: k3s deploys them from the server to the whole cluster",
                "move `manifests` to the server's profile",
            );
        }
        return None;
    }
    let lc = ctx.lc;
    let c = &lc.cluster;
    let dir = lc.dir.join(
        c.manifests_dir
            .clone()
            .unwrap_or_else(|| DEFAULT_MANIFESTS_DIR.into()),
    );
    if !dir.is_dir() {
        ctx.err(
            (lc.file.clone(), "manifests_dir".into()),
            format!("no manifests folder `{}`", dir.display()),
            "point `manifests_dir` at the repository's `manifests/` folder (relative to the profiles folder)",
        );
    }
    let mut extra_dirs = Vec::new();
    if let Some(own) = own {
        let path = lc.dir.join(&own);
        if path.is_dir() {
            extra_dirs.push(path);
        } else {
            let at = ctx.blame("manifests", |l| l.manifests.is_some());
            ctx.err(
                at,
                format!("no manifests folder `{}`", path.display()),
                "create the folder (relative to the profiles folder) or remove the key",
            );
        }
    }
    let Some(values) = c.manifests.clone() else {
        ctx.err(
            (lc.file.clone(), "manifests.domain".into()),
            "the server renders the base services' manifests, and they need the cluster's domain",
            "add `[manifests]` with `domain = \"lab.example\"` (the domain services are served under)",
        );
        return None;
    };
    Some(ManifestsSpec {
        dir,
        values: TemplateValues {
            cluster_name: c.name.clone(),
            ..values
        },
        services: c.services.clone(),
        extra_dirs,
    })
}

/// Lower-case DNS labels joined by dots (`lab.example`, `local-path`).
fn is_domain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_rfc1123_label)
}

/// What `${name}` accepts: an identifier.
fn is_variable_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_and_variable_names() {
        assert!(is_domain("lab.example") && is_domain("local-path"));
        for bad in ["", "Lab.example", "lab..example", "lab.example.", "a b"] {
            assert!(!is_domain(bad), "{bad}");
        }
        assert!(is_variable_name("greeting_1") && is_variable_name("_x"));
        assert!(!is_variable_name("1x") && !is_variable_name("a-b") && !is_variable_name(""));
    }
}
