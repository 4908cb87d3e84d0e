//! The HTTP side: accepts `POST`ed reports and turns each request into an [`Event`].
//!
//! One client must never stall the others, nor `--timeout`: a request that announces a body
//! and never sends it used to block the whole watch. Requests are taken by an acceptor thread
//! and each body is read on a thread of its own; only finished requests reach [`Receiver::next`],
//! which therefore never blocks longer than it is asked to. At most [`MAX_IN_FLIGHT`] bodies are
//! read at once; more concurrent requests are answered 503 at once. A reader that stalls
//! holds only its own thread and connection.
//!
//! The same threads serve the browser page of the bring-up (`GET /`, its script and style,
//! and `GET /status.json`, the board as [`Receiver::show`] last set it). They are answered
//! there and never reach [`Receiver::next`]: reading the page changes nothing.

use super::WatchError;
use piimg_firstboot::hardware::Hardware;
use piimg_firstboot::report::{self, ReplayGuard, Report, Stage, SIGNATURE_HEADER};
use std::collections::BTreeSet;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest body accepted; a report is a few KB.
const MAX_BODY: u64 = 1 << 20;

/// Bodies read at once; a cluster has a handful of nodes, each reporting now and then.
pub const MAX_IN_FLIGHT: usize = 64;

/// A request whose body has been read (or failed to read).
struct Arrived {
    request: tiny_http::Request,
    body: std::io::Result<Vec<u8>>,
}

/// What one request amounted to.
#[derive(Debug)]
pub enum Event {
    /// A verified report.
    Accepted {
        /// The report.
        report: Box<Report>,
        /// Who sent it.
        peer: String,
    },
    /// A verified report from a fleet board that may not go on: it matched no node, or the
    /// name it took was claimed by another board (answered 409). Shown with its hardware.
    Board {
        /// The report (stage `unmatched`, or the refused board's).
        report: Box<Report>,
        /// Why it does not join.
        reason: String,
    },
    /// A refused request.
    Rejected {
        /// Who sent it.
        peer: String,
        /// Why.
        reason: String,
    },
}

/// Listens and verifies.
pub struct Receiver {
    server: Arc<tiny_http::Server>,
    arrived: mpsc::Receiver<Arrived>,
    key: Vec<u8>,
    nodes: BTreeSet<String>,
    replay: std::cell::RefCell<ReplayGuard>,
    /// Which board (serial and MACs) first reported each node name, from fleet reports.
    claims: std::cell::RefCell<std::collections::BTreeMap<String, Hardware>>,
    /// The board as JSON, for `GET /status.json`.
    status: Arc<Mutex<Vec<u8>>>,
}

/// The page's files: no build step, nothing loaded from elsewhere.
const PAGE: [(&str, &str, &str); 3] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("page/index.html"),
    ),
    (
        "/page.js",
        "text/javascript; charset=utf-8",
        include_str!("page/page.js"),
    ),
    (
        "/page.css",
        "text/css; charset=utf-8",
        include_str!("page/page.css"),
    ),
];

/// Only the page's own files, no inline script, no other origin: network text cannot run.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

impl Receiver {
    /// Binds the listen address.
    pub fn bind(listen: &str, key: Vec<u8>, nodes: &[String]) -> Result<Self, WatchError> {
        let server = tiny_http::Server::http(listen).map_err(|e| WatchError::Listen {
            listen: listen.into(),
            detail: e.to_string(),
        })?;
        let server = Arc::new(server);
        let (tx, arrived) = mpsc::channel();
        let acceptor = Arc::clone(&server);
        let status = Arc::new(Mutex::new(b"{}".to_vec()));
        let shown = Arc::clone(&status);
        std::thread::spawn(move || accept(&acceptor, &tx, &shown));
        Ok(Receiver {
            server,
            arrived,
            key,
            nodes: nodes.iter().cloned().collect(),
            replay: Default::default(),
            claims: Default::default(),
            status,
        })
    }

    /// Sets what `GET /status.json` answers from now on.
    pub fn show(&self, status: &serde_json::Value) {
        let bytes = serde_json::to_vec(status).unwrap_or_else(|_| b"{}".to_vec());
        if let Ok(mut s) = self.status.lock() {
            *s = bytes;
        }
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> String {
        match self.server.server_addr() {
            tiny_http::ListenAddr::IP(a) => a.to_string(),
            #[allow(unreachable_patterns)]
            _ => "?".into(),
        }
    }

    /// The next finished request, or `None` after `wait`: never longer, whatever the clients do.
    pub fn next(&self, wait: Duration) -> Result<Option<Event>, WatchError> {
        let Arrived { request, body } = match self.arrived.recv_timeout(wait) {
            Ok(a) => a,
            Err(mpsc::RecvTimeoutError::Timeout) => return Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(WatchError::Receive(std::io::Error::other(
                    "the listener stopped accepting",
                )))
            }
        };
        let peer = request
            .remote_addr()
            .map_or_else(|| "?".into(), |a| a.to_string());
        let (status, event) = self.judge(&request, body, peer);
        let reply = match &event {
            Event::Accepted { .. } => "accepted\n".to_owned(),
            Event::Board { reason, .. } | Event::Rejected { reason, .. } => {
                format!("rejected: {reason}\n")
            }
        };
        let _ = request.respond(tiny_http::Response::from_string(reply).with_status_code(status));
        Ok(Some(event))
    }

    fn judge(
        &self,
        request: &tiny_http::Request,
        body: std::io::Result<Vec<u8>>,
        peer: String,
    ) -> (u16, Event) {
        let reject = |status, reason: String| {
            (
                status,
                Event::Rejected {
                    peer: peer.clone(),
                    reason,
                },
            )
        };
        if *request.method() != tiny_http::Method::Post {
            return reject(405, format!("{} is not POST", request.method()));
        }
        let signature = request
            .headers()
            .iter()
            .find(|h| h.field.equiv(SIGNATURE_HEADER))
            .map(|h| h.value.as_str().to_owned());
        let body = match body {
            Ok(b) => b,
            Err(e) => return reject(400, format!("reading the body: {e}")),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let report = match report::verify(&self.key, &body, signature.as_deref(), now) {
            Ok(r) => r,
            Err(e) => return reject(401, e.to_string()),
        };
        if report.stage == Stage::Unmatched {
            // A fleet board that took no node: signed by the cluster's key, so one of ours,
            // under the fleet's name rather than a node's. Shown, so its owner can add it.
            if let Err(e) = self.replay.borrow_mut().check(&report, now) {
                return reject(401, e.to_string());
            }
            let reason = report.error.clone().unwrap_or_default();
            return (
                200,
                Event::Board {
                    report: Box::new(report),
                    reason,
                },
            );
        }
        if !self.nodes.contains(&report.node) {
            return reject(
                403,
                format!("node {:?} is not one of the watched nodes", report.node),
            );
        }
        if let Err(e) = self.replay.borrow_mut().check(&report, now) {
            return reject(401, e.to_string());
        }
        if let Some(reason) = self.claim(&report) {
            return (
                409,
                Event::Board {
                    report: Box::new(report),
                    reason,
                },
            );
        }
        (
            200,
            Event::Accepted {
                report: Box::new(report),
                peer,
            },
        )
    }
}

impl Receiver {
    /// A fleet board's report claims its node's name for that board: the first board to
    /// report a name keeps it for as long as the watch runs; another board reporting the same
    /// name is refused (why, as text), so it stops before it touches a disk. Reports without
    /// hardware (a node's own image) claim nothing.
    fn claim(&self, report: &Report) -> Option<String> {
        let hw = report.hardware.as_ref()?;
        let mut claims = self.claims.borrow_mut();
        match claims.get(&report.node) {
            Some(first) if !same_board(first, hw) => Some(format!(
                "node {} was taken by another board ({}) since this watch started; this board is {}: give each board its own profile `match`, or, if this board replaces that one, restart `piimg watch` and delete the old Node",
                report.node,
                first.describe(),
                hw.describe()
            )),
            Some(_) => None,
            None => {
                claims.insert(report.node.clone(), hw.clone());
                None
            }
        }
    }
}

/// Whether two reports come from one board: the same serial when both have one, else a MAC
/// in common.
fn same_board(a: &Hardware, b: &Hardware) -> bool {
    use piimg_firstboot::fleet::BoardMatch;
    match (&a.serial, &b.serial) {
        (Some(x), Some(y)) => {
            BoardMatch::Serial(x.clone()).same_board(&BoardMatch::Serial(y.clone()))
        }
        _ => a.nics.iter().any(|n| b.nics.iter().any(|m| m.mac == n.mac)),
    }
}

/// Takes requests as they come and reads each body on its own thread, so a slow or stalled
/// client delays nobody else. Ends when the receiver is gone.
fn accept(server: &tiny_http::Server, tx: &mpsc::Sender<Arrived>, status: &Arc<Mutex<Vec<u8>>>) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    for mut request in server.incoming_requests() {
        if in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let busy = tiny_http::Response::from_string("busy: too many reports at once, retry\n")
                .with_status_code(503);
            let _ = request.respond(busy);
            continue;
        }
        let tx = tx.clone();
        let in_flight = Arc::clone(&in_flight);
        let status = Arc::clone(status);
        std::thread::spawn(move || {
            if *request.method() == tiny_http::Method::Get {
                if let Some(response) = page(request.url(), &status) {
                    let _ = request.respond(response);
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    return;
                }
            }
            let mut body = Vec::new();
            // Only POSTs carry a report; anything else is judged without reading.
            let read = if *request.method() == tiny_http::Method::Post {
                request
                    .as_reader()
                    .take(MAX_BODY)
                    .read_to_end(&mut body)
                    .map(|_| body)
            } else {
                Ok(Vec::new())
            };
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let _ = tx.send(Arrived {
                request,
                body: read,
            });
        });
    }
}

/// The answer to a `GET` of the page, its files or the status; `None` for any other path.
fn page(
    url: &str,
    status: &Mutex<Vec<u8>>,
) -> Option<tiny_http::Response<std::io::Cursor<Vec<u8>>>> {
    let path = url.split('?').next().unwrap_or(url);
    let (kind, body) = if path == "/status.json" {
        (
            "application/json",
            status.lock().map(|s| s.clone()).unwrap_or_default(),
        )
    } else {
        let (_, kind, text) = PAGE.iter().find(|(p, _, _)| *p == path)?;
        (*kind, text.as_bytes().to_vec())
    };
    let header = |name: &str, value: &str| {
        tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("ASCII header")
    };
    Some(
        tiny_http::Response::from_data(body)
            .with_header(header("Content-Type", kind))
            .with_header(header("Content-Security-Policy", CSP))
            .with_header(header("Cache-Control", "no-store"))
            .with_header(header("X-Content-Type-Options", "nosniff")),
    )
}
