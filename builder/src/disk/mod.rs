//! Partition tables (MBR and GPT) of image files, bounded per-partition views, and growing
//! an image together with its last partition.
//!
//! Everything here works on a plain image file with ordinary reads and writes: no loop
//! devices, no root. Reading never trusts the table: every entry is checked against the file
//! size and its neighbours before a caller can act on it.

mod error;
mod gpt;
mod grow;
mod head;
mod layout;
mod mbr;
mod probe;
mod read;
mod type_names;
mod view;

pub use error::DiskError;
pub use grow::grow;
pub use head::{table_end, HeadError, TableEnd, HEAD_BYTES};
pub use layout::{Layout, Partition, TableKind};
pub use probe::{probe, FsKind};
pub use view::{device_partition, open_partition, PartitionView};

/// The sector size of every image this tool handles. Image files carry no sector size of their
/// own; Raspberry Pi OS and Ubuntu images are laid out for 512-byte sectors.
pub const SECTOR_SIZE: u64 = 512;
