//! Just enough HTTP/1.1, over TLS (rustls) or plain TCP, one request per connection.
//!
//! Names resolve through `std::net::ToSocketAddrs`, i.e. libc's `getaddrinfo`. In the static
//! musl build this binary ships as, that is `/etc/hosts` then the DNS servers of
//! `/etc/resolv.conf`, nothing else: no NSS, so no mDNS (`.local` names resolve only through
//! an `/etc/hosts` entry), the same as the real k3s, a static musl binary too.

use rustls::pki_types::ServerName;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// A request as the handlers see it.
#[derive(Debug)]
pub struct Request {
    /// The path with its query.
    pub path: String,
    /// Headers in the order sent.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
    /// Whether the client presented a certificate the server's client CA signed (the TLS
    /// handshake refuses any other).
    pub client_cert: bool,
}

impl Request {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A handler: request → (status, body).
pub type Handler = Arc<dyn Fn(&Request) -> (u16, String) + Send + Sync>;

fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let _method = parts.next()?;
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut req = Request {
        path,
        headers,
        body: Vec::new(),
        client_cert: false,
    };
    let len: usize = req
        .header("Content-Length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    req.body = vec![0; len.min(1 << 20)];
    reader.read_exact(&mut req.body).ok()?;
    Some(req)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Error",
    }
}

fn answer<S: Read + Write>(stream: S, handler: &Handler, client_cert: impl Fn(&S) -> bool) {
    let mut reader = BufReader::new(stream);
    let Some(mut req) = read_request(&mut reader) else {
        return;
    };
    req.client_cert = client_cert(reader.get_ref());
    let (status, body) = handler(&req);
    let stream = reader.get_mut();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    );
    let _ = stream.flush();
}

/// Serves HTTPS on `listener` forever, a thread per connection.
pub fn serve_tls(listener: TcpListener, config: Arc<rustls::ServerConfig>, handler: Handler) {
    for stream in listener.incoming() {
        let Ok(tcp) = stream else { continue };
        let (config, handler) = (Arc::clone(&config), Arc::clone(&handler));
        std::thread::spawn(move || {
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
            let Ok(conn) = rustls::ServerConnection::new(config) else {
                return;
            };
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            answer(&mut tls, &handler, |s| {
                s.conn.peer_certificates().is_some_and(|c| !c.is_empty())
            });
            tls.conn.send_close_notify();
            let _ = tls.flush();
        });
    }
}

/// Serves plain HTTP on `listener` forever (the kubelet's local healthz).
pub fn serve_plain(listener: TcpListener, handler: Handler) {
    for stream in listener.incoming() {
        let Ok(tcp) = stream else { continue };
        let handler = Arc::clone(&handler);
        std::thread::spawn(move || {
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
            answer(tcp, &handler, |_| false);
        });
    }
}

/// `https://host:port` split into host and port (6443 if none), and the path after it.
pub fn split_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url.strip_prefix("https://").ok_or(format!(
        "only https:// URLs are supported, invalid scheme: {url}"
    ))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6.split_once(']').ok_or(format!("{url}: bad address"))?;
        (h, p.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| format!("{url}: bad port"))?,
        None => 443,
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok((host.to_string(), port, path.to_string()))
}

/// One HTTPS request to `url` (`https://host:port/path`), verified by `tls` against the
/// host name of the URL; the status and body.
pub fn request(
    tls: &Arc<rustls::ClientConfig>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String), String> {
    let (host, port, path) = split_url(url)?;
    let path = if path.is_empty() { "/".into() } else { path };
    let addrs: Vec<_> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("dial tcp: lookup {host}: {e}"))?
        .collect();
    let tcp = addrs
        .iter()
        .find_map(|a| TcpStream::connect_timeout(a, Duration::from_secs(10)).ok())
        .ok_or(format!("dial tcp {host}:{port}: connection refused"))?;
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let name = ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
    let conn =
        rustls::ClientConnection::new(Arc::clone(tls), name).map_err(|e| format!("{url}: {e}"))?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    head += "\r\n";
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body))
        .and_then(|()| s.flush())
        .map_err(|e| format!("Get \"{url}\": {e}"))?;
    let mut resp = Vec::new();
    if let Err(e) = s.read_to_end(&mut resp) {
        // A peer that closes without close_notify: keep what came, if anything did.
        if resp.is_empty() || e.kind() != std::io::ErrorKind::UnexpectedEof {
            return Err(format!("Get \"{url}\": {e}"));
        }
    }
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or(format!("{url}: not an HTTP answer"))?;
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}
