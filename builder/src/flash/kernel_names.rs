//! How the kernel names a block device and its partitions (device numbers, sysfs names): the
//! vocabulary the safety checks and the in-use checks share, kept below both.

use std::path::PathBuf;

/// A block device number, as `major:minor` in sysfs and mountinfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DevNo {
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
}

impl DevNo {
    /// Splits a Linux `st_rdev` (glibc's encoding).
    pub fn from_rdev(rdev: u64) -> DevNo {
        DevNo {
            major: ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff),
            minor: (rdev & 0xff) | ((rdev >> 12) & !0xff),
        }
    }

    /// Reads `major:minor` as sysfs and mountinfo write it.
    pub(super) fn parse(text: &str) -> Option<DevNo> {
        let (a, b) = text.trim().split_once(':')?;
        Some(DevNo {
            major: a.parse().ok()?,
            minor: b.parse().ok()?,
        })
    }
}

impl std::fmt::Display for DevNo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// A disk or one of its partitions, as sysfs names it.
#[derive(Debug, Clone)]
pub(super) struct Member {
    /// Kernel name (`sda`, `mmcblk0p1`): the `/dev` name.
    pub name: String,
    /// Device number, when sysfs gives one.
    pub devno: Option<DevNo>,
    /// Its sysfs folder.
    pub dir: PathBuf,
    /// Whether it is the whole disk (else a partition).
    pub whole_disk: bool,
}

impl Member {
    /// How a refusal names it: "it (sda)" for the disk, "its partition sda2".
    pub fn label(&self) -> String {
        if self.whole_disk {
            format!("it ({})", self.name)
        } else {
            format!("its partition {}", self.name)
        }
    }
}
