//! Command-line types: one args struct per verb. Logic lives in the library modules and takes
//! these typed structs, never raw argv.

use clap::{Parser, Subcommand};

/// Bakes immutable, per-node disk images for a Raspberry Pi / Ubuntu k3s cluster.
#[derive(Debug, Parser)]
#[command(name = "piimg", version, about, propagate_version = true)]
pub struct Cli {
    /// Log more (-v: debug, -vv: trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The verb to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs piimg knows.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what a disk image holds: partitions, OS, boot command line, fstab, swap, piimg build.
    Inspect(InspectArgs),
    /// Receive the nodes' signed readiness reports and show a live table of the cluster.
    Watch(WatchArgs),
}

/// `piimg inspect IMAGE [--json]`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// A raw image, or one compressed as .xz, .gz or .zst (decompressed to a temporary file).
    pub image: std::path::PathBuf,
    /// Print stable JSON instead of the human table.
    #[arg(long)]
    pub json: bool,
}

/// `piimg watch [--profiles DIR] [--listen ADDR] [--until-ready] [--timeout DURATION]`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Profiles directory (cluster.toml); not wired yet: use --nodes and --key-file.
    #[arg(long, value_name = "DIR")]
    pub profiles: Option<std::path::PathBuf>,
    /// Address to receive reports on.
    #[arg(long, value_name = "ADDR", default_value = crate::watch::DEFAULT_LISTEN)]
    pub listen: String,
    /// Exit 0 once every node is ready; non-zero on timeout or a node's failure.
    #[arg(long)]
    pub until_ready: bool,
    /// Give up after this long, e.g. `20m`, `90s`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Stop-gap until profiles are wired: the expected node names, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Stop-gap until secrets are wired: a file holding the cluster report key as hex.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<std::path::PathBuf>,
}
