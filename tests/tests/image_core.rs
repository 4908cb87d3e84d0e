//! The rootless image core on every look-alike base: partition tables, the FAT boot partition
//! and the ext4 root filesystem, each edit checked by the real checkers and read back
//! independently (debugfs, mtools, sfdisk), and the fixture itself left untouched.

use piimg::disk::{self, Layout};
use piimg::fs::ext4::{self, Access, Ext4, FileKind, Meta};
use piimg::fs::fat::BootFs;
use piimg_e2e::{self as e2e, Kind};
use std::io::Read;
use std::path::{Path, PathBuf};

const EPOCH: i64 = 1_700_000_000;

fn meta(mode: u32) -> Meta {
    Meta {
        mode,
        uid: 0,
        gid: 0,
        mtime: EPOCH,
    }
}

/// A working copy of a fixture, plus the fixture's digest to prove it stays untouched.
struct Work {
    _dir: tempfile::TempDir,
    image: PathBuf,
    fixture: PathBuf,
    fixture_sha: String,
}

fn work(kind: Kind) -> Work {
    let fixture = e2e::fixture(kind);
    let fixture_sha = e2e::sha256_file(&fixture);
    let dir = tempfile::tempdir().unwrap();
    let image = e2e::copy_fixture(kind, dir.path());
    Work {
        _dir: dir,
        image,
        fixture,
        fixture_sha,
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert_eq!(
                e2e::sha256_file(&self.fixture),
                self.fixture_sha,
                "the fixture {} changed",
                self.fixture.display()
            );
        }
    }
}

/// The root partition: the ext4 partition with /etc/os-release.
fn root_of(image: &Path) -> disk::Partition {
    let layout = Layout::read(image).unwrap();
    for p in &layout.partitions {
        if let Ok(fs) = Ext4::open(image, p.start, Access::ReadOnly) {
            if fs.lookup("/etc/os-release").unwrap().is_some() {
                return p.clone();
            }
        }
    }
    panic!("no root partition in {}", image.display());
}

/// The FAT partition holding the boot files (the ESP on amd64).
fn boot_of(image: &Path) -> disk::Partition {
    let layout = Layout::read(image).unwrap();
    for p in &layout.partitions {
        let mut view = disk::open_partition(image, p, false).unwrap();
        if let Ok((disk::FsKind::Vfat, _)) = disk::probe(&mut view) {
            return p.clone();
        }
    }
    panic!("no FAT partition in {}", image.display());
}

fn with_root<T>(image: &Path, f: impl FnOnce(&mut Ext4) -> T) -> T {
    let root = root_of(image);
    let mut fs = Ext4::open(image, root.start, Access::ReadWrite).unwrap();
    let out = f(&mut fs);
    fs.close().unwrap();
    out
}

/// sfdisk writes MBR types without a leading zero (`c`), GPT GUIDs in upper case.
fn same_type(id: &str) -> String {
    let id = id.to_ascii_lowercase();
    match id.trim_start_matches('0') {
        "" => "0".into(),
        short if short.len() <= 2 => short.to_string(),
        _ => id,
    }
}

fn for_each_fixture(test: impl Fn(Kind)) {
    for kind in Kind::ALL {
        eprintln!("--- {kind:?}");
        test(kind);
    }
}

#[test]
fn reads_every_partition_like_sfdisk_does() {
    for_each_fixture(|kind| {
        let w = work(kind);
        let layout = Layout::read(&w.image).unwrap();
        let theirs = e2e::partitions(&w.image);
        assert_eq!(layout.partitions.len(), theirs.len());
        for (ours, theirs) in layout.partitions.iter().zip(&theirs) {
            assert_eq!(ours.number, theirs.number);
            assert_eq!(ours.start, theirs.start);
            assert_eq!(ours.size, theirs.size);
            assert_eq!(
                same_type(&ours.type_id),
                same_type(&theirs.type_id),
                "{kind:?} p{}",
                ours.number
            );
            // Every partition reads back exactly its bytes of the image.
            let mut view = disk::open_partition(&w.image, ours, false).unwrap();
            let mut head = vec![0u8; 4096.min(ours.size as usize)];
            view.read_exact(&mut head).unwrap();
            let whole = std::fs::read(&w.image).unwrap();
            assert_eq!(
                &head[..],
                &whole[ours.start as usize..ours.start as usize + head.len()]
            );
        }
        let root = root_of(&w.image);
        let fs = Ext4::open(&w.image, root.start, Access::ReadOnly).unwrap();
        let fstab = fs.read_file("/etc/fstab").unwrap();
        assert_eq!(fstab, e2e::debugfs_cat(&w.image, root.start, "/etc/fstab"));
        let etc = fs.read_dir("/etc").unwrap();
        assert!(
            etc.len() > 100,
            "{kind:?}: /etc has only {} entries",
            etc.len()
        );
        let boot = boot_of(&w.image);
        let view = disk::open_partition(&w.image, &boot, false).unwrap();
        let fat = BootFs::open(view, EPOCH).unwrap();
        if kind != Kind::UbuntuAmd64 {
            let ours = fat.read_file("cmdline.txt").unwrap();
            assert_eq!(ours, e2e::mtype(&w.image, boot.start, "cmdline.txt"));
        }
        e2e::check_all(&w.image);
    });
}

#[test]
fn replaces_cmdline_with_longer_and_shorter_lines() {
    for_each_fixture(|kind| {
        if kind == Kind::UbuntuAmd64 {
            return; // no cmdline.txt: GRUB holds the kernel parameters there
        }
        let w = work(kind);
        let boot = boot_of(&w.image);
        let before = {
            let view = disk::open_partition(&w.image, &boot, false).unwrap();
            BootFs::open(view, EPOCH)
                .unwrap()
                .read_file("cmdline.txt")
                .unwrap()
        };
        let line = String::from_utf8(before).unwrap();
        let longer = format!(
            "{} cgroup_memory=1 cgroup_enable=memory {}\n",
            line.trim(),
            "x=1 ".repeat(300)
        );
        let shorter = "console=tty1 root=LABEL=writable\n".to_string();
        for content in [longer, shorter] {
            {
                let view = disk::open_partition(&w.image, &boot, true).unwrap();
                let mut fat = BootFs::open(view, EPOCH).unwrap();
                fat.write_file("cmdline.txt", content.as_bytes()).unwrap();
                fat.close().unwrap();
            }
            assert_eq!(
                e2e::mtype(&w.image, boot.start, "cmdline.txt"),
                content.as_bytes()
            );
            e2e::check_all(&w.image);
        }
    });
}

#[test]
fn writes_a_large_binary_configs_links_and_modes_into_root() {
    let big: Vec<u8> = (0..70u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for_each_fixture(|kind| {
        let w = work(kind);
        let root = root_of(&w.image);
        with_root(&w.image, |fs| {
            fs.write_file("/usr/local/bin/k3s", &mut &big[..], &meta(0o755))
                .unwrap();
            fs.write_file(
                "/etc/piimg-new.conf",
                &mut &b"hello htree\n"[..],
                &meta(0o644),
            )
            .unwrap();
            fs.mkdir_p("/etc/rancher/k3s", &meta(0o755)).unwrap();
            fs.write_file(
                "/etc/rancher/k3s/config.yaml",
                &mut &b"token: x\n"[..],
                &meta(0o600),
            )
            .unwrap();
            fs.symlink("/usr/local/bin/kubectl", "k3s", &meta(0o777))
                .unwrap();
            fs.unlink("/etc/hostname").unwrap();
            fs.write_file("/etc/chowned", &mut &b"c"[..], &meta(0o644))
                .unwrap();
            fs.chmod("/etc/chowned", 0o640).unwrap();
            fs.chown("/etc/chowned", 1000, 1000).unwrap();
        });
        e2e::check_all(&w.image);
        let s = root.start;
        assert!(
            e2e::debugfs_cat(&w.image, s, "/usr/local/bin/k3s") == big,
            "{kind:?}: k3s differs"
        );
        assert_eq!(
            e2e::debugfs_stat(&w.image, s, "/usr/local/bin/k3s"),
            (0o755, 0, 0, big.len() as u64)
        );
        assert_eq!(
            e2e::debugfs_cat(&w.image, s, "/etc/piimg-new.conf"),
            b"hello htree\n"
        );
        assert_eq!(
            e2e::debugfs_stat(&w.image, s, "/etc/rancher/k3s/config.yaml"),
            (0o600, 0, 0, 9)
        );
        assert_eq!(
            e2e::debugfs_stat(&w.image, s, "/etc/chowned"),
            (0o640, 1000, 1000, 1)
        );
        let fs = Ext4::open(&w.image, s, Access::ReadOnly).unwrap();
        assert_eq!(fs.read_link("/usr/local/bin/kubectl").unwrap(), "k3s");
        assert_eq!(
            fs.stat("/usr/local/bin/kubectl").unwrap().kind,
            FileKind::Symlink
        );
        assert_eq!(fs.lookup("/etc/hostname").unwrap(), None);
        let mut read_back = Vec::new();
        fs.read_file_to("/usr/local/bin/k3s", &mut read_back)
            .unwrap();
        assert!(read_back == big);
    });
}

#[test]
fn grows_the_image_and_root_filesystem_by_a_gibibyte() {
    for_each_fixture(|kind| {
        let w = work(kind);
        let before = Layout::read(&w.image).unwrap();
        let root = root_of(&w.image);
        let free_before = Ext4::open(&w.image, root.start, Access::ReadOnly)
            .unwrap()
            .free_bytes();
        let new_size = before.disk_size + (1 << 30);
        let after = disk::grow(&w.image, new_size, root.number).unwrap();
        let grown = after.partition(root.number).unwrap();
        assert!(
            grown.size >= root.size + (1 << 30) - (2 << 20),
            "{kind:?}: partition grew only to {}",
            grown.size
        );
        ext4::grow_fs(&w.image, grown.start, grown.size).unwrap();
        assert_eq!(after.disk_id, before.disk_id);
        for (a, b) in after.partitions.iter().zip(&before.partitions) {
            assert_eq!(a.partuuid, b.partuuid);
        }
        let free_after = Ext4::open(&w.image, root.start, Access::ReadOnly)
            .unwrap()
            .free_bytes();
        assert!(
            free_after > free_before + (900 << 20),
            "{kind:?}: free {free_before} -> {free_after}"
        );
        let theirs = e2e::partitions(&w.image);
        let t = theirs.iter().find(|p| p.number == root.number).unwrap();
        assert_eq!(t.size, grown.size);
        e2e::check_all(&w.image);
    });
}

#[test]
fn the_same_edits_give_the_same_bytes() {
    let kind = Kind::RaspiosBookworm;
    let fixture = e2e::fixture(kind);
    let digests: Vec<String> = (0..2)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let image = e2e::copy_fixture(kind, dir.path());
            with_root(&image, |fs| {
                fs.mkdir_p("/etc/rancher/k3s", &meta(0o755)).unwrap();
                fs.write_file(
                    "/etc/rancher/k3s/config.yaml",
                    &mut &b"a: b\n"[..],
                    &meta(0o600),
                )
                .unwrap();
            });
            let boot = boot_of(&image);
            let view = disk::open_partition(&image, &boot, true).unwrap();
            let mut fat = BootFs::open(view, EPOCH).unwrap();
            fat.write_file("cmdline.txt", b"console=tty1\n").unwrap();
            fat.close().unwrap();
            e2e::sha256_file(&image)
        })
        .collect();
    assert_eq!(digests[0], digests[1]);
    assert_ne!(digests[0], e2e::sha256_file(&fixture));
}
