//! A stand-in `k3s` for the QEMU boot test (`scripts/e2e-boot`): it serves exactly what
//! `piimg-firstboot` checks (see `firstboot/src/k3s/join.rs`), with the real k3s's file
//! layout, so first boot runs unchanged against it. Test code, never shipped.
//!
//! - `k3s server` (unit `k3s.service`, `Type=notify`): reads `/etc/rancher/k3s/config.yaml`,
//!   refuses to run unless its `data-dir` is on a mounted filesystem other than `/` (what the
//!   piimg drop-in promises), writes `<data-dir>/server/node-token` and the kubeconfig
//!   `/etc/rancher/k3s/k3s.yaml` (0600), tells systemd it is ready, then answers on
//!   `0.0.0.0:6443` (plain HTTP, reachable by agents): `/readyz` → `ok`,
//!   `/stand-in/register/NODE` (an agent joining), `/stand-in/ready/NODE` → `True` for itself
//!   and every agent that registered. It logs each join and each Ready answer, so the boot
//!   test can tell an agent's Ready came from this server.
//! - `k3s agent` (unit `k3s-agent.service`): registers with its `server` (the `https://` of
//!   config.yaml spoken as plain HTTP), writes `<data-dir>/agent/kubelet.kubeconfig`, answers
//!   the kubelet's `http://127.0.0.1:10248/healthz`.
//! - `k3s kubectl --kubeconfig F get --raw /readyz` and
//!   `k3s kubectl --kubeconfig F get node NODE -o jsonpath=…`: ask the server named in F.
//! - `k3s --version`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CONFIG: &str = "/etc/rancher/k3s/config.yaml";
const SERVER_KUBECONFIG: &str = "/etc/rancher/k3s/k3s.yaml";
const VERSION: &str = "v0.0.0-stand-in";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match argv.as_slice() {
        ["--version" | "-v" | "version", ..] => {
            println!("k3s version {VERSION} (piimg stand-in)");
            Ok(())
        }
        ["server", ..] => server(),
        ["agent", ..] => agent(),
        ["kubectl", rest @ ..] => kubectl(rest),
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

/// `key: "value"` or `key: value` from config.yaml (top-level scalars only).
fn config_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?.trim();
        Some(rest.trim_matches('"').to_string())
    })
}

fn read_config() -> Result<(String, String, Option<String>), String> {
    let text =
        std::fs::read_to_string(CONFIG).map_err(|e| format!("{CONFIG}: cannot read: {e}"))?;
    let node = config_value(&text, "node-name").ok_or(format!("{CONFIG}: no node-name"))?;
    let data_dir = config_value(&text, "data-dir").ok_or(format!("{CONFIG}: no data-dir"))?;
    Ok((node, data_dir, config_value(&text, "server")))
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

fn require_own_mount(data_dir: &str) -> Result<(), String> {
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

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn kubeconfig(server: &str) -> String {
    format!("apiVersion: v1\nkind: Config\n# piimg stand-in k3s: plain HTTP\nclusters:\n- cluster:\n    server: {server}\n  name: default\n")
}

/// `READY=1` to systemd (`Type=notify`), if it is listening.
fn notify_ready() -> Result<(), String> {
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

/// Serves `answer(path)` (status, body) on `addr` forever.
fn serve(
    addr: &str,
    answer: impl Fn(&str) -> (u16, String) + Send + Sync + 'static,
) -> Result<(), String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("listening on {addr}: {e}"))?;
    let answer = Arc::new(answer);
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let answer = Arc::clone(&answer);
        std::thread::spawn(move || {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                return;
            }
            let path = line.split(' ').nth(1).unwrap_or("/").to_string();
            // Skip the headers; no request we answer has a body.
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let (status, body) = answer(&path);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        });
    }
    Ok(())
}

/// GET `url` (plain `http://host:port/path`); status and body.
fn get(url: &str) -> Result<(u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or(format!("{url}: only http:// is spoken here"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = TcpStream::connect(host).map_err(|e| format!("{url}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("{url}: {e}"))?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or(format!("{url}: not an HTTP answer"))?;
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}

fn server() -> Result<(), String> {
    let (node, data_dir, _) = read_config()?;
    require_own_mount(&data_dir)?;
    let token = Path::new(&data_dir).join("server/node-token");
    if !token.exists() {
        write_private(&token, "stand-in-node-token\n")?;
    }
    write_private(
        Path::new(SERVER_KUBECONFIG),
        &kubeconfig("http://127.0.0.1:6443"),
    )?;
    let nodes = Arc::new(Mutex::new(vec![node.clone()]));
    let listener_nodes = Arc::clone(&nodes);
    let handle = std::thread::spawn(move || {
        serve("0.0.0.0:6443", move |path| {
            let mut known = listener_nodes.lock().unwrap_or_else(|p| p.into_inner());
            if path == "/readyz" {
                (200, "ok".into())
            } else if let Some(n) = path.strip_prefix("/stand-in/register/") {
                if !known.iter().any(|k| k == n) {
                    eprintln!("k3s (stand-in): node {n} joined");
                    known.push(n.to_string());
                }
                (200, "registered".into())
            } else if let Some(n) = path.strip_prefix("/stand-in/ready/") {
                if known.iter().any(|k| k == n) {
                    eprintln!("k3s (stand-in): node {n} Ready: True");
                    (200, "True".into())
                } else {
                    (404, format!("nodes \"{n}\" not found"))
                }
            } else {
                (404, "not found".into())
            }
        })
    });
    // Give the listener a moment to bind before saying we are ready.
    std::thread::sleep(Duration::from_millis(200));
    notify_ready()?;
    eprintln!("k3s (stand-in): server {node} ready on :6443");
    handle
        .join()
        .map_err(|_| "the API thread panicked".to_string())?
}

fn agent() -> Result<(), String> {
    let (node, data_dir, server) = read_config()?;
    require_own_mount(&data_dir)?;
    let server = server.ok_or(format!("{CONFIG}: an agent needs `server`"))?;
    let plain = server.replacen("https://", "http://", 1);
    write_private(
        &Path::new(&data_dir).join("agent/kubelet.kubeconfig"),
        &kubeconfig(&plain),
    )?;
    let register = format!("{}/stand-in/register/{node}", plain.trim_end_matches('/'));
    let mut registered = false;
    for _ in 0..60 {
        match get(&register) {
            Ok((200, _)) => {
                registered = true;
                break;
            }
            Ok((s, b)) => eprintln!("k3s (stand-in): registering: {s} {b}"),
            Err(e) => eprintln!("k3s (stand-in): registering: {e}"),
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    if !registered {
        return Err(format!("could not register with {server}"));
    }
    eprintln!("k3s (stand-in): agent {node} registered with {server}");
    let handle = std::thread::spawn(|| serve("127.0.0.1:10248", |_| (200, "ok".into())));
    notify_ready()?;
    handle
        .join()
        .map_err(|_| "the kubelet thread panicked".to_string())?
}

/// The `server:` of a kubeconfig.
fn kubeconfig_server(path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("server:")
                .map(|s| s.trim().to_string())
        })
        .ok_or(format!("{path}: no server"))
}

fn kubectl(args: &[&str]) -> Result<(), String> {
    let (kc, rest) = match args {
        ["--kubeconfig", kc, rest @ ..] => (*kc, rest),
        _ => (SERVER_KUBECONFIG, args),
    };
    let server = kubeconfig_server(kc)?;
    let server = server.trim_end_matches('/');
    let url = match rest {
        ["get", "--raw", path] => format!("{server}{path}"),
        ["get", "node", name, "-o", _] => format!("{server}/stand-in/ready/{name}"),
        _ => return Err(format!("kubectl: unsupported arguments {rest:?}")),
    };
    let (status, body) = get(&url)?;
    if status != 200 {
        return Err(format!("Error from server ({status}): {body}"));
    }
    print!("{body}");
    Ok(())
}
