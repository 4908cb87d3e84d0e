//! A fleet image's board that is no member's (or several members'): it tells `piimg watch`
//! and the console what it is, so the owner can copy its serial or MAC into a profile's
//! `match`, and does nothing else: no disk is touched, k3s never starts.

use crate::announce::{announce_with, Announcer};
use crate::config::{ConfigError, Role};
use crate::fleet::{FleetConfig, Unmatched, FLEET_CONFIG_PATH, UNMATCHED_PATH};
use crate::identify::IdentifyError;
use crate::paths::NodePaths;
use crate::report::{Report, Stage, REPORT_SCHEMA};
use crate::system::{Host, System};

/// Why an unmatched board could not even say so.
#[derive(Debug, thiserror::Error)]
pub enum UnmatchedError {
    /// The fleet table cannot be read.
    #[error(transparent)]
    Fleet(#[from] IdentifyError),
    /// Its report key is unusable.
    #[error("{path}: {source}")]
    Key {
        /// The fleet table.
        path: std::path::PathBuf,
        /// The cause.
        source: ConfigError,
    },
}

/// `run` on a fleet image whose board took no node: reports it (to the fleet's report URL
/// and the console) and returns `Ok(false)`, so the unit shows as failed.
pub fn report(paths: &NodePaths, host: &Host, dry_run: bool) -> Result<bool, UnmatchedError> {
    let fleet: FleetConfig = crate::identify::load_fleet(paths)?;
    let key = fleet
        .report
        .key_bytes()
        .map_err(|source| UnmatchedError::Key {
            path: paths.node(FLEET_CONFIG_PATH),
            source,
        })?;
    // What `identify` recorded; read again if it did not run (its unit missing or failed).
    let unmatched = std::fs::read_to_string(paths.node(UNMATCHED_PATH))
        .ok()
        .and_then(|t| toml::from_str::<Unmatched>(&t).ok())
        .unwrap_or_else(|| {
            let hw = crate::hardware::read(paths);
            Unmatched {
                candidates: fleet.matching(&hw).iter().map(|m| m.node.clone()).collect(),
                hardware: hw,
            }
        });
    let line = unmatched.message();
    crate::notify::status(&line);
    let report = Report {
        schema: REPORT_SCHEMA,
        cluster: fleet.cluster.clone(),
        node: fleet.fleet.clone(),
        role: Role::Agent,
        build_id: fleet.build_id.clone(),
        k3s_version: fleet.k3s_version.clone(),
        stage: Stage::Unmatched,
        addresses: host.addresses(),
        storage: None,
        steps: Vec::new(),
        error: Some(line.trim_start_matches("piimg: ").to_string()),
        timestamp: host.now_unix(),
        nonce: crate::announce::nonce(),
        fleet: Some(fleet.fleet.clone()),
        hardware: Some(unmatched.hardware),
    };
    let a = Announcer {
        paths,
        sys: host,
        url: fleet.report.url.as_deref(),
        backoff_unit: host.backoff_unit,
        dry_run,
    };
    if let Err(e) = announce_with(&a, &report, &key) {
        tracing::error!(error = %e, "the unmatched board's report was not delivered");
    }
    Ok(false)
}
