//! The build pipeline, without the command line: resolved node specs in, published images
//! out. For each node: its service credentials made sure of, then its prepare (sources →
//! plan → apply onto a copy or overlay of the base) and publish (outputs, all or nothing).
//!
//! `piimg build` (the `verb` layer above) is an adapter over [`build`]: it resolves the selected
//! profiles into specs, fills a [`BuildRequest`] and prints each [`Built`].

mod error;
mod firstboot_bin;
mod manifests;
mod node;
mod timings;

pub use error::{BuildError, NodeError};
pub use firstboot_bin::{musl_triple, own_build, FirstbootBinError};
pub use manifests::{ensure_service_credentials, render_manifests};
pub use node::Built;

use crate::output::{Format, ImagerBase};
use crate::source::Cache;
use crate::spec::{FleetSpec, NodeSpec};
use std::path::PathBuf;
use std::thread::ScopedJoinHandle;

/// One image to build: a node's own, or a fleet's (one image every member's board boots).
#[derive(Debug)]
pub enum Job {
    /// A node's image.
    Node(Box<NodeSpec>),
    /// A fleet's image.
    Fleet(FleetSpec),
}

impl Job {
    /// The image's name (`out/NAME.img…`).
    pub fn name(&self) -> &str {
        match self {
            Job::Node(s) => &s.node,
            Job::Fleet(f) => &f.name,
        }
    }

    /// The spec whose base, k3s and first-boot binary the image is made from: the node's, or
    /// a fleet's first member's (the members share them: `spec::resolve_fleet` checks).
    pub fn sources(&self) -> &NodeSpec {
        match self {
            Job::Node(s) => s,
            Job::Fleet(f) => &f.members[0],
        }
    }

    /// Adds any service credential the secrets file lacks (see [`ensure_service_credentials`]).
    pub fn ensure_credentials(&mut self) -> Result<(), crate::secrets::SecretsError> {
        match self {
            Job::Node(s) => ensure_service_credentials(s),
            Job::Fleet(f) => f
                .members
                .iter_mut()
                .try_for_each(ensure_service_credentials),
        }
    }

    /// The plan, from the resolved sources.
    pub fn plan(&self, inputs: &crate::plan::Inputs) -> Result<crate::plan::Plan, NodeError> {
        Ok(match self {
            Job::Node(s) => crate::plan::compute(s, inputs),
            Job::Fleet(f) => crate::plan::fleet::compute(f, inputs)?,
        })
    }
}

/// What to build, and where.
#[derive(Debug)]
pub struct BuildRequest {
    /// The images, resolved (every problem of every node reported before this).
    pub jobs: Vec<Job>,
    /// Where the outputs go (created if missing); work folders are made inside it.
    pub out_dir: PathBuf,
    /// The image encoding.
    pub format: Format,
    /// Use only what is cached.
    pub offline: bool,
    /// The download and base cache.
    pub cache: Cache,
    /// Where `os_list.json`'s URLs point (a `file://` URL of `out_dir` by default).
    pub imager_base: ImagerBase,
}

/// Builds every node of the request in order, calling `done` with each as it is published.
///
/// Nodes overlap by one step: node N+1 is copied and edited while node N publishes
/// (compression, hashing, sync), so the copy of one and the compression of the other share
/// the machine. Each node still publishes all or nothing; `done` sees nodes in order, and a
/// failure stops the build once the node before it has finished publishing.
pub fn build(
    mut req: BuildRequest,
    done: &mut dyn FnMut(&Built) -> std::io::Result<()>,
) -> Result<Vec<Built>, BuildError> {
    std::fs::create_dir_all(&req.out_dir).map_err(|source| BuildError::OutDir {
        path: req.out_dir.clone(),
        source,
    })?;
    // What an interrupted run left in the folders this run owns (see `leftovers`).
    crate::leftovers::sweep(&req.out_dir, crate::leftovers::OUT);
    for dir in ["bases", "frames"] {
        crate::leftovers::sweep(&req.cache.root().join(dir), crate::leftovers::CACHE);
    }
    let mut jobs = std::mem::take(&mut req.jobs);
    let req = &req;
    let mut built = Vec::new();
    std::thread::scope(|scope| -> Result<(), BuildError> {
        let mut publishing: Option<(String, ScopedJoinHandle<'_, Result<Built, NodeError>>)> = None;
        let mut finish = |(node, handle): (String, ScopedJoinHandle<'_, _>)| {
            let b: Built = handle
                .join()
                .unwrap_or(Err(NodeError::Panicked))
                .map_err(|e| e.of(&node))?;
            // The Imager list follows what is published: updated after every node, merged
            // with the entries of other nodes' images still in the out folder.
            crate::output::write_os_list(
                &req.out_dir,
                std::slice::from_ref(&b.imager),
                &req.imager_base,
            )?;
            done(&b).map_err(BuildError::Print)?;
            built.push(b);
            Ok::<(), BuildError>(())
        };
        for job in &mut jobs {
            let prepared = job
                .ensure_credentials()
                .map_err(NodeError::from)
                .and_then(|()| node::prepare(job, req));
            if let Some(p) = publishing.take() {
                finish(p)?;
            }
            let prepared = prepared.map_err(|e| e.of(job.name()))?;
            let name = prepared.node.clone();
            publishing = Some((name, scope.spawn(move || node::publish(prepared, req))));
        }
        if let Some(p) = publishing.take() {
            finish(p)?;
        }
        Ok(())
    })?;
    Ok(built)
}
