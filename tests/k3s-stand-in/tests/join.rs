//! The stand-in k3s against itself: a server and agents as processes on 127.0.0.1, each in
//! its own temporary root (`PIIMG_STANDIN_ROOT`), checking what first boot and a joining
//! agent depend on in the real k3s: TLS with the server's own CA, CA-pinned tokens, node
//! passwords, a CA and token that survive a restart.

use sha2::{Digest, Sha256};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const K3S: &str = env!("CARGO_BIN_EXE_k3s");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A stand-in process (`k3s server` or `k3s agent`) with its root; killed when dropped.
struct Proc {
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `line`; panics with the log after 30 s or if the process died.
    fn wait_for(&mut self, line: &str) {
        let start = Instant::now();
        loop {
            if self.log().contains(line) {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "k3s exited ({status}) before logging {line:?}:\n{}",
                        self.log()
                    );
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "k3s never logged {line:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A node: a temporary root holding `/etc/rancher/...` and its data-dir.
struct Node {
    root: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        Node {
            root: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel.trim_start_matches('/'))
    }

    fn data_dir(&self) -> PathBuf {
        self.path("ssd/k3s")
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    fn config(&self, lines: &str, node: &str) {
        self.write(
            "/etc/rancher/k3s/config.yaml",
            &format!(
                "{lines}node-name: \"{node}\"\ndata-dir: \"{}\"\n",
                self.data_dir().display()
            ),
        );
    }

    fn spawn(&self, role: &str, env: &[(&str, String)]) -> Proc {
        let log = self.path(&format!("{role}.log"));
        let file = fs::File::create(&log).unwrap();
        let mut cmd = Command::new(K3S);
        cmd.arg(role)
            .env("PIIMG_STANDIN_ROOT", self.root.path())
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc {
            child: Some(cmd.spawn().unwrap()),
            log,
        }
    }
}

/// A server on a free port: `token: "srv-secret"`, `agent-token: "agent-secret"`.
struct Server {
    node: Node,
    port: u16,
    proc: Proc,
}

fn server_with(node: Node, extra: &str) -> Server {
    server_on(node, extra, free_port())
}

fn server_on(node: Node, extra: &str, port: u16) -> Server {
    node.config(extra, "cp");
    let mut proc = node.spawn(
        "server",
        &[("PIIMG_STANDIN_API_ADDR", format!("127.0.0.1:{port}"))],
    );
    proc.wait_for("ready on");
    Server { node, port, proc }
}

fn server() -> Server {
    server_with(
        Node::new(),
        "token: \"srv-secret\"\nagent-token: \"agent-secret\"\ntls-san:\n  - \"cp.example\"\n",
    )
}

impl Server {
    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
    fn token_file(&self, name: &str) -> String {
        let p = self.node.data_dir().join("server").join(name);
        fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .to_string()
    }
    fn ca(&self) -> Vec<u8> {
        fs::read(self.node.data_dir().join("server/tls/server-ca.crt")).unwrap()
    }
    /// Whether the serving certificate names `name` (a DNS SAN is its ASCII bytes in the DER).
    fn serving_cert_names(&self, name: &str) -> bool {
        use base64::Engine;
        let crt = self
            .node
            .data_dir()
            .join("server/tls/serving-kube-apiserver.crt");
        let pem = fs::read_to_string(crt).unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        der.windows(name.len()).any(|w| w == name.as_bytes())
    }
}

/// An agent joining `server` with `token`.
struct Agent {
    node: Node,
    kubelet_port: u16,
    proc: Proc,
}

fn agent_on(node: Node, server_url: &str, token: &str, name: &str) -> Agent {
    node.config(
        &format!("server: \"{server_url}\"\ntoken: \"{token}\"\n"),
        name,
    );
    let kubelet_port = free_port();
    let proc = node.spawn(
        "agent",
        &[(
            "PIIMG_STANDIN_KUBELET_ADDR",
            format!("127.0.0.1:{kubelet_port}"),
        )],
    );
    Agent {
        node,
        kubelet_port,
        proc,
    }
}

fn agent(s: &Server, token: &str, name: &str) -> Agent {
    agent_on(Node::new(), &s.url(), token, name)
}

impl Agent {
    /// The kubelet's healthz status, or None when nothing listens.
    fn healthz(&self) -> Option<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.kubelet_port)).ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut r = String::new();
        s.read_to_string(&mut r).ok()?;
        r.split(' ').nth(1)?.parse().ok()
    }

    fn kubeconfig(&self) -> PathBuf {
        self.node.data_dir().join("agent/kubelet.kubeconfig")
    }

    /// What first boot asks: the Node's Ready condition through `k3s kubectl`.
    fn ready(&self, name: &str) -> Result<String, String> {
        kubectl(&self.kubeconfig(), name)
    }

    /// Joined, healthy and Ready, as first boot checks it.
    fn assert_joined(&mut self, server: &Server, name: &str) {
        self.proc
            .wait_for(&format!("agent {name} registered with {}", server.url()));
        assert_eq!(self.healthz(), Some(200), "{}", self.proc.log());
        assert_eq!(self.ready(name).as_deref(), Ok("True"));
        assert!(server.proc.log().contains(&format!("node {name} joined")));
    }

    /// Refused: not healthy, no kubeconfig, the server never let it join.
    fn assert_not_ready(&self, server: &Server, name: &str) {
        assert_eq!(self.healthz(), None, "a refused agent answers healthz");
        assert!(
            !self.kubeconfig().exists(),
            "a refused agent wrote its kubeconfig"
        );
        assert!(
            !server.proc.log().contains(&format!("node {name} joined")),
            "{}",
            server.proc.log()
        );
    }
}

fn kubectl(kubeconfig: &Path, name: &str) -> Result<String, String> {
    let out = Command::new(K3S)
        .args(["kubectl", "--kubeconfig"])
        .arg(kubeconfig)
        .args([
            "get",
            "node",
            name,
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
        ])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn is_secure_token(t: &str, ca: &[u8], user_secret: &str) -> bool {
    t == format!("K10{}::{user_secret}", hex::encode(Sha256::digest(ca)))
}

#[test]
fn server_writes_secure_tokens_and_a_tls_kubeconfig() {
    let s = server();
    let ca = s.ca();
    assert!(String::from_utf8_lossy(&ca).starts_with("-----BEGIN CERTIFICATE-----"));
    for f in [
        "server-ca.key",
        "client-ca.crt",
        "client-ca.key",
        "serving-kube-apiserver.crt",
        "serving-kube-apiserver.key",
        "client-admin.crt",
        "client-admin.key",
    ] {
        assert!(
            s.node.data_dir().join("server/tls").join(f).is_file(),
            "{f}"
        );
    }
    assert!(is_secure_token(
        &s.token_file("token"),
        &ca,
        "server:srv-secret"
    ));
    assert!(is_secure_token(
        &s.token_file("node-token"),
        &ca,
        "server:srv-secret"
    ));
    assert!(is_secure_token(
        &s.token_file("agent-token"),
        &ca,
        "node:agent-secret"
    ));
    assert!(
        s.serving_cert_names("cp.example"),
        "tls-san missing from the serving certificate"
    );
    assert!(!s.serving_cert_names("new.example"));
    let kc = s.node.read("/etc/rancher/k3s/k3s.yaml");
    assert!(
        kc.contains(&format!("server: https://127.0.0.1:{}", s.port)),
        "{kc}"
    );
    assert!(kc.contains("certificate-authority-data: "), "{kc}");
    let out = Command::new(K3S)
        .args(["kubectl", "--kubeconfig"])
        .arg(s.node.path("/etc/rancher/k3s/k3s.yaml"))
        .args(["get", "--raw", "/readyz"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
    // The server's own node is Ready once its node password is on record.
    assert_eq!(
        kubectl(&s.node.path("/etc/rancher/k3s/k3s.yaml"), "cp").as_deref(),
        Ok("True")
    );
}

#[test]
fn agent_with_the_secure_token_joins() {
    let s = server();
    let mut a = agent(&s, &s.token_file("node-token"), "w1");
    a.assert_joined(&s, "w1");
    assert!(!a.proc.log().contains("does not include a CA hash"));
    // It kept the CA it pinned, and its password (16 random bytes, hex, 0600).
    assert_eq!(
        fs::read(a.node.data_dir().join("agent/server-ca.crt")).unwrap(),
        s.ca()
    );
    for f in ["serving-kubelet", "client-kubelet"] {
        for ext in ["crt", "key"] {
            assert!(
                a.node.data_dir().join(format!("agent/{f}.{ext}")).is_file(),
                "{f}.{ext}"
            );
        }
    }
    let pw = a.node.read("/etc/rancher/node/password");
    assert_eq!(pw.trim().len(), 32, "{pw:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(a.node.path("/etc/rancher/node/password"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The agent token in its secure form joins too.
    let mut b = agent(&s, &s.token_file("agent-token"), "w2");
    b.assert_joined(&s, "w2");
}

#[test]
fn agent_with_another_ca_hash_is_refused() {
    let s = server();
    let other = hex::encode(Sha256::digest(b"another cluster's CA"));
    let mut a = agent(&s, &format!("K10{other}::node:agent-secret"), "w1");
    a.proc.wait_for(&format!(
        "token CA hash does not match the Cluster CA certificate hash: {other} != "
    ));
    a.assert_not_ready(&s, "w1");
}

#[test]
fn agent_with_the_short_token_joins_with_a_warning() {
    let s = server();
    let mut a = agent(&s, "agent-secret", "w1");
    a.proc.wait_for("the token does not include a CA hash");
    a.assert_joined(&s, "w1");
}

#[test]
fn agent_with_a_wrong_secret_is_not_let_in() {
    let s = server();
    let a = agent(&s, "not-the-secret", "w1");
    let mut a = a;
    a.proc.wait_for("401");
    a.assert_not_ready(&s, "w1");
}

#[test]
fn same_name_needs_the_same_node_password() {
    let s = server();
    let first = Node::new();
    first.write("/etc/rancher/node/password", "first-password\n");
    let mut a = agent_on(first, &s.url(), "agent-secret", "w1");
    a.assert_joined(&s, "w1");
    a.proc.stop();

    // Another machine (or an image with another password) under the same name: refused.
    let other = Node::new();
    other.write("/etc/rancher/node/password", "another-password\n");
    let mut b = agent_on(other, &s.url(), "agent-secret", "w1");
    b.proc
        .wait_for("Node password rejected, duplicate hostname or contents of '");
    assert_eq!(b.healthz(), None);
    assert!(!b.kubeconfig().exists());
    // The Node w1 is still there, but no kubelet of its own posts its status.
    assert_eq!(a.ready("w1").as_deref(), Ok("Unknown"));
    b.proc.stop();

    // The re-image case: a fresh root and data-dir, the same password baked in: welcome.
    let again = Node::new();
    again.write("/etc/rancher/node/password", "  first-password \n");
    let mut c = agent_on(again, &s.url(), "agent-secret", "w1");
    c.assert_joined(&s, "w1");
}

#[test]
fn restarted_server_keeps_its_ca_and_tokens() {
    // No token in the config: the one made on the first start must be kept too.
    let s = server_with(Node::new(), "");
    let (ca, token) = (s.ca(), s.token_file("token"));
    assert!(is_secure_token(
        &token,
        &ca,
        &format!("server:{}", token.rsplit(':').next().unwrap())
    ));
    let mut a = agent(&s, &token, "w1");
    a.assert_joined(&s, "w1");
    let Server {
        node,
        mut proc,
        port,
    } = s;
    proc.stop();
    // Restarted with one more tls-san: the same CA signs a serving certificate that names it.
    let s = server_on(node, "tls-san:\n  - \"new.example\"\n", port);
    assert!(
        s.proc.log().contains("reusing the cluster CA"),
        "{}",
        s.proc.log()
    );
    assert_eq!(s.ca(), ca);
    assert_eq!(s.token_file("token"), token);
    assert!(s.serving_cert_names("new.example"));
    // The Node registered before the restart is still known, through the agent's kubeconfig.
    assert_eq!(a.ready("w1").as_deref(), Ok("True"));
    // An agent given the token from before the restart still pins the right CA.
    let mut b = agent(&s, &token, "w2");
    b.assert_joined(&s, "w2");
}

#[test]
fn kubectl_trusts_only_the_ca_of_its_kubeconfig() {
    let s = server();
    let other = server();
    let mut a = agent(&s, &s.token_file("node-token"), "w1");
    a.assert_joined(&s, "w1");
    // The agent's kubeconfig, pointed at the other cluster's server: its CA does not sign it.
    let kc = fs::read_to_string(a.kubeconfig())
        .unwrap()
        .replace(&s.url(), &other.url());
    let wrong = a.node.path("wrong.kubeconfig");
    fs::write(&wrong, kc).unwrap();
    let err = kubectl(&wrong, "w1").unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");
    // The admin kubeconfig without its client certificate: the API wants credentials.
    let admin = s.node.read("/etc/rancher/k3s/k3s.yaml");
    assert!(admin.contains("client-certificate-data: ") && admin.contains("client-key-data: "));
    let anonymous: String = admin
        .lines()
        .filter(|l| !l.contains("client-certificate-data") && !l.contains("client-key-data"))
        .map(|l| format!("{l}\n"))
        .collect();
    let anon = s.node.path("anonymous.kubeconfig");
    fs::write(&anon, anonymous).unwrap();
    let err = kubectl(&anon, "cp").unwrap_err();
    assert!(err.contains("Unauthorized"), "{err}");
}

#[test]
fn agent_reaches_the_server_by_a_name_from_etc_hosts() {
    // `localhost` comes from /etc/hosts (no mDNS, no NSS in a static musl binary), and the
    // serving certificate must name it: k3s always adds it.
    use std::net::ToSocketAddrs;
    let only_v4_loopback = ("localhost", 1)
        .to_socket_addrs()
        .is_ok_and(|mut a| a.all(|a| a.ip() == std::net::Ipv4Addr::LOCALHOST));
    if !only_v4_loopback {
        eprintln!("skipped: localhost is not only 127.0.0.1 here, and these tests use no other");
        return;
    }
    let s = server();
    let url = format!("https://localhost:{}", s.port);
    let mut a = agent_on(Node::new(), &url, &s.token_file("node-token"), "w1");
    a.proc.wait_for(&format!("agent w1 registered with {url}"));
    assert_eq!(a.ready("w1").as_deref(), Ok("True"));
}
