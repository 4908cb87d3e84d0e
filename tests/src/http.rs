//! A tiny HTTP/1.1 file server on 127.0.0.1 for download tests: serves files from memory,
//! honours `Range: bytes=N-`, and can cut a body short to simulate a dropped connection.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// How a path is served.
#[derive(Clone)]
pub struct Served {
    /// The whole file.
    pub body: Vec<u8>,
    /// Send only this many body bytes (after the announced full length) for the first
    /// `cut_times` requests, then close.
    pub cut_at: Option<usize>,
    /// How many requests are cut short.
    pub cut_times: usize,
}

#[derive(Default)]
struct State {
    files: HashMap<String, Served>,
    requests: HashMap<String, usize>,
    ranges: Vec<String>,
}

/// A running server; it lives until the test process exits.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    state: Arc<Mutex<State>>,
    total: Arc<AtomicUsize>,
}

impl Server {
    /// Binds an ephemeral port on 127.0.0.1 and serves from a background thread.
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State::default()));
        let total = Arc::new(AtomicUsize::new(0));
        let (s, t) = (state.clone(), total.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                t.fetch_add(1, Ordering::SeqCst);
                let _ = handle(stream, &s);
            }
        });
        Server { base, state, total }
    }

    /// Serves `path` as described; returns its URL.
    pub fn serve(&self, path: &str, served: Served) -> String {
        self.state
            .lock()
            .expect("lock")
            .files
            .insert(path.to_string(), served);
        format!("{}{}", self.base, path)
    }

    /// Serves `path` whole; returns its URL.
    pub fn serve_bytes(&self, path: &str, body: Vec<u8>) -> String {
        self.serve(
            path,
            Served {
                body,
                cut_at: None,
                cut_times: 0,
            },
        )
    }

    /// Requests received so far, all paths.
    pub fn requests(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    /// The `Range` headers received, in order.
    pub fn ranges(&self) -> Vec<String> {
        self.state.lock().expect("lock").ranges.clone()
    }
}

fn handle(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range_start: Option<usize> = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
        let lower = header.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range:") {
            let v = v.trim();
            state.lock().expect("lock").ranges.push(v.to_string());
            range_start = v
                .strip_prefix("bytes=")
                .and_then(|r| r.trim_end_matches('-').parse().ok());
        }
    }
    let (served, nth) = {
        let mut st = state.lock().expect("lock");
        let n = st.requests.entry(path.clone()).or_insert(0);
        *n += 1;
        let nth = *n;
        (st.files.get(&path).cloned(), nth)
    };
    let mut out = stream;
    let Some(served) = served else {
        out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    };
    let len = served.body.len();
    let start = range_start.unwrap_or(0);
    if start > len || (range_start.is_some() && start == len) {
        out.write_all(
            format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
        )?;
        return Ok(());
    }
    let head = if range_start.is_some() {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{len}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            len - 1,
            len - start
        )
    } else {
        format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
    };
    out.write_all(head.as_bytes())?;
    let mut body = &served.body[start..];
    if let Some(cut) = served.cut_at {
        if nth <= served.cut_times {
            body = &body[..cut.min(body.len())];
        }
    }
    out.write_all(body)?;
    out.flush()?;
    let _ = out.shutdown(std::net::Shutdown::Both);
    Ok(())
}
