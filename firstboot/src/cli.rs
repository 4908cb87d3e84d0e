//! Command-line types of `piimg-firstboot`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// First-boot init of a piimg node: prepares the SSD, joins k3s, reports readiness.
#[derive(Debug, Parser)]
#[command(name = "piimg-firstboot", version, about)]
pub struct Cli {
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Verb>,
    /// The node configuration.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print what would be done; change nothing.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Log more (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Test seams, not product features.
    #[command(flatten)]
    pub seams: Seams,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Prepare the SSD, sync k3s data, start k3s, report (what the unit runs).
    Run,
    /// Print the saved progress and the last status.
    Status,
    /// Fleet images: take this board's node by its serial number or MAC (what
    /// `piimg-identify.service` runs before the network starts).
    Identify,
}

/// Test seams (hidden from `--help`): they replace device discovery, `mount`, systemctl, k3s
/// and delays so tests can run the real binary on file-backed disks. Never set on a node.
#[derive(Debug, clap::Args)]
pub struct Seams {
    /// Prefix for every node path (state, status, staged files, mount point, data-dir).
    #[arg(long, global = true, hide = true, default_value = "/")]
    pub root: PathBuf,
    /// TOML list of `[[disk]]` image files (path, ids, serial, size, transport, root)
    /// used instead of sysfs.
    #[arg(long, global = true, hide = true)]
    pub devices: Option<PathBuf>,
    /// Record mounts as files in this directory instead of calling mount(2).
    #[arg(long, global = true, hide = true)]
    pub fake_mount: Option<PathBuf>,
    /// The systemctl to run.
    #[arg(long, global = true, hide = true, default_value = "systemctl")]
    pub systemctl: PathBuf,
    /// The k3s binary (for kubectl).
    #[arg(long, global = true, hide = true, default_value = "/usr/local/bin/k3s")]
    pub k3s: PathBuf,
    /// The update-grub to run.
    #[arg(long, global = true, hide = true, default_value = crate::system::UPDATE_GRUB)]
    pub update_grub: PathBuf,
    /// The kubelet health URL.
    #[arg(long, global = true, hide = true, default_value = crate::k3s::join::KUBELET_HEALTHZ)]
    pub kubelet_healthz: String,
    /// The netplan to run.
    #[arg(long, global = true, hide = true, default_value = "netplan")]
    pub netplan: PathBuf,
    /// Seconds `identify` waits for a wired interface.
    #[arg(long, global = true, hide = true, default_value_t = 30)]
    pub nic_wait_secs: u64,
    /// Backoff unit in milliseconds.
    #[arg(long, global = true, hide = true, default_value_t = 1000)]
    pub backoff_ms: u64,
}
