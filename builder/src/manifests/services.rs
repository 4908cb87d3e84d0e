//! The base services piimg ships, and which of them a cluster turns on.
//!
//! A service is the unit a cluster owner switches on or off (`[services] ray = false`): one
//! folder under `manifests/`, one namespace, one set of credentials. The list is closed on
//! purpose, so a typo in `cluster.toml` is an error instead of a silently ignored key.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One base service; its folder under `manifests/` and its namespace carry [`Service::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    /// S3 object storage for artifacts (MinIO, last community release pinned by digest).
    Minio,
    /// CloudNativePG operator plus one PostgreSQL cluster for MLflow and JupyterHub.
    Postgresql,
    /// MLflow tracking server and model registry.
    Mlflow,
    /// JupyterHub with per-user notebook servers.
    Jupyterhub,
    /// kube-prometheus-stack: Prometheus, Grafana, node-exporter (with SoC temperature).
    Monitoring,
    /// Dask Kubernetes operator.
    Dask,
    /// KubeRay operator plus a small RayCluster.
    Ray,
    /// Jaeger tracing backend.
    Jaeger,
    /// OpenTelemetry Collector: traces to Jaeger, metrics to Prometheus.
    OtelCollector,
    /// Logs: Loki (monolithic, on the control plane) and Grafana Alloy on every node.
    Logs,
}

impl Service {
    /// Every service, in the order the README lists them.
    pub const ALL: [Service; 10] = [
        Service::Minio,
        Service::Postgresql,
        Service::Mlflow,
        Service::Jupyterhub,
        Service::Monitoring,
        Service::Dask,
        Service::Ray,
        Service::Jaeger,
        Service::OtelCollector,
        Service::Logs,
    ];

    /// The folder under `manifests/`, the namespace and the `piimg secrets show` argument.
    pub fn name(self) -> &'static str {
        match self {
            Service::Minio => "minio",
            Service::Postgresql => "postgresql",
            Service::Mlflow => "mlflow",
            Service::Jupyterhub => "jupyterhub",
            Service::Monitoring => "monitoring",
            Service::Dask => "dask",
            Service::Ray => "ray",
            Service::Jaeger => "jaeger",
            Service::OtelCollector => "otel-collector",
            Service::Logs => "logs",
        }
    }

    /// Parses [`Service::name`]; `None` for anything else.
    pub fn from_name(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The namespace the service's workloads and Secrets live in.
    pub fn namespace(self) -> &'static str {
        self.name()
    }

    /// Services this one cannot work without; turning one of them off while this one is on is
    /// refused, because the chart would crash-loop on a missing database or endpoint.
    pub fn depends_on(self) -> &'static [Service] {
        match self {
            Service::Mlflow => &[Service::Postgresql, Service::Minio],
            Service::Jupyterhub => &[Service::Postgresql],
            Service::OtelCollector => &[Service::Jaeger, Service::Monitoring],
            _ => &[],
        }
    }
}

impl Service {
    /// What a user looks for inside the service, named in `piimg plan`'s summary so the plan
    /// shows where logs, the node dashboard and traces come from; empty when the name says it.
    pub fn parts(self) -> &'static [&'static str] {
        match self {
            Service::Postgresql => &["cloudnative-pg", "postgresql 16"],
            Service::Monitoring => &[
                "prometheus",
                "alertmanager",
                "grafana",
                "node-exporter",
                "dashboard \"Cluster nodes\"",
            ],
            Service::Ray => &["kuberay", "raycluster"],
            Service::Jaeger => &["traces"],
            Service::OtelCollector => &["otlp to jaeger and prometheus"],
            Service::Logs => &["loki", "alloy"],
            Service::Minio | Service::Mlflow | Service::Jupyterhub | Service::Dask => &[],
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which services a cluster runs: the `[services]` table of `cluster.toml`.
///
/// Every service is on unless turned off, so a new service reaches existing clusters without
/// edits, and an unknown key is an error (a misspelt `rey = false` must not leave Ray on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSelection {
    /// MinIO object storage.
    #[serde(default = "on")]
    pub minio: bool,
    /// PostgreSQL (CloudNativePG).
    #[serde(default = "on")]
    pub postgresql: bool,
    /// MLflow.
    #[serde(default = "on")]
    pub mlflow: bool,
    /// JupyterHub.
    #[serde(default = "on")]
    pub jupyterhub: bool,
    /// Prometheus, Grafana and node metrics.
    #[serde(default = "on")]
    pub monitoring: bool,
    /// Dask.
    #[serde(default = "on")]
    pub dask: bool,
    /// Ray.
    #[serde(default = "on")]
    pub ray: bool,
    /// Jaeger.
    #[serde(default = "on")]
    pub jaeger: bool,
    /// OpenTelemetry Collector (`otel_collector` or `otel-collector` in TOML).
    #[serde(default = "on", alias = "otel-collector")]
    pub otel_collector: bool,
    /// Loki and Grafana Alloy.
    #[serde(default = "on")]
    pub logs: bool,
}

fn on() -> bool {
    true
}

impl Default for ServiceSelection {
    fn default() -> Self {
        ServiceSelection::all()
    }
}

impl ServiceSelection {
    /// Every service on.
    pub fn all() -> Self {
        ServiceSelection {
            minio: true,
            postgresql: true,
            mlflow: true,
            jupyterhub: true,
            monitoring: true,
            dask: true,
            ray: true,
            jaeger: true,
            otel_collector: true,
            logs: true,
        }
    }

    /// Whether `service` is on.
    pub fn is_enabled(&self, service: Service) -> bool {
        match service {
            Service::Minio => self.minio,
            Service::Postgresql => self.postgresql,
            Service::Mlflow => self.mlflow,
            Service::Jupyterhub => self.jupyterhub,
            Service::Monitoring => self.monitoring,
            Service::Dask => self.dask,
            Service::Ray => self.ray,
            Service::Jaeger => self.jaeger,
            Service::OtelCollector => self.otel_collector,
            Service::Logs => self.logs,
        }
    }

    /// Turns `service` on or off (for callers that build a selection in code, e.g. tests).
    pub fn set(&mut self, service: Service, enabled: bool) {
        let slot = match service {
            Service::Minio => &mut self.minio,
            Service::Postgresql => &mut self.postgresql,
            Service::Mlflow => &mut self.mlflow,
            Service::Jupyterhub => &mut self.jupyterhub,
            Service::Monitoring => &mut self.monitoring,
            Service::Dask => &mut self.dask,
            Service::Ray => &mut self.ray,
            Service::Jaeger => &mut self.jaeger,
            Service::OtelCollector => &mut self.otel_collector,
            Service::Logs => &mut self.logs,
        };
        *slot = enabled;
    }

    /// The services that are on, in [`Service::ALL`] order.
    pub fn enabled(&self) -> impl Iterator<Item = Service> + '_ {
        Service::ALL.into_iter().filter(|s| self.is_enabled(*s))
    }

    /// One line for `piimg plan`: the services that are on, each with its [`Service::parts`],
    /// then the ones that are off, so a turned-off service is visible rather than just absent.
    pub fn summary(&self) -> String {
        let on: Vec<String> = self
            .enabled()
            .map(|s| match s.parts() {
                [] => s.name().to_string(),
                parts => format!("{} ({})", s.name(), parts.join(", ")),
            })
            .collect();
        let off: Vec<&str> = Service::ALL
            .into_iter()
            .filter(|s| !self.is_enabled(*s))
            .map(Service::name)
            .collect();
        format!(
            "{}; off: {}",
            if on.is_empty() {
                "none".to_string()
            } else {
                on.join(", ")
            },
            if off.is_empty() {
                "none".to_string()
            } else {
                off.join(", ")
            }
        )
    }

    /// Every (service, missing dependency) pair: a service that is on and needs one that is off.
    pub fn missing_dependencies(&self) -> Vec<(Service, Service)> {
        self.enabled()
            .flat_map(|s| s.depends_on().iter().map(move |d| (s, *d)))
            .filter(|(_, d)| !self.is_enabled(*d))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_keys_mean_on_and_unknown_keys_are_refused() {
        let sel: ServiceSelection = toml::from_str("ray = false\n").unwrap();
        assert!(!sel.ray);
        assert!(sel.enabled().any(|s| s == Service::Minio));
        let both: ServiceSelection = toml::from_str("otel-collector = false\n").unwrap();
        assert!(!both.otel_collector);
        assert!(toml::from_str::<ServiceSelection>("rey = false\n").is_err());
    }

    #[test]
    fn names_round_trip() {
        for s in Service::ALL {
            assert_eq!(Service::from_name(s.name()), Some(s));
        }
    }

    #[test]
    fn summary_names_parts_and_what_is_off() {
        let mut sel = ServiceSelection::all();
        assert!(sel
            .summary()
            .starts_with("minio, postgresql (cloudnative-pg, postgresql 16),"));
        assert!(sel.summary().ends_with("logs (loki, alloy); off: none"));
        sel.ray = false;
        sel.minio = false;
        assert!(
            sel.summary().ends_with("; off: minio, ray"),
            "{}",
            sel.summary()
        );
        for s in Service::ALL {
            sel.set(s, false);
        }
        assert_eq!(
            sel.summary(),
            format!("none; off: {}", Service::ALL.map(Service::name).join(", "))
        );
    }

    #[test]
    fn dependencies_are_reported() {
        let mut sel = ServiceSelection::all();
        sel.postgresql = false;
        let missing = sel.missing_dependencies();
        assert!(missing.contains(&(Service::Mlflow, Service::Postgresql)));
        assert!(missing.contains(&(Service::Jupyterhub, Service::Postgresql)));
    }
}
