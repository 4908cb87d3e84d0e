//! Partition tables on look-alike images, checked against sfdisk, e2fsck and fsck.fat.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::process::Command;

use common::*;
use piimg::disk::{self, DiskError, FsKind, Layout, TableKind};

fn sectors(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap()
}

#[test]
fn mbr_layout_matches_sfdisk() {
    let dir = tempfile::tempdir().unwrap();
    let img = rpi_image(dir.path());
    let layout = Layout::read(&img).unwrap();
    let json = sfdisk_json(&img);

    assert_eq!(layout.kind, TableKind::Mbr);
    assert_eq!(json["label"], "dos");
    assert_eq!(
        format!("0x{}", layout.disk_id),
        json["id"].as_str().unwrap()
    );
    assert_eq!(layout.disk_id, "deadbeef");
    assert_eq!(layout.disk_size, std::fs::metadata(&img).unwrap().len());
    let parts = json["partitions"].as_array().unwrap();
    assert_eq!(layout.partitions.len(), parts.len());
    for (p, j) in layout.partitions.iter().zip(parts) {
        assert!(j["node"].as_str().unwrap().ends_with(&p.number.to_string()));
        assert_eq!(p.start, sectors(&j["start"]) * 512);
        assert_eq!(p.size, sectors(&j["size"]) * 512);
        assert_eq!(
            u8::from_str_radix(&p.type_id, 16).unwrap(),
            u8::from_str_radix(j["type"].as_str().unwrap(), 16).unwrap()
        );
        assert_eq!(p.partuuid, format!("deadbeef-0{}", p.number));
    }
    assert_eq!(layout.partitions[0].start, 8 * MIB);
    assert_eq!(layout.partitions[0].type_name.as_deref(), Some("FAT32 LBA"));
    assert_eq!(layout.partitions[1].type_name.as_deref(), Some("Linux"));
    assert_eq!(layout.last_on_disk().unwrap().number, 2);
    assert_eq!(layout.partition(1).unwrap().number, 1);
    assert!(layout.partition(3).is_none());
}

#[test]
fn gpt_layout_matches_sfdisk() {
    let dir = tempfile::tempdir().unwrap();
    let img = ubuntu_gpt_image(dir.path());
    let layout = Layout::read(&img).unwrap();
    let json = sfdisk_json(&img);

    assert_eq!(layout.kind, TableKind::Gpt);
    assert_eq!(json["label"], "gpt");
    assert_eq!(layout.disk_id.to_uppercase(), json["id"].as_str().unwrap());
    assert_eq!(layout.disk_id, "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d");
    let numbers: Vec<u32> = layout.partitions.iter().map(|p| p.number).collect();
    assert_eq!(numbers, [1, 14, 15]);
    for j in json["partitions"].as_array().unwrap() {
        let node = j["node"].as_str().unwrap();
        let number: u32 = node.rsplit("img").next().unwrap().parse().unwrap();
        let p = layout.partition(number).unwrap();
        assert_eq!(p.start, sectors(&j["start"]) * 512);
        assert_eq!(p.size, sectors(&j["size"]) * 512);
        assert_eq!(p.type_id, j["type"].as_str().unwrap());
        assert_eq!(p.partuuid.to_uppercase(), j["uuid"].as_str().unwrap());
        assert_eq!(p.name.as_deref(), j["name"].as_str());
    }
    assert_eq!(
        layout.partition(14).unwrap().type_name.as_deref(),
        Some("BIOS boot")
    );
    assert_eq!(
        layout.partition(15).unwrap().type_name.as_deref(),
        Some("EFI System")
    );
    assert_eq!(
        layout.partition(1).unwrap().type_name.as_deref(),
        Some("Linux filesystem")
    );
    assert_eq!(
        layout.partition(1).unwrap().partuuid,
        "00000000-0000-4000-8000-000000000001"
    );
    assert_eq!(layout.last_on_disk().unwrap().number, 1);
}

#[test]
fn views_read_exactly_their_partition_and_refuse_writes_past_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let img = rpi_image(dir.path());
    let layout = Layout::read(&img).unwrap();
    let (p1, p2) = (
        layout.partition(1).unwrap().clone(),
        layout.partition(2).unwrap().clone(),
    );
    // Markers on the last byte of p1 and the first byte of p2.
    write_bytes_at(&img, p1.end() - 1, b"A");
    write_bytes_at(&img, p2.start, b"B");

    let mut view = disk::open_partition(&img, &p1, true).unwrap();
    assert_eq!(view.len(), p1.size);
    let mut all = Vec::new();
    view.read_to_end(&mut all).unwrap();
    assert_eq!(
        all.len() as u64,
        p1.size,
        "a view reads exactly its partition"
    );
    assert_eq!(all.last(), Some(&b'A'));
    let mut buf = [0u8; 16];
    assert_eq!(view.read(&mut buf).unwrap(), 0, "reads at the end return 0");
    view.seek(SeekFrom::End(10)).unwrap();
    assert_eq!(
        view.read(&mut buf).unwrap(),
        0,
        "reads past the end return 0"
    );

    view.seek(SeekFrom::End(-1)).unwrap();
    let err = view.write(b"xy").unwrap_err();
    assert!(err.to_string().contains("end of the partition"), "{err}");
    view.seek(SeekFrom::End(-1)).unwrap();
    assert!(view.write_all(b"xy").is_err());
    view.seek(SeekFrom::End(0)).unwrap();
    assert!(view.write(b"z").is_err());
    view.seek(SeekFrom::End(-1)).unwrap();
    view.write_all(b"C").unwrap();
    assert!(view.seek(SeekFrom::Current(-(p1.size as i64) - 1)).is_err());
    drop(view);

    let mut v2 = disk::open_partition(&img, &p2, false).unwrap();
    let mut first = [0u8; 1];
    v2.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"B", "the next partition is untouched");
    assert!(v2.write(b"x").is_err(), "a read-only view cannot write");
    let mut last = [0u8; 1];
    let mut v1 = disk::open_partition(&img, &p1, false).unwrap();
    v1.seek(SeekFrom::End(-1)).unwrap();
    v1.read_exact(&mut last).unwrap();
    assert_eq!(&last, b"C");
}

#[test]
fn probe_finds_filesystems_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let img = rpi_image(dir.path());
    let layout = Layout::read(&img).unwrap();
    let mut v1 = disk::open_partition(&img, layout.partition(1).unwrap(), false).unwrap();
    assert_eq!(
        disk::probe(&mut v1).unwrap(),
        (FsKind::Vfat, Some("bootfs".into()))
    );
    let mut v2 = disk::open_partition(&img, layout.partition(2).unwrap(), false).unwrap();
    assert_eq!(
        disk::probe(&mut v2).unwrap(),
        (FsKind::Ext4, Some("rootfs".into()))
    );

    let gimg = ubuntu_gpt_image(dir.path());
    let g = Layout::read(&gimg).unwrap();
    let mut esp = disk::open_partition(&gimg, g.partition(15).unwrap(), false).unwrap();
    assert_eq!(
        disk::probe(&mut esp).unwrap(),
        (FsKind::Vfat, Some("UEFI".into()))
    );
    let mut bios = disk::open_partition(&gimg, g.partition(14).unwrap(), false).unwrap();
    assert_eq!(disk::probe(&mut bios).unwrap(), (FsKind::Unknown, None));

    let swap = dir.path().join("swap");
    sparse_file(&swap, 4 * MIB);
    run(Command::new("mkswap").args(["-L", "swapfs"]).arg(&swap));
    let mut f = std::fs::File::open(&swap).unwrap();
    assert_eq!(
        disk::probe(&mut f).unwrap(),
        (FsKind::Swap, Some("swapfs".into()))
    );
    let mut tiny = std::io::Cursor::new(vec![0u8; 100]);
    assert_eq!(disk::probe(&mut tiny).unwrap(), (FsKind::Unknown, None));
}

fn partuuids(l: &Layout) -> Vec<(u32, String)> {
    l.partitions
        .iter()
        .map(|p| (p.number, p.partuuid.clone()))
        .collect()
}

#[test]
fn grow_mbr_by_one_gib() {
    let dir = tempfile::tempdir().unwrap();
    let img = rpi_image(dir.path());
    let before = Layout::read(&img).unwrap();
    let new_size = before.disk_size + 1024 * MIB;

    let after = disk::grow(&img, new_size, 2).unwrap();

    assert_eq!(std::fs::metadata(&img).unwrap().len(), new_size);
    assert_sfdisk_verify_clean(&img);
    let json = sfdisk_json(&img);
    assert_eq!(json["id"], "0xdeadbeef");
    let p2 = &json["partitions"][1];
    assert_eq!(
        sectors(&p2["start"]) * 512 + sectors(&p2["size"]) * 512,
        new_size
    );
    assert_eq!(after.disk_id, before.disk_id);
    assert_eq!(partuuids(&after), partuuids(&before));
    assert_eq!(after.partition(1), before.partition(1));
    assert_eq!(
        after.partition(2).unwrap().size,
        new_size - before.partition(2).unwrap().start
    );
    assert_e2fsck_clean(&img, after.partition(2).unwrap().start);
    let mut boot = disk::open_partition(&img, after.partition(1).unwrap(), false).unwrap();
    assert_eq!(disk::probe(&mut boot).unwrap().0, FsKind::Vfat);
}

#[test]
fn grow_gpt_by_one_gib_moves_the_backup_table() {
    let dir = tempfile::tempdir().unwrap();
    let img = ubuntu_gpt_image(dir.path());
    let before = Layout::read(&img).unwrap();
    let new_size = before.disk_size + 1024 * MIB;

    let after = disk::grow(&img, new_size, 1).unwrap();

    assert_sfdisk_verify_clean(&img);
    let json = sfdisk_json(&img);
    assert_eq!(json["id"].as_str().unwrap(), before.disk_id.to_uppercase());
    assert_eq!(sectors(&json["lastlba"]), new_size / 512 - 34);
    let root = json["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node"].as_str().unwrap().ends_with("img1"))
        .unwrap();
    assert_eq!(
        sectors(&root["start"]) + sectors(&root["size"]),
        new_size / 512 - 33
    );
    assert_eq!(after.disk_id, before.disk_id);
    assert_eq!(partuuids(&after), partuuids(&before));
    assert_eq!(after.partition(14), before.partition(14));
    assert_eq!(after.partition(15), before.partition(15));
    assert_e2fsck_clean(&img, after.partition(1).unwrap().start);

    // The primary alone is now authoritative and consistent: damage the backup, read again.
    write_bytes_at(&img, new_size - 512, &[0u8; 512]);
    assert_eq!(Layout::read(&img).unwrap(), after);
}

#[test]
fn grow_refuses_what_it_cannot_do_and_leaves_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let img = rpi_image(dir.path());
    let size = std::fs::metadata(&img).unwrap().len();
    let name = img.display().to_string();

    let err = disk::grow(&img, size + MIB, 1).unwrap_err();
    assert!(
        matches!(
            err,
            DiskError::NotLast {
                number: 1,
                last: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&name));
    let err = disk::grow(&img, size + MIB, 7).unwrap_err();
    assert!(matches!(err, DiskError::NoSuchPartition { .. }), "{err}");
    let err = disk::grow(&img, size - MIB, 2).unwrap_err();
    assert!(matches!(err, DiskError::BadSize { .. }), "{err}");
    let err = disk::grow(&img, size + 100, 2).unwrap_err();
    assert!(matches!(err, DiskError::BadSize { .. }), "{err}");
    let err = disk::grow(&img, 3 << 40, 2).unwrap_err();
    assert!(err.to_string().contains("2 TiB"), "{err}");
    assert_eq!(std::fs::metadata(&img).unwrap().len(), size);
    assert_sfdisk_verify_clean(&img);
}

#[test]
fn damaged_primary_gpt_falls_back_to_backup_and_both_damaged_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let img = ubuntu_gpt_image(dir.path());
    let good = Layout::read(&img).unwrap();

    write_bytes_at(&img, 512 + 24, &[0xff; 8]); // primary header: current LBA, CRC now wrong
    assert_eq!(Layout::read(&img).unwrap(), good);
    let err = disk::grow(&img, good.disk_size + MIB, 1).unwrap_err();
    assert!(matches!(err, DiskError::GptPrimaryDamaged { .. }), "{err}");

    write_bytes_at(&img, good.disk_size - 512 + 24, &[0xff; 8]);
    let err = Layout::read(&img).unwrap_err();
    assert!(matches!(err, DiskError::GptCrc { .. }), "{err}");
    assert!(err.to_string().contains(&img.display().to_string()));
}

#[test]
fn truncated_images_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for img in [rpi_image(dir.path()), ubuntu_gpt_image(dir.path())] {
        let cut = dir.path().join("cut.img");
        std::fs::copy(&img, &cut).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&cut).unwrap();
        f.set_len(20 * MIB).unwrap();
        drop(f);
        let err = Layout::read(&cut).unwrap_err();
        assert!(matches!(err, DiskError::Truncated { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&cut.display().to_string()) && msg.contains("truncated"),
            "{msg}"
        );
    }
}

#[test]
fn garbage_and_tiny_files_are_errors_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.img");
    let name = path.display().to_string();

    std::fs::write(&path, b"").unwrap();
    assert!(matches!(
        Layout::read(&path),
        Err(DiskError::TooSmall { .. })
    ));
    std::fs::write(&path, vec![0u8; 4096]).unwrap();
    let err = Layout::read(&path).unwrap_err();
    assert!(
        matches!(err, DiskError::NoTable { .. }) && err.to_string().contains(&name),
        "{err}"
    );

    // Deterministic pseudo-random bytes, with the boot signature set and entry types forced
    // to plausible values (including the GPT protective type) so the parsers get exercised.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..400u64 {
        let len = [300usize, 512, 1024, 1536, 8192, 70_000][(round % 6) as usize];
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if len >= 512 && round % 4 != 0 {
            bytes[510] = 0x55;
            bytes[511] = 0xAA;
            let types = [0x00u8, 0x0c, 0x83, 0x05, 0xee];
            for i in 0..4 {
                bytes[446 + 16 * i] = if round % 3 == 0 {
                    0
                } else {
                    bytes[446 + 16 * i]
                };
                bytes[446 + 16 * i + 4] = types[(next() % 5) as usize];
            }
            if round % 5 == 0 && len >= 1024 {
                bytes[512..520].copy_from_slice(b"EFI PART");
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        if let Err(err) = Layout::read(&path) {
            assert!(err.to_string().contains(&name), "round {round}: {err}");
        }
        let _ = disk::grow(&path, 1 << 20, 1);
    }
}

#[test]
fn writes_through_a_view_do_not_change_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let img = ubuntu_gpt_image(dir.path());
    let layout = Layout::read(&img).unwrap();
    let mut v = disk::open_partition(&img, layout.partition(14).unwrap(), true).unwrap();
    v.write_all(&vec![0xAB; layout.partition(14).unwrap().size as usize])
        .unwrap();
    v.flush().unwrap();
    assert_eq!(Layout::read(&img).unwrap(), layout);
    assert_sfdisk_verify_clean(&img);
}

#[test]
fn mbr_logical_partitions_are_read_and_grow_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("logical.img");
    sparse_file(&img, 64 * MIB);
    sfdisk(
        &img,
        "label: dos\nlabel-id: 0x01020304\nstart=2048, size=16MiB, type=c\nstart=34816, type=5\nstart=36864, size=8MiB, type=83\nstart=55296, type=82\n",
    );
    let layout = Layout::read(&img).unwrap();
    let json = sfdisk_json(&img);
    let parts = json["partitions"].as_array().unwrap();
    assert_eq!(layout.partitions.len(), parts.len());
    for (p, j) in layout.partitions.iter().zip(parts) {
        assert!(j["node"].as_str().unwrap().ends_with(&p.number.to_string()));
        assert_eq!(p.start, sectors(&j["start"]) * 512);
        assert_eq!(p.size, sectors(&j["size"]) * 512);
    }
    let numbers: Vec<u32> = layout.partitions.iter().map(|p| p.number).collect();
    assert_eq!(numbers, [1, 2, 5, 6]);
    assert_eq!(layout.partition(6).unwrap().partuuid, "01020304-06");
    assert_eq!(layout.last_on_disk().unwrap().number, 6);
    let err = disk::grow(&img, 128 * MIB, 6).unwrap_err();
    assert!(matches!(err, DiskError::Unsupported { .. }), "{err}");
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 64 * MIB);
}
