//! The look-alike base images copy what matters of the real ones (see
//! `shared/reference/base-images.md`): table, partition starts and types, labels, boot files,
//! fstab, os-release, swap set-up, indexed directories, root ownership, reproducibility.

use piimg_e2e::{
    blkid_probe, check_all, copy_fixture, debugfs_cat, debugfs_inode, debugfs_ls, fixture,
    fixture_in, mtype, sha256_file, table, Kind, PartInfo,
};
use std::path::Path;

const MIB: u64 = 1024 * 1024;

/// One expected partition: number, start in bytes, type, filesystem type and label.
struct Part {
    number: u32,
    start: u64,
    type_id: &'static str,
    fs: Option<(&'static str, &'static str)>,
}

fn expected_parts(kind: Kind) -> (&'static str, Vec<Part>) {
    let p = |number, start, type_id, fs| Part {
        number,
        start,
        type_id,
        fs,
    };
    match kind {
        Kind::RaspiosBookworm | Kind::RaspiosTrixie => (
            "dos",
            vec![
                p(1, 8 * MIB, "c", Some(("vfat", "bootfs"))),
                p(2, 72 * MIB, "83", Some(("ext4", "rootfs"))),
            ],
        ),
        Kind::UbuntuRaspi => (
            "dos",
            vec![
                p(1, 2048 * 512, "c", Some(("vfat", "system-boot"))),
                p(2, 65 * MIB, "83", Some(("ext4", "writable"))),
            ],
        ),
        Kind::UbuntuAmd64 => (
            "gpt",
            vec![
                p(14, 2048 * 512, "21686148-6449-6E6F-744E-656564454649", None),
                p(
                    15,
                    5 * MIB,
                    "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
                    Some(("vfat", "UEFI")),
                ),
                p(
                    16,
                    53 * MIB,
                    "BC13C2FF-59E6-4262-A352-B275FD6F7172",
                    Some(("ext4", "BOOT")),
                ),
                p(
                    1,
                    85 * MIB,
                    "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
                    Some(("ext4", "cloudimg-rootfs")),
                ),
            ],
        ),
    }
}

fn part(parts: &[PartInfo], number: u32) -> &PartInfo {
    parts
        .iter()
        .find(|p| p.number == number)
        .unwrap_or_else(|| panic!("no partition {number} in {parts:?}"))
}

/// (boot FAT partition number, root ext4 partition number)
fn boot_and_root(kind: Kind) -> (u32, u32) {
    match kind {
        Kind::UbuntuAmd64 => (15, 1),
        _ => (1, 2),
    }
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("file is UTF-8 text")
}

fn check_layout(kind: Kind, image: &Path) {
    let t = table(image);
    let (label, want) = expected_parts(kind);
    assert_eq!(t.label, label, "{kind}: table type");
    assert_eq!(t.partitions.len(), want.len(), "{kind}: {:?}", t.partitions);
    for w in &want {
        let got = part(&t.partitions, w.number);
        assert_eq!(got.start, w.start, "{kind}: start of p{}", w.number);
        assert_eq!(got.type_id, w.type_id, "{kind}: type of p{}", w.number);
        if let Some((fs, fs_label)) = w.fs {
            let probe = blkid_probe(image, got.start);
            assert_eq!(
                probe.get("TYPE").map(String::as_str),
                Some(fs),
                "{kind} p{}",
                w.number
            );
            assert_eq!(
                probe.get("LABEL").map(String::as_str),
                Some(fs_label),
                "{kind} p{}",
                w.number
            );
            if fs == "vfat" {
                assert_eq!(probe.get("VERSION").map(String::as_str), Some("FAT32"));
            }
        }
    }
    // The root partition is the last one on the disk (it is the one that grows).
    let (_, root) = boot_and_root(kind);
    let last = t
        .partitions
        .iter()
        .max_by_key(|p| p.start)
        .expect("partitions");
    assert_eq!(last.number, root, "{kind}: root must be last on disk");
    let size = std::fs::metadata(image).expect("image metadata").len();
    assert!(size < 300 * MIB, "{kind}: image is {size} bytes");
    match kind {
        Kind::RaspiosBookworm => assert_eq!(t.id, "0x4e639091"),
        Kind::RaspiosTrixie => assert_eq!(t.id, "0x8a31d5c7"),
        _ => {}
    }
}

fn check_boot_files(kind: Kind, image: &Path, boot: &PartInfo) {
    let read = |p: &str| text(mtype(image, boot.start, p));
    let cmdline = || {
        let c = read("/cmdline.txt");
        assert_eq!(
            c.lines().count(),
            1,
            "{kind}: cmdline.txt is one line: {c:?}"
        );
        c.trim_end().to_string()
    };
    match kind {
        Kind::RaspiosBookworm => {
            assert_eq!(
                cmdline(),
                "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 \
                 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot"
            );
        }
        Kind::RaspiosTrixie => {
            assert_eq!(
                cmdline(),
                "console=serial0,115200 console=tty1 root=PARTUUID=8a31d5c7-02 rootfstype=ext4 \
                 fsck.repair=yes rootwait resize"
            );
            for seed in ["/user-data", "/meta-data", "/network-config"] {
                assert!(!read(seed).is_empty(), "{kind}: {seed}");
            }
            assert!(read("/user-data").starts_with("#cloud-config"));
        }
        Kind::UbuntuRaspi => {
            assert_eq!(
                cmdline(),
                "console=serial0,115200 multipath=off dwc_otg.lpm_enable=0 console=tty1 \
                 root=LABEL=writable rootfstype=ext4 rootwait fixrtc quiet splash"
            );
            assert!(read("/user-data").starts_with("#cloud-config"));
            assert!(read("/meta-data").contains("instance_id"));
            assert!(read("/network-config").contains("network:"));
        }
        Kind::UbuntuAmd64 => {
            assert!(read("/EFI/BOOT/BOOTX64.EFI").contains("placeholder"));
            assert!(read("/EFI/ubuntu/grub.cfg").contains("search.fs_label BOOT"));
        }
    }
    if matches!(
        kind,
        Kind::RaspiosBookworm | Kind::RaspiosTrixie | Kind::UbuntuRaspi
    ) {
        let config = read("/config.txt");
        let sections: Vec<&str> = config.lines().filter(|l| l.starts_with('[')).collect();
        assert!(sections.contains(&"[pi5]"), "{kind}: {sections:?}");
        assert!(sections.contains(&"[all]"), "{kind}: {sections:?}");
        assert!(config.contains("arm_64bit=1"));
    }
}

fn fstab_lines(image: &Path, root: u64) -> Vec<Vec<String>> {
    text(debugfs_cat(image, root, "/etc/fstab"))
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn os_release(image: &Path, root: u64) -> String {
    let link = debugfs_inode(image, root, "/etc/os-release");
    assert_eq!(link.file_type, "symlink");
    assert_eq!(link.link_target.as_deref(), Some("../usr/lib/os-release"));
    text(debugfs_cat(image, root, "/usr/lib/os-release"))
}

fn check_root_files(kind: Kind, image: &Path, root: u64) {
    let fstab = fstab_lines(image, root);
    let entry = |mountpoint: &str| -> Vec<String> {
        fstab
            .iter()
            .find(|f| f.get(1).map(String::as_str) == Some(mountpoint))
            .cloned()
            .unwrap_or_else(|| panic!("{kind}: no fstab entry for {mountpoint}: {fstab:?}"))
    };
    let os = os_release(image, root);
    let machine_id = debugfs_cat(image, root, "/etc/machine-id");
    match kind {
        Kind::RaspiosBookworm | Kind::RaspiosTrixie => {
            let id = if kind == Kind::RaspiosBookworm {
                "4e639091"
            } else {
                "8a31d5c7"
            };
            assert_eq!(entry("/")[0], format!("PARTUUID={id}-02"));
            assert_eq!(entry("/")[3], "defaults,noatime");
            assert_eq!(entry("/boot/firmware")[0], format!("PARTUUID={id}-01"));
            assert!(os.contains("ID=debian\n"));
            assert!(text(debugfs_cat(image, root, "/etc/hostname")).trim() == "raspberrypi");
        }
        Kind::UbuntuRaspi => {
            assert_eq!(entry("/")[0], "LABEL=writable");
            assert_eq!(entry("/boot/firmware")[0], "LABEL=system-boot");
            assert!(os.contains("ID=ubuntu\n") && os.contains("VERSION_CODENAME=noble\n"));
            assert!(!fstab
                .iter()
                .any(|f| f.get(2).map(String::as_str) == Some("swap")));
        }
        Kind::UbuntuAmd64 => {
            assert_eq!(entry("/")[0], "LABEL=cloudimg-rootfs");
            assert_eq!(entry("/boot")[0], "LABEL=BOOT");
            assert_eq!(entry("/boot/efi")[0], "LABEL=UEFI");
            assert_eq!(entry("none"), ["/swap.img", "none", "swap", "sw", "0", "0"]);
            let swap = debugfs_inode(image, root, "/swap.img");
            assert_eq!((swap.mode, swap.uid), (0o600, 0));
            assert!(os.contains("ID=ubuntu\n") && os.contains("VERSION_ID=\"24.04\"\n"));
        }
    }
    if matches!(kind, Kind::RaspiosBookworm | Kind::RaspiosTrixie) {
        // pi-gen's first user and what `rename-user -f -s` leaves (see mkfixture).
        let passwd = text(debugfs_cat(image, root, "/etc/passwd"));
        assert!(
            passwd.contains("pi:x:1000:1000:,,,:/home/pi:/bin/bash\n"),
            "{passwd}"
        );
        for f in ["/etc/subuid", "/etc/subgid"] {
            assert_eq!(
                text(debugfs_cat(image, root, f)),
                "pi:100000:65536\n",
                "{f}"
            );
        }
        let sudoers = debugfs_inode(image, root, "/etc/sudoers.d/010_pi-nopasswd");
        assert_eq!(sudoers.mode, 0o440);
        debugfs_inode(image, root, "/home/pi/.bashrc");
        assert!(
            !debugfs_ls(image, root, "/etc/systemd/system/getty.target.wants")
                .iter()
                .any(|e| e.name == "getty@tty1.service"),
            "{kind}: rename-user disables getty@tty1"
        );
        debugfs_inode(
            image,
            root,
            "/etc/systemd/system/multi-user.target.wants/userconfig.service",
        );
        debugfs_inode(image, root, "/etc/ssh/sshd_config.d/rename_user.conf");
    }
    if matches!(kind, Kind::UbuntuRaspi | Kind::UbuntuAmd64) {
        // Socket-activated sshd, as Ubuntu has it since 22.10.
        let want = debugfs_inode(
            image,
            root,
            "/etc/systemd/system/sockets.target.wants/ssh.socket",
        );
        assert_eq!(
            want.link_target.as_deref(),
            Some("/usr/lib/systemd/system/ssh.socket")
        );
    }
    match kind {
        Kind::RaspiosBookworm => {
            assert!(os.contains("VERSION_CODENAME=bookworm\n"));
            assert!(machine_id.is_empty(), "bookworm ships an empty machine-id");
            let conf = text(debugfs_cat(image, root, "/etc/dphys-swapfile"));
            assert!(conf.lines().any(|l| l == "CONF_SWAPSIZE=512"));
            let want = debugfs_inode(
                image,
                root,
                "/etc/systemd/system/multi-user.target.wants/dphys-swapfile.service",
            );
            assert_eq!(
                want.link_target.as_deref(),
                Some("/lib/systemd/system/dphys-swapfile.service")
            );
            debugfs_inode(
                image,
                root,
                "/usr/lib/systemd/system/dphys-swapfile.service",
            );
            debugfs_inode(image, root, "/usr/lib/raspberrypi-sys-mods/firstboot");
        }
        Kind::RaspiosTrixie => {
            assert!(os.contains("VERSION_CODENAME=trixie\n"));
            assert_eq!(machine_id, b"uninitialized\n");
            let conf = text(debugfs_cat(image, root, "/etc/rpi/swap.conf"));
            assert!(conf.lines().any(|l| l == "[Main]"));
            assert!(!debugfs_ls(image, root, "/etc/rpi")
                .iter()
                .any(|e| e.name == "swap.conf.d"));
            assert!(!debugfs_ls(image, root, "/etc")
                .iter()
                .any(|e| e.name == "dphys-swapfile"));
            debugfs_inode(image, root, "/etc/cloud/cloud.cfg");
        }
        Kind::UbuntuRaspi | Kind::UbuntuAmd64 => {
            assert!(machine_id.is_empty());
            debugfs_inode(image, root, "/etc/cloud/cloud.cfg");
        }
    }
    for key in ["ed25519", "rsa", "ecdsa"] {
        let private = debugfs_inode(image, root, &format!("/etc/ssh/ssh_host_{key}_key"));
        assert_eq!(private.mode, 0o600, "{kind}: {key} host key mode");
    }
    assert!(text(debugfs_cat(image, root, "/etc/ssh/sshd_config")).contains("Include"));
    // /lib is merged into /usr, as in both distributions.
    assert_eq!(
        debugfs_inode(image, root, "/lib").link_target.as_deref(),
        Some("usr/lib")
    );
    debugfs_inode(image, root, "/usr/lib/systemd/system/ssh.service");
    debugfs_inode(image, root, "/usr/local/bin");
}

fn check_elf(kind: Kind, image: &Path, root: u64) {
    let elf = debugfs_cat(image, root, "/usr/bin/dash");
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(elf[4], 2, "ELFCLASS64");
    assert_eq!(elf[5], 1, "little endian");
    let machine = u16::from_le_bytes([elf[18], elf[19]]);
    let want = if kind == Kind::UbuntuAmd64 { 62 } else { 183 };
    assert_eq!(machine, want, "{kind}: e_machine");
    assert_eq!(
        debugfs_inode(image, root, "/usr/bin/sh")
            .link_target
            .as_deref(),
        Some("dash")
    );
}

fn check_indexed(kind: Kind, image: &Path, root: u64) {
    for dir in ["/etc", "/usr/bin"] {
        let inode = debugfs_inode(image, root, dir);
        assert!(
            inode.is_indexed(),
            "{kind}: {dir} is not htree-indexed: {inode:?}"
        );
        assert!(
            debugfs_ls(image, root, dir).len() > 300,
            "{kind}: {dir} is small"
        );
    }
}

/// Walks the whole tree: every inode is owned by root:root, except Raspberry Pi OS's first
/// user's home, owned by `pi` (uid 1000) as pi-gen's `adduser` leaves it.
fn check_owned_by_root(kind: Kind, image: &Path, start: u64) {
    let mut dirs = vec!["/".to_string()];
    let mut seen = 0;
    let raspios = matches!(kind, Kind::RaspiosBookworm | Kind::RaspiosTrixie);
    while let Some(dir) = dirs.pop() {
        for e in debugfs_ls(image, start, &dir) {
            let path = format!("{}/{}", dir.trim_end_matches('/'), e.name);
            let owner = if raspios && (path == "/home/pi" || path.starts_with("/home/pi/")) {
                (1000, 1000)
            } else {
                (0, 0)
            };
            assert_eq!(
                (e.uid, e.gid),
                owner,
                "{kind}: {path} is not owned by {owner:?}"
            );
            seen += 1;
            if e.is_dir() {
                dirs.push(path);
            }
        }
    }
    assert!(seen > 600, "{kind}: only {seen} entries walked");
}

fn check_kind(kind: Kind) {
    let image = fixture(kind);
    check_all(&image);
    check_layout(kind, &image);
    let parts = table(&image).partitions;
    let (boot, root) = boot_and_root(kind);
    let boot = part(&parts, boot).clone();
    let root = part(&parts, root).start;
    check_boot_files(kind, &image, &boot);
    check_root_files(kind, &image, root);
    check_elf(kind, &image, root);
    check_indexed(kind, &image, root);
    check_owned_by_root(kind, &image, root);
    if kind == Kind::UbuntuAmd64 {
        let boot_fs = part(&parts, 16).start;
        check_owned_by_root_shallow(&image, boot_fs);
        let vmlinuz = debugfs_inode(&image, boot_fs, "/vmlinuz");
        assert_eq!(
            vmlinuz.link_target.as_deref(),
            Some("vmlinuz-6.8.0-85-generic")
        );
    }
}

fn check_owned_by_root_shallow(image: &Path, start: u64) {
    for e in debugfs_ls(image, start, "/") {
        assert_eq!(
            (e.uid, e.gid),
            (0, 0),
            "/boot/{} is not owned by root",
            e.name
        );
    }
}

#[test]
fn raspios_bookworm_looks_like_the_real_image() {
    check_kind(Kind::RaspiosBookworm);
}

#[test]
fn raspios_trixie_looks_like_the_real_image() {
    check_kind(Kind::RaspiosTrixie);
}

#[test]
fn ubuntu_raspi_looks_like_the_real_image() {
    check_kind(Kind::UbuntuRaspi);
}

#[test]
fn ubuntu_amd64_looks_like_the_real_image() {
    check_kind(Kind::UbuntuAmd64);
}

/// A second build of each kind, into a fresh cache directory and asked for by several threads
/// at once, is byte-identical to the cached one and built only once.
#[test]
fn fixtures_are_reproducible_and_built_once_under_concurrency() {
    for kind in Kind::ALL {
        let cached = fixture(kind);
        let dir = tempfile::tempdir().expect("temp dir");
        let paths: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..3)
                .map(|_| s.spawn(|| fixture_in(kind, dir.path())))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        assert!(paths.windows(2).all(|w| w[0] == w[1]), "{paths:?}");
        let images: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read cache dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        assert_eq!(
            images.len(),
            1,
            "{kind}: leftovers in the cache: {images:?}"
        );
        assert_eq!(
            sha256_file(&paths[0]),
            sha256_file(&cached),
            "{kind}: two builds differ"
        );
    }
}

#[test]
fn copy_fixture_is_a_sparse_identical_copy_and_leaves_the_cache_alone() {
    use std::os::unix::fs::MetadataExt;
    let kind = Kind::RaspiosBookworm;
    let cached = fixture(kind);
    let before = sha256_file(&cached);
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = copy_fixture(kind, dir.path());
    assert_ne!(copy, cached);
    assert_eq!(sha256_file(&copy), before);
    let meta = std::fs::metadata(&copy).expect("copy metadata");
    assert!(
        meta.blocks() * 512 < meta.len() / 4,
        "copy is not sparse: {} of {} bytes allocated",
        meta.blocks() * 512,
        meta.len()
    );
    assert_eq!(sha256_file(&cached), before);
}

#[test]
fn piimg_bin_finds_a_runnable_binary() {
    let bin = piimg_e2e::piimg_bin();
    let out = std::process::Command::new(&bin)
        .arg("--help")
        .output()
        .expect("run piimg --help");
    assert!(out.status.success(), "{} --help: {out:?}", bin.display());
}

/// Overwrites `len` bytes at `offset` of `image` with zeros.
fn zero(image: &Path, offset: u64, len: usize) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(image)
        .expect("open copy");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    f.write_all(&vec![0; len]).expect("write zeros");
}

fn check_all_fails(image: &Path) -> String {
    let image = image.to_path_buf();
    let err = std::panic::catch_unwind(move || check_all(&image))
        .expect_err("check_all accepted a damaged image");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// The checkers are real: damage each part of an image and `check_all` must fail.
#[test]
fn check_all_rejects_damaged_images() {
    let kind = Kind::RaspiosBookworm;
    let dir = tempfile::tempdir().expect("temp dir");
    let parts = table(&fixture(kind)).partitions;
    let (boot, root) = (part(&parts, 1).clone(), part(&parts, 2).clone());

    // The root's block group descriptors (block 1 of a 4 KiB-block fs).
    let img = copy_fixture(kind, dir.path());
    zero(&img, root.start + 4096, 4096);
    assert!(check_all_fails(&img).contains("ext4"));

    // The boot partition's first FAT (after its 32 reserved sectors).
    let img = copy_fixture(kind, dir.path());
    zero(&img, boot.start + 32 * 512, 4096);
    assert!(check_all_fails(&img).contains("FAT"));

    // The boot sector itself: the partition type still says FAT.
    let img = copy_fixture(kind, dir.path());
    zero(&img, boot.start, 512);
    assert!(check_all_fails(&img).contains("should hold Fat"));

    // Two partitions overlapping in the table: p1's sector count (MBR entry 1, bytes 12..16)
    // made 1 MiB longer so it runs into p2.
    let img = copy_fixture(kind, dir.path());
    {
        use std::io::{Seek, SeekFrom, Write};
        let longer = u32::try_from(boot.size / 512 + 2048).expect("fits");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&img)
            .expect("open copy");
        f.seek(SeekFrom::Start(446 + 12)).expect("seek");
        f.write_all(&longer.to_le_bytes()).expect("write size");
    }
    assert!(check_all_fails(&img).contains("partition table"));
}
