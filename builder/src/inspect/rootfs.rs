//! The root filesystem of an image, seen through [`Tree`] by the inspectors.

use super::tree::Tree;
use crate::fs::ext4::{Ext4, FileKind};

/// Adapts an open ext4 filesystem to the read-only [`Tree`] the inspectors use.
pub struct Ext4Tree<'a>(pub &'a Ext4);

impl Tree for Ext4Tree<'_> {
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        match self.0.stat(path).ok()?.kind {
            FileKind::File => self.0.read_file(path).ok(),
            _ => None,
        }
    }
    fn link(&self, path: &str) -> Option<String> {
        match self.0.stat(path).ok()?.kind {
            FileKind::Symlink => self.0.read_link(path).ok(),
            _ => None,
        }
    }
    fn exists(&self, path: &str) -> bool {
        matches!(self.0.lookup(path), Ok(Some(_)))
    }
    fn list(&self, dir: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .0
            .read_dir(dir)
            .map(|entries| entries.into_iter().map(|e| e.name).collect())
            .unwrap_or_default();
        names.sort();
        names
    }
    fn size(&self, path: &str) -> Option<u64> {
        let st = self.0.stat(path).ok()?;
        matches!(st.kind, FileKind::File).then_some(st.size)
    }
}
