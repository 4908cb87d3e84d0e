//! Step after `join` on the server: delete from the cluster the objects of manifests a newer
//! image no longer stages, which [`crate::k3s::sync`] parked in `<data-dir>/piimg-removed/`.
//!
//! k3s itself never deletes them (see [`crate::k3s::sync`]), so a service turned off with
//! `[services] NAME = false` would keep running. Each parked file is handed to
//! `k3s kubectl delete --ignore-not-found -f FILE` (a HelmChart object deleted this way makes
//! k3s's helm-controller uninstall its release) and removed only after that succeeded: a
//! failure, or a power cut, leaves it parked and the next boot tries again. `--ignore-not-found`
//! makes a repeat after a cut between the delete and the removal harmless.

use crate::config::Role;
use crate::context::Ctx;
use crate::k3s::sync::{remove_empty_parents, staged_files, SyncError, REMOVED_DIR};
use std::path::PathBuf;

/// Why some objects could not be deleted.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// The parked folder cannot be read.
    #[error(transparent)]
    List(#[from] SyncError),
    /// `kubectl delete` failed for some files; they stay parked for the next boot.
    #[error("could not delete the objects of {} removed manifest(s), retried on the next boot (see `journalctl -u piimg-firstboot`): {}", failures.len(), failures.join("; "))]
    Delete {
        /// `FILE: why` per file.
        failures: Vec<String>,
    },
    /// A file whose objects are deleted cannot be removed.
    #[error("{path}: removing it after its objects were deleted: {source}")]
    Remove {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Runs the prune step; returns the files whose objects were deleted.
pub fn prune(ctx: &Ctx<'_>) -> Result<Vec<String>, PruneError> {
    if ctx.cfg.role != Role::Server {
        return Ok(Vec::new());
    }
    let park = ctx.paths.node(&ctx.cfg.k3s.data_dir).join(REMOVED_DIR);
    let files = staged_files(&park)?;
    let kubeconfig = ctx.paths.node("/etc/rancher/k3s/k3s.yaml");
    let kubeconfig = kubeconfig.display().to_string();
    let mut done = Vec::new();
    let mut failures = Vec::new();
    for rel in files {
        let path = park.join(&rel);
        let shown = path.display().to_string();
        if ctx.dry_run {
            println!("would delete the objects of {shown} (kubectl delete -f)");
            continue;
        }
        let args = [
            "kubectl",
            "--kubeconfig",
            &kubeconfig,
            "delete",
            "--ignore-not-found",
            "-f",
            &shown,
        ];
        match ctx.sys.k3s(&args) {
            Ok(_) => {
                std::fs::remove_file(&path).map_err(|source| PruneError::Remove {
                    path: path.clone(),
                    source,
                })?;
                remove_empty_parents(&park, &rel);
                tracing::info!(manifest = %rel, "objects of a removed manifest deleted");
                done.push(rel);
            }
            Err(e) => failures.push(format!("{shown}: {e}")),
        }
    }
    if failures.is_empty() {
        Ok(done)
    } else {
        Err(PruneError::Delete { failures })
    }
}
