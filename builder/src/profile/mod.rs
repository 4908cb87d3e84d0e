//! Profiles: `cluster.toml` and one `<node>.toml` per node, as the user wrote them.
//!
//! This module is the only code that reads profile files. It parses them into types that
//! mirror the files (every node key optional, so layers can be merged) and follows `extends`.
//! Filling defaults and checking values is the job of `spec`, the layer above.

mod load;
mod merge;
mod name;
mod types;

#[cfg(test)]
mod reference;

pub use load::{load_cluster, load_node, LoadedCluster, LoadedNode, ProfileError, CLUSTER_FILE};
pub use merge::Merge;
pub use name::is_rfc1123_label;
pub use types::*;
