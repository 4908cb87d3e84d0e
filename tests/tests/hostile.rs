//! Hostile bases (issue 15): images a test damages on purpose, from a look-alike, never
//! committed as binaries. Each is given to `piimg inspect` and `piimg build` under a 256 MiB
//! address-space limit (`ulimit -v`), as an attacker's or a damaged download would be: the run
//! must end at once with an error naming the file in the image, never grow until killed.

use piimg_e2e::cluster::TestCluster;
use piimg_e2e::{self as e2e, Kind};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// 256 MiB of address space, in KiB for `ulimit -v`.
const MEMORY_LIMIT_KIB: u64 = 256 * 1024;

/// Runs `piimg ARGS` under `ulimit -v`, returning its output and how long it took.
fn piimg_limited(args: &[&str], cwd: &Path) -> (Output, Duration) {
    let mut script = format!("ulimit -v {MEMORY_LIMIT_KIB}; exec \"$0\"");
    for i in 1..=args.len() {
        script += &format!(" \"${i}\"");
    }
    let start = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(e2e::piimg_bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    (out, start.elapsed())
}

/// Issue 15.1: an inode whose size field claims 128 TiB (`/etc/fstab`, holes all the way).
#[test]
fn a_size_field_that_lies_is_refused_within_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let image = e2e::copy_fixture(Kind::RaspiosBookworm, dir.path());
    let start = e2e::image_root_start(&image);
    e2e::debugfs_write(&image, start, "sif /etc/fstab size 0x800000000000");

    let (out, took) = piimg_limited(&["inspect", image.to_str().unwrap()], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("memory allocation"), "{stderr}");
    assert_ne!(out.status.code(), Some(134), "aborted: {stderr}");
    assert!(took < Duration::from_secs(30), "inspect took {took:?}");
    // inspect may describe the rest of the image, but must say fstab could not be read.
    let said = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
    assert!(
        said.contains("/etc/fstab"),
        "the damaged file is not named:\n{said}"
    );

    let tc = TestCluster::new();
    let out = tc.try_build("worker-2", "img", &["--base", image.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a build from a damaged base succeeded"
    );
    assert!(
        stderr.contains("/etc/fstab") && stderr.contains("claims") && stderr.contains("e2fsck"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Issue 15.2: device files and pipes given as inputs. Each ends at once with the path named
/// and what it is, and leaves nothing where the outputs go.
#[test]
fn device_files_are_refused_as_inputs() {
    let tc = TestCluster::new();
    for args in [
        ["--base", "/dev/zero"],
        ["--k3s-bin", "/dev/zero"],
        ["--firstboot-bin", "/dev/zero"],
    ] {
        let start = Instant::now();
        let out = tc.try_build("worker-2", "img", &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            stderr.contains("/dev/zero") && stderr.contains("character device"),
            "{args:?}: {stderr}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{args:?} took {:?}",
            start.elapsed()
        );
        assert!(!tc.out.join("worker-2.img").exists());
    }
    // A profile file whose source is a named pipe in the profiles folder (a device can only be
    // named from outside it, which is refused for that already): opening it would block
    // forever; refused at plan, against the profile's key.
    let pipe = tc.path().join("profiles/pipe");
    let made = Command::new("mkfifo").arg(&pipe).status().unwrap();
    assert!(made.success());
    tc.edit_profile("worker-2", |t| {
        let mut f = toml::Table::new();
        f.insert("path".into(), "/etc/pipe".into());
        f.insert("source".into(), "pipe".into());
        t.insert("files".into(), toml::Value::Array(vec![f.into()]));
    });
    let start = Instant::now();
    let out = tc.piimg(&["plan", "--profile", "worker-2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "files[].source = a pipe was accepted"
    );
    assert!(
        stderr.contains("files[0].source") && stderr.contains("named pipe"),
        "{stderr}"
    );
    assert!(start.elapsed() < Duration::from_secs(30));
}

/// Issue 15.5: the root partition shrunk in the table under its filesystem. The build used to
/// succeed and publish an image whose root the kernel refuses to mount.
#[test]
fn a_filesystem_larger_than_its_partition_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let image = e2e::copy_fixture(Kind::RaspiosBookworm, dir.path());
    let root = e2e::partitions(&image)
        .into_iter()
        .find(|p| p.number == 2)
        .unwrap();
    let (start, size) = (root.start / 512, root.size / 512);
    let out = Command::new("sfdisk")
        .args(["--no-reread", "--no-tell-kernel", "-q", "-N", "2"])
        .arg(&image)
        .stdin_bytes(format!("{start},{}\n", size - 16384))
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let tc = TestCluster::new();
    let out = tc.try_build("worker-2", "img", &["--base", image.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a base whose root is bigger than its partition was built"
    );
    assert!(
        stderr.contains("larger than the partition") && stderr.contains("partition 2"),
        "{stderr}"
    );
    assert!(!tc.out.join("worker-2.img").exists());
}

/// `Command` with bytes on its standard input.
trait StdinBytes {
    fn stdin_bytes(&mut self, input: String) -> std::io::Result<Output>;
}

impl StdinBytes for Command {
    fn stdin_bytes(&mut self, input: String) -> std::io::Result<Output> {
        use std::io::Write;
        let mut child = self
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        child.stdin.take().unwrap().write_all(input.as_bytes())?;
        child.wait_with_output()
    }
}
