//! Runs the real `piimg-firstboot` binary against file-backed disks, with stand-ins for
//! systemctl and k3s and mounts recorded by the `--fake-mount` seam. Formatting, signature
//! detection, `sfdisk` and `mkfs.ext4` are real; results are checked with `e2fsck -fn`,
//! `sfdisk --verify` and `dumpe2fs`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::firstboot_command;
const CLUSTER_ID: &str = "c0ffee0123456789";
const LABEL: &str = "piimg-c0ffee01";
const KEY: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7";
const DISK_MB: u64 = 32;
const PART_OFFSET: u64 = 1 << 20;

struct Node {
    dir: tempfile::TempDir,
    disks: Vec<(PathBuf, String)>,
    role: &'static str,
    cluster_id: String,
    wipe: Option<String>,
    url: Option<String>,
    /// `[root] grow` of node.toml.
    grow: bool,
    /// The boot disk and the number of its root partition (the devices file's `root`).
    root_disk: Option<(PathBuf, u32)>,
}

fn sh(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

/// The disk's bytes, for byte-identical checks (compared directly: hashing in a debug build
/// is slow).
fn digest(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

impl Node {
    fn new() -> Node {
        let node = Node {
            dir: tempfile::tempdir().unwrap(),
            disks: Vec::new(),
            role: "server",
            cluster_id: CLUSTER_ID.into(),
            wipe: None,
            url: None,
            grow: false,
            root_disk: None,
        };
        let stand_ins = node.root().join("stand-ins");
        std::fs::create_dir_all(&stand_ins).unwrap();
        let log = node.path("calls.log");
        // When a unit is started, it also logs which mount points the fake-mount seam holds.
        let systemctl = format!(
            "#!/bin/sh\necho systemctl \"$@\" >> {log}\nif [ \"$1\" = start ]; then echo \"mounts: $(ls {mounts} 2>/dev/null | tr '\\n' ' ')\" >> {log}; fi\n",
            log = log.display(),
            mounts = node.path("mounts").display()
        );
        // `kubectl delete` fails while the file `fail-delete` exists (a cluster that refuses).
        let k3s = format!(
            "#!/bin/sh\necho k3s \"$@\" >> {}\ncase \"$*\" in *readyz*) echo ok;; *Ready*) echo True;; *' delete '*) if [ -e {} ]; then echo refused >&2; exit 1; fi;; esac\n",
            log.display(),
            node.path("fail-delete").display()
        );
        let update_grub = format!("#!/bin/sh\necho update-grub \"$@\" >> {}\n", log.display());
        for (name, text) in [
            ("systemctl", systemctl),
            ("k3s", k3s),
            ("update-grub", update_grub),
        ] {
            let p = stand_ins.join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        node
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn node_path(&self, abs: &str) -> PathBuf {
        self.root().join(abs.trim_start_matches('/'))
    }

    /// Writes `text` at `abs` in the node's root (parents made); returns the host path.
    fn write_node_file(&self, abs: &str, text: &str) -> PathBuf {
        let path = self.node_path(abs);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Adds a blank (sparse) disk that the selector matches.
    fn add_disk(&mut self, serial: &str) -> PathBuf {
        let path = self.path(&format!("{serial}.img"));
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(DISK_MB << 20).unwrap();
        self.disks.push((path.clone(), serial.into()));
        path
    }

    fn write_config(&self) {
        let mut toml = format!(
            r#"schema = 1
cluster = "homelab"
cluster_id = "{}"
node = "worker-1"
role = "{}"
build_id = "build-42"
k3s_version = "v1.31.4+k3s1"

[storage]
label = "{LABEL}"
mount_point = "/mnt/storage"
"#,
            self.cluster_id, self.role
        );
        if let Some(w) = &self.wipe {
            toml.push_str(&format!("wipe = \"{w}\"\n"));
        }
        toml.push_str(
            r#"
[storage.selector]
by_id = "usb-Samsung_SSD_*"

[k3s]
data_dir = "/mnt/storage/k3s"
staged_manifests = "/var/lib/piimg/manifests"
staged_images = "/var/lib/piimg/images"

[report]
"#,
        );
        if let Some(u) = &self.url {
            toml.push_str(&format!("url = \"{u}\"\n"));
        }
        toml.push_str(&format!("key = \"{KEY}\"\n"));
        if self.grow {
            toml.push_str("\n[root]\ngrow = true\n");
        }
        let cfg = self.node_path("/etc/piimg/node.toml");
        std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
        std::fs::write(cfg, toml).unwrap();
        let mut devices = String::new();
        for (path, serial) in &self.disks {
            devices.push_str(&format!(
                "[[disk]]\npath = \"{}\"\nids = [\"usb-Samsung_SSD_T7_{serial}-0:0\"]\nserial = \"{serial}\"\ntransport = \"usb\"\n\n",
                path.display()
            ));
        }
        if let Some((path, number)) = &self.root_disk {
            devices.push_str(&format!(
                "[[disk]]\npath = \"{}\"\nids = [\"mmc-SD_card\"]\ntransport = \"mmc\"\nroot = true\nroot_partition = {number}\n",
                path.display()
            ));
        }
        std::fs::write(self.path("devices.toml"), devices).unwrap();
    }

    fn command(&self, extra: &[&str]) -> Command {
        self.write_config();
        let mut cmd = firstboot_command();
        cmd.arg("--root")
            .arg(self.root())
            .arg("--devices")
            .arg(self.path("devices.toml"))
            .arg("--fake-mount")
            .arg(self.path("mounts"))
            .arg("--systemctl")
            .arg(self.root().join("stand-ins/systemctl"))
            .arg("--k3s")
            .arg(self.root().join("stand-ins/k3s"))
            .arg("--update-grub")
            .arg(self.root().join("stand-ins/update-grub"))
            .args(["--backoff-ms", "1"])
            .args(extra)
            .env("RUST_LOG", "trace")
            .env_remove("PIIMG_FIRSTBOOT_CRASH_AFTER");
        cmd
    }

    fn run(&self, extra: &[&str]) -> Output {
        let out = self.command(extra).output().unwrap();
        assert_no_secret(&out);
        out
    }

    fn run_ok(&self) -> Output {
        let out = self.run(&[]);
        assert!(out.status.success(), "{}", text(&out));
        out
    }

    fn status_json(&self) -> serde_json::Value {
        let p = self.node_path("/run/piimg/status.json");
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(!text.contains(KEY));
        serde_json::from_str(&text).unwrap()
    }

    fn state_json(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.node_path("/var/lib/piimg/state.json")).unwrap();
        assert!(!text.contains(KEY));
        serde_json::from_str(&text).unwrap()
    }

    /// What the fake-mount seam recorded for the storage mount point.
    fn mount_record(&self) -> Option<String> {
        let entries = std::fs::read_dir(self.path("mounts")).ok()?;
        let found = entries.flatten().find(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with("root-mnt-storage")
        })?;
        std::fs::read_to_string(found.path()).ok()
    }

    /// Forget everything on the root filesystem, as a re-image does.
    fn reimage(&self) {
        for d in ["/var/lib/piimg/state.json", "/run/piimg"] {
            let p = self.node_path(d);
            let _ = std::fs::remove_file(&p);
            let _ = std::fs::remove_dir_all(&p);
        }
        let _ = std::fs::remove_dir_all(self.path("mounts"));
        let _ = std::fs::remove_file(self.path("calls.log"));
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_no_secret(out: &Output) {
    let all = text(out);
    assert!(!all.contains(KEY), "the report key leaked:\n{all}");
    assert!(
        !all.contains(&KEY[..16]),
        "part of the report key leaked:\n{all}"
    );
}

fn assert_formatted(disk: &Path) {
    let spec = format!("{}?offset={PART_OFFSET}", disk.display());
    let fsck = sh("e2fsck", &["-fn", &spec]);
    assert!(fsck.status.success(), "e2fsck: {}", text(&fsck));
    let verify = sh("sfdisk", &["--verify", disk.to_str().unwrap()]);
    assert!(
        verify.status.success(),
        "sfdisk --verify: {}",
        text(&verify)
    );
    let dump = sh("dumpe2fs", &["-h", &spec]);
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains(&format!("Filesystem volume name:   {LABEL}")),
        "{dump}"
    );
    let json = sh("sfdisk", &["--json", disk.to_str().unwrap()]);
    let json = String::from_utf8_lossy(&json.stdout);
    assert!(json.contains(&format!("piimg-{CLUSTER_ID}")), "{json}");
    assert!(json.contains("\"label\":\"gpt\"") || json.contains("\"label\": \"gpt\""));
}

#[test]
fn blank_disk_is_formatted_labelled_mounted_and_k3s_started() {
    let mut node = Node::new();
    let disk = node.add_disk("S1");
    let out = node.run_ok();
    assert!(String::from_utf8_lossy(&out.stdout).contains("piimg: worker-1 ready"));
    assert_formatted(&disk);
    let record = node.mount_record().expect("mounted");
    assert!(
        record.contains(&format!("offset={PART_OFFSET}")),
        "{record}"
    );
    let status = node.status_json();
    assert_eq!(status["stage"], "ready");
    assert_eq!(status["storage"]["action"], "formatted");
    let state = node.state_json();
    for step in ["storage", "k3s-data", "join", "report"] {
        assert_eq!(state["steps"][step]["status"], "ok", "{state}");
    }
    let calls = std::fs::read_to_string(node.path("calls.log")).unwrap();
    assert!(
        calls.contains("systemctl start --no-block k3s.service"),
        "{calls}"
    );
    assert!(calls.contains("get node worker-1"), "{calls}");
    let issue = std::fs::read_to_string(node.node_path("/etc/issue.d/piimg.issue")).unwrap();
    assert!(issue.starts_with("piimg: worker-1 ready"), "{issue}");

    let status_cmd = node.run(&["status"]);
    let shown = String::from_utf8_lossy(&status_cmd.stdout);
    assert!(
        shown.contains("storage: ok") && shown.contains("formatted"),
        "{shown}"
    );
}

#[test]
fn our_disk_with_data_is_mounted_never_reformatted() {
    let mut node = Node::new();
    let disk = node.add_disk("S1");
    node.run_ok();
    let hello = node.path("hello.txt");
    std::fs::write(&hello, "kept across re-images\n").unwrap();
    let spec = format!("{}?offset={PART_OFFSET}", disk.display());
    let w = sh(
        "debugfs",
        &[
            "-w",
            "-R",
            &format!("write {} hello.txt", hello.display()),
            &spec,
        ],
    );
    assert!(w.status.success(), "{}", text(&w));
    let before = digest(&disk);

    node.reimage();
    let out = node.run_ok();
    assert!(digest(&disk) == before, "the disk was written to");
    assert!(node.mount_record().is_some());
    assert_eq!(node.status_json()["storage"]["action"], "mounted");
    let cat = sh("debugfs", &["-R", "cat hello.txt", &spec]);
    assert_eq!(
        String::from_utf8_lossy(&cat.stdout),
        "kept across re-images\n",
        "{}",
        text(&out)
    );
    assert_formatted(&disk);
}

fn assert_refused(node: &Node, disks: &[PathBuf], reason: &str) {
    let before: Vec<Vec<u8>> = disks.iter().map(|d| digest(d)).collect();
    let out = node.run(&[]);
    assert!(!out.status.success(), "{}", text(&out));
    let after: Vec<Vec<u8>> = disks.iter().map(|d| digest(d)).collect();
    assert!(before == after, "a refused disk was modified");
    assert!(node.mount_record().is_none(), "a refused disk was mounted");
    let status = node.status_json();
    assert_eq!(status["stage"], "failed");
    let error = status["error"].as_str().unwrap().to_owned();
    assert!(error.contains(reason), "{error}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("FAILED"),
        "{}",
        text(&out)
    );
    assert_eq!(node.state_json()["steps"]["storage"]["status"], "failed");
    let calls = std::fs::read_to_string(node.path("calls.log")).unwrap_or_default();
    assert!(
        !calls.contains("systemctl"),
        "k3s started without storage: {calls}"
    );
}

#[test]
fn another_filesystem_is_refused_untouched() {
    let mut node = Node::new();
    let disk = node.add_disk("S1");
    assert!(sh("mkfs.vfat", &[disk.to_str().unwrap()]).status.success());
    assert_refused(&node, &[disk], "FAT filesystem");
}

#[test]
fn a_partition_table_is_refused_untouched() {
    let mut node = Node::new();
    let disk = node.add_disk("S1");
    let mut child = Command::new("sfdisk")
        .arg(&disk)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: dos\n,,83\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_refused(&node, &[disk], "MBR partition table");
}

#[test]
fn a_foreign_piimg_disk_is_refused_untouched() {
    let mut node = Node::new();
    let disk = node.add_disk("S1");
    node.cluster_id = "0ther0123456789a".into();
    node.run_ok();
    node.reimage();
    node.cluster_id = CLUSTER_ID.into();
    assert_refused(&node, &[disk], "another cluster");
}

#[test]
fn a_whole_disk_piimg_label_is_refused_untouched() {
    let mut node = Node::new();
    let disk = node.add_disk("S1");
    assert!(
        sh("mkfs.ext4", &["-q", "-L", LABEL, disk.to_str().unwrap()])
            .status
            .success()
    );
    assert_refused(&node, &[disk], "a piimg label");
}

#[test]
fn two_matching_disks_are_refused_untouched() {
    let mut node = Node::new();
    let a = node.add_disk("S1");
    let b = node.add_disk("S2");
    assert_refused(&node, &[a, b], "2 disks match");
}

#[test]
fn wipe_names_the_serial_that_may_be_erased() {
    let mut node = Node::new();
    let disk = node.add_disk("S1");
    assert!(sh("mkfs.vfat", &[disk.to_str().unwrap()]).status.success());
    node.wipe = Some("OTHER".into());
    assert_refused(&node, std::slice::from_ref(&disk), "FAT filesystem");
    node.wipe = Some("S1".into());
    node.run_ok();
    assert_formatted(&disk);
}

#[test]
fn dry_run_changes_nothing() {
    let mut node = Node::new();
    let disk = node.add_disk("S1");
    let before = digest(&disk);
    let out = node.run(&["--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("would format"));
    assert!(digest(&disk) == before, "dry run wrote to the disk");
    assert!(!node.node_path("/var/lib/piimg/state.json").exists());
    assert!(node.mount_record().is_none());
}

#[test]
fn a_kill_after_any_step_resumes_to_the_same_result() {
    for point in [
        "partition",
        "format",
        "storage",
        "k3s-data",
        "join",
        "report",
    ] {
        let mut node = Node::new();
        let disk = node.add_disk("S1");
        let out = node
            .command(&[])
            .env("PIIMG_FIRSTBOOT_CRASH_AFTER", point)
            .output()
            .unwrap();
        assert_no_secret(&out);
        assert!(!out.status.success(), "{point}: not killed: {}", text(&out));
        let after_crash = digest(&disk);
        let out = node.run_ok();
        assert_formatted(&disk);
        if !matches!(point, "partition") {
            assert!(
                digest(&disk) == after_crash,
                "{point}: reformatted on resume"
            );
        }
        assert!(node.mount_record().is_some(), "{point}");
        assert_eq!(
            node.status_json()["stage"],
            "ready",
            "{point}: {}",
            text(&out)
        );
        let state = node.state_json();
        assert!(state.get("formatting").is_none(), "{point}: {state}");
    }
}

#[test]
fn manifests_follow_the_image_and_hand_added_files_stay() {
    let mut node = Node::new();
    node.add_disk("S1");
    let staged = node.node_path("/var/lib/piimg/manifests");
    std::fs::create_dir_all(&staged).unwrap();
    std::fs::write(staged.join("a.yaml"), "a: 1\n").unwrap();
    std::fs::write(staged.join("b.yaml"), "b: 1\n").unwrap();
    let images = node.node_path("/var/lib/piimg/images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(images.join("airgap.tar.zst"), "zst").unwrap();
    node.run_ok();
    let dest = node.node_path("/mnt/storage/k3s/server/manifests");
    assert_eq!(
        std::fs::read_to_string(dest.join("b.yaml")).unwrap(),
        "b: 1\n"
    );
    assert!(node
        .node_path("/mnt/storage/k3s/agent/images/airgap.tar.zst")
        .exists());
    std::fs::write(dest.join("mine.yaml"), "hand: 1\n").unwrap();

    // A newer image drops b.yaml and changes a.yaml.
    std::fs::remove_file(staged.join("b.yaml")).unwrap();
    std::fs::write(staged.join("a.yaml"), "a: 2\n").unwrap();
    node.reimage();
    node.run_ok();
    assert!(!dest.join("b.yaml").exists());
    assert_eq!(
        std::fs::read_to_string(dest.join("a.yaml")).unwrap(),
        "a: 2\n"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("mine.yaml")).unwrap(),
        "hand: 1\n"
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Stages `rel` under `staged` with `mode`, its folders 0700 as the plan makes them.
fn stage(staged: &Path, rel: &str, content: &str, mode: u32) {
    let path = staged.join(rel);
    let mut dir = path.clone();
    dir.pop();
    std::fs::create_dir_all(&dir).unwrap();
    let mut d = dir.as_path();
    while d != staged {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        d = d.parent().unwrap();
    }
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn manifests_in_folders_keep_their_modes_and_dropped_folders_go() {
    let mut node = Node::new();
    node.add_disk("S1");
    let staged = node.node_path("/var/lib/piimg/manifests");
    stage(&staged, "namespaces.yaml", "kind: Namespace\n", 0o644);
    stage(&staged, "minio/minio.yaml", "kind: Deployment\n", 0o644);
    stage(
        &staged,
        "minio/minio-credentials.yaml",
        "kind: Secret\n",
        0o600,
    );
    stage(&staged, "ray/deep/ray.yaml", "kind: RayCluster\n", 0o644);
    node.run_ok();
    let dest = node.node_path("/mnt/storage/k3s/server/manifests");
    assert_eq!(
        std::fs::read_to_string(dest.join("minio/minio-credentials.yaml")).unwrap(),
        "kind: Secret\n"
    );
    assert_eq!(mode(&dest.join("minio/minio-credentials.yaml")), 0o600);
    assert_eq!(mode(&dest.join("minio/minio.yaml")), 0o644);
    assert_eq!(mode(&dest.join("minio")), 0o700);
    assert_eq!(mode(&dest.join("ray/deep")), 0o700);
    assert!(dest.join("ray/deep/ray.yaml").is_file());
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(node.node_path("/mnt/storage/k3s/piimg-sync.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        record["manifests"],
        serde_json::json!([
            "minio/minio-credentials.yaml",
            "minio/minio.yaml",
            "namespaces.yaml",
            "ray/deep/ray.yaml"
        ])
    );
    std::fs::write(dest.join("minio/mine.yaml"), "hand: 1\n").unwrap();
    let before = std::fs::metadata(dest.join("minio/minio.yaml"))
        .unwrap()
        .modified()
        .unwrap();

    // A newer image drops ray and makes minio.yaml private without changing it.
    std::fs::remove_dir_all(staged.join("ray")).unwrap();
    std::fs::set_permissions(
        staged.join("minio/minio.yaml"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    node.reimage();
    node.run_ok();
    assert!(!dest.join("ray").exists(), "the dropped folder stays");
    assert_eq!(mode(&dest.join("minio/minio.yaml")), 0o600);
    assert_eq!(
        std::fs::metadata(dest.join("minio/minio.yaml"))
            .unwrap()
            .modified()
            .unwrap(),
        before,
        "an unchanged manifest was rewritten (k3s would re-apply it)"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("minio/mine.yaml")).unwrap(),
        "hand: 1\n"
    );
    assert!(dest.join("namespaces.yaml").is_file());
}

#[test]
fn an_agent_waits_for_the_kubelet_and_reports_failure_when_k3s_never_gets_ready() {
    let mut node = Node::new();
    node.role = "agent";
    node.add_disk("S1");
    // The stand-in k3s says ready, but no kubelet answers: the wait must end, bounded.
    let out = node.run(&["--kubelet-healthz", "http://127.0.0.1:9/healthz"]);
    assert!(!out.status.success(), "{}", text(&out));
    let status = node.status_json();
    assert_eq!(status["stage"], "failed");
    assert!(
        status["error"]
            .as_str()
            .unwrap()
            .contains("kubelet healthz"),
        "{status}"
    );
    let calls = std::fs::read_to_string(node.path("calls.log")).unwrap();
    assert!(
        calls.contains("start --no-block k3s-agent.service"),
        "{calls}"
    );
}

/// fstab mounts the SSD by label on later boots. If another disk carrying the label (an old
/// node's SSD plugged in too) was mounted at the mount point instead of the chosen disk,
/// first boot refuses to go on (k3s must not start on it) and names what is mounted there.
#[test]
fn another_disk_mounted_at_the_mount_point_is_refused() {
    let mut node = Node::new();
    let disk = node.add_disk("S1");
    node.run_ok();
    let entry = std::fs::read_dir(node.path("mounts"))
        .unwrap()
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with("root-mnt-storage")
        })
        .expect("a mount record");
    let (record_path, record) = (entry.path(), std::fs::read_to_string(entry.path()).unwrap());

    // The same disk mounted there already (fstab on a later boot): fine, not mounted twice.
    node.reimage();
    std::fs::create_dir_all(node.path("mounts")).unwrap();
    std::fs::write(&record_path, &record).unwrap();
    node.run_ok();
    assert_eq!(node.status_json()["storage"]["action"], "mounted");

    // Another disk mounted there: refused, the chosen disk untouched.
    node.reimage();
    std::fs::create_dir_all(node.path("mounts")).unwrap();
    let other = node.path("old-ssd.img");
    let swapped = record.replace(&disk.display().to_string(), &other.display().to_string());
    assert_ne!(swapped, record);
    std::fs::write(&record_path, &swapped).unwrap();
    let before = digest(&disk);
    let out = node.run(&[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(digest(&disk) == before, "the chosen disk was written to");
    let status = node.status_json();
    assert_eq!(status["stage"], "failed");
    let error = status["error"].as_str().unwrap();
    assert!(
        error.contains("already has") && error.contains("old-ssd.img"),
        "{error}"
    );
    assert_eq!(
        std::fs::read_to_string(&record_path).unwrap(),
        swapped,
        "first boot mounted over the other disk"
    );
}

fn calls(node: &Node) -> String {
    std::fs::read_to_string(node.path("calls.log")).unwrap_or_default()
}

fn step_status(node: &Node, step: &str) -> serde_json::Value {
    let status = node.status_json();
    status["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == step)
        .unwrap_or_else(|| panic!("no step {step}: {status}"))
        .clone()
}

/// Issue 13, 4: k3s never deletes what a vanished manifest created, so first boot parks a
/// dropped manifest outside `server/manifests` and, once k3s is ready, deletes its objects
/// with `kubectl delete -f` exactly once, also across a power cut.
#[test]
fn a_service_turned_off_has_its_objects_deleted_once_after_k3s_is_ready() {
    let mut node = Node::new();
    node.add_disk("S1");
    let staged = node.node_path("/var/lib/piimg/manifests");
    stage(&staged, "a.yaml", "kind: ConfigMap\n", 0o644);
    stage(&staged, "svc/b.yaml", "kind: HelmChart\n", 0o600);
    node.run_ok();
    let dest = node.node_path("/mnt/storage/k3s/server/manifests");
    let parked = node.node_path("/mnt/storage/k3s/piimg-removed/svc/b.yaml");
    std::fs::write(dest.join("mine.yaml"), "hand: 1\n").unwrap();
    assert!(!calls(&node).contains(" delete "), "{}", calls(&node));

    // A newer image turns the service off; the power fails right after the sync.
    std::fs::remove_dir_all(staged.join("svc")).unwrap();
    node.reimage();
    let out = node
        .command(&[])
        .env("PIIMG_FIRSTBOOT_CRASH_AFTER", "k3s-data")
        .output()
        .unwrap();
    assert!(!out.status.success(), "not killed: {}", text(&out));
    assert!(!dest.join("svc/b.yaml").exists(), "k3s still sees it");
    assert_eq!(
        std::fs::read_to_string(&parked).unwrap(),
        "kind: HelmChart\n"
    );
    assert_eq!(mode(&parked), 0o600);
    assert!(
        !calls(&node).contains(" delete "),
        "deleted before k3s was up"
    );

    let out = node.run_ok();
    let log = calls(&node);
    let delete = format!(
        "k3s kubectl --kubeconfig {} delete --ignore-not-found -f {}",
        node.node_path("/etc/rancher/k3s/k3s.yaml").display(),
        parked.display()
    );
    let (ready, deleted) = (log.find("get node worker-1"), log.find(&delete));
    assert!(
        ready.is_some() && deleted.is_some() && ready < deleted,
        "not deleted after k3s was ready:\n{log}\n{}",
        text(&out)
    );
    assert_eq!(log.matches(" delete ").count(), 1, "{log}");
    assert!(!parked.exists());
    assert!(!node
        .node_path("/mnt/storage/k3s/piimg-removed/svc")
        .exists());
    assert_eq!(step_status(&node, "prune")["status"], "ok");
    assert_eq!(
        std::fs::read_to_string(dest.join("mine.yaml")).unwrap(),
        "hand: 1\n"
    );

    // Later boots delete nothing more.
    node.reimage();
    node.run_ok();
    assert!(!calls(&node).contains(" delete "), "{}", calls(&node));
    assert!(dest.join("a.yaml").is_file() && dest.join("mine.yaml").is_file());
}

/// A refused delete is reported, does not stop the node, and is retried next boot; a manifest
/// staged again before its deletion succeeded is not deleted at all.
#[test]
fn a_failed_delete_is_retried_and_a_restaged_manifest_is_not_deleted() {
    let mut node = Node::new();
    node.add_disk("S1");
    let staged = node.node_path("/var/lib/piimg/manifests");
    stage(&staged, "a.yaml", "kind: ConfigMap\n", 0o644);
    stage(&staged, "b.yaml", "kind: Deployment\n", 0o644);
    stage(&staged, "c.yaml", "kind: Service\n", 0o644);
    node.run_ok();
    let park = node.node_path("/mnt/storage/k3s/piimg-removed");

    std::fs::remove_file(staged.join("b.yaml")).unwrap();
    std::fs::remove_file(staged.join("c.yaml")).unwrap();
    std::fs::write(node.path("fail-delete"), "").unwrap();
    node.reimage();
    node.run_ok();
    let prune = step_status(&node, "prune");
    assert_eq!(prune["status"], "failed", "{prune}");
    assert!(
        prune["error"].as_str().unwrap().contains("b.yaml"),
        "{prune}"
    );
    assert_eq!(node.status_json()["stage"], "ready");
    assert!(park.join("b.yaml").is_file() && park.join("c.yaml").is_file());

    // The next image stages b.yaml again: its pending deletion is cancelled.
    stage(&staged, "b.yaml", "kind: Deployment\n", 0o644);
    std::fs::remove_file(node.path("fail-delete")).unwrap();
    node.reimage();
    node.run_ok();
    let log = calls(&node);
    assert!(!log.contains("b.yaml"), "{log}");
    assert!(
        log.contains(&park.join("c.yaml").display().to_string()),
        "{log}"
    );
    assert!(!park.join("b.yaml").exists() && !park.join("c.yaml").exists());
    assert!(node
        .node_path("/mnt/storage/k3s/server/manifests/b.yaml")
        .is_file());
    assert_eq!(step_status(&node, "prune")["status"], "ok");
}

/// The fake-mount seam's log of mounts, in the order they were made: mount points as seen on
/// the node (without the test root).
fn mount_order(node: &Node) -> Vec<String> {
    let root = node.root().display().to_string();
    std::fs::read_to_string(node.path("mounts/order.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.replacen(&root, "", 1))
        .collect()
}

/// Issue 13, 2: the kubelet's root-dir and the pod logs go to the SSD by bind mounts, made
/// after the SSD is mounted and before k3s starts, on every boot; a bind already there is
/// kept.
#[test]
fn kubelet_folders_are_bind_mounted_from_the_ssd_before_k3s_starts() {
    let mut node = Node::new();
    node.add_disk("S1");
    for boot in ["first", "later"] {
        node.run_ok();
        let order = mount_order(&node);
        assert_eq!(order.len(), 3, "{boot}: {order:?}");
        assert!(order[0].starts_with("/mnt/storage source="), "{order:?}");
        assert!(
            order[1].starts_with("/var/lib/kubelet ")
                && order[1].contains(&format!("offset={PART_OFFSET} root=/kubelet fstype=bind")),
            "{boot}: {order:?}"
        );
        assert!(
            order[2].starts_with("/var/log/pods ") && order[2].contains("root=/pod-logs"),
            "{boot}: {order:?}"
        );
        assert!(node.node_path("/mnt/storage/kubelet").is_dir());
        assert!(node.node_path("/mnt/storage/pod-logs").is_dir());
        let log = calls(&node);
        let started = log
            .lines()
            .skip_while(|l| !l.starts_with("systemctl start"))
            .nth(1)
            .unwrap_or_default();
        assert!(
            started.contains("root-var-lib-kubelet") && started.contains("root-var-log-pods"),
            "{boot}: k3s started before the binds: {log}"
        );
        assert_eq!(step_status(&node, "binds")["status"], "ok");
        // A reboot drops every mount.
        node.reimage();
    }

    // Run again without a reboot: the binds are there, nothing is mounted twice.
    node.run_ok();
    let before = mount_order(&node);
    node.run_ok();
    assert_eq!(mount_order(&node), before);
}

/// Something other than the SSD's folder mounted on `/var/lib/kubelet` is refused, left
/// mounted, and k3s is not started.
#[test]
fn a_foreign_mount_on_the_kubelet_folder_is_refused() {
    let mut node = Node::new();
    node.add_disk("S1");
    node.run_ok();
    let record = std::fs::read_dir(node.path("mounts"))
        .unwrap()
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with("root-var-lib-kubelet")
        })
        .expect("a bind record")
        .path();
    for foreign in [
        "source=/dev/mmcblk0p2 offset=0 root=/ fstype=ext4\n".to_owned(),
        // The right disk but the wrong folder of it.
        std::fs::read_to_string(&record)
            .unwrap()
            .replace("root=/kubelet", "root=/k3s"),
    ] {
        node.reimage();
        std::fs::create_dir_all(node.path("mounts")).unwrap();
        std::fs::write(&record, &foreign).unwrap();
        let out = node.run(&[]);
        assert!(!out.status.success(), "{}", text(&out));
        let status = node.status_json();
        assert_eq!(status["stage"], "failed");
        let error = status["error"].as_str().unwrap();
        assert!(
            error.contains("/var/lib/kubelet already has")
                && error.contains("/mnt/storage/kubelet"),
            "{error}"
        );
        assert!(
            !calls(&node).contains("systemctl start"),
            "{}",
            calls(&node)
        );
        assert_eq!(std::fs::read_to_string(&record).unwrap(), foreign);
    }
}

/// Issue 13, 3: `kernel.cmdline_extra` reaches GRUB only through `update-grub`. First boot runs
/// it once per content of the drop-in and reboots at most once per content when the running
/// kernel lacks a parameter (a direct kernel boot never gets them: no loop).
#[test]
fn the_grub_dropin_is_applied_once_per_change_with_at_most_one_reboot() {
    let mut node = Node::new();
    node.add_disk("S1");
    let dropin = node.write_node_file(
        "/etc/default/grub.d/90-piimg.cfg",
        "# Written by piimg.\nGRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX cgroup_enable=memory apparmor=0\"\n",
    );
    let cmdline = node.write_node_file("/proc/cmdline", "console=ttyS0 root=/dev/vda\n");
    let boot = |node: &Node| {
        let _ = std::fs::remove_file(node.path("calls.log"));
        let out = node.run_ok();
        let log = calls(node);
        (
            log.matches("update-grub").count(),
            log.matches("systemctl reboot").count(),
            log.contains("start --no-block k3s.service"),
            text(&out),
        )
    };

    let (grub, reboot, k3s, out) = boot(&node);
    assert_eq!((grub, reboot, k3s), (1, 1, false), "{out}");
    // The kernel still lacks them (booted without GRUB): no second update-grub, no reboot.
    for _ in 0..2 {
        let (grub, reboot, k3s, out) = boot(&node);
        assert_eq!((grub, reboot, k3s), (0, 0, true), "{out}");
        assert_eq!(step_status(&node, "kernel-cmdline")["status"], "ok");
    }
    let state = node.state_json();
    assert_eq!(state["grub_applied"], state["grub_rebooted"], "{state}");

    // A newer image changes the parameters: applied once more, one more reboot.
    let text2 = std::fs::read_to_string(&dropin)
        .unwrap()
        .replace("apparmor=0", "apparmor=1");
    std::fs::write(&dropin, text2).unwrap();
    let (grub, reboot, k3s, out) = boot(&node);
    assert_eq!((grub, reboot, k3s), (1, 1, false), "{out}");
    std::fs::write(&cmdline, "root=/dev/sda1 cgroup_enable=memory apparmor=1\n").unwrap();
    let (grub, reboot, k3s, out) = boot(&node);
    assert_eq!((grub, reboot, k3s), (0, 0, true), "{out}");
}

/// A kernel already started with the parameters needs no reboot; a missing update-grub is
/// reported with the package that provides it, k3s still starts, and the next boot retries.
#[test]
fn a_missing_update_grub_names_its_package_and_stops_nothing() {
    let mut node = Node::new();
    node.add_disk("S1");
    node.write_node_file(
        "/etc/default/grub.d/90-piimg.cfg",
        "GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX quiet nosmt\"\n",
    );
    node.write_node_file("/proc/cmdline", "root=/dev/sda1 quiet nosmt\n");
    let stand_in = node.root().join("stand-ins/update-grub");
    let saved = std::fs::read(&stand_in).unwrap();
    std::fs::remove_file(&stand_in).unwrap();
    for _ in 0..2 {
        node.run_ok();
        let step = step_status(&node, "kernel-cmdline");
        assert_eq!(step["status"], "failed", "{step}");
        assert!(
            step["error"].as_str().unwrap().contains("grub2-common"),
            "{step}"
        );
        assert_eq!(node.status_json()["stage"], "ready");
        assert!(calls(&node).contains("start --no-block k3s.service"));
    }
    std::fs::write(&stand_in, saved).unwrap();
    std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _ = std::fs::remove_file(node.path("calls.log"));
    node.run_ok();
    let log = calls(&node);
    assert_eq!(log.matches("update-grub").count(), 1, "{log}");
    assert!(!log.contains("reboot"), "{log}");
    assert_eq!(step_status(&node, "kernel-cmdline")["status"], "ok");
}

const MIB: u64 = 1 << 20;
const SD_MB: u64 = 40;
const ROOT_START: u64 = 18432;
const ROOT_SECTORS: u64 = 24 * 2048;

/// Writes `script` to `sfdisk` for `disk`.
fn sfdisk(disk: &Path, script: &str) {
    use std::io::Write;
    let mut child = Command::new("sfdisk")
        .arg("--quiet")
        .arg(disk)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "sfdisk {script}");
}

/// A boot disk as the base images have it: a small boot partition and the root filesystem
/// right behind it, the image's size (free space below the growth threshold), built as the
/// image tests do (sfdisk on a file, mkfs on a partition-sized file, joined with dd). `label`
/// is `gpt` or `dos`; `mkfs` makes the root filesystem.
fn boot_disk(node: &Node, label: &str, mkfs: &[&str]) -> PathBuf {
    let disk = node.path(&format!("sd-{label}.img"));
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(SD_MB * MIB)
        .unwrap();
    let (boot, root) = if label == "gpt" {
        ("U", "L")
    } else {
        ("c", "83")
    };
    sfdisk(
        &disk,
        &format!("label: {label}\nstart=2048, size=16384, type={boot}\nstart={ROOT_START}, size={ROOT_SECTORS}, type={root}\n"),
    );
    let part = node.path("root-part.img");
    std::fs::File::create(&part)
        .unwrap()
        .set_len(ROOT_SECTORS * 512)
        .unwrap();
    let mut args = mkfs.to_vec();
    args.push(part.to_str().unwrap());
    let out = sh(args[0], &args[1..]);
    assert!(out.status.success(), "{}", text(&out));
    let dd = sh(
        "dd",
        &[
            &format!("if={}", part.display()),
            &format!("of={}", disk.display()),
            "bs=512",
            &format!("seek={ROOT_START}"),
            "conv=notrunc",
            "status=none",
        ],
    );
    assert!(dd.status.success(), "{}", text(&dd));
    disk
}

fn root_spec(disk: &Path) -> String {
    format!("{}?offset={}", disk.display(), ROOT_START * 512)
}

fn block_count(disk: &Path) -> u64 {
    let dump = sh("dumpe2fs", &["-h", &root_spec(disk)]);
    let dump = String::from_utf8_lossy(&dump.stdout).into_owned();
    dump.lines()
        .find_map(|l| l.strip_prefix("Block count:"))
        .unwrap_or_else(|| panic!("{dump}"))
        .trim()
        .parse()
        .unwrap()
}

fn table_json(disk: &Path) -> serde_json::Value {
    let out = sh("sfdisk", &["--json", disk.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["partitiontable"].clone()
}

/// The table and filesystem checkers are happy and the root fills the disk.
fn assert_root_fills(disk: &Path, label: &str) {
    let verify = sh("sfdisk", &["--verify", disk.to_str().unwrap()]);
    let said = text(&verify);
    assert!(verify.status.success(), "sfdisk --verify: {said}");
    assert!(
        !said.contains("not on the end") && !said.contains("mismatch"),
        "{said}"
    );
    let fsck = sh("e2fsck", &["-fn", &root_spec(disk)]);
    assert!(fsck.status.success(), "e2fsck: {}", text(&fsck));
    let table = table_json(disk);
    let sectors = std::fs::metadata(disk).unwrap().len() / 512;
    let root = &table["partitions"][1];
    assert_eq!(root["start"], ROOT_START, "{table}");
    let end = root["start"].as_u64().unwrap() + root["size"].as_u64().unwrap();
    if label == "gpt" {
        // Backup array (32 sectors) and header in the last 33 sectors.
        assert_eq!(table["lastlba"], sectors - 34, "{table}");
        assert_eq!(end, sectors - 33, "{table}");
    } else {
        assert_eq!(end, sectors, "{table}");
    }
    let fs_bytes = block_count(disk) * 4096;
    let part_bytes = (end - ROOT_START) * 512;
    assert!(
        fs_bytes <= part_bytes && part_bytes - fs_bytes < MIB,
        "filesystem {fs_bytes} in a partition of {part_bytes}"
    );
}

fn kernel_log(node: &Node) -> String {
    std::fs::read_to_string(node.path("mounts/kernel.log")).unwrap_or_default()
}

/// Issue 13, 1: on Ubuntu and Debian (`[root] grow = true`) the root partition grows to the
/// end of its disk (GPT: entry, backup header and array at the new end, both CRCs; MBR: the
/// entry's sector count), the kernel is told, and ext4 grows with it; a later boot writes
/// nothing.
#[test]
fn the_root_partition_and_filesystem_grow_to_the_end_of_the_disk() {
    for label in ["gpt", "dos"] {
        let mut node = Node::new();
        node.add_disk("S1");
        let disk = boot_disk(
            &node,
            label,
            &["mkfs.ext4", "-q", "-F", "-b", "4096", "-L", "writable"],
        );
        let blocks = block_count(&disk);
        // Flashed to a bigger card.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&disk)
            .unwrap()
            .set_len(120 * MIB)
            .unwrap();
        node.grow = true;
        node.root_disk = Some((disk.clone(), 2));
        let out = node.run_ok();
        assert_eq!(
            step_status(&node, "grow-root")["status"],
            "ok",
            "{}",
            text(&out)
        );
        assert_root_fills(&disk, label);
        assert!(block_count(&disk) > blocks * 4, "{label}: not grown");
        let sectors = (120 * MIB / 512) - ROOT_START - if label == "gpt" { 33 } else { 0 };
        assert_eq!(
            kernel_log(&node),
            format!("resizepart {} 2 {sectors}\n", disk.display()),
            "{label}"
        );

        // Every later boot: nothing to do, nothing written.
        let before = digest(&disk);
        node.reimage();
        node.run_ok();
        assert!(digest(&disk) == before, "{label}: written again");
        assert_eq!(kernel_log(&node), "", "{label}");
        assert_eq!(step_status(&node, "grow-root")["status"], "ok");
    }
}

/// A power cut after the table was written: the next boot finds the partition at the end (the
/// kernel read the new table at boot), writes no table, and grows the filesystem.
#[test]
fn a_power_cut_after_the_table_write_is_finished_on_the_next_boot() {
    let mut node = Node::new();
    node.add_disk("S1");
    let disk = boot_disk(&node, "gpt", &["mkfs.ext4", "-q", "-F", "-b", "4096"]);
    let blocks = block_count(&disk);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .unwrap()
        .set_len(100 * MIB)
        .unwrap();
    node.grow = true;
    node.root_disk = Some((disk.clone(), 2));
    let out = node
        .command(&[])
        .env("PIIMG_FIRSTBOOT_CRASH_AFTER", "grow-table")
        .output()
        .unwrap();
    assert!(!out.status.success(), "not killed: {}", text(&out));
    assert_eq!(block_count(&disk), blocks, "resize2fs ran before the cut");
    let verify = sh("sfdisk", &["--verify", disk.to_str().unwrap()]);
    assert!(verify.status.success(), "{}", text(&verify));
    node.reimage();
    node.run_ok();
    assert_eq!(
        kernel_log(&node),
        "",
        "the rebooted kernel knows the new size"
    );
    assert_root_fills(&disk, "gpt");
}

/// What first boot does not grow is refused, left byte for byte as it was, reported in the
/// step, and k3s still starts.
#[test]
fn an_odd_root_is_refused_untouched_and_k3s_still_starts() {
    let cases: [(&str, &str, Vec<&str>, u32, &str); 4] = [
        (
            "gpt",
            "not last",
            vec!["mkfs.ext4", "-q", "-F"],
            1,
            "is not the last",
        ),
        (
            "dos",
            "not ext4",
            vec!["mkfs.ext2", "-q", "-F"],
            2,
            "not ext4",
        ),
        (
            "gpt",
            "no partition",
            vec!["mkfs.ext4", "-q", "-F"],
            0,
            "not on a partition",
        ),
        (
            "gpt",
            "bad crc",
            vec!["mkfs.ext4", "-q", "-F"],
            2,
            "CRC does not match",
        ),
    ];
    for (label, case, mkfs, number, reason) in cases {
        let mut node = Node::new();
        node.add_disk("S1");
        let disk = boot_disk(&node, label, &mkfs);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&disk)
            .unwrap()
            .set_len(100 * MIB)
            .unwrap();
        if case == "bad crc" {
            // One byte of the primary header's disk GUID.
            let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
            use std::os::unix::fs::FileExt;
            f.write_all_at(&[0x5a], 512 + 60).unwrap();
        }
        let before = digest(&disk);
        node.grow = true;
        node.root_disk = Some((disk.clone(), number));
        if number == 0 {
            // A root on a whole disk: no root_partition in the devices file.
            node.root_disk = None;
            node.write_config();
            let mut devices = std::fs::read_to_string(node.path("devices.toml")).unwrap();
            devices.push_str(&format!(
                "[[disk]]\npath = \"{}\"\nids = [\"virtio-root\"]\nroot = true\n",
                disk.display()
            ));
            let mut cmd = node.command(&[]);
            std::fs::write(node.path("devices.toml"), devices).unwrap();
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{case}: {}", text(&out));
        } else {
            node.run_ok();
        }
        let step = step_status(&node, "grow-root");
        assert_eq!(step["status"], "failed", "{case}: {step}");
        let error = step["error"].as_str().unwrap();
        assert!(
            error.contains(reason) && error.contains("left"),
            "{case}: {error}"
        );
        assert!(digest(&disk) == before, "{case}: the disk was written");
        assert_eq!(kernel_log(&node), "", "{case}");
        assert_eq!(node.status_json()["stage"], "ready", "{case}");
        assert!(
            calls(&node).contains("start --no-block k3s.service"),
            "{case}"
        );
    }
}
