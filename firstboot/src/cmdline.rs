//! Step before storage on amd64 and Debian: make `kernel.cmdline_extra` take effect.
//!
//! The builder writes the parameters into the GRUB drop-in [`GRUB_DROPIN`], but GRUB reads
//! `/boot/grub/grub.cfg`, which only `update-grub` regenerates from `/etc/default/grub` and
//! `/etc/default/grub.d/*.cfg` (Debian's grub2-common `update-grub` → `grub-mkconfig`, which
//! sources those files). The builder edits the image without running anything in it, so first
//! boot runs `update-grub` whenever the drop-in's content differs from the one it last applied
//! (its SHA-256 is kept in the state file, saved atomically), then reboots once if the running
//! kernel lacks a parameter. At most one reboot per content: a node started directly by a
//! kernel (the QEMU e2e's `-kernel`/`-append` never reads GRUB) cannot loop.

use crate::context::Ctx;
use crate::system::SystemError;
use sha2::{Digest, Sha256};

/// The drop-in the builder writes (`builder/src/plan/os.rs`).
pub const GRUB_DROPIN: &str = "/etc/default/grub.d/90-piimg.cfg";

/// The running kernel's command line (proc(5)).
pub const PROC_CMDLINE: &str = "/proc/cmdline";

/// What the step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No drop-in: nothing to apply.
    NoDropIn,
    /// The running kernel has every parameter (after `update-grub`, if it had to run).
    Applied,
    /// A reboot was requested so the parameters take effect; the run stops here.
    Rebooting,
    /// Still missing after the one reboot for this content: the kernel is not started by
    /// GRUB (a direct kernel boot), so there is nothing more first boot can do.
    NotBootedByGrub(Vec<String>),
}

/// Why the parameters could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum CmdlineError {
    /// The drop-in exists but cannot be read.
    #[error("{path}: cannot read the GRUB drop-in: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// `update-grub` failed or is missing.
    #[error("applying {GRUB_DROPIN}: {0} (the kernel parameters take effect only once update-grub succeeds; retried on the next boot)")]
    UpdateGrub(SystemError),
    /// `systemctl reboot` failed.
    #[error("rebooting for the kernel parameters {missing:?} of {GRUB_DROPIN}: {source}")]
    Reboot {
        /// The parameters the running kernel lacks.
        missing: Vec<String>,
        /// The cause.
        source: SystemError,
    },
    /// The state file.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// The parameters a drop-in adds: the words of its `GRUB_CMDLINE_LINUX*="…"` values, without
/// the `$GRUB_CMDLINE_LINUX_DEFAULT` it extends.
pub fn parameters(dropin: &str) -> Vec<String> {
    dropin
        .lines()
        .filter_map(|l| {
            let (key, value) = l.trim().split_once('=')?;
            key.starts_with("GRUB_CMDLINE_LINUX").then_some(value)
        })
        .flat_map(|v| v.trim().trim_matches('"').split_whitespace())
        .filter(|w| !w.starts_with('$'))
        .map(str::to_owned)
        .collect()
}

/// Runs the step.
pub fn apply(ctx: &mut Ctx<'_>) -> Result<Outcome, CmdlineError> {
    let path = ctx.paths.node(GRUB_DROPIN);
    let content = match std::fs::read(&path) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::NoDropIn),
        Err(source) => {
            return Err(CmdlineError::Read {
                path: path.display().to_string(),
                source,
            })
        }
    };
    let hash = hex::encode(Sha256::digest(&content));
    if ctx.state.grub_applied.as_deref() != Some(hash.as_str()) {
        if ctx.dry_run {
            println!("would run update-grub for {GRUB_DROPIN}");
            return Ok(Outcome::Applied);
        }
        ctx.sys.update_grub().map_err(CmdlineError::UpdateGrub)?;
        ctx.state.grub_applied = Some(hash.clone());
        ctx.save()?;
    }
    let running = std::fs::read_to_string(ctx.paths.node(PROC_CMDLINE)).unwrap_or_default();
    let running: Vec<&str> = running.split_whitespace().collect();
    let missing: Vec<String> = parameters(&String::from_utf8_lossy(&content))
        .into_iter()
        .filter(|p| !running.contains(&p.as_str()))
        .collect();
    if missing.is_empty() {
        return Ok(Outcome::Applied);
    }
    if ctx.state.grub_rebooted.as_deref() == Some(hash.as_str()) {
        tracing::warn!(?missing, "kernel parameters still missing after one reboot for them: this kernel is not started by GRUB");
        return Ok(Outcome::NotBootedByGrub(missing));
    }
    if ctx.dry_run {
        println!("would reboot for the kernel parameters {missing:?}");
        return Ok(Outcome::Applied);
    }
    // Saved before asking: if the reboot brings no change, the next boot does not ask again.
    ctx.state.grub_rebooted = Some(hash);
    ctx.save()?;
    tracing::info!(?missing, "rebooting so the kernel parameters take effect");
    ctx.sys
        .reboot()
        .map_err(|source| CmdlineError::Reboot { missing, source })?;
    Ok(Outcome::Rebooting)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_the_words_the_dropin_adds() {
        let dropin = "# Written by piimg.\nGRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT cgroup_enable=memory apparmor=0\"\n";
        assert_eq!(parameters(dropin), ["cgroup_enable=memory", "apparmor=0"]);
    }
}
