//! Node passwords.
//!
//! Agent side, `pkg/agent/config/config.go` ensureNodePassword: read
//! `/etc/rancher/node/password` (TrimSpace), or make one (16 random bytes, hex, mode 0600) when
//! it is missing; it goes with the kubelet certificate request in `K3s-Node-Password`.
//!
//! Server side, `pkg/nodepassword/nodepassword.go` Ensure and `validate.go`: the first
//! password seen for a node name is kept as a hash (k3s: the immutable secret
//! `kube-system/<node>.node-password.k3s`, scrypt; here a file of that name under
//! `<data-dir>/server/cred/node-passwords/`, salted SHA-256), and a later request for that
//! name with another password is refused with 403.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Reads or creates the node password file.
pub fn ensure_file(path: &Path) -> Result<String, String> {
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(text.trim().to_string());
    }
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| format!("random bytes: {e}"))?;
    let password = hex::encode(bytes);
    crate::write_mode(path, &format!("{password}\n"), 0o600)?;
    eprintln!(
        "k3s (stand-in): made a new node password in {}",
        path.display()
    );
    Ok(password)
}

/// The server's store of node password hashes.
pub struct Store {
    dir: PathBuf,
    lock: Mutex<()>,
}

/// Why a password was not accepted.
#[derive(Debug)]
pub enum Refused {
    /// Another password is on record for that node (HTTP 403, `ErrVerifyFailed`).
    Mismatch(String),
    /// The store failed us (HTTP 500).
    Io(String),
}

fn hash(salt: &str, password: &str) -> String {
    hex::encode(Sha256::digest(format!("{salt}:{password}")))
}

impl Store {
    /// The store under `<data-dir>/server/cred/node-passwords`.
    pub fn new(data_dir: &Path) -> Store {
        Store {
            dir: data_dir.join("server/cred/node-passwords"),
            lock: Mutex::new(()),
        }
    }

    /// Ensure: verify against the hash on record, or record this one if there is none.
    pub fn ensure(&self, node: &str, password: &str) -> Result<(), Refused> {
        let _one = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let node = node.to_lowercase();
        let file = self.dir.join(format!("{node}.node-password.k3s"));
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                let (salt, want) = text.trim().split_once(':').unwrap_or(("", ""));
                if hash(salt, password) == want {
                    Ok(())
                } else {
                    Err(Refused::Mismatch(format!(
                        "unable to verify hash for node '{node}': hash does not match"
                    )))
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut salt = [0u8; 8];
                getrandom::fill(&mut salt).map_err(|e| Refused::Io(e.to_string()))?;
                let salt = hex::encode(salt);
                crate::write_mode(&file, &format!("{salt}:{}\n", hash(&salt, password)), 0o600)
                    .map_err(Refused::Io)
            }
            Err(e) => Err(Refused::Io(format!("{}: {e}", file.display()))),
        }
    }
}
