//! The verbs' logic, called by `main.rs` with the typed args from [`crate::cli`].
//! Reading the environment (`SOURCE_DATE_EPOCH`) happens here, at the edge.

mod build;
mod firstboot_bin;
mod inspect;
mod manifests;
mod plan;
mod secrets;
mod watch;

pub use build::{build, Built};
pub use inspect::inspect;
pub use manifests::{ensure_service_credentials, render_manifests};
pub use plan::{inputs_for_plan, plan, selected_nodes};
pub use secrets::secrets;
pub use watch::{expected_nodes, report_key, setup as watch_setup, watch};
