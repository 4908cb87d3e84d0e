//! The verbs' logic, called by `main.rs` with the typed args from [`crate::cli`].
//! Reading the environment (`SOURCE_DATE_EPOCH`) happens here, at the edge.

mod build;
mod firstboot_bin;
mod plan;
mod secrets;

pub use build::{build, Built};
pub use plan::{inputs_for_plan, plan, selected_nodes};
pub use secrets::{secrets, SERVICE_CREDENTIALS};

/// The base-service manifests a node stages (server only).
fn manifests_for(_spec: &crate::spec::NodeSpec) -> anyhow::Result<Vec<crate::plan::RenderedManifest>> {
    // Wired to the manifests module when `services` lands (see verb::plan's hook).
    Ok(Vec::new())
}
