//! Bounded mutation fuzzers for the readers piimg runs on input it did not make: the
//! partition-table reader (MBR and GPT), the FAT and ext4 readers, the profile TOML loader and
//! the report verifier. Not part of CI: `#[ignore]`d, run by hand with `scripts/fuzz`
//! (`PIIMG_FUZZ_ITERATIONS=N cargo test -p piimg --test fuzz -- --ignored`).
//!
//! Seeds are made here by the real tools (sfdisk, mkfs.vfat, mkfs.ext4, `secrets init` on the
//! example cluster), or read from `fuzz/corpus/` (small text seeds in the repository); no
//! binaries are committed. Each iteration changes a few bytes with a seeded xorshift, so a run
//! is repeatable. A panic is a bug: the failing input is kept under the temp folder and named.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Iterations per target: `PIIMG_FUZZ_ITERATIONS`, default 20000.
fn iterations() -> u64 {
    std::env::var("PIIMG_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// A repeatable xorshift stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Changes 1-8 bytes of `bytes[..within]` (all of it when `within` is 0 or larger).
    fn mutate(&mut self, bytes: &mut [u8], within: usize) {
        let span = if within == 0 {
            bytes.len()
        } else {
            within.min(bytes.len())
        };
        if span == 0 {
            return;
        }
        for _ in 0..1 + self.next() % 8 {
            let at = (self.next() as usize) % span;
            bytes[at] = match self.next() % 4 {
                0 => 0,
                1 => 0xff,
                _ => self.next() as u8,
            };
        }
    }
}

fn scratch() -> PathBuf {
    tempfile::Builder::new()
        .prefix("piimg-fuzz-")
        .tempdir()
        .unwrap()
        .keep()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run a seed tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `case` on every mutation of the seeds; a panic fails the test naming the input kept.
fn fuzz(name: &str, seeds: &[Vec<u8>], within: usize, kept: &Path, mut case: impl FnMut(&[u8])) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    for i in 0..iterations() {
        let mut bytes = seeds[(i as usize) % seeds.len()].clone();
        rng.mutate(&mut bytes, within);
        std::fs::write(kept, &bytes).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&bytes)));
        assert!(
            r.is_ok(),
            "{name}: iteration {i} panicked; input kept at {}",
            kept.display()
        );
    }
}

const SIZE: u64 = 64 << 20;
const TABLE_BYTES: usize = 34 * 512;

fn seed(dir: &Path, label: &str, script: &str) -> Vec<u8> {
    let path = dir.join(format!("{label}.img"));
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(SIZE).unwrap();
    let mut child = Command::new("sfdisk")
        .args(["-q", "--no-reread", "--no-tell-kernel"])
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sfdisk");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(TABLE_BYTES);
    bytes
}

#[test]
#[ignore = "a fuzzer: run by hand (scripts/fuzz)"]
fn partition_table_reader_never_panics() {
    let dir = scratch();
    let seeds = [
        seed(&dir, "mbr", "label: dos\n8192,65536,c\n73728,,83\n"),
        seed(&dir, "gpt", "label: gpt\n2048,32768,U\n34816,,L\n"),
    ];
    let kept = dir.join("case.bin");
    let image = dir.join("case.img");
    let mut cut = Rng(3);
    fuzz("tables", &seeds, TABLE_BYTES, &kept, |bytes| {
        let mut f = std::fs::File::create(&image).unwrap();
        f.write_all(bytes).unwrap();
        // Now and then the image is cut short of what its table claims.
        f.set_len(SIZE - (cut.next() % 2) * (cut.next() % SIZE))
            .unwrap();
        drop(f);
        let _ = piimg::disk::Layout::read(&image);
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[ignore = "a fuzzer: run by hand (scripts/fuzz)"]
fn fat_reader_never_panics() {
    let dir = scratch();
    let img = dir.join("fat.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    run(Command::new("mkfs.vfat")
        .args(["-F", "16", "-n", "BOOT"])
        .arg(&img));
    for (name, text) in [
        ("cmdline.txt", "console=tty1 root=PARTUUID=1 rootwait\n"),
        ("config.txt", "arm_64bit=1\n"),
    ] {
        let src = dir.join(name);
        std::fs::write(&src, text).unwrap();
        run(Command::new("mcopy")
            .arg("-i")
            .arg(&img)
            .arg(&src)
            .arg(format!("::{name}")));
    }
    let seed = std::fs::read(&img).unwrap();
    let case = dir.join("case.img");
    // The boot sector, FATs, root directory and first files are in the first 1 MiB of a small FAT16.
    fuzz("fat", &[seed], 1 << 20, &case, |bytes| {
        let Ok(fs) = piimg::fs::fat::BootFs::open(std::io::Cursor::new(bytes.to_vec()), 0) else {
            return;
        };
        let _ = fs.read_file("cmdline.txt");
        let _ = fs.read_file("config.txt");
        let _ = fs.list("/");
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[ignore = "a fuzzer: run by hand (scripts/fuzz)"]
fn ext4_reader_never_panics() {
    let dir = scratch();
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(
        tree.join("etc/os-release"),
        "ID=debian\nVERSION_CODENAME=bookworm\n",
    )
    .unwrap();
    std::fs::write(tree.join("etc/fstab"), "proc /proc proc defaults 0 0\n").unwrap();
    std::os::unix::fs::symlink("../etc/os-release", tree.join("etc/link")).unwrap();
    let img = dir.join("root.img");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(&tree)
        .arg(&img)
        .arg("8M"));
    let seed = std::fs::read(&img).unwrap();
    let case = dir.join("case.img");
    // Superblock, group descriptors, bitmaps and the inode table sit in the first 1 MiB.
    fuzz("ext4", &[seed], 1 << 20, &case, |_| {
        let Ok(fs) = piimg::fs::ext4::Ext4::open(&case, 0, piimg::fs::ext4::Access::ReadOnly)
        else {
            return;
        };
        let _ = fs.read_file("/etc/os-release");
        let _ = fs.read_file("/etc/fstab");
        let _ = fs.stat("/etc/link");
        let _ = fs.read_dir("/etc");
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Text seeds: the example cluster's profiles and the committed corpus.
fn text_seeds(corpus: &str) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut seeds = Vec::new();
    let mut dirs = vec![root.join("fuzz/corpus").join(corpus)];
    if corpus == "profile" {
        dirs.push(root.join("profiles"));
    }
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for p in paths {
            let ext = p.extension().and_then(|e| e.to_str());
            if p.is_file()
                && (corpus != "profile" || ext == Some("toml"))
                && !p.ends_with("secrets.toml")
            {
                seeds.push(std::fs::read(&p).unwrap());
            }
        }
    }
    seeds
}

#[test]
#[ignore = "a fuzzer: run by hand (scripts/fuzz)"]
fn profile_loader_never_panics() {
    let dir = scratch();
    let profiles = dir.join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
    let cluster = std::fs::read(root.join("cluster.toml")).unwrap();
    let node = std::fs::read(root.join("worker-1.toml")).unwrap();
    let mut seeds = text_seeds("profile");
    seeds.push(cluster.clone());
    let case = dir.join("case.toml");
    fuzz("profile", &seeds, 0, &case, |bytes| {
        // The case as cluster.toml beside a good node, then as the node beside a good cluster.
        std::fs::write(profiles.join("cluster.toml"), bytes).unwrap();
        std::fs::write(profiles.join("worker-1.toml"), &node).unwrap();
        let _ = piimg::profile::load_cluster(&profiles);
        let overrides = piimg::spec::Overrides {
            source_date_epoch: Some(1),
            ..Default::default()
        };
        let _ = piimg::spec::resolve(&profiles, "worker-1", &overrides);
        std::fs::write(profiles.join("cluster.toml"), &cluster).unwrap();
        std::fs::write(profiles.join("worker-1.toml"), bytes).unwrap();
        let _ = piimg::profile::load_node(&profiles, "worker-1");
        let _ = piimg::spec::resolve(&profiles, "worker-1", &overrides);
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[ignore = "a fuzzer: run by hand (scripts/fuzz)"]
fn report_verifier_never_panics() {
    use piimg_firstboot::report::{sign, verify};
    let dir = scratch();
    let key = [0x5a_u8; 32];
    let seeds = text_seeds("report");
    assert!(
        !seeds.is_empty(),
        "fuzz/corpus/report/ holds the report seeds"
    );
    for seed in &seeds {
        verify(&key, seed, Some(&sign(&key, seed)), 1_700_000_000)
            .expect("a corpus report verifies as it is");
    }
    let case = dir.join("case.json");
    fuzz("report", &seeds, 0, &case, |bytes| {
        // Signed, so the parser and the schema checks behind the MAC are reached too.
        let signature = sign(&key, bytes);
        let _ = verify(&key, bytes, Some(&signature), 1_700_000_000);
        let _ = verify(
            &key,
            bytes,
            Some(std::str::from_utf8(bytes).unwrap_or("")),
            0,
        );
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
