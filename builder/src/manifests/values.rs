//! The cluster values a manifest template may use, and their names as `${name}` variables.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Values substituted into `manifests/` at build time.
///
/// Deserialises from the `[manifests]` table of `cluster.toml`; `cluster_name` is normally
/// filled by the profile loader from `[cluster] name` (so the name is written once), which is
/// why it may be absent in TOML. An empty value that a template uses is an error at render
/// time, never an empty string in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateValues {
    /// `${cluster_name}`: the cluster's name (e.g. `homelab`).
    #[serde(default)]
    pub cluster_name: String,
    /// `${domain}`: services are served at `<service>.<domain>` through Traefik.
    pub domain: String,
    /// `${storage_class}`: the StorageClass every PersistentVolumeClaim uses.
    #[serde(default = "default_storage_class")]
    pub storage_class: String,
    /// `${ingress_class}`: the IngressClass of k3s's bundled Traefik.
    #[serde(default = "default_ingress_class")]
    pub ingress_class: String,
    /// Extra `${name}` variables for a profile's own manifests; they may not reuse a built-in
    /// name, so a built-in value is never silently replaced.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}

fn default_storage_class() -> String {
    "local-path".to_string()
}

fn default_ingress_class() -> String {
    "traefik".to_string()
}

/// Names of the built-in variables, in the order the documentation lists them.
pub const BUILTIN_VARIABLES: [&str; 4] =
    ["cluster_name", "domain", "storage_class", "ingress_class"];

impl TemplateValues {
    /// Values for `domain` with every default filled in.
    pub fn new(cluster_name: impl Into<String>, domain: impl Into<String>) -> Self {
        TemplateValues {
            cluster_name: cluster_name.into(),
            domain: domain.into(),
            storage_class: default_storage_class(),
            ingress_class: default_ingress_class(),
            vars: BTreeMap::new(),
        }
    }

    /// The value of variable `name`, built-ins first, then `vars`.
    pub fn lookup(&self, name: &str) -> Option<&str> {
        match name {
            "cluster_name" => Some(&self.cluster_name),
            "domain" => Some(&self.domain),
            "storage_class" => Some(&self.storage_class),
            "ingress_class" => Some(&self.ingress_class),
            other => self.vars.get(other).map(String::as_str),
        }
    }

    /// Every variable name a template may use, sorted, for error messages.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = BUILTIN_VARIABLES.to_vec();
        names.extend(self.vars.keys().map(String::as_str));
        names.sort_unstable();
        names
    }

    /// A `vars` key that reuses a built-in name, if any.
    pub fn shadowed_builtin(&self) -> Option<&str> {
        self.vars
            .keys()
            .map(String::as_str)
            .find(|k| BUILTIN_VARIABLES.contains(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::ServiceSelection;

    /// The shape cluster.toml uses; the README's template table documents the same keys.
    #[derive(Deserialize)]
    struct ClusterToml {
        manifests: TemplateValues,
        #[serde(default)]
        services: ServiceSelection,
    }

    #[test]
    fn cluster_toml_tables_deserialize_with_defaults() {
        let text = r#"
[manifests]
domain = "lab.example"

[manifests.vars]
greeting = "hello"

[services]
ray = false
"#;
        let parsed: ClusterToml = toml::from_str(text).unwrap();
        assert_eq!(parsed.manifests.storage_class, "local-path");
        assert_eq!(parsed.manifests.ingress_class, "traefik");
        assert_eq!(parsed.manifests.lookup("greeting"), Some("hello"));
        assert_eq!(
            parsed.manifests.cluster_name, "",
            "filled from [cluster] name by the loader"
        );
        assert!(!parsed.services.ray && parsed.services.dask);
        assert!(
            toml::from_str::<ClusterToml>("[manifests]\ndomain = \"a\"\ndomian = \"b\"\n").is_err()
        );
    }

    #[test]
    fn vars_may_not_shadow_builtins() {
        let mut v = TemplateValues::new("c", "d");
        v.vars.insert("domain".into(), "x".into());
        assert_eq!(v.shadowed_builtin(), Some("domain"));
        assert_eq!(v.lookup("domain"), Some("d"));
    }
}
