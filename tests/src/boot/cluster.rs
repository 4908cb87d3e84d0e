//! The example cluster ([`ExampleCluster`]) wired for QEMU: the bootable base in its
//! catalogue, reports sent to the host as the VM sees it (`10.0.2.2`), the server named as users
//! name it ([`SERVER_NAME`]) at the address agents reach it at (the host, `10.0.2.2`, which
//! forwards to the control plane VM's API), and the test-only overlay `e2e`
//! (`tests/e2e/overlay`: first boot's log on the serial console, power-off when it is done).

use super::guest::Base;
use crate::cmd;
use crate::example::ExampleCluster;
use std::path::Path;
use std::process::Command;

/// The catalogue name of the bootable base.
pub const BASE_NAME: &str = "e2e-debian";

/// The SSD's serial: the guest sees `/dev/disk/by-id/virtio-piimg-ssd-…`.
pub const SSD_SERIAL_PREFIX: &str = "piimg-ssd-";

/// The server's name in `server.url`, as users name their server (not an IP address).
pub const SERVER_NAME: &str = "control-plane.lab.example";

/// `server.address`: where agents reach the server (the host, to the VM; a QEMU host forward
/// to the control plane VM's API). Agents resolve [`SERVER_NAME`] to it.
pub const SERVER_ADDRESS: &str = "10.0.2.2";

/// The k3s API port inside the control plane VM.
pub const GUEST_API_PORT: u16 = 6443;

/// A cluster folder for boot tests. Derefs to the [`ExampleCluster`].
pub struct BootCluster {
    /// The copy of the example cluster.
    pub example: ExampleCluster,
    /// The host port images send reports to (as `10.0.2.2:PORT`), where `piimg watch` listens.
    pub report_port: u16,
    /// The host port forwarded to the control plane VM's k3s API (agents join
    /// `https://10.0.2.2:PORT`, or `https://SERVER_NAME:PORT` once the server is named).
    pub api_port: u16,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    /// The raw image.
    pub image: std::path::PathBuf,
    /// The build id baked into it (from `.build.json`).
    pub build_id: String,
}

impl std::ops::Deref for BootCluster {
    type Target = ExampleCluster;
    fn deref(&self) -> &ExampleCluster {
        &self.example
    }
}

/// `server.url` of a boot cluster whose API is forwarded from host port `api_port`.
pub fn server_url(api_port: u16) -> String {
    format!("https://{SERVER_NAME}:{api_port}")
}

impl BootCluster {
    /// Copies the example cluster under `parent` (with the download cache shared by every boot
    /// test, `target/e2e-cache/`) and edits `cluster.toml` as a user would:
    /// the bootable base in the catalogue, reports to `http://10.0.2.2:REPORT_PORT/report`,
    /// the server at `https://10.0.2.2:API_PORT` (a host forward to the control plane VM;
    /// [`BootCluster::name_the_server`] names it instead); then runs `piimg secrets init`.
    pub fn new(parent: &Path, base: &Base, report_port: u16, api_port: u16) -> BootCluster {
        let mut example = ExampleCluster::copy(Some(parent));
        // One download cache for every boot test and run: importing the 1.6 GB base costs
        // about 30 s per cache. It is content-addressed, so sharing it is safe.
        example.cache = crate::workspace_root().join("target").join("e2e-cache");
        cmd::success(
            Command::new("cp")
                .arg("-a")
                .arg(crate::workspace_root().join("tests/e2e/overlay"))
                .arg(example.path().join("overlays/e2e")),
        );
        example.edit_cluster(|c| {
            let mut b = toml::Table::new();
            b.insert("url".into(), base.image.display().to_string().into());
            b.insert("sha256".into(), base.sha256.clone().into());
            b.insert(
                "sha256_from".into(),
                "computed by scripts/e2e-base from the image it built".into(),
            );
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
            c["server"]
                .as_table_mut()
                .expect("[server]")
                .insert("url".into(), format!("https://10.0.2.2:{api_port}").into());
        });
        example.secrets_init();
        BootCluster {
            example,
            report_port,
            api_port,
        }
    }

    /// Names the server as users do: `server.url = "https://SERVER_NAME:API_PORT"` and
    /// `server.address = "SERVER_ADDRESS"` (where agents reach it; they resolve the name to
    /// it). Returns the URL. Only a cluster with an agent needs it: a server alone never
    /// reads `server.url`.
    pub fn name_the_server(&self) -> String {
        let url = server_url(self.api_port);
        self.edit_cluster(|c| {
            let server = c["server"].as_table_mut().expect("[server]");
            server.insert("url".into(), url.clone().into());
            server.insert("address".into(), SERVER_ADDRESS.into());
        });
        url
    }

    /// Makes `node` boot in the VM: the e2e base, DHCP (user networking), the SSD by its
    /// virtio serial, the `e2e` overlay.
    pub fn prepare_node(&self, node: &str) {
        self.edit_profile(node, |p| {
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

    /// `piimg build --fleet NAME --format img` with these guest binaries; asserts success.
    pub fn build_fleet(&self, fleet: &str, k3s: &Path, firstboot: &Path) -> Built {
        let (k3s, firstboot) = (k3s.display().to_string(), firstboot.display().to_string());
        let out_dir = self.out.display().to_string();
        let out = self.piimg(&[
            "build",
            "--fleet",
            fleet,
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
            "piimg build --fleet {fleet} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.built(fleet, self.out.join(format!("{fleet}.img")))
    }

    /// The image and the build id its `.build.json` records.
    fn built(&self, name: &str, image: std::path::PathBuf) -> Built {
        let record = self.out.join(format!("{name}.build.json"));
        let json: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&record).unwrap_or_else(|e| panic!("{}: {e}", record.display())),
        )
        .expect("build record is JSON");
        Built {
            image,
            build_id: json["build_id"].as_str().expect("build_id").to_string(),
        }
    }

    /// `piimg build --profile NODE --format img` with these guest binaries; asserts success.
    pub fn build(&self, node: &str, k3s: &Path, firstboot: &Path) -> Built {
        self.build_as(node, k3s, firstboot, "img")
    }

    /// [`BootCluster::build`] in `format` (`img`, `zst`, `xz`, `gz`); a compressed image is
    /// decoded with the standard tool to `<node>.img`, as a user would before `dd`.
    pub fn build_as(&self, node: &str, k3s: &Path, firstboot: &Path, format: &str) -> Built {
        let (k3s, firstboot) = (k3s.display().to_string(), firstboot.display().to_string());
        let packed = self.build_ok(
            node,
            format,
            &["--k3s-bin", &k3s, "--firstboot-bin", &firstboot],
        );
        let image = self.out.join(format!("{node}.img"));
        if format != "img" {
            let tool = match format {
                "zst" => "zstd",
                "xz" => "xz",
                _ => "gzip",
            };
            let decoded = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "{tool} -d -c '{}' > '{}'",
                    packed.display(),
                    image.display()
                ))
                .status()
                .expect("run the decoder");
            assert!(decoded.success(), "{tool} -d {} failed", packed.display());
        }
        self.built(node, image)
    }
}
