//! What one first-boot run works with, handed to every step.
//!
//! Its own module so the steps (storage, binds, k3s, announce, …) depend on it and not on
//! [`crate::run`], which only sequences them.

use crate::config::NodeConfig;
use crate::paths::NodePaths;
use crate::state::{State, StateError};
use crate::system::System;
use std::path::PathBuf;
use std::time::Duration;

/// What one run works with; handed to every step.
pub struct Ctx<'a> {
    /// The node configuration.
    pub cfg: &'a NodeConfig,
    /// The machine.
    pub sys: &'a dyn System,
    /// Node paths (under the test root, if any).
    pub paths: NodePaths,
    /// Saved progress.
    pub state: State,
    /// Where it is saved.
    pub state_path: PathBuf,
    /// Print what would be done; change nothing.
    pub dry_run: bool,
    /// Unit of backoff delays.
    pub backoff_unit: Duration,
    /// The kubelet health URL an agent polls.
    pub kubelet_healthz: String,
    /// Where the SSD's filesystem is, once the storage step mounted it.
    pub ssd: Option<crate::system::BlockTarget>,
}

impl Ctx<'_> {
    /// Saves the state (not in a dry run).
    pub fn save(&self) -> Result<(), StateError> {
        if self.dry_run {
            return Ok(());
        }
        self.state.save(&self.state_path)
    }
}
