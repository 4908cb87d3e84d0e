//! [`compute`]: the order of the plan, and the files that tie it together (node.toml, build.json).

use super::edit::{Content, Edit};
use super::{k3s, os, units, Inputs, Plan, STAGED_IMAGES, STAGED_MANIFESTS};
use crate::secrets::Secret;
use crate::spec::{EntryKind, Flavour, NodeSpec, RootEntry};
use piimg_firstboot::config::{
    K3sConfig, NodeConfig, ReportConfig, Role, RootConfig, StorageConfig, NODE_CONFIG_PATH,
    SCHEMA_VERSION,
};
use piimg_firstboot::unit;

/// Where the build record is written in the image.
pub const BUILD_RECORD_PATH: &str = "/etc/piimg/build.json";

/// Computes the plan for `spec` with the resolved `inputs`. Pure: no I/O, no clock.
///
/// Order: boot partition; swap and storage; identity and access; network; k3s; first boot;
/// overlays (so a user's overlay can replace any file above); node.toml and build.json last.
pub fn compute(spec: &NodeSpec, inputs: &Inputs) -> Plan {
    compute_as(spec, inputs, inputs.build_id(&spec.profile_sha256))
}

/// [`compute`] under a given build id: a fleet's members all carry the fleet image's.
pub(super) fn compute_as(spec: &NodeSpec, inputs: &Inputs, build_id: String) -> Plan {
    let mut edits = os::boot(spec);
    edits.extend(os::grub(spec));
    edits.extend(os::swap(spec));
    edits.extend(os::storage(spec));
    edits.extend(os::identity(spec));
    edits.extend(os::access(spec));
    edits.extend(os::network(spec));
    edits.extend(k3s::edits(spec, inputs));
    edits.extend(firstboot(inputs));
    edits.extend(spec.root_entries.iter().map(overlay_edit));
    edits.push(Edit::WriteFile {
        path: NODE_CONFIG_PATH.into(),
        content: Content::Secret(Secret::new(node_config(spec, &build_id).to_toml())),
        mode: 0o600,
        uid: 0,
        gid: 0,
    });
    edits.push(Edit::WriteFile {
        path: BUILD_RECORD_PATH.into(),
        content: Content::Text(build_record(spec, inputs, &build_id)),
        mode: 0o644,
        uid: 0,
        gid: 0,
    });
    Plan {
        node: spec.node.clone(),
        base: spec.base.name.clone(),
        flavour: spec.base.flavour(),
        build_id,
        source_date_epoch: spec.overrides.source_date_epoch,
        services: spec.manifests.as_ref().map(|m| m.services.clone()),
        edits,
        members: Vec::new(),
    }
}

/// The systemd unit that holds `time-sync.target` until the clock is set; every base piimg
/// supports ships it with systemd itself (Raspberry Pi OS bookworm and trixie, Ubuntu 24.04+).
pub const TIME_WAIT_SYNC_UNIT: &str = "systemd-time-wait-sync.service";

/// The binary, its unit (the firstboot crate's text, verbatim) enabled, and the clock wait the
/// unit is ordered after.
pub(super) fn firstboot(inputs: &Inputs) -> Vec<Edit> {
    vec![
        Edit::WriteFile {
            path: unit::BINARY_PATH.into(),
            content: Content::Source {
                path: inputs.firstboot_bin.path.clone(),
                sha256: inputs.firstboot_bin.sha256.clone(),
            },
            mode: 0o755,
            uid: 0,
            gid: 0,
        },
        Edit::WriteFile {
            path: format!("/etc/systemd/system/{}", unit::UNIT_NAME),
            content: Content::Text(unit::UNIT.into()),
            mode: 0o644,
            uid: 0,
            gid: 0,
        },
        Edit::EnableUnit {
            unit: unit::UNIT_NAME.into(),
            unit_dir: "/etc/systemd/system".into(),
            wanted_by: "multi-user.target".into(),
        },
        // The unit's own `[Install] WantedBy=sysinit.target`.
        Edit::EnableUnit {
            unit: TIME_WAIT_SYNC_UNIT.into(),
            unit_dir: "/lib/systemd/system".into(),
            wanted_by: "sysinit.target".into(),
        },
        Edit::WriteFile {
            path: format!("/etc/systemd/system/{TIME_WAIT_SYNC_UNIT}.d/10-piimg.conf"),
            content: Content::Text(units::TIME_WAIT_SYNC_DROPIN.into()),
            mode: 0o644,
            uid: 0,
            gid: 0,
        },
        Edit::Mkdir {
            path: "/etc/piimg".into(),
            mode: 0o755,
            uid: 0,
            gid: 0,
        },
    ]
}

fn overlay_edit(entry: &RootEntry) -> Edit {
    match &entry.kind {
        EntryKind::Dir => Edit::Mkdir {
            path: entry.path.clone(),
            mode: entry.mode,
            uid: entry.uid,
            gid: entry.gid,
        },
        EntryKind::Symlink { target } => Edit::Symlink {
            path: entry.path.clone(),
            target: target.clone(),
        },
        EntryKind::File { source, sha256 } => Edit::WriteFile {
            path: entry.path.clone(),
            content: Content::Source {
                path: source.clone(),
                sha256: sha256.clone(),
            },
            mode: entry.mode,
            uid: entry.uid,
            gid: entry.gid,
        },
        EntryKind::Text { content } => Edit::WriteFile {
            path: entry.path.clone(),
            content: Content::Text(content.clone()),
            mode: entry.mode,
            uid: entry.uid,
            gid: entry.gid,
        },
    }
}

/// `/etc/piimg/node.toml`, in the firstboot crate's schema.
pub fn node_config(spec: &NodeSpec, build_id: &str) -> NodeConfig {
    NodeConfig {
        schema: SCHEMA_VERSION,
        cluster: spec.cluster.clone(),
        cluster_id: spec.cluster_id.clone(),
        node: spec.hostname.clone(),
        role: spec.role,
        build_id: build_id.to_string(),
        k3s_version: spec.k3s.version.clone(),
        storage: StorageConfig {
            selector: spec.storage.selector.clone(),
            label: spec.storage.label.clone(),
            mount_point: spec.storage.mount_point.clone(),
            wipe: spec.storage.wipe.clone(),
        },
        k3s: K3sConfig {
            data_dir: k3s::data_dir(spec),
            server: (spec.role == Role::Agent).then(|| spec.k3s.server_url.clone()),
            staged_manifests: STAGED_MANIFESTS.into(),
            staged_images: STAGED_IMAGES.into(),
        },
        report: ReportConfig {
            url: spec.report_url.clone(),
            key: spec.secrets.report_key.expose().to_string(),
        },
        // piimg disables cloud-init on Ubuntu and Debian, and with it the growpart and
        // resizefs modules that grew the root there; Raspberry Pi OS grows its root itself
        // (bookworm: `init=/usr/lib/raspberrypi-sys-mods/firstboot`, trixie: `resize` on the
        // cmdline), which the build keeps.
        root: RootConfig {
            grow: matches!(
                spec.base.flavour(),
                Flavour::UbuntuRaspi { .. } | Flavour::UbuntuAmd64 | Flavour::Debian
            ),
        },
    }
}

/// `/etc/piimg/build.json`: what was baked, by digest. No secrets (manifests by digest only).
fn build_record(spec: &NodeSpec, inputs: &Inputs, build_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let manifests: serde_json::Map<String, serde_json::Value> = inputs
        .manifests
        .iter()
        .map(|m| {
            (
                m.rel_path.clone(),
                hex::encode(Sha256::digest(m.content.expose().as_bytes())).into(),
            )
        })
        .collect();
    let record = serde_json::json!({
        "piimg_version": env!("CARGO_PKG_VERSION"),
        "build_id": build_id,
        "cluster": spec.cluster,
        "node": spec.node,
        "profile_sha256": spec.profile_sha256,
        "base": { "name": spec.base.name, "sha256": inputs.base_sha256 },
        "k3s": { "version": spec.k3s.version, "sha256": inputs.k3s_bin.sha256 },
        "firstboot_sha256": inputs.firstboot_bin.sha256,
        "airgap_images_sha256": inputs.airgap_images.as_ref().map(|a| a.sha256.clone()),
        "manifests": manifests,
        "source_date_epoch": spec.overrides.source_date_epoch,
    });
    let mut s = serde_json::to_string_pretty(&record).unwrap_or_default();
    s.push('\n');
    s
}
