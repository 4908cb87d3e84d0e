//! k3s edits: binary, links, config.yaml, node password, unit, staged manifests and images.

use super::edit::{Content, Edit};
use super::{units, Inputs, RenderedManifest, STAGED_IMAGES, STAGED_MANIFESTS};
use crate::secrets::{node_password, Secret};
use crate::spec::NodeSpec;
use piimg_firstboot::config::Role;

/// k3s `data-dir` on the SSD.
pub fn data_dir(spec: &NodeSpec) -> String {
    format!("{}/k3s", spec.storage.mount_point.trim_end_matches('/'))
}

/// A YAML double-quoted scalar (JSON strings are valid YAML).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The host of `https://host:port`.
fn server_host(url: &str) -> String {
    crate::spec::url_host(url).unwrap_or_default()
}

/// `/etc/rancher/k3s/config.yaml`. Servers hold both tokens; agents only the agent token,
/// so a lost worker card cannot add a server.
pub fn config_yaml(spec: &NodeSpec) -> Secret {
    let s = &spec.secrets;
    let mut y =
        String::from("# Written by piimg; first boot starts k3s once the SSD is mounted.\n");
    match spec.role {
        Role::Server => {
            y += &format!("token: {}\n", q(s.k3s_token.expose()));
            y += &format!("agent-token: {}\n", q(s.agent_token.expose()));
            y += "write-kubeconfig-mode: \"0600\"\n";
            // The name agents use must be in the server's certificate.
            y += &format!("tls-san:\n  - {}\n", q(&server_host(&spec.k3s.server_url)));
        }
        Role::Agent => {
            y += &format!("server: {}\n", q(&spec.k3s.server_url));
            y += &format!("token: {}\n", q(s.agent_token.expose()));
        }
    }
    y += &format!("node-name: {}\n", q(&spec.hostname));
    y += &format!("data-dir: {}\n", q(&data_dir(spec)));
    if !spec.k3s.labels.is_empty() {
        y += "node-label:\n";
        for (k, v) in &spec.k3s.labels {
            y += &format!("  - {}\n", q(&format!("{k}={v}")));
        }
    }
    if !spec.k3s.taints.is_empty() {
        y += "node-taint:\n";
        for t in &spec.k3s.taints {
            y += &format!("  - {}\n", q(t));
        }
    }
    Secret::new(y)
}

fn file(path: &str, content: Content, mode: u32) -> Edit {
    Edit::WriteFile {
        path: path.into(),
        content,
        mode,
        uid: 0,
        gid: 0,
    }
}

fn dir(path: &str, mode: u32) -> Edit {
    Edit::Mkdir {
        path: path.into(),
        mode,
        uid: 0,
        gid: 0,
    }
}

/// The server's manifests under [`STAGED_MANIFESTS`]: folders 0700 (root-only, like k3s's
/// own `server/manifests`), credential files 0600 and masked, the others 0644 and shown, so
/// the mode alone tells which files hold a login.
fn staged_manifests(manifests: &[RenderedManifest]) -> Vec<Edit> {
    let mut e = vec![dir(STAGED_MANIFESTS, 0o700)];
    let mut folders = std::collections::BTreeSet::new();
    for m in manifests {
        let mut parts: Vec<&str> = m.rel_path.split('/').collect();
        parts.pop();
        for depth in 1..=parts.len() {
            folders.insert(parts[..depth].join("/"));
        }
    }
    e.extend(
        folders
            .iter()
            .map(|f| dir(&format!("{STAGED_MANIFESTS}/{f}"), 0o700)),
    );
    for m in manifests {
        let path = format!("{STAGED_MANIFESTS}/{}", m.rel_path);
        e.push(if m.secret {
            file(&path, Content::Secret(m.content.clone()), 0o600)
        } else {
            file(&path, Content::Text(m.content.expose().to_string()), 0o644)
        });
    }
    e
}

/// Every k3s edit.
pub fn edits(spec: &NodeSpec, inputs: &Inputs) -> Vec<Edit> {
    let mut e = vec![file(
        "/usr/local/bin/k3s",
        Content::Source {
            path: inputs.k3s_bin.path.clone(),
            sha256: inputs.k3s_bin.sha256.clone(),
        },
        0o755,
    )];
    for link in ["kubectl", "crictl", "ctr"] {
        e.push(Edit::Symlink {
            path: format!("/usr/local/bin/{link}"),
            target: "k3s".into(),
        });
    }
    e.push(dir("/etc/rancher", 0o755));
    e.push(dir("/etc/rancher/k3s", 0o755));
    e.push(file(
        "/etc/rancher/k3s/config.yaml",
        Content::Secret(config_yaml(spec)),
        0o600,
    ));
    e.push(dir("/etc/rancher/node", 0o700));
    let password = node_password(&spec.secrets.node_password_seed, &spec.hostname);
    e.push(file(
        "/etc/rancher/node/password",
        Content::Secret(Secret::new(format!("{}\n", password.expose()))),
        0o600,
    ));
    let unit = spec.role.k3s_unit();
    e.push(file(
        &format!("/etc/systemd/system/{unit}"),
        Content::Text(units::k3s_unit(spec.role, &spec.storage.mount_point)),
        0o644,
    ));
    // Installed but not enabled; first boot starts it once the SSD is mounted, and the
    // firstboot crate's drop-in keeps it from ever running with its data-dir on the SD card.
    e.push(file(
        &format!("/etc/systemd/system/{unit}.d/10-piimg.conf"),
        Content::Text(piimg_firstboot::unit::k3s_dropin(&spec.storage.mount_point)),
        0o644,
    ));
    e.push(dir("/var/lib/piimg", 0o700));
    if spec.role == Role::Server {
        e.extend(staged_manifests(&inputs.manifests));
    }
    if let Some(images) = &inputs.airgap_images {
        e.push(dir(STAGED_IMAGES, 0o700));
        e.push(file(
            &format!(
                "{STAGED_IMAGES}/k3s-airgap-images-{}.tar.zst",
                spec.base.arch
            ),
            Content::Source {
                path: images.path.clone(),
                sha256: images.sha256.clone(),
            },
            0o600,
        ));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(rel_path: &str, secret: bool) -> RenderedManifest {
        RenderedManifest {
            rel_path: rel_path.into(),
            content: Secret::new("kind: X\n".into()),
            secret,
        }
    }

    #[test]
    fn nested_folders_are_made_0700_parents_first_and_modes_follow_secret() {
        let e = staged_manifests(&[
            manifest("namespaces.yaml", false),
            manifest("own/deep/a.yaml", false),
            manifest("own/b-credentials.yaml", true),
        ]);
        let dirs: Vec<&str> = e
            .iter()
            .filter_map(|e| match e {
                Edit::Mkdir {
                    path, mode: 0o700, ..
                } => Some(path.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            dirs,
            [
                STAGED_MANIFESTS,
                "/var/lib/piimg/manifests/own",
                "/var/lib/piimg/manifests/own/deep"
            ]
        );
        let modes: Vec<(String, u32, bool)> = e
            .iter()
            .filter_map(|e| match e {
                Edit::WriteFile {
                    path,
                    mode,
                    content,
                    ..
                } => Some((path.clone(), *mode, matches!(content, Content::Secret(_)))),
                _ => None,
            })
            .collect();
        assert_eq!(
            modes,
            [
                (
                    "/var/lib/piimg/manifests/namespaces.yaml".into(),
                    0o644,
                    false
                ),
                (
                    "/var/lib/piimg/manifests/own/deep/a.yaml".into(),
                    0o644,
                    false
                ),
                (
                    "/var/lib/piimg/manifests/own/b-credentials.yaml".into(),
                    0o600,
                    true
                ),
            ]
        );
    }
}
