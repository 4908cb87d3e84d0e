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
use crate::spec::NodeSpec;
use std::path::PathBuf;
use std::thread::ScopedJoinHandle;

/// What to build, and where.
#[derive(Debug)]
pub struct BuildRequest {
    /// The nodes, resolved (every problem of every node reported before this).
    pub specs: Vec<NodeSpec>,
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
    let mut specs = std::mem::take(&mut req.specs);
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
        for spec in &mut specs {
            let prepared = ensure_service_credentials(spec)
                .map_err(NodeError::from)
                .and_then(|()| node::prepare(spec, req));
            if let Some(p) = publishing.take() {
                finish(p)?;
            }
            let prepared = prepared.map_err(|e| e.of(&spec.node))?;
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
