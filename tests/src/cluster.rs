//! A copy of the example cluster (`profiles/`, `overlays/`, `manifests/`) whose catalogue points
//! at look-alike bases and stand-in artifacts served from 127.0.0.1, with its own secrets file,
//! cache and output folders: what a user has after `piimg secrets init`, minus the internet.

use crate::fixture::{fixture, workspace_root, Kind};
use crate::http::Server;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

/// The `SOURCE_DATE_EPOCH` every test build uses.
pub const EPOCH: &str = "1700000000";

/// A stand-in k3s for an architecture: a script, different per arch and per version.
pub fn stand_in_k3s(arch: &str, version: &str) -> Vec<u8> {
    format!("#!/bin/sh\n# stand-in k3s {version} for {arch}\necho k3s version {version}\n")
        .into_bytes()
}

/// A stand-in piimg-firstboot for an architecture.
pub fn stand_in_firstboot(arch: &str) -> Vec<u8> {
    format!("#!/bin/sh\n# stand-in piimg-firstboot for {arch}\nexit 0\n").into_bytes()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The example cluster in a temp folder, wired to a local server.
pub struct TestCluster {
    /// Keeps everything alive.
    pub dir: tempfile::TempDir,
    /// The profiles folder (cluster.toml, one profile per node, secrets.toml).
    pub profiles: PathBuf,
    /// `--out`.
    pub out: PathBuf,
    /// `--cache-dir`.
    pub cache: PathBuf,
    /// The server behind every catalogue URL.
    pub server: Server,
}

/// Which base kinds the catalogue names serve, by catalogue name.
pub const CATALOGUE: [(&str, Kind); 4] = [
    ("raspios-bookworm", Kind::RaspiosBookworm),
    ("raspios-trixie", Kind::RaspiosTrixie),
    ("ubuntu-raspi", Kind::UbuntuRaspi),
    ("ubuntu-amd64", Kind::UbuntuAmd64),
];

impl TestCluster {
    /// Copies the example cluster, serves every base (xz-compressed like upstream, the amd64
    /// one raw) and stand-in artifacts, rewrites the catalogue to them, and runs
    /// `piimg secrets init`.
    pub fn new() -> TestCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = workspace_root();
        for sub in ["profiles", "overlays", "manifests"] {
            let status = Command::new("cp")
                .arg("-a")
                .arg(root.join(sub))
                .arg(dir.path())
                .status()
                .expect("cp");
            assert!(status.success());
        }
        let profiles = dir.path().join("profiles");
        let _ = std::fs::remove_file(profiles.join("secrets.toml"));
        let server = Server::start();
        let cluster_toml = profiles.join("cluster.toml");
        let mut cluster: toml::Table = std::fs::read_to_string(&cluster_toml)
            .expect("read cluster.toml")
            .parse()
            .expect("cluster.toml parses");
        let bases = cluster["bases"].as_table_mut().expect("[bases]");
        for (name, kind) in CATALOGUE {
            let (path, body) = if kind == Kind::UbuntuAmd64 {
                (
                    format!("/bases/{name}.img"),
                    std::fs::read(fixture(kind)).expect("read fixture"),
                )
            } else {
                (format!("/bases/{name}.img.xz"), compressed_fixture(kind))
            };
            let entry = bases[name].as_table_mut().expect("base entry");
            entry.insert("sha256".into(), sha256_hex(&body).into());
            entry.insert("url".into(), server.serve_bytes(&path, body).into());
        }
        let version = cluster["k3s"]["version"]
            .as_str()
            .expect("k3s.version")
            .to_string();
        let releases = cluster["k3s"]["releases"][version.as_str()]
            .as_table_mut()
            .expect("k3s release");
        let mut firstboot = toml::Table::new();
        for arch in ["amd64", "arm64"] {
            let body = stand_in_k3s(arch, &version);
            let entry = releases[arch].as_table_mut().expect("k3s arch");
            entry.insert("sha256".into(), sha256_hex(&body).into());
            entry.insert(
                "url".into(),
                server.serve_bytes(&format!("/k3s/{arch}/k3s"), body).into(),
            );
            let body = stand_in_firstboot(arch);
            let mut fb = toml::Table::new();
            fb.insert("sha256".into(), sha256_hex(&body).into());
            fb.insert(
                "url".into(),
                server
                    .serve_bytes(&format!("/firstboot/{arch}"), body)
                    .into(),
            );
            firstboot.insert(arch.into(), fb.into());
        }
        cluster.insert("firstboot".into(), firstboot.into());
        std::fs::write(&cluster_toml, toml::to_string(&cluster).expect("toml")).expect("write");
        let tc = TestCluster {
            out: dir.path().join("out"),
            cache: dir.path().join("cache"),
            profiles,
            dir,
            server,
        };
        let out = tc.piimg(&["secrets", "init"]);
        assert!(
            out.status.success(),
            "secrets init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tc
    }

    /// Runs `piimg ARGS --profiles … ` with the test epoch, in the cluster's folder.
    pub fn piimg(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(crate::piimg_bin());
        cmd.args(args)
            .arg("--profiles")
            .arg(&self.profiles)
            .current_dir(self.dir.path())
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .env("PIIMG_CACHE_DIR", &self.cache)
            .env_remove("RUST_LOG");
        cmd.output().expect("run piimg")
    }

    /// `piimg build --profile NODE --out OUT --format FORMAT EXTRA…`, asserting success.
    pub fn build(&self, node: &str, format: &str, extra: &[&str]) -> PathBuf {
        let out = self.try_build(node, format, extra);
        assert!(
            out.status.success(),
            "piimg build {node} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ext = if format == "img" {
            "img".to_string()
        } else {
            format!("img.{format}")
        };
        self.out.join(format!("{node}.{ext}"))
    }

    /// The same, returning the output to inspect failures.
    pub fn try_build(&self, node: &str, format: &str, extra: &[&str]) -> Output {
        let out_dir = self.out.display().to_string();
        let mut args = vec![
            "build",
            "--profile",
            node,
            "--out",
            &out_dir,
            "--format",
            format,
        ];
        args.extend_from_slice(extra);
        self.piimg(&args)
    }

    /// Every secret value in the secrets file (for "never printed" checks).
    pub fn secret_values(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.profiles.join("secrets.toml")).expect("secrets");
        let table: toml::Table = text.parse().expect("secrets parse");
        let mut values = Vec::new();
        collect_strings(&toml::Value::Table(table), &mut values);
        values.retain(|v| v.len() >= 12);
        values
    }

    /// The cluster folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for TestCluster {
    fn default() -> Self {
        TestCluster::new()
    }
}

fn collect_strings(v: &toml::Value, out: &mut Vec<String>) {
    match v {
        toml::Value::String(s) => out.push(s.clone()),
        toml::Value::Table(t) => t.values().for_each(|v| collect_strings(v, out)),
        toml::Value::Array(a) => a.iter().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

/// A fixture as `.img.xz`, compressed once per test process.
pub fn compressed_fixture(kind: Kind) -> Vec<u8> {
    static CACHE: OnceLock<Mutex<HashMap<Kind, Vec<u8>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().expect("lock");
    map.entry(kind)
        .or_insert_with(|| xz(&std::fs::read(fixture(kind)).expect("read fixture")))
        .clone()
}

/// xz -1 in memory, like the upstream `.img.xz` downloads (single-threaded: deterministic).
pub fn xz(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("xz")
        .args(["-c", "-1", "-T1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("xz");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().expect("xz output");
    writer.join().expect("join").expect("write to xz");
    assert!(out.status.success());
    out.stdout
}
