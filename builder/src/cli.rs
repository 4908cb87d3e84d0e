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
