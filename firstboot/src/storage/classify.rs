//! Decides what may be done with the selected disk, from its bytes alone (plus the "formatting
//! began on this disk" mark of an interrupted run).

use super::{disk_key, gpt, partition_name, signature, StorageError};
use crate::config::NodeConfig;
use crate::system::Disk;
use std::io::{Read, Seek, SeekFrom};

/// What the storage step does with a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// This cluster's disk: mount partition 1, which starts at this byte. Never format.
    Ours {
        /// Byte offset of the partition.
        start: u64,
    },
    /// Nothing on it: format.
    Blank,
    /// Carries data, but the profile's `wipe` names this disk's serial: erase and format.
    Wipe,
    /// An earlier run began formatting it and was cut off: format again.
    Resume,
    /// Leave it alone, for this reason.
    Refuse(String),
}

fn read_at(disk: &Disk, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
    let io = |what| {
        let path = disk.path.clone();
        move |source| StorageError::Io { path, what, source }
    };
    let mut f = std::fs::File::open(&disk.path).map_err(io("opening the disk"))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(io("seeking to the partition"))?;
    let mut buf = Vec::with_capacity(len);
    f.take(len as u64)
        .read_to_end(&mut buf)
        .map_err(io("reading the partition's superblock"))?;
    Ok(buf)
}

/// Classifies the disk.
pub fn classify(
    disk: &Disk,
    head: &[u8],
    tail: &[u8],
    cfg: &NodeConfig,
    formatting: Option<&str>,
) -> Result<Verdict, StorageError> {
    let ours_name = partition_name(&cfg.cluster_id);
    let resuming = formatting == Some(disk_key(disk).as_str());
    let wipe_allowed = cfg.storage.wipe.is_some() && cfg.storage.wipe == disk.serial;
    if let Some(entries) = gpt::entries(head, disk.sector_size) {
        if let [only] = entries.as_slice() {
            if only.name == ours_name {
                let start = only.first_lba.saturating_mul(disk.sector_size);
                let fs = signature::filesystem(&read_at(disk, start, 70 * 1024)?);
                return Ok(match fs {
                    Some(signature::Signature::Ext { label }) if label == cfg.storage.label => {
                        Verdict::Ours { start }
                    }
                    _ if resuming => Verdict::Resume,
                    Some(other) => Verdict::Refuse(format!(
                        "it has this cluster's piimg partition, but that holds {other} instead of ext4 labelled {:?}; set storage.wipe = {:?} in the profile to erase it",
                        cfg.storage.label,
                        disk.serial.as_deref().unwrap_or("<serial>")
                    )),
                    None if wipe_allowed => Verdict::Wipe,
                    None => Verdict::Refuse(format!(
                        "it has this cluster's piimg partition but no filesystem (an interrupted format from an older image?); set storage.wipe = {:?} in the profile to format it",
                        disk.serial.as_deref().unwrap_or("<serial>")
                    )),
                });
            }
        }
        if let Some(foreign) = entries.iter().find(|e| e.name.starts_with("piimg-")) {
            if foreign.name != ours_name {
                return Ok(Verdict::Refuse(format!(
                    "it is a piimg disk of another cluster (partition {:?}, this cluster's is {ours_name:?}); move it back, or set storage.wipe = {:?} to erase it",
                    foreign.name,
                    disk.serial.as_deref().unwrap_or("<serial>")
                ))
                .or_wipe(wipe_allowed));
            }
        }
    }
    let found = signature::scan(head, tail);
    if found.is_empty() {
        return Ok(Verdict::Blank);
    }
    if resuming
        && found
            .iter()
            .all(|s| matches!(s, signature::Signature::Gpt | signature::Signature::Mbr))
    {
        return Ok(Verdict::Resume);
    }
    if wipe_allowed {
        return Ok(Verdict::Wipe);
    }
    let what = found
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" and ");
    let foreign_label = found
        .iter()
        .any(|s| matches!(s, signature::Signature::Ext { label } if label.starts_with("piimg")));
    let hint = if foreign_label {
        " (a piimg label, but not this cluster's layout)"
    } else {
        ""
    };
    Ok(Verdict::Refuse(format!(
        "it carries {what}{hint}; to erase it set storage.wipe = {:?} in the node's profile and rebuild",
        disk.serial.as_deref().unwrap_or("<serial>")
    )))
}

trait OrWipe {
    fn or_wipe(self, allowed: bool) -> Verdict;
}

impl OrWipe for Verdict {
    fn or_wipe(self, allowed: bool) -> Verdict {
        if allowed {
            Verdict::Wipe
        } else {
            self
        }
    }
}
