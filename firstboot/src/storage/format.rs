//! Writes the SSD's layout: a GPT with one Linux partition named for the cluster (by `sfdisk`,
//! which also tells the kernel), then ext4 with the profile's label (by `mkfs.ext4`).

use super::{gpt, partition_name, read_ends, StorageError, PROBE_BYTES};
use crate::context::Ctx;
use crate::system::Disk;
use std::io::{Seek, SeekFrom, Write};
use std::process::{Command, Stdio};

const LINUX_FS_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

fn zero_ends(disk: &Disk) -> Result<(), StorageError> {
    let io = |what| {
        let path = disk.path.clone();
        move |source| StorageError::Io { path, what, source }
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&disk.path)
        .map_err(io("opening the disk to wipe it"))?;
    let n = PROBE_BYTES.min(disk.size);
    let zeros = vec![0u8; n as usize];
    f.write_all(&zeros).map_err(io("wiping its first MiB"))?;
    f.seek(SeekFrom::Start(disk.size - n))
        .map_err(io("seeking to its last MiB"))?;
    f.write_all(&zeros).map_err(io("wiping its last MiB"))?;
    f.sync_all().map_err(io("syncing the wipe"))
}

fn run(disk: &Disk, mut cmd: Command, stdin: Option<&str>) -> Result<(), StorageError> {
    let shown = format!("{cmd:?}");
    let fail = |detail: String| StorageError::Format {
        disk: disk.display_name(),
        detail: format!("{shown}: {detail}"),
    };
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("{e} (is it installed in the image?)")))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Formats `disk`; returns the byte offset of the new partition.
pub fn format(ctx: &mut Ctx<'_>, disk: &Disk, wipe: bool) -> Result<u64, StorageError> {
    let cfg = ctx.cfg;
    tracing::info!(disk = %disk.display_name(), wipe, "formatting");
    if wipe {
        zero_ends(disk)?;
    }
    let script = format!(
        "label: gpt\nfirst-lba: 2048\nstart=2048, type={LINUX_FS_TYPE}, name=\"{}\"\n",
        partition_name(&cfg.cluster_id)
    );
    let mut sfdisk = Command::new("sfdisk");
    sfdisk
        .args(["--quiet", "--wipe", "always", "--wipe-partitions", "always"])
        .arg(&disk.path);
    run(disk, sfdisk, Some(&script))?;
    crate::crash::point("partition");

    let (head, _) = read_ends(disk)?;
    let entry = gpt::entries(&head, disk.sector_size)
        .and_then(|e| e.into_iter().next())
        .ok_or_else(|| StorageError::Format {
            disk: disk.display_name(),
            detail: "sfdisk finished but no partition is in the new GPT; check the disk's health"
                .into(),
        })?;
    let bad = || StorageError::Format {
        disk: disk.display_name(),
        detail: "the new GPT's first partition has impossible bounds; check the disk's health"
            .into(),
    };
    let start = entry
        .first_lba
        .checked_mul(disk.sector_size)
        .ok_or_else(bad)?;
    let len = (entry.last_lba + 1)
        .checked_sub(entry.first_lba)
        .and_then(|n| n.checked_mul(disk.sector_size))
        .filter(|&n| n > 0)
        .ok_or_else(bad)?;
    let target = ctx.sys.partition(disk, entry.index, start)?;
    let mut mkfs = Command::new("mkfs.ext4");
    mkfs.args(["-q", "-F", "-L", &cfg.storage.label]);
    if target.offset != 0 {
        mkfs.arg("-E").arg(format!("offset={}", target.offset));
    }
    mkfs.arg(&target.path);
    if target.offset != 0 {
        mkfs.arg(format!("{}k", len / 1024));
    }
    run(disk, mkfs, None)?;
    Ok(start)
}
