//! `k3s agent`.

use crate::http::{self, Handler, Request};
use crate::token::Token;
use crate::{etc, pki, token};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

/// `pkg/clientaccess/token.go` getCACerts then validateCAHash: the CA bundle from `/cacerts`
/// (fetched without verification, then fetched again verified against itself, with the
/// server name of the URL), checked against the token's CA hash when it has one.
fn validate_server(server: &str, token: &Token) -> Result<String, String> {
    let url = format!("{server}/cacerts");
    let (status, bundle) = http::request(&pki::insecure_client_config()?, "GET", &url, &[], &[])
        .map_err(|e| format!("failed to get CA certs: {e}"))?;
    if !(200..300).contains(&status) {
        return Err(format!("failed to get CA certs: {url}: {status}"));
    }
    let verified =
        pki::client_config(&bundle).and_then(|tls| http::request(&tls, "GET", &url, &[], &[]));
    match verified {
        Ok((s, _)) if (200..300).contains(&s) => {}
        Ok((s, _)) => return Err(format!("CA cert validation failed: {url}: {s}")),
        Err(e) => return Err(format!("CA cert validation failed: {e}")),
    }
    if token.ca_hash.is_empty() {
        eprintln!(
            "k3s (stand-in): level=warning msg=\"Cluster CA certificate is not trusted by the host CA bundle, \
             but the token does not include a CA hash. Use the full token from the server's node-token file \
             to enable Cluster CA validation.\""
        );
    } else {
        let got = pki::hash_ca(bundle.as_bytes());
        if got != token.ca_hash {
            return Err(format!(
                "token CA hash does not match the Cluster CA certificate hash: {} != {got}",
                token.ca_hash
            ));
        }
    }
    Ok(bundle)
}

/// `pkg/agent/config/config.go` getNodeNamedCrt: a kubelet certificate (`cert`:
/// `serving-kubelet.crt`, `client-kubelet.crt`), asked with the node's name and password
/// (read or made on every request, as k3s does); the certificate, CA and key PEM.
fn request_cert(
    tls: &Arc<rustls::ClientConfig>,
    cert: &str,
    server: &str,
    token: &Token,
    node: &str,
    password_file: &Path,
) -> Result<String, String> {
    use base64::Engine;
    let password = crate::nodepass::ensure_file(password_file)?;
    // The agent authenticates as user `node` whatever the token's user part
    // (`clientaccess.WithUser("node")` in `pkg/agent/run.go`).
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("node:{}", token.password))
    );
    let url = format!("{server}/v1-k3s/{cert}");
    let (status, body) = http::request(
        tls,
        "GET",
        &url,
        &[
            ("Authorization", &auth),
            ("K3s-Node-Name", node),
            ("K3s-Node-Password", &password),
        ],
        &[],
    )?;
    match status {
        200 => Ok(body),
        403 => Err(format!(
            "Node password rejected, duplicate hostname or contents of '{}' may not match server \
             node-passwd entry, try enabling a unique node name with the --with-node-id flag",
            password_file.display()
        )),
        s => Err(format!("{url}: {s} {}", body.trim())),
    }
}

/// Runs the agent until killed.
pub fn run() -> Result<(), String> {
    let config_path = etc(crate::CONFIG);
    let (cfg, node, data_dir) = crate::node_config()?;
    let server = cfg
        .get("server")
        .ok_or(format!(
            "{}: an agent needs `server`",
            config_path.display()
        ))?
        .trim_end_matches('/')
        .to_string();
    let token = token::parse(cfg.get("token").ok_or("--token is required")?)?;
    http::split_url(&server)?;

    // pkg/agent/run.go createProxyAndValidateToken: retried every 2 s, each failure logged.
    let ca_pem = loop {
        match validate_server(&server, &token) {
            Ok(ca) => break ca,
            Err(e) => eprintln!(
                "k3s (stand-in): level=error msg=\"Failed to validate connection to cluster at {server}: {e}\""
            ),
        }
        crate::sleep_s(2);
    };
    let tls = pki::client_config(&ca_pem)?;
    let password_file = etc(crate::NODE_PASSWORD);
    // pkg/agent/config/config.go Get: the serving then the client certificate of the
    // kubelet, retried every 5 s.
    let (serving, client) = loop {
        let both = request_cert(
            &tls,
            "serving-kubelet.crt",
            &server,
            &token,
            &node,
            &password_file,
        )
        .and_then(|s| {
            request_cert(
                &tls,
                "client-kubelet.crt",
                &server,
                &token,
                &node,
                &password_file,
            )
            .map(|c| (s, c))
        });
        match both {
            Ok(b) => break b,
            Err(e) => eprintln!(
                "k3s (stand-in): level=info msg=\"Waiting to retrieve agent configuration; server is not ready: {e}\""
            ),
        }
        crate::sleep_s(5);
    };
    let agent_dir = Path::new(&data_dir).join("agent");
    let ca_file = agent_dir.join("server-ca.crt");
    crate::write_mode(&ca_file, &ca_pem, 0o644)?;
    for (name, body) in [("serving-kubelet", &serving), ("client-kubelet", &client)] {
        let (certs, key) = match body.find("-----BEGIN EC PRIVATE KEY-----") {
            Some(i) => body.split_at(i),
            None => return Err(format!("the server's {name}.crt answer has no key")),
        };
        crate::write_mode(&agent_dir.join(format!("{name}.crt")), certs, 0o600)?;
        crate::write_mode(&agent_dir.join(format!("{name}.key")), key, 0o600)?;
    }
    let (client_crt, client_key) = (
        agent_dir.join("client-kubelet.crt"),
        agent_dir.join("client-kubelet.key"),
    );
    crate::write_mode(
        &agent_dir.join("kubelet.kubeconfig"),
        &crate::kubeconfig(
            &server,
            crate::CaRef::File(&ca_file),
            crate::CaRef::File(&client_crt),
            crate::CaRef::File(&client_key),
        ),
        0o600,
    )?;
    // The labels its kubelet would register the Node with (`--node-labels` from the config's
    // `node-label`): logged, as the stand-in has no kubelet or apiserver to carry them.
    eprintln!(
        "k3s (stand-in): agent {node} registered with {server}, node labels [{}]",
        cfg.list("node-label").join(",")
    );
    let addr = crate::kubelet_addr();
    let listener =
        TcpListener::bind(&addr).map_err(|e| format!("kubelet healthz on {addr}: {e}"))?;
    let handler: Handler = Arc::new(|_req: &Request| (200, "ok".into()));
    let handle = std::thread::spawn(move || http::serve_plain(listener, handler));
    crate::notify_ready()?;
    handle
        .join()
        .map_err(|_| "the kubelet thread panicked".to_string())
}
