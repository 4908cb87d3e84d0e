//! The example cluster (`profiles/`, `overlays/`, `manifests/`) copied into a temp folder with
//! its own secrets, cache and output folders, edited the way a user edits it (toml keys), and
//! `piimg` run against it. Both the build tests ([`crate::cluster`]) and the boot tests
//! ([`crate::boot::cluster`]) start from this, so the copy and the edits live in one place.

use crate::cmd;
use crate::fixture::workspace_root;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `SOURCE_DATE_EPOCH` every test build uses.
pub const EPOCH: &str = "1700000000";

/// A private copy of the example cluster.
pub struct ExampleCluster {
    /// Keeps the folder alive.
    pub dir: tempfile::TempDir,
    /// The profiles folder (cluster.toml, one profile per node, secrets.toml).
    pub profiles: PathBuf,
    /// `--out`.
    pub out: PathBuf,
    /// `PIIMG_CACHE_DIR`.
    pub cache: PathBuf,
}

/// Reads the toml file at `path`, lets `f` change it, writes it back.
pub fn edit_toml(path: &Path, f: impl FnOnce(&mut toml::Table)) {
    let mut table: toml::Table = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f(&mut table);
    std::fs::write(path, toml::to_string(&table).expect("toml"))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

impl ExampleCluster {
    /// Copies the example cluster into a new temp folder (under `parent`, or the system's temp
    /// folder), without the developer's own `secrets.toml`.
    pub fn copy(parent: Option<&Path>) -> ExampleCluster {
        let dir = match parent {
            Some(p) => {
                std::fs::create_dir_all(p)
                    .unwrap_or_else(|e| panic!("{}: cannot create: {e}", p.display()));
                tempfile::tempdir_in(p)
            }
            None => tempfile::tempdir(),
        }
        .expect("tempdir");
        let root = workspace_root();
        for sub in ["profiles", "overlays", "manifests"] {
            cmd::success(
                Command::new("cp")
                    .arg("-a")
                    .arg(root.join(sub))
                    .arg(dir.path()),
            );
        }
        let profiles = dir.path().join("profiles");
        let _ = std::fs::remove_file(profiles.join("secrets.toml"));
        ExampleCluster {
            out: dir.path().join("out"),
            cache: dir.path().join("cache"),
            profiles,
            dir,
        }
    }

    /// Edits `cluster.toml`.
    pub fn edit_cluster(&self, f: impl FnOnce(&mut toml::Table)) {
        edit_toml(&self.profiles.join("cluster.toml"), f);
    }

    /// Edits the profile of `node`.
    pub fn edit_profile(&self, node: &str, f: impl FnOnce(&mut toml::Table)) {
        edit_toml(&self.profiles.join(format!("{node}.toml")), f);
    }

    /// Runs `piimg ARGS --profiles …` with the test epoch and the cluster's cache, in the
    /// cluster's folder.
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

    /// `piimg build --profile NODE --out OUT --format FORMAT EXTRA…`, unchecked (callers
    /// assert success or inspect the failure).
    pub fn run_build(&self, node: &str, format: &str, extra: &[&str]) -> Output {
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

    /// [`ExampleCluster::run_build`], asserting success; returns the image it wrote
    /// (`OUT/NODE.img`, or `OUT/NODE.img.FORMAT` when compressed).
    pub fn build_ok(&self, node: &str, format: &str, extra: &[&str]) -> PathBuf {
        let out = self.run_build(node, format, extra);
        assert!(
            out.status.success(),
            "piimg build {node} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if format == "img" {
            self.out.join(format!("{node}.img"))
        } else {
            self.out.join(format!("{node}.img.{format}"))
        }
    }

    /// `piimg secrets init`, asserting success.
    pub fn secrets_init(&self) {
        let out = self.piimg(&["secrets", "init"]);
        assert!(
            out.status.success(),
            "secrets init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The secrets file as a table.
    fn secrets(&self) -> toml::Table {
        let path = self.profiles.join("secrets.toml");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Every secret value in the secrets file (for "never printed" checks).
    pub fn secret_values(&self) -> Vec<String> {
        let mut values = Vec::new();
        collect_strings(&toml::Value::Table(self.secrets()), &mut values);
        values.retain(|v| v.len() >= 12);
        values
    }

    /// The cluster report key, in a file (0600) for `piimg watch --key-file`.
    pub fn report_key_file(&self) -> PathBuf {
        use std::os::unix::fs::OpenOptionsExt;
        let secrets = self.secrets();
        let key = secrets["report_key"].as_str().expect("report_key");
        let path = self.dir.path().join("report.key");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .expect("key file");
        std::io::Write::write_all(&mut f, key.as_bytes()).expect("write key");
        path
    }

    /// The cluster folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
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
