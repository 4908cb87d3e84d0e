//! NodeSpec → Plan: every edit a build makes to the base image, computed without I/O.
//!
//! [`compute`] is a pure function of the resolved spec and the resolved sources, so most of
//! piimg's behaviour is tested here without images, and `piimg plan` can show it all.

mod compute;
mod edit;
pub mod fleet;
mod k3s;
mod os;
pub mod text;
mod units;
pub mod user;

pub use compute::{compute, BUILD_RECORD_PATH, TIME_WAIT_SYNC_UNIT};
pub use edit::{Content, Edit};

use crate::secrets::Secret;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::PathBuf;

/// Where staged manifests live in the image; first boot syncs them into `<data-dir>/server/manifests`.
pub const STAGED_MANIFESTS: &str = "/var/lib/piimg/manifests";
/// Where staged air-gap images live; first boot syncs them into `<data-dir>/agent/images`.
pub const STAGED_IMAGES: &str = "/var/lib/piimg/images";

/// A file the sources stage resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceFile {
    /// Where it is (cache path, `--k3s-bin` path; for `piimg plan` before fetching, the URL).
    pub path: PathBuf,
    /// Its SHA-256.
    pub sha256: String,
}

/// One rendered base-service manifest, staged at `STAGED_MANIFESTS/<rel_path>` on the server.
///
/// The content is held as a [`Secret`] whatever it is, so Debug and JSON of the inputs never
/// show it; `secret` says whether it really holds credentials, which decides its mode (0600,
/// else 0644) and whether `piimg plan` may show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenderedManifest {
    /// Path below the staged folder, `/`-separated (`minio/minio.yaml`).
    pub rel_path: String,
    /// The YAML.
    pub content: Secret,
    /// Holds credentials (a Kubernetes `Secret`).
    pub secret: bool,
}

/// What the sources stage resolved for one build: the plan's inputs besides the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inputs {
    /// The k3s binary for the node's arch.
    pub k3s_bin: SourceFile,
    /// The piimg-firstboot binary for the node's arch.
    pub firstboot_bin: SourceFile,
    /// Optional `k3s-airgap-images-<arch>.tar.zst`.
    pub airgap_images: Option<SourceFile>,
    /// Rendered base-service manifests (server only; ignored for agents).
    pub manifests: Vec<RenderedManifest>,
    /// SHA-256 of the base image as used.
    pub base_sha256: String,
}

impl Inputs {
    /// The build id: SHA-256 over the profile digest and every input digest. The same inputs
    /// give the same id, so it names what was baked without reading a clock.
    pub fn build_id(&self, profile_sha256: &str) -> String {
        let mut h = Sha256::new();
        for part in [
            profile_sha256,
            &self.base_sha256,
            &self.k3s_bin.sha256,
            &self.firstboot_bin.sha256,
        ] {
            h.update(part.as_bytes());
            h.update(b"\n");
        }
        if let Some(a) = &self.airgap_images {
            h.update(a.sha256.as_bytes());
        }
        for m in &self.manifests {
            h.update(m.rel_path.as_bytes());
            h.update(b"\0");
            h.update(Sha256::digest(m.content.expose().as_bytes()));
        }
        hex::encode(h.finalize())
    }
}

/// Everything a build does to one node's image, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Node name.
    pub node: String,
    /// Base catalogue name.
    pub base: String,
    /// What the base is (decides the per-OS edits).
    pub flavour: crate::spec::Flavour,
    /// Build id (see [`Inputs::build_id`]).
    pub build_id: String,
    /// `SOURCE_DATE_EPOCH` for every timestamp the apply stage writes.
    pub source_date_epoch: Option<u64>,
    /// The base services the image carries (the server's; `None` for an agent, which gets no
    /// manifests), so `piimg plan` says what will run before anything is built.
    pub services: Option<crate::manifests::ServiceSelection>,
    /// The edits, applied in this order.
    pub edits: Vec<Edit>,
    /// A fleet image's members: the edits each board makes itself at first boot, once it
    /// has taken its node (empty for a node's own image).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<fleet::MemberPlan>,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "plan for {} from base {} ({}), build {}: {} edits",
            self.node,
            self.base,
            self.flavour,
            self.build_id.get(..16).unwrap_or(&self.build_id),
            self.edits.len()
        )?;
        if let Some(services) = &self.services {
            writeln!(f, "services: {}", services.summary())?;
        }
        for (i, e) in self.edits.iter().enumerate() {
            writeln!(f, "{:3}. {e}", i + 1)?;
        }
        for m in &self.members {
            writeln!(
                f,
                "member {} ({}): at first boot, {} edits",
                m.node,
                m.board.describe(),
                m.edits.len()
            )?;
            for (i, e) in m.edits.iter().enumerate() {
                writeln!(f, "{:3}. {e}", i + 1)?;
            }
        }
        Ok(())
    }
}
