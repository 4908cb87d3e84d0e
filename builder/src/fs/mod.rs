//! Filesystems inside a partition: the FAT boot partition and the ext4 root filesystem.

pub mod ext4;
pub mod fat;
mod fat_check;
mod fat_dot_entries;
