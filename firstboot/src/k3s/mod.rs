//! Steps 2 and 3: put what k3s auto-loads into its data-dir on the SSD, then start k3s and wait
//! until the node is ready.

pub mod join;
pub mod sync;
