//! The units a baked image enables, held against the real systemd: `systemd-analyze verify`
//! (Debian's systemd 252, on the test machine) loads the image's unit files and simulates the
//! boot transaction, so an ordering cycle between piimg's units and the base's shows here as it
//! would on the node ("Found ordering cycle … Job … deleted to break ordering cycle"), where
//! systemd silently drops one of the jobs.
//!
//! Issue 13.3: Ubuntu enables `ssh.socket` (`Before=sockets.target`) since 22.10 (the
//! look-alikes carry it, `scripts/mkfixture`); a unit `Before=ssh.socket` with default
//! dependencies is `After=basic.target`, itself after `sockets.target`: a cycle, and either no
//! host keys or nothing on port 22.

use piimg_e2e::cluster::TestCluster;
use piimg_e2e::{self as e2e};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The targets a boot reaches on every base, whose `.wants` the image fills.
const BOOT_TARGETS: [&str; 8] = [
    "sysinit.target",
    "local-fs-pre.target",
    "local-fs.target",
    "sockets.target",
    "timers.target",
    "basic.target",
    "getty.target",
    "multi-user.target",
];

/// Copies the image's unit folders out with debugfs (no mount), lays them into one folder
/// the way systemd layers them (`/etc` over `/usr/lib`, a link to /dev/null masks), adds a
/// target that wants everything the image enables for boot, and returns what
/// `systemd-analyze verify` says of it.
fn verify_boot(image: &Path) -> String {
    let start = e2e::image_root_start(image);
    let dir = tempfile::tempdir().unwrap();
    let dump = |from: &str, to: &str| {
        let dest = dir.path().join(to);
        std::fs::create_dir_all(&dest).unwrap();
        let out = Command::new("debugfs")
            .arg("-R")
            .arg(format!("rdump {from} {}", dest.display()))
            .arg(e2e::offset_spec(image, start))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dest.join("system")
    };
    let vendor = dump("/usr/lib/systemd/system", "usr");
    let admin = dump("/etc/systemd/system", "etc");
    let units = dir.path().join("units");
    std::fs::create_dir(&units).unwrap();
    let mut wanted = BTreeSet::new();
    for layer in [&vendor, &admin] {
        for entry in std::fs::read_dir(layer).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if let Some(target) = name.strip_suffix(".wants") {
                if BOOT_TARGETS.contains(&target) {
                    for w in std::fs::read_dir(&path).unwrap() {
                        wanted.insert(w.unwrap().file_name().to_string_lossy().into_owned());
                    }
                }
                continue;
            }
            let dest = units.join(&name);
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                let _ = std::fs::remove_file(&dest);
                if target == Path::new("/dev/null") {
                    std::os::unix::fs::symlink("/dev/null", &dest).unwrap();
                }
                // Other links (aliases into /lib) resolve to files copied from the vendor layer.
                continue;
            }
            if meta.is_dir() {
                if name.ends_with(".d") {
                    std::fs::create_dir_all(&dest).unwrap();
                    for f in std::fs::read_dir(&path).unwrap() {
                        let f = f.unwrap();
                        std::fs::copy(f.path(), dest.join(f.file_name())).unwrap();
                    }
                }
                continue;
            }
            std::fs::copy(&path, &dest).unwrap();
        }
    }
    let wants: Vec<&str> = wanted
        .iter()
        .map(String::as_str)
        .filter(|u| units.join(u).exists())
        .chain(BOOT_TARGETS)
        .collect();
    let target = units.join("piimg-boot-check.target");
    std::fs::write(
        &target,
        format!(
            "[Unit]\nDescription=every unit the image starts at boot\nWants={}\n",
            wants.join(" ")
        ),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&target)
        .output()
        .expect("systemd-analyze (Debian's systemd) runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("piimg-boot-check.target: Failed"),
        "the check target did not load: {text}"
    );
    format!("wanted at boot: {wants:?}\n{text}")
}

#[test]
fn units_enabled_on_ubuntu_nodes_form_no_ordering_cycle() {
    let tc = TestCluster::new();
    for node in ["worker-4", "control-plane"] {
        let image = tc.build(node, "img", &[]);
        let report = verify_boot(&image);
        assert!(
            report.contains("ssh.socket") && report.contains("piimg-ssh-keygen.service"),
            "{node}: the check must see Ubuntu's ssh.socket and piimg's key unit: {report}"
        );
        assert!(
            !report.contains("ordering cycle"),
            "{node}: systemd finds an ordering cycle and drops a job at boot:\n{report}"
        );
        std::fs::remove_dir_all(&tc.out).unwrap();
    }
}

#[test]
fn units_enabled_on_raspberry_pi_os_nodes_form_no_ordering_cycle() {
    let tc = TestCluster::new();
    for (node, extra) in [
        ("worker-2", &[][..]),
        ("worker-2", &["--base", "raspios-trixie"][..]),
    ] {
        let image = tc.build(node, "img", extra);
        let report = verify_boot(&image);
        assert!(report.contains("piimg-firstboot.service"), "{report}");
        assert!(
            !report.contains("ordering cycle"),
            "{node} {extra:?}: systemd finds an ordering cycle:\n{report}"
        );
        std::fs::remove_dir_all(&tc.out).unwrap();
    }
}

/// Issue 17: a fleet image adds `piimg-identify.service` (early boot, `DefaultDependencies=no`,
/// `Before=network-pre.target sysinit.target`): on Raspberry Pi OS (NetworkManager) and Ubuntu
/// (netplan, networkd, ssh.socket) it must fit the boot without a cycle.
#[test]
fn a_fleet_images_identify_unit_forms_no_ordering_cycle() {
    let tc = TestCluster::new();
    tc.edit_cluster(|c| {
        let fleets = c["fleets"].as_table_mut().expect("[fleets]");
        let mut ubuntu = toml::Table::new();
        ubuntu.insert("nodes".into(), toml::Value::Array(vec!["worker-4".into()]));
        fleets.insert("ubuntu-workers".into(), ubuntu.into());
    });
    tc.edit_profile("worker-4", |p| {
        let mut board = toml::Table::new();
        board.insert("serial".into(), "10000000d83a0004".into());
        p.insert("match".into(), board.into());
    });
    let out_dir = tc.out.display().to_string();
    for fleet in ["bookworm-workers", "ubuntu-workers"] {
        let run = tc.piimg(&[
            "build", "--fleet", fleet, "--out", &out_dir, "--format", "img",
        ]);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let report = verify_boot(&tc.out.join(format!("{fleet}.img")));
        assert!(
            report.contains("piimg-identify.service") && report.contains("piimg-firstboot.service"),
            "{fleet}: the check must see the identify unit: {report}"
        );
        assert!(
            !report.contains("ordering cycle"),
            "{fleet}: systemd finds an ordering cycle:\n{report}"
        );
        std::fs::remove_dir_all(&tc.out).unwrap();
    }
}
