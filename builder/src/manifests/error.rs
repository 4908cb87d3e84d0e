//! Why the manifests cannot be rendered; every message names the file and the fix.

use std::path::PathBuf;

/// A rendering failure. Messages never contain a credential value.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A file or directory could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The manifests directory, or a service folder in it, is missing.
    #[error("{}: missing: {fix}", path.display())]
    Missing {
        /// The missing path.
        path: PathBuf,
        /// How to fix it.
        fix: String,
    },
    /// A template names a variable that does not exist.
    #[error("{}: line {line}: unknown variable `${{{name}}}`: use one of {known}, or add it under `[manifests.vars]` in cluster.toml", file.display())]
    UnknownVariable {
        /// The template file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The unknown name.
        name: String,
        /// The names that exist, comma-separated.
        known: String,
    },
    /// A template uses a variable whose value is empty.
    #[error("{}: line {line}: variable `${{{name}}}` is empty: give it a value in the `[manifests]` table of cluster.toml", file.display())]
    EmptyVariable {
        /// The template file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The variable.
        name: String,
    },
    /// A `${` that is not a well-formed placeholder.
    #[error("{}: line {line}: {reason}", file.display())]
    BadPlaceholder {
        /// The template file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong and how to write it.
        reason: String,
    },
    /// A `[manifests.vars]` entry reuses a built-in variable name.
    #[error("cluster.toml: [manifests.vars] `{name}` would replace the built-in variable of that name: set it in [manifests] instead, or rename it")]
    ShadowedVariable {
        /// The offending name.
        name: String,
    },
    /// A file is not UTF-8 text.
    #[error("{}: not UTF-8 text: manifests must be YAML files", file.display())]
    NotUtf8 {
        /// The file.
        file: PathBuf,
    },
    /// A rendered file is not valid YAML, or a document lacks what k3s needs.
    #[error("{}: {message}", file.display())]
    BadDocument {
        /// The file.
        file: PathBuf,
        /// What is wrong, with the YAML parser's line and column where it has them.
        message: String,
    },
    /// A file named like one of k3s's own packaged manifests.
    #[error("{}: `{addon}` is the name of a manifest k3s ships and rewrites at every start (its packaged components); k3s would overwrite this file or fight over the addon: rename the file (the addon name is the file name up to the first dot), and change a packaged component with a HelmChartConfig or `disable` instead", file.display())]
    PackagedAddon {
        /// The file, relative to the staged manifests folder.
        file: PathBuf,
        /// The addon name it shares.
        addon: String,
    },
    /// A file name k3s cannot use as an addon name, or a file that is not a manifest.
    #[error("{}: {reason}", file.display())]
    BadFileName {
        /// The file.
        file: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// Two files would become the same k3s addon (k3s names addons by file name before the
    /// first dot, across all folders), so one would silently replace the other.
    #[error("{} and {}: both become k3s addon `{addon}`: rename one of them", first.display(), second.display())]
    DuplicateAddon {
        /// The addon name.
        addon: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
    /// A service is on while a service it needs is off.
    #[error("cluster.toml: [services] {service} is on but needs {needs}, which is off: turn {needs} on, or turn {service} off")]
    DependencyOff {
        /// The service that is on.
        service: String,
        /// The service it needs.
        needs: String,
    },
    /// The secrets file lacks a credential an enabled service needs.
    #[error("secrets file: no credential `{key}` for service {service}: run `piimg secrets init` for a new cluster, or add the missing credentials to the existing secrets file")]
    MissingCredential {
        /// The service.
        service: String,
        /// The credential key.
        key: String,
    },
}
