//! The one error type of the apply stage. Every variant names the image; those about an edit
//! name the partition and the edit too (an edit's Display masks secrets, so errors never
//! carry one).

use crate::disk::DiskError;
use crate::fs::ext4::Ext4Error;
use crate::fs::fat::FatError;
use std::path::PathBuf;

/// Why a plan could not be applied to an image.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The boot and root partitions could not be found.
    #[error(transparent)]
    Locate(#[from] crate::locate::LocateError),
    /// The partition table could not be read or grown (the disk error names the image).
    #[error("{source}")]
    Disk {
        /// The image.
        image: PathBuf,
        /// What the disk module said.
        #[source]
        source: Box<DiskError>,
    },
    /// The overlay could not be written out to a full copy (needed to grow the image).
    #[error("{image}: cannot write the node image out to grow it: {source}")]
    Output {
        /// The copy being written.
        image: PathBuf,
        /// What the output module said.
        #[source]
        source: Box<crate::image::FileError>,
    },
    /// A partition could not be opened (truncated image, unreadable file).
    #[error("{image}: partition {partition}: {source}")]
    Partition {
        /// The image.
        image: PathBuf,
        /// Partition number.
        partition: u32,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The base is not the OS the profile expects.
    #[error("{image}: the base is {found} but profile {node} expects {expected} (base `{base}`); pass a matching --base or fix `base` in profiles/{node}.toml")]
    BaseMismatch {
        /// The image.
        image: PathBuf,
        /// The node the plan is for.
        node: String,
        /// The catalogue base the plan names.
        base: String,
        /// What the plan expects (the flavour).
        expected: String,
        /// What the image holds.
        found: String,
    },
    /// The root filesystem must grow but is not the last partition.
    #[error("{image}: the root filesystem (partition {root}) needs {needed} more bytes but cannot grow: partition {last} follows it; use a base whose root partition is last, or free space in the root filesystem")]
    RootNotLast {
        /// The image.
        image: PathBuf,
        /// Root partition number.
        root: u32,
        /// The partition that ends last.
        last: u32,
        /// Bytes missing.
        needed: u64,
    },
    /// Growing did not make enough room (should not happen; a bug or an odd filesystem).
    #[error("{image}: partition {partition}: the root filesystem still has only {free} free bytes after growing, {needed} are needed; report this as a bug")]
    StillShort {
        /// The image.
        image: PathBuf,
        /// Root partition number.
        partition: u32,
        /// Bytes needed.
        needed: u64,
        /// Bytes free.
        free: u64,
    },
    /// A root-filesystem operation failed.
    #[error("{image}: partition {partition}: {edit}: {source}")]
    Ext4 {
        /// The image.
        image: PathBuf,
        /// Root partition number.
        partition: u32,
        /// The edit (or the step) that failed.
        edit: String,
        /// What libext2fs said.
        #[source]
        source: Box<Ext4Error>,
    },
    /// A boot-partition operation failed.
    #[error("{image}: partition {partition}: {edit}: {source}")]
    Fat {
        /// The image.
        image: PathBuf,
        /// Boot partition number.
        partition: u32,
        /// The edit (or the step) that failed.
        edit: String,
        /// What the FAT module said.
        #[source]
        source: Box<FatError>,
    },
    /// The plan edits the boot partition but the image has none.
    #[error("{image}: {edit}: the image has no boot partition (no FAT partition with cmdline.txt or config.txt, no ESP); is the base a Raspberry Pi image?")]
    NoBoot {
        /// The image.
        image: PathBuf,
        /// The edit.
        edit: String,
    },
    /// The login user's name is a system account of the base (below uid 1000): making it the
    /// login user would rewrite that account.
    #[error("{image}: the base already has `{name}` as a system account (uid {uid}); piimg would turn it into the login user and the system would lose it: choose another `user` in the profile")]
    SystemAccount {
        /// The image.
        image: PathBuf,
        /// The user name.
        name: String,
        /// Its uid in the base.
        uid: u32,
    },
    /// The table types a partition as FAT (the boot partition) but no FAT filesystem is on
    /// it: a damaged or overwritten boot sector, not another OS (issue 15.8).
    #[error("{image}: partition {partition} is a {kind} partition but holds no FAT filesystem (its first sector is not a FAT boot sector): the boot partition is damaged; use an undamaged base image (`fsck.fat -n` on the partition says what is wrong)")]
    BootNotFat {
        /// The image.
        image: PathBuf,
        /// The partition number.
        partition: u32,
        /// Its type, as sfdisk names it.
        kind: String,
    },
    /// The root filesystem claims more room than its partition has.
    #[error("{image}: partition {partition}'s ext4 filesystem is {fs_bytes} bytes, larger than the partition ({partition_bytes} bytes): the node could not mount it. The partition table or the filesystem is damaged: use an undamaged base image (check it with `e2fsck -fn` and `sfdisk --verify`)")]
    FsLargerThanPartition {
        /// The image.
        image: PathBuf,
        /// The partition number.
        partition: u32,
        /// What the superblock says.
        fs_bytes: u64,
        /// What the table gives it.
        partition_bytes: u64,
    },
    /// A file the plan copies in could not be read.
    #[error("{image}: {edit}: cannot read {file}: {source}; fetch the sources again")]
    SourceRead {
        /// The image.
        image: PathBuf,
        /// The edit.
        edit: String,
        /// The file on the workstation.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file the plan copies in no longer has the digest the plan recorded.
    #[error("{image}: {edit}: {file} has sha256 {actual}, the plan recorded {expected}; the file changed since it was resolved: fetch or pass it again")]
    SourceDigest {
        /// The image.
        image: PathBuf,
        /// The edit.
        edit: String,
        /// The file on the workstation.
        file: PathBuf,
        /// Recorded digest.
        expected: String,
        /// Digest of what was streamed.
        actual: String,
    },
}

impl ApplyError {
    /// Whether the error refuses the base itself, whatever the profile: its boot or root
    /// partition cannot be found or is damaged. Such a base is removed from the cache
    /// (issue 15.10); a base refused for one profile only (another OS, a system account) stays.
    pub fn rejects_base(&self) -> bool {
        matches!(self, Self::Locate(_) | Self::FsLargerThanPartition { .. })
    }

    /// The same error naming `shown` (the file the user gave, such as `--base c/x.img`)
    /// wherever it names one of `real`, piimg's own copies of it (the cached base, the node's
    /// work image), so a message points at a file the user knows. Issue 15.8.
    pub fn shown_as(mut self, real: &[&std::path::Path], shown: &std::path::Path) -> Self {
        self.rename(real, shown);
        self
    }

    /// [`Self::shown_as`] in place.
    pub fn rename(&mut self, real: &[&std::path::Path], shown: &std::path::Path) {
        match self {
            Self::Disk { image, .. }
            | Self::Partition { image, .. }
            | Self::BaseMismatch { image, .. }
            | Self::RootNotLast { image, .. }
            | Self::StillShort { image, .. }
            | Self::Ext4 { image, .. }
            | Self::Fat { image, .. }
            | Self::NoBoot { image, .. }
            | Self::SystemAccount { image, .. }
            | Self::FsLargerThanPartition { image, .. }
            | Self::BootNotFat { image, .. }
            | Self::SourceRead { image, .. }
            | Self::SourceDigest { image, .. } => {
                if real.iter().any(|r| r == image) {
                    *image = shown.to_path_buf();
                }
            }
            Self::Output { .. } | Self::Locate(_) => {}
        }
        match self {
            Self::Locate(e) => e.rename(real, shown),
            Self::Disk { source, .. } => source.rename(real, shown),
            Self::Ext4 { source, .. } => source.rename(real, shown),
            _ => {}
        }
    }
}
