//! The example cluster (`profiles/`, `overlays/`, `manifests/`) copied into a folder under
//! `target/`, with the bootable base in its catalogue, reports sent to the host as the VM sees
//! it (`10.0.2.2`), and the test-only overlay `e2e` (`tests/e2e/overlay`: first boot's log on
//! the serial console, power-off when it is done).

use super::guest::Base;
use crate::cmd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The catalogue name of the bootable base.
pub const BASE_NAME: &str = "e2e-debian";

/// The SSD's serial: the guest sees `/dev/disk/by-id/virtio-piimg-ssd-…`.
pub const SSD_SERIAL_PREFIX: &str = "piimg-ssd-";

/// A cluster folder for boot tests.
pub struct BootCluster {
    /// Keeps the folder alive.
    pub dir: tempfile::TempDir,
    /// The profiles folder.
    pub profiles: PathBuf,
    /// `--out`.
    pub out: PathBuf,
    /// The host port images send reports to (as `10.0.2.2:PORT`), where `piimg watch` listens.
    pub report_port: u16,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    /// The raw image.
    pub image: PathBuf,
    /// The build id baked into it (from `.build.json`).
    pub build_id: String,
}

fn edit_toml(path: &Path, f: impl FnOnce(&mut toml::Table)) {
    let mut table: toml::Table = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f(&mut table);
    std::fs::write(path, toml::to_string(&table).expect("toml"))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

impl BootCluster {
    /// Copies the example cluster under `parent`, points the catalogue at `base`, sends
    /// reports to `http://10.0.2.2:REPORT_PORT/report`, runs `piimg secrets init`.
    pub fn new(parent: &Path, base: &Base, report_port: u16) -> BootCluster {
        std::fs::create_dir_all(parent).expect("create the work folder");
        let dir = tempfile::tempdir_in(parent).expect("tempdir");
        let root = crate::workspace_root();
        for sub in ["profiles", "overlays", "manifests"] {
            cmd::success(
                Command::new("cp")
                    .arg("-a")
                    .arg(root.join(sub))
                    .arg(dir.path()),
            );
        }
        cmd::success(
            Command::new("cp")
                .arg("-a")
                .arg(root.join("tests/e2e/overlay"))
                .arg(dir.path().join("overlays/e2e")),
        );
        let profiles = dir.path().join("profiles");
        let _ = std::fs::remove_file(profiles.join("secrets.toml"));
        edit_toml(&profiles.join("cluster.toml"), |c| {
            let mut b = toml::Table::new();
            b.insert("url".into(), base.image.display().to_string().into());
            b.insert("sha256".into(), base.sha256.clone().into());
            b.insert("family".into(), "debian".into());
            b.insert("release".into(), "bookworm".into());
            b.insert("arch".into(), "amd64".into());
            c["bases"]
                .as_table_mut()
                .expect("[bases]")
                .insert(BASE_NAME.into(), b.into());
            c["defaults"].as_table_mut().expect("[defaults]").insert(
                "report_url".into(),
                format!("http://10.0.2.2:{report_port}/report").into(),
            );
        });
        let bc = BootCluster {
            out: dir.path().join("out"),
            report_port,
            profiles,
            dir,
        };
        let out = bc.piimg(&["secrets", "init"]);
        assert!(
            out.status.success(),
            "secrets init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        bc
    }

    /// Makes `node` boot in the VM: the e2e base, DHCP (user networking), the SSD by its
    /// virtio serial, the `e2e` overlay.
    pub fn prepare_node(&self, node: &str) {
        edit_toml(&self.profiles.join(format!("{node}.toml")), |p| {
            p.insert("base".into(), BASE_NAME.into());
            p.remove("network");
            let mut selector = toml::Table::new();
            selector.insert(
                "by_id".into(),
                format!("virtio-{SSD_SERIAL_PREFIX}*").into(),
            );
            let mut storage = toml::Table::new();
            storage.insert("selector".into(), selector.into());
            p.insert("storage".into(), storage.into());
            p.insert("overlays".into(), toml::Value::Array(vec!["e2e".into()]));
        });
    }

    /// Runs `piimg ARGS --profiles …` with a fixed `SOURCE_DATE_EPOCH` and the cluster's cache.
    pub fn piimg(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(crate::piimg_bin());
        cmd.args(args)
            .arg("--profiles")
            .arg(&self.profiles)
            .current_dir(self.dir.path())
            .env("SOURCE_DATE_EPOCH", crate::cluster::EPOCH)
            .env("PIIMG_CACHE_DIR", self.dir.path().join("cache"))
            .env_remove("RUST_LOG");
        cmd.output().expect("run piimg")
    }

    /// `piimg build --profile NODE --format img` with these guest binaries; asserts success.
    pub fn build(&self, node: &str, k3s: &Path, firstboot: &Path) -> Built {
        let out_dir = self.out.display().to_string();
        let (k3s, firstboot) = (k3s.display().to_string(), firstboot.display().to_string());
        let out = self.piimg(&[
            "build",
            "--profile",
            node,
            "--out",
            &out_dir,
            "--format",
            "img",
            "--k3s-bin",
            &k3s,
            "--firstboot-bin",
            &firstboot,
        ]);
        assert!(
            out.status.success(),
            "piimg build {node} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let record = self.out.join(format!("{node}.build.json"));
        let json: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&record).unwrap_or_else(|e| panic!("{}: {e}", record.display())),
        )
        .expect("build record is JSON");
        Built {
            image: self.out.join(format!("{node}.img")),
            build_id: json["build_id"].as_str().expect("build_id").to_string(),
        }
    }

    /// The cluster report key, in a file (0600) for `piimg watch --key-file`.
    pub fn report_key_file(&self) -> PathBuf {
        use std::os::unix::fs::OpenOptionsExt;
        let text = std::fs::read_to_string(self.profiles.join("secrets.toml")).expect("secrets");
        let table: toml::Table = text.parse().expect("secrets parse");
        let key = table["report_key"].as_str().expect("report_key");
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
}
