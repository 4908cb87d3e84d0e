//! Sources: base images and pinned artifacts, fetched from a path or URL, verified against
//! their SHA-256, cached content-addressed, and decompressed into sparse raw images.

mod decompress;
mod error;
mod image_file;
mod sparse_write;

pub use decompress::{decompress_to, Compression};
pub use error::SourceError;
pub use image_file::{open_image, ImageFile};
