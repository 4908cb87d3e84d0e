//! `piimg watch` receiving reports from the real `piimg-firstboot` binary on 127.0.0.1, and
//! refusing forged, stale and replayed ones.
//!
//! The firstboot binary is taken from beside `piimg` in the target directory, where
//! `cargo test --workspace` builds it.

mod example;

use piimg_firstboot::report::{sign, Report, Stage, REPORT_SCHEMA, SIGNATURE_HEADER};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const PIIMG: &str = env!("CARGO_BIN_EXE_piimg");
const KEY: &str = "a11ce5a11ce5a11ce5a11ce5a11ce5a11ce5a11ce5a11ce5a11ce5a11ce5a11c";

fn firstboot_bin() -> PathBuf {
    let bin = Path::new(PIIMG).with_file_name("piimg-firstboot");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace`, or `cargo build -p piimg-firstboot` first",
        bin.display()
    );
    bin
}

struct Watch {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    addr: String,
    seen: Vec<String>,
}

impl Watch {
    /// A watch given its nodes and key on the command line (`--nodes`, `--key-file`).
    fn start(dir: &Path, nodes: &str, timeout: &str) -> Watch {
        let key_file = dir.join("report.key");
        std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
        Watch::spawn(&[
            "--nodes".as_ref(),
            nodes.as_ref(),
            "--timeout".as_ref(),
            timeout.as_ref(),
            "--key-file".as_ref(),
            key_file.as_os_str(),
        ])
    }

    /// `piimg watch --listen 127.0.0.1:0 --until-ready ARGS…`.
    fn spawn(args: &[&std::ffi::OsStr]) -> Watch {
        let mut all = vec!["--until-ready".as_ref()];
        all.extend_from_slice(args);
        Watch::spawn_plain(&all)
    }

    /// `piimg watch --listen 127.0.0.1:0 ARGS…`.
    fn spawn_plain(args: &[&std::ffi::OsStr]) -> Watch {
        let mut child = Command::new(PIIMG)
            .args(["watch", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = rx.recv().expect("watch printed nothing");
        let addr = first
            .strip_prefix("piimg watch: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        Watch {
            child,
            lines: rx,
            addr,
            seen: vec![first],
        }
    }

    fn url(&self) -> String {
        format!("http://{}/report", self.addr)
    }

    /// Waits for the next line of output (the watch answers each request before printing).
    fn next_line(&mut self) -> String {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(60))
            .expect("watch printed no line");
        self.seen.push(line.clone());
        line
    }

    /// Waits for the exit; returns success and all output.
    fn finish(mut self) -> (bool, String) {
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv() {
            self.seen.push(line);
        }
        let mut err = String::new();
        use std::io::Read;
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status.success(), format!("{}\n{err}", self.seen.join("\n")))
    }
}

fn report(node: &str, timestamp: u64, nonce: &str) -> Report {
    Report {
        schema: REPORT_SCHEMA,
        cluster: "homelab".into(),
        node: node.into(),
        role: piimg_firstboot::config::Role::Agent,
        build_id: "build-42".into(),
        k3s_version: "v1.31.4+k3s1".into(),
        stage: Stage::Ready,
        addresses: vec!["192.0.2.9".into()],
        storage: None,
        steps: vec![],
        error: None,
        timestamp,
        nonce: nonce.into(),
        fleet: None,
        hardware: None,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn post(url: &str, body: &[u8], signature: Option<&str>) -> u16 {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(s) = signature {
        headers.push((SIGNATURE_HEADER, s));
    }
    piimg_firstboot::http::request("POST", url, &headers, body, Duration::from_secs(30))
        .unwrap()
        .status
}

/// A node root with a blank disk and stand-ins, as in firstboot's own tests.
fn node_root(dir: &Path, url: &str, disk_blank: bool) -> Vec<String> {
    let root = dir.join("root");
    let bin = dir.join("bin");
    std::fs::create_dir_all(root.join("etc/piimg")).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    for (name, text) in [
        ("systemctl", "#!/bin/sh\nexit 0\n"),
        (
            "k3s",
            "#!/bin/sh\ncase \"$*\" in *readyz*) echo ok;; *Ready*) echo True;; esac\n",
        ),
    ] {
        std::fs::write(bin.join(name), text).unwrap();
        std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let disk = dir.join("ssd.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    if !disk_blank {
        assert!(Command::new("mkfs.vfat")
            .arg(&disk)
            .output()
            .unwrap()
            .status
            .success());
    }
    std::fs::write(
        dir.join("devices.toml"),
        format!(
            "[[disk]]\npath = \"{}\"\nids = [\"usb-SSD_S1-0:0\"]\nserial = \"S1\"\ntransport = \"usb\"\n",
            disk.display()
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("etc/piimg/node.toml"),
        format!(
            r#"schema = 1
cluster = "homelab"
cluster_id = "c0ffee0123456789"
node = "worker-1"
role = "server"
build_id = "build-42"
k3s_version = "v1.31.4+k3s1"

[storage]
label = "piimg-c0ffee01"
mount_point = "/mnt/storage"

[storage.selector]
by_id = "usb-SSD_*"

[k3s]
data_dir = "/mnt/storage/k3s"
staged_manifests = "/var/lib/piimg/manifests"
staged_images = "/var/lib/piimg/images"

[report]
url = "{url}"
key = "{KEY}"
"#
        ),
    )
    .unwrap();
    let p = |s: &Path| s.display().to_string();
    vec![
        "--root".into(),
        p(&root),
        "--devices".into(),
        p(&dir.join("devices.toml")),
        "--fake-mount".into(),
        p(&dir.join("mounts")),
        "--systemctl".into(),
        p(&bin.join("systemctl")),
        "--k3s".into(),
        p(&bin.join("k3s")),
        "--backoff-ms".into(),
        "1".into(),
    ]
}

#[test]
fn watch_takes_signed_reports_from_the_node_and_refuses_forged_and_stale_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut watch = Watch::start(dir.path(), "worker-1", "10m");
    let key = hex::decode(KEY).unwrap();

    let body = serde_json::to_vec(&report("worker-1", now(), "n1")).unwrap();
    assert_eq!(post(&watch.url(), &body, None), 401);
    assert!(watch.next_line().contains("not signed"));
    let forged = sign(b"not the cluster key, just a guess", &body);
    assert_eq!(post(&watch.url(), &body, Some(&forged)), 401);
    assert!(watch.next_line().contains("signature does not match"));
    let stale = serde_json::to_vec(&report("worker-1", now() - 3600, "n2")).unwrap();
    assert_eq!(post(&watch.url(), &stale, Some(&sign(&key, &stale))), 401);
    assert!(watch.next_line().contains("stale"));
    let stranger = serde_json::to_vec(&report("intruder", now(), "n3")).unwrap();
    assert_eq!(
        post(&watch.url(), &stranger, Some(&sign(&key, &stranger))),
        403
    );
    assert!(watch.next_line().contains("not one of the watched nodes"));

    let args = node_root(dir.path(), &watch.url(), true);
    let node = Command::new(firstboot_bin()).args(&args).output().unwrap();
    let node_out = format!(
        "{}{}",
        String::from_utf8_lossy(&node.stdout),
        String::from_utf8_lossy(&node.stderr)
    );
    assert!(node.status.success(), "{node_out}");

    let (ok, out) = watch.finish();
    assert!(ok, "{out}");
    assert!(out.contains("worker-1 ready address"), "{out}");
    assert!(out.contains("all 1 nodes ready"), "{out}");
    for text in [&out, &node_out] {
        assert!(
            !text.contains(KEY) && !text.contains(&KEY[..16]),
            "key leaked: {text}"
        );
    }
    let status = std::fs::read_to_string(dir.path().join("root/run/piimg/status.json")).unwrap();
    assert!(!status.contains(&KEY[..16]));

    // The same signed report again is a replay; the watch has exited, so check the guard
    // through a fresh watch: it accepts once, refuses the second copy.
    let mut again = Watch::start(dir.path(), "worker-1,worker-2", "10m");
    assert_eq!(
        post(
            &again.url(),
            status.as_bytes(),
            Some(&sign(&key, status.as_bytes()))
        ),
        200
    );
    again.next_line();
    assert_eq!(
        post(
            &again.url(),
            status.as_bytes(),
            Some(&sign(&key, status.as_bytes()))
        ),
        401
    );
    assert!(again.next_line().contains("already received"));
    let _ = again.child.kill();
}

#[test]
fn watch_fails_when_a_node_reports_failure() {
    let dir = tempfile::tempdir().unwrap();
    let watch = Watch::start(dir.path(), "worker-1", "10m");
    let args = node_root(dir.path(), &watch.url(), false);
    let node = Command::new(firstboot_bin()).args(&args).output().unwrap();
    assert!(!node.status.success());
    let (ok, out) = watch.finish();
    assert!(!ok, "{out}");
    assert!(out.contains("node worker-1 failed: storage"), "{out}");
    assert!(out.contains("FAT filesystem"), "{out}");
}

/// Issue 15.3: a client that announces a body and never sends it blocked the whole watch:
/// other nodes' reports went unanswered and `--timeout` never fired.
#[test]
fn a_stalled_client_delays_nobody_and_the_timeout_still_ends_the_watch() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut watch = Watch::start(dir.path(), "worker-1,worker-2", "20s");
    let addr = watch
        .url()
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(b"POST /report HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nhello")
            .unwrap();
        stalled.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    let key = hex::decode(KEY).unwrap();
    let body = serde_json::to_vec(&report("worker-1", now(), "s1")).unwrap();
    let start = std::time::Instant::now();
    assert_eq!(post(&watch.url(), &body, Some(&sign(&key, &body))), 200);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "a valid report waited {:?} behind the stalled clients",
        start.elapsed()
    );
    assert!(watch.next_line().contains("worker-1"));
    // worker-2 never reports: the timeout must end the watch although the stalled
    // connections are still open.
    let start = std::time::Instant::now();
    let (ok, out) = watch.finish();
    assert!(!ok, "{out}");
    assert!(out.contains("still not ready: worker-2"), "{out}");
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    drop(stalled);
}

#[test]
fn watch_times_out_when_nodes_stay_silent() {
    let dir = tempfile::tempdir().unwrap();
    let watch = Watch::start(dir.path(), "worker-1,worker-2", "1s");
    let (ok, out) = watch.finish();
    assert!(!ok, "{out}");
    assert!(out.contains("still not ready: worker-1, worker-2"), "{out}");
}

/// A copy of the example cluster with a fresh secrets file; returns it and the report key.
fn example_profiles() -> (example::Example, Vec<u8>) {
    let made = example::example();
    let key = hex::decode(made.secrets.report_key.expose()).unwrap();
    (made, key)
}

#[test]
fn watch_expects_the_clusters_nodes_and_checks_with_the_secrets_files_key() {
    let (cluster, key) = example_profiles();
    let profiles = cluster.profiles.clone();
    // A profile's own host name is what its reports carry, so that is what is expected.
    let cp = profiles.join("control-plane.toml");
    let text = std::fs::read_to_string(&cp).unwrap();
    std::fs::write(&cp, format!("hostname = \"cp\"\n{text}")).unwrap();
    let mut watch = Watch::spawn(&[
        "--profiles".as_ref(),
        profiles.as_os_str(),
        "--timeout".as_ref(),
        "20s".as_ref(),
    ]);
    // The test key is not the cluster's: refused.
    let body = serde_json::to_vec(&report("worker-1", now(), "n1")).unwrap();
    let other = hex::decode(KEY).unwrap();
    assert_eq!(post(&watch.url(), &body, Some(&sign(&other, &body))), 401);
    assert!(watch.next_line().contains("signature does not match"));
    // Signed with the secrets file's report key: taken.
    assert_eq!(post(&watch.url(), &body, Some(&sign(&key, &body))), 200);
    assert!(watch.next_line().contains("worker-1 ready"));
    let (ok, out) = watch.finish();
    assert!(!ok, "{out}");
    assert!(
        out.contains("still not ready: cp, worker-2, worker-3, worker-4"),
        "{out}"
    );
    let hex_key = hex::encode(&key);
    assert!(!out.contains(&hex_key[..16]), "key leaked: {out}");
}

#[test]
fn watch_refuses_a_secrets_file_others_can_read() {
    let (cluster, _) = example_profiles();
    let profiles = cluster.profiles.clone();
    let secrets = profiles.join("secrets.toml");
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(PIIMG)
        .args(["watch", "--listen", "127.0.0.1:0", "--timeout", "1s"])
        .arg("--profiles")
        .arg(&profiles)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&secrets.display().to_string()) && err.contains("chmod 600"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "listened anyway");
}

/// Headless Chromium's view of a page: the DOM after its scripts ran for `budget_ms` of
/// virtual time, and a screenshot. Needs Debian's `chromium` (`.ci/run` installs it).
fn chromium(url: &str, screenshot: &Path, budget_ms: u32) -> String {
    let run = |extra: &[String]| {
        let out = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1280,720",
                &format!("--virtual-time-budget={budget_ms}"),
            ])
            .args(extra)
            .arg(url)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run chromium ({e}): install Debian's chromium package")
            });
        assert!(
            out.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&[format!("--screenshot={}", screenshot.display())]);
    run(&["--dump-dom".to_string()])
}

/// Issue 17: the bring-up page shows each node's steps and error (with its fix), the build id,
/// and the dashboard link once the server is ready; text from reports stays text.
#[test]
fn the_bring_up_page_shows_the_reports_in_chromium() {
    let cluster = example::example();
    let dir = cluster.dir.path();
    let key_file = dir.join("report.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let mut watch = Watch::spawn_plain(&[
        "--profiles".as_ref(),
        cluster.profiles.as_os_str(),
        "--nodes".as_ref(),
        "control-plane,worker-1,worker-2".as_ref(),
        "--key-file".as_ref(),
        key_file.as_os_str(),
        "--timeout".as_ref(),
        "120s".as_ref(),
    ]);
    let step =
        |name: &str, status: &str, error: Option<&str>| piimg_firstboot::report::StepReport {
            step: name.into(),
            status: status.into(),
            duration_ms: 5,
            error: error.map(Into::into),
        };
    let mut server = report("control-plane", now(), "n-cp");
    server.role = piimg_firstboot::config::Role::Server;
    server.build_id = "cpbuild0123456789abcdef".into();
    server.steps = vec![step("storage", "ok", None), step("join", "ok", None)];
    let mut worker = report("worker-1", now(), "n-w1");
    worker.stage = Stage::Failed;
    worker.build_id = "w1build0123456789abcdef".into();
    let fix = "storage: no disk matches by_id=usb-Samsung*; plug the SSD in, or fix [storage] selector in worker-1.toml";
    worker.steps = vec![
        step("storage", "failed", Some(fix)),
        step("join", "skipped", None),
    ];
    worker.error = Some(format!("{fix} <img src=x onerror=alert(1)>"));
    // A fleet board that matched no node, under the fleet's name.
    let mut board = report("bookworm-workers", now(), "n-board");
    board.stage = Stage::Unmatched;
    board.fleet = Some("bookworm-workers".into());
    board.hardware = Some(hardware("10000000beef0007", "d8:3a:dd:00:00:07"));
    board.error = Some("this board is no node of this fleet image: put `match = { serial = \"10000000beef0007\" }` in the profile of the node it should be".into());
    for r in [&server, &worker, &board] {
        let body = serde_json::to_vec(r).unwrap();
        let sig = sign(&hex::decode(KEY).unwrap(), &body);
        assert_eq!(post(&watch.url(), &body, Some(&sig)), 200);
        watch.next_line();
    }
    let page = format!("http://{}/", watch.addr);
    let shot = dir.join("watch-page.png");
    let dom = chromium(&page, &shot, 3000);
    for want in [
        "control-plane (server)",
        "worker-1",
        "worker-2",
        "no report yet",
        "build cpbuild012345678",
        "storage failed",
        "join skipped",
        "plug the SSD in, or fix [storage] selector in worker-1.toml",
        "1 of 3 nodes ready",
        "https://grafana.",
        "Boards that do not join",
        "board serial 10000000beef0007, mac d8:3a:dd:00:00:07 (eth0)",
        "fleet bookworm-workers",
    ] {
        assert!(dom.contains(want), "the page lacks {want:?}:\n{dom}");
    }
    // The markup in the report is shown as text, never made an element.
    assert!(dom.contains("&lt;img src=x onerror=alert(1)&gt;"), "{dom}");
    assert!(!dom.contains("<img"), "report text became markup:\n{dom}");
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot"
    );
    if let Some(keep) = std::env::var_os("PIIMG_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    // Reading the page is not a report: watch printed nothing for it.
    let _ = watch.child.kill();
    let (_, out) = watch.finish();
    assert!(!out.contains("rejected"), "{out}");
}

fn hardware(serial: &str, mac: &str) -> piimg_firstboot::hardware::Hardware {
    piimg_firstboot::hardware::Hardware {
        serial: Some(serial.into()),
        nics: vec![piimg_firstboot::hardware::Nic {
            name: "eth0".into(),
            mac: mac.into(),
        }],
    }
}

/// Issue 17: a fleet board that matches no node is shown with its serial and MAC (to copy
/// into a profile), and a second board that reports a name another board took is refused
/// (409), so it stops before its disk; the first board goes on.
#[test]
fn fleet_boards_are_shown_and_a_name_is_one_boards() {
    let dir = tempfile::tempdir().unwrap();
    let mut watch = Watch::start(dir.path(), "worker-1", "60s");
    let key = hex::decode(KEY).unwrap();
    let url = watch.url();
    let send = |r: &Report| {
        let body = serde_json::to_vec(r).unwrap();
        post(&url, &body, Some(&sign(&key, &body)))
    };

    let mut unmatched = report("pis", now(), "u1");
    unmatched.stage = Stage::Unmatched;
    unmatched.fleet = Some("pis".into());
    unmatched.hardware = Some(hardware("10000000cccc0003", "d8:3a:dd:00:00:0c"));
    unmatched.error = Some("this board is no node of this fleet image: put `match = { serial = \"10000000cccc0003\" }` in the profile".into());
    assert_eq!(send(&unmatched), 200);
    let line = watch.next_line();
    assert!(
        line.contains("board serial 10000000cccc0003, mac d8:3a:dd:00:00:0c (eth0)")
            && line.contains("fleet pis")
            && line.contains("match = { serial"),
        "{line}"
    );

    // Board A claims worker-1; board B, claiming it later, is refused and shown.
    let mut a = report("worker-1", now(), "a1");
    a.stage = Stage::Claiming;
    a.fleet = Some("pis".into());
    a.hardware = Some(hardware("10000000aaaa0001", "d8:3a:dd:00:00:0a"));
    assert_eq!(send(&a), 200);
    watch.next_line();
    let mut b = a.clone();
    b.nonce = "b1".into();
    b.hardware = Some(hardware("10000000bbbb0002", "d8:3a:dd:00:00:0b"));
    assert_eq!(send(&b), 409);
    let line = watch.next_line();
    assert!(
        line.contains("board serial 10000000bbbb0002")
            && line.contains("worker-1 was taken by another board (serial 10000000aaaa0001"),
        "{line}"
    );
    // Board A again (its ready report): still its name.
    let mut ready = a.clone();
    ready.nonce = "a2".into();
    ready.stage = Stage::Ready;
    assert_eq!(send(&ready), 200);
    let (ok, out) = watch.finish();
    assert!(ok, "{out}");
    assert!(out.contains("all 1 nodes ready"), "{out}");
}
