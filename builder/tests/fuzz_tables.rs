//! A bounded mutation fuzzer for the partition-table reader (`disk::Layout::read`), MBR and
//! GPT. Not part of CI: `#[ignore]`d, run by hand with
//! `PIIMG_FUZZ_ITERATIONS=N cargo test -p piimg --test fuzz_tables -- --ignored`.
//! Seeds are tables sfdisk writes here (no committed binaries); each iteration flips a few
//! bytes of the first 34 sectors (MBR, GPT header, entries) with a seeded xorshift, so a run
//! is repeatable. A panic is a bug: the failing input is kept under the temp folder and named.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

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
    let iterations: u64 = std::env::var("PIIMG_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::Builder::new()
        .prefix("piimg-fuzz-")
        .tempdir()
        .unwrap()
        .keep();
    let seeds = [
        seed(&dir, "mbr", "label: dos\n8192,65536,c\n73728,,83\n"),
        seed(&dir, "gpt", "label: gpt\n2048,32768,U\n34816,,L\n"),
    ];
    let case = dir.join("case.img");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..iterations {
        let mut bytes = seeds[(i % 2) as usize].clone();
        for _ in 0..1 + next() % 8 {
            let at = (next() as usize) % bytes.len();
            bytes[at] = next() as u8;
        }
        let mut f = std::fs::File::create(&case).unwrap();
        f.write_all(&bytes).unwrap();
        f.set_len(SIZE - (next() % 2) * (next() % SIZE)).unwrap();
        drop(f);
        let r = std::panic::catch_unwind(|| piimg::disk::Layout::read(&case));
        assert!(
            r.is_ok(),
            "iteration {i}: Layout::read panicked; input kept at {}",
            case.display()
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
