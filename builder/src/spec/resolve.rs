//! [`resolve`]: the profile layers, defaults and checks that make a [`NodeSpec`].

use super::check::*;
use super::overlay::{self, EntryKind, RootEntry};
use super::*;
use crate::profile::{self, LoadedCluster, LoadedNode, NodeProfile};
use piimg_firstboot::config::Role;
use sha2::{Digest, Sha256};
use std::path::Path;

/// Default mount point of the SSD.
pub const DEFAULT_MOUNT_POINT: &str = "/mnt/storage";
/// Default login user.
pub const DEFAULT_USER: &str = "admin";
/// Default time zone.
pub const DEFAULT_TIMEZONE: &str = "Etc/UTC";

/// Which file set a key: the last profile layer that has it, else cluster.toml's `[defaults]`.
struct Blame<'a> {
    cluster: &'a LoadedCluster,
    node: &'a LoadedNode,
}

impl Blame<'_> {
    fn at(&self, key: &str, has: impl Fn(&NodeProfile) -> bool) -> (PathBuf, String) {
        for (file, layer) in self.node.files.iter().zip(&self.node.layers).rev() {
            if has(layer) {
                return (file.clone(), key.to_string());
            }
        }
        if has(&self.cluster.cluster.defaults) {
            return (self.cluster.file.clone(), format!("defaults.{key}"));
        }
        // Nobody set it: blame the node's own file, where it belongs.
        let own = self.node.files.last().cloned().unwrap_or_default();
        (own, key.to_string())
    }
}

/// Resolves node `node` from the profiles in `profiles_dir`.
///
/// Reads cluster.toml, the node's profile chain, the server's profile (for its k3s version),
/// the secrets file and the overlays; writes nothing.
pub fn resolve(
    profiles_dir: &Path,
    node: &str,
    overrides: &Overrides,
) -> Result<NodeSpec, SpecErrors> {
    let one = |e: ProfileError| SpecErrors(vec![e]);
    let cluster = profile::load_cluster(profiles_dir).map_err(one)?;
    let mut errors = check_cluster(&cluster);
    let loaded = profile::load_node(profiles_dir, node).map_err(|e| {
        let mut all = errors.clone();
        all.push(e);
        SpecErrors(all)
    })?;
    let spec = build(&cluster, &loaded, overrides, &mut errors);
    match spec {
        Some(spec) if errors.is_empty() => Ok(spec),
        _ => Err(SpecErrors(errors)),
    }
}

fn check_cluster(lc: &LoadedCluster) -> Vec<ProfileError> {
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
    errs
}

fn build(
    lc: &LoadedCluster,
    ln: &LoadedNode,
    overrides: &Overrides,
    errors: &mut Vec<ProfileError>,
) -> Option<NodeSpec> {
    let c = &lc.cluster;
    let blame = Blame {
        cluster: lc,
        node: ln,
    };
    let mut p = c.defaults.clone();
    p.merge_from(ln.profile.clone());
    let mut err = |(file, key): (PathBuf, String), problem: String, fix: &str| {
        errors.push(ProfileError::new(file, key, problem, fix));
    };

    if !c.nodes.contains(&ln.name) {
        err(
            (lc.file.clone(), "nodes".into()),
            format!("node `{}` is not listed", ln.name),
            "add it to `nodes` in cluster.toml",
        );
    }
    let hostname = p.hostname.clone().unwrap_or_else(|| ln.name.clone());
    if !is_rfc1123_label(&hostname) {
        err(
            blame.at("hostname", |l| l.hostname.is_some()),
            format!("`{hostname}` is not an RFC 1123 host name"),
            "use 1-63 lower-case letters, digits and '-', not at either end",
        );
    }
    let role = match p.role {
        Some(r) => r,
        None => {
            err(
                blame.at("role", |_| false),
                "no role".into(),
                "add `role = \"agent\"` or `role = \"server\"`",
            );
            Role::Agent
        }
    };
    let is_server_node = c.server.node == ln.name;
    if p.role.is_some() && (role == Role::Server) != is_server_node {
        err(
            blame.at("role", |l| l.role.is_some()),
            format!(
                "role `{}` but cluster.toml's `server.node` is `{}`",
                if role == Role::Server {
                    "server"
                } else {
                    "agent"
                },
                c.server.node
            ),
            "one server per cluster: make server.node name it, or make this node an agent",
        );
    }

    // `--base NAME` picks another catalogue entry (flavour and all); a path or URL only
    // replaces the file of the profile's base.
    let catalogue_override = overrides.base.as_ref().filter(|b| c.bases.contains_key(*b));
    let base = match catalogue_override
        .or(p.base.as_ref())
        .map(|n| n.to_string())
        .as_ref()
    {
        None => {
            err(
                blame.at("base", |_| false),
                "no base image".into(),
                "add `base = \"NAME\"` naming a [bases.NAME] entry of cluster.toml",
            );
            None
        }
        Some(name) => match c.bases.get(name) {
            None => {
                let known: Vec<_> = c.bases.keys().map(String::as_str).collect();
                err(
                    blame.at("base", |l| l.base.is_some()),
                    format!("no base `{name}` in the catalogue"),
                    &format!("use one of: {}", known.join(", ")),
                );
                None
            }
            Some(b) => Some(BaseSpec {
                name: name.clone(),
                url: match (&overrides.base, catalogue_override) {
                    (Some(path_or_url), None) => path_or_url.clone(),
                    _ => b.url.clone(),
                },
                sha256: b.sha256.clone(),
                family: b.family,
                release: b.release.clone(),
                arch: b.arch,
            }),
        },
    };

    // k3s version: pinned, for the node's arch, and an agent's not newer than the server's.
    let version = p
        .k3s_version
        .clone()
        .unwrap_or_else(|| c.k3s.version.clone());
    let version_blame = blame.at("k3s_version", |l| l.k3s_version.is_some());
    let artifact = match (c.k3s.releases.get(&version), &base) {
        (None, _) => {
            err(
                version_blame.clone(),
                format!("k3s `{version}` is not pinned in cluster.toml"),
                "pin it under [k3s.releases] or use a pinned version",
            );
            None
        }
        (Some(arches), Some(b)) => match arches.get(&b.arch) {
            Some(a) => Some(a.clone()),
            None => {
                err(
                    version_blame.clone(),
                    format!("k3s `{version}` has no {} binary pinned", b.arch),
                    &format!("add [k3s.releases.\"{version}\".{}]", b.arch),
                );
                None
            }
        },
        (Some(_), None) => None,
    };
    if role == Role::Agent && !is_server_node {
        if let Some(server_version) = server_k3s_version(lc, errors) {
            if let (Some(ours), Some(theirs)) = (
                K3sVersion::parse(&version),
                K3sVersion::parse(&server_version),
            ) {
                if ours > theirs {
                    errors.push(ProfileError::new(version_blame.0.clone(), version_blame.1.clone(), format!("k3s `{version}` is newer than the server's `{server_version}`; agents must not be newer than their server"), "upgrade the server first, or pin this node to the server's version"));
                }
            }
        }
    }
    let mut err = |(file, key): (PathBuf, String), problem: String, fix: &str| {
        errors.push(ProfileError::new(file, key, problem, fix));
    };

    let mut labels = p.labels.clone().unwrap_or_default();
    labels.retain(|k, v| {
        let ok = is_label_part(k, true) && is_label_part(v, false);
        if !ok {
            err(
                blame.at("labels", |l| {
                    l.labels.as_ref().is_some_and(|m| m.contains_key(k))
                }),
                format!("`{k}={v}` is not a valid Kubernetes label"),
                "use letters, digits, '-', '_', '.' (and '/' in the key)",
            );
        }
        ok
    });
    let taints = p.taints.clone().unwrap_or_default();
    for (i, t) in taints.iter().enumerate() {
        if let Some(problem) = taint_problem(t) {
            let (f, k) = blame.at("taints", |l| l.taints.is_some());
            err(
                (f, format!("{k}[{i}]")),
                problem,
                "write it like `dedicated=storage:NoSchedule`",
            );
        }
    }

    let network = p.network.clone().unwrap_or_default();
    if let Some(s) = &network.static_address {
        let nb = || blame.at("network.static", |l| l.network.is_some());
        if let Some(problem) = cidr_problem(&s.address) {
            let (f, k) = nb();
            err(
                (f, format!("{k}.address")),
                problem,
                "write it like 192.168.1.12/24",
            );
        }
        for (i, ip) in std::iter::once(&s.gateway).chain(&s.dns).enumerate() {
            if ip.parse::<std::net::Ipv4Addr>().is_err() {
                let (f, k) = nb();
                let key = if i == 0 {
                    format!("{k}.gateway")
                } else {
                    format!("{k}.dns[{}]", i - 1)
                };
                err(
                    (f, key),
                    format!("`{ip}` is not an IPv4 address"),
                    "write it like 192.168.1.1",
                );
            }
        }
    }

    let user = p.user.clone().unwrap_or_else(|| DEFAULT_USER.into());
    if !is_user_name(&user) {
        err(
            blame.at("user", |l| l.user.is_some()),
            format!("`{user}` is not a valid user name"),
            "start with a lower-case letter; use a-z, 0-9, '_' and '-', at most 32",
        );
    }
    let ssh_keys = p.ssh_keys.clone().unwrap_or_default();
    if ssh_keys.is_empty() {
        err(
            blame.at("ssh_keys", |_| false),
            "no SSH key: nobody could log in (password login is off)".into(),
            "add `ssh_keys = [\"ssh-ed25519 AAAA… you@host\"]` to [defaults] or the profile",
        );
    }
    for (i, k) in ssh_keys.iter().enumerate() {
        let kind = k.split_whitespace().next().unwrap_or("");
        if !(kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-"))
            || k.contains('\n')
        {
            let (f, key) = blame.at("ssh_keys", |l| {
                l.ssh_keys.as_ref().is_some_and(|v| v.contains(k))
            });
            err(
                (f, format!("{key}[{i}]")),
                "not an SSH public key line".into(),
                "paste the whole line of your `~/.ssh/id_ed25519.pub`",
            );
        }
    }
    let timezone = p
        .timezone
        .clone()
        .unwrap_or_else(|| DEFAULT_TIMEZONE.into());
    if !is_timezone(&timezone) {
        err(
            blame.at("timezone", |l| l.timezone.is_some()),
            format!("`{timezone}` is not a time zone name"),
            "use an IANA name such as Europe/Berlin",
        );
    }

    let storage = p.storage.clone().unwrap_or_default();
    let selector = storage.selector.clone();
    if selector.is_none() {
        err(
            blame.at("storage.selector", |_| false),
            "no storage selector: first boot would not know which disk is the SSD".into(),
            "add `[storage] selector = { usb_min_gb = 100 }` (or `{ by_id = \"usb-…\" }`)",
        );
    }
    let mount_point = storage
        .mount_point
        .clone()
        .unwrap_or_else(|| DEFAULT_MOUNT_POINT.into());
    if !mount_point.starts_with('/')
        || mount_point == "/"
        || mount_point.contains("..")
        || mount_point.contains(char::is_whitespace)
    {
        err(
            blame.at("storage.mount_point", |l| {
                l.storage.as_ref().is_some_and(|s| s.mount_point.is_some())
            }),
            format!("`{mount_point}` is not a usable mount point"),
            "use an absolute path without spaces, such as /mnt/storage",
        );
    }

    if let Some(url) = &p.report_url {
        if let Some(problem) = http_url_problem(url) {
            err(
                blame.at("report_url", |l| l.report_url.is_some()),
                problem,
                "give the URL `piimg watch` prints, or remove the key",
            );
        }
    }

    let kernel = p.kernel.clone().unwrap_or_default();
    let cmdline_extra = kernel.cmdline_extra.clone().unwrap_or_default();
    for (i, param) in cmdline_extra.iter().enumerate() {
        if param.is_empty() || param.contains(char::is_whitespace) {
            let (f, k) = blame.at("kernel.cmdline_extra", |l| {
                l.kernel.as_ref().is_some_and(|k| k.cmdline_extra.is_some())
            });
            err(
                (f, format!("{k}[{i}]")),
                format!("`{param}` is not one kernel parameter"),
                "give one parameter per list item, without spaces",
            );
        }
    }

    // Secrets.
    let secrets_path = lc.dir.join(&c.secrets);
    let secrets = match crate::secrets::load(&secrets_path) {
        Ok(s) => Some(s),
        Err(e) => {
            let (problem, fix) = e.problem_and_fix();
            errors.push(ProfileError::new(e.path(), "", problem, fix));
            None
        }
    };

    // Overlays: common, the role's, then the profile's own; then [[files]].
    let overlays_dir = lc.dir.join(
        c.overlays_dir
            .clone()
            .unwrap_or_else(|| "../overlays".into()),
    );
    let mut root_entries = Vec::new();
    let role_overlay = if role == Role::Server {
        "server"
    } else {
        "agent"
    };
    for name in ["common", role_overlay] {
        let dir = overlays_dir.join(name);
        if dir.is_dir() {
            root_entries.extend(overlay::walk(&dir, errors));
        }
    }
    for name in p.overlays.clone().unwrap_or_default() {
        let dir = overlays_dir.join(&name);
        if !is_rfc1123_label(&name) || !dir.is_dir() {
            errors.push(ProfileError::new(
                blame
                    .at("overlays", |l| {
                        l.overlays.as_ref().is_some_and(|o| o.contains(&name))
                    })
                    .0,
                "overlays",
                format!("no overlay folder `{}`", dir.display()),
                "create the folder or remove the name",
            ));
            continue;
        }
        root_entries.extend(overlay::walk(&dir, errors));
    }
    for (i, f) in p.files.clone().unwrap_or_default().into_iter().enumerate() {
        let (file, key) = blame.at("files", |l| {
            l.files
                .as_ref()
                .is_some_and(|v| v.iter().any(|x| x.path == f.path))
        });
        let key = format!("{key}[{i}]");
        if !f.path.starts_with('/') || f.path.contains("..") {
            errors.push(ProfileError::new(
                &file,
                format!("{key}.path"),
                format!("`{}` is not an absolute path", f.path),
                "write the path as in the image, starting with /",
            ));
        }
        let mode = match f.mode.as_deref().map(parse_mode) {
            None => 0o644,
            Some(Some(m)) => m,
            Some(None) => {
                errors.push(ProfileError::new(
                    &file,
                    format!("{key}.mode"),
                    "not an octal mode".to_string(),
                    "write it like \"0644\"",
                ));
                0o644
            }
        };
        let kind = match (f.content, f.source) {
            (Some(content), None) => Some(EntryKind::Text { content }),
            (None, Some(src)) => {
                let source = lc.dir.join(src);
                match std::fs::read(&source) {
                    Ok(bytes) => Some(EntryKind::File {
                        sha256: hex::encode(Sha256::digest(&bytes)),
                        source,
                    }),
                    Err(e) => {
                        errors.push(ProfileError::new(
                            &file,
                            format!("{key}.source"),
                            format!("cannot read {}: {e}", source.display()),
                            "give a path relative to the profiles folder",
                        ));
                        None
                    }
                }
            }
            _ => {
                errors.push(ProfileError::new(
                    &file,
                    &key,
                    "needs exactly one of `content` and `source`".to_string(),
                    "keep one of the two",
                ));
                None
            }
        };
        if let Some(kind) = kind {
            root_entries.push(RootEntry {
                path: f.path,
                kind,
                mode,
                uid: f.uid.unwrap_or(0),
                gid: f.gid.unwrap_or(0),
            });
        }
    }

    let (base, artifact, selector, secrets) = (base?, artifact?, selector?, secrets?);
    let mut digest = Sha256::new();
    digest.update(lc.sha256.as_bytes());
    digest.update(ln.sha256.as_bytes());
    let mut profile_files = vec![lc.file.clone()];
    profile_files.extend(ln.files.iter().cloned());
    Some(NodeSpec {
        cluster: c.name.clone(),
        storage: StorageSpec {
            selector,
            mount_point,
            label: format!(
                "piimg-{}",
                secrets.cluster_id.get(..8).unwrap_or(&secrets.cluster_id)
            ),
            wipe: storage.wipe,
        },
        cluster_id: secrets.cluster_id.clone(),
        node: ln.name.clone(),
        hostname,
        role,
        firstboot_artifact: c.firstboot.get(&base.arch).cloned(),
        base,
        k3s: K3sSpec {
            version,
            artifact,
            server_url: c.server.url.clone(),
            labels,
            taints,
        },
        network: NetworkSpec {
            interface: network.interface,
            static_address: network.static_address,
        },
        user,
        ssh_keys,
        timezone,
        report_url: p.report_url.clone(),
        kernel: KernelSpec {
            keep_16k_pages: kernel.keep_16k_pages.unwrap_or(false),
            usb_max_current: kernel.usb_max_current.unwrap_or(false),
            cmdline_extra,
        },
        root_entries,
        secrets,
        profiles_dir: lc.dir.clone(),
        profile_files,
        profile_sha256: hex::encode(digest.finalize()),
        overrides: overrides.clone(),
    })
}

/// The server's k3s version, from its profile chain (or the cluster default).
fn server_k3s_version(lc: &LoadedCluster, errors: &mut Vec<ProfileError>) -> Option<String> {
    let c = &lc.cluster;
    match profile::load_node(&lc.dir, &c.server.node) {
        Ok(server) => {
            let mut p = c.defaults.clone();
            p.merge_from(server.profile);
            Some(p.k3s_version.unwrap_or_else(|| c.k3s.version.clone()))
        }
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

trait MergeFrom {
    fn merge_from(&mut self, upper: Self);
}

impl MergeFrom for NodeProfile {
    fn merge_from(&mut self, upper: Self) {
        crate::profile::Merge::merge(self, upper);
    }
}
