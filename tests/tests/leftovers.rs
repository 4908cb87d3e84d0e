//! Issue 15.7: what an interrupted run leaves (work folders and `*.tmp` in `--out`,
//! `.piimg-decompress-*` and `.frames-*` in the cache, `piimg-image-*.img` in `$TMPDIR`) is
//! removed by the next run that owns the folder; what a live run holds locked stays.
//!
//! A killed run's leftovers are made by hand, as the killed process left them: nothing holds
//! their lock. A live run is stood in for by `flock(1)`, which holds the same `flock(2)` lock a
//! running piimg holds on each of its temporary entries.

use piimg_e2e::cluster::TestCluster;
use piimg_e2e::{self as e2e, Kind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A process holding an exclusive `flock` on `path` until dropped.
struct Holder(Child);

impl Holder {
    fn hold(path: &Path) -> Holder {
        let ready = path.with_extension("held");
        let child = Command::new("flock")
            .arg("-x")
            .arg(path)
            .args(["sh", "-c", "touch \"$0\"; exec sleep 600"])
            .arg(&ready)
            .stdout(Stdio::null())
            .spawn()
            .expect("run flock");
        // Wait (without a deadline: the lock is free) until the child holds the lock.
        while !ready.exists() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::fs::remove_file(&ready).unwrap();
        Holder(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dead_dir(path: PathBuf) -> PathBuf {
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("worker-2.img"), vec![0u8; 4096]).unwrap();
    path
}

fn dead_file(path: PathBuf) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vec![0u8; 4096]).unwrap();
    path
}

#[test]
fn a_build_removes_what_a_killed_build_left_and_keeps_what_a_live_one_holds() {
    let tc = TestCluster::new();
    let dead = [
        dead_dir(tc.out.join(".worker-2.work-dead00")),
        dead_file(tc.out.join(".worker-2.img.zst.dead00.tmp")),
        dead_file(tc.out.join(".worker-2.bmap.dead01.tmp")),
        dead_file(tc.cache.join("bases").join(".piimg-decompress-dead00")),
        dead_dir(tc.cache.join("frames").join(".frames-dead00")),
    ];
    let live = [
        dead_dir(tc.out.join(".worker-1.work-live00")),
        dead_file(tc.out.join(".worker-1.img.live00.tmp")),
        dead_file(tc.cache.join("bases").join(".piimg-decompress-live00")),
        dead_dir(tc.cache.join("frames").join(".frames-live00")),
    ];
    let _holders: Vec<Holder> = live.iter().map(|p| Holder::hold(p)).collect();
    // Not piimg's: never touched, whatever it is called.
    let mine = dead_file(tc.out.join("notes.tmp"));

    tc.build("worker-2", "zst", &[]);

    for p in &dead {
        assert!(
            !p.exists(),
            "{} (a killed run's) is still there",
            p.display()
        );
    }
    for p in &live {
        assert!(
            p.exists(),
            "{} (held by a live run) was removed",
            p.display()
        );
    }
    assert!(mine.exists());
}

#[test]
fn inspect_removes_what_a_killed_inspect_left_in_tmpdir() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let dead = dead_file(tmp.join("piimg-image-dead00.img"));
    let dead_decompress = dead_file(tmp.join(".piimg-decompress-dead00"));
    let live = dead_file(tmp.join("piimg-image-live00.img"));
    let _holder = Holder::hold(&live);
    let other = dead_file(tmp.join("someone-else.img"));

    let image = dir.path().join("base.img.xz");
    std::fs::write(
        &image,
        piimg_e2e::cluster::compressed_fixture(Kind::RaspiosBookworm),
    )
    .unwrap();
    let out = Command::new(e2e::piimg_bin())
        .arg("inspect")
        .arg(&image)
        .env("TMPDIR", &tmp)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dead.exists() && !dead_decompress.exists());
    assert!(live.exists() && other.exists());
    // And inspect leaves nothing of its own.
    let mut names: Vec<String> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["piimg-image-live00.img", "someone-else.img"]);
}
