//! The verbs' logic, called by `main.rs` with the typed args from [`crate::cli`].
//! Reading the environment (`SOURCE_DATE_EPOCH`) happens here, at the edge.

mod plan;
mod secrets;

pub use plan::{inputs_for_plan, plan, selected_nodes};
pub use secrets::{secrets, SERVICE_CREDENTIALS};
