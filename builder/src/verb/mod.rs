//! The verbs' logic, called by `main.rs` with the typed args from [`crate::cli`].
//! Reading the environment (`SOURCE_DATE_EPOCH`) happens here, at the edge.

mod build;
mod inspect;
mod plan;
mod secrets;
mod watch;

pub use crate::build::{ensure_service_credentials, render_manifests, Built};
pub use build::build;
pub use inspect::inspect;
pub use plan::{inputs_for_plan, plan, selected_nodes};
pub use secrets::secrets;
pub use watch::{expected_nodes, report_key, setup as watch_setup, watch};
