//! A read-only view of a root filesystem, so the inspectors can be tested on in-memory trees
//! without building an image.

use std::collections::BTreeMap;

/// What the inspectors need from a root filesystem. Missing files are `None`, not errors:
/// a base image simply may not have them.
pub trait Tree {
    /// The file's bytes, following no symlinks; `None` when absent or not a regular file.
    fn read(&self, path: &str) -> Option<Vec<u8>>;
    /// A symlink's target; `None` when absent or not a symlink.
    fn link(&self, path: &str) -> Option<String>;
    /// Whether anything exists at `path`.
    fn exists(&self, path: &str) -> bool;
    /// Names in a directory, sorted; empty when absent.
    fn list(&self, dir: &str) -> Vec<String>;
    /// A regular file's size; `None` when absent or not a regular file.
    fn size(&self, path: &str) -> Option<u64>;

    /// The file as UTF-8 text (lossy: config files we inspect are text).
    fn text(&self, path: &str) -> Option<String> {
        self.read(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }
}

/// An in-memory tree for tests: files, symlinks and directories implied by their paths.
#[derive(Debug, Default, Clone)]
pub struct MemTree {
    files: BTreeMap<String, Vec<u8>>,
    links: BTreeMap<String, String>,
}

impl MemTree {
    /// Adds a regular file.
    pub fn file(mut self, path: &str, data: impl Into<Vec<u8>>) -> Self {
        self.files.insert(path.to_string(), data.into());
        self
    }

    /// Adds a symlink.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.links.insert(path.to_string(), target.to_string());
        self
    }

    fn all_paths(&self) -> impl Iterator<Item = &String> {
        self.files.keys().chain(self.links.keys())
    }
}

impl Tree for MemTree {
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.files.get(path).cloned()
    }
    fn link(&self, path: &str) -> Option<String> {
        self.links.get(path).cloned()
    }
    fn exists(&self, path: &str) -> bool {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        self.all_paths()
            .any(|p| p == path || p.starts_with(&prefix))
    }
    fn list(&self, dir: &str) -> Vec<String> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let mut names: Vec<String> = self
            .all_paths()
            .filter_map(|p| p.strip_prefix(&prefix))
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_string())
            .collect();
        names.sort();
        names.dedup();
        names
    }
    fn size(&self, path: &str) -> Option<u64> {
        self.files.get(path).map(|d| d.len() as u64)
    }
}
