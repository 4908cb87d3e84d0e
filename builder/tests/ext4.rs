//! fs::ext4 against real ext4 images made by mkfs.ext4 -d, checked with e2fsck and debugfs.
//!
//! Every image here is a filesystem placed 1 MiB into a larger file, so the offset path is
//! exercised the way a partition is. Big directories are htree-indexed with `e2fsck -fyD`,
//! as in real Raspberry Pi OS / Ubuntu images.

use piimg::fs::ext4::{grow_fs, Access, Ext4, Ext4Error, FileKind, Meta};
use piimg::image::{Device, FileDevice};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const OFFSET: u64 = 1 << 20;
const T: i64 = 1_700_000_000;

fn meta(mode: u32, uid: u32, gid: u32) -> Meta {
    Meta {
        mode,
        uid,
        gid,
        mtime: T,
    }
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn spec(img: &Path) -> String {
    format!("{}?offset={OFFSET}", img.display())
}

/// A staged root tree like a real base's: big /etc and /usr/bin, fast and slow symlinks.
fn stage(dir: &Path) {
    let etc = dir.join("etc");
    fs::create_dir_all(etc.join("ssh")).unwrap();
    fs::create_dir_all(dir.join("usr/bin")).unwrap();
    fs::create_dir_all(dir.join("usr/local/bin")).unwrap();
    fs::create_dir_all(dir.join("usr/lib/systemd/system")).unwrap();
    fs::create_dir_all(dir.join("usr/share/zoneinfo/Etc")).unwrap();
    fs::write(etc.join("hostname"), "raspberrypi\n").unwrap();
    fs::write(etc.join("os-release"), "ID=debian\nVERSION_ID=\"12\"\n").unwrap();
    fs::write(dir.join("usr/share/zoneinfo/Etc/UTC"), "TZif2").unwrap();
    for i in 0..400 {
        fs::write(
            etc.join(format!("filler-config-file-{i:04}.conf")),
            format!("# filler {i}\n"),
        )
        .unwrap();
    }
    for i in 0..300 {
        fs::write(
            dir.join(format!("usr/bin/tool-{i:04}")),
            format!("#!/bin/sh\necho {i}\n"),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink("/usr/share/zoneinfo/Etc/UTC", etc.join("localtime")).unwrap();
    let long = format!(
        "/usr/share/{}/target",
        "a-very-long-directory-name".repeat(4)
    );
    std::os::unix::fs::symlink(long, etc.join("slowlink")).unwrap();
    std::os::unix::fs::symlink("usr/lib", dir.join("lib")).unwrap();
}

/// Makes `disk.img` = 1 MiB header + an ext4 of `size_mib` from a staged tree, with extra
/// mkfs options; directories indexed by e2fsck -fyD.
fn make_image(tmp: &Path, size_mib: u64, mkfs_opts: &[&str]) -> PathBuf {
    let stage_dir = tmp.join("stage");
    if !stage_dir.exists() {
        stage(&stage_dir);
    }
    let fsimg = tmp.join("fs.img");
    let _ = fs::remove_file(&fsimg);
    // fakeroot: staged files count as root-owned even when the tests run as a normal user.
    run(Command::new("fakeroot")
        .arg("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-L",
            "rootfs",
            "-b",
            "4096",
            "-E",
            "root_owner=0:0",
        ])
        .args(mkfs_opts)
        .arg("-d")
        .arg(&stage_dir)
        .arg(&fsimg)
        .arg(format!("{size_mib}M"))
        .env("E2FSPROGS_FAKE_TIME", T.to_string()));
    let fsck = Command::new("e2fsck")
        .arg("-fyD")
        .arg(&fsimg)
        .output()
        .unwrap();
    assert!(
        fsck.status.code().unwrap_or(8) < 4,
        "e2fsck -fyD failed: {fsck:?}"
    );
    let disk = tmp.join("disk.img");
    let mut bytes = vec![0u8; OFFSET as usize];
    bytes.extend(fs::read(&fsimg).unwrap());
    bytes.extend(vec![0u8; OFFSET as usize]);
    fs::write(&disk, bytes).unwrap();
    disk
}

fn base(size_mib: u64) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let img = make_image(tmp.path(), size_mib, &[]);
    (tmp, img)
}

fn fsck_clean(img: &Path) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(spec(img))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "e2fsck -fn not clean:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn debugfs(img: &Path, request: &str) -> Vec<u8> {
    run(Command::new("debugfs")
        .arg("-R")
        .arg(request)
        .arg(spec(img)))
    .stdout
}

/// (mode bits as octal string, uid, gid, size, type) from `debugfs stat`.
#[derive(Debug, PartialEq)]
struct DStat {
    kind: String,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
}

fn dstat(img: &Path, path: &str) -> Option<DStat> {
    let out = String::from_utf8_lossy(&debugfs(img, &format!("stat {path}"))).into_owned();
    let words: Vec<&str> = out.split_whitespace().collect();
    let after = |key: &str| words.iter().position(|w| *w == key).map(|i| words[i + 1]);
    let kind = after("Type:")?.to_string();
    Some(DStat {
        kind,
        mode: u32::from_str_radix(after("Mode:")?, 8).ok()?,
        uid: after("User:")?.parse().ok()?,
        gid: after("Group:")?.parse().ok()?,
        size: after("Size:")?.parse().ok()?,
    })
}

fn assert_file(img: &Path, path: &str, content: &[u8], mode: u32, uid: u32, gid: u32) {
    let st = dstat(img, path).unwrap_or_else(|| panic!("debugfs cannot stat {path}"));
    assert_eq!(
        st,
        DStat {
            kind: "regular".into(),
            mode,
            uid,
            gid,
            size: content.len() as u64
        },
        "{path}"
    );
    assert_eq!(
        debugfs(img, &format!("cat {path}")),
        content,
        "debugfs cat {path}"
    );
}

fn rw(img: &Path) -> Ext4 {
    Ext4::open(img, OFFSET, Access::ReadWrite).unwrap()
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    Command::new("cmp")
        .arg("-s")
        .arg(a)
        .arg(b)
        .status()
        .unwrap()
        .success()
}

/// Deterministic pseudo-random bytes, streamed (never all in memory).
struct Noise {
    left: u64,
    state: u64,
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left as usize) / 8 * 8;
        let n = if n == 0 {
            buf.len().min(self.left as usize)
        } else {
            n
        };
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            chunk.copy_from_slice(&self.state.to_le_bytes()[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[test]
fn reads_files_dirs_and_links() {
    let (_tmp, img) = base(64);
    let fs = Ext4::open(&img, OFFSET, Access::ReadOnly).unwrap();
    assert_eq!(fs.label(), "rootfs");
    assert_eq!(fs.block_size(), 4096);
    assert!(fs.free_bytes() > 0);
    assert_eq!(fs.read_file("/etc/hostname").unwrap(), b"raspberrypi\n");
    let st = fs.stat("/etc/hostname").unwrap();
    assert_eq!(
        (st.kind, st.mode & 0o7777, st.uid, st.gid, st.size),
        (FileKind::File, 0o644, 0, 0, 12)
    );
    let etc = fs.read_dir("/etc").unwrap();
    assert_eq!(
        etc.iter().filter(|e| e.name.starts_with("filler-")).count(),
        400
    );
    assert!(etc
        .iter()
        .any(|e| e.name == "ssh" && e.kind == FileKind::Dir));
    assert!(etc.iter().all(|e| e.name != "." && e.name != ".."));
    assert_eq!(
        fs.read_link("/etc/localtime").unwrap(),
        "/usr/share/zoneinfo/Etc/UTC"
    );
    let long = fs.read_link("/etc/slowlink").unwrap();
    assert!(long.len() > 60 && long.ends_with("/target"));
    assert_eq!(fs.stat("/etc/localtime").unwrap().kind, FileKind::Symlink);
    // Parent symlinks are followed inside the image, the final one is not.
    assert_eq!(fs.stat("/lib").unwrap().kind, FileKind::Symlink);
    assert!(fs.lookup("/lib/systemd/system").unwrap().is_some());
    assert_eq!(fs.lookup("/etc/nope").unwrap(), None);
    assert!(matches!(
        fs.read_file("/etc/nope"),
        Err(Ext4Error::NotFound { .. })
    ));
    assert!(matches!(
        fs.read_file("/etc"),
        Err(Ext4Error::WrongKind { .. })
    ));
    assert!(matches!(
        fs.read_file("etc/hostname"),
        Err(Ext4Error::InvalidPath { .. })
    ));
    let mut sink = Vec::new();
    assert_eq!(
        fs.read_file_to("/etc/os-release", &mut sink).unwrap(),
        sink.len() as u64
    );
    fs.close().unwrap();
}

/// Issue 15.9: one inode with a bad checksum (`/etc/ssh` filled with garbage) must not change
/// what other files read as. libext2fs reads an inode into a slot of its inode cache before
/// checking it and leaves that slot labelled with the inode it held (the root directory here),
/// so before piimg dropped the cache on errors, every later lookup from `/` failed or read
/// garbage: `/usr` was "not found" and `/etc/fstab`'s failure was taken for a missing file.
#[test]
fn a_garbage_inode_does_not_change_what_other_files_read_as() {
    use std::io::{Seek, SeekFrom, Write};
    let (_tmp, img) = base(64);
    let imap = String::from_utf8_lossy(&debugfs(&img, "imap /etc/ssh")).into_owned();
    let (block, offset) = imap
        .split("located at block ")
        .nth(1)
        .and_then(|r| r.split_once(", offset 0x"))
        .map(|(b, o)| {
            let o = o.split_whitespace().next().unwrap_or("");
            (
                b.trim().parse::<u64>().unwrap(),
                u64::from_str_radix(o, 16).unwrap(),
            )
        })
        .unwrap_or_else(|| panic!("imap: {imap}"));
    let mut f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.seek(SeekFrom::Start(OFFSET + block * 4096 + offset))
        .unwrap();
    f.write_all(&[0xA5; 256]).unwrap();
    drop(f);

    let fs = Ext4::open(&img, OFFSET, Access::ReadOnly).unwrap();
    // Fill libext2fs' four cache slots so that the root directory's is the next to reuse:
    // root, /usr, /usr/bin, then /etc.
    assert_eq!(fs.stat("/usr/bin").unwrap().kind, FileKind::Dir);
    assert_eq!(fs.stat("/etc").unwrap().kind, FileKind::Dir);
    for _ in 0..3 {
        assert!(
            fs.lookup("/etc/ssh/sshd_config").is_err(),
            "a garbage directory was read as a directory (or as missing)"
        );
        assert_eq!(fs.stat("/usr").unwrap().kind, FileKind::Dir);
        assert!(fs.lookup("/usr/bin").unwrap().is_some());
        assert_eq!(fs.read_file("/etc/hostname").unwrap(), b"raspberrypi\n");
        assert!(fs.stat("/etc/ssh").is_err());
    }
    assert_eq!(fs.stat("/").unwrap().kind, FileKind::Dir);
}

#[test]
fn read_only_refuses_writes_and_leaves_image_untouched() {
    let (_tmp, img) = base(32);
    let before = img.with_file_name("before.img");
    fs::copy(&img, &before).unwrap();
    let mut fs = Ext4::open(&img, OFFSET, Access::ReadOnly).unwrap();
    let err = fs
        .write_file("/etc/x", &mut &b"x"[..], &meta(0o644, 0, 0))
        .unwrap_err();
    assert!(matches!(err, Ext4Error::ReadOnly { .. }), "{err}");
    fs.read_dir("/usr/bin").unwrap();
    drop(fs);
    assert!(
        same_bytes(&img, &before),
        "a read-only open changed the image"
    );
}

#[test]
fn new_files_in_htree_etc() {
    let (_tmp, img) = base(64);
    assert!(
        String::from_utf8_lossy(&debugfs(&img, "htree_dump /etc")).contains("Root node dump"),
        "fixture /etc should be htree-indexed"
    );
    let mut fs = rw(&img);
    // Enough long names to split leaves of the index.
    for i in 0..300 {
        let body = format!("new {i}\n");
        let name = format!("/etc/added-by-piimg-with-a-rather-long-name-{i:04}.conf");
        fs.write_file(&name, &mut body.as_bytes(), &meta(0o644, 0, 0))
            .unwrap();
    }
    fs.close().unwrap();
    fsck_clean(&img);
    assert!(
        String::from_utf8_lossy(&debugfs(&img, "htree_dump /etc")).contains("Root node dump"),
        "/etc lost its htree index"
    );
    assert_file(
        &img,
        "/etc/added-by-piimg-with-a-rather-long-name-0000.conf",
        b"new 0\n",
        0o644,
        0,
        0,
    );
    assert_file(
        &img,
        "/etc/added-by-piimg-with-a-rather-long-name-0299.conf",
        b"new 299\n",
        0o644,
        0,
        0,
    );
    let fs = Ext4::open(&img, OFFSET, Access::ReadOnly).unwrap();
    assert_eq!(fs.read_dir("/etc").unwrap().len(), 400 + 300 + 5);
    assert_eq!(
        fs.read_file("/etc/filler-config-file-0123.conf").unwrap(),
        b"# filler 123\n"
    );
}

#[test]
fn replace_longer_then_shorter() {
    let (_tmp, img) = base(64);
    let long: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let mut fs = rw(&img);
    fs.write_file("/etc/hostname", &mut &long[..], &meta(0o640, 0, 4))
        .unwrap();
    fs.close().unwrap();
    fsck_clean(&img);
    assert_file(&img, "/etc/hostname", &long, 0o640, 0, 4);

    let mut fs = rw(&img);
    fs.write_file("/etc/hostname", &mut &b"w2\n"[..], &meta(0o644, 0, 0))
        .unwrap();
    assert_eq!(fs.read_file("/etc/hostname").unwrap(), b"w2\n");
    fs.close().unwrap();
    fsck_clean(&img);
    assert_file(&img, "/etc/hostname", b"w2\n", 0o644, 0, 0);

    // The block after the data holds zeros, not bytes of whatever used the block before.
    let blocks = String::from_utf8_lossy(&debugfs(&img, "blocks /etc/hostname")).into_owned();
    let block: u64 = blocks.trim().parse().expect("one block");
    let mut bytes = vec![0u8; 4096];
    std::os::unix::fs::FileExt::read_exact_at(
        &fs::File::open(&img).unwrap(),
        &mut bytes,
        OFFSET + block * 4096,
    )
    .unwrap();
    assert_eq!(&bytes[..3], b"w2\n");
    assert!(bytes[3..].iter().all(|&b| b == 0), "stale bytes after EOF");
}

#[test]
fn big_file_to_usr_local_bin_and_unlink_frees_it() {
    let (_tmp, img) = base(200);
    const SIZE: u64 = 70 << 20;
    let mut fs = rw(&img);
    let free_before = fs.free_bytes();
    let started = std::time::Instant::now();
    fs.write_file(
        "/usr/local/bin/k3s",
        &mut Noise {
            left: SIZE,
            state: 7,
        },
        &meta(0o755, 0, 0),
    )
    .unwrap();
    eprintln!("wrote 70 MiB in {:?}", started.elapsed());
    assert!(free_before - fs.free_bytes() >= SIZE);
    fs.close().unwrap();
    fsck_clean(&img);

    let expected = img.with_file_name("k3s.expected");
    std::io::copy(
        &mut Noise {
            left: SIZE,
            state: 7,
        },
        &mut fs::File::create(&expected).unwrap(),
    )
    .unwrap();
    let st = dstat(&img, "/usr/local/bin/k3s").unwrap();
    assert_eq!((st.mode, st.uid, st.size), (0o755, 0, SIZE));
    let dumped = img.with_file_name("k3s.out");
    debugfs(
        &img,
        &format!("dump /usr/local/bin/k3s {}", dumped.display()),
    );
    assert!(
        same_bytes(&dumped, &expected),
        "debugfs dump differs from what was written"
    );
    let fs = Ext4::open(&img, OFFSET, Access::ReadOnly).unwrap();
    let ours = img.with_file_name("k3s.ours");
    let mut out = std::io::BufWriter::new(fs::File::create(&ours).unwrap());
    assert_eq!(
        fs.read_file_to("/usr/local/bin/k3s", &mut out).unwrap(),
        SIZE
    );
    drop(out);
    assert!(
        same_bytes(&ours, &expected),
        "read_file_to differs from what was written"
    );
    drop(fs);

    let mut fs = rw(&img);
    fs.unlink("/usr/local/bin/k3s").unwrap();
    assert_eq!(fs.free_bytes(), free_before);
    fs.close().unwrap();
    fsck_clean(&img);
    assert!(dstat(&img, "/usr/local/bin/k3s").is_none());
}

#[test]
fn secret_file_in_new_nested_dirs() {
    let (_tmp, img) = base(64);
    let mut fs = rw(&img);
    fs.mkdir_p("/etc/rancher/k3s", &meta(0o755, 0, 0)).unwrap();
    fs.mkdir_p("/etc/rancher/k3s", &meta(0o700, 5, 5)).unwrap(); // existing: untouched
    fs.mkdir_p("/lib/systemd/system", &meta(0o700, 5, 5))
        .unwrap(); // through a symlink
    fs.write_file(
        "/etc/rancher/k3s/config.yaml",
        &mut &b"token: s3cret\n"[..],
        &meta(0o600, 0, 0),
    )
    .unwrap();
    fs.close().unwrap();
    fsck_clean(&img);
    assert_file(
        &img,
        "/etc/rancher/k3s/config.yaml",
        b"token: s3cret\n",
        0o600,
        0,
        0,
    );
    for dir in ["/etc/rancher", "/etc/rancher/k3s"] {
        let st = dstat(&img, dir).unwrap();
        assert_eq!(
            (st.kind.as_str(), st.mode, st.uid, st.gid),
            ("directory", 0o755, 0, 0),
            "{dir}"
        );
    }
    assert_eq!(dstat(&img, "/lib").unwrap().kind, "symlink");
    let fs = Ext4::open(&img, OFFSET, Access::ReadOnly).unwrap();
    assert_eq!(fs.stat("/etc/rancher/k3s/config.yaml").unwrap().mtime, T);
    assert_eq!(fs.stat("/etc/rancher").unwrap().mtime, T);
}

#[test]
fn symlinks_create_and_replace() {
    let (_tmp, img) = base(64);
    let long = format!("/opt/{}", "x".repeat(200));
    let mut fs = rw(&img);
    fs.symlink(
        "/etc/localtime",
        "/usr/share/zoneinfo/Europe/Berlin",
        &meta(0o777, 0, 0),
    )
    .unwrap();
    fs.symlink("/etc/new-link", &long, &meta(0o777, 1000, 1000))
        .unwrap();
    fs.symlink("/etc/hostname", "hostname.real", &meta(0o777, 0, 0))
        .unwrap(); // replaces a file
    assert_eq!(fs.read_link("/etc/new-link").unwrap(), long);
    fs.close().unwrap();
    fsck_clean(&img);
    let fast = String::from_utf8_lossy(&debugfs(&img, "stat /etc/localtime")).into_owned();
    assert!(
        fast.contains("Fast link dest: \"/usr/share/zoneinfo/Europe/Berlin\""),
        "{fast}"
    );
    let slow = dstat(&img, "/etc/new-link").unwrap();
    assert_eq!(
        (slow.kind.as_str(), slow.uid, slow.size),
        ("symlink", 1000, long.len() as u64)
    );
    assert_eq!(debugfs(&img, "cat /etc/new-link"), long.as_bytes());
    assert_eq!(dstat(&img, "/etc/hostname").unwrap().kind, "symlink");
}

#[test]
fn unlink_chmod_chown() {
    let (_tmp, img) = base(64);
    let mut fs = rw(&img);
    fs.unlink("/etc/filler-config-file-0007.conf").unwrap();
    fs.unlink("/etc/localtime").unwrap();
    fs.unlink("/etc/slowlink").unwrap();
    fs.unlink("/etc/does-not-exist").unwrap();
    fs.unlink("/nowhere/at/all").unwrap();
    assert!(matches!(
        fs.unlink("/etc/ssh"),
        Err(Ext4Error::WrongKind { .. })
    ));
    fs.chmod("/etc/os-release", 0o4711).unwrap();
    fs.chown("/etc/os-release", 1234, 70000).unwrap();
    fs.chmod("/etc/ssh", 0o700).unwrap();
    fs.close().unwrap();
    fsck_clean(&img);
    for gone in [
        "/etc/filler-config-file-0007.conf",
        "/etc/localtime",
        "/etc/slowlink",
    ] {
        assert!(dstat(&img, gone).is_none(), "{gone} still there");
    }
    assert_file(
        &img,
        "/etc/os-release",
        b"ID=debian\nVERSION_ID=\"12\"\n",
        0o4711,
        1234,
        70000,
    );
    assert_eq!(dstat(&img, "/etc/ssh").unwrap().mode, 0o700);
    let fs = Ext4::open(&img, OFFSET, Access::ReadOnly).unwrap();
    let st = fs.stat("/etc/os-release").unwrap();
    assert_eq!((st.mode, st.uid, st.gid), (0o104711, 1234, 70000));
}

fn edit_sequence(img: &Path) {
    edits(rw(img));
}

/// The edits of `edit_sequence`, on a filesystem opened either way.
fn edits(mut fs: Ext4) {
    fs.mkdir_p("/etc/rancher/k3s", &meta(0o755, 0, 0)).unwrap();
    fs.write_file(
        "/etc/rancher/k3s/config.yaml",
        &mut &b"a: b\n"[..],
        &meta(0o600, 0, 0),
    )
    .unwrap();
    fs.write_file(
        "/usr/local/bin/k3s",
        &mut Noise {
            left: 5 << 20,
            state: 3,
        },
        &meta(0o755, 0, 0),
    )
    .unwrap();
    fs.write_file("/etc/hostname", &mut &b"worker-1\n"[..], &meta(0o644, 0, 0))
        .unwrap();
    fs.symlink(
        "/etc/localtime",
        "/usr/share/zoneinfo/Etc/UTC",
        &meta(0o777, 0, 0),
    )
    .unwrap();
    fs.unlink("/etc/filler-config-file-0001.conf").unwrap();
    fs.chmod("/etc/os-release", 0o600).unwrap();
    fs.close().unwrap();
}

#[test]
fn same_edits_give_identical_images() {
    let (tmp, img) = base(64);
    let copy = tmp.path().join("copy.img");
    fs::copy(&img, &copy).unwrap();
    edit_sequence(&img);
    std::thread::sleep(std::time::Duration::from_millis(1100)); // a clock read would differ
    edit_sequence(&copy);
    fsck_clean(&img);
    assert!(
        same_bytes(&img, &copy),
        "same edits on identical copies differ"
    );
    let st = dstat(&img, "/etc/hostname").unwrap();
    assert_eq!(st.size, 9);
}

#[test]
fn refuses_unsupported_features() {
    let tmp = tempfile::tempdir().unwrap();
    let img = make_image(tmp.path(), 32, &["-O", "inline_data"]);
    let err = Ext4::open(&img, OFFSET, Access::ReadOnly).unwrap_err();
    assert!(
        matches!(&err, Ext4Error::UnsupportedFeatures { features, .. } if features == &["inline_data"]),
        "{err}"
    );
    assert!(
        err.to_string().contains("inline_data") && err.to_string().contains("disk.img"),
        "{err}"
    );
}

#[test]
fn refuses_unclean_filesystem() {
    let (_tmp, img) = base(32);
    run(Command::new("debugfs")
        .args(["-w", "-R", "ssv state 3"])
        .arg(spec(&img)));
    let err = Ext4::open(&img, OFFSET, Access::ReadWrite).unwrap_err();
    assert!(matches!(err, Ext4Error::NotClean { .. }), "{err}");
    assert!(err.to_string().contains("e2fsck"), "{err}");

    let (_tmp, img) = base(32);
    run(Command::new("debugfs")
        .args(["-w", "-R", "feature needs_recovery"])
        .arg(spec(&img)));
    let err = Ext4::open(&img, OFFSET, Access::ReadOnly).unwrap_err();
    assert!(matches!(err, Ext4Error::NotClean { .. }), "{err}");
    assert!(err.to_string().contains("journal needs recovery"), "{err}");
}

#[test]
fn corrupt_inputs_are_errors() {
    let (tmp, img) = base(32);
    let zeroed = tmp.path().join("zeroed.img");
    let mut bytes = fs::read(&img).unwrap();
    bytes[OFFSET as usize + 1024..OFFSET as usize + 2048].fill(0);
    fs::write(&zeroed, &bytes).unwrap();
    let err = Ext4::open(&zeroed, OFFSET, Access::ReadOnly).unwrap_err();
    assert!(
        matches!(err, Ext4Error::Open { .. }) && err.to_string().contains("zeroed.img"),
        "{err}"
    );

    let truncated = tmp.path().join("truncated.img");
    fs::write(&truncated, &bytes[..0]).unwrap();
    fs::write(
        &truncated,
        &fs::read(&img).unwrap()[..(OFFSET as usize + (3 << 20))],
    )
    .unwrap();
    let err = Ext4::open(&truncated, OFFSET, Access::ReadOnly).unwrap_err();
    assert!(matches!(err, Ext4Error::Open { .. }), "{err}");

    let garbage = tmp.path().join("garbage.img");
    fs::write(&garbage, vec![0xa5u8; 4 << 20]).unwrap();
    assert!(matches!(
        Ext4::open(&garbage, OFFSET, Access::ReadOnly),
        Err(Ext4Error::Open { .. })
    ));
    assert!(matches!(
        Ext4::open(&img, 1 << 40, Access::ReadOnly),
        Err(Ext4Error::Open { .. })
    ));
    assert!(matches!(
        Ext4::open(&tmp.path().join("missing.img"), 0, Access::ReadOnly),
        Err(Ext4Error::Open { .. })
    ));
}

#[test]
fn full_filesystem_gives_no_space_and_stays_clean() {
    let (_tmp, img) = base(16);
    let mut fs = rw(&img);
    let free = fs.free_bytes();
    let err = fs
        .write_file(
            "/usr/local/bin/k3s",
            &mut Noise {
                left: 64 << 20,
                state: 1,
            },
            &meta(0o755, 0, 0),
        )
        .unwrap_err();
    match &err {
        Ext4Error::NoSpace {
            needed,
            free: now_free,
            ..
        } => {
            assert_eq!(*needed, 64 << 20);
            assert_eq!(*now_free, free);
        }
        other => panic!("expected NoSpace, got {other}"),
    }
    assert_eq!(fs.lookup("/usr/local/bin/k3s").unwrap(), None);
    fs.close().unwrap();
    fsck_clean(&img);
}

#[test]
fn grow_by_one_gib() {
    let (tmp, img) = base(64);
    let free_before = Ext4::open(&img, OFFSET, Access::ReadOnly)
        .unwrap()
        .free_bytes();
    let new_fs_size = (64 << 20) + (1 << 30);
    // The image grows by 1 GiB; a trailer after the partition (like a GPT backup) must survive.
    let old_len = fs::metadata(&img).unwrap().len();
    let file = fs::OpenOptions::new().write(true).open(&img).unwrap();
    file.set_len(old_len + (1 << 30)).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"TRAILER!", OFFSET + new_fs_size).unwrap();
    drop(file);
    let copy = tmp.path().join("copy.img");
    fs::copy(&img, &copy).unwrap();

    grow_fs(&img, OFFSET, new_fs_size).unwrap();
    fsck_clean(&img);
    assert_eq!(fs::metadata(&img).unwrap().len(), old_len + (1 << 30));
    let mut tail = [0u8; 8];
    std::os::unix::fs::FileExt::read_exact_at(
        &fs::File::open(&img).unwrap(),
        &mut tail,
        OFFSET + new_fs_size,
    )
    .unwrap();
    assert_eq!(&tail, b"TRAILER!");
    let fs = Ext4::open(&img, OFFSET, Access::ReadOnly).unwrap();
    assert!(
        fs.free_bytes() > free_before + (900 << 20),
        "free space did not grow: {free_before} -> {}",
        fs.free_bytes()
    );
    assert_eq!(fs.read_file("/etc/hostname").unwrap(), b"raspberrypi\n");
    drop(fs);

    std::thread::sleep(std::time::Duration::from_millis(1100));
    grow_fs(&copy, OFFSET, new_fs_size).unwrap();
    run(Command::new("cmp").arg(&img).arg(&copy));

    let err = grow_fs(&img, OFFSET, new_fs_size + (1 << 30)).unwrap_err();
    assert!(matches!(err, Ext4Error::Grow { .. }), "{err}");
    let err = grow_fs(&img, OFFSET, new_fs_size + 4096).unwrap_err();
    assert!(err.to_string().contains("at least"), "{err}");
}

fn file_device(img: &Path, writable: bool) -> Arc<dyn Device> {
    Arc::new(FileDevice::open(img, writable).unwrap())
}

#[test]
fn path_and_overlay_edits_give_identical_images() {
    let (tmp, img) = base(64);
    let before = fs::read(&img).unwrap();
    let by_path = tmp.path().join("by-path.img");
    fs::copy(&img, &by_path).unwrap();
    edits(rw(&by_path));

    // The same edits in a copy-on-write overlay over the untouched image, written out.
    let overlay = Arc::new(
        piimg::image::Overlay::create(&img, &tmp.path().join("delta"), Path::new("node.img"))
            .unwrap(),
    );
    let device: Arc<dyn Device> = overlay.clone();
    edits(Ext4::open_device(device.clone(), OFFSET, Access::ReadWrite).unwrap());
    drop(device);
    assert_eq!(
        Arc::strong_count(&overlay),
        1,
        "the closed filesystem still holds the device"
    );
    let by_device = tmp.path().join("by-overlay.img");
    overlay.materialize(&by_device).unwrap();
    assert!(
        fs::read(&img).unwrap() == before,
        "the overlay wrote its base"
    );

    fsck_clean(&by_path);
    fsck_clean(&by_device);
    assert!(
        same_bytes(&by_path, &by_device),
        "the same edits in the file and in the overlay differ"
    );

    // What went in through the device reads back through the path, and vice versa.
    let mut expected = Vec::new();
    Noise {
        left: 5 << 20,
        state: 3,
    }
    .read_to_end(&mut expected)
    .unwrap();
    let fs = Ext4::open(&by_device, OFFSET, Access::ReadOnly).unwrap();
    assert!(fs.read_file("/usr/local/bin/k3s").unwrap() == expected);
    assert_eq!(fs.read_file("/etc/hostname").unwrap(), b"worker-1\n");
    assert_eq!(
        fs.read_link("/etc/localtime").unwrap(),
        "/usr/share/zoneinfo/Etc/UTC"
    );
    assert_eq!(
        fs.lookup("/etc/filler-config-file-0001.conf").unwrap(),
        None
    );
    let fs = Ext4::open_device(file_device(&by_path, false), OFFSET, Access::ReadOnly).unwrap();
    assert!(fs.read_file("/usr/local/bin/k3s").unwrap() == expected);
    assert_eq!(fs.label(), "rootfs");
}

/// A device whose writes fail once `budget` bytes have been written (the disk filling up
/// under an overlay, or an I/O error), with or without an errno.
struct FailingDevice {
    inner: FileDevice,
    name: PathBuf,
    budget: AtomicU64,
    errno: Option<i32>,
}

impl Device for FailingDevice {
    fn name(&self) -> &Path {
        &self.name
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        let len = buf.len() as u64;
        let left = self.budget.load(Ordering::SeqCst);
        if len > left {
            self.budget.store(0, Ordering::SeqCst);
            return Err(match self.errno {
                Some(errno) => std::io::Error::from_raw_os_error(errno),
                None => std::io::Error::other("overlay store failed"),
            });
        }
        self.budget.store(left - len, Ordering::SeqCst);
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Opens a fresh copy of `img` through a [`FailingDevice`] and makes a small edit; returns
/// the edit's result, the open filesystem and the device.
fn failing_edit(
    img: &Path,
    copy: &Path,
    budget: u64,
    errno: Option<i32>,
    big: bool,
) -> (Result<(), Ext4Error>, Ext4, Arc<FailingDevice>) {
    fs::copy(img, copy).unwrap();
    let device = Arc::new(FailingDevice {
        inner: FileDevice::open(copy, true).unwrap(),
        name: PathBuf::from("overlay-over-base.img"),
        budget: AtomicU64::new(budget),
        errno,
    });
    let dyn_device: Arc<dyn Device> = device.clone();
    let mut fs = Ext4::open_device(dyn_device, OFFSET, Access::ReadWrite).unwrap();
    let mut edit = fs.mkdir_p("/etc/rancher/k3s", &meta(0o755, 0, 0));
    if big && edit.is_ok() {
        edit = fs.write_file(
            "/usr/local/bin/k3s",
            &mut Noise {
                left: 6 << 20,
                state: 5,
            },
            &meta(0o755, 0, 0),
        );
    }
    (edit, fs, device)
}

#[test]
fn device_write_failures_are_errors_naming_the_device() {
    let (tmp, img) = base(32);
    let copy = tmp.path().join("copy.img");
    let check = |err: Ext4Error, budget: u64, device: Arc<FailingDevice>| {
        let text = err.to_string();
        assert!(
            text.contains("overlay-over-base.img"),
            "budget {budget}: {text}"
        );
        // A full host disk is not a full filesystem: growing the image would not help.
        assert!(!matches!(err, Ext4Error::NoSpace { .. }), "{text}");
        assert_eq!(
            Arc::strong_count(&device),
            1,
            "budget {budget}: the device outlives its filesystem"
        );
    };

    // Failures during the edit; the filesystem is then dropped, which flushes into the
    // failing device once more and must only log.
    for (budget, errno) in [
        (0, Some(28)),
        (8 << 10, None),
        (1 << 20, Some(28)),
        (4 << 20, None),
        (5 << 20, Some(5)),
    ] {
        let (edit, fs, device) = failing_edit(&img, &copy, budget, errno, true);
        let err = edit.expect_err("the edit cannot fit in the write budget");
        drop(fs);
        if errno == Some(28) {
            assert!(err.to_string().contains("No space left on device"), "{err}");
        }
        check(err, budget, device);
    }

    // A budget that the edit just fits in: the failure comes from `close`'s flush.
    let (edit, fs, device) = failing_edit(&img, &copy, u64::MAX, None, false);
    edit.unwrap();
    let used = u64::MAX - device.budget.load(Ordering::SeqCst);
    drop(fs);
    for errno in [Some(28), None] {
        let (edit, fs, device) = failing_edit(&img, &copy, used, errno, false);
        edit.unwrap();
        let err = fs
            .close()
            .expect_err("closing into a device that refuses writes");
        // libext2fs reports its own code here ("Can't write a block bitmap"), not the errno.
        assert!(err.to_string().contains("flushing"), "{err}");
        check(err, used, device);
    }
}

#[test]
fn device_smaller_than_the_filesystem_is_refused() {
    let (_tmp, img) = base(32);
    let file = fs::OpenOptions::new().write(true).open(&img).unwrap();
    file.set_len(OFFSET + (16 << 20)).unwrap();
    drop(file);
    let err = Ext4::open_device(file_device(&img, true), OFFSET, Access::ReadWrite).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Ext4Error::Open { .. }), "{text}");
    assert!(
        text.contains("disk.img") && text.contains("truncated image"),
        "{text}"
    );

    let err = Ext4::open_device(file_device(&img, false), 64 << 20, Access::ReadOnly).unwrap_err();
    assert!(err.to_string().contains("only"), "{err}");

    let err = Ext4::open_device(file_device(&img, false), 4096, Access::ReadOnly).unwrap_err();
    assert!(
        matches!(&err, Ext4Error::Open { message, .. } if message.contains("magic")),
        "{err}"
    );
}
