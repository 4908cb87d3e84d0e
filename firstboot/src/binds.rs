//! Step after `storage`: put the kubelet's data on the SSD too, by bind mounts.
//!
//! k3s's `data-dir` is on the SSD, but the kubelet's `root-dir` (emptyDir and projected
//! volumes, pod sandboxes) stays at the kubelet's default `/var/lib/kubelet`: k3s passes
//! `--root-dir` only in rootless mode (k3s-io/k3s `pkg/agent/config/config.go`), and the
//! kubelet writes container logs under `/var/log/pods` whatever its root-dir. Both would wear
//! out and fill the SD card, so every boot, after the SSD is mounted and before k3s starts,
//! `<mount_point>/kubelet` is bind-mounted on `/var/lib/kubelet` and `<mount_point>/pod-logs`
//! on `/var/log/pods`.
//!
//! Binds are not kept across boots, so this runs every boot. A bind already there from the right
//! folder of the SSD is left alone; anything else mounted there is refused, and k3s is not
//! started on top of it. A bind of a folder of a shared mount joins the source's peer group
//! (kernel `Documentation/filesystems/sharedsubtree.rst`; unverified on the bases), so mounts
//! the kubelet makes below it still propagate.

use crate::context::Ctx;
use crate::system::{MountedAt, SystemError};

/// Folder of the SSD, bind-mounted path on the node.
pub const BINDS: &[(&str, &str)] = &[
    ("kubelet", "/var/lib/kubelet"),
    ("pod-logs", "/var/log/pods"),
];

/// Why the kubelet's folders could not be put on the SSD.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The storage step did not say where the SSD is.
    #[error("the SSD is not mounted, so {0} cannot be put on it")]
    NoSsd(String),
    /// Something else is mounted where a bind goes.
    #[error("{target} already has {what} mounted on it, not {folder}; unmount it (or remove what mounts it) and reboot: k3s is not started on top of it")]
    Foreign {
        /// The mount point.
        target: String,
        /// What is there.
        what: String,
        /// The folder of the SSD that belongs there.
        folder: String,
    },
    /// The system refused.
    #[error(transparent)]
    System(#[from] SystemError),
}

/// Runs the binds step; returns the targets bound in this run.
pub fn bind(ctx: &Ctx<'_>) -> Result<Vec<String>, BindError> {
    let mount_point = &ctx.cfg.storage.mount_point;
    let Some(ssd) = ctx.ssd.as_ref() else {
        if ctx.dry_run {
            for (sub, target) in BINDS {
                println!("would bind-mount {mount_point}/{sub} on {target}");
            }
            return Ok(Vec::new());
        }
        return Err(BindError::NoSsd(BINDS[0].1.into()));
    };
    let mut bound = Vec::new();
    for (sub, target) in BINDS {
        let from = ctx.paths.node(&format!("{mount_point}/{sub}"));
        let to = ctx.paths.node(target);
        let subdir = format!("/{sub}");
        match ctx.sys.mounted_bind(ssd, &subdir, &to)? {
            MountedAt::Chosen => tracing::info!(target, "already bind-mounted"),
            MountedAt::Other(what) => {
                return Err(BindError::Foreign {
                    target: (*target).into(),
                    what,
                    folder: format!("{mount_point}/{sub}"),
                })
            }
            MountedAt::Nothing if ctx.dry_run => {
                println!("would bind-mount {mount_point}/{sub} on {target}");
            }
            MountedAt::Nothing => {
                ctx.sys.bind_mount(ssd, &from, &subdir, &to)?;
                tracing::info!(target, "bind-mounted from the SSD");
                bound.push((*target).into());
            }
        }
    }
    Ok(bound)
}
