//! Checks of a node's merged profile, one function per concern; each fills its defaults and
//! records problems in the [`Ctx`] rather than stopping at the first.

use super::check::*;
use super::resolve::{server_k3s_version, server_profile, Ctx};
use super::{BaseSpec, HostsEntry, K3sSpec, KernelSpec, NetworkSpec, Overrides};
use piimg_firstboot::config::{DiskSelector, Role};

/// Default mount point of the SSD.
pub const DEFAULT_MOUNT_POINT: &str = "/mnt/storage";
/// Default login user.
pub const DEFAULT_USER: &str = "admin";
/// Default time zone.
pub const DEFAULT_TIMEZONE: &str = "Etc/UTC";

/// Hostname and role; the node must be listed and agree with `server.node`.
pub(super) fn identity(ctx: &mut Ctx<'_>) -> (String, Role) {
    let c = &ctx.lc.cluster;
    let name = ctx.ln.name.clone();
    if !c.nodes.contains(&name) {
        let at = (ctx.lc.file.clone(), "nodes".to_string());
        ctx.err(
            at,
            format!("node `{name}` is not listed"),
            "add it to `nodes` in cluster.toml",
        );
    }
    let hostname = ctx.p.hostname.clone().unwrap_or_else(|| name.clone());
    if !is_rfc1123_label(&hostname) {
        let at = ctx.blame("hostname", |l| l.hostname.is_some());
        ctx.err(
            at,
            format!("`{hostname}` is not an RFC 1123 host name"),
            "use 1-63 lower-case letters, digits and '-', not at either end",
        );
    }
    let is_server_node = c.server.node == name;
    let role = match ctx.p.role {
        Some(r) => r,
        None => {
            let at = ctx.blame("role", |_| false);
            ctx.err(
                at,
                "no role",
                "add `role = \"agent\"` or `role = \"server\"`",
            );
            return (hostname, Role::Agent);
        }
    };
    if (role == Role::Server) != is_server_node {
        let server = c.server.node.clone();
        let at = ctx.blame("role", |l| l.role.is_some());
        let role_name = if role == Role::Server {
            "server"
        } else {
            "agent"
        };
        ctx.err(
            at,
            format!("role `{role_name}` but cluster.toml's `server.node` is `{server}`"),
            "one server per cluster: make server.node name it, or make this node an agent",
        );
    }
    (hostname, role)
}

/// A catalogue digest nobody confirmed must not pass for a confirmed one: without
/// `sha256_from` (where it was published) the entry is refused, unless `--allow-unverified`.
pub(super) fn require_provenance(
    ctx: &mut Ctx<'_>,
    overrides: &Overrides,
    key: String,
    sha256_from: &Option<String>,
) {
    if overrides.allow_unverified || sha256_from.as_deref().is_some_and(|s| !s.trim().is_empty()) {
        return;
    }
    let file = ctx.lc.file.clone();
    ctx.err(
        (file, format!("{key}.sha256_from")),
        format!("the digest of `{key}` was never confirmed: no `sha256_from` says where it was published"),
        &format!(
            "check `{key}.sha256` against the checksum the project publishes beside the download, then add `sha256_from = \"<that checksum file's URL>\"`; to build with it unconfirmed, knowingly, pass --allow-unverified"
        ),
    );
}

/// The base from the catalogue. `--base NAME` picks another catalogue entry (flavour and all);
/// a path or URL only replaces the file of the profile's base.
pub(super) fn base(ctx: &mut Ctx<'_>, overrides: &Overrides) -> Option<BaseSpec> {
    let c = &ctx.lc.cluster;
    let by_name = overrides.base.as_ref().filter(|b| c.bases.contains_key(*b));
    let Some(name) = by_name.or(ctx.p.base.as_ref()).cloned() else {
        let at = ctx.blame("base", |_| false);
        ctx.err(
            at,
            "no base image",
            "add `base = \"NAME\"` naming a [bases.NAME] entry of cluster.toml",
        );
        return None;
    };
    let Some(b) = c.bases.get(&name) else {
        let known: Vec<_> = c.bases.keys().map(String::as_str).collect();
        let fix = format!("use one of: {}", known.join(", "));
        let at = ctx.blame("base", |l| l.base.is_some());
        ctx.err(at, format!("no base `{name}` in the catalogue"), &fix);
        return None;
    };
    // A path or URL given with --base replaces the file: its digest is recorded, not pinned.
    if !(overrides.base.is_some() && by_name.is_none()) {
        let from = b.sha256_from.clone();
        require_provenance(ctx, overrides, format!("bases.{name}"), &from);
    }
    Some(BaseSpec {
        name: name.clone(),
        url: match (&overrides.base, by_name) {
            (Some(path_or_url), None) => path_or_url.clone(),
            _ => b.url.clone(),
        },
        sha256: b.sha256.clone(),
        family: b.family,
        release: b.release.clone(),
        arch: b.arch,
    })
}

/// k3s: a pinned version with a binary for the node's arch, not newer than the server's on
/// an agent; valid labels and taints.
pub(super) fn k3s(
    ctx: &mut Ctx<'_>,
    base: Option<&BaseSpec>,
    role: Role,
    overrides: &Overrides,
) -> Option<K3sSpec> {
    let c = &ctx.lc.cluster;
    let version = ctx
        .p
        .k3s_version
        .clone()
        .unwrap_or_else(|| c.k3s.version.clone());
    let at = ctx.blame("k3s_version", |l| l.k3s_version.is_some());
    let artifact = match (c.k3s.releases.get(&version), base) {
        (None, _) => {
            ctx.err(
                at.clone(),
                format!("k3s `{version}` is not pinned in cluster.toml"),
                "pin it under [k3s.releases] or use a pinned version",
            );
            None
        }
        (Some(arches), Some(b)) => {
            let a = arches.get(&b.arch).cloned();
            match &a {
                None => {
                    let fix = format!("add [k3s.releases.\"{version}\".{}]", b.arch);
                    let problem = format!("k3s `{version}` has no {} binary pinned", b.arch);
                    ctx.err(at.clone(), problem, &fix);
                }
                // --k3s-bin replaces the pinned binary: its digest is not the catalogue's.
                Some(a) if overrides.k3s_bin.is_none() => require_provenance(
                    ctx,
                    overrides,
                    format!("k3s.releases.\"{version}\".{}", b.arch),
                    &a.sha256_from,
                ),
                Some(_) => {}
            }
            a
        }
        (Some(_), None) => None,
    };
    if role == Role::Agent && c.server.node != ctx.ln.name {
        if let Some(server_version) = server_k3s_version(ctx) {
            let newer = match (
                K3sVersion::parse(&version),
                K3sVersion::parse(&server_version),
            ) {
                (Some(ours), Some(theirs)) => ours > theirs,
                _ => false,
            };
            if newer {
                ctx.err(
                    at,
                    format!("k3s `{version}` is newer than the server's `{server_version}`; agents must not be newer than their server"),
                    "upgrade the server first, or pin this node to the server's version",
                );
            }
        }
    }
    let labels = ctx.p.labels.clone().unwrap_or_default();
    for (k, v) in &labels {
        if !(is_label_part(k, true) && is_label_part(v, false)) {
            let at = ctx.blame("labels", |l| {
                l.labels.as_ref().is_some_and(|m| m.contains_key(k))
            });
            ctx.err(
                (at.0, format!("{}.\"{k}\"", at.1)),
                format!("`{k}={v}` is not a valid Kubernetes label"),
                "use letters, digits, '-', '_', '.' (and '/' in the key)",
            );
        } else if let Some(problem) = kubelet_label_problem(k) {
            let at = ctx.blame("labels", |l| {
                l.labels.as_ref().is_some_and(|m| m.contains_key(k))
            });
            ctx.err(
                (at.0, format!("{}.\"{k}\"", at.1)),
                problem,
                &format!(
                    "use a prefix of your own (e.g. `piimg.dev/role`), or one the kubelet allows: {} (and subdomains), or one of {}; a role such as `node-role.kubernetes.io/worker` can only be set from the server (`kubectl label node NAME …`)",
                    KUBELET_LABEL_NAMESPACES.join(", "),
                    KUBELET_LABELS.join(", ")
                ),
            );
        }
    }
    let taints = ctx.p.taints.clone().unwrap_or_default();
    for (i, t) in taints.iter().enumerate() {
        if let Some(problem) = taint_problem(t) {
            let (f, k) = ctx.blame("taints", |l| l.taints.is_some());
            ctx.err(
                (f, format!("{k}[{i}]")),
                problem,
                "write it like `dedicated=storage:NoSchedule`",
            );
        }
    }
    let server_hosts_entry = server_hosts_entry(ctx);
    Some(K3sSpec {
        version,
        artifact: artifact?,
        server_url: c.server.url.clone(),
        server_hosts_entry,
        labels,
        taints,
    })
}

/// How every node resolves the server's name: the address from cluster.toml's
/// `server.address`, else the server profile's static address, written to `/etc/hosts`. k3s
/// resolves through `/etc/hosts` and DNS only (see [`is_mdns_name`]), so a `.local` name
/// without a known address can never be reached: refused here, with the fix.
fn server_hosts_entry(ctx: &mut Ctx<'_>) -> Option<HostsEntry> {
    let c = &ctx.lc.cluster;
    let host = url_host(&c.server.url)?;
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return None;
    }
    let address = match &c.server.address {
        Some(a) => a.parse::<std::net::Ipv4Addr>().ok(),
        None => server_static_address(ctx),
    };
    match address {
        Some(ip) => Some(HostsEntry {
            address: ip.to_string(),
            name: host,
        }),
        None if is_mdns_name(&host) => {
            let file = ctx.lc.file.clone();
            ctx.err(
                (file, "server.url".into()),
                format!(
                    "`{host}` is an mDNS (.local) name, and no node could resolve it: k3s is a static musl binary that looks names up only in /etc/hosts and DNS"
                ),
                &format!(
                    "give the server a static address in profiles/{}.toml ([network] static = {{ address = \"192.168.1.10/24\", … }}) or set server.address in cluster.toml, and piimg maps the name in every node's /etc/hosts; or use the server's IP address or a DNS name in server.url",
                    c.server.node
                ),
            );
            None
        }
        // A DNS name, left to the network's resolver.
        None => None,
    }
}

/// The server profile's static IPv4 address, if it has one.
fn server_static_address(ctx: &mut Ctx<'_>) -> Option<std::net::Ipv4Addr> {
    let network = server_profile(ctx)?.network?;
    ipv4_of(&network.static_address?.address)
}

/// DHCP, or a static address that parses.
pub(super) fn network(ctx: &mut Ctx<'_>) -> NetworkSpec {
    let network = ctx.p.network.clone().unwrap_or_default();
    if let Some(s) = &network.static_address {
        let (f, k) = ctx.blame("network.static", |l| l.network.is_some());
        if let Some(problem) = cidr_problem(&s.address) {
            ctx.err(
                (f.clone(), format!("{k}.address")),
                problem,
                "write it like 192.168.1.12/24",
            );
        }
        for (i, ip) in std::iter::once(&s.gateway).chain(&s.dns).enumerate() {
            if ip.parse::<std::net::Ipv4Addr>().is_err() {
                let key = match i {
                    0 => format!("{k}.gateway"),
                    _ => format!("{k}.dns[{}]", i - 1),
                };
                ctx.err(
                    (f.clone(), key),
                    format!("`{ip}` is not an IPv4 address"),
                    "write it like 192.168.1.1",
                );
            }
        }
    }
    NetworkSpec {
        interface: network.interface,
        static_address: network.static_address,
    }
}

/// User name, SSH keys (at least one: password login is off) and time zone.
pub(super) fn access(ctx: &mut Ctx<'_>) -> (String, Vec<String>, String) {
    let user = ctx.p.user.clone().unwrap_or_else(|| DEFAULT_USER.into());
    if !is_user_name(&user) {
        let at = ctx.blame("user", |l| l.user.is_some());
        ctx.err(
            at,
            format!("`{user}` is not a valid user name"),
            "start with a lower-case letter; use a-z, 0-9, '_' and '-', at most 32",
        );
    }
    if SYSTEM_ACCOUNTS.contains(&user.as_str()) || user.starts_with("systemd-") {
        let at = ctx.blame("user", |l| l.user.is_some());
        ctx.err(
            at,
            format!("`{user}` is a system account of the base: piimg would turn it into the login user (uid 1000) and the system would lose it"),
            "choose a name of your own for the login user, such as `admin`",
        );
    }
    let ssh_keys = ctx.p.ssh_keys.clone().unwrap_or_default();
    if ssh_keys.is_empty() {
        let at = ctx.blame("ssh_keys", |_| false);
        ctx.err(
            at,
            "no SSH key: nobody could log in (password login is off)",
            "add `ssh_keys = [\"ssh-ed25519 AAAA… you@host\"]` to [defaults] or the profile",
        );
    }
    for (i, k) in ssh_keys.iter().enumerate() {
        let kind = k.split_whitespace().next().unwrap_or("");
        let known = ["ssh-", "ecdsa-", "sk-"]
            .iter()
            .any(|p| kind.starts_with(p));
        if !known || k.contains('\n') {
            let (f, key) = ctx.blame("ssh_keys", |l| {
                l.ssh_keys.as_ref().is_some_and(|v| v.contains(k))
            });
            ctx.err(
                (f, format!("{key}[{i}]")),
                "not an SSH public key line",
                "paste the whole line of your `~/.ssh/id_ed25519.pub`",
            );
        }
    }
    let timezone = ctx
        .p
        .timezone
        .clone()
        .unwrap_or_else(|| DEFAULT_TIMEZONE.into());
    if !is_timezone(&timezone) {
        let at = ctx.blame("timezone", |l| l.timezone.is_some());
        ctx.err(
            at,
            format!("`{timezone}` is not a time zone name"),
            "use an IANA name such as Europe/Berlin",
        );
    }
    (user, ssh_keys, timezone)
}

/// The SSD: a selector (required), a mount point, an optional wipe serial.
pub(super) fn storage(ctx: &mut Ctx<'_>) -> Option<(DiskSelector, String, Option<String>)> {
    let storage = ctx.p.storage.clone().unwrap_or_default();
    if storage.selector.is_none() {
        let at = ctx.blame("storage.selector", |_| false);
        ctx.err(
            at,
            "no storage selector: first boot would not know which disk is the SSD",
            "add `[storage] selector = { usb_min_gb = 100 }` (or `{ by_id = \"usb-…\" }`)",
        );
    }
    let mount_point = storage
        .mount_point
        .clone()
        .unwrap_or_else(|| DEFAULT_MOUNT_POINT.into());
    let usable = mount_point.starts_with('/')
        && mount_point != "/"
        && !mount_point.contains("..")
        && !mount_point.contains(char::is_whitespace);
    if !usable {
        let at = ctx.blame("storage.mount_point", |l| {
            l.storage.as_ref().is_some_and(|s| s.mount_point.is_some())
        });
        ctx.err(
            at,
            format!("`{mount_point}` is not a usable mount point"),
            "use an absolute path without spaces, such as /mnt/storage",
        );
    }
    Some((storage.selector?, mount_point, storage.wipe))
}

/// The readiness report URL, if any, must be http(s).
pub(super) fn report_url(ctx: &mut Ctx<'_>) -> Option<String> {
    let url = ctx.p.report_url.clone()?;
    if let Some(problem) = http_url_problem(&url) {
        let at = ctx.blame("report_url", |l| l.report_url.is_some());
        ctx.err(
            at,
            problem,
            "give the URL `piimg watch` prints, or remove the key",
        );
    } else if url_host(&url).is_some_and(|h| is_mdns_name(&h)) {
        let at = ctx.blame("report_url", |l| l.report_url.is_some());
        ctx.err(
            at,
            format!("`{url}` names an mDNS (.local) host, which piimg-firstboot (a static musl binary: /etc/hosts and DNS only) cannot resolve"),
            "use the workstation's IP address (the one `piimg watch` prints) or a DNS name",
        );
    }
    Some(url)
}

/// Boot settings; each extra parameter one token.
pub(super) fn kernel(ctx: &mut Ctx<'_>) -> KernelSpec {
    let kernel = ctx.p.kernel.clone().unwrap_or_default();
    let cmdline_extra = kernel.cmdline_extra.clone().unwrap_or_default();
    for (i, param) in cmdline_extra.iter().enumerate() {
        if param.is_empty() || param.contains(char::is_whitespace) {
            let (f, k) = ctx.blame("kernel.cmdline_extra", |l| {
                l.kernel.as_ref().is_some_and(|k| k.cmdline_extra.is_some())
            });
            ctx.err(
                (f, format!("{k}[{i}]")),
                format!("`{param}` is not one kernel parameter"),
                "give one parameter per list item, without spaces",
            );
        }
    }
    KernelSpec {
        keep_16k_pages: kernel.keep_16k_pages.unwrap_or(false),
        usb_max_current: kernel.usb_max_current.unwrap_or(false),
        cmdline_extra,
    }
}

/// The board of a fleet member (`match`), if the profile names one; a value no board could
/// have is refused.
pub(super) fn board(ctx: &mut Ctx<'_>) -> Option<piimg_firstboot::fleet::BoardMatch> {
    let board = ctx.p.board.clone()?;
    if let Some(problem) = board.problem() {
        let at = ctx.blame("match", |l| l.board.is_some());
        ctx.err(
            at,
            problem,
            "copy the serial or MAC the board reports (`piimg watch` shows an unmatched board's), e.g. `match = { serial = \"10000000abcd1234\" }`",
        );
    }
    Some(board)
}
