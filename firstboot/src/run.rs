//! The first-boot sequence: grow-root → kernel-cmdline → storage → binds → k3s data → join → prune (server) → report, each
//! step recorded in the state file as it finishes, and a report sent whatever happened.

use crate::config::{ConfigError, NodeConfig, NODE_CONFIG_PATH};
use crate::context::Ctx;
use crate::paths::NodePaths;
use crate::report::{Report, Stage, StepReport, StorageSummary, REPORT_SCHEMA};
use crate::state::{State, STATE_PATH};
use crate::system::Host;
use std::path::PathBuf;
use std::time::Instant;

/// How the binary was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Node config file; default `<root>/etc/piimg/node.toml`.
    pub config: Option<PathBuf>,
    /// Root prefix for all node paths (`/` on a node).
    pub root: PathBuf,
    /// Print instead of doing.
    pub dry_run: bool,
    /// The machine and its seams.
    pub host: Host,
    /// The kubelet health URL.
    pub kubelet_healthz: String,
}

impl Options {
    /// The config path in effect.
    pub fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| NodePaths::new(&self.root).node(NODE_CONFIG_PATH))
    }
}

/// Why the run could not even start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The config file cannot be read.
    #[error("{path}: cannot read the node config: {source} (is this a piimg image?)")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A fleet image's board that took no node could not say so.
    #[error(transparent)]
    Unmatched(Box<crate::unmatched::UnmatchedError>),
    /// The config file is not valid.
    #[error("{path}: {source}")]
    Config {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: ConfigError,
    },
}

/// Reads and checks the node config.
pub fn load_config(path: &std::path::Path) -> Result<NodeConfig, RunError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunError::Read {
        path: path.to_owned(),
        source,
    })?;
    NodeConfig::from_toml(&text).map_err(|source| RunError::Config {
        path: path.to_owned(),
        source,
    })
}

struct Progress {
    steps: Vec<StepReport>,
    error: Option<String>,
    stage: Stage,
}

impl Progress {
    /// A step the node cannot do without: when it fails, the later ones are skipped.
    fn step<T, E: std::fmt::Display>(
        &mut self,
        ctx: &mut Ctx<'_>,
        name: &str,
        stage: Stage,
        f: impl FnOnce(&mut Ctx<'_>) -> Result<T, E>,
    ) -> Option<T> {
        self.run_step(ctx, name, stage, true, f)
    }

    /// A step whose failure is reported (in `steps`) but stops nothing: growing the root,
    /// applying kernel parameters and deleting a dropped service's objects are worth a
    /// warning, not a node without k3s.
    fn soft_step<T, E: std::fmt::Display>(
        &mut self,
        ctx: &mut Ctx<'_>,
        name: &str,
        f: impl FnOnce(&mut Ctx<'_>) -> Result<T, E>,
    ) -> Option<T> {
        let stage = self.stage;
        self.run_step(ctx, name, stage, false, f)
    }

    fn run_step<T, E: std::fmt::Display>(
        &mut self,
        ctx: &mut Ctx<'_>,
        name: &str,
        stage: Stage,
        blocking: bool,
        f: impl FnOnce(&mut Ctx<'_>) -> Result<T, E>,
    ) -> Option<T> {
        if self.error.is_some() {
            self.steps.push(StepReport {
                step: name.into(),
                status: "skipped".into(),
                duration_ms: 0,
                error: None,
            });
            return None;
        }
        self.stage = stage;
        crate::notify::status(&format!("{name}…"));
        tracing::info!(step = name, "starting");
        let started = Instant::now();
        let result = f(ctx);
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (value, error) = match result {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e.to_string())),
        };
        if let Some(e) = &error {
            tracing::error!(step = name, error = %e, "step failed");
            if blocking {
                self.error = Some(format!("{name}: {e}"));
                self.stage = Stage::Failed;
            }
        }
        let now = ctx.sys.now_unix();
        ctx.state.record(name, error.clone(), now);
        if let Err(e) = ctx.save() {
            tracing::error!(error = %e, "cannot save progress");
        }
        self.steps.push(StepReport {
            step: name.into(),
            status: if error.is_some() { "failed" } else { "ok" }.into(),
            duration_ms,
            error,
        });
        if !ctx.dry_run {
            crate::crash::point(name);
        }
        value
    }
}

/// Runs first boot; `Ok(true)` when every step succeeded.
pub fn run(opts: &Options) -> Result<bool, RunError> {
    let fleet_table = NodePaths::new(&opts.root).node(crate::fleet::FLEET_CONFIG_PATH);
    if opts.config.is_none() && !opts.config_path().exists() && fleet_table.exists() {
        // A fleet image whose board took no node (`identify`): say so, touch nothing.
        let paths = NodePaths::new(&opts.root);
        return crate::unmatched::report(&paths, &opts.host, opts.dry_run)
            .map_err(|e| RunError::Unmatched(Box::new(e)));
    }
    let cfg = load_config(&opts.config_path())?;
    let key = cfg.report.key_bytes().map_err(|source| RunError::Config {
        path: opts.config_path(),
        source,
    })?;
    let paths = NodePaths::new(&opts.root);
    let identity = crate::identify::identity(&paths);
    let state_path = paths.node(STATE_PATH);
    let state = State::load(&state_path).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "starting from a fresh state");
        State::default()
    });
    let mut ctx = Ctx {
        cfg: &cfg,
        sys: &opts.host,
        paths,
        state,
        state_path,
        dry_run: opts.dry_run,
        backoff_unit: opts.host.backoff_unit,
        kubelet_healthz: opts.kubelet_healthz.clone(),
        ssd: None,
    };
    ctx.state.build_id = cfg.build_id.clone();
    let mut p = Progress {
        steps: Vec::new(),
        error: None,
        stage: Stage::Storage,
    };
    if let (Some(id), Some(_)) = (&identity, &cfg.report.url) {
        p.step(&mut ctx, "claim", Stage::Claiming, |c| claim(c, id, &key));
    }
    if cfg.root.grow {
        p.soft_step(&mut ctx, "grow-root", |c| crate::rootfs::grow(c));
    }
    let cmdline = p.soft_step(&mut ctx, "kernel-cmdline", crate::cmdline::apply);
    if cmdline == Some(crate::cmdline::Outcome::Rebooting) {
        // systemd is stopping everything; k3s must not start now. The report comes after
        // the reboot.
        crate::notify::status("rebooting so the kernel parameters take effect");
        return Ok(true);
    }
    let storage: Option<StorageSummary> =
        p.step(&mut ctx, "storage", Stage::Storage, crate::storage::prepare);
    if let Some(s) = &storage {
        ctx.state.storage = Some(s.clone());
        let _ = ctx.save();
    }
    p.step(&mut ctx, "binds", Stage::Storage, |c| crate::binds::bind(c));
    p.step(&mut ctx, "k3s-data", Stage::K3sData, |c| {
        crate::k3s::sync::sync(c)
    });
    p.step(&mut ctx, "join", Stage::Joining, |c| {
        crate::k3s::join::join(c)
    });
    if cfg.role == crate::config::Role::Server {
        p.soft_step(&mut ctx, "prune", |c| crate::k3s::prune::prune(c));
    }
    if p.error.is_none() {
        p.stage = Stage::Ready;
    }
    let report = Report {
        schema: REPORT_SCHEMA,
        cluster: cfg.cluster.clone(),
        node: cfg.node.clone(),
        role: cfg.role,
        build_id: cfg.build_id.clone(),
        k3s_version: cfg.k3s_version.clone(),
        stage: p.stage,
        addresses: ctx.sys.addresses(),
        storage: storage.or_else(|| ctx.state.storage.clone()),
        steps: p.steps.clone(),
        error: p.error.clone(),
        timestamp: ctx.sys.now_unix(),
        nonce: crate::announce::nonce(),
        fleet: identity.as_ref().map(|i| i.fleet.clone()),
        hardware: identity.as_ref().map(|i| i.hardware.clone()),
    };
    let ok = p.error.is_none();
    let delivered = {
        let mut r = Progress {
            steps: Vec::new(),
            error: None,
            stage: p.stage,
        };
        r.step(&mut ctx, "report", p.stage, |c| {
            crate::announce::announce(c, &report, &key)
        })
        .is_some()
    };
    crate::notify::status(&crate::announce::summary_line(&report));
    Ok(ok && delivered)
}

/// Why a fleet board may not go on as its node.
#[derive(Debug, thiserror::Error)]
#[error("`piimg watch` refused this board ({hardware}) as {node}: {reason}")]
pub struct ClaimRefused {
    node: String,
    hardware: String,
    reason: String,
}

/// A fleet board asks `piimg watch` whether its node's name is free before it touches a disk:
/// the watch refuses (409) a name another board has reported with other hardware. When no
/// watch answers, the board goes on (the watch is optional), with a warning.
fn claim(ctx: &mut Ctx<'_>, id: &crate::fleet::Identity, key: &[u8]) -> Result<(), ClaimRefused> {
    let Some(url) = ctx.cfg.report.url.clone() else {
        return Ok(());
    };
    let report = Report {
        schema: REPORT_SCHEMA,
        cluster: ctx.cfg.cluster.clone(),
        node: ctx.cfg.node.clone(),
        role: ctx.cfg.role,
        build_id: ctx.cfg.build_id.clone(),
        k3s_version: ctx.cfg.k3s_version.clone(),
        stage: Stage::Claiming,
        addresses: ctx.sys.addresses(),
        storage: None,
        steps: Vec::new(),
        error: None,
        timestamp: ctx.sys.now_unix(),
        nonce: crate::announce::nonce(),
        fleet: Some(id.fleet.clone()),
        hardware: Some(id.hardware.clone()),
    };
    if ctx.dry_run {
        println!("would claim {} at {url}", report.node);
        return Ok(());
    }
    let a = crate::announce::Announcer::of(ctx);
    let mut last = String::new();
    for attempt in 0..3u32 {
        match crate::announce::post(&a, &url, &report, key) {
            Ok(()) => return Ok(()),
            Err(crate::announce::Refusal::Answered { status: 409, body }) => {
                return Err(ClaimRefused {
                    node: report.node,
                    hardware: id.hardware.describe(),
                    reason: body.trim().trim_start_matches("rejected: ").to_string(),
                })
            }
            Err(e) => last = e.to_string(),
        }
        ctx.sys.sleep(ctx.backoff_unit * (1 << attempt));
    }
    tracing::warn!(%url, %last, "no watch answered the claim; going on without it");
    Ok(())
}
