//! Step 3: start k3s and wait, with a bounded timeout and backoff, until the node is ready:
//! the apiserver's `/readyz` (server) or the kubelet's `healthz` (agent), then the Node's
//! `Ready` condition through the API.
//!
//! The apiserver only answers authenticated TLS, so those checks go through `k3s kubectl` with
//! the node's own kubeconfig rather than an HTTP client with TLS in this binary.

use crate::config::Role;
use crate::context::Ctx;
use std::time::Duration;

/// The kubelet's local health endpoint (plain HTTP).
pub const KUBELET_HEALTHZ: &str = "http://127.0.0.1:10248/healthz";

/// How many backoff units (seconds on a node) the wait may take in all.
pub const WAIT_BUDGET_UNITS: u32 = 900;

/// Why the node did not become ready.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// systemctl refused.
    #[error("starting {unit}: {source}")]
    Start {
        /// The unit.
        unit: &'static str,
        /// The cause.
        source: crate::system::SystemError,
    },
    /// Timed out.
    #[error("k3s did not become ready in time; last check: {last} (see `journalctl -u {unit}`)")]
    Timeout {
        /// The unit.
        unit: &'static str,
        /// What the last probe said.
        last: String,
    },
}

fn kubeconfig(ctx: &Ctx<'_>) -> String {
    match ctx.cfg.role {
        Role::Server => ctx.paths.node("/etc/rancher/k3s/k3s.yaml"),
        Role::Agent => ctx.paths.node(&format!(
            "{}/agent/kubelet.kubeconfig",
            ctx.cfg.k3s.data_dir
        )),
    }
    .display()
    .to_string()
}

/// One readiness check: `Ok(())` when ready, else what is missing.
fn probe(ctx: &Ctx<'_>) -> Result<(), String> {
    let kc = kubeconfig(ctx);
    match ctx.cfg.role {
        Role::Server => {
            let out = ctx
                .sys
                .k3s(&["kubectl", "--kubeconfig", &kc, "get", "--raw", "/readyz"])
                .map_err(|e| format!("apiserver /readyz: {e}"))?;
            if out.trim() != "ok" {
                return Err(format!("apiserver /readyz says {:?}", out.trim()));
            }
        }
        Role::Agent => {
            let r = ctx
                .sys
                .http_get(&ctx.kubelet_healthz)
                .map_err(|e| format!("kubelet healthz: {e}"))?;
            if r.status != 200 {
                return Err(format!("kubelet healthz answered {}", r.status));
            }
        }
    }
    let jsonpath = r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#;
    let node = &ctx.cfg.node;
    let out = ctx
        .sys
        .k3s(&[
            "kubectl",
            "--kubeconfig",
            &kc,
            "get",
            "node",
            node,
            "-o",
            jsonpath,
        ])
        .map_err(|e| format!("node {node} Ready condition: {e}"))?;
    if out.trim() != "True" {
        return Err(format!("node {node} Ready is {:?}", out.trim()));
    }
    Ok(())
}

/// Runs the join step.
pub fn join(ctx: &Ctx<'_>) -> Result<(), JoinError> {
    let unit = ctx.cfg.role.k3s_unit();
    if ctx.dry_run {
        println!(
            "would start {unit} and wait until node {} is Ready",
            ctx.cfg.node
        );
        return Ok(());
    }
    ctx.sys
        .start_unit(unit)
        .map_err(|source| JoinError::Start { unit, source })?;
    let mut delay = 1u32;
    let mut spent = 0u32;
    loop {
        match probe(ctx) {
            Ok(()) => return Ok(()),
            Err(last) if spent >= WAIT_BUDGET_UNITS => {
                return Err(JoinError::Timeout { unit, last });
            }
            Err(last) => {
                tracing::info!(%last, "waiting for k3s");
                ctx.sys.sleep(ctx.backoff_unit * delay);
                spent += delay;
                delay = (delay * 2).min(30);
            }
        }
    }
}

/// The backoff unit used on a node.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
