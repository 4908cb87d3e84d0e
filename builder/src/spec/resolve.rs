//! [`resolve`]: loads the layers, runs every check and assembles the [`NodeSpec`].

use super::cluster_checks::check_cluster;
use super::{
    entries, node_checks, services, EntryKind, NodeSpec, Overrides, SpecErrors, StorageSpec,
};
use crate::profile::{self, LoadedCluster, LoadedNode, Merge, NodeProfile, ProfileError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// What the checks share: the loaded files, the merged profile, and the problems found so far.
pub(super) struct Ctx<'a> {
    /// cluster.toml.
    pub lc: &'a LoadedCluster,
    /// The node's profile chain.
    pub ln: &'a LoadedNode,
    /// `[defaults]` with the chain merged on top.
    pub p: NodeProfile,
    /// Every problem found.
    pub errors: Vec<ProfileError>,
}

impl Ctx<'_> {
    /// Which file set `key`: the last profile layer for which `has` holds, else cluster.toml's
    /// `[defaults]`, else (nobody set it) the node's own file, where it belongs.
    pub fn blame(&self, key: &str, has: impl Fn(&NodeProfile) -> bool) -> (PathBuf, String) {
        for (file, layer) in self.ln.files.iter().zip(&self.ln.layers).rev() {
            if has(layer) {
                return (file.clone(), key.to_string());
            }
        }
        if has(&self.lc.cluster.defaults) {
            return (self.lc.file.clone(), format!("defaults.{key}"));
        }
        let own = self.ln.files.last().cloned().unwrap_or_default();
        (own, key.to_string())
    }

    /// Records a problem at `(file, key)`.
    pub fn err(&mut self, (file, key): (PathBuf, String), problem: impl Into<String>, fix: &str) {
        self.errors.push(ProfileError::new(file, key, problem, fix));
    }
}

/// Resolves node `node` from the profiles in `profiles_dir`.
///
/// Reads cluster.toml, the node's profile chain, the server's profile (for its k3s version),
/// the secrets file and the overlays; writes nothing. Returns every problem found.
pub fn resolve(
    profiles_dir: &Path,
    node: &str,
    overrides: &Overrides,
) -> Result<NodeSpec, SpecErrors> {
    let lc = profile::load_cluster(profiles_dir).map_err(|e| SpecErrors(vec![e]))?;
    let mut errors = check_cluster(&lc);
    let ln = match profile::load_node(profiles_dir, node) {
        Ok(ln) => ln,
        Err(e) => {
            errors.push(e);
            return Err(SpecErrors(errors));
        }
    };
    let mut p = lc.cluster.defaults.clone();
    p.merge(ln.profile.clone());
    let mut ctx = Ctx {
        lc: &lc,
        ln: &ln,
        p,
        errors,
    };
    let spec = assemble(&mut ctx, overrides);
    match spec {
        Some(spec) if ctx.errors.is_empty() => Ok(spec),
        _ => Err(SpecErrors(ctx.errors)),
    }
}

/// Runs every check; the spec when nothing essential is missing.
fn assemble(ctx: &mut Ctx<'_>, overrides: &Overrides) -> Option<NodeSpec> {
    let lc = ctx.lc;
    let c = &lc.cluster;
    let (hostname, role) = node_checks::identity(ctx);
    let board = node_checks::board(ctx);
    let base = node_checks::base(ctx, overrides);
    let k3s = node_checks::k3s(ctx, base.as_ref(), role, overrides);
    let network = node_checks::network(ctx);
    let (user, ssh_keys, timezone) = node_checks::access(ctx);
    let storage = node_checks::storage(ctx);
    let report_url = node_checks::report_url(ctx);
    let kernel = node_checks::kernel(ctx);
    let manifests = services::manifests(ctx, role);
    let secrets_file = lc.dir.join(&c.secrets);
    let secrets = match crate::secrets::load(&secrets_file) {
        Ok(s) => Some(s),
        Err(e) => {
            let (problem, fix) = e.problem_and_fix();
            ctx.errors
                .push(ProfileError::new(e.path(), "", problem, fix));
            None
        }
    };
    let root_entries = entries::root_entries(ctx, role);
    // A pinned first-boot binary is used only when no --firstboot-bin replaces it.
    if let (Some(b), None) = (&base, &overrides.firstboot_bin) {
        if let Some(a) = c.firstboot.get(&b.arch) {
            let from = a.sha256_from.clone();
            node_checks::require_provenance(ctx, overrides, format!("firstboot.{}", b.arch), &from);
        }
    }

    let (base, k3s, storage, secrets) = (base?, k3s?, storage?, secrets?);
    let mut digest = Sha256::new();
    digest.update(lc.sha256.as_bytes());
    digest.update(ctx.ln.sha256.as_bytes());
    // Overlays and extra files are profile input too: their change must change the build id.
    // Hashed by content, not by where the files sit, so another checkout gives the same id.
    for e in &root_entries {
        let what = match &e.kind {
            EntryKind::File { sha256, .. } => format!("file {sha256}"),
            EntryKind::Text { content } => format!("text {}", hex::encode(Sha256::digest(content))),
            EntryKind::Dir => "dir".into(),
            EntryKind::Symlink { target } => format!("symlink {target}"),
        };
        digest.update(format!(
            "{}\0{what}\0{:o} {} {}\n",
            e.path, e.mode, e.uid, e.gid
        ));
    }
    let mut profile_files = vec![lc.file.clone()];
    profile_files.extend(ctx.ln.files.iter().cloned());
    Some(NodeSpec {
        cluster: c.name.clone(),
        storage: StorageSpec {
            selector: storage.0,
            mount_point: storage.1,
            label: format!(
                "piimg-{}",
                secrets.cluster_id.get(..8).unwrap_or(&secrets.cluster_id)
            ),
            wipe: storage.2,
        },
        cluster_id: secrets.cluster_id.clone(),
        node: ctx.ln.name.clone(),
        hostname,
        board,
        role,
        firstboot_artifact: c.firstboot.get(&base.arch).cloned(),
        base,
        k3s,
        network,
        user,
        ssh_keys,
        timezone,
        report_url,
        kernel,
        root_entries,
        manifests,
        secrets,
        secrets_file,
        profiles_dir: lc.dir.clone(),
        profile_files,
        profile_sha256: hex::encode(digest.finalize()),
        overrides: overrides.clone(),
    })
}

/// The server's k3s version, from its profile chain (or the cluster default).
pub(super) fn server_k3s_version(ctx: &mut Ctx<'_>) -> Option<String> {
    let p = server_profile(ctx)?;
    Some(
        p.k3s_version
            .unwrap_or_else(|| ctx.lc.cluster.k3s.version.clone()),
    )
}

/// The server's merged profile (defaults under its chain); the node's own when it is the
/// server. A server profile that does not load is reported once, by the caller that needs it.
pub(super) fn server_profile(ctx: &mut Ctx<'_>) -> Option<NodeProfile> {
    let c = &ctx.lc.cluster;
    if c.server.node == ctx.ln.name {
        return Some(ctx.p.clone());
    }
    match profile::load_node(&ctx.lc.dir, &c.server.node) {
        Ok(server) => {
            let mut p = c.defaults.clone();
            p.merge(server.profile);
            Some(p)
        }
        Err(e) => {
            if !ctx.errors.contains(&e) {
                ctx.errors.push(e);
            }
            None
        }
    }
}
