//! The signed readiness report a node POSTs to `piimg watch`.
//!
//! Both sides compile against this module, so the JSON schema, the header name and the
//! signature rules cannot drift. The MAC is HMAC-SHA256 under the cluster report key over the
//! exact body bytes; the body itself carries a timestamp and a random nonce, so a captured
//! report cannot be replayed later (stale) or twice (nonce already seen).

use crate::config::Role;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::HashMap;

/// Header that carries `sha256=<hex MAC of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Piimg-Signature";

/// Prefix of the signature header value, naming the algorithm so it can change later.
pub const SIGNATURE_PREFIX: &str = "sha256=";

/// Report schema version; `piimg watch` refuses others.
pub const REPORT_SCHEMA: u32 = 1;

/// How far a report's timestamp may be from the receiver's clock, in seconds.
pub const MAX_SKEW_SECS: u64 = 300;

/// Where a node is in its first boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// A fleet image's board has taken a node and asks `piimg watch` whether another board
    /// holds that name already (a `409 Conflict` answer stops it before the SSD is touched).
    Claiming,
    /// A fleet image's board that matches no member (or several): it reports its serial and
    /// MACs and does nothing else.
    Unmatched,
    /// Finding, formatting or mounting the SSD.
    Storage,
    /// Syncing manifests and air-gap images into the k3s data-dir.
    K3sData,
    /// k3s started, waiting for the node to become ready.
    Joining,
    /// The node is ready.
    Ready,
    /// A step failed; `error` says which and why.
    Failed,
}

impl Stage {
    /// The word shown in tables and console lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Claiming => "claiming",
            Stage::Unmatched => "unmatched",
            Stage::Storage => "storage",
            Stage::K3sData => "k3s-data",
            Stage::Joining => "joining",
            Stage::Ready => "ready",
            Stage::Failed => "failed",
        }
    }
}

/// What became of one step in this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReport {
    /// `grow-root`, `kernel-cmdline`, `storage`, `binds`, `k3s-data`, `join`, `prune` or
    /// `report`. `grow-root`, `kernel-cmdline` and `prune` may fail without failing the node.
    pub step: String,
    /// `ok`, `failed` or `skipped`.
    pub status: String,
    /// Wall time the step took in this run.
    pub duration_ms: u64,
    /// The reason it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What was done with the SSD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageSummary {
    /// The disk, as the selector saw it (a by-id name when there is one).
    pub disk: String,
    /// `formatted` (blank disk prepared now) or `mounted` (existing piimg disk kept).
    pub action: String,
    /// Where it is mounted.
    pub mount_point: String,
}

/// The body of a readiness report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Must equal [`REPORT_SCHEMA`].
    pub schema: u32,
    /// Cluster name.
    pub cluster: String,
    /// Node name.
    pub node: String,
    /// Server or agent.
    pub role: Role,
    /// The image's build id.
    pub build_id: String,
    /// The k3s version in the image.
    pub k3s_version: String,
    /// Where the node is.
    pub stage: Stage,
    /// The node's non-loopback addresses.
    pub addresses: Vec<String>,
    /// What happened to the SSD, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSummary>,
    /// Each step of this run.
    pub steps: Vec<StepReport>,
    /// The first failure of this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds since the Unix epoch when the report was made (the node's clock).
    pub timestamp: u64,
    /// Random hex, unique per report, against replay.
    pub nonce: String,
    /// From a fleet image: the fleet's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<String>,
    /// From a fleet image: the board's serial and wired MACs (how it took its node, or what
    /// to copy into a profile's `match` when it matched none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<crate::hardware::Hardware>,
}

/// Why a received report is not accepted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// No signature header.
    #[error("report is not signed (no {SIGNATURE_HEADER} header): the sender is not piimg-firstboot or is misconfigured")]
    Unsigned,
    /// The MAC does not match.
    #[error("report signature does not match: the node's report key differs from the cluster's (rebuild its image) or the body was altered")]
    BadSignature,
    /// The body is not a report.
    #[error("report body is not valid: {0}")]
    Body(String),
    /// Another schema.
    #[error(
        "report schema {0} is not {REPORT_SCHEMA}: use matching piimg and piimg-firstboot versions"
    )]
    Schema(u32),
    /// Timestamp too far from now.
    #[error("report is stale: its timestamp is {age_secs} s away from this clock (limit {MAX_SKEW_SECS} s); a replay, or the node's clock is wrong")]
    Stale {
        /// Distance from the receiver's clock.
        age_secs: u64,
    },
    /// Nonce seen before.
    #[error("report was already received (nonce seen before): a replay")]
    Replayed,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts every key length"),
    }
}

/// The value of [`SIGNATURE_HEADER`] for `body`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut m = mac(key);
    m.update(body);
    format!(
        "{SIGNATURE_PREFIX}{}",
        hex::encode(m.finalize().into_bytes())
    )
}

/// Checks the signature (constant time), the schema and the timestamp, and parses the report.
/// Replay of a fresh report is caught by [`ReplayGuard`].
pub fn verify(
    key: &[u8],
    body: &[u8],
    signature: Option<&str>,
    now_unix: u64,
) -> Result<Report, ReportError> {
    let signature = signature.ok_or(ReportError::Unsigned)?;
    let hex_mac = signature
        .trim()
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or(ReportError::BadSignature)?;
    let given = hex::decode(hex_mac).map_err(|_| ReportError::BadSignature)?;
    let mut m = mac(key);
    m.update(body);
    m.verify_slice(&given)
        .map_err(|_| ReportError::BadSignature)?;
    let report: Report =
        serde_json::from_slice(body).map_err(|e| ReportError::Body(e.to_string()))?;
    if report.schema != REPORT_SCHEMA {
        return Err(ReportError::Schema(report.schema));
    }
    let age_secs = now_unix.abs_diff(report.timestamp);
    if age_secs > MAX_SKEW_SECS {
        return Err(ReportError::Stale { age_secs });
    }
    Ok(report)
}

/// Remembers the nonces of accepted reports for as long as they could pass the freshness check.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: HashMap<String, u64>,
}

impl ReplayGuard {
    /// Accepts a verified report once; a second time is [`ReportError::Replayed`].
    pub fn check(&mut self, report: &Report, now_unix: u64) -> Result<(), ReportError> {
        self.seen
            .retain(|_, ts| now_unix.abs_diff(*ts) <= 2 * MAX_SKEW_SECS);
        if self.seen.contains_key(&report.nonce) {
            return Err(ReportError::Replayed);
        }
        self.seen.insert(report.nonce.clone(), report.timestamp);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ts: u64) -> Report {
        Report {
            schema: REPORT_SCHEMA,
            cluster: "homelab".into(),
            node: "worker-1".into(),
            role: Role::Agent,
            build_id: "b1".into(),
            k3s_version: "v1.31.4+k3s1".into(),
            stage: Stage::Ready,
            addresses: vec!["192.0.2.7".into()],
            storage: None,
            steps: vec![],
            error: None,
            timestamp: ts,
            nonce: "00ff".into(),
            fleet: None,
            hardware: None,
        }
    }

    #[test]
    fn a_signed_report_verifies_and_a_tampered_one_does_not() {
        let key = b"0123456789abcdef";
        let body = serde_json::to_vec(&report(1000)).unwrap();
        let sig = sign(key, &body);
        assert_eq!(verify(key, &body, Some(&sig), 1000).unwrap(), report(1000));
        let mut tampered = body.clone();
        tampered[10] ^= 1;
        assert_eq!(
            verify(key, &tampered, Some(&sig), 1000),
            Err(ReportError::BadSignature)
        );
        assert_eq!(
            verify(b"another key.....", &body, Some(&sig), 1000),
            Err(ReportError::BadSignature)
        );
        assert_eq!(verify(key, &body, None, 1000), Err(ReportError::Unsigned));
    }

    #[test]
    fn stale_and_replayed_reports_are_refused() {
        let key = b"0123456789abcdef";
        let body = serde_json::to_vec(&report(1000)).unwrap();
        let sig = sign(key, &body);
        assert!(matches!(
            verify(key, &body, Some(&sig), 1000 + MAX_SKEW_SECS + 1),
            Err(ReportError::Stale { .. })
        ));
        let mut guard = ReplayGuard::default();
        let r = verify(key, &body, Some(&sig), 1001).unwrap();
        guard.check(&r, 1001).unwrap();
        assert_eq!(guard.check(&r, 1002), Err(ReportError::Replayed));
    }
}
