//! `piimg build --fleet`: one image for the example cluster's bookworm workers, baked from the
//! look-alike base, checked by the real checkers and read back; then the image's own `/etc`,
//! taken out of it with debugfs, is handed to the real `piimg-firstboot identify` as a board
//! by serial (worker-1) and a board by MAC (worker-2): each becomes its node and keeps no other
//! node's files. (The QEMU boot of a fleet image is in e2e_boot.rs.)

use piimg_e2e::cluster::TestCluster;
use piimg_e2e::{self as e2e, inspect_json, root_start};
use std::path::{Path, PathBuf};
use std::process::Command;

const FLEET: &str = "bookworm-workers";

fn firstboot_bin() -> PathBuf {
    let bin = e2e::piimg_bin().with_file_name("piimg-firstboot");
    if !bin.exists() {
        let mut build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        build
            .current_dir(e2e::workspace_root())
            .env("CARGO_TARGET_DIR", e2e::target_dir())
            .args(["build", "--quiet", "-p", "piimg-firstboot"]);
        assert!(
            build.status().unwrap().success(),
            "cargo build -p piimg-firstboot"
        );
    }
    bin
}

fn text(image: &Path, start: u64, path: &str) -> String {
    String::from_utf8(e2e::debugfs_cat(image, start, path)).unwrap()
}

fn mode(image: &Path, start: u64, path: &str) -> u32 {
    e2e::debugfs_stat(image, start, path).0 & 0o7777
}

fn absent(image: &Path, start: u64, path: &str) -> bool {
    !e2e::debugfs_exists(image, start, path)
}

/// The image's `/etc` copied out (debugfs `rdump`) into `root/etc`, as a board's root.
fn board_root(image: &Path, start: u64, root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump /etc {}", root.display()))
        .arg(e2e::offset_spec(image, start))
        .output()
        .unwrap();
    assert!(
        root.join("etc/piimg/fleet.toml").exists(),
        "rdump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn identify(root: &Path) -> String {
    let out = Command::new(firstboot_bin())
        .args(["identify", "--nic-wait-secs", "0", "--root"])
        .arg(root)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    said
}

#[test]
fn one_image_for_both_workers_each_board_becomes_its_own_node() {
    let tc = TestCluster::new();
    let out_dir = tc.out.display().to_string();
    let run = tc.piimg(&[
        "build", "--fleet", FLEET, "--out", &out_dir, "--format", "img",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let image = tc.out.join(format!("{FLEET}.img"));
    e2e::check_all(&image);
    let mut files: Vec<String> = std::fs::read_dir(&tc.out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "bookworm-workers.bmap",
            "bookworm-workers.build.json",
            "bookworm-workers.img",
            "bookworm-workers.img.sha256",
            "os_list.json"
        ]
    );
    let r = inspect_json(&image);
    let s = root_start(&image, &r);
    assert_eq!(r["piimg"]["fleet"], FLEET);
    assert_eq!(r["piimg"]["members"][1]["node"], "worker-2");
    // Shared: k3s, first boot, the fleet's table and every member's files, root-only.
    assert!(text(&image, s, "/usr/local/bin/k3s").contains("stand-in k3s"));
    assert_eq!(mode(&image, s, "/etc/piimg/fleet.toml"), 0o600);
    assert_eq!(mode(&image, s, "/etc/piimg/fleet"), 0o700);
    assert_eq!(mode(&image, s, "/etc/piimg/fleet/worker-1.toml"), 0o600);
    assert_eq!(
        e2e::debugfs_inode(
            &image,
            s,
            "/etc/systemd/system/sysinit.target.wants/piimg-identify.service"
        )
        .link_target
        .as_deref(),
        Some("/etc/systemd/system/piimg-identify.service")
    );
    assert_eq!(text(&image, s, "/etc/hostname"), format!("{FLEET}\n"));
    for own in [
        "/etc/piimg/node.toml",
        "/etc/rancher/k3s/config.yaml",
        "/etc/rancher/node/password",
    ] {
        assert!(absent(&image, s, own), "{own} is in the shared image");
    }
    let os_list: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tc.out.join("os_list.json")).unwrap()).unwrap();
    let entry = &os_list["os_list"][0];
    assert_eq!(entry["name"], format!("piimg fleet {FLEET}"));
    assert!(entry["description"]
        .as_str()
        .unwrap()
        .contains("worker-1, worker-2"));

    // worker-1's board, by its serial (the device tree's, NUL-terminated).
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one");
    board_root(&image, s, &one);
    std::fs::create_dir_all(one.join("proc/device-tree")).unwrap();
    std::fs::write(
        one.join("proc/device-tree/serial-number"),
        b"10000000d83a0001\0",
    )
    .unwrap();
    assert!(identify(&one).contains("this board is worker-1"));
    let node_toml = std::fs::read_to_string(one.join("etc/piimg/node.toml")).unwrap();
    assert!(node_toml.contains("node = \"worker-1\""));
    let k3s = std::fs::read_to_string(one.join("etc/rancher/k3s/config.yaml")).unwrap();
    assert!(
        k3s.contains("node-name: \"worker-1\"") && k3s.contains("piimg.dev/board=pi5"),
        "{k3s}"
    );
    assert_eq!(
        std::fs::read_to_string(one.join("etc/hostname")).unwrap(),
        "worker-1\n"
    );
    assert!(std::fs::read_to_string(one.join("etc/hosts"))
        .unwrap()
        .contains("127.0.1.1\tworker-1"));
    assert!(!one
        .join("etc/NetworkManager/system-connections/piimg-wired.nmconnection")
        .exists());
    assert!(!one.join("etc/piimg/fleet").exists() && !one.join("etc/piimg/fleet.toml").exists());
    let worker2_password = {
        piimg::secrets::node_password(
            &piimg::secrets::load(&tc.profiles.join("secrets.toml"))
                .unwrap()
                .node_password_seed,
            "worker-2",
        )
        .expose()
        .to_string()
    };
    let grep = Command::new("grep")
        .args(["-rF", &worker2_password])
        .arg(&one)
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "worker-2's password is left on worker-1's board"
    );

    // worker-2's board, by the MAC of its Ethernet port: its static address comes with it.
    let two = dir.path().join("two");
    board_root(&image, s, &two);
    let nic = two.join("sys/class/net/eth0");
    std::fs::create_dir_all(nic.join("device")).unwrap();
    std::fs::write(nic.join("type"), "1\n").unwrap();
    std::fs::write(nic.join("address"), "d8:3a:dd:00:00:02\n").unwrap();
    assert!(identify(&two).contains("this board is worker-2"));
    let nm = two.join("etc/NetworkManager/system-connections/piimg-wired.nmconnection");
    assert!(std::fs::read_to_string(&nm)
        .unwrap()
        .contains("192.168.1.12/24"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&nm).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_fleet_whose_members_cannot_share_an_image_fails_cleanly() {
    let tc = TestCluster::new();
    tc.edit_profile("worker-2", |p| {
        p.insert(
            "kernel".into(),
            toml::toml! { cmdline_extra = ["quiet=2"] }.into(),
        );
    });
    let out_dir = tc.out.display().to_string();
    let run = tc.piimg(&[
        "build", "--fleet", FLEET, "--out", &out_dir, "--format", "img",
    ]);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("worker-1 and worker-2 differ in boot:cmdline.txt"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(&tc.out)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in --out: {left:?}");
}
