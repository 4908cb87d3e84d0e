//! Fleet images on the node side: the real `piimg-firstboot identify` and `run` under a test
//! root (`--root`), with the board's serial and interfaces as files where the kernel puts
//! them, and a stand-in `piimg watch` on 127.0.0.1 that records the reports it gets.

use piimg_firstboot::config::{
    DiskSelector, K3sConfig, NodeConfig, ReportConfig, Role, RootConfig, StorageConfig,
    SCHEMA_VERSION,
};
use piimg_firstboot::fleet::{BoardMatch, Entry, FleetConfig, Member, MemberFiles, FLEET_SCHEMA};
use piimg_firstboot::report::{Report, Stage};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

mod common;
use common::firstboot_command;
const KEY: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7";
const SERIAL_A: &str = "10000000aaaa0001";
const MAC_B: &str = "d8:3a:dd:00:00:0b";

/// A stand-in `piimg watch`: answers every POST with `status` and keeps the bodies.
struct Watch {
    url: String,
    reports: Arc<Mutex<Vec<Report>>>,
}

impl Watch {
    fn start(status: u16, reason: &'static str) -> Watch {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/report", listener.local_addr().unwrap());
        let reports = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&reports);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_ok() {
                    if let Ok(r) = serde_json::from_slice::<Report>(&body) {
                        kept.lock().unwrap().push(r);
                    }
                }
                let reply = format!("rejected: {reason}\n");
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            }
        });
        Watch { url, reports }
    }

    fn reports(&self) -> Vec<Report> {
        self.reports.lock().unwrap().clone()
    }
}

/// A node's root holding a fleet image's files for two members: worker-a (by serial) and
/// worker-b (by MAC).
struct Board {
    dir: tempfile::TempDir,
}

fn node_config(node: &str, url: &str) -> String {
    NodeConfig {
        schema: SCHEMA_VERSION,
        cluster: "homelab".into(),
        cluster_id: "c0ffee0123456789".into(),
        node: node.into(),
        role: Role::Agent,
        build_id: "fleet-build".into(),
        k3s_version: "v1.31.4+k3s1".into(),
        storage: StorageConfig {
            selector: DiskSelector::UsbMinGb(1),
            label: "piimg-c0ffee01".into(),
            mount_point: "/mnt/storage".into(),
            wipe: None,
        },
        k3s: K3sConfig {
            data_dir: "/mnt/storage/k3s".into(),
            server: Some("https://cp.lab.example:6443".into()),
            staged_manifests: "/var/lib/piimg/manifests".into(),
            staged_images: "/var/lib/piimg/images".into(),
        },
        report: ReportConfig {
            url: Some(url.into()),
            key: KEY.into(),
        },
        root: RootConfig::default(),
    }
    .to_toml()
}

fn member_files(node: &str, url: &str) -> MemberFiles {
    MemberFiles {
        schema: FLEET_SCHEMA,
        node: node.into(),
        hostname: node.into(),
        entries: vec![
            Entry::Dir {
                path: "/etc/rancher/node".into(),
                mode: "0700".into(),
                uid: 0,
                gid: 0,
            },
            Entry::File {
                path: "/etc/piimg/node.toml".into(),
                mode: "0600".into(),
                uid: 0,
                gid: 0,
                content: node_config(node, url),
            },
            Entry::File {
                path: "/etc/rancher/node/password".into(),
                mode: "0600".into(),
                uid: 0,
                gid: 0,
                content: format!("password-of-{node}\n"),
            },
            Entry::File {
                path: "/etc/hostname".into(),
                mode: "0644".into(),
                uid: 0,
                gid: 0,
                content: format!("{node}\n"),
            },
            Entry::Remove {
                path: "/etc/stale".into(),
            },
            Entry::Symlink {
                path: "/etc/piimg/which".into(),
                target: node.into(),
            },
        ],
    }
}

impl Board {
    fn new(url: &str) -> Board {
        let b = Board {
            dir: tempfile::tempdir().unwrap(),
        };
        let fleet = FleetConfig {
            schema: FLEET_SCHEMA,
            fleet: "pis".into(),
            cluster: "homelab".into(),
            build_id: "fleet-build".into(),
            k3s_version: "v1.31.4+k3s1".into(),
            report: ReportConfig {
                url: Some(url.into()),
                key: KEY.into(),
            },
            members: vec![
                Member {
                    node: "worker-a".into(),
                    board: BoardMatch::Serial(SERIAL_A.into()),
                },
                Member {
                    node: "worker-b".into(),
                    board: BoardMatch::Mac(MAC_B.to_uppercase()),
                },
            ],
        };
        b.write("/etc/piimg/fleet.toml", &fleet.to_toml(), 0o600);
        for node in ["worker-a", "worker-b"] {
            let text = member_files(node, url).to_toml();
            b.write(&format!("/etc/piimg/fleet/{node}.toml"), &text, 0o600);
        }
        b.write(
            "/etc/hosts",
            "127.0.0.1\tlocalhost\n127.0.1.1\tpis\n",
            0o644,
        );
        b.write("/etc/hostname", "pis\n", 0o644);
        b.write("/etc/stale", "x", 0o644);
        b
    }

    fn path(&self, abs: &str) -> PathBuf {
        self.dir.path().join(abs.trim_start_matches('/'))
    }

    fn write(&self, abs: &str, text: &str, mode: u32) {
        let p = self.path(abs);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn read(&self, abs: &str) -> String {
        std::fs::read_to_string(self.path(abs)).unwrap_or_default()
    }

    fn mode(&self, abs: &str) -> u32 {
        std::fs::metadata(self.path(abs))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    /// The board's firmware serial, as the Pi's device tree gives it (NUL-terminated).
    fn serial(&self, serial: &str) {
        let p = self.path("/proc/device-tree/serial-number");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, format!("{serial}\0")).unwrap();
    }

    /// A wired interface.
    fn nic(&self, name: &str, mac: &str) {
        let dev = self.path(&format!("/sys/class/net/{name}"));
        std::fs::create_dir_all(dev.join("device")).unwrap();
        std::fs::write(dev.join("address"), format!("{mac}\n")).unwrap();
        std::fs::write(dev.join("type"), "1\n").unwrap();
    }

    fn firstboot(&self, verb: &str) -> Output {
        firstboot_command()
            .arg(verb)
            .arg("--root")
            .arg(self.dir.path())
            .args(["--nic-wait-secs", "0", "--backoff-ms", "1"])
            .args(["--systemctl", "/bin/false", "--k3s", "/bin/false"])
            .output()
            .unwrap()
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

#[test]
fn a_board_takes_the_node_its_serial_names_and_keeps_no_other_nodes_files() {
    let board = Board::new("http://127.0.0.1:9/report");
    board.serial(SERIAL_A);
    board.nic("eth0", "d8:3a:dd:00:00:0a");
    let out = board.firstboot("identify");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("this board is worker-a"),
        "{}",
        text(&out)
    );

    assert!(board
        .read("/etc/piimg/node.toml")
        .contains("node = \"worker-a\""));
    assert_eq!(board.mode("/etc/piimg/node.toml"), 0o600);
    assert_eq!(
        board.read("/etc/rancher/node/password"),
        "password-of-worker-a\n"
    );
    assert_eq!(board.mode("/etc/rancher/node/password"), 0o600);
    assert_eq!(board.mode("/etc/rancher/node"), 0o700);
    assert_eq!(board.read("/etc/hostname"), "worker-a\n");
    assert_eq!(board.read("/proc/sys/kernel/hostname"), "worker-a");
    assert_eq!(
        board.read("/etc/hosts"),
        "127.0.0.1\tlocalhost\n127.0.1.1\tworker-a\n"
    );
    assert!(!exists(&board.path("/etc/stale")));
    assert_eq!(
        std::fs::read_link(board.path("/etc/piimg/which")).unwrap(),
        Path::new("worker-a")
    );
    // No other node's secrets, and no fleet table, are left on the node.
    assert!(!exists(&board.path("/etc/piimg/fleet")));
    assert!(!exists(&board.path("/etc/piimg/fleet.toml")));
    let walk = Command::new("grep")
        .args(["-r", "password-of-worker-b"])
        .arg(board.dir.path())
        .output()
        .unwrap();
    assert!(
        walk.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&walk.stdout)
    );
    let identity = board.read("/etc/piimg/identity.toml");
    assert!(
        identity.contains("node = \"worker-a\"") && identity.contains(SERIAL_A),
        "{identity}"
    );

    // Every later boot: identify has nothing to do, the node stays worker-a.
    let again = board.firstboot("identify");
    assert!(
        again.status.success() && text(&again).contains("earlier boot"),
        "{}",
        text(&again)
    );
    assert!(board.read("/etc/piimg/node.toml").contains("worker-a"));
}

#[test]
fn a_board_takes_the_node_its_mac_names() {
    let board = Board::new("http://127.0.0.1:9/report");
    board.serial("10000000ffff0000");
    board.nic("end0", MAC_B);
    let out = board.firstboot("identify");
    assert!(out.status.success(), "{}", text(&out));
    assert!(board
        .read("/etc/piimg/node.toml")
        .contains("node = \"worker-b\""));
    assert_eq!(board.read("/etc/hostname"), "worker-b\n");
}

#[test]
fn a_power_cut_after_the_node_config_is_finished_on_the_next_boot() {
    let board = Board::new("http://127.0.0.1:9/report");
    board.serial(SERIAL_A);
    // As if the board stopped right after writing node.toml: the fleet's files still there.
    board.write(
        "/etc/piimg/node.toml",
        &node_config("worker-a", "http://x/"),
        0o600,
    );
    let out = board.firstboot("identify");
    assert!(out.status.success(), "{}", text(&out));
    assert!(!exists(&board.path("/etc/piimg/fleet")));
    assert!(!exists(&board.path("/etc/piimg/fleet.toml")));
}

#[test]
fn an_unknown_board_reports_its_serial_and_macs_and_touches_nothing() {
    let watch = Watch::start(200, "ok");
    let board = Board::new(&watch.url);
    board.serial("10000000cccc0003");
    board.nic("eth0", "d8:3a:dd:00:00:0c");
    let before = board.read("/etc/hostname");
    let out = board.firstboot("identify");
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("no node of this fleet image")
            && said.contains("match = { serial = \"10000000cccc0003\" }"),
        "{said}"
    );
    assert!(!exists(&board.path("/etc/piimg/node.toml")));
    assert_eq!(board.read("/etc/hostname"), before);
    assert!(exists(&board.path("/etc/piimg/fleet/worker-a.toml")));

    // first boot's run: reports the board as unmatched, exits non-zero, does nothing else.
    let run = board.firstboot("run");
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let reports = watch.reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let r = &reports[0];
    assert_eq!(r.stage, Stage::Unmatched);
    assert_eq!(r.fleet.as_deref(), Some("pis"));
    let hw = r.hardware.as_ref().unwrap();
    assert_eq!(hw.serial.as_deref(), Some("10000000cccc0003"));
    assert_eq!(hw.nics[0].mac, "d8:3a:dd:00:00:0c");
    assert!(
        r.error.as_deref().unwrap().contains("match = { serial"),
        "{r:?}"
    );
    assert!(!exists(&board.path("/var/lib/piimg/state.json")));
}

#[test]
fn a_board_two_profiles_name_is_refused_like_an_unknown_one() {
    let board = Board::new("http://127.0.0.1:9/report");
    board.serial(SERIAL_A);
    board.nic("eth0", MAC_B);
    let out = board.firstboot("identify");
    let said = text(&out);
    assert!(
        said.contains("matches 2 nodes") && said.contains("worker-a, worker-b"),
        "{said}"
    );
    assert!(!exists(&board.path("/etc/piimg/node.toml")));
}

#[test]
fn a_name_the_watch_says_another_board_holds_is_refused_before_any_disk() {
    let watch = Watch::start(409, "node worker-a is board serial 10000000aaaa9999's");
    let board = Board::new(&watch.url);
    board.serial(SERIAL_A);
    assert!(board.firstboot("identify").status.success());
    let run = board.firstboot("run");
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let reports = watch.reports();
    assert_eq!(reports[0].stage, Stage::Claiming, "{reports:?}");
    let last = reports.last().unwrap();
    assert_eq!(last.stage, Stage::Failed);
    let err = last.error.as_deref().unwrap();
    assert!(err.contains("claim") && err.contains("aaaa9999"), "{err}");
    let storage = last.steps.iter().find(|s| s.step == "storage").unwrap();
    assert_eq!(storage.status, "skipped");
    assert_eq!(
        last.hardware.as_ref().unwrap().serial.as_deref(),
        Some(SERIAL_A)
    );
}
