//! Copy-on-write overlay: placeholder, being written.

/// A node image as the cached base plus the blocks the build wrote.
#[derive(Debug)]
pub struct Overlay;
