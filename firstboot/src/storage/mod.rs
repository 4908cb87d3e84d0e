//! Step 1: find the SSD, decide whether it is ours, blank or someone else's, format it only
//! when blank (or explicitly allowed by `wipe`), and mount it.
//!
//! The decision reads the disk's own bytes every boot, so it does not depend on state that a
//! re-image loses: a disk with this cluster's partition name and filesystem label is mounted
//! and never formatted. The state file only records "formatting began on disk X", so a power
//! cut between `sfdisk` and `mkfs.ext4` can be finished instead of refused.

mod classify;
mod format;
pub mod gpt;
pub mod select;
pub mod signature;

pub use classify::{classify, Verdict};

use crate::context::Ctx;
use crate::report::StorageSummary;
use crate::system::{Disk, MountedAt, SystemError};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

/// How many bytes at each end of the disk are examined.
pub const PROBE_BYTES: u64 = 1 << 20;

/// The GPT partition name that marks a disk as this cluster's (GPT names hold 36 characters).
pub fn partition_name(cluster_id: &str) -> String {
    format!("piimg-{cluster_id}").chars().take(36).collect()
}

/// Why the storage step did not finish.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No single usable disk.
    #[error(transparent)]
    Select(#[from] select::SelectError),
    /// The disk carries something that is not ours.
    #[error("{disk} left untouched: {reason}")]
    Refused {
        /// The disk.
        disk: String,
        /// Why.
        reason: String,
    },
    /// Reading or writing the disk.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The disk.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// Formatting went wrong.
    #[error("{disk}: {detail}")]
    Format {
        /// The disk.
        disk: String,
        /// What went wrong and what to do.
        detail: String,
    },
    /// The system refused.
    #[error(transparent)]
    System(#[from] SystemError),
    /// The state file.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// Reads the disk's first and last [`PROBE_BYTES`].
pub fn read_ends(disk: &Disk) -> Result<(Vec<u8>, Vec<u8>), StorageError> {
    let io = |what| {
        let path = disk.path.clone();
        move |source| StorageError::Io { path, what, source }
    };
    let mut f = std::fs::File::open(&disk.path).map_err(io("opening the disk"))?;
    let n = PROBE_BYTES.min(disk.size);
    let mut head = vec![0; n as usize];
    f.read_exact(&mut head)
        .map_err(io("reading its first MiB"))?;
    let mut tail = vec![0; n as usize];
    f.seek(SeekFrom::Start(disk.size - n))
        .map_err(io("seeking to its last MiB"))?;
    f.read_exact(&mut tail)
        .map_err(io("reading its last MiB"))?;
    Ok((head, tail))
}

/// The key the state file uses for a disk: its serial, else its path.
pub fn disk_key(disk: &Disk) -> String {
    disk.serial
        .clone()
        .unwrap_or_else(|| disk.path.display().to_string())
}

/// Runs the storage step.
pub fn prepare(ctx: &mut Ctx<'_>) -> Result<StorageSummary, StorageError> {
    let cfg = ctx.cfg;
    let disks = ctx.sys.disks()?;
    let disk = select::select(&disks, &cfg.storage.selector)?.clone();
    let name = disk.display_name();
    let key = disk_key(&disk);
    let (head, tail) = read_ends(&disk)?;
    let verdict = classify(&disk, &head, &tail, cfg, ctx.state.formatting.as_deref())?;
    tracing::info!(disk = %name, verdict = ?verdict, "storage disk examined");
    let (start, action) = match verdict {
        Verdict::Ours { start } => {
            if ctx.state.formatting.take().is_some() {
                ctx.save()?;
            }
            (start, "mounted")
        }
        Verdict::Refuse(reason) => {
            return Err(StorageError::Refused { disk: name, reason });
        }
        Verdict::Blank | Verdict::Wipe | Verdict::Resume => {
            if ctx.dry_run {
                println!("would format {name} (GPT, one ext4 partition labelled {:?}) and mount it at {}", cfg.storage.label, cfg.storage.mount_point);
                return Ok(summary(&name, "would-format", cfg));
            }
            ctx.state.formatting = Some(key);
            ctx.save()?;
            let wipe = matches!(verdict, Verdict::Wipe);
            let start = format::format(ctx, &disk, wipe)?;
            ctx.state.formatting = None;
            ctx.save()?;
            crate::crash::point("format");
            (start, "formatted")
        }
    };
    let target = ctx.paths.node(&cfg.storage.mount_point);
    if ctx.dry_run {
        println!("would mount {name} at {}", cfg.storage.mount_point);
        return Ok(summary(&name, action, cfg));
    }
    let part = ctx.sys.partition(&disk, 1, start)?;
    match ctx.sys.mounted(&part, &target)? {
        MountedAt::Nothing => {
            ctx.sys.mount_ext4(&part, &target)?;
            tracing::info!(disk = %name, mount_point = %cfg.storage.mount_point, "mounted");
        }
        MountedAt::Chosen => {
            tracing::info!(mount_point = %cfg.storage.mount_point, "already mounted");
        }
        MountedAt::Other(what) => {
            // fstab mounts by label: another disk carrying the same label (an old node's SSD
            // plugged in too) may have been mounted instead. k3s must not run on it.
            return Err(StorageError::Refused {
                disk: name,
                reason: format!(
                    "{} already has {what} mounted on it, not this disk's filesystem; remove the other disk carrying the label {:?} (or unmount it) and reboot",
                    cfg.storage.mount_point, cfg.storage.label
                ),
            });
        }
    }
    ctx.ssd = Some(part);
    // A formatted disk mounts as "mounted" on every later boot; remember the first action.
    let action = match &ctx.state.storage {
        Some(prev) if prev.disk == name && action == "mounted" => prev.action.clone(),
        _ => action.to_owned(),
    };
    Ok(summary(&name, &action, cfg))
}

fn summary(disk: &str, action: &str, cfg: &crate::config::NodeConfig) -> StorageSummary {
    StorageSummary {
        disk: disk.to_owned(),
        action: action.to_owned(),
        mount_point: cfg.storage.mount_point.clone(),
    }
}
