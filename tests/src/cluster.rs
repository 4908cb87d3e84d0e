//! A copy of the example cluster (`profiles/`, `overlays/`, `manifests/`) whose catalogue points
//! at look-alike bases and stand-in artifacts served from 127.0.0.1, with its own secrets file,
//! cache and output folders: what a user has after `piimg secrets init`, minus the internet.

use crate::example::ExampleCluster;
pub use crate::example::EPOCH;
use crate::fixture::{fixture, Kind};
use crate::http::Server;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

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

/// The example cluster in a temp folder, wired to a local server. Derefs to the
/// [`ExampleCluster`] (`out`, `profiles`, `cache`, `piimg`, …).
pub struct TestCluster {
    /// The copy of the example cluster.
    pub example: ExampleCluster,
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

impl std::ops::Deref for TestCluster {
    type Target = ExampleCluster;
    fn deref(&self) -> &ExampleCluster {
        &self.example
    }
}

impl TestCluster {
    /// Copies the example cluster, serves every base (xz-compressed like upstream, the amd64
    /// one raw) and stand-in artifacts, rewrites the catalogue to them, and runs
    /// `piimg secrets init`.
    pub fn new() -> TestCluster {
        let example = ExampleCluster::copy(None);
        let server = Server::start();
        example.edit_cluster(|cluster| serve_catalogue(cluster, &server));
        example.secrets_init();
        TestCluster { example, server }
    }

    /// `piimg build --profile NODE --out OUT --format FORMAT EXTRA…`, asserting success.
    pub fn build(&self, node: &str, format: &str, extra: &[&str]) -> PathBuf {
        self.build_ok(node, format, extra)
    }

    /// The same, returning the output to inspect failures.
    pub fn try_build(&self, node: &str, format: &str, extra: &[&str]) -> Output {
        self.run_build(node, format, extra)
    }
}

impl Default for TestCluster {
    fn default() -> Self {
        TestCluster::new()
    }
}

/// Says where a test catalogue's digests come from.
const SERVED_DIGEST: &str = "computed by the test from the file it serves";

/// Points every catalogue base, k3s release and first-boot binary of `cluster` (cluster.toml)
/// at look-alikes served by `server`.
///
/// The digests are computed here from the bytes served, and `sha256_from` says so: a test
/// catalogue is confirmed by construction, not by a published checksum.
fn serve_catalogue(cluster: &mut toml::Table, server: &Server) {
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
        entry.insert("sha256_from".into(), SERVED_DIGEST.into());
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
        entry.insert("sha256_from".into(), SERVED_DIGEST.into());
        entry.insert(
            "url".into(),
            server.serve_bytes(&format!("/k3s/{arch}/k3s"), body).into(),
        );
        let body = stand_in_firstboot(arch);
        let mut fb = toml::Table::new();
        fb.insert("sha256".into(), sha256_hex(&body).into());
        fb.insert("sha256_from".into(), SERVED_DIGEST.into());
        fb.insert(
            "url".into(),
            server
                .serve_bytes(&format!("/firstboot/{arch}"), body)
                .into(),
        );
        firstboot.insert(arch.into(), fb.into());
    }
    cluster.insert("firstboot".into(), firstboot.into());
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
