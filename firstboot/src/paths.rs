//! Node paths under an optional root prefix (the `--root` test seam; `/` on a node).

use std::path::{Path, PathBuf};

/// Resolves absolute node paths.
#[derive(Debug, Clone)]
pub struct NodePaths {
    root: PathBuf,
}

impl NodePaths {
    /// Paths under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        NodePaths { root: root.into() }
    }

    /// Whether these are the machine's own paths (`/`), not a test root: what only the real
    /// machine may do (set its hostname) is done only then.
    pub fn is_machine(&self) -> bool {
        self.root == Path::new("/")
    }

    /// `abs` (a path as seen on the node) under the root.
    pub fn node(&self, abs: &str) -> PathBuf {
        let rel = Path::new(abs.trim_start_matches('/'));
        self.root.join(rel)
    }
}
