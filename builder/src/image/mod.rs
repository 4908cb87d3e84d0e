//! The node image a build edits. A raw output is edited in place in a sparse copy of the
//! cached base; a compressed output needs no full copy at all: its edits land in a
//! copy-on-write [`Overlay`] over the base, which knows which blocks changed, so publishing
//! reads and compresses only those and reuses the base's frames for the rest.
//!
//! Both are a [`Device`]: the byte-addressed storage the filesystem layers (libext2fs through
//! its io manager, fatfs through [`DeviceCursor`]) read and write.

mod device;
mod overlay;

pub use device::{Device, DeviceCursor, FileDevice};
pub use overlay::Overlay;
