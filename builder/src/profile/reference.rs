//! Keeps README's profile reference and the schema in step: every key the schema has is
//! documented, and every documented key exists.

use super::types::*;
use piimg_firstboot::config::{DiskSelector, Role};
use serde_json::Value;
use std::collections::BTreeSet;

/// Dotted key paths of a serialised value; lists of tables as `key[].field`.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map)
            if !map.is_empty()
                && !matches!(prefix, "defaults" | "services")
                && !prefix.ends_with("selector")
                && prefix != "match" =>
        {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Array(items) if items.first().is_some_and(Value::is_object) => {
            flatten(&format!("{prefix}[]"), &items[0], out)
        }
        _ => {
            out.insert(prefix.replace("arm64", "ARCH"));
        }
    }
}

fn full_node() -> NodeProfile {
    NodeProfile {
        extends: Some("x".into()),
        hostname: Some("x".into()),
        board: Some(piimg_firstboot::fleet::BoardMatch::Serial("x".into())),
        role: Some(Role::Agent),
        base: Some("x".into()),
        k3s_version: Some("x".into()),
        labels: Some(Default::default()),
        taints: Some(vec![]),
        network: Some(NetworkProfile {
            interface: Some("x".into()),
            static_address: Some(StaticAddress {
                address: "x".into(),
                gateway: "x".into(),
                dns: vec![],
            }),
        }),
        user: Some("x".into()),
        ssh_keys: Some(vec![]),
        timezone: Some("x".into()),
        storage: Some(StorageProfile {
            selector: Some(DiskSelector::UsbMinGb(1)),
            mount_point: Some("x".into()),
            wipe: Some("x".into()),
        }),
        report_url: Some("x".into()),
        kernel: Some(KernelProfile {
            keep_16k_pages: Some(true),
            usb_max_current: Some(true),
            cmdline_extra: Some(vec![]),
        }),
        overlays: Some(vec![]),
        files: Some(vec![ExtraFile {
            path: "x".into(),
            content: Some("x".into()),
            source: Some("x".into()),
            replace_piimg_file: Some(false),
            mode: Some("x".into()),
            uid: Some(0),
            gid: Some(0),
        }]),
        manifests: Some("x".into()),
    }
}

fn full_cluster() -> ClusterFile {
    let artifact = Artifact {
        url: "x".into(),
        sha256: "x".into(),
        sha256_from: Some("x".into()),
    };
    ClusterFile {
        name: "x".into(),
        nodes: vec![],
        secrets: "x".into(),
        overlays_dir: Some("x".into()),
        server: ServerSection {
            url: "x".into(),
            node: "x".into(),
            address: Some("x".into()),
        },
        k3s: K3sSection {
            version: "x".into(),
            releases: [("VERSION".into(), [(Arch::Arm64, artifact.clone())].into())].into(),
        },
        firstboot: [(Arch::Arm64, artifact)].into(),
        bases: [(
            "NAME".into(),
            BaseEntry {
                url: "x".into(),
                sha256: "x".into(),
                sha256_from: Some("x".into()),
                family: Family::Raspios,
                release: "x".into(),
                arch: Arch::Arm64,
            },
        )]
        .into(),
        defaults: NodeProfile::default(),
        manifests_dir: Some("x".into()),
        manifests: Some(crate::manifests::TemplateValues {
            vars: [("NAME".into(), "x".into())].into(),
            ..crate::manifests::TemplateValues::new("x", "x")
        }),
        services: Default::default(),
        fleets: [(
            "NAME".into(),
            FleetSection {
                nodes: vec!["x".into()],
            },
        )]
        .into(),
    }
}

/// Backticked first cells of the table rows under `heading` in the reference section.
fn documented(readme: &str, heading: &str) -> BTreeSet<String> {
    let section = readme
        .split("<!-- profile-reference:start")
        .nth(1)
        .and_then(|s| s.split("<!-- profile-reference:end").next())
        .expect("README has the profile reference markers");
    let part = section.split(heading).nth(1).expect("heading present");
    let part = part.split("\n### ").next().unwrap_or(part);
    part.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn readme_reference_matches_the_schema() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md readable");
    let mut node = BTreeSet::new();
    flatten("", &serde_json::to_value(full_node()).unwrap(), &mut node);
    let mut cluster = BTreeSet::new();
    flatten(
        "",
        &serde_json::to_value(full_cluster()).unwrap(),
        &mut cluster,
    );
    // Filled from `name` by the loader; writing it in `[manifests]` is an error.
    cluster.remove("manifests.cluster_name");
    assert_eq!(
        documented(&readme, "### `cluster.toml`"),
        cluster,
        "README cluster.toml table vs schema"
    );
    assert_eq!(
        documented(&readme, "### `NODE.toml`"),
        node,
        "README NODE.toml table vs schema"
    );
}
