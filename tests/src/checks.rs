//! The real checkers a user would run on an image: `sfdisk --verify`, `e2fsck -fn`,
//! `fsck.fat -n`. Each asserts a clean result and prints the checker's output when not.

use crate::cmd;
use crate::partitions::partitions;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;

/// Asserts that `sfdisk --verify` finds nothing wrong with the table.
pub fn check_table(image: &Path) {
    let mut command = Command::new("sfdisk");
    command.arg("--verify").arg(image);
    let out = cmd::output(&mut command);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // sfdisk --verify can exit 0 after printing a problem: require its all-clear line too.
    if !out.status.success() || !stdout.contains("No errors detected.") || !out.stderr.is_empty() {
        panic!(
            "{}: partition table is not clean\n{}",
            image.display(),
            cmd::describe(&command, &out)
        );
    }
}

/// Asserts that `e2fsck -fn` finds the ext4 filesystem at byte `start` clean (exit 0).
pub fn check_ext4(image: &Path, start: u64) {
    let mut command = Command::new("e2fsck");
    command
        .arg("-fn")
        .arg(crate::fsread::offset_spec(image, start));
    let out = cmd::output(&mut command);
    if !out.status.success() {
        panic!(
            "{} @ {start}: ext4 filesystem is not clean\n{}",
            image.display(),
            cmd::describe(&command, &out)
        );
    }
}

/// Asserts that `fsck.fat -n` finds the FAT filesystem at `start..start+size` clean.
///
/// fsck.fat cannot open a partition inside an image, so the partition is copied to a
/// temporary file first.
pub fn check_fat(image: &Path, start: u64, size: u64) {
    let tmp = tempfile::Builder::new()
        .prefix("piimg-fat-")
        .suffix(".img")
        .tempfile()
        .unwrap_or_else(|e| panic!("cannot create a temporary file for fsck.fat: {e}"));
    copy_range(image, start, size, tmp.path());
    let mut command = Command::new("fsck.fat");
    command.arg("-n").arg(tmp.path());
    let out = cmd::output(&mut command);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A clean check prints only the banner and the summary line.
    let noisy = text
        .lines()
        .filter(|l| !l.starts_with("fsck.fat ") && !l.contains(" files, ") && !l.trim().is_empty())
        .count();
    if !out.status.success() || noisy > 0 {
        panic!(
            "{} @ {start}+{size}: FAT filesystem is not clean\n{}",
            image.display(),
            cmd::describe(&command, &out)
        );
    }
}

fn copy_range(image: &Path, start: u64, size: u64, to: &Path) {
    let fail = |e: io::Error| -> ! {
        panic!(
            "{}: cannot copy bytes {start}..{} to {}: {e}",
            image.display(),
            start + size,
            to.display()
        )
    };
    let mut src = File::open(image).unwrap_or_else(|e| fail(e));
    src.seek(SeekFrom::Start(start)).unwrap_or_else(|e| fail(e));
    let mut dst = File::create(to).unwrap_or_else(|e| fail(e));
    let copied = io::copy(&mut src.take(size), &mut dst).unwrap_or_else(|e| fail(e));
    if copied != size {
        fail(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("image ends after {copied} bytes of the partition"),
        ));
    }
}

/// What a partition holds, told by its first bytes rather than its type code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    /// ext2/3/4 superblock magic 0xEF53.
    Ext4,
    /// A FAT boot sector (FAT12/16/32).
    Fat,
    /// Anything else (BIOS boot, empty, swap, ...).
    Other,
}

/// Probes the filesystem at byte `start` of `image`.
pub fn probe(image: &Path, start: u64) -> FsKind {
    let mut buf = vec![0u8; 2048];
    let mut f = File::open(image)
        .unwrap_or_else(|e| panic!("{}: cannot open to probe: {e}", image.display()));
    let read = f
        .seek(SeekFrom::Start(start))
        .and_then(|_| f.read(&mut buf))
        .unwrap_or_else(|e| panic!("{}: cannot read at {start}: {e}", image.display()));
    buf.truncate(read);
    if buf.len() >= 1024 + 58 && buf[1024 + 56] == 0x53 && buf[1024 + 57] == 0xEF {
        return FsKind::Ext4;
    }
    let boot_sig = buf.len() >= 512 && buf[510] == 0x55 && buf[511] == 0xAA;
    let fat_name = |at: usize| buf.get(at..at + 3) == Some(b"FAT".as_slice());
    if boot_sig && (fat_name(54) || fat_name(82)) {
        return FsKind::Fat;
    }
    FsKind::Other
}

/// The filesystem a partition type promises: FAT for MBR `b`/`c`/`e`/`ef` and the GPT ESP or
/// basic-data types, ext4 for MBR `83` and the GPT Linux filesystem / XBOOTLDR types.
fn expected_by_type(type_id: &str) -> Option<FsKind> {
    match type_id.to_ascii_uppercase().as_str() {
        "B"
        | "C"
        | "E"
        | "EF"
        | "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
        | "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" => Some(FsKind::Fat),
        "83" | "0FC63DAF-8483-4772-8E79-3D69D8477DE4" | "BC13C2FF-59E6-4262-A352-B275FD6F7172" => {
            Some(FsKind::Ext4)
        }
        _ => None,
    }
}

/// Runs [`check_table`], then [`check_ext4`] or [`check_fat`] on every partition. The
/// filesystem expected comes from the partition type (so a destroyed boot sector or superblock
/// fails instead of being skipped), or from probing the content for other types. Panics if
/// the image has no ext4 partition at all.
pub fn check_all(image: &Path) {
    check_table(image);
    let mut ext4 = 0;
    for part in partitions(image) {
        let found = probe(image, part.start);
        let expected = expected_by_type(&part.type_id).unwrap_or(found);
        assert_eq!(
            found,
            expected,
            "{}: partition {} (type {}) at byte {} should hold {expected:?} but holds {found:?}",
            image.display(),
            part.number,
            part.type_id,
            part.start
        );
        match expected {
            FsKind::Ext4 => {
                check_ext4(image, part.start);
                ext4 += 1;
            }
            FsKind::Fat => check_fat(image, part.start, part.size),
            FsKind::Other => {}
        }
    }
    assert!(ext4 > 0, "{}: no ext4 partition found", image.display());
}

#[cfg(test)]
mod tests {
    use super::{expected_by_type, FsKind};

    #[test]
    fn partition_types_name_the_filesystem() {
        assert_eq!(expected_by_type("c"), Some(FsKind::Fat));
        assert_eq!(expected_by_type("83"), Some(FsKind::Ext4));
        assert_eq!(
            expected_by_type("c12a7328-f81f-11d2-ba4b-00a0c93ec93b"),
            Some(FsKind::Fat)
        );
        assert_eq!(
            expected_by_type("21686148-6449-6E6F-744E-656564454649"),
            None
        );
    }
}
