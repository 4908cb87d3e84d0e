//! Outputs: the node image started as a cheap copy of the cached base, then published as raw
//! or framed-compressed image, `.sha256`, `.bmap` and `.build.json`, all or nothing.

mod bmap;
mod compress;
mod copy;
mod error;
mod extents;
mod pool;
mod publish;
mod reflink;
mod reuse;

pub use bmap::{BlockRange, Bmap, BMAP_BLOCK_SIZE};
pub use compress::{
    chunks, compress_chunk, compress_image, read_chunk, Chunk, Format, Frame, CHUNK_SIZE,
};
pub use copy::{clone_sparse, CloneMethod};
pub use error::OutputError;
pub(crate) use error::{read_error, write_error};
pub use extents::{data_extents, extents_of, Extent};
pub use publish::{
    publish, publish_moving, publish_overlay, publish_reusing, PublishRequest, Published,
};
pub use reuse::{
    compress_image_reusing, compress_overlay_to, frames_dir, CompressStats, ReuseBase,
};
