//! The node side of piimg.
//!
//! The library half owns the schemas that cross the boundary between the builder (which writes
//! them into an image) and the node (which reads them at first boot), so the two can never drift:
//! both crates compile against the same types.

pub mod config;
