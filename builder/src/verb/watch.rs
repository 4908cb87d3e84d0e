//! `piimg watch`: which nodes to expect and which key checks their reports, from the profiles.
//!
//! The expected names are the nodes' host names (what first boot puts in its reports), one per
//! profile in cluster.toml's `nodes`; the key is the cluster report key from the secrets file,
//! read through [`crate::secrets::load`], so a file readable by others is refused here as in
//! `build`. `--nodes` and `--key-file` replace either, for tests and ad-hoc use.

use crate::cli::WatchArgs;
use crate::profile::{self, Merge};
use crate::watch::{self, WatchSetup};
use anyhow::Context;
use std::path::Path;

/// Runs `piimg watch`.
pub fn watch(args: &WatchArgs) -> anyhow::Result<()> {
    Ok(watch::run(&setup(args)?)?)
}

/// What `watch` will do for `args`: reads cluster.toml, the node profiles and the secrets file
/// only for what `--nodes` / `--key-file` do not give.
pub fn setup(args: &WatchArgs) -> anyhow::Result<WatchSetup> {
    let nodes = if args.nodes.is_empty() {
        expected_nodes(&args.profiles)?
    } else {
        args.nodes.clone()
    };
    let key = match &args.key_file {
        Some(path) => watch::read_key_file(path)?,
        None => report_key(&args.profiles)?,
    };
    Ok(WatchSetup {
        nodes,
        key,
        listen: args.listen.clone(),
        until_ready: args.until_ready,
        timeout: args.timeout,
        dashboard: dashboard_url(&args.profiles),
    })
}

/// The "Cluster nodes" dashboard at `https://grafana.<domain>/d/piimg-cluster-nodes` when the
/// cluster runs `monitoring` (its Ingress host and the dashboard's uid, in `manifests/monitoring/`);
/// `None` when cluster.toml cannot say.
fn dashboard_url(profiles_dir: &Path) -> Option<String> {
    let lc = profile::load_cluster(profiles_dir).ok()?;
    let domain = lc.cluster.manifests.as_ref()?.domain.clone();
    lc.cluster
        .services
        .is_enabled(crate::manifests::Service::Monitoring)
        .then(|| format!("https://grafana.{domain}/d/piimg-cluster-nodes"))
}

/// The host name of every node in cluster.toml's `nodes` (a profile's `hostname`, else its
/// name), in cluster.toml's order.
pub fn expected_nodes(profiles_dir: &Path) -> anyhow::Result<Vec<String>> {
    let lc = profile::load_cluster(profiles_dir)?;
    let mut names = Vec::new();
    for node in &lc.cluster.nodes {
        let ln = profile::load_node(profiles_dir, node)?;
        let mut p = lc.cluster.defaults.clone();
        p.merge(ln.profile);
        names.push(p.hostname.unwrap_or_else(|| node.clone()));
    }
    if names.is_empty() {
        anyhow::bail!(
            "{}: `nodes` is empty, so there is no node to watch: list the node profiles there (or pass --nodes)",
            lc.file.display()
        );
    }
    Ok(names)
}

/// The cluster report key from the secrets file cluster.toml names.
pub fn report_key(profiles_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let lc = profile::load_cluster(profiles_dir)?;
    let path = profiles_dir.join(&lc.cluster.secrets);
    let secrets = crate::secrets::load(&path)?;
    watch::key_from_hex(secrets.report_key.expose()).with_context(|| {
        format!(
            "{}: report_key {}: restore the file from its backup (a new key needs every image rebuilt)",
            path.display(),
            watch::KEY_PROBLEM
        )
    })
}
