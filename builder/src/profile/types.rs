//! Serde types mirroring the profile files. Keys and their merge rules are documented here,
//! on the fields, and nowhere else.

use crate::manifests::{ServiceSelection, TemplateValues};
use piimg_firstboot::config::{DiskSelector, Role};
use piimg_firstboot::fleet::BoardMatch;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A CPU architecture a base image is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// 64-bit ARM (Raspberry Pi 5).
    Arm64,
    /// x86-64 (the control plane).
    Amd64,
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Arch::Arm64 => "arm64",
            Arch::Amd64 => "amd64",
        })
    }
}

/// The OS family of a base image; decides which edits the plan makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Raspberry Pi OS (Debian bookworm, trixie).
    Raspios,
    /// Ubuntu Server (for Raspberry Pi on arm64, cloud image on amd64).
    Ubuntu,
    /// Plain Debian with systemd, booted by its own bootloader (or directly by a VM): what the
    /// QEMU boot test bakes, and a control plane on a PC.
    Debian,
}

/// A pinned download: where it is and what its SHA-256 must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// `https://…` URL (or a path, relative to the profiles folder).
    pub url: String,
    /// Lower-case hex SHA-256 of the file as downloaded.
    pub sha256: String,
    /// Where that digest was published (the release's checksum file), so a reader can check
    /// it; an entry without it is refused unless the build says `--allow-unverified`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256_from: Option<String>,
}

/// One entry of the base-image catalogue (`[bases.NAME]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseEntry {
    /// Where the (possibly compressed) image is downloaded from.
    pub url: String,
    /// SHA-256 of the download.
    pub sha256: String,
    /// Where that digest was published (see [`Artifact::sha256_from`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256_from: Option<String>,
    /// `raspios` or `ubuntu`.
    pub family: Family,
    /// `bookworm`, `trixie` for Raspberry Pi OS; `24.04`, `25.10`… for Ubuntu.
    pub release: String,
    /// `arm64` or `amd64`.
    pub arch: Arch,
}

/// `[server]` in cluster.toml: where agents join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// `https://host:6443` that agents join.
    pub url: String,
    /// The profile of the server node (its k3s version bounds the agents').
    pub node: String,
    /// The IPv4 address agents reach the server at, when `url` names a host: every node's
    /// `/etc/hosts` maps the name to it. Defaults to the server profile's static address.
    /// Needed because k3s is a static musl binary (k3s-io/k3s `Dockerfile.dapper`,
    /// `scripts/build`): it resolves names only through `/etc/hosts` and DNS, never mDNS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// `[k3s]` in cluster.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K3sSection {
    /// The version nodes get unless their profile says `k3s_version`.
    pub version: String,
    /// Pinned binaries: `[k3s.releases."v1.31.4+k3s1".arm64]` url + sha256.
    pub releases: BTreeMap<String, BTreeMap<Arch, Artifact>>,
}

/// `cluster.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// Cluster name (RFC 1123 label).
    pub name: String,
    /// Every node profile of the cluster, in build order (`piimg build --all`).
    pub nodes: Vec<String>,
    /// The secrets file, relative to the profiles folder.
    pub secrets: PathBuf,
    /// Folder of overlays, relative to the profiles folder (default `../overlays`).
    #[serde(default)]
    pub overlays_dir: Option<PathBuf>,
    /// Folder of the base-service manifests, relative to the profiles folder (default
    /// `../manifests`). Only the server's build reads it.
    #[serde(default)]
    pub manifests_dir: Option<PathBuf>,
    /// Where agents join.
    pub server: ServerSection,
    /// Pinned k3s releases.
    pub k3s: K3sSection,
    /// Pinned piimg-firstboot binaries per arch (`[firstboot.arm64]`), optional.
    #[serde(default)]
    pub firstboot: BTreeMap<Arch, Artifact>,
    /// Base-image catalogue.
    pub bases: BTreeMap<String, BaseEntry>,
    /// Defaults for every node: the same keys as a node profile, merged underneath it.
    #[serde(default)]
    pub defaults: NodeProfile,
    /// `[manifests]`: the cluster values the base-service templates use (`domain` required
    /// when a server is built; `cluster_name` comes from `name`, never from this table).
    #[serde(default)]
    pub manifests: Option<TemplateValues>,
    /// `[services]`: which base services run; every service is on unless set to `false`.
    #[serde(default)]
    pub services: ServiceSelection,
    /// `[fleets.NAME]`: agent nodes baked into one image any of their boards boots
    /// (`piimg build --fleet NAME`); each board takes its node by its profile's `match`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fleets: BTreeMap<String, FleetSection>,
}

/// `[fleets.NAME]` in cluster.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSection {
    /// The member nodes (agent profiles listed in `nodes`, each with its own `match`).
    pub nodes: Vec<String>,
}

/// Static IPv4 set-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticAddress {
    /// `192.168.1.12/24`.
    pub address: String,
    /// Default gateway.
    pub gateway: String,
    /// DNS servers.
    #[serde(default)]
    pub dns: Vec<String>,
}

/// `[network]`: DHCP unless `static` is given. Replaced as a whole by a later layer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkProfile {
    /// Interface name (`eth0` on a Pi); default: the first wired interface.
    #[serde(default)]
    pub interface: Option<String>,
    /// Static address; absent means DHCP.
    #[serde(default, rename = "static")]
    pub static_address: Option<StaticAddress>,
}

/// `[storage]`: the SSD. Merged key by key.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageProfile {
    /// Which disk is the SSD: `{ usb_min_gb = 100 }` or `{ by_id = "usb-Samsung_*" }`.
    #[serde(default)]
    pub selector: Option<DiskSelector>,
    /// Mount point (default `/mnt/storage`).
    #[serde(default)]
    pub mount_point: Option<String>,
    /// Serial of a disk that first boot may wipe although it holds data.
    #[serde(default)]
    pub wipe: Option<String>,
}

/// `[kernel]`: boot settings. Merged key by key.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelProfile {
    /// Keep the Pi 5's 16K-page kernel (default false: `kernel=kernel8.img`, 4K pages, so
    /// jemalloc-linked container images run).
    #[serde(default)]
    pub keep_16k_pages: Option<bool>,
    /// `usb_max_current_enable=1`: lets USB draw 1.6 A without a 5 A supply. Off by default:
    /// with a weaker supply the Pi may brown out under load.
    #[serde(default)]
    pub usb_max_current: Option<bool>,
    /// Extra kernel parameters. APPENDED to the parent's (duplicates dropped).
    #[serde(default)]
    pub cmdline_extra: Option<Vec<String>>,
}

/// `[[files]]`: one extra file for the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraFile {
    /// Absolute path in the image.
    pub path: String,
    /// Inline content (exactly one of `content`, `source`).
    #[serde(default)]
    pub content: Option<String>,
    /// File to copy, relative to the profiles folder (and inside it).
    #[serde(default)]
    pub source: Option<PathBuf>,
    /// Replace a file piimg itself writes (its k3s config, node password, units…), knowingly.
    #[serde(default)]
    pub replace_piimg_file: Option<bool>,
    /// Octal mode as a string, default `"0644"`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Owner uid (default 0).
    #[serde(default)]
    pub uid: Option<u32>,
    /// Owner gid (default 0).
    #[serde(default)]
    pub gid: Option<u32>,
}

/// A node profile (`<node>.toml`), and the `[defaults]` of cluster.toml.
///
/// Every key is optional so layers merge: defaults, then the `extends` chain from the root
/// ancestor down, then the node's own file. Scalars: the later layer wins. Lists and maps say
/// on their field whether they append or replace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeProfile {
    /// Name of another profile in the same folder this one builds on. Not inherited.
    #[serde(default)]
    pub extends: Option<String>,
    /// Hostname and k3s node name (default: the profile's name).
    #[serde(default)]
    pub hostname: Option<String>,
    /// The board this node runs on, for fleet images: `{ serial = "…" }` (a Pi's serial
    /// number) or `{ mac = "…" }` (a wired interface's MAC). Not inherited: a board is one
    /// profile's.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub board: Option<BoardMatch>,
    /// `server` or `agent`.
    #[serde(default)]
    pub role: Option<Role>,
    /// Name of a `[bases.NAME]` entry of cluster.toml.
    #[serde(default)]
    pub base: Option<String>,
    /// A version from `[k3s.releases]` (default `[k3s] version`).
    #[serde(default)]
    pub k3s_version: Option<String>,
    /// k3s node labels. MERGED by key: a later layer adds keys and overrides equal keys.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// k3s node taints (`key=value:Effect`). REPLACED as a whole by a later layer, so a node
    /// can drop its parent's taints with `taints = []`.
    #[serde(default)]
    pub taints: Option<Vec<String>>,
    /// Network set-up. REPLACED as a whole.
    #[serde(default)]
    pub network: Option<NetworkProfile>,
    /// Login user created in the image (default `admin`).
    #[serde(default)]
    pub user: Option<String>,
    /// SSH public keys for the user. APPENDED to the parent's (duplicates dropped).
    #[serde(default)]
    pub ssh_keys: Option<Vec<String>>,
    /// `Area/City` time zone (default `Etc/UTC`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// The SSD.
    #[serde(default)]
    pub storage: Option<StorageProfile>,
    /// `http://host:port/report` of `piimg watch`.
    #[serde(default)]
    pub report_url: Option<String>,
    /// Boot settings.
    #[serde(default)]
    pub kernel: Option<KernelProfile>,
    /// Named overlays under the overlays folder, after `common` and the role's. APPENDED.
    #[serde(default)]
    pub overlays: Option<Vec<String>>,
    /// Extra files. APPENDED; a later entry for the same path replaces the earlier one.
    #[serde(default)]
    pub files: Option<Vec<ExtraFile>>,
    /// The profile's own folder of manifests, relative to the profiles folder, rendered like
    /// `manifests/` and staged under its folder name. Server only.
    #[serde(default)]
    pub manifests: Option<PathBuf>,
}
