//! Checks of cluster.toml on its own, before any node is looked at.

use super::check::*;
use crate::profile::{Family, LoadedCluster, ProfileError};

/// Every problem of cluster.toml that does not depend on a node.
pub(super) fn check_cluster(lc: &LoadedCluster) -> Vec<ProfileError> {
    let c = &lc.cluster;
    let f = &lc.file;
    let mut errs = Vec::new();
    let mut err = |key: String, problem: String, fix: &str| {
        errs.push(ProfileError::new(f, key, problem, fix))
    };
    if !is_rfc1123_label(&c.name) {
        err(
            "name".into(),
            format!("`{}` is not an RFC 1123 label", c.name),
            "use lower-case letters, digits and '-', at most 63",
        );
    }
    for (i, n) in c.nodes.iter().enumerate() {
        if !is_rfc1123_label(n) {
            err(
                format!("nodes[{i}]"),
                format!("`{n}` is not an RFC 1123 label"),
                "use lower-case letters, digits and '-'",
            );
        }
        if c.nodes[..i].contains(n) {
            err(
                format!("nodes[{i}]"),
                format!("`{n}` is listed twice"),
                "list each node once",
            );
        }
    }
    if let Some(p) = server_url_problem(&c.server.url) {
        err(
            "server.url".into(),
            p,
            "give the server's address as https://HOST:6443, with a host or IP the nodes can reach",
        );
    }
    if let Some(a) = &c.server.address {
        if a.parse::<std::net::Ipv4Addr>().is_err() {
            err(
                "server.address".into(),
                format!("`{a}` is not an IPv4 address"),
                "give the address agents reach the server at, like 192.168.1.10, or remove the key to use the server profile's static address",
            );
        }
    }
    if !c.nodes.contains(&c.server.node) {
        err(
            "server.node".into(),
            format!("`{}` is not in `nodes`", c.server.node),
            "name the server's profile and list it in `nodes`",
        );
    }
    if !c.k3s.releases.contains_key(&c.k3s.version) {
        err(
            "k3s.version".into(),
            format!(
                "`{}` has no `[k3s.releases.\"{}\"]` entry",
                c.k3s.version, c.k3s.version
            ),
            "pin that release's binaries under [k3s.releases] or pick a pinned version",
        );
    }
    for (version, arches) in &c.k3s.releases {
        if K3sVersion::parse(version).is_none() {
            err(
                format!("k3s.releases.\"{version}\""),
                format!("`{version}` is not a k3s release tag"),
                "write it like v1.31.4+k3s1",
            );
        }
        for (arch, a) in arches {
            if !is_sha256(&a.sha256) {
                err(
                    format!("k3s.releases.\"{version}\".{arch}.sha256"),
                    "not 64 lower-case hex digits".into(),
                    "copy the digest from the release's sha256sum file",
                );
            }
        }
    }
    for (arch, a) in &c.firstboot {
        if !is_sha256(&a.sha256) {
            err(
                format!("firstboot.{arch}.sha256"),
                "not 64 lower-case hex digits".into(),
                "write the binary's `sha256sum`",
            );
        }
    }
    for (name, b) in &c.bases {
        if !is_sha256(&b.sha256) {
            err(
                format!("bases.{name}.sha256"),
                "not 64 lower-case hex digits".into(),
                "copy the digest the distribution publishes for the download",
            );
        }
        if http_url_problem(&b.url).is_some() && !b.url.starts_with('/') {
            err(
                format!("bases.{name}.url"),
                format!("`{}` is neither an http(s) URL nor an absolute path", b.url),
                "give the download URL",
            );
        }
        if b.family == Family::Raspios && !matches!(b.release.as_str(), "bookworm" | "trixie") {
            err(
                format!("bases.{name}.release"),
                format!(
                    "Raspberry Pi OS release `{}` is not one piimg knows",
                    b.release
                ),
                "use bookworm or trixie",
            );
        }
        if b.family == Family::Ubuntu
            && b.release
                .split('.')
                .filter_map(|p| p.parse::<u32>().ok())
                .count()
                != 2
        {
            err(
                format!("bases.{name}.release"),
                format!("Ubuntu release `{}` is not YY.MM", b.release),
                "write it like 24.04",
            );
        }
    }
    errs.extend(super::services::check_cluster_services(lc));
    errs
}
