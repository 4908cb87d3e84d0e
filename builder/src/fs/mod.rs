//! Filesystems inside a partition: the FAT boot partition and the ext4 root filesystem.

pub mod fat;
pub mod ext4;
mod fat_dot_entries;
