//! The repository's example cluster (`profiles/`, `overlays/`, `manifests/`) copied into a
//! temporary folder with fresh secrets, so tests can edit it as a user would without touching
//! the checked-in files or sharing a secrets file between tests.
#![allow(dead_code)]

use piimg::secrets::{self, ClusterSecrets};
use std::fs;
use std::path::{Path, PathBuf};

/// A private copy of the example cluster.
pub struct Example {
    /// Keeps the copy alive for the test.
    pub dir: tempfile::TempDir,
    /// The copied `profiles/` folder.
    pub profiles: PathBuf,
    /// The secrets `piimg secrets init` would have written there.
    pub secrets: ClusterSecrets,
}

/// Copies the example cluster (without any `secrets.toml` a developer has locally) and writes
/// fresh secrets into the copy.
pub fn example() -> Example {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().expect("tempdir");
    for sub in ["profiles", "overlays", "manifests"] {
        copy_tree(&repo.join(sub), &dir.path().join(sub));
    }
    let profiles = dir.path().join("profiles");
    let secrets = secrets::init(&profiles.join("secrets.toml")).expect("secrets init");
    Example {
        dir,
        profiles,
        secrets,
    }
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    let entries = fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    for e in entries {
        let e = e.expect("read_dir entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_tree(&e.path(), &dest);
        } else if e.file_name() != "secrets.toml" {
            fs::copy(e.path(), &dest).unwrap_or_else(|err| panic!("{}: {err}", dest.display()));
        }
    }
}
