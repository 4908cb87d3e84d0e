//! Sources: base images and pinned artifacts, fetched from a path or URL, verified against
//! their SHA-256, cached content-addressed, and decompressed into sparse raw images.

mod bounded;
mod cache;
mod compression;
mod decompress;
mod digest;
mod digest_memo;
mod error;
mod fetch;
mod image_file;
mod qcow2;
mod sparse_write;

pub use cache::Cache;
pub use compression::Compression;
pub(crate) use decompress::decoder_for;
pub use decompress::decompress_to;
pub use digest::{sha256_file, Sha256Hex};
pub use error::SourceError;
pub use fetch::{resolve, resolve_base, BaseImage, Fetched, SourceSpec};
pub use image_file::{open_image, ImageFile};
