//! Why a build failed: one node's cause, named with the node, or the output folder.
//!
//! Every variant of [`NodeError`] is `transparent`, so the message a user reads is the cause's
//! own (which names the file, what is wrong and the fix), behind "building NODE".

use std::path::PathBuf;

/// A build that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The output folder cannot be made.
    #[error("{path}: cannot create the output folder: {source}")]
    OutDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The caller could not report a published node (stdout closed).
    #[error("cannot print the result: {0}")]
    Print(#[source] std::io::Error),
    /// The Raspberry Pi Imager repository file cannot be written (the images are published).
    #[error(transparent)]
    OsList(#[from] crate::output::OsListError),
    /// One node failed; the nodes before it are published.
    #[error("building {node}")]
    Node {
        /// The node.
        node: String,
        /// Why.
        #[source]
        source: Box<NodeError>,
    },
}

/// Why one node's build failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A service credential could not be added to the secrets file.
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    /// The base-service manifests cannot be rendered.
    #[error(transparent)]
    Manifests(#[from] crate::manifests::ManifestError),
    /// A source (base, k3s, first-boot binary) cannot be had.
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// No first-boot binary of piimg's own for the node's architecture.
    #[error(transparent)]
    FirstbootBin(#[from] super::firstboot_bin::FirstbootBinError),
    /// The edits cannot be applied to the base.
    #[error(transparent)]
    Apply(Box<crate::apply::ApplyError>),
    /// The partitions of the edited image cannot be found again.
    #[error(transparent)]
    Locate(#[from] crate::locate::LocateError),
    /// The base cannot be copied.
    #[error(transparent)]
    File(#[from] crate::image::FileError),
    /// The build record cannot be read back from the image.
    #[error(transparent)]
    Ext4(#[from] crate::fs::ext4::Ext4Error),
    /// The outputs cannot be published.
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    /// The published image cannot be described to Raspberry Pi Imager.
    #[error(transparent)]
    OsList(#[from] crate::output::OsListError),
    /// The work folder or the overlay cannot be made.
    #[error("{path}: cannot create {what}: {source}")]
    Work {
        /// The file or folder.
        path: PathBuf,
        /// What it was to be.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// The record read back from the image is not JSON (the image was changed under us).
    #[error("the build record of {build_id} is not JSON: {source}")]
    Record {
        /// The build.
        build_id: String,
        /// The cause.
        source: serde_json::Error,
    },
    /// A fleet's members cannot share one image.
    #[error(transparent)]
    Fleet(Box<crate::plan::fleet::FleetPlanError>),
    /// The thread publishing the node panicked (a bug).
    #[error("the thread publishing the node panicked; this is a bug in piimg")]
    Panicked,
}

impl NodeError {
    /// This error, named with its node.
    pub(super) fn of(self, node: &str) -> BuildError {
        BuildError::Node {
            node: node.to_string(),
            source: Box::new(self),
        }
    }
}

impl From<crate::apply::ApplyError> for NodeError {
    fn from(e: crate::apply::ApplyError) -> NodeError {
        NodeError::Apply(Box::new(e))
    }
}

impl From<Box<crate::plan::fleet::FleetPlanError>> for NodeError {
    fn from(e: Box<crate::plan::fleet::FleetPlanError>) -> NodeError {
        NodeError::Fleet(e)
    }
}
