//! Reading profile files and following `extends`.

use super::merge::Merge;
use super::types::{ClusterFile, NodeProfile};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};

/// The cluster file's name inside the profiles folder.
pub const CLUSTER_FILE: &str = "cluster.toml";

/// One problem with the profiles: which file, which key, what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileError {
    /// The file at fault.
    pub file: PathBuf,
    /// Dotted key path inside it (`storage.selector`), empty for the file as a whole.
    pub key: String,
    /// What is wrong.
    pub problem: String,
    /// What the user should do.
    pub fix: String,
}

impl ProfileError {
    /// Builds one.
    pub fn new(
        file: impl Into<PathBuf>,
        key: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        ProfileError {
            file: file.into(),
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if !self.key.is_empty() {
            write!(f, ": key `{}`", self.key)?;
        }
        write!(f, ": {}; fix: {}", self.problem, self.fix)
    }
}

impl std::error::Error for ProfileError {}

/// cluster.toml, parsed.
#[derive(Debug, Clone)]
pub struct LoadedCluster {
    /// The profiles folder it was read from.
    pub dir: PathBuf,
    /// Its path.
    pub file: PathBuf,
    /// Its content.
    pub cluster: ClusterFile,
    /// SHA-256 of its bytes.
    pub sha256: String,
}

/// A node profile with its `extends` chain merged (root ancestor first, the node's file last).
/// `[defaults]` are NOT merged in yet: `spec` does that, so it can tell which file set a key.
#[derive(Debug, Clone)]
pub struct LoadedNode {
    /// The node's name (its file stem).
    pub name: String,
    /// The merged profile.
    pub profile: NodeProfile,
    /// Files read, root ancestor first; the node's own file last.
    pub files: Vec<PathBuf>,
    /// Each file's own profile, in the same order: tells which file set a key.
    pub layers: Vec<NodeProfile>,
    /// SHA-256 over the files' bytes in that order.
    pub sha256: String,
}

fn parse<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, ProfileError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let key = err.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let inner = err.into_inner();
        let line = inner
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        let msg = inner.message().to_string();
        let fix = if msg.contains("unknown field") && key.contains('.') {
            "remove or rename the key (the README's profile reference lists every key); \
             a key written below a [table] header belongs to that table, so move top-level keys above it"
        } else if msg.contains("unknown field") {
            "remove or rename the key (the README's profile reference lists every key)"
        } else if msg.contains("invalid type") || msg.contains("invalid value") {
            "give the key a value of the type named"
        } else if msg.contains("missing field") {
            "add the key"
        } else {
            "correct the TOML syntax"
        };
        let problem = match line {
            Some(line) => format!("line {line}: {msg}"),
            None => msg,
        };
        ProfileError::new(file, key, problem, fix)
    })
}

fn read(file: &Path) -> Result<Vec<u8>, ProfileError> {
    std::fs::read(file).map_err(|e| {
        ProfileError::new(
            file,
            "",
            format!("cannot read it: {e}"),
            "check the path given with --profiles and the file's permissions",
        )
    })
}

fn text_of<'a>(file: &Path, bytes: &'a [u8]) -> Result<&'a str, ProfileError> {
    std::str::from_utf8(bytes)
        .map_err(|_| ProfileError::new(file, "", "not UTF-8 text", "save the file as UTF-8"))
}

/// Reads `<dir>/cluster.toml`.
pub fn load_cluster(dir: &Path) -> Result<LoadedCluster, ProfileError> {
    let file = dir.join(CLUSTER_FILE);
    let bytes = read(&file)?;
    let cluster = parse(&file, text_of(&file, &bytes)?)?;
    Ok(LoadedCluster {
        dir: dir.to_path_buf(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        file,
        cluster,
    })
}

/// Whether `name` can be a profile name (and so a file stem): an RFC 1123 label.
pub fn valid_profile_name(name: &str) -> bool {
    super::name::is_rfc1123_label(name)
}

/// Reads `<dir>/<node>.toml` and its `extends` ancestors, merged.
pub fn load_node(dir: &Path, node: &str) -> Result<LoadedNode, ProfileError> {
    let mut chain: Vec<(PathBuf, Vec<u8>, NodeProfile)> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut next = Some((node.to_string(), None::<PathBuf>));
    while let Some((name, referrer)) = next.take() {
        let (blame, key) = match &referrer {
            Some(r) => (r.clone(), "extends"),
            None => (dir.join(format!("{node}.toml")), ""),
        };
        if !valid_profile_name(&name) {
            return Err(ProfileError::new(
                blame,
                key,
                format!("`{name}` is not a valid profile name"),
                "use lower-case letters, digits and '-' (an RFC 1123 label)",
            ));
        }
        if names.contains(&name) {
            names.push(name);
            return Err(ProfileError::new(
                blame,
                key,
                format!("`extends` forms a cycle: {}", names.join(" → ")),
                "remove one `extends` so the chain ends",
            ));
        }
        let file = dir.join(format!("{name}.toml"));
        if !file.is_file() {
            return Err(ProfileError::new(
                blame,
                key,
                format!("no profile `{name}` ({} does not exist)", file.display()),
                "create the profile or correct the name",
            ));
        }
        let bytes = read(&file)?;
        let profile: NodeProfile = parse(&file, text_of(&file, &bytes)?)?;
        next = profile.extends.clone().map(|p| (p, Some(file.clone())));
        names.push(name);
        chain.push((file, bytes, profile));
    }
    chain.reverse();
    let mut hasher = Sha256::new();
    let mut merged = NodeProfile::default();
    let mut files = Vec::new();
    let mut layers = Vec::new();
    for (file, bytes, profile) in chain {
        hasher.update(&bytes);
        merged.merge(profile.clone());
        files.push(file);
        layers.push(profile);
    }
    Ok(LoadedNode {
        name: node.to_string(),
        profile: merged,
        files,
        layers,
        sha256: hex::encode(hasher.finalize()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(d.path().join(name), text).unwrap();
        }
        d
    }

    #[test]
    fn extends_chain_merges_root_first() {
        let d = dir_with(&[
            ("a.toml", "base = \"x\"\nuser = \"alice\"\n"),
            ("b.toml", "extends = \"a\"\nbase = \"y\"\n"),
            ("c.toml", "extends = \"b\"\nhostname = \"see\"\n"),
        ]);
        let n = load_node(d.path(), "c").unwrap();
        assert_eq!(n.profile.base.as_deref(), Some("y"));
        assert_eq!(n.profile.user.as_deref(), Some("alice"));
        assert_eq!(n.profile.hostname.as_deref(), Some("see"));
        assert_eq!(n.files.len(), 3);
        assert!(n.files[2].ends_with("c.toml"));
    }

    #[test]
    fn extends_cycle_is_named() {
        let d = dir_with(&[
            ("a.toml", "extends = \"b\"\n"),
            ("b.toml", "extends = \"a\"\n"),
        ]);
        let err = load_node(d.path(), "a").unwrap_err();
        assert_eq!(err.key, "extends");
        assert!(err.problem.contains("a → b → a"), "{err}");
    }

    #[test]
    fn missing_parent_names_the_referrer() {
        let d = dir_with(&[("a.toml", "extends = \"nope\"\n")]);
        let err = load_node(d.path(), "a").unwrap_err();
        assert!(
            err.file.ends_with("a.toml") && err.key == "extends",
            "{err}"
        );
    }

    #[test]
    fn unknown_key_names_file_key_and_fix() {
        let d = dir_with(&[("a.toml", "[storage]\nmountpoint = \"/x\"\n")]);
        let err = load_node(d.path(), "a").unwrap_err();
        assert!(err.file.ends_with("a.toml"));
        assert_eq!(err.key, "storage.mountpoint");
        assert!(err.problem.contains("unknown field `mountpoint`"), "{err}");
        assert!(err.to_string().contains("remove or rename"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let d = dir_with(&[("a.toml", "[kernel]\nkeep_16k_pages = \"yes\"\n")]);
        let err = load_node(d.path(), "a").unwrap_err();
        assert_eq!(err.key, "kernel.keep_16k_pages", "{err}");
        assert!(err.problem.contains("invalid type"), "{err}");
    }
}
