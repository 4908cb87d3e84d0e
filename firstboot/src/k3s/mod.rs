//! Steps 2 and 3: put what k3s auto-loads into its data-dir on the SSD, then start k3s and wait
//! until the node is ready; on the server, then delete the objects of dropped manifests.

pub mod join;
pub mod prune;
pub mod sync;
