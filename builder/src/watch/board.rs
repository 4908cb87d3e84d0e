//! The live table: one row per expected node, updated by events, rendered as a screen (TTY)
//! or as one line per event (logs, CI).

use super::server::Event;
use piimg_firstboot::config::Role;
use piimg_firstboot::report::{Report, Stage};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// What is known of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeRow {
    /// Latest stage, `None` before the first report.
    pub stage: Option<Stage>,
    /// First address it reported.
    pub address: String,
    /// Image build id.
    pub build_id: String,
    /// Time since watch started when its latest report arrived.
    pub seen_at: Option<Duration>,
    /// Its latest error.
    pub last_error: Option<String>,
    /// Whether it is the k3s server (from its reports).
    pub server: bool,
    /// The first-boot steps of its latest report, as (step, status, error), sanitised.
    pub steps: Vec<(String, String, Option<String>)>,
}

/// A fleet board that does not join: it matched no node, or another board holds its name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoardRow {
    /// The fleet image it booted.
    pub fleet: String,
    /// Its serial and MACs, as it reported them (sanitised).
    pub hardware: String,
    /// Its address.
    pub address: String,
    /// Why it does not join, with the fix (sanitised).
    pub reason: String,
    /// Time since watch started when it reported.
    pub seen_at: Duration,
}

impl BoardRow {
    /// `board serial …, mac … (ADDRESS) of fleet F does not join: REASON`, for the log and
    /// the table alike.
    pub fn line(&self) -> String {
        let address = if self.address.is_empty() {
            "-"
        } else {
            &self.address
        };
        format!(
            "board {} ({address}) of fleet {} does not join: {}",
            self.hardware, self.fleet, self.reason
        )
    }
}

/// All rows plus the latest rejections.
#[derive(Debug, Default)]
pub struct Board {
    rows: BTreeMap<String, NodeRow>,
    /// Fleet boards that do not join, by what they are.
    boards: BTreeMap<String, BoardRow>,
    rejections: Vec<String>,
}

/// Most characters of one network-given text shown in the table.
const MAX_SHOWN: usize = 200;

/// Text that came from the network (a request's method or path inside a rejection, a report's
/// address, build id or error), made safe to print on a terminal: every control character
/// (ESC, CR, BEL, …, and Unicode's bidirectional overrides) is shown as `\u{…}` instead of
/// acting, and the text is cut to [`MAX_SHOWN`] characters. Unauthenticated requests could
/// otherwise clear or rewrite the live table.
pub fn printable(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX_SHOWN {
            out.push('…');
            break;
        }
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

impl Board {
    /// A board for these nodes, all waiting.
    pub fn new(nodes: &[String]) -> Self {
        Board {
            rows: nodes
                .iter()
                .map(|n| (n.clone(), NodeRow::default()))
                .collect(),
            boards: BTreeMap::new(),
            rejections: Vec::new(),
        }
    }

    /// Applies an event; returns its one-line description.
    pub fn apply(&mut self, event: Event, at: Duration) -> String {
        match event {
            Event::Accepted { report, peer } => self.accept(&report, &peer, at),
            Event::Board { report, reason } => self.board(&report, &reason, at),
            Event::Rejected { peer, reason } => {
                let line = format!(
                    "rejected report from {}: {}",
                    printable(&peer),
                    printable(&reason)
                );
                self.rejections.push(line.clone());
                if self.rejections.len() > 5 {
                    self.rejections.remove(0);
                }
                line
            }
        }
    }

    fn accept(&mut self, report: &Report, peer: &str, at: Duration) -> String {
        let row = self.rows.entry(report.node.clone()).or_default();
        row.stage = Some(report.stage);
        row.address = printable(
            &report
                .addresses
                .first()
                .cloned()
                .unwrap_or_else(|| peer.split(':').next().unwrap_or(peer).to_owned()),
        );
        row.build_id = printable(&report.build_id);
        row.seen_at = Some(at);
        row.last_error = report.error.as_deref().map(printable);
        row.server = report.role == Role::Server;
        row.steps = report
            .steps
            .iter()
            .map(|s| {
                (
                    printable(&s.step),
                    printable(&s.status),
                    s.error.as_deref().map(printable),
                )
            })
            .collect();
        let mut line = format!(
            "{} {} address {} build {} at {}",
            report.node,
            report.stage.as_str(),
            row.address,
            row.build_id,
            secs(at)
        );
        if let Some(e) = &row.last_error {
            let _ = write!(line, ": {e}");
        }
        line
    }

    fn board(&mut self, report: &Report, reason: &str, at: Duration) -> String {
        let hardware = printable(
            &report
                .hardware
                .as_ref()
                .map_or_else(|| "no hardware reported".into(), |h| h.describe()),
        );
        let row = BoardRow {
            fleet: printable(report.fleet.as_deref().unwrap_or(&report.node)),
            address: printable(report.addresses.first().map_or("", String::as_str)),
            reason: printable(reason),
            seen_at: at,
            hardware: hardware.clone(),
        };
        let line = row.line();
        self.boards.insert(hardware, row);
        line
    }

    /// The fleet boards that do not join.
    pub fn boards(&self) -> impl Iterator<Item = &BoardRow> {
        self.boards.values()
    }

    /// Names of the nodes not (yet) ready.
    pub fn not_ready(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter(|(_, r)| r.stage != Some(Stage::Ready))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The first node whose latest report is a failure.
    pub fn failed(&self) -> Option<(String, String)> {
        self.rows.iter().find_map(|(n, r)| {
            (r.stage == Some(Stage::Failed))
                .then(|| (n.clone(), r.last_error.clone().unwrap_or_default()))
        })
    }

    /// The table as text.
    pub fn render_table(&self, now: Duration) -> String {
        let mut out = format!(
            "{:<16} {:<9} {:<16} {:<14} {:>8}  {}\n",
            "NODE", "STAGE", "ADDRESS", "BUILD", "ELAPSED", "LAST ERROR"
        );
        for (name, r) in &self.rows {
            let build: String = r.build_id.chars().take(14).collect();
            let _ = writeln!(
                out,
                "{:<16} {:<9} {:<16} {:<14} {:>8}  {}",
                name,
                r.stage.map_or("waiting", Stage::as_str),
                if r.address.is_empty() {
                    "-"
                } else {
                    &r.address
                },
                if build.is_empty() { "-" } else { &build },
                r.seen_at.map_or_else(|| secs(now), secs),
                r.last_error.as_deref().unwrap_or("")
            );
        }
        for b in self.boards.values() {
            let _ = writeln!(out, "{}", b.line());
        }
        out
    }

    /// The board as the browser page reads it (`/status.json`): every node with its stage,
    /// steps and error, the recent rejections, and the dashboard link once a server is ready.
    /// Every text is already [`printable`]; the page puts it in the DOM as text, never markup.
    pub fn status_json(&self, now: Duration, dashboard: Option<&str>) -> serde_json::Value {
        let nodes: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|(name, r)| {
                serde_json::json!({
                    "node": name,
                    "stage": r.stage.map_or("waiting", Stage::as_str),
                    "server": r.server,
                    "address": r.address,
                    "build_id": r.build_id,
                    "seen_s": r.seen_at.map(|d| d.as_secs()),
                    "error": r.last_error,
                    "steps": r.steps.iter().map(|(step, status, error)| serde_json::json!({
                        "step": step, "status": status, "error": error,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let server_ready = self
            .rows
            .values()
            .any(|r| r.server && r.stage == Some(Stage::Ready));
        serde_json::json!({
            "elapsed_s": now.as_secs(),
            "nodes": nodes,
            "ready": self.not_ready().is_empty(),
            "rejections": self.rejections,
            "boards": self.boards.values().map(|b| serde_json::json!({
                "fleet": b.fleet,
                "hardware": b.hardware,
                "address": b.address,
                "reason": b.reason,
                "seen_s": b.seen_at.as_secs(),
            })).collect::<Vec<_>>(),
            "dashboard": dashboard.filter(|_| server_ready),
        })
    }

    /// A full screen: clear, table, recent rejections.
    pub fn render_screen(&self, now: Duration) -> String {
        let mut out = String::from("\x1b[H\x1b[2J");
        out.push_str(&self.render_table(now));
        for r in &self.rejections {
            out.push_str(r);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use piimg_firstboot::config::Role;

    fn report(node: &str, stage: Stage, error: Option<&str>) -> Report {
        Report {
            schema: 1,
            cluster: "homelab".into(),
            node: node.into(),
            role: Role::Agent,
            build_id: "build-42".into(),
            k3s_version: "v1".into(),
            stage,
            addresses: vec!["192.0.2.7".into()],
            storage: None,
            steps: vec![],
            error: error.map(Into::into),
            timestamp: 0,
            nonce: "n".into(),
            fleet: None,
            hardware: None,
        }
    }

    /// Issue 15.11: a request method of `\x1b[2J…` was printed raw into the live table.
    #[test]
    fn text_from_the_network_cannot_drive_the_terminal() {
        let mut b = Board::new(&["a".into()]);
        let line = b.apply(
            Event::Rejected {
                peer: "192.0.2.1:5\x07".into(),
                reason: "\x1b[2J\x1b[Hfake table\r\u{202e} is not POST".into(),
            },
            Duration::ZERO,
        );
        let mut bad = report("a", Stage::Failed, Some("\x1b]0;owned\x07 boom"));
        bad.build_id = "x\x1b[31m".into();
        let _ = b.apply(
            Event::Accepted {
                report: Box::new(bad),
                peer: "p".into(),
            },
            Duration::ZERO,
        );
        let screen = b.render_screen(Duration::ZERO);
        // The screen's own clear sequence stays; nothing from the network adds another.
        let own = screen.strip_prefix("\x1b[H\x1b[2J").unwrap();
        for text in [line.as_str(), own] {
            assert!(
                !text.chars().any(|c| c.is_control() && c != '\n'),
                "{text:?}"
            );
            assert!(!text.contains('\u{202e}'), "{text:?}");
        }
        assert!(
            line.contains("\\u{1b}[2J") && line.contains("fake table"),
            "{line}"
        );
        assert!(printable(&"x".repeat(500)).chars().count() <= MAX_SHOWN + 1);
    }

    #[test]
    fn rows_follow_reports() {
        let mut b = Board::new(&["a".into(), "b".into()]);
        assert_eq!(b.not_ready(), vec!["a", "b"]);
        let line = b.apply(
            Event::Accepted {
                report: Box::new(report("a", Stage::Ready, None)),
                peer: "192.0.2.7:5555".into(),
            },
            Duration::from_secs(3),
        );
        assert_eq!(line, "a ready address 192.0.2.7 build build-42 at 3s");
        assert_eq!(b.not_ready(), vec!["b"]);
        b.apply(
            Event::Accepted {
                report: Box::new(report("b", Stage::Failed, Some("storage: no disk"))),
                peer: "p".into(),
            },
            Duration::from_secs(4),
        );
        assert_eq!(b.failed(), Some(("b".into(), "storage: no disk".into())));
        let table = b.render_table(Duration::from_secs(5));
        assert!(table.contains("a                ready"), "{table}");
        assert!(table.contains("storage: no disk"), "{table}");
        let line = b.apply(
            Event::Rejected {
                peer: "p".into(),
                reason: "stale".into(),
            },
            Duration::ZERO,
        );
        assert_eq!(line, "rejected report from p: stale");
        assert!(b
            .render_screen(Duration::ZERO)
            .contains("rejected report from p"));
    }

    #[test]
    fn the_page_links_the_dashboard_only_once_the_server_is_ready() {
        let mut b = Board::new(&["cp".into(), "a".into()]);
        let link = "https://grafana.lab.example/d/piimg-cluster-nodes";
        let url = Some(link);
        let mut cp = report("cp", Stage::Joining, None);
        cp.role = Role::Server;
        b.apply(
            Event::Accepted {
                report: Box::new(cp.clone()),
                peer: "p".into(),
            },
            Duration::ZERO,
        );
        let st = b.status_json(Duration::ZERO, url);
        assert_eq!(st["dashboard"], serde_json::Value::Null);
        assert_eq!(st["nodes"][0]["node"], "a");
        assert_eq!(st["nodes"][0]["stage"], "waiting");
        cp.stage = Stage::Ready;
        b.apply(
            Event::Accepted {
                report: Box::new(cp),
                peer: "p".into(),
            },
            Duration::ZERO,
        );
        let st = b.status_json(Duration::ZERO, url);
        assert_eq!(st["dashboard"], link);
        assert_eq!(st["nodes"][1]["server"], true);
        assert_eq!(st["ready"], false);
    }
}
