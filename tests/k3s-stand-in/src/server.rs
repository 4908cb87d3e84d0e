//! `k3s server`.

use crate::config::Config;
use crate::http::{Handler, Request};
use crate::nodepass::{Refused, Store};
use crate::pki::ServerPki;
use crate::{etc, pki, token};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

struct State {
    pki: ServerPki,
    passwords: Store,
    server_secret: String,
    agent_secret: Option<String>,
    /// Registered Nodes, one file each, kept in the data-dir as k3s keeps them in its
    /// datastore: a Node given its serving certificate once stays known across restarts.
    nodes_dir: std::path::PathBuf,
    /// Nodes whose password was refused since this start: no kubelet of theirs posts status,
    /// so their `Ready` is `Unknown`.
    refused: Mutex<Vec<String>>,
}

/// The host's addresses (loopback and IPv6 link-local left out), for the serving certificate.
fn host_ips() -> Vec<String> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut ips = Vec::new();
    for a in addrs {
        let Some(sa) = a.address else { continue };
        if let Some(sin) = sa.as_sockaddr_in() {
            if !sin.ip().is_loopback() {
                ips.push(sin.ip().to_string());
            }
        } else if let Some(sin6) = sa.as_sockaddr_in6() {
            let ip = sin6.ip();
            if !ip.is_loopback() && (ip.segments()[0] & 0xffc0) != 0xfe80 {
                ips.push(ip.to_string());
            }
        }
    }
    ips
}

fn random_hex(n: usize) -> Result<String, String> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| format!("random bytes: {e}"))?;
    Ok(hex::encode(b))
}

/// The server token's secret: the config's `token` (short or full form), else the one an
/// earlier start wrote to `server/token`, else a new random one (`deps.go` getServerPass:
/// config, then the passwd file's `server` entry, then `util.Random(16)`).
fn server_secret(cfg: &Config, token_file: &Path) -> Result<String, String> {
    if let Some(t) = cfg.get("token") {
        return Ok(token::parse(t).map_err(|e| format!("token: {e}"))?.password);
    }
    if let Ok(text) = std::fs::read_to_string(token_file) {
        if let Ok(t) = token::parse(text.trim()) {
            return Ok(t.password);
        }
    }
    random_hex(16)
}

/// `pkg/server/server.go` printTokens: `token` (secure form), `node-token` a symlink to it
/// (replacing a plain file), `agent-token` when an agent token is configured.
fn write_tokens(
    server_dir: &Path,
    ca_hash: &str,
    server: &str,
    agent: Option<&str>,
) -> Result<(), String> {
    let token_file = server_dir.join("token");
    crate::write_mode(
        &token_file,
        &format!("{}\n", token::format(ca_hash, "server", server)),
        0o600,
    )?;
    let node_token = server_dir.join("node-token");
    let is_link = node_token
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink());
    if !is_link {
        let _ = std::fs::remove_file(&node_token);
        std::os::unix::fs::symlink(&token_file, &node_token)
            .map_err(|e| format!("{}: {e}", node_token.display()))?;
    }
    if let Some(a) = agent {
        crate::write_mode(
            &server_dir.join("agent-token"),
            &format!("{}\n", token::format(ca_hash, "node", a)),
            0o600,
        )?;
    }
    Ok(())
}

/// The basic-auth credentials of a request.
fn basic_auth(req: &Request) -> Option<(String, String)> {
    use base64::Engine;
    let b64 = req.header("Authorization")?.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

impl State {
    /// k3s's passwd (`deps.go` genUsers/getNodePass): user `server` with the server token,
    /// user `node` with the agent token, or the server token when none is set. Agents always
    /// send user `node` (`clientaccess.WithUser("node")`); the server token is taken from
    /// them too, as docs.k3s.io (cli/token) says it joins agents.
    fn agent_authorised(&self, req: &Request) -> bool {
        match basic_auth(req) {
            Some((u, p)) if u == "server" => p == self.server_secret,
            Some((u, p)) if u == "node" => {
                p == self.server_secret || self.agent_secret.as_deref() == Some(p.as_str())
            }
            _ => false,
        }
    }

    /// `/v1-k3s/serving-kubelet.crt` and `client-kubelet.crt` (`pkg/server/router.go`):
    /// node info from the headers (400 without), the node password ensured (403 on a
    /// mismatch; `pkg/nodepassword/validate.go`), then the certificate: serving (CN the
    /// node, DNS the node and `localhost`, IP 127.0.0.1 and the node's IPs, by the server CA)
    /// or client (`system:node:NODE`, O `system:nodes`, by the client CA).
    fn kubelet_cert(&self, req: &Request, client: bool) -> (u16, String) {
        if !self.agent_authorised(req) {
            return (401, "Unauthorized".into());
        }
        let Some(name) = req.header("K3s-Node-Name").filter(|n| !n.is_empty()) else {
            return (400, "node name not set".into());
        };
        let Some(password) = req.header("K3s-Node-Password").filter(|p| !p.is_empty()) else {
            return (400, "node password not set".into());
        };
        let name = name.to_lowercase();
        match self.passwords.ensure(&name, password) {
            Ok(()) => {}
            Err(Refused::Mismatch(e)) => {
                eprintln!("k3s (stand-in): node {name} refused: {e}");
                self.refuse(&name);
                return (403, e);
            }
            Err(Refused::Io(e)) => return (500, e),
        }
        let ips: Vec<String> = req
            .header("K3s-Node-IP")
            .map(|s| s.split(',').map(|i| i.trim().to_string()).collect())
            .unwrap_or_default();
        let issued = if client {
            self.pki.client_ca.issue(&pki::Leaf {
                cn: &format!("system:node:{name}"),
                org: Some("system:nodes"),
                names: &[],
                client: true,
            })
        } else {
            let mut names = vec![name.clone(), "localhost".into(), "127.0.0.1".into()];
            names.extend(
                ips.into_iter()
                    .filter(|i| i.parse::<std::net::IpAddr>().is_ok()),
            );
            self.pki.server_ca.issue(&pki::Leaf {
                cn: &name,
                org: None,
                names: &names,
                client: false,
            })
        };
        match issued {
            Ok(body) if client => (200, body),
            Ok(body) => match self.register(&name) {
                Ok(()) => {
                    eprintln!("k3s (stand-in): node {name} joined");
                    (200, body)
                }
                Err(e) => (500, e),
            },
            Err(e) => (500, e),
        }
    }

    fn register(&self, name: &str) -> Result<(), String> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|n| n != name);
        crate::write_mode(&self.nodes_dir.join(name), "registered\n", 0o600)
    }

    fn refuse(&self, name: &str) {
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        if !refused.iter().any(|n| n == name) {
            refused.push(name.to_string());
        }
    }

    fn node(&self, name: &str) -> (u16, String) {
        let known = !name.starts_with('.') && self.nodes_dir.join(name).is_file();
        if known {
            let refused = self
                .refused
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|n| n == name);
            let (status, reason) = if refused {
                ("Unknown", "NodeStatusUnknown")
            } else {
                ("True", "KubeletReady")
            };
            eprintln!("k3s (stand-in): node {name} Ready: {status}");
            let node = serde_json::json!({
                "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                "status": {"conditions": [
                    {"type": "Ready", "status": status, "reason": reason}
                ]}
            });
            (200, node.to_string())
        } else {
            let status = serde_json::json!({
                "apiVersion": "v1", "kind": "Status", "status": "Failure",
                "message": format!("nodes \"{name}\" not found"), "reason": "NotFound", "code": 404
            });
            (404, status.to_string())
        }
    }

    fn route(&self, req: &Request) -> (u16, String) {
        let path = req.path.split('?').next().unwrap_or("");
        match path {
            "/cacerts" => (200, self.pki.server_ca.pem.clone()),
            "/ping" => (200, "pong".into()),
            "/v1-k3s/serving-kubelet.crt" => self.kubelet_cert(req, false),
            "/v1-k3s/client-kubelet.crt" => self.kubelet_cert(req, true),
            // The apiserver: anonymous auth off, so a client certificate is needed.
            _ if !req.client_cert => {
                let status = serde_json::json!({
                    "apiVersion": "v1", "kind": "Status", "status": "Failure",
                    "message": "Unauthorized", "reason": "Unauthorized", "code": 401
                });
                (401, status.to_string())
            }
            "/readyz" => (200, "ok".into()),
            _ => match path.strip_prefix("/api/v1/nodes/") {
                Some(n) if !n.is_empty() && !n.contains('/') => self.node(n),
                _ => (404, "404 page not found".into()),
            },
        }
    }
}

/// Runs the server until killed.
pub fn run() -> Result<(), String> {
    let (cfg, node, data_dir) = crate::node_config()?;
    let data_dir = Path::new(&data_dir);
    let server_dir = data_dir.join("server");

    let mut names: Vec<String> = vec![node.clone()];
    names.extend(cfg.list("tls-san").iter().cloned());
    for n in [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "127.0.0.1",
        "::1",
        "10.43.0.1",
    ] {
        names.push(n.into());
    }
    names.extend(host_ips());
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    let pki = pki::ensure_server(&server_dir.join("tls"), &names)?;
    let ca_hash = pki::hash_ca(pki.server_ca.pem.as_bytes());

    let server_secret = server_secret(&cfg, &server_dir.join("token"))?;
    let agent_secret = match cfg.get("agent-token") {
        Some(t) => Some(
            token::parse(t)
                .map_err(|e| format!("agent-token: {e}"))?
                .password,
        ),
        None => None,
    };
    write_tokens(
        &server_dir,
        &ca_hash,
        &server_secret,
        agent_secret.as_deref(),
    )?;

    let addr = crate::api_addr();
    let port = addr.rsplit(':').next().unwrap_or("6443");
    let mode = cfg
        .get("write-kubeconfig-mode")
        .and_then(|m| u32::from_str_radix(m, 8).ok())
        .unwrap_or(0o600);
    crate::write_mode(
        &etc(crate::SERVER_KUBECONFIG),
        &crate::kubeconfig(
            &format!("https://127.0.0.1:{port}"),
            crate::CaRef::Data(&pki.server_ca.pem),
            crate::CaRef::Data(&pki.admin.0),
            crate::CaRef::Data(&pki.admin.1),
        ),
        mode,
    )?;

    let state = Arc::new(State {
        pki,
        passwords: Store::new(data_dir),
        server_secret,
        agent_secret,
        nodes_dir: server_dir.join("db/stand-in-nodes"),
        refused: Mutex::new(Vec::new()),
    });
    // The server's own agent: its password is checked like any node's
    // (`pkg/nodepassword/validate.go`, verifyLocalPassword / Ensure).
    let own_password = crate::nodepass::ensure_file(&etc(crate::NODE_PASSWORD))?;
    match state.passwords.ensure(&node, &own_password) {
        Ok(()) => state.register(&node)?,
        Err(Refused::Mismatch(e) | Refused::Io(e)) => {
            eprintln!(
                "k3s (stand-in): node {node}: Node password rejected ({e}); it will not be Ready"
            );
            state.refuse(&node);
        }
    }

    let tls = pki::server_config(&state.pki)?;
    let listener = TcpListener::bind(&addr).map_err(|e| format!("listening on {addr}: {e}"))?;
    let handler_state = Arc::clone(&state);
    let handler: Handler = Arc::new(move |req: &Request| handler_state.route(req));
    let handle = std::thread::spawn(move || crate::http::serve_tls(listener, tls, handler));
    crate::notify_ready()?;
    eprintln!("k3s (stand-in): server {node} ready on {addr} (TLS, CA hash {ca_hash})");
    handle
        .join()
        .map_err(|_| "the API thread panicked".to_string())
}
