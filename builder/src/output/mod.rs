//! Outputs: the node image started as a cheap copy of the cached base, then published as raw
//! or framed-compressed image, `.sha256`, `.bmap` and `.build.json`, all or nothing.

mod compress;
mod error;
mod os_list;
mod pool;
mod publish;
mod reuse;

pub use compress::{compress_chunk, compress_image, Format, Frame};
pub use error::OutputError;
pub use os_list::{
    date_of, format_of_file, raw_digest, write_os_list, ImagerBase, ImagerImage, OsListError,
    OS_LIST_FILE, PI5_TAG,
};
pub use publish::{
    publish, publish_moving, publish_overlay, publish_reusing, PublishRequest, Published,
};
pub use reuse::{
    compress_image_reusing, compress_overlay_to, frames_dir, CompressStats, ReuseBase,
};
