//! The node image a build edits. A raw output is edited in place in a sparse copy of the
//! cached base; a compressed output needs no full copy at all: its edits land in a
//! copy-on-write [`Overlay`] over the base, which knows which blocks changed, so publishing
//! reads and compresses only those and reuses the base's frames for the rest.
//!
//! Both are a [`Device`]: the byte-addressed storage the filesystem layers (libext2fs through
//! its io manager, fatfs through [`DeviceCursor`]) read and write.

//!
//! Below both sits the plumbing of image files that the output stage shares: data
//! [`extents`](data_extents) found with `SEEK_DATA`, sparse copies and reflinks
//! ([`clone_sparse`]), and the [chunk grid](chunks) frames and `.bmap` ranges are cut on.

mod chunks;
mod copy;
mod device;
mod extents;
mod file_error;
mod overlay;
mod reflink;

pub use chunks::{chunks, read_chunk, Chunk, CHUNK_SIZE};
pub(crate) use copy::{clone_into, Side};
pub use copy::{clone_sparse, CloneMethod};
pub use device::{Device, DeviceCursor, FileDevice};
pub use extents::{data_extents, extents_of, Extent};
pub use file_error::FileError;
pub(crate) use file_error::{read_error, write_error};
pub use overlay::Overlay;
