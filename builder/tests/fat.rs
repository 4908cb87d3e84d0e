//! The FAT boot filesystem edited through a partition view, checked with fsck.fat and mtools.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use piimg::disk::{self, Layout};
use piimg::fs::fat::{BootFs, FatEntry, FatError};

const EPOCH: i64 = 1_700_000_000;
const LONG_CMDLINE: &str = "console=serial0,115200 console=tty1 root=PARTUUID=deadbeef-02 rootfstype=ext4 fsck.repair=yes rootwait cgroup_memory=1 cgroup_enable=memory quiet splash plymouth.ignore-serial-consoles systemd.unit=multi-user.target\n";
const SHORT_CMDLINE: &str = "root=PARTUUID=deadbeef-02 rootwait\n";
const LONG_NAME: &str = "current/overlays/a-rather-long-file-name.dtbo";

fn mtype(part: &Path, path: &str) -> Vec<u8> {
    run(Command::new("mtype")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(part)
        .arg(format!("::/{path}")))
    .stdout
}

/// The edits of a node build: longer then shorter cmdline.txt, a long-named file in a new
/// directory, and a removal.
fn edit_boot(img: &Path, epoch: i64) {
    let layout = Layout::read(img).unwrap();
    let view = disk::open_partition(img, layout.partition(1).unwrap(), true).unwrap();
    let mut fs = BootFs::open(view, epoch).unwrap();
    fs.write_file("cmdline.txt", LONG_CMDLINE.as_bytes())
        .unwrap();
    assert_eq!(
        fs.read_file("cmdline.txt").unwrap(),
        LONG_CMDLINE.as_bytes()
    );
    fs.write_file("/cmdline.txt", SHORT_CMDLINE.as_bytes())
        .unwrap();
    fs.mkdir_all("current/overlays").unwrap();
    fs.mkdir_all("current/overlays").unwrap();
    fs.write_file(LONG_NAME, &vec![0x5a; 10_000]).unwrap();
    fs.write_file("current/cmdline.txt", LONG_CMDLINE.as_bytes())
        .unwrap();
    fs.remove("config.txt").unwrap();
    fs.close().unwrap();
}

#[test]
fn edits_pass_fsck_and_read_back_with_mtools() {
    let dir = tempfile::tempdir().unwrap();
    let img = rpi_image(dir.path());
    edit_boot(&img, EPOCH);

    let layout = Layout::read(&img).unwrap();
    let p1 = layout.partition(1).unwrap();
    let part = dir.path().join("boot.extracted");
    extract(&img, p1.start, p1.size, &part);
    run(Command::new("fsck.fat").arg("-n").arg(&part));
    assert_eq!(mtype(&part, "cmdline.txt"), SHORT_CMDLINE.as_bytes());
    assert_eq!(mtype(&part, "current/cmdline.txt"), LONG_CMDLINE.as_bytes());
    assert_eq!(mtype(&part, LONG_NAME), vec![0x5a; 10_000]);
    let listing = stdout(
        Command::new("mdir")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-b", "-i"])
            .arg(&part)
            .arg("::/"),
    );
    assert!(!listing.to_lowercase().contains("config.txt"), "{listing}");

    // Reading back through our own API, after a fresh mount.
    let view = disk::open_partition(&img, p1, false).unwrap();
    let fs = BootFs::open(
        disk::PartitionView::new(view.into_inner(), p1.start, p1.size).unwrap(),
        EPOCH,
    )
    .unwrap();
    assert!(fs.exists("current/overlays"));
    assert!(fs.exists(LONG_NAME));
    assert!(!fs.exists("config.txt"));
    assert_eq!(
        fs.list("/").unwrap(),
        vec![
            FatEntry {
                name: "cmdline.txt".into(),
                is_dir: false,
                size: SHORT_CMDLINE.len() as u64
            },
            FatEntry {
                name: "current".into(),
                is_dir: true,
                size: 0
            },
        ]
    );
    assert_eq!(
        fs.list("current/overlays").unwrap(),
        vec![FatEntry {
            name: "a-rather-long-file-name.dtbo".into(),
            is_dir: false,
            size: 10_000
        }]
    );
}

#[test]
fn same_inputs_give_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let base = rpi_image(dir.path());
    let copy = |name: &str| {
        let p = dir.path().join(name);
        std::fs::copy(&base, &p).unwrap();
        p
    };
    let (img_a, img_b, img_c) = (copy("a.img"), copy("b.img"), copy("c.img"));
    edit_boot(&img_a, EPOCH);
    edit_boot(&img_b, EPOCH);
    assert!(
        std::fs::read(&img_a).unwrap() == std::fs::read(&img_b).unwrap(),
        "two identical runs differ"
    );
    edit_boot(&img_c, EPOCH + 86_400);
    assert!(
        std::fs::read(&img_a).unwrap() != std::fs::read(&img_c).unwrap(),
        "the epoch must reach the timestamps"
    );
}

#[test]
fn timestamps_come_from_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let img = rpi_image(dir.path());
    edit_boot(&img, EPOCH); // 2023-11-14 22:13:20 UTC
    let layout = Layout::read(&img).unwrap();
    let p1 = layout.partition(1).unwrap();
    let part = dir.path().join("boot.extracted");
    extract(&img, p1.start, p1.size, &part);
    let listing = stdout(
        Command::new("mdir")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&part)
            .arg("::/current/overlays"),
    );
    assert!(
        listing.contains("2023-11-14") && listing.contains("22:13"),
        "{listing}"
    );
}

#[test]
fn errors_name_the_filesystem_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let img = rpi_image(dir.path());
    let layout = Layout::read(&img).unwrap();
    let view = disk::open_partition(&img, layout.partition(1).unwrap(), true).unwrap();
    let mut fs = BootFs::open_named(view, EPOCH, "rpi.img partition 1").unwrap();

    let err = fs.read_file("nope.txt").unwrap_err();
    assert!(matches!(err, FatError::NotFound { .. }));
    assert!(
        err.to_string().contains("rpi.img partition 1") && err.to_string().contains("nope.txt"),
        "{err}"
    );
    let err = fs.write_file("missing/dir/file", b"x").unwrap_err();
    assert!(err.to_string().contains("mkdir_all"), "{err}");
    fs.mkdir_all("d").unwrap();
    assert!(matches!(fs.read_file("d"), Err(FatError::WrongKind { .. })));
    assert!(matches!(
        fs.write_file("d", b"x"),
        Err(FatError::WrongKind { .. })
    ));
    assert!(matches!(
        fs.mkdir_all("cmdline.txt/x"),
        Err(FatError::WrongKind { .. })
    ));
    assert!(matches!(
        fs.read_file("../etc/passwd"),
        Err(FatError::BadPath { .. })
    ));
    assert!(matches!(fs.remove("gone"), Err(FatError::NotFound { .. })));
    fs.write_file("d/f", b"x").unwrap();
    assert!(
        matches!(fs.remove("d"), Err(FatError::Io { .. })),
        "a non-empty directory is not removed"
    );
    fs.close().unwrap();

    // The ext4 partition is not FAT.
    let v2 = disk::open_partition(&img, layout.partition(2).unwrap(), true).unwrap();
    let err = BootFs::open_named(v2, EPOCH, "rpi.img partition 2").unwrap_err();
    assert!(
        matches!(err, FatError::Open { .. }) && err.to_string().contains("partition 2"),
        "{err}"
    );
}

#[test]
fn fat16_esp_of_the_gpt_image_is_editable() {
    let dir = tempfile::tempdir().unwrap();
    let img = ubuntu_gpt_image(dir.path());
    let layout = Layout::read(&img).unwrap();
    let esp = layout.partition(15).unwrap();
    let mut fs = BootFs::open(disk::open_partition(&img, esp, true).unwrap(), EPOCH).unwrap();
    fs.mkdir_all("EFI/ubuntu").unwrap();
    fs.write_file("EFI/ubuntu/grub.cfg", b"search --fs-uuid\n")
        .unwrap();
    fs.close().unwrap();
    let part = dir.path().join("esp.extracted");
    extract(&img, esp.start, esp.size, &part);
    run(Command::new("fsck.fat").arg("-n").arg(&part));
    assert_eq!(mtype(&part, "EFI/ubuntu/grub.cfg"), b"search --fs-uuid\n");
    assert_sfdisk_verify_clean(&img);
}
