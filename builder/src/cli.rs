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
    /// Print every edit a build would make to each selected node's image, secrets masked.
    Plan(PlanArgs),
    /// Bake each selected node's image from its base: the edits `plan` shows, then the outputs
    /// (`<node>.img[.zst|.xz|.gz]`, `.sha256`, `.bmap`, `.build.json`) in `--out`.
    Build(BuildArgs),
    /// Write an image to a card or USB disk: only its mapped blocks (from the `.bmap`), then
    /// read them back and check them; refuses mounted, system and (without --force)
    /// non-removable disks.
    Flash(FlashArgs),
    /// Manage the cluster secrets file.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Receive the nodes' signed readiness reports and show a live table of the cluster.
    Watch(WatchArgs),
}

/// `piimg inspect IMAGE [--json]`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// A raw image, one compressed as .xz, .gz or .zst, or a QCOW2 image (converted to a
    /// temporary raw file).
    pub image: std::path::PathBuf,
    /// Print stable JSON instead of the human table.
    #[arg(long)]
    pub json: bool,
}

/// Which nodes a verb works on; shared by `plan` and `build` so they select alike.
#[derive(Debug, Clone, clap::Args)]
pub struct Selection {
    /// A node profile (repeat for several).
    #[arg(
        long = "profile",
        value_name = "NAME",
        required_unless_present_any = ["all", "fleet"]
    )]
    pub profiles: Vec<String>,
    /// Every node listed in cluster.toml's `nodes`.
    #[arg(long, conflicts_with = "profiles")]
    pub all: bool,
    /// A fleet of cluster.toml (`[fleets.NAME]`): one image, `NAME.img…`, that every
    /// member's board boots, each taking its node by its profile's `match`.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["profiles", "all"])]
    pub fleet: Option<String>,
    /// The profiles folder (cluster.toml and one NAME.toml per node).
    #[arg(long = "profiles", value_name = "DIR", default_value = "profiles")]
    pub profiles_dir: std::path::PathBuf,
}

/// Overrides of the catalogue's pinned sources; shared by `plan` and `build`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SourceArgs {
    /// Base image: a catalogue name, or a path or URL replacing the profile base's file
    /// (its digest is recorded, not required to match).
    #[arg(long, value_name = "NAME|PATH|URL")]
    pub base: Option<String>,
    /// k3s binary to bake instead of the pinned one.
    #[arg(long, value_name = "PATH")]
    pub k3s_bin: Option<std::path::PathBuf>,
    /// piimg-firstboot binary to bake instead of the pinned one.
    #[arg(long, value_name = "PATH")]
    pub firstboot_bin: Option<std::path::PathBuf>,
    /// Use catalogue entries whose `sha256` has no `sha256_from` (nobody recorded where the
    /// digest was published). The download is still checked against that digest.
    #[arg(long)]
    pub allow_unverified: bool,
}

/// `piimg plan (--profile NAME… | --all) [--profiles DIR] [--json] [--base …] [--k3s-bin …] [--firstboot-bin …]`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// Which nodes.
    #[command(flatten)]
    pub selection: Selection,
    /// Source overrides.
    #[command(flatten)]
    pub sources: SourceArgs,
    /// Print JSON (an object for one node, an array for several) instead of the list.
    #[arg(long)]
    pub json: bool,
}

/// `piimg flash IMAGE DEVICE [--bmap FILE] [--force] [--direct]`.
#[derive(Debug, Clone, clap::Args)]
pub struct FlashArgs {
    /// The image, raw or compressed (.zst, .xz, .gz), as `piimg build` wrote it.
    pub image: std::path::PathBuf,
    /// The whole disk to write (/dev/sdX, /dev/mmcblkN), or a file.
    pub device: std::path::PathBuf,
    /// The block map (default: `<node>.bmap` beside the image).
    #[arg(long, value_name = "FILE")]
    pub bmap: Option<std::path::PathBuf>,
    /// Write to a disk that is not marked removable (USB SSDs often are not); mounted disks
    /// and the system's own disk are refused anyway.
    #[arg(long)]
    pub force: bool,
    /// Write with O_DIRECT (bypassing the page cache) instead of buffered writes with an
    /// fdatasync every 64 MiB; falls back, with a warning, where the kernel refuses it.
    #[arg(long)]
    pub direct: bool,
}

/// `piimg secrets …`.
#[derive(Debug, Clone, Subcommand)]
pub enum SecretsCommand {
    /// Create the cluster secrets file where cluster.toml says (mode 0600); never overwrites.
    Init(SecretsInitArgs),
    /// Print one base service's login (user and password) for its owner.
    Show(SecretsShowArgs),
}

/// `piimg secrets init [--profiles DIR]`.
#[derive(Debug, Clone, clap::Args)]
pub struct SecretsInitArgs {
    /// The profiles folder holding cluster.toml.
    #[arg(long = "profiles", value_name = "DIR", default_value = "profiles")]
    pub profiles_dir: std::path::PathBuf,
}

/// The encoding of a built image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Raw, sparse `.img` (what `dd` writes).
    Img,
    /// zstd frames, decoded by `zstd -d`, rpi-imager and bmaptool.
    Zst,
    /// xz streams (rpi-imager's favourite).
    Xz,
    /// gzip members.
    Gz,
}

/// `piimg build (--profile NAME… | --all) [--profiles DIR] [--base …] [--k3s-bin …]
/// [--firstboot-bin …] [--out DIR] [--format img|zst|xz|gz] [--offline] [--imager-base-url URL]`.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildArgs {
    /// Which nodes.
    #[command(flatten)]
    pub selection: Selection,
    /// Source overrides.
    #[command(flatten)]
    pub sources: SourceArgs,
    /// Where the outputs go (created if missing).
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: std::path::PathBuf,
    /// The image encoding.
    #[arg(long, value_enum, default_value = "zst")]
    pub format: OutputFormat,
    /// Use only what is cached; fail, naming the missing digest, instead of downloading.
    #[arg(long)]
    pub offline: bool,
    /// The download and base cache (default: $XDG_CACHE_HOME/piimg, else ~/.cache/piimg).
    #[arg(long, value_name = "DIR", env = "PIIMG_CACHE_DIR")]
    pub cache_dir: Option<std::path::PathBuf>,
    /// The URL a web server serves the out folder at, for the URLs in `os_list.json`
    /// (Raspberry Pi Imager's repository file); default: `file://` URLs of the out folder.
    #[arg(long, value_name = "URL")]
    pub imager_base_url: Option<String>,
}

/// `piimg watch [--profiles DIR] [--listen ADDR] [--until-ready] [--timeout DURATION]`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The profiles folder: the nodes to expect come from cluster.toml's `nodes`, the report
    /// key from the secrets file it names.
    #[arg(long = "profiles", value_name = "DIR", default_value = "profiles")]
    pub profiles: std::path::PathBuf,
    /// Address to receive reports on.
    #[arg(long, value_name = "ADDR", default_value = crate::watch::DEFAULT_LISTEN)]
    pub listen: String,
    /// Exit 0 once every node is ready; non-zero on timeout or a node's failure.
    #[arg(long)]
    pub until_ready: bool,
    /// Give up after this long, e.g. `20m`, `90s`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Expect these node (host) names instead of cluster.toml's, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Take the report key (hex) from this file instead of the cluster secrets file.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<std::path::PathBuf>,
}

/// `piimg secrets show SERVICE [--profiles DIR]`.
#[derive(Debug, Clone, clap::Args)]
pub struct SecretsShowArgs {
    /// The service (`minio`, `postgresql`, `mlflow`, `jupyterhub`, `monitoring`).
    pub service: String,
    /// The profiles folder holding cluster.toml.
    #[arg(long = "profiles", value_name = "DIR", default_value = "profiles")]
    pub profiles_dir: std::path::PathBuf,
}
