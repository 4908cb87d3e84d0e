//! `/var/lib/piimg/state.json`: what first boot has done, saved after every change so a power
//! cut at any point resumes where it stopped.
//!
//! It lives on the root filesystem, so it is lost when the node is re-imaged; nothing that must
//! survive a re-image may depend on it (the SSD's own label and the sync record in the data-dir
//! carry that).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the state lives on the node.
pub const STATE_PATH: &str = "/var/lib/piimg/state.json";

/// The saved progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Build id of the image that last wrote this file.
    #[serde(default)]
    pub build_id: String,
    /// Serial (or path) of a disk whose formatting began and has not been confirmed finished:
    /// the next run may finish formatting it even though it now carries our partition table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatting: Option<String>,
    /// Per step: its last outcome.
    #[serde(default)]
    pub steps: BTreeMap<String, StepState>,
    /// What the storage step did with the SSD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<crate::report::StorageSummary>,
    /// SHA-256 (hex) of the GRUB drop-in `update-grub` last ran for successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grub_applied: Option<String>,
    /// SHA-256 (hex) of the GRUB drop-in first boot last rebooted for: one reboot per content,
    /// so a node whose kernel does not come from GRUB cannot reboot forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grub_rebooted: Option<String>,
}

/// The last outcome of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepState {
    /// `ok` or `failed`.
    pub status: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Unix seconds when it finished.
    pub at: u64,
}

/// Why the state file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// I/O on the file or its directory.
    #[error("{path}: {what}: {source} (check that the directory exists and is writable by root)")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// Not JSON of the right shape.
    #[error("{path}: not a piimg state file ({source}); move it away and rerun, first boot will redo its checks")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

impl State {
    /// Reads the state; a missing file is a fresh start.
    pub fn load(path: &Path) -> Result<State, StateError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Parse {
                path: path.to_owned(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(StateError::Io {
                path: path.to_owned(),
                what: "reading",
                source,
            }),
        }
    }

    /// Saves atomically: a power cut leaves either the old or the new file, never a torn one.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|source| StateError::Parse {
            path: path.to_owned(),
            source,
        })?;
        bytes.push(b'\n');
        write_atomic(path, &bytes, 0o600).map_err(|(what, source)| StateError::Io {
            path: path.to_owned(),
            what,
            source,
        })
    }

    /// Records a step's outcome.
    pub fn record(&mut self, step: &str, error: Option<String>, at: u64) {
        let status = if error.is_some() { "failed" } else { "ok" };
        self.steps.insert(
            step.to_owned(),
            StepState {
                status: status.into(),
                error,
                at,
            },
        );
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory: write, fsync,
/// rename, fsync the directory. Creates the directory if needed.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
) -> Result<(), (&'static str, std::io::Error)> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| ("creating its directory", e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{}.tmp", name.unwrap_or_default()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| ("creating a temporary file", e))?;
    file.write_all(bytes).map_err(|e| ("writing", e))?;
    file.sync_all().map_err(|e| ("syncing", e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| ("renaming into place", e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        d.sync_all().map_err(|e| ("syncing its directory", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_and_a_missing_file_is_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        assert_eq!(State::load(&path).unwrap(), State::default());
        let mut state = State {
            formatting: Some("S123".into()),
            ..State::default()
        };
        state.record("storage", None, 5);
        state.save(&path).unwrap();
        assert_eq!(State::load(&path).unwrap(), state);
        assert!(!dir.path().join("sub/.state.json.tmp").exists());
    }

    #[test]
    fn a_corrupt_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{").unwrap();
        let err = State::load(&path).unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
    }
}
