//! piimg: bakes immutable, per-node disk images for a small k3s cluster.
//!
//! The modules follow the one-way data flow of DESIGN.md:
//! profile → spec → plan → (sources) → apply onto an image → output.
//! The image layer underneath (`disk` for partition tables, `fs` for the boot and root
//! filesystems) works on plain image files: no loop devices, no mounts, no root.

pub mod apply;
pub mod cli;
pub mod disk;
pub mod flash;
pub mod fs;
pub mod image;
pub mod input_file;
pub mod inspect;
pub mod leftovers;
pub mod manifests;
pub mod output;
pub mod plan;
pub mod profile;
pub mod secrets;
pub mod source;
pub mod spec;
pub mod verb;
pub mod watch;
