//! `piimg build` end to end: the example cluster's nodes baked from look-alike bases served on
//! 127.0.0.1, checked by the real checkers and read back independently (debugfs, mtools,
//! `piimg inspect`); failures leave nothing where the outputs go; secrets never show.

use piimg_e2e::cluster::{stand_in_k3s, TestCluster, EPOCH};
use piimg_e2e::http::Served;
use piimg_e2e::{self as e2e, inspect_json, root_start, Kind};
use std::path::Path;
use std::process::Command;

fn mode(image: &Path, start: u64, path: &str) -> (u32, u32, u32) {
    let (mode, uid, gid, _) = e2e::debugfs_stat(image, start, path);
    (mode, uid, gid)
}

fn text(image: &Path, start: u64, path: &str) -> String {
    String::from_utf8(e2e::debugfs_cat(image, start, path)).unwrap()
}

fn exists(image: &Path, start: u64, path: &str) -> bool {
    e2e::debugfs_exists(image, start, path)
}

fn output_files(tc: &TestCluster) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(&tc.out) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// What every node image must hold, whatever its base.
fn assert_common_edits(
    image: &Path,
    node: &str,
    role: &str,
    arch: &str,
) -> (serde_json::Value, u64) {
    e2e::check_all(image);
    let r = inspect_json(image);
    let s = root_start(image, &r);
    assert_eq!(r["piimg"]["node"], node);
    assert!(
        r["swap"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["active"] == false),
        "swap still on: {}",
        r["swap"]
    );
    assert_eq!(text(image, s, "/etc/hostname").trim(), node);
    assert!(text(image, s, "/etc/hosts").contains(node));
    assert_eq!(
        e2e::debugfs_cat(image, s, "/usr/local/bin/k3s"),
        stand_in_k3s(arch, "v1.31.4+k3s1")
    );
    assert_eq!(mode(image, s, "/usr/local/bin/k3s"), (0o755, 0, 0));
    for link in ["kubectl", "crictl", "ctr"] {
        let inode = e2e::debugfs_inode(image, s, &format!("/usr/local/bin/{link}"));
        assert_eq!(inode.link_target.as_deref(), Some("k3s"), "{link}");
    }
    assert_eq!(
        mode(image, s, "/etc/rancher/k3s/config.yaml"),
        (0o600, 0, 0)
    );
    let config = yaml_scalars(&text(image, s, "/etc/rancher/k3s/config.yaml"));
    let get = |key: &str| {
        config
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("node-name"), Some(node));
    assert!(
        get("data-dir").is_some_and(|d| d.starts_with("/mnt/storage/")),
        "data-dir {:?}",
        get("data-dir")
    );
    assert!(get("token").is_some_and(|t| t.len() >= 32), "no join token");
    assert_eq!(mode(image, s, "/etc/rancher/node/password"), (0o600, 0, 0));
    assert_eq!(mode(image, s, "/etc/piimg/node.toml"), (0o600, 0, 0));
    let node_toml = text(image, s, "/etc/piimg/node.toml");
    assert!(
        node_toml.contains(&format!("role = \"{role}\"")),
        "{node_toml}"
    );
    assert_eq!(
        mode(image, s, "/usr/local/sbin/piimg-firstboot"),
        (0o755, 0, 0)
    );
    assert!(exists(
        image,
        s,
        "/etc/systemd/system/multi-user.target.wants/piimg-firstboot.service"
    ));
    let k3s_unit = if role == "server" {
        "k3s.service"
    } else {
        "k3s-agent.service"
    };
    assert!(
        exists(image, s, &format!("/etc/systemd/system/{k3s_unit}")),
        "{k3s_unit} installed"
    );
    assert!(
        !exists(
            image,
            s,
            &format!("/etc/systemd/system/multi-user.target.wants/{k3s_unit}")
        ),
        "{k3s_unit} must not be enabled: first boot starts it"
    );
    // The firstboot crate's unit and k3s drop-in, as installed in the image.
    let unit = text(image, s, "/etc/systemd/system/piimg-firstboot.service");
    assert!(
        unit.contains("ExecStart=/usr/local/sbin/piimg-firstboot run")
            && !unit.contains("Before=k3s"),
        "{unit}"
    );
    let dropin = text(
        image,
        s,
        &format!("/etc/systemd/system/{k3s_unit}.d/10-piimg.conf"),
    );
    assert!(
        dropin.contains("ConditionPathIsMountPoint=/mnt/storage"),
        "{dropin}"
    );
    // time-sync.target means "clock set" only with systemd-time-wait-sync enabled; the link
    // must point at the unit the base ships.
    let wait = "systemd-time-wait-sync.service";
    assert_eq!(
        e2e::debugfs_inode(
            image,
            s,
            &format!("/etc/systemd/system/sysinit.target.wants/{wait}")
        )
        .link_target
        .as_deref(),
        Some(format!("/lib/systemd/system/{wait}").as_str())
    );
    assert!(
        exists(image, s, &format!("/usr/lib/systemd/system/{wait}")),
        "the base lacks {wait}"
    );
    let fstab = text(image, s, "/etc/fstab");
    let ssd = fstab
        .lines()
        .find(|l| l.contains("/mnt/storage"))
        .unwrap_or_else(|| panic!("no SSD line:\n{fstab}"));
    assert!(
        ssd.starts_with("LABEL=")
            && ssd.contains("nofail")
            && ssd.contains("x-systemd.device-timeout="),
        "{ssd}"
    );
    assert!(
        !fstab
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some("swap")),
        "{fstab}"
    );
    let ssh = e2e::debugfs_ls(image, s, "/etc/ssh");
    assert!(
        ssh.iter().all(|e| !e.name.starts_with("ssh_host_")),
        "host keys left in the image"
    );
    (r, s)
}

/// `key: value` lines of a flat YAML file, quotes removed (values never printed: some are tokens).
fn yaml_scalars(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

/// `kernel`: Raspberry Pi OS gets `kernel8.img` (4K pages); Ubuntu keeps its `vmlinuz`, already 4K.
fn assert_pi_boot(image: &Path, r: &serde_json::Value, kernel: &str) {
    let cmdline = r["boot"]["cmdline"].as_str().unwrap();
    for p in ["cgroup_memory=1", "cgroup_enable=memory"] {
        assert_eq!(
            cmdline.split_whitespace().filter(|w| *w == p).count(),
            1,
            "{p} once in {cmdline}"
        );
    }
    assert!(cmdline.contains("rootwait"), "{cmdline}");
    assert_eq!(r["boot"]["kernel"], kernel);
    let boot = e2e::partitions(image)[0].start;
    let raw = e2e::mtype(image, boot, "cmdline.txt");
    assert_eq!(
        raw.iter().filter(|b| **b == b'\n').count(),
        1,
        "cmdline.txt stays one line"
    );
}

/// Issue 13.9: Raspberry Pi OS's placeholder user `pi` is renamed the way its own tools do
/// (userconf-pi's `userconf` and `cancel-rename`): nothing left naming `pi`, the home folder
/// moved with its files and owner, a login prompt on tty1 again, the wizard's banner gone.
fn assert_pi_user_renamed(image: &Path, s: u64) {
    for file in [
        "/etc/passwd",
        "/etc/group",
        "/etc/shadow",
        "/etc/subuid",
        "/etc/subgid",
        "/etc/sudoers.d/010_pi-nopasswd",
    ] {
        let t = text(image, s, file);
        assert!(
            !t.lines().any(|l| l.starts_with("pi:")
                || l.starts_with("pi ")
                || l.ends_with(":pi")
                || l.contains(":pi,")
                || l.contains(",pi")),
            "{file} still names pi:\n{t}"
        );
    }
    assert!(text(image, s, "/etc/subuid").contains("admin:100000:65536"));
    assert!(text(image, s, "/etc/subgid").contains("admin:100000:65536"));
    assert!(text(image, s, "/etc/sudoers.d/010_pi-nopasswd")
        .starts_with("admin ALL=(ALL) NOPASSWD: ALL"));
    assert!(!exists(image, s, "/home/pi"), "/home/pi left behind");
    let (m, uid, gid) = mode(image, s, "/home/admin");
    assert_eq!((uid, gid), (1000, 1000), "/home/admin mode {m:o}");
    assert_eq!(mode(image, s, "/home/admin/.bashrc"), (0o644, 1000, 1000));
    assert_eq!(
        mode(image, s, "/home/admin/.ssh/authorized_keys"),
        (0o600, 1000, 1000)
    );
    assert_eq!(
        e2e::debugfs_inode(
            image,
            s,
            "/etc/systemd/system/getty.target.wants/getty@tty1.service"
        )
        .link_target
        .as_deref(),
        Some("/lib/systemd/system/getty@.service"),
        "no login prompt on tty1"
    );
    assert!(!exists(image, s, "/etc/ssh/sshd_config.d/rename_user.conf"));
    assert!(!exists(
        image,
        s,
        "/etc/systemd/system/multi-user.target.wants/userconfig.service"
    ));
}

#[test]
fn worker_on_raspios_bookworm_and_trixie() {
    let tc = TestCluster::new();
    let image = tc.build("worker-2", "img", &[]);
    let (r, s) = assert_common_edits(&image, "worker-2", "agent", "arm64");
    assert_pi_boot(&image, &r, "kernel8.img");
    assert_eq!(r["os"]["codename"], "bookworm");
    assert_eq!(
        e2e::debugfs_inode(&image, s, "/etc/systemd/system/dphys-swapfile.service")
            .link_target
            .as_deref(),
        Some("/dev/null")
    );
    assert!(!exists(&image, s, "/var/swap"));
    assert_eq!(text(&image, s, "/etc/machine-id"), "");
    assert_pi_user_renamed(&image, s);
    // Raspberry Pi OS grows its root itself on first boot (pi-gen, bookworm: the initramfs-less
    // `init=` of raspberrypi-sys-mods); piimg keeps it, and does not grow the root itself.
    assert!(r["boot"]["cmdline"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .any(|w| w == "init=/usr/lib/raspberrypi-sys-mods/firstboot"));
    assert!(exists(&image, s, "/usr/lib/raspberrypi-sys-mods/firstboot"));
    assert!(
        !exists(&image, s, "/var/lib/piimg/manifests/minio"),
        "an agent stages no base services"
    );

    std::fs::remove_dir_all(&tc.out).unwrap();
    let image = tc.build("worker-2", "img", &["--base", "raspios-trixie"]);
    let (r, s) = assert_common_edits(&image, "worker-2", "agent", "arm64");
    assert_pi_boot(&image, &r, "kernel8.img");
    assert_eq!(r["os"]["codename"], "trixie");
    assert!(r["boot"]["cmdline"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .any(|w| w == "resize"));
    assert_eq!(text(&image, s, "/etc/machine-id").trim(), "uninitialized");
    assert_pi_user_renamed(&image, s);
}

#[test]
fn worker_on_ubuntu_for_raspberry_pi() {
    let tc = TestCluster::new();
    let image = tc.build("worker-4", "img", &[]);
    let (r, s) = assert_common_edits(&image, "worker-4", "agent", "arm64");
    assert_pi_boot(&image, &r, "vmlinuz");
    assert_eq!(r["os"]["id"], "ubuntu");
    assert!(exists(&image, s, "/etc/cloud/cloud-init.disabled"));
    assert!(text(&image, s, "/etc/rancher/k3s/config.yaml").contains("dedicated=batch:NoSchedule"));
}

#[test]
fn control_plane_on_ubuntu_amd64() {
    let tc = TestCluster::new();
    let image = tc.build("control-plane", "img", &[]);
    let (r, s) = assert_common_edits(&image, "control-plane", "server", "amd64");
    assert_eq!(r["table"]["kind"], "gpt");
    assert!(!exists(&image, s, "/swap.img"));
    // The base services, staged for first boot: logins only in 0600 Secrets.
    let staged = e2e::debugfs_ls(&image, s, "/var/lib/piimg/manifests");
    for service in [
        "minio",
        "postgresql",
        "mlflow",
        "jupyterhub",
        "monitoring",
        "ray",
        "dask",
        "jaeger",
    ] {
        assert!(
            staged.iter().any(|e| e.name == service),
            "{service} not staged: {staged:?}"
        );
    }
    let secret = "/var/lib/piimg/manifests/minio/minio-credentials.yaml";
    assert_eq!(mode(&image, s, secret), (0o600, 0, 0));
    assert!(text(&image, s, secret).contains("kind: Secret"));
    for service in ["minio", "postgresql", "mlflow", "jupyterhub", "monitoring"] {
        let creds = format!("/var/lib/piimg/manifests/{service}/{service}-credentials.yaml");
        assert_eq!(mode(&image, s, &creds), (0o600, 0, 0), "{creds}");
    }
}

#[test]
fn same_inputs_same_bytes_and_inputs_untouched() {
    let tc = TestCluster::new();
    let fixture = e2e::fixture(Kind::RaspiosBookworm);
    let fixture_sha = e2e::sha256_file(&fixture);
    let first = tc.build("worker-2", "zst", &[]);
    let first_sha = e2e::sha256_file(&first);
    let cache_before = tree_digest(&tc.cache);
    std::fs::remove_dir_all(&tc.out).unwrap();
    let again = tc.build("worker-2", "zst", &[]);
    assert_eq!(e2e::sha256_file(&again), first_sha, "two builds differ");
    assert_eq!(tree_digest(&tc.cache), cache_before, "the cache changed");
    assert_eq!(
        e2e::sha256_file(&fixture),
        fixture_sha,
        "the base fixture changed"
    );
    let files = output_files(&tc);
    assert_eq!(
        files,
        [
            "os_list.json",
            "worker-2.bmap",
            "worker-2.build.json",
            "worker-2.img.zst",
            "worker-2.img.zst.sha256"
        ]
    );
    for f in &files {
        let m = std::fs::metadata(tc.out.join(f)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(m.permissions().mode() & 0o777, 0o600, "{f}");
    }
    let raw = tc.build("worker-2", "img", &[]);
    let decoded = Command::new("zstd")
        .args(["-dc"])
        .arg(&again)
        .output()
        .unwrap()
        .stdout;
    assert!(
        decoded == std::fs::read(&raw).unwrap(),
        "zstd -d of the .zst is not the raw image"
    );
    let sum = Command::new("sha256sum")
        .args(["-c", "worker-2.img.zst.sha256"])
        .current_dir(&tc.out)
        .output()
        .unwrap();
    assert!(
        sum.status.success(),
        "{}",
        String::from_utf8_lossy(&sum.stdout)
    );
}

fn tree_digest(dir: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg("find . -type f -print0 | sort -z | xargs -0 sha256sum")
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// A failed build: non-zero, a message containing `needle`, nothing at the output paths,
/// no secret in what it printed.
fn assert_fails_cleanly(tc: &TestCluster, out: &std::process::Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "build succeeded; expected {needle:?}"
    );
    assert!(stderr.contains(needle), "expected {needle:?} in:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let left: Vec<String> = output_files(tc)
        .into_iter()
        .filter(|f| f.starts_with("worker-2"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(
        output_files(tc).iter().all(|f| !f.contains(".work-")),
        "work folder left: {:?}",
        output_files(tc)
    );
    for secret in tc.secret_values() {
        assert!(
            !stderr.contains(&secret),
            "a secret appeared in the error output"
        );
    }
}

fn edit_cluster_toml(tc: &TestCluster, edit: impl FnOnce(&mut toml::Table)) {
    let path = tc.profiles.join("cluster.toml");
    let mut t: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    edit(&mut t);
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
}

#[test]
fn bad_inputs_fail_clearly_and_leave_nothing() {
    let tc = TestCluster::new();

    // A wrong pinned digest.
    edit_cluster_toml(&tc, |t| {
        t["bases"]["raspios-bookworm"]["sha256"] = "0".repeat(64).into();
    });
    let out = tc.try_build("worker-2", "img", &[]);
    assert_fails_cleanly(&tc, &out, &"0".repeat(64));

    // A download cut short every time.
    let body = piimg_e2e::cluster::compressed_fixture(Kind::RaspiosBookworm);
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
    let len = body.len();
    let url = tc.server.serve(
        "/cut/base.img.xz",
        Served {
            body,
            cut_at: Some(len / 2),
            cut_times: usize::MAX,
        },
    );
    edit_cluster_toml(&tc, |t| {
        t["bases"]["raspios-bookworm"]["sha256"] = sha.clone().into();
        t["bases"]["raspios-bookworm"]["url"] = url.clone().into();
    });
    let out = tc.try_build("worker-2", "img", &[]);
    assert_fails_cleanly(&tc, &out, "/cut/base.img.xz");

    // A base without the expected partitions.
    let blank = tc.path().join("blank.img");
    std::fs::File::create(&blank)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let out = tc.try_build("worker-2", "img", &["--base", blank.to_str().unwrap()]);
    assert_fails_cleanly(&tc, &out, "blank.img");

    // A bad profile.
    std::fs::write(
        tc.profiles.join("worker-2.toml"),
        "extends = \"worker-1\"\nhostnme = \"typo\"\n",
    )
    .unwrap();
    let out = tc.try_build("worker-2", "img", &[]);
    assert_fails_cleanly(&tc, &out, "worker-2.toml");
    assert!(String::from_utf8_lossy(&out.stderr).contains("hostnme"));
}

#[test]
fn a_full_disk_fails_cleanly() {
    let tc = TestCluster::new();
    // Raw: a copy of the base edited in place; compressed: an overlay over the cached base
    // and frames spliced from the cache. Either way the limit must end the build cleanly.
    for format in ["img", "zst"] {
        // Warm the cache (base, frames) so the limit only bites on the node's own files.
        tc.build("worker-2", format, &[]);
        std::fs::remove_dir_all(&tc.out).unwrap();
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "trap '' XFSZ; ulimit -f 20480; exec '{}' build --profile worker-2 --profiles '{}' --out '{}' --format {format}",
                e2e::piimg_bin().display(),
                tc.profiles.display(),
                tc.out.display()
            ))
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .env("PIIMG_CACHE_DIR", &tc.cache)
            .output()
            .unwrap();
        assert_fails_cleanly(&tc, &out, "worker-2");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("free space"),
            "{format}: the error does not say how to fix it:\n{stderr}"
        );
    }
}

#[test]
fn secrets_never_show_in_logs_plan_or_errors() {
    let tc = TestCluster::new();
    let secrets = tc.secret_values();
    assert!(
        secrets.len() >= 3,
        "expected tokens and keys in the secrets file"
    );
    let mut printed = String::new();
    for args in [
        vec!["plan", "--all"],
        vec!["plan", "--all", "--json"],
        vec![
            "-vv",
            "build",
            "--profile",
            "control-plane",
            "--format",
            "img",
            "--out",
        ],
    ] {
        let mut args: Vec<String> = args.into_iter().map(String::from).collect();
        if args.last().map(String::as_str) == Some("--out") {
            args.push(tc.out.display().to_string());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = tc.piimg(&refs);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        printed.push_str(&String::from_utf8_lossy(&out.stdout));
        printed.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    for s in &secrets {
        assert!(
            !printed.contains(s.as_str()),
            "a secret appeared in plan/build output"
        );
    }
    let record = std::fs::read_to_string(tc.out.join("control-plane.build.json")).unwrap();
    for s in &secrets {
        assert!(
            !record.contains(s.as_str()),
            "a secret appeared in the build record"
        );
    }
}

/// Nodes built together in one command (the next node is copied and edited while the one
/// before it publishes, and they share one base's frame cache) come out byte for byte as when
/// each is built alone, in raw and compressed form, with the same `.bmap`.
#[test]
fn nodes_built_together_equal_nodes_built_alone() {
    let tc = TestCluster::new();
    let nodes = ["worker-1", "worker-2", "worker-3"];
    for (format, ext) in [("zst", "img.zst"), ("img", "img")] {
        let digests = || -> Vec<String> {
            nodes
                .iter()
                .flat_map(|node| {
                    [
                        e2e::sha256_file(&tc.out.join(format!("{node}.{ext}"))),
                        e2e::sha256_file(&tc.out.join(format!("{node}.bmap"))),
                    ]
                })
                .collect()
        };
        for node in nodes {
            tc.build(node, format, &[]);
        }
        let alone = digests();
        // Raspberry Pi Imager's list: merged one node at a time, the same bytes as in one go.
        let os_list_alone = std::fs::read(tc.out.join("os_list.json")).expect("os_list.json");
        std::fs::remove_dir_all(&tc.out).unwrap();
        tc.build(
            nodes[0],
            format,
            &["--profile", nodes[1], "--profile", nodes[2]],
        );
        assert_eq!(
            digests(),
            alone,
            "{format}: one command differs from one node at a time"
        );
        assert_eq!(
            std::fs::read(tc.out.join("os_list.json")).expect("os_list.json"),
            os_list_alone,
            "{format}: os_list.json differs from one node at a time"
        );
        let leftovers: Vec<String> = output_files(&tc)
            .into_iter()
            .filter(|f| f.starts_with('.'))
            .collect();
        assert!(
            leftovers.is_empty(),
            "work files left in --out: {leftovers:?}"
        );
        std::fs::remove_dir_all(&tc.out).unwrap();
    }
}
