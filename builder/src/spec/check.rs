//! Small value checks used by [`super::resolve`]. Each returns what is wrong, or nothing.

use std::net::Ipv4Addr;

pub use crate::profile::is_rfc1123_label;

/// A k3s release tag `vMAJOR.MINOR.PATCH+k3sN`, ordered numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct K3sVersion(pub u32, pub u32, pub u32, pub u32);

impl K3sVersion {
    /// Parses `v1.31.4+k3s1`.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix('v')?;
        let (semver, build) = rest.split_once("+k3s")?;
        let mut parts = semver.split('.').map(|p| p.parse::<u32>().ok());
        let v = K3sVersion(
            parts.next()??,
            parts.next()??,
            parts.next()??,
            build.parse().ok()?,
        );
        parts.next().is_none().then_some(v)
    }
}

/// Why `url` does not look like a server agents can reach, if it does not.
pub fn server_url_problem(url: &str) -> Option<String> {
    let Some(rest) = url.strip_prefix("https://") else {
        return Some(format!(
            "`{url}` is not an https:// URL (k3s serves its API over TLS)"
        ));
    };
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') {
        return Some(format!(
            "`{url}` has a path; k3s wants only scheme, host and port"
        ));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Some(format!("`{url}` has an invalid port `{port}`"));
        }
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        if ip.is_loopback() || ip.is_unspecified() {
            return Some(format!(
                "`{url}` points at {ip}, which other nodes cannot reach"
            ));
        }
        return None;
    }
    if host == "localhost" || host.ends_with(".localhost") {
        return Some(format!(
            "`{url}` points at localhost, which other nodes cannot reach"
        ));
    }
    if host.is_empty() || !host.split('.').all(is_rfc1123_label) {
        return Some(format!("`{url}` has no valid host name"));
    }
    None
}

/// The host of an `http(s)://host[:port][/…]` URL, lower-cased (None when it has none).
pub fn url_host(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// Whether `host` is a multicast-DNS name (`NAME.local`, RFC 6762). Neither k3s nor
/// piimg-firstboot can resolve one: both are static musl binaries, and musl has no NSS
/// (k3s-io/k3s `Dockerfile.dapper` builds on Alpine, `scripts/build` sets `STATIC_BUILD`), so
/// they look names up in `/etc/hosts` and DNS only; mDNS is an NSS module (`nss-mdns`).
pub fn is_mdns_name(host: &str) -> bool {
    host == "local" || host.ends_with(".local")
}

/// The IPv4 address of `a.b.c.d/prefix` or `a.b.c.d`.
pub fn ipv4_of(addr: &str) -> Option<Ipv4Addr> {
    addr.split('/').next()?.parse().ok()
}

/// Why `url` is not an http(s) URL, if it is not.
pub fn http_url_problem(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') => None,
        _ => Some(format!("`{url}` is not an http:// or https:// URL")),
    }
}

/// Whether `s` is 64 lower-case hex digits.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses an octal mode string such as `"0644"`.
pub fn parse_mode(s: &str) -> Option<u32> {
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777)
}

/// A Unix user name as `useradd` accepts it by default.
pub fn is_user_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b == b'_')
        && s.len() <= 32
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Accounts every Debian-based base has below uid 1000: base-passwd's fixed users (its
/// `passwd.master`) and the ones systemd, sshd and friends create. piimg's login user takes uid
/// 1000 and rewrites the account of that name, so one of these would lose its real account (a
/// `user = "root"` left no uid-0 root). The build also refuses, at apply, any name the base
/// holds below uid 1000 that this list misses.
pub const SYSTEM_ACCOUNTS: [&str; 28] = [
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    "_apt",
    "messagebus",
    "sshd",
    "syslog",
    "polkitd",
    "avahi",
    "dnsmasq",
    "tss",
    "uuidd",
    "tcpdump",
];

/// Why `addr` is not `a.b.c.d/prefix`, if it is not.
pub fn cidr_problem(addr: &str) -> Option<String> {
    let ok = addr.split_once('/').is_some_and(|(ip, prefix)| {
        ip.parse::<Ipv4Addr>().is_ok() && prefix.parse::<u8>().is_ok_and(|p| (1..=32).contains(&p))
    });
    (!ok).then(|| format!("`{addr}` is not an IPv4 address with prefix (192.168.1.12/24)"))
}

/// Why `taint` is not `key[=value]:Effect`, if it is not.
pub fn taint_problem(taint: &str) -> Option<String> {
    let ok = taint.rsplit_once(':').is_some_and(|(kv, effect)| {
        matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
            && !kv.split('=').next().unwrap_or("").is_empty()
    });
    (!ok).then(|| {
        format!("`{taint}` is not `key=value:Effect` with Effect NoSchedule, PreferNoSchedule or NoExecute")
    })
}

/// Whether `s` is a Kubernetes label key or value (loosely: no spaces, `=`, or quotes).
pub fn is_label_part(s: &str, key: bool) -> bool {
    (!s.is_empty() || !key)
        && s.len() <= 253
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') || (key && b == b'/')
        })
}

/// Label keys in the `kubernetes.io`/`k8s.io` namespaces that a kubelet may set on its own
/// Node: kubernetes/kubernetes `pkg/kubelet/apis/well_known_labels.go` (`kubeletLabels`,
/// read at a stored older commit) and the topology labels the kubelet sets itself since 1.17
/// (`updateDefaultLabels` in `pkg/kubelet/kubelet_node_status.go`); conservative: a key whose
/// acceptance by 1.31's kubelet we could not confirm is left out and refused.
pub const KUBELET_LABELS: [&str; 10] = [
    "kubernetes.io/hostname",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
];

/// Namespaces (and their subdomains) a kubelet may label its own Node with
/// (`kubeletLabelNamespaces` in the same file).
pub const KUBELET_LABEL_NAMESPACES: [&str; 2] = ["kubelet.kubernetes.io", "node.kubernetes.io"];

/// Why the kubelet would refuse node label `key` at start, if it would: k3s hands
/// `node-label` to the kubelet's `--node-labels`, and the kubelet exits on a `kubernetes.io`
/// or `k8s.io` key outside its allowed set ("unknown 'kubernetes.io' or 'k8s.io' labels
/// specified with --node-labels", `cmd/kubelet/app/options/options.go`), so the node never
/// registers. `node-role.kubernetes.io/*` is the common case: only the server may set it.
pub fn kubelet_label_problem(key: &str) -> Option<String> {
    let namespace = key.split_once('/')?.0;
    let in_ns = |ns: &str| namespace == ns || namespace.ends_with(&format!(".{ns}"));
    if !(in_ns("kubernetes.io") || in_ns("k8s.io")) {
        return None;
    }
    if KUBELET_LABELS.contains(&key) || KUBELET_LABEL_NAMESPACES.iter().any(|ns| in_ns(ns)) {
        return None;
    }
    Some(format!(
        "`{key}` is in the kubernetes.io/k8s.io namespace, which the kubelet refuses to set on its own Node (it exits at start: \"unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels\"), so the node would never join"
    ))
}

/// Whether `tz` looks like an IANA zone name (`Europe/Berlin`, `Etc/UTC`, `UTC`).
pub fn is_timezone(tz: &str) -> bool {
    !tz.is_empty()
        && !tz.starts_with('/')
        && !tz.contains("..")
        && tz
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_the_kubelet_refuses() {
        for bad in [
            "node-role.kubernetes.io/worker",
            "kubernetes.io/role",
            "example.k8s.io/x",
            "k8s.io/x",
        ] {
            assert!(kubelet_label_problem(bad).is_some(), "{bad}");
        }
        for ok in [
            "piimg.dev/tier",
            "plain",
            "node.kubernetes.io/pool",
            "x.node.kubernetes.io/pool",
            "kubelet.kubernetes.io/x",
            "topology.kubernetes.io/zone",
            "kubernetes.io.example.com/x",
        ] {
            assert!(kubelet_label_problem(ok).is_none(), "{ok}");
        }
    }

    #[test]
    fn labels_and_hostnames() {
        assert!(is_rfc1123_label("worker-2"));
        for bad in ["Worker", "-a", "a-", "a_b", "", &"a".repeat(64)] {
            assert!(!is_rfc1123_label(bad), "{bad}");
        }
    }

    #[test]
    fn k3s_versions_order() {
        let a = K3sVersion::parse("v1.31.4+k3s1").unwrap();
        let b = K3sVersion::parse("v1.31.4+k3s2").unwrap();
        let c = K3sVersion::parse("v1.32.0+k3s1").unwrap();
        assert!(a < b && b < c);
        assert_eq!(K3sVersion::parse("1.31.4"), None);
    }

    #[test]
    fn server_urls() {
        assert_eq!(server_url_problem("https://control-plane.local:6443"), None);
        assert_eq!(server_url_problem("https://192.168.1.10:6443"), None);
        for bad in [
            "http://cp:6443",
            "https://127.0.0.1:6443",
            "https://localhost:6443",
            "https://cp:99999",
            "https://:6443",
            "https://cp:6443/api",
        ] {
            assert!(server_url_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn taints() {
        assert_eq!(taint_problem("node-role=storage:NoSchedule"), None);
        assert!(taint_problem("a=b").is_some());
        assert!(taint_problem("a=b:Sometimes").is_some());
    }
}
