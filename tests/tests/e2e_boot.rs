//! Zero-touch, proven: an image piimg baked boots in QEMU, its first boot formats the SSD,
//! starts k3s (a stand-in that answers what first boot checks) and reports ready to
//! `piimg watch` on the host; a newer image booted with the same SSD keeps its data.
//!
//! Skipped unless `PIIMG_E2E=1` (`scripts/e2e-boot` sets it): it needs mmdebstrap, a Debian
//! mirror and qemu-system-x86, and takes minutes. On failure the serial logs, the watch's
//! output and the SSD files stay in `target/e2e-boot/`, and the panic prints their tails.

use piimg::fs::ext4::{Access, Ext4, Meta};
use piimg_e2e::boot::cluster::{BootCluster, Built, SSD_SERIAL_PREFIX};
use piimg_e2e::boot::guest::{self, Base, ROOT_LABEL};
use piimg_e2e::boot::vm::{Disk, Outcome, Vm};
use piimg_e2e::boot::watch::{free_port, Watch};
use piimg_e2e::boot::{logs_dir, tail};
use piimg_e2e::{blkid_probe, check_ext4, debugfs_cat, partitions, sha256_file};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// One boot may take this long before the VM is killed (a plain boot is ~30 s under TCG).
const BOOT_TIMEOUT: Duration = Duration::from_secs(420);

/// The marker the re-image step writes onto the SSD and expects to find again.
const MARKER: &str = "/piimg-e2e-marker";

fn enabled() -> bool {
    if std::env::var("PIIMG_E2E").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("skipped: set PIIMG_E2E=1 (scripts/e2e-boot does) to boot baked images in QEMU");
    false
}

fn phase(name: &str, elapsed: Duration) {
    eprintln!("e2e phase {name}: {:.1} s", elapsed.as_secs_f64());
}

/// A blank disk file of `gib` GiB (sparse).
fn blank_disk(path: &Path, gib: u64) {
    let f = std::fs::File::create(path).expect("create SSD file");
    f.set_len(gib << 30).expect("size SSD file");
}

/// One boot of one node with its SSD, watched from the host.
struct Boot {
    node: &'static str,
    outcome: Outcome,
    watch_status: Option<ExitStatus>,
    watch_out: String,
    serial_log: PathBuf,
}

impl Boot {
    fn run(
        name: &str,
        node: &'static str,
        base: &Base,
        cluster: &BootCluster,
        image: &Path,
        ssd: &Disk,
        logs: &Path,
    ) -> Boot {
        let watch = Watch::start(
            &cluster.report_key_file(),
            &[node],
            cluster.report_port,
            "10m",
            &logs.join(format!("{name}.watch.log")),
        );
        let serial_log = logs.join(format!("{name}.serial.log"));
        let outcome = Vm {
            kernel: base.kernel.clone(),
            initrd: base.initrd.clone(),
            append: format!("root=LABEL={ROOT_LABEL} ro console=ttyS0 panic=-1"),
            disks: vec![
                Disk {
                    path: image.to_path_buf(),
                    serial: None,
                },
                ssd.clone(),
            ],
            forwards: vec![],
            serial_log: serial_log.clone(),
            timeout: BOOT_TIMEOUT,
        }
        .boot();
        phase(&format!("boot {name}"), outcome.elapsed);
        let (watch_status, watch_out) = watch.finish(Duration::from_secs(15));
        Boot {
            node,
            outcome,
            watch_status,
            watch_out,
            serial_log,
        }
    }

    /// Everything a person needs to see why the boot went wrong.
    fn explain(&self) -> String {
        format!(
            "{}: {} after {:.0} s\n--- first boot on the serial console ---\n{}\n--- serial console (last 60 lines; whole log in {}) ---\n{}\n--- piimg watch ---\n{}",
            self.node,
            match self.outcome.status {
                None => "VM killed at the timeout".to_string(),
                Some(s) => format!("qemu exited with {s}"),
            },
            self.outcome.elapsed.as_secs_f64(),
            first_boot_lines(&self.outcome.serial),
            self.serial_log.display(),
            tail(&self.outcome.serial, 60),
            tail(&self.watch_out, 20),
        )
    }

    /// The VM powered off by itself, `piimg watch --until-ready` exited 0 with this build
    /// ready, and the serial console shows every first-boot step finished.
    fn assert_ready(&self, build_id: &str) {
        let why = || self.explain();
        assert!(
            self.outcome.powered_off(),
            "the VM did not power off by itself\n{}",
            why()
        );
        assert!(
            self.outcome
                .serial
                .contains("piimg-e2e: first boot unit: active"),
            "piimg-firstboot.service did not end active\n{}",
            why()
        );
        assert!(
            self.watch_status.is_some_and(|s| s.success()),
            "piimg watch --until-ready did not exit 0 ({:?})\n{}",
            self.watch_status,
            why()
        );
        for step in ["storage", "k3s-data", "join", "report"] {
            assert!(
                self.outcome
                    .serial
                    .contains(&format!("piimg-e2e: status: {step}: ok")),
                "first boot's step {step} did not finish\n{}",
                why()
            );
        }
        let line = format!("{} ready address 10.0.2.15 build {build_id}", self.node);
        assert!(
            self.watch_out.contains(&line),
            "the report's build id is not the image's ({build_id})\n{}",
            why()
        );
        assert!(
            self.outcome
                .serial
                .contains(&format!("piimg-e2e: status: build: {build_id}")),
            "first boot's saved build id is not the image's\n{}",
            why()
        );
    }

    /// What first boot did with the SSD (`formatted`, `mounted`), from its saved progress.
    fn storage_action(&self) -> Option<String> {
        self.outcome.serial.lines().find_map(|l| {
            let rest = l.split("piimg-e2e: status: storage: ").nth(1)?;
            let mut words = rest.split_whitespace();
            words.next()?; // the disk
            let action = words.next()?;
            (action != "ok").then(|| action.to_string())
        })
    }
}

/// The serial console's lines from piimg-firstboot and the e2e overlay (ANSI colours dropped).
fn first_boot_lines(serial: &str) -> String {
    let lines: Vec<&str> = serial
        .lines()
        .filter(|l| l.contains("piimg-firstboot[") || l.contains("piimg-e2e:"))
        .collect();
    if lines.is_empty() {
        return "(none: piimg-firstboot never ran, or its log does not reach the console)".into();
    }
    tail(&lines.join("\n"), 40)
}

/// The SSD's one partition: named for the cluster, ext4 with a piimg label, clean.
/// Returns its start and its filesystem UUID.
fn assert_piimg_ssd(ssd: &Path) -> (u64, String) {
    let parts = partitions(ssd);
    assert_eq!(
        parts.len(),
        1,
        "the SSD should hold one partition: {parts:?}"
    );
    let fs = blkid_probe(ssd, parts[0].start);
    assert_eq!(fs.get("TYPE").map(String::as_str), Some("ext4"), "{fs:?}");
    let label = fs.get("LABEL").cloned().unwrap_or_default();
    assert!(
        label.starts_with("piimg"),
        "SSD label {label:?} is not piimg's"
    );
    check_ext4(ssd, parts[0].start);
    (parts[0].start, fs.get("UUID").cloned().unwrap_or_default())
}

/// The node password baked into an image (root filesystem = partition 1).
fn node_password(built: &Built) -> Vec<u8> {
    let root = partitions(&built.image)
        .into_iter()
        .find(|p| p.number == 1)
        .expect("root partition 1");
    debugfs_cat(&built.image, root.start, "/etc/rancher/node/password")
}

/// A different stand-in k3s: the same program with bytes appended (an ELF ignores them),
/// so the build pins another digest, as a newer k3s release would.
fn newer_k3s(k3s: &Path, dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(k3s).expect("read stand-in k3s");
    bytes.extend_from_slice(b"\n# piimg e2e: the next stand-in k3s\n");
    let path = dir.join("k3s-next");
    std::fs::write(&path, bytes).expect("write the next stand-in k3s");
    path
}

#[test]
fn control_plane_boots_reports_ready_keeps_its_data_on_reimage_and_refuses_a_foreign_disk() {
    if !enabled() {
        return;
    }
    let logs = logs_dir();
    let t = Instant::now();
    let base = guest::base();
    phase("base (cached or built)", t.elapsed());

    let t = Instant::now();
    let firstboot = guest::binary("piimg-firstboot", "piimg-firstboot");
    let k3s = guest::binary("piimg-k3s-stand-in", "k3s");
    phase("guest binaries", t.elapsed());

    let cluster = BootCluster::new(&logs.join("work"), &base, free_port());
    cluster.prepare_node("control-plane");
    let t = Instant::now();
    let first = cluster.build("control-plane", &k3s, &firstboot);
    phase("bake control-plane", t.elapsed());
    let first_password = node_password(&first);

    let ssd = logs.join("control-plane-ssd.img");
    blank_disk(&ssd, 2);
    let ssd_disk = Disk {
        path: ssd.clone(),
        serial: Some(format!("{SSD_SERIAL_PREFIX}1")),
    };
    let boot = Boot::run(
        "first-boot",
        "control-plane",
        &base,
        &cluster,
        &first.image,
        &ssd_disk,
        &logs,
    );
    boot.assert_ready(&first.build_id);
    assert_eq!(
        boot.storage_action().as_deref(),
        Some("formatted"),
        "{}",
        boot.explain()
    );
    let (start, uuid) = assert_piimg_ssd(&ssd);

    // Re-image: data on the SSD (written rootless through the builder's ext4 module), a newer
    // build (another k3s), the same SSD: mounted, not formatted; same node password.
    let mut fs = Ext4::open(&ssd, start, Access::ReadWrite).expect("open the SSD's ext4");
    let meta = Meta {
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 1_700_000_000,
    };
    fs.write_file(MARKER, &mut &b"kept across re-imaging\n"[..], &meta)
        .expect("write the marker");
    fs.close().expect("close the SSD's ext4");
    let next_k3s = newer_k3s(&k3s, &logs);
    let t = Instant::now();
    let second = cluster.build("control-plane", &next_k3s, &firstboot);
    phase("bake control-plane again", t.elapsed());
    assert_ne!(
        second.build_id, first.build_id,
        "a new k3s must be a new build"
    );
    assert_eq!(
        node_password(&second),
        first_password,
        "the node password changed between builds"
    );
    let boot = Boot::run(
        "re-image",
        "control-plane",
        &base,
        &cluster,
        &second.image,
        &ssd_disk,
        &logs,
    );
    boot.assert_ready(&second.build_id);
    assert_eq!(
        boot.storage_action().as_deref(),
        Some("mounted"),
        "{}",
        boot.explain()
    );
    let (start_after, uuid_after) = assert_piimg_ssd(&ssd);
    assert_eq!(
        (start_after, uuid_after),
        (start, uuid),
        "the SSD was re-formatted"
    );
    assert_eq!(
        debugfs_cat(&ssd, start, MARKER),
        b"kept across re-imaging\n",
        "the marker did not survive the re-image"
    );

    // Fault: an SSD that holds another filesystem is refused, reported as such to the watch,
    // and left byte-identical.
    let foreign = logs.join("foreign-ssd.img");
    blank_disk(&foreign, 1);
    let mkfs = std::process::Command::new("mkfs.vfat")
        .args(["-F", "32", "-n", "HOLIDAYS"])
        .arg(&foreign)
        .output()
        .expect("run mkfs.vfat");
    assert!(mkfs.status.success(), "mkfs.vfat: {mkfs:?}");
    let before = sha256_file(&foreign);
    let boot = Boot::run(
        "foreign-disk",
        "control-plane",
        &base,
        &cluster,
        &second.image,
        &Disk {
            path: foreign.clone(),
            serial: Some(format!("{SSD_SERIAL_PREFIX}2")),
        },
        &logs,
    );
    assert!(
        boot.outcome.powered_off(),
        "the VM did not power off by itself\n{}",
        boot.explain()
    );
    assert!(
        boot.watch_status.is_some_and(|s| !s.success())
            && boot.watch_out.contains("control-plane failed")
            && boot.watch_out.contains("left untouched"),
        "piimg watch should report the refused disk and exit non-zero\n{}",
        boot.explain()
    );
    assert!(
        boot.outcome
            .serial
            .contains("piimg-e2e: status: storage: failed"),
        "first boot's storage step should have failed\n{}",
        boot.explain()
    );
    assert_eq!(
        sha256_file(&foreign),
        before,
        "the foreign disk was changed"
    );
}
