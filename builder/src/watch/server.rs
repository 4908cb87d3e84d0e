//! The HTTP side: accepts `POST`ed reports and turns each request into an [`Event`].

use super::WatchError;
use piimg_firstboot::report::{self, ReplayGuard, Report, SIGNATURE_HEADER};
use std::collections::BTreeSet;
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest body accepted; a report is a few KB.
const MAX_BODY: u64 = 1 << 20;

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
    server: tiny_http::Server,
    key: Vec<u8>,
    nodes: BTreeSet<String>,
    replay: std::cell::RefCell<ReplayGuard>,
}

impl Receiver {
    /// Binds the listen address.
    pub fn bind(listen: &str, key: Vec<u8>, nodes: &[String]) -> Result<Self, WatchError> {
        let server = tiny_http::Server::http(listen).map_err(|e| WatchError::Listen {
            listen: listen.into(),
            detail: e.to_string(),
        })?;
        Ok(Receiver {
            server,
            key,
            nodes: nodes.iter().cloned().collect(),
            replay: Default::default(),
        })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> String {
        match self.server.server_addr() {
            tiny_http::ListenAddr::IP(a) => a.to_string(),
            #[allow(unreachable_patterns)]
            _ => "?".into(),
        }
    }

    /// The next request, or `None` after `wait`.
    pub fn next(&self, wait: Duration) -> Result<Option<Event>, WatchError> {
        let Some(mut request) = self
            .server
            .recv_timeout(wait)
            .map_err(WatchError::Receive)?
        else {
            return Ok(None);
        };
        let peer = request
            .remote_addr()
            .map_or_else(|| "?".into(), |a| a.to_string());
        let (status, event) = self.judge(&mut request, peer);
        let reply = match &event {
            Event::Accepted { .. } => "accepted\n".to_owned(),
            Event::Rejected { reason, .. } => format!("rejected: {reason}\n"),
        };
        let _ = request.respond(tiny_http::Response::from_string(reply).with_status_code(status));
        Ok(Some(event))
    }

    fn judge(&self, request: &mut tiny_http::Request, peer: String) -> (u16, Event) {
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
        let mut body = Vec::new();
        if let Err(e) = request.as_reader().take(MAX_BODY).read_to_end(&mut body) {
            return reject(400, format!("reading the body: {e}"));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let report = match report::verify(&self.key, &body, signature.as_deref(), now) {
            Ok(r) => r,
            Err(e) => return reject(401, e.to_string()),
        };
        if !self.nodes.contains(&report.node) {
            return reject(
                403,
                format!("node {:?} is not one of the watched nodes", report.node),
            );
        }
        if let Err(e) = self.replay.borrow_mut().check(&report, now) {
            return reject(401, e.to_string());
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
