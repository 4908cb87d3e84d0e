//! piimg: bakes immutable, per-node disk images for a small k3s cluster.
//!
//! The modules follow the one-way data flow of DESIGN.md:
//! profile → spec → plan → (sources) → apply onto an image → output.
//! The image layer underneath works on plain image files: no loop devices, no mounts, no root.
//!
//! # Layers, bottom-up
//! Each module imports only modules of the layers below it (none imports one that imports it
//! back):
//! 1. Image files: [`image`] (the edited node image, overlays, extents, sparse copies, the
//!    chunk grid), [`input_file`] (the user's input files, regular only), [`leftovers`]
//!    (piimg's temporary files, locked while in use, swept when left behind), [`manifests`] (the
//!    base-service templates and their values), [`watch`] (report receiver and board).
//! 2. Formats on them: [`disk`] (MBR/GPT), [`fs`] (FAT and ext4), [`bmap`] (bmaptool's map),
//!    [`source`] (fetch, verify, cache, decompress), [`secrets`], [`profile`] (the TOML files).
//! 3. Reading a base: [`locate`] (boot and root partitions, the OS); the cluster model:
//!    [`spec`] (profiles resolved and checked), then [`plan`] (every edit, computed).
//! 4. Doing: [`apply`] (a plan onto an image), [`output`] (publish), [`inspect`] (report on
//!    an image), [`flash`] (write a card).
//! 5. The pipeline: [`build`] (one request: nodes prepared, applied, published).
//! 6. The command line: [`cli`] (clap types) and [`verb`] (thin adapters from args to the
//!    layers above and back to printed results).

pub mod apply;
pub mod bmap;
pub mod build;
pub mod cli;
pub mod disk;
pub mod flash;
pub mod fs;
pub mod image;
pub mod input_file;
pub mod inspect;
pub mod leftovers;
pub mod locate;
pub mod manifests;
pub mod output;
pub mod plan;
pub mod profile;
pub mod secrets;
pub mod source;
pub mod spec;
pub mod verb;
pub mod watch;
