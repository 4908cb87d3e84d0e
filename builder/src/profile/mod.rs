//! Profiles: `cluster.toml` and one `<node>.toml` per node, as the user wrote them.
//!
//! This module is the only code that reads profile files. It parses them into types that
//! mirror the files (every node key optional, so layers can be merged) and follows `extends`.
//! Filling defaults and checking values is the job of [`crate::spec`].

mod load;
mod merge;
mod types;

#[cfg(test)]
mod reference;

pub use load::{load_cluster, load_node, LoadedCluster, LoadedNode, ProfileError, CLUSTER_FILE};
pub use merge::Merge;
pub use types::*;
