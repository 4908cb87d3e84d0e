//! Profile → NodeSpec: every default filled in, every value checked, secrets loaded.
//!
//! [`resolve`] runs before any image I/O and reports every problem it finds at once, each
//! naming the file, the key and the fix, so a user fixes a profile in one round.

mod check;
mod cluster_checks;
mod entries;
mod fleet;
mod node_checks;
mod overlay;
mod resolve;
mod services;

pub use check::{is_mdns_name, url_host};
pub use check::{is_rfc1123_label, K3sVersion};
pub use fleet::{resolve_fleet, FleetSpec};
pub use node_checks::{DEFAULT_MOUNT_POINT, DEFAULT_TIMEZONE, DEFAULT_USER};
pub use overlay::{EntryKind, RootEntry};
pub use resolve::resolve;
pub use services::{ManifestsSpec, DEFAULT_MANIFESTS_DIR};

use crate::profile::{Arch, Artifact, Family, ProfileError};
use crate::secrets::ClusterSecrets;
use piimg_firstboot::config::{DiskSelector, Role};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// What the command line overrides for one build. Built at the edge (CLI, environment), so
/// nothing deeper reads argv, the environment or the clock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Overrides {
    /// `--base NAME|PATH|URL`: a catalogue name picks that entry; a path or URL replaces the
    /// profile base's file (its digest is recorded, not checked).
    pub base: Option<String>,
    /// `--k3s-bin PATH`: use this k3s binary instead of the pinned one.
    pub k3s_bin: Option<PathBuf>,
    /// `--firstboot-bin PATH`: use this piimg-firstboot binary.
    pub firstboot_bin: Option<PathBuf>,
    /// `SOURCE_DATE_EPOCH`: every timestamp written.
    pub source_date_epoch: Option<u64>,
    /// `--allow-unverified`: use catalogue entries whose digest names no published source.
    pub allow_unverified: bool,
}

impl Overrides {
    /// Reads `SOURCE_DATE_EPOCH` from the environment: call this at the edge only.
    pub fn source_date_epoch_from_env() -> Result<Option<u64>, String> {
        match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) => v.trim().parse().map(Some).map_err(|_| {
                format!("SOURCE_DATE_EPOCH=`{v}` is not a number of seconds since 1970: set it to e.g. `$(git log -1 --format=%ct)`")
            }),
            Err(_) => Ok(None),
        }
    }
}

/// The base image a node is built from, as the catalogue describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaseSpec {
    /// Catalogue name.
    pub name: String,
    /// Download URL (or the `--base` override).
    pub url: String,
    /// Pinned SHA-256 (not enforced when `--base` overrides).
    pub sha256: String,
    /// OS family.
    pub family: Family,
    /// Release (`bookworm`, `trixie`, `24.04`, `25.10`).
    pub release: String,
    /// Architecture.
    pub arch: Arch,
}

impl BaseSpec {
    /// The base's flavour, which decides the plan's per-OS edits.
    pub fn flavour(&self) -> Flavour {
        match (self.family, self.arch) {
            (Family::Raspios, _) if self.release == "bookworm" => Flavour::Bookworm,
            (Family::Raspios, _) => Flavour::Trixie,
            (Family::Ubuntu, Arch::Amd64) => Flavour::UbuntuAmd64,
            (Family::Ubuntu, Arch::Arm64) => Flavour::UbuntuRaspi {
                ab_boot: ubuntu_has_ab_boot(&self.release),
            },
            (Family::Debian, _) => Flavour::Debian,
        }
    }
}

/// Ubuntu 25.10 and later keep cmdline.txt under `current/` (A/B boot with `autoboot.txt`).
fn ubuntu_has_ab_boot(release: &str) -> bool {
    let mut it = release.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (y, m) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (y, m) >= (25, 10)
}

/// The bases piimg knows how to edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flavour {
    /// Raspberry Pi OS bookworm: dphys-swapfile, empty machine-id.
    Bookworm,
    /// Raspberry Pi OS trixie (and later): rpi-swap, `uninitialized` machine-id, cloud-init.
    Trixie,
    /// Ubuntu Server for Raspberry Pi.
    UbuntuRaspi {
        /// 25.10+: boot assets under `current/`.
        ab_boot: bool,
    },
    /// Ubuntu amd64 (cloud image): GRUB, GPT.
    UbuntuAmd64,
    /// Plain Debian: GRUB drop-in for kernel parameters, systemd-networkd for the network.
    Debian,
}

impl fmt::Display for Flavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavour::Bookworm => "Raspberry Pi OS bookworm",
            Flavour::Trixie => "Raspberry Pi OS trixie",
            Flavour::UbuntuRaspi { ab_boot: false } => "Ubuntu for Raspberry Pi",
            Flavour::UbuntuRaspi { ab_boot: true } => "Ubuntu for Raspberry Pi, A/B boot",
            Flavour::UbuntuAmd64 => "Ubuntu amd64",
            Flavour::Debian => "Debian",
        })
    }
}

/// k3s settings of the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct K3sSpec {
    /// Release tag.
    pub version: String,
    /// The pinned binary for the node's arch.
    pub artifact: Artifact,
    /// The server URL agents join (cluster.toml `server.url`), for every role: the server
    /// puts its host into its certificate.
    pub server_url: String,
    /// The `/etc/hosts` line that lets every node resolve the server's name (none when the
    /// URL holds an IP address, or when no address is known and the name is left to DNS).
    pub server_hosts_entry: Option<HostsEntry>,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// Node taints.
    pub taints: Vec<String>,
}

/// One `/etc/hosts` mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostsEntry {
    /// IPv4 address.
    pub address: String,
    /// Host name.
    pub name: String,
}

/// The node's SSD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageSpec {
    /// Which disk.
    pub selector: DiskSelector,
    /// Mount point.
    pub mount_point: String,
    /// ext4 label: `piimg-` + the first 8 digits of the cluster id (≤ 16 bytes).
    pub label: String,
    /// Disk serial first boot may wipe.
    pub wipe: Option<String>,
}

/// Network set-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkSpec {
    /// Interface name, if the profile names one.
    pub interface: Option<String>,
    /// Static address; None means DHCP.
    pub static_address: Option<crate::profile::StaticAddress>,
}

/// Boot settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelSpec {
    /// Keep the 16K-page kernel on a Pi 5.
    pub keep_16k_pages: bool,
    /// `usb_max_current_enable=1`.
    pub usb_max_current: bool,
    /// Extra kernel parameters.
    pub cmdline_extra: Vec<String>,
}

/// One node, fully resolved: what the plan is computed from.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSpec {
    /// Cluster name.
    pub cluster: String,
    /// Non-secret cluster id.
    pub cluster_id: String,
    /// Node (profile) name.
    pub node: String,
    /// Hostname and k3s node name.
    pub hostname: String,
    /// The board it runs on (`match`), for fleet images.
    pub board: Option<piimg_firstboot::fleet::BoardMatch>,
    /// Server or agent.
    pub role: Role,
    /// The base image.
    pub base: BaseSpec,
    /// k3s.
    pub k3s: K3sSpec,
    /// Pinned firstboot binary for the node's arch, if the catalogue has one.
    pub firstboot_artifact: Option<Artifact>,
    /// Network.
    pub network: NetworkSpec,
    /// Login user name.
    pub user: String,
    /// Its SSH keys.
    pub ssh_keys: Vec<String>,
    /// Time zone.
    pub timezone: String,
    /// The SSD.
    pub storage: StorageSpec,
    /// Readiness report URL.
    pub report_url: Option<String>,
    /// Boot settings.
    pub kernel: KernelSpec,
    /// Overlay and extra-file entries in the order they are applied (later wins).
    pub root_entries: Vec<RootEntry>,
    /// The base-service manifests to render: the server's; `None` for an agent.
    pub manifests: Option<ManifestsSpec>,
    /// The cluster secrets (masked in Debug and JSON).
    pub secrets: ClusterSecrets,
    /// Where they were read from (a build adds missing service credentials there).
    pub secrets_file: PathBuf,
    /// The profiles folder.
    pub profiles_dir: PathBuf,
    /// Profile files read, cluster.toml first.
    pub profile_files: Vec<PathBuf>,
    /// SHA-256 over cluster.toml, the profile chain and the overlay entries (with digests).
    pub profile_sha256: String,
    /// Command-line overrides.
    pub overrides: Overrides,
}

/// Every problem found while resolving a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<ProfileError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} problems in the profiles:", many.len())?;
                for e in many {
                    write!(f, "\n  - {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for SpecErrors {}

impl serde::Serialize for ClusterSecrets {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ClusterSecrets", 2)?;
        st.serialize_field("cluster_id", &self.cluster_id)?;
        st.serialize_field("values", crate::secrets::MASK)?;
        st.end()
    }
}
