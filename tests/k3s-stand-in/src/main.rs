//! A stand-in `k3s` for the QEMU boot test (`scripts/e2e-boot`) and its own tests: what
//! `piimg-firstboot` and a joining agent depend on, done the way k3s does it, with k3s's file
//! layout, so first boot runs unchanged against it. Test code, never shipped.
//!
//! Followed from the k3s sources (file named beside each behaviour; read through the code
//! search of `k3s-io/k3s`, which could not pin v1.31.4+k3s1, so these are other commits, not
//! checked against that tag: `pkg/clientaccess/token.go` at 0566d45,
//! `pkg/nodepassword/validate.go` at 2a722cf, `pkg/nodepassword/nodepassword.go` at 0103601
//! (older: `rancher/k3s` imports), `pkg/daemons/control/deps/deps.go` at 09ac65a,
//! `pkg/server/router.go` at 00831f9 (older; newer trees keep the handlers elsewhere), and,
//! seen only as search excerpts, `pkg/server/server.go` printTokens, `pkg/agent/run.go`
//! createProxyAndValidateToken and `pkg/agent/config/config.go` ensureNodePassword /
//! getNodeNamedCrt):
//!
//! - `k3s server` (unit `k3s.service`, `Type=notify`): reads `/etc/rancher/k3s/config.yaml`
//!   (+ `config.yaml.d/`), refuses to run unless its `data-dir` is on a mounted filesystem
//!   other than `/` (what the piimg drop-in promises). On its first start it makes, under
//!   `<data-dir>/server/tls/` (`deps.go` names): a self-signed `server-ca.crt`/`.key`, the
//!   serving certificate `serving-kube-apiserver.crt`/`.key` for its node name, `tls-san`
//!   entries, the names and IPs k3s always adds (`localhost`, `kubernetes…`, 127.0.0.1, ::1,
//!   10.43.0.1) and the host's addresses, a `client-ca.crt`/`.key` and the admin's
//!   `client-admin.crt`/`.key`; later starts reuse them (see `pki.rs`). It writes
//!   `<data-dir>/server/token` = `K10<sha256 of server-ca.crt>::server:<token>` (the config's
//!   `token`, else the one from an earlier start, else random), `node-token` as a symlink to
//!   it and `agent-token` = `K10…::node:<agent-token>` when one is configured
//!   (`pkg/server/server.go`, printTokens), and `/etc/rancher/k3s/k3s.yaml` like k3s's
//!   (`https://127.0.0.1:6443`, `certificate-authority-data`, the admin's
//!   `client-certificate-data`/`client-key-data`, mode `write-kubeconfig-mode`, default
//!   0600). It checks its own node password like any agent's, tells systemd it is ready and
//!   answers HTTPS on `0.0.0.0:6443`: `/cacerts` and `/ping` for anyone (`router.go`);
//!   `/v1-k3s/serving-kubelet.crt` and `/v1-k3s/client-kubelet.crt` for an agent with a valid
//!   token (basic auth `node:<token or agent-token>` or `server:<token>`, 401 otherwise) and
//!   `K3s-Node-Name` / `K3s-Node-Password` headers (403 when the name has another password on
//!   record, see `nodepass.rs`); `/readyz` and `/api/v1/nodes/NAME` only with a client
//!   certificate from its client CA (anonymous auth off: 401). A Node exists once its kubelet
//!   got a serving certificate (itself included) and is kept in the data-dir across
//!   restarts, like the datastore's; its `Ready` is `True`, or `Unknown` once its password
//!   was refused since this start. It logs each join and each Ready answer.
//! - `k3s agent` (unit `k3s-agent.service`): parses its `token` (`token.rs`), GETs
//!   `/cacerts` without verifying, GETs it again verified against that bundle (server name
//!   from its `server:` URL), and refuses the server if the token pins another CA ("token CA
//!   hash does not match the Cluster CA certificate hash"), or warns that the CA is not
//!   pinned for a short token; retries every 2 s. Then it asks for its kubelet serving and
//!   client certificates with its node password, retrying every 5 s ("Waiting to retrieve
//!   agent configuration; server is not ready: Node password rejected, …"); only once given
//!   them does it write `<data-dir>/agent/` `server-ca.crt`, `serving-kubelet.crt`/`.key`,
//!   `client-kubelet.crt`/`.key` and `kubelet.kubeconfig` (paths to those, as k3s writes it),
//!   answer the kubelet's `http://127.0.0.1:10248/healthz` and notify systemd: a refused
//!   agent never looks Ready.
//! - `k3s kubectl [--kubeconfig F] get --raw /readyz` and `… get node NODE -o jsonpath=…`:
//!   TLS to the kubeconfig's `server`, trusting only its `certificate-authority(-data)`, with
//!   its `client-certificate(-data)` and `client-key(-data)`.
//! - `k3s --version`.
//!
//! Names resolve as in a static musl binary (std's `ToSocketAddrs` → musl `getaddrinfo`):
//! `/etc/hosts`, then DNS. No NSS, so no mDNS: a `.local` name (the example cluster's
//! `control-plane.local`) only works through an `/etc/hosts` entry, as for the real k3s.
//!
//! Where it still differs from k3s:
//! - No apiserver, kubelet, containerd, flannel, datastore or manifests: a Node is Ready as
//!   soon as its agent got its serving certificate, and stays so with no kubelet heartbeat
//!   (Nodes are files in `<data-dir>/server/db/stand-in-nodes/`); any client certificate from the client
//!   CA may read any Node (no RBAC or Node authorizer); a node's certificates are not checked
//!   against its name.
//! - No request-header CA, etcd CAs, `service.key` or supervisor certificates; a CA made in
//!   advance (`generate-custom-ca-certs.sh`) is honoured for `server-ca` and `client-ca` only,
//!   and only as a single self-signed certificate (no intermediate chains).
//! - Node labels (`node-label`) are only logged by the agent when it registers; k3s's kubelet
//!   registers the Node with them.
//! - The agent talks to the server directly: no client load balancer on 127.0.0.1:6444, so
//!   `kubelet.kubeconfig` names the `server:` URL itself.
//! - The agent does not first try the host's CA bundle for `/cacerts` (k3s does, and then
//!   skips the hash check for a publicly trusted server).
//! - Node passwords are kept as salted SHA-256 files in `<data-dir>/server/cred/
//!   node-passwords/`, not scrypt hashes in Secrets; kubeadm bootstrap tokens, `with-node-id`,
//!   CSRs and certificate rotation are not handled; the serving certificate is re-signed
//!   only when it no longer covers a name or has expired; `/readyz` is always `ok`.
//!
//! Test seams (unset on a node): `PIIMG_STANDIN_ROOT` prefixes `/etc/rancher/...` (config,
//! `k3s.yaml`, the node password) and skips the mount check; `PIIMG_STANDIN_API_ADDR`
//! (default `0.0.0.0:6443`) and `PIIMG_STANDIN_KUBELET_ADDR` (default `127.0.0.1:10248`)
//! are where the server and the kubelet's healthz listen.

mod agent;
mod config;
mod http;
mod kubectl;
mod nodepass;
mod pki;
mod server;
mod token;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const VERSION: &str = "v0.0.0-stand-in";
/// k3s's config file.
pub const CONFIG: &str = "/etc/rancher/k3s/config.yaml";
/// The admin kubeconfig the server writes.
pub const SERVER_KUBECONFIG: &str = "/etc/rancher/k3s/k3s.yaml";
/// The node password (does not move with data-dir).
pub const NODE_PASSWORD: &str = "/etc/rancher/node/password";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match argv.as_slice() {
        ["--version" | "-v" | "version", ..] => {
            println!("k3s version {VERSION} (piimg stand-in)");
            Ok(())
        }
        ["server", ..] => server::run(),
        ["agent", ..] => agent::run(),
        ["kubectl", rest @ ..] => kubectl::run(rest),
        _ => Err(format!("stand-in k3s: unsupported arguments {argv:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("k3s (stand-in): {e}");
            ExitCode::FAILURE
        }
    }
}

/// The test seam root, if set.
fn seam_root() -> Option<PathBuf> {
    std::env::var_os("PIIMG_STANDIN_ROOT").map(PathBuf::from)
}

/// An `/etc/rancher/...` path, under the test seam root when it is set.
pub fn etc(path: &str) -> PathBuf {
    match seam_root() {
        Some(r) => r.join(path.trim_start_matches('/')),
        None => PathBuf::from(path),
    }
}

/// Where the server listens.
pub fn api_addr() -> String {
    std::env::var("PIIMG_STANDIN_API_ADDR").unwrap_or_else(|_| "0.0.0.0:6443".into())
}

/// Where the kubelet's healthz listens.
pub fn kubelet_addr() -> String {
    std::env::var("PIIMG_STANDIN_KUBELET_ADDR").unwrap_or_else(|_| "127.0.0.1:10248".into())
}

/// Writes `text` to `path` (parents made) with `mode`, replacing it by rename.
pub fn write_mode(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The mount point holding `path` (longest prefix in /proc/self/mounts).
fn mount_of(path: &str) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|m| path == *m || path.starts_with(&format!("{}/", m.trim_end_matches('/'))))
        .max_by_key(|m| m.len())
        .map(str::to_owned)
}

/// What both roles read first: config.yaml, its `node-name` (lower-cased, as k3s does) and
/// `data-dir`, which must be on a mount of its own.
pub fn node_config() -> Result<(config::Config, String, String), String> {
    let config_path = etc(CONFIG);
    let cfg = config::Config::load(&config_path)?;
    let node = cfg
        .get("node-name")
        .ok_or(format!("{}: no node-name", config_path.display()))?
        .to_lowercase();
    let data_dir = cfg
        .get("data-dir")
        .ok_or(format!("{}: no data-dir", config_path.display()))?
        .to_string();
    require_own_mount(&data_dir)?;
    Ok((cfg, node, data_dir))
}

/// Refuses a data-dir on the root filesystem (skipped under the test seam root).
pub fn require_own_mount(data_dir: &str) -> Result<(), String> {
    if seam_root().is_some() {
        return Ok(());
    }
    match mount_of(data_dir).as_deref() {
        None | Some("/") => Err(format!(
            "data-dir {data_dir} is not on a mounted SSD (k3s would fill the SD card)"
        )),
        Some(m) => {
            eprintln!("k3s (stand-in): data-dir {data_dir} is on {m}");
            Ok(())
        }
    }
}

/// `READY=1` to systemd (`Type=notify`), if it is listening.
pub fn notify_ready() -> Result<(), String> {
    use std::os::unix::net::UnixDatagram;
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let sock = UnixDatagram::unbound().map_err(|e| format!("notify socket: {e}"))?;
    let name = socket.to_string_lossy().into_owned();
    let sent = if let Some(abstract_name) = name.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .map_err(|e| format!("notify socket {name}: {e}"))?;
        sock.send_to_addr(b"READY=1", &addr)
    } else {
        sock.send_to(b"READY=1", PathBuf::from(&name))
    };
    sent.map(|_| ())
        .map_err(|e| format!("notify socket {name}: {e}"))
}

/// Where a kubeconfig's CA, client certificate or key comes from.
#[derive(Clone, Copy)]
pub enum CaRef<'a> {
    /// Inline (`…-data`, as in `k3s.yaml`).
    Data(&'a str),
    /// A file (as in the agent's `kubelet.kubeconfig`).
    File(&'a Path),
}

/// A kubeconfig for `server` trusting `ca` (a CA inline or in a file) and logging in with
/// the client certificate `user` (inline or in files), shaped like the ones k3s writes:
/// `k3s.yaml` inline, the agent's `kubelet.kubeconfig` with paths.
pub fn kubeconfig(server: &str, ca: CaRef<'_>, user: CaRef<'_>, user_key: CaRef<'_>) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let line = |key: &str, r: CaRef<'_>| match r {
        CaRef::Data(pem) => format!("{key}-data: {}", b64(pem)),
        CaRef::File(p) => format!("{key}: {}", p.display()),
    };
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    {}\n    server: {server}\n  name: default\n\
         contexts:\n- context:\n    cluster: default\n    user: default\n  name: default\n\
         current-context: default\nkind: Config\npreferences: {{}}\nusers:\n- name: default\n  user:\n    {}\n    {}\n",
        line("certificate-authority", ca),
        line("client-certificate", user),
        line("client-key", user_key),
    )
}

/// Sleeps.
pub fn sleep_s(s: u64) {
    std::thread::sleep(std::time::Duration::from_secs(s));
}
