//! `piimg watch`: receives the nodes' signed readiness reports and shows where each node is.
//!
//! Reports are checked with the same `verify` the nodes sign with
//! ([`piimg_firstboot::report`]): unsigned, badly signed, stale, replayed and unknown-node
//! reports are refused and shown as such. The server is `tiny_http`: a small, synchronous,
//! well-kept crate is enough for a handful of nodes posting a few reports each, and keeps an
//! async runtime out of the CLI.

mod board;
mod server;

pub use board::{Board, NodeRow};

use std::fmt;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Everything `watch` needs; the `piimg watch` verb fills it from cluster.toml and the
/// cluster secrets (or from `--nodes` and `--key-file`).
#[derive(Clone)]
pub struct WatchSetup {
    /// Names of the nodes expected to report.
    pub nodes: Vec<String>,
    /// The cluster report key (secret).
    pub key: Vec<u8>,
    /// Address to listen on, e.g. `0.0.0.0:8787`.
    pub listen: String,
    /// Exit once every expected node is ready (0), or a node failed (error).
    pub until_ready: bool,
    /// Give up after this long (error).
    pub timeout: Option<Duration>,
    /// The Grafana dashboard the page links to once the server is ready (with monitoring on).
    pub dashboard: Option<String>,
}

impl fmt::Debug for WatchSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchSetup")
            .field("nodes", &self.nodes)
            .field("key", &"<redacted>")
            .field("listen", &self.listen)
            .field("until_ready", &self.until_ready)
            .field("timeout", &self.timeout)
            .field("dashboard", &self.dashboard)
            .finish()
    }
}

/// The default listen address (all interfaces: the nodes are elsewhere on the LAN).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8787";

/// Why `watch` ended without every node ready.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// Nothing to wait for.
    #[error("no nodes to watch: list them in cluster.toml's `nodes` or pass --nodes")]
    NoNodes,
    /// The key is unusable.
    #[error("report key file {path}: {detail}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong (never the key).
        detail: String,
    },
    /// Cannot listen.
    #[error("cannot listen on {listen}: {detail} (is another piimg watch running? pick another --listen)")]
    Listen {
        /// The address.
        listen: String,
        /// The cause.
        detail: String,
    },
    /// The server broke.
    #[error("receiving reports: {0}")]
    Receive(std::io::Error),
    /// Timed out.
    #[error("timed out after {after}: still not ready: {waiting}")]
    Timeout {
        /// The timeout.
        after: String,
        /// Nodes not ready.
        waiting: String,
    },
    /// A node reported failure.
    #[error("node {node} failed: {error}")]
    NodeFailed {
        /// The node.
        node: String,
        /// Its reason.
        error: String,
    },
}

/// What is wrong with a key [`key_from_hex`] refuses (never the key itself).
pub const KEY_PROBLEM: &str = "is not at least 16 bytes of hex";

/// The key bytes of a hex report key (surrounding whitespace ignored), or `None` if it is not
/// hex or too short to be a key. The secrets file and `--key-file` hold it this way, as does
/// node.toml, which first boot decodes the same way.
pub fn key_from_hex(text: &str) -> Option<Vec<u8>> {
    hex::decode(text.trim()).ok().filter(|k| k.len() >= 16)
}

/// Reads a report key file: hex, surrounding whitespace ignored.
pub fn read_key_file(path: &std::path::Path) -> Result<Vec<u8>, WatchError> {
    let err = |detail: &str| WatchError::Key {
        path: path.display().to_string(),
        detail: detail.into(),
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(&e.to_string()))?;
    key_from_hex(&text).ok_or_else(|| {
        err(&format!(
            "{KEY_PROBLEM}; it must hold the cluster report key as hex"
        ))
    })
}

/// Runs the watch until interrupted, or (with `until_ready`) until every node is ready.
pub fn run(setup: &WatchSetup) -> Result<(), WatchError> {
    if setup.nodes.is_empty() {
        return Err(WatchError::NoNodes);
    }
    let server = server::Receiver::bind(&setup.listen, setup.key.clone(), &setup.nodes)?;
    let tty = std::io::stdout().is_terminal();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "piimg watch: listening on {}", server.addr());
    tracing::info!("bring-up page: http://{}/", server.addr());
    let _ = out.flush();
    let started = Instant::now();
    let mut board = Board::new(&setup.nodes);
    let dashboard = setup.dashboard.as_deref();
    loop {
        server.show(&board.status_json(started.elapsed(), dashboard));
        let elapsed = started.elapsed();
        if let Some(limit) = setup.timeout {
            if elapsed >= limit {
                return Err(WatchError::Timeout {
                    after: humantime::format_duration(limit).to_string(),
                    waiting: board.not_ready().join(", "),
                });
            }
        }
        let wait = setup.timeout.map_or(Duration::from_secs(1), |l| {
            (l - elapsed).min(Duration::from_secs(1))
        });
        let Some(event) = server.next(wait)? else {
            if tty {
                let _ = write!(out, "{}", board.render_screen(started.elapsed()));
                let _ = out.flush();
            }
            continue;
        };
        let line = board.apply(event, started.elapsed());
        if tty {
            let _ = write!(out, "{}", board.render_screen(started.elapsed()));
        } else {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
        if setup.until_ready {
            if let Some((node, error)) = board.failed() {
                return Err(WatchError::NodeFailed { node, error });
            }
            if board.not_ready().is_empty() {
                let _ = writeln!(out, "piimg watch: all {} nodes ready", setup.nodes.len());
                return Ok(());
            }
        }
    }
}
