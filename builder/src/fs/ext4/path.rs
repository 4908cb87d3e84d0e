//! Paths inside the filesystem: absolute, `/`-separated, no `.`/`..`, checked before any
//! libext2fs call so the library never sees a name it would misread.

use std::ffi::CString;

/// A checked absolute path, kept as its components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FsPath {
    parts: Vec<String>,
}

impl FsPath {
    /// Parses `path`; the error is a short reason for `Ext4Error::InvalidPath`.
    pub fn parse(path: &str) -> Result<FsPath, &'static str> {
        if !path.starts_with('/') {
            return Err("paths inside the image must be absolute (start with /)");
        }
        if path.contains('\0') {
            return Err("paths must not contain NUL bytes");
        }
        let mut parts = Vec::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if part == "." || part == ".." {
                return Err("paths must not contain . or .. components");
            }
            if part.len() > 255 {
                return Err("a path component is longer than 255 bytes");
            }
            parts.push(part.to_string());
        }
        Ok(FsPath { parts })
    }

    /// Whether this is `/`.
    pub fn is_root(&self) -> bool {
        self.parts.is_empty()
    }

    /// The path as a C string for `ext2fs_namei`, relative to the root directory.
    pub fn to_cstring(&self) -> CString {
        // parse() rejected NUL bytes, so this cannot fail; fall back to "." (the root) anyway.
        CString::new(self.parts.join("/")).unwrap_or_else(|_| c".".to_owned())
    }

    /// The parent directory (the root's parent is the root).
    pub fn parent(&self) -> FsPath {
        let mut parts = self.parts.clone();
        parts.pop();
        FsPath { parts }
    }

    /// The last component, or `None` for `/`.
    pub fn name(&self) -> Option<&str> {
        self.parts.last().map(String::as_str)
    }

    /// Every prefix from the first component down to the whole path (for mkdir -p).
    pub fn ancestors_and_self(&self) -> impl Iterator<Item = FsPath> + '_ {
        (1..=self.parts.len()).map(|n| FsPath {
            parts: self.parts[..n].to_vec(),
        })
    }
}

impl std::fmt::Display for FsPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{}", self.parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_splits() {
        let p = FsPath::parse("/etc//rancher/k3s/").unwrap();
        assert_eq!(p.to_string(), "/etc/rancher/k3s");
        assert_eq!(p.name(), Some("k3s"));
        assert_eq!(p.parent().to_string(), "/etc/rancher");
        assert!(FsPath::parse("/").unwrap().is_root());
        let all: Vec<String> = p.ancestors_and_self().map(|a| a.to_string()).collect();
        assert_eq!(all, ["/etc", "/etc/rancher", "/etc/rancher/k3s"]);
    }

    #[test]
    fn rejects_bad_paths() {
        assert!(FsPath::parse("etc/x").is_err());
        assert!(FsPath::parse("/etc/../x").is_err());
        assert!(FsPath::parse("/etc/\0").is_err());
        assert!(FsPath::parse(&format!("/{}", "a".repeat(256))).is_err());
    }
}
