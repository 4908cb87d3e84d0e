//! Outputs: the node image started as a cheap copy of the cached base, then published as raw
//! or framed-compressed image, `.sha256`, `.bmap` and `.build.json`, all or nothing.

mod compress;
mod error;
mod pool;
mod publish;
mod reuse;

pub use compress::{compress_chunk, compress_image, Format, Frame};
pub use error::OutputError;
pub use publish::{
    publish, publish_moving, publish_overlay, publish_reusing, PublishRequest, Published,
};
pub use reuse::{
    compress_image_reusing, compress_overlay_to, frames_dir, CompressStats, ReuseBase,
};
