//! Helpers shared by the end-to-end tests: look-alike base images (built by `scripts/` and
//! cached), the real checkers, and the piimg binaries under test.
//!
//! Everything here is test code: helpers panic with the failing tool's full output instead of
//! returning errors, so a failed assertion explains itself.

mod bins;
pub mod boot;
mod checks;
pub mod cluster;
mod cmd;
mod digest;
pub mod example;
mod fixture;
mod fsread;
pub mod http;
mod inspect;
mod partitions;

pub use bins::{piimg_bin, target_dir};
pub use checks::{check_all, check_ext4, check_fat, check_table, probe, FsKind};
pub use digest::sha256_file;
pub use fixture::{
    build_fixture_to, copy_fixture, fixture, fixture_dir, fixture_in, mkfixture_script,
    workspace_root, Kind, FIXTURE_EPOCH,
};
pub use fsread::{
    blkid_probe, debugfs_cat, debugfs_exists, debugfs_inode, debugfs_ls, debugfs_stat, mtype,
    offset_spec, DirEntry, InodeInfo, EXT4_INDEX_FL,
};
pub use inspect::{debugfs_write, image_root_start, inspect_json, root_start};
pub use partitions::{partitions, table, PartInfo, TableInfo};
