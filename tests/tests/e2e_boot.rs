//! Zero-touch, proven: an image piimg baked boots in QEMU, its first boot formats the SSD,
//! starts k3s (a stand-in that answers what first boot checks) and reports ready to
//! `piimg watch` on the host.
//!
//! Skipped unless `PIIMG_E2E=1` (`scripts/e2e-boot` sets it): it needs mmdebstrap, a Debian
//! mirror and qemu-system-x86, and takes minutes. On failure the serial logs, the watch's
//! output and the SSD files stay in `target/e2e-boot/`, and the panic prints their tails.

use piimg_e2e::boot::cluster::{BootCluster, SSD_SERIAL_PREFIX};
use piimg_e2e::boot::guest::{self, ROOT_LABEL};
use piimg_e2e::boot::vm::{Disk, Outcome, Vm};
use piimg_e2e::boot::watch::{free_port, Watch};
use piimg_e2e::boot::{logs_dir, tail};
use piimg_e2e::{blkid_probe, check_ext4, partitions};
use std::path::Path;
use std::time::{Duration, Instant};

/// One boot may take this long before the VM is killed (a plain boot is ~30 s under TCG).
const BOOT_TIMEOUT: Duration = Duration::from_secs(420);

fn enabled() -> bool {
    if std::env::var("PIIMG_E2E").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("skipped: set PIIMG_E2E=1 (scripts/e2e-boot does) to boot baked images in QEMU");
    false
}

fn phase(name: &str, started: Instant) {
    eprintln!("e2e phase {name}: {:.1} s", started.elapsed().as_secs_f64());
}

/// A blank disk file of `gib` GiB (sparse).
fn blank_disk(path: &Path, gib: u64) {
    let f = std::fs::File::create(path).expect("create SSD file");
    f.set_len(gib << 30).expect("size SSD file");
}

/// Everything a person needs to see why a boot went wrong.
fn explain(node: &str, outcome: &Outcome, watch_log: &str, logs: &Path) -> String {
    format!(
        "{node}: {} after {:.0} s\n--- serial console (last 60 lines; whole log in {}) ---\n{}\n--- piimg watch ---\n{}",
        match outcome.status {
            None => "VM killed at the timeout".to_string(),
            Some(s) => format!("qemu exited with {s}"),
        },
        outcome.elapsed.as_secs_f64(),
        logs.display(),
        tail(&outcome.serial, 60),
        tail(watch_log, 20),
    )
}

#[test]
fn control_plane_boots_formats_its_ssd_joins_and_reports_ready() {
    if !enabled() {
        return;
    }
    let logs = logs_dir();
    let t = Instant::now();
    let base = guest::base();
    phase("base (cached or built)", t);

    let t = Instant::now();
    let firstboot = guest::binary("piimg-firstboot", "piimg-firstboot");
    let k3s = guest::binary("piimg-k3s-stand-in", "k3s");
    phase("guest binaries", t);

    let port = free_port();
    let cluster = BootCluster::new(&logs.join("work"), &base, port);
    cluster.prepare_node("control-plane");
    let t = Instant::now();
    let built = cluster.build("control-plane", &k3s, &firstboot);
    phase("bake control-plane", t);

    let ssd = logs.join("control-plane-ssd.img");
    blank_disk(&ssd, 2);
    let watch_log = logs.join("watch.log");
    let watch = Watch::start(
        &cluster.report_key_file(),
        &["control-plane"],
        port,
        "10m",
        &watch_log,
    );
    let serial_log = logs.join("control-plane.serial.log");
    let vm = Vm {
        kernel: base.kernel.clone(),
        initrd: base.initrd.clone(),
        append: format!("root=LABEL={ROOT_LABEL} ro console=ttyS0 panic=-1"),
        disks: vec![
            Disk {
                path: built.image.clone(),
                serial: None,
            },
            Disk {
                path: ssd.clone(),
                serial: Some(format!("{SSD_SERIAL_PREFIX}1")),
            },
        ],
        forwards: vec![],
        serial_log: serial_log.clone(),
        timeout: BOOT_TIMEOUT,
    };
    let outcome = vm.boot();
    eprintln!(
        "e2e phase boot control-plane: {:.1} s",
        outcome.elapsed.as_secs_f64()
    );
    let (watch_status, watch_out) = watch.finish(Duration::from_secs(15));
    let why = || explain("control-plane", &outcome, &watch_out, &serial_log);

    assert!(
        outcome.powered_off(),
        "the VM did not power off by itself\n{}",
        why()
    );
    assert!(
        watch_status.is_some_and(|s| s.success()),
        "piimg watch --until-ready did not exit 0 ({watch_status:?})\n{}",
        why()
    );
    for step in ["storage", "k3s-data", "join", "report"] {
        assert!(
            outcome
                .serial
                .contains(&format!("piimg-e2e: status: {step}: ok")),
            "first boot's step {step} did not finish\n{}",
            why()
        );
    }
    assert!(
        outcome
            .serial
            .contains("piimg-e2e: first boot unit: active"),
        "piimg-firstboot.service did not end active\n{}",
        why()
    );
    assert!(
        watch_out.contains(&format!(
            "control-plane ready address 10.0.2.15 build {}",
            built.build_id
        )),
        "the report's build id is not the image's ({})\n{}",
        built.build_id,
        why()
    );
    assert!(
        outcome
            .serial
            .contains(&format!("piimg-e2e: status: build: {}", built.build_id)),
        "first boot's saved build id is not the image's\n{}",
        why()
    );

    // The SSD: one GPT partition named for the cluster, ext4 with the profile's label, clean.
    let parts = partitions(&ssd);
    assert_eq!(
        parts.len(),
        1,
        "the SSD should hold one partition: {parts:?}"
    );
    let fs = blkid_probe(&ssd, parts[0].start);
    assert_eq!(fs.get("TYPE").map(String::as_str), Some("ext4"), "{fs:?}");
    let label = fs.get("LABEL").cloned().unwrap_or_default();
    assert!(
        label.starts_with("piimg"),
        "SSD label {label:?} is not piimg's"
    );
    check_ext4(&ssd, parts[0].start);
}
