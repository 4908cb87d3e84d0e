//! A fleet image's board that is no member's (or several members'): it tells `piimg watch`
//! and the console what it is, so the owner can copy its serial or MAC into a profile's
//! `match`, and does nothing else: no disk is touched, k3s never starts.

use crate::announce::{announce_with, Announcer};
use crate::config::Role;
use crate::fleet::{FleetConfig, Unmatched, UNMATCHED_PATH};
use crate::report::{Report, Stage, REPORT_SCHEMA};
use crate::run::{Options, RunError};

/// What the board says: which it is, why it does not join, and the fix.
pub fn message(u: &Unmatched) -> String {
    let hw = u.hardware.describe();
    let fix = match (&u.hardware.serial, u.hardware.nics.first()) {
        (Some(s), _) => format!("match = {{ serial = \"{s}\" }}"),
        (None, Some(n)) => format!("match = {{ mac = \"{}\" }}", n.mac),
        (None, None) => "match = { serial = \"…\" }".into(),
    };
    if u.candidates.is_empty() {
        format!(
            "piimg: this board ({hw}) is no node of this fleet image: put `{fix}` in the profile of the node it should be, rebuild and reflash; it does not join until then"
        )
    } else {
        format!(
            "piimg: this board ({hw}) matches {} nodes of this fleet image ({}): give each profile a `match` only its own board has, rebuild and reflash; it does not join until then",
            u.candidates.len(),
            u.candidates.join(", ")
        )
    }
}

/// `run` on a fleet image whose board took no node: reports it (to the fleet's report URL
/// and the console) and returns `Ok(false)`, so the unit shows as failed.
pub fn report(opts: &Options) -> Result<bool, RunError> {
    let paths = crate::paths::NodePaths::new(&opts.root);
    let fleet: FleetConfig =
        crate::identify::load_fleet(&paths).map_err(|e| RunError::Fleet(e.to_string()))?;
    let key = fleet
        .report
        .key_bytes()
        .map_err(|source| RunError::Config {
            path: paths.node(crate::fleet::FLEET_CONFIG_PATH),
            source,
        })?;
    // What `identify` recorded; read again if it did not run (its unit missing or failed).
    let unmatched = std::fs::read_to_string(paths.node(UNMATCHED_PATH))
        .ok()
        .and_then(|t| toml::from_str::<Unmatched>(&t).ok())
        .unwrap_or_else(|| {
            let hw = crate::hardware::read(&paths);
            Unmatched {
                candidates: fleet.matching(&hw).iter().map(|m| m.node.clone()).collect(),
                hardware: hw,
            }
        });
    let line = message(&unmatched);
    crate::notify::status(&line);
    let report = Report {
        schema: REPORT_SCHEMA,
        cluster: fleet.cluster.clone(),
        node: fleet.fleet.clone(),
        role: Role::Agent,
        build_id: fleet.build_id.clone(),
        k3s_version: fleet.k3s_version.clone(),
        stage: Stage::Unmatched,
        addresses: crate::system::System::addresses(&opts.host),
        storage: None,
        steps: Vec::new(),
        error: Some(line.trim_start_matches("piimg: ").to_string()),
        timestamp: crate::system::System::now_unix(&opts.host),
        nonce: crate::announce::nonce(),
        fleet: Some(fleet.fleet.clone()),
        hardware: Some(unmatched.hardware),
    };
    let a = Announcer {
        paths: &paths,
        sys: &opts.host,
        url: fleet.report.url.as_deref(),
        backoff_unit: opts.host.backoff_unit,
        dry_run: opts.dry_run,
    };
    if let Err(e) = announce_with(&a, &report, &key) {
        tracing::error!(error = %e, "the unmatched board's report was not delivered");
    }
    Ok(false)
}
