//! `piimg flash`: flashing to a file gives the image byte for byte (raw and every compressed
//! format), a damaged image or map is stopped, and the unsafe targets are refused, tested
//! against stand-in /proc and /sys trees (never a real disk).

mod io_support;
use io_support as common;

use common::standard_image;
use piimg::flash::{check_block_device, flash, DevNo, FlashError, FlashRequest, SystemPaths};
use piimg::output::{compress_image, Bmap, Format};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

fn request(image: &Path, device: &Path) -> FlashRequest {
    FlashRequest {
        image: image.to_path_buf(),
        device: device.to_path_buf(),
        bmap: None,
        force: false,
        system: SystemPaths::default(),
        progress: false,
    }
}

/// `node.img` (the standard sparse image) and `node.bmap` in `dir`; returns the image bytes.
fn node_image(dir: &Path) -> Vec<u8> {
    let img = dir.join("node.img");
    let bytes = standard_image(&img);
    let bmap = Bmap::of_image(&img).expect("bmap");
    std::fs::write(dir.join("node.bmap"), bmap.to_xml()).expect("write bmap");
    bytes
}

#[test]
fn flash_to_a_file_gives_the_image_raw_and_compressed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let bytes = node_image(d);
    let mut images = vec![d.join("node.img")];
    for format in [Format::Zstd, Format::Xz, Format::Gzip] {
        let out = d.join(format!("node.{}", format.extension()));
        let mut file = std::fs::File::create(&out).expect("create");
        compress_image(&d.join("node.img"), format, &mut file).expect("compress");
        images.push(out);
    }
    for image in images {
        let target = d.join("card");
        // A target holding older, longer content ends up exactly the image.
        std::fs::write(&target, vec![0xAAu8; bytes.len() + 12345]).expect("old content");
        let report = flash(&request(&image, &target)).expect("flash");
        assert!(report.verified);
        assert_eq!(report.image_size, bytes.len() as u64);
        assert!(
            report.written < bytes.len() as u64 / 4,
            "wrote {} of {}: holes were written",
            report.written,
            bytes.len()
        );
        assert!(
            std::fs::read(&target).expect("read target") == bytes,
            "{} flashed to a file differs from the image",
            image.display()
        );
    }
}

#[test]
fn a_damaged_image_is_stopped_at_its_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    node_image(d);
    let img = d.join("node.img");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .expect("open");
    file.write_all_at(b"X", (9 << 20) + 100).expect("damage");
    let err = flash(&request(&img, &d.join("card"))).expect_err("damaged image flashed");
    assert!(
        matches!(err, FlashError::ImageMismatch { .. }),
        "unexpected: {err}"
    );
    assert!(err.to_string().contains("node.img"), "{err}");
}

#[test]
fn an_edited_or_missing_bmap_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    node_image(d);
    let img = d.join("node.img");
    let text = std::fs::read_to_string(d.join("node.bmap")).expect("read bmap");
    let at = text.find("chksum=\"").expect("a range") + 8;
    let mut edited = text.clone();
    let c = if &text[at..at + 1] == "0" { "1" } else { "0" };
    edited.replace_range(at..at + 1, c);
    std::fs::write(d.join("node.bmap"), edited).expect("write");
    let err = flash(&request(&img, &d.join("card"))).expect_err("edited bmap accepted");
    assert!(
        matches!(err, FlashError::BadBmap { .. }),
        "unexpected: {err}"
    );

    std::fs::remove_file(d.join("node.bmap")).expect("rm");
    let err = flash(&request(&img, &d.join("card"))).expect_err("no bmap accepted");
    assert!(
        matches!(err, FlashError::NoBmap { .. }),
        "unexpected: {err}"
    );
    assert!(
        !d.join("card").exists(),
        "a target was created without a map"
    );
}

/// A stand-in sysfs and mount table:
/// sda (8:0, fixed) with sda1, sda2; mmcblk0 (179:0, removable) with mmcblk0p1;
/// nvme0n1 (259:0, fixed, unused); dm-0 (254:0) on top of sda2.
struct FakeSystem {
    _dir: tempfile::TempDir,
    paths: SystemPaths,
}

impl FakeSystem {
    fn new(mountinfo: &str) -> FakeSystem {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let devices = root.join("sys/devices");
        let by_number = root.join("sys/dev/block");
        std::fs::create_dir_all(&by_number).expect("mkdir");
        let add = |rel: &str, dev: &str, removable: Option<&str>, partition: bool| {
            let p = devices.join(rel);
            std::fs::create_dir_all(&p).expect("mkdir");
            std::fs::write(p.join("dev"), format!("{dev}\n")).expect("dev");
            if let Some(r) = removable {
                std::fs::write(p.join("removable"), format!("{r}\n")).expect("removable");
            }
            if partition {
                std::fs::write(p.join("partition"), "1\n").expect("partition");
            }
            std::os::unix::fs::symlink(&p, by_number.join(dev)).expect("symlink");
            p
        };
        add("pci0/block/sda", "8:0", Some("0"), false);
        let sda2 = add("pci0/block/sda/sda2", "8:2", None, true);
        add("pci0/block/sda/sda1", "8:1", None, true);
        add("mmc/block/mmcblk0", "179:0", Some("1"), false);
        add("mmc/block/mmcblk0/mmcblk0p1", "179:1", None, true);
        add("nvme/block/nvme0n1", "259:0", Some("0"), false);
        let dm = add("virtual/block/dm-0", "254:0", Some("0"), false);
        std::fs::create_dir_all(dm.join("slaves")).expect("mkdir");
        std::os::unix::fs::symlink(&sda2, dm.join("slaves/sda2")).expect("symlink");
        let mountinfo_path = root.join("mountinfo");
        std::fs::write(&mountinfo_path, mountinfo).expect("mountinfo");
        FakeSystem {
            paths: SystemPaths {
                mountinfo: mountinfo_path,
                sys_dev_block: by_number,
            },
            _dir: dir,
        }
    }

    fn check(&self, devno: (u64, u64), force: bool) -> Result<(), FlashError> {
        check_block_device(
            &PathBuf::from("/dev/stand-in"),
            DevNo {
                major: devno.0,
                minor: devno.1,
            },
            &self.paths,
            force,
        )
    }
}

const ROOT_ON_SDA2: &str = "22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw\n\
                            23 22 0:21 / /proc rw - proc proc rw\n";

fn refused_because(result: Result<(), FlashError>, words: &str) {
    match result {
        Err(e @ FlashError::Refused { .. }) => {
            assert!(e.to_string().contains(words), "{e}")
        }
        other => panic!("expected a refusal ({words}), got {other:?}"),
    }
}

#[test]
fn a_removable_unmounted_card_is_accepted() {
    let sys = FakeSystem::new(ROOT_ON_SDA2);
    sys.check((179, 0), false).expect("card accepted");
}

#[test]
fn a_card_with_a_mounted_partition_is_refused_even_with_force() {
    let sys = FakeSystem::new(&format!(
        "{ROOT_ON_SDA2}40 22 179:1 / /media/user/boot\\040fs rw - vfat /dev/mmcblk0p1 rw\n"
    ));
    refused_because(
        sys.check((179, 0), true),
        "is mounted at /media/user/boot fs",
    );
    // Naming the partition instead of the disk changes nothing.
    refused_because(sys.check((179, 1), true), "mounted");
}

#[test]
fn the_system_disk_is_refused_even_with_force() {
    // Mounted partitions are caught first; the boot-disk check must hold on its own too,
    // e.g. root on device-mapper over sda2 with no sda partition in the mount table.
    let sys = FakeSystem::new("22 1 254:0 / / rw - ext4 /dev/mapper/root rw\n");
    refused_because(sys.check((8, 0), true), "running system boots from");
}

#[test]
fn a_fixed_disk_needs_force() {
    let sys = FakeSystem::new(ROOT_ON_SDA2);
    refused_because(sys.check((259, 0), false), "--force");
    sys.check((259, 0), true)
        .expect("--force allows a fixed disk");
}

#[test]
fn an_unknown_device_is_refused() {
    let sys = FakeSystem::new(ROOT_ON_SDA2);
    refused_because(sys.check((7, 3), true), "does not list");
}
