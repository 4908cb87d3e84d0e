//! Look-alike disk images built rootless with the real tools (sfdisk, mkfs.*), and helpers to
//! check results with the real checkers.
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const MIB: u64 = 1024 * 1024;

/// Runs a command, failing the test with its output when it does not succeed.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

/// Writes `src` into `image` at `offset` without truncating it (dd conv=notrunc).
pub fn dd_into(image: &Path, src: &Path, offset: u64) {
    run(Command::new("dd")
        .arg(format!("if={}", src.display()))
        .arg(format!("of={}", image.display()))
        .args([
            "bs=1M",
            "conv=notrunc,sparse",
            "status=none",
            "oflag=seek_bytes",
        ])
        .arg(format!("seek={offset}")));
}

pub fn sparse_file(path: &Path, size: u64) {
    File::create(path).unwrap().set_len(size).unwrap();
}

pub fn sfdisk(image: &Path, script: &str) {
    let mut child = Command::new("sfdisk")
        .arg("-q")
        .arg(image)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sfdisk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn sfdisk_json(image: &Path) -> serde_json::Value {
    let out = stdout(Command::new("sfdisk").arg("--json").arg(image));
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["partitiontable"].clone()
}

/// `sfdisk --verify` must pass and report no problem.
pub fn assert_sfdisk_verify_clean(image: &Path) {
    let out = Command::new("sfdisk")
        .arg("--verify")
        .arg(image)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "sfdisk --verify failed:\n{text}");
    assert!(
        text.contains("No errors detected"),
        "sfdisk --verify:\n{text}"
    );
    assert!(
        !text.to_lowercase().contains("warning"),
        "sfdisk --verify warns:\n{text}"
    );
}

pub fn assert_e2fsck_clean(image: &Path, offset: u64) {
    run(Command::new("e2fsck")
        .arg("-fn")
        .arg(format!("{}?offset={offset}", image.display())));
}

/// A FAT "bootfs" with cmdline.txt and config.txt, as on Raspberry Pi OS.
fn make_bootfs(dir: &Path, size: u64, label: &str, fat_bits: &str) -> PathBuf {
    let part = dir.join(format!("{label}.part"));
    sparse_file(&part, size);
    run(Command::new("mkfs.vfat")
        .args(["-F", fat_bits, "-n", label, "-i", "12345678"])
        .arg(&part));
    let cmdline = dir.join("cmdline.txt");
    fs::write(&cmdline, "console=serial0,115200 console=tty1 root=PARTUUID=deadbeef-02 rootfstype=ext4 fsck.repair=yes rootwait\n").unwrap();
    let config = dir.join("config.txt");
    fs::write(&config, "arm_64bit=1\n").unwrap();
    run(Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&part)
        .arg(&cmdline)
        .arg(&config)
        .arg("::/"));
    part
}

fn make_ext4(dir: &Path, size: u64, label: &str) -> PathBuf {
    let part = dir.join(format!("{label}.part"));
    sparse_file(&part, size);
    run(Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-L",
            label,
            "-U",
            "11111111-2222-3333-4444-555555555555",
            "-E",
            "root_owner=0:0",
        ])
        .env("E2FSPROGS_FAKE_TIME", "1700000000")
        .arg(&part));
    part
}

/// Raspberry Pi OS layout: p1 FAT32 "bootfs" at 8 MiB (type c), p2 ext4 "rootfs" (type 83), last.
pub fn rpi_image(dir: &Path) -> PathBuf {
    let img = dir.join("rpi.img");
    let (boot, root) = (64 * MIB, 32 * MIB);
    sparse_file(&img, 8 * MIB + boot + root);
    sfdisk(
        &img,
        &format!(
            "label: dos\nlabel-id: 0xdeadbeef\nstart=16384, size={}, type=c\nstart={}, type=83\n",
            boot / 512,
            (8 * MIB + boot) / 512
        ),
    );
    dd_into(&img, &make_bootfs(dir, boot, "bootfs", "32"), 8 * MIB);
    dd_into(&img, &make_ext4(dir, root, "rootfs"), 8 * MIB + boot);
    img
}

/// Ubuntu amd64 layout: p14 BIOS boot, p15 ESP (FAT16 here, to cover FAT16, "UEFI"), p1 ext4 "cloudimg-rootfs" last.
pub fn ubuntu_gpt_image(dir: &Path) -> PathBuf {
    let img = dir.join("ubuntu.img");
    sparse_file(&img, 128 * MIB);
    sfdisk(&img, &format!(
        "label: gpt\nlabel-id: 0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D\n\
         {img}14 : start=2048, size=4MiB, type=21686148-6449-6E6F-744E-656564454649, uuid=00000000-0000-4000-8000-000000000014\n\
         {img}15 : start=10240, size=64MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=00000000-0000-4000-8000-000000000015, name=UEFI\n\
         {img}1 : start=141312, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=00000000-0000-4000-8000-000000000001\n",
        img = img.display()
    ));
    dd_into(&img, &make_bootfs(dir, 64 * MIB, "UEFI", "16"), 10240 * 512);
    let root_size = 128 * MIB - 141312 * 512 - 33 * 512;
    dd_into(
        &img,
        &make_ext4(dir, root_size / 4096 * 4096, "cloudimg-rootfs"),
        141312 * 512,
    );
    img
}

/// Copies `len` bytes at `offset` of `image` into a new file.
pub fn extract(image: &Path, offset: u64, len: u64, to: &Path) {
    let mut src = File::open(image).unwrap();
    src.seek(SeekFrom::Start(offset)).unwrap();
    let mut dst = File::create(to).unwrap();
    std::io::copy(&mut src.take(len), &mut dst).unwrap();
}

pub fn write_bytes_at(path: &Path, offset: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}
