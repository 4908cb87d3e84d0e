//! The root filesystem of an image, seen through [`Tree`] by the inspectors.

use super::tree::Tree;
use crate::fs::ext4::{Ext4, FileKind};
use serde::Serialize;
use std::cell::RefCell;

/// A file the inspectors needed but could not read, and why: shown by `inspect`, so a damaged
/// `/etc/fstab` is not taken for an empty one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    /// Path inside the root filesystem.
    pub path: String,
    /// What went wrong.
    pub error: String,
}

/// Adapts an open ext4 filesystem to the read-only [`Tree`] the inspectors use, keeping every
/// read error it met (the trait's answers are `None` for "absent" and "unreadable" alike).
pub struct Ext4Tree<'a> {
    fs: &'a Ext4,
    unreadable: RefCell<Vec<Unreadable>>,
}

impl<'a> Ext4Tree<'a> {
    /// A tree over `fs`.
    pub fn new(fs: &'a Ext4) -> Self {
        Ext4Tree {
            fs,
            unreadable: RefCell::new(Vec::new()),
        }
    }

    /// The files that existed but could not be read, each once, in the order met.
    pub fn unreadable(&self) -> Vec<Unreadable> {
        self.unreadable.borrow().clone()
    }

    fn note(&self, path: &str, error: impl std::fmt::Display) {
        let mut list = self.unreadable.borrow_mut();
        if !list.iter().any(|u| u.path == path) {
            list.push(Unreadable {
                path: path.to_string(),
                error: error.to_string(),
            });
        }
    }
}

impl Ext4Tree<'_> {
    /// What `path` is, `None` when it does not exist. A lookup or inode that fails for
    /// another reason (a garbage inode on the way) is noted and also gives `None`: the
    /// callers' answer is "not there", but the report says it could not be read.
    fn stat(&self, path: &str) -> Option<crate::fs::ext4::Stat> {
        match self.fs.lookup(path) {
            Ok(None) => None,
            Ok(Some(_)) => match self.fs.stat(path) {
                Ok(st) => Some(st),
                Err(e) => {
                    self.note(path, e);
                    None
                }
            },
            Err(e) => {
                self.note(path, e);
                None
            }
        }
    }
}

impl Tree for Ext4Tree<'_> {
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        match self.stat(path)?.kind {
            FileKind::File => match self.fs.read_file(path) {
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    self.note(path, e);
                    None
                }
            },
            _ => None,
        }
    }
    fn link(&self, path: &str) -> Option<String> {
        match self.stat(path)?.kind {
            FileKind::Symlink => match self.fs.read_link(path) {
                Ok(target) => Some(target),
                Err(e) => {
                    self.note(path, e);
                    None
                }
            },
            _ => None,
        }
    }
    fn exists(&self, path: &str) -> bool {
        match self.fs.lookup(path) {
            Ok(found) => found.is_some(),
            Err(e) => {
                self.note(path, e);
                false
            }
        }
    }
    fn list(&self, dir: &str) -> Vec<String> {
        let mut names: Vec<String> = match self.fs.read_dir(dir) {
            Ok(entries) => entries.into_iter().map(|e| e.name).collect(),
            Err(e) => {
                if !matches!(self.fs.lookup(dir), Ok(None)) {
                    self.note(dir, e);
                }
                Vec::new()
            }
        };
        names.sort();
        names
    }
    fn size(&self, path: &str) -> Option<u64> {
        let st = self.stat(path)?;
        matches!(st.kind, FileKind::File).then_some(st.size)
    }
}
