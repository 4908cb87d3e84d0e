//! Step 4: tell the world: `/run/piimg/status.json`, a console line (also shown on the login
//! prompt through `/etc/issue.d/`), and the signed report POSTed to `piimg watch` with retries.
//! It runs after failures too, so a headless node is never silent.

use crate::context::Ctx;
use crate::report::{sign, Report, SIGNATURE_HEADER};
use std::io::Read;

/// Where the last report is kept for local tools.
pub const STATUS_PATH: &str = "/run/piimg/status.json";

/// The login-prompt snippet (agetty reads `/etc/issue.d/*.issue`).
pub const ISSUE_PATH: &str = "/etc/issue.d/piimg.issue";

/// POST attempts before giving up until the next boot.
pub const ATTEMPTS: u32 = 6;

/// Why the report could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    /// Writing a local file.
    #[error("{path}: {what}: {source}")]
    Local {
        /// The file.
        path: String,
        /// What was being done.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// `piimg watch` did not take it.
    #[error("report to {url} not delivered after {ATTEMPTS} attempts: {last} (is `piimg watch` running and reachable?)")]
    Post {
        /// The URL.
        url: String,
        /// The last failure.
        last: String,
    },
}

/// A fresh random nonce (hex); `/dev/urandom` is always there on Linux.
pub fn nonce() -> String {
    let mut buf = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok();
    if !ok {
        // Still unique per process and time; replay protection degrades to the timestamp.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        buf.copy_from_slice(&(t ^ u128::from(std::process::id())).to_le_bytes());
    }
    hex::encode(buf)
}

/// The one-line summary for the console, journal and login prompt.
pub fn summary_line(report: &Report) -> String {
    let addr = report
        .addresses
        .first()
        .map(String::as_str)
        .unwrap_or("no address");
    match &report.error {
        Some(err) => format!(
            "piimg: {} FAILED ({}): {err}",
            report.node,
            report.stage.as_str()
        ),
        None => format!(
            "piimg: {} {} at {addr}, build {}, k3s {}",
            report.node,
            report.stage.as_str(),
            report.build_id,
            report.k3s_version
        ),
    }
}

/// What sending a report needs: a run's context, or (for a fleet image's board that matches
/// no node, which has no node config) the same parts taken from the fleet table.
pub struct Announcer<'a> {
    /// Node paths (under the test root, if any).
    pub paths: &'a crate::paths::NodePaths,
    /// The machine.
    pub sys: &'a dyn crate::system::System,
    /// `piimg watch`'s report URL, if any.
    pub url: Option<&'a str>,
    /// Unit of the retry delays.
    pub backoff_unit: std::time::Duration,
    /// Print instead of doing.
    pub dry_run: bool,
}

impl<'a> Announcer<'a> {
    /// The announcer of a run.
    pub fn of(ctx: &'a Ctx<'a>) -> Self {
        Announcer {
            paths: &ctx.paths,
            sys: ctx.sys,
            url: ctx.cfg.report.url.as_deref(),
            backoff_unit: ctx.backoff_unit,
            dry_run: ctx.dry_run,
        }
    }
}

/// How one POST of a report ended when it was not taken.
#[derive(Debug)]
pub enum Refusal {
    /// `piimg watch` answered, and not with 2xx.
    Answered {
        /// The status code.
        status: u16,
        /// Its reason, as it said it.
        body: String,
    },
    /// No answer (connection refused, timeout, no route).
    Unreachable(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Answered { status, body } => write!(f, "answered {status}: {}", body.trim()),
            Refusal::Unreachable(e) => f.write_str(e),
        }
    }
}

/// POSTs the signed report to `url` once.
pub fn post(a: &Announcer<'_>, url: &str, report: &Report, key: &[u8]) -> Result<(), Refusal> {
    let body = serde_json::to_vec(report).unwrap_or_default();
    let signature = sign(key, &body);
    let headers = [
        ("Content-Type", "application/json"),
        (SIGNATURE_HEADER, signature.as_str()),
    ];
    match a.sys.http_post(url, &headers, &body) {
        Ok(r) if (200..300).contains(&r.status) => Ok(()),
        Ok(r) => Err(Refusal::Answered {
            status: r.status,
            body: r.body,
        }),
        Err(e) => Err(Refusal::Unreachable(e.to_string())),
    }
}

/// Writes the local status, prints the summary and POSTs the report.
pub fn announce(ctx: &Ctx<'_>, report: &Report, key: &[u8]) -> Result<(), AnnounceError> {
    announce_with(&Announcer::of(ctx), report, key)
}

/// [`announce`] with its parts given one by one.
pub fn announce_with(a: &Announcer<'_>, report: &Report, key: &[u8]) -> Result<(), AnnounceError> {
    let body = serde_json::to_vec(report).unwrap_or_default();
    let line = summary_line(report);
    if a.dry_run {
        println!("{line}");
        match a.url {
            Some(url) => println!("would POST the signed report to {url}"),
            None => println!("no report URL configured: would only write {STATUS_PATH}"),
        }
        return Ok(());
    }
    println!("{line}");
    let status = a.paths.node(STATUS_PATH);
    crate::state::write_atomic(&status, &body, 0o644).map_err(|(what, source)| {
        AnnounceError::Local {
            path: status.display().to_string(),
            what,
            source,
        }
    })?;
    let issue = a.paths.node(ISSUE_PATH);
    crate::state::write_atomic(&issue, format!("{line}\n").as_bytes(), 0o644).map_err(
        |(what, source)| AnnounceError::Local {
            path: issue.display().to_string(),
            what,
            source,
        },
    )?;
    let Some(url) = a.url else {
        return Ok(());
    };
    let mut delay = 1u32;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        match post(a, url, report, key) {
            Ok(()) => {
                tracing::info!(%url, "report delivered");
                return Ok(());
            }
            Err(e) => last = e.to_string(),
        }
        tracing::warn!(attempt, %last, "report not delivered");
        if attempt < ATTEMPTS {
            a.sys.sleep(a.backoff_unit * delay);
            delay *= 2;
        }
    }
    Err(AnnounceError::Post {
        url: url.to_string(),
        last,
    })
}
