//! Zero-touch, proven: an image piimg baked boots in QEMU, its first boot formats the SSD,
//! starts k3s (a stand-in that answers what first boot checks) and reports ready to
//! `piimg watch` on the host; an agent joins the control plane VM; a newer image booted with
//! the same SSD keeps its data; a foreign disk is refused; a power cut in the middle of the
//! storage step is finished by the next boot.
//!
//! The cluster test also checks what a user would on the nodes, in a world as hard as the real
//! one where piimg's bugs hid (issue 13; tests/e2e/README.md): sshd answers (socket-activated
//! as on Ubuntu) and no ordering cycle was broken at boot; the root grew to a disk larger than
//! the image; kubelet data and pod logs are bind mounts from the SSD; `kernel.cmdline_extra`
//! reached grub.cfg; the agent joins the server by name (`server.address`). Those checks are
//! gathered ([`Verdicts`]) and reported together.
//!
//! Skipped unless `PIIMG_E2E=1` (`scripts/e2e-boot` sets it): it needs mmdebstrap, a Debian
//! mirror and qemu-system-x86, and takes minutes. On failure the serial logs, the watch's
//! output and the SSD files stay in `target/e2e-boot/TEST/`, and the panic prints their tails.
//! Every VM is killed when its test ends, passing or not.

use piimg::fs::ext4::{Access, Ext4, Meta};
use piimg_e2e::boot::cluster::{BootCluster, Built, GUEST_API_PORT, SSD_SERIAL_PREFIX};
use piimg_e2e::boot::guest::{self, Base, ROOT_LABEL};
use piimg_e2e::boot::verdict::{self, Verdicts};
use piimg_e2e::boot::vm::{Disk, Outcome, Vm};
use piimg_e2e::boot::watch::{free_port, Watch};
use piimg_e2e::boot::{logs_dir, tail};
use piimg_e2e::{blkid_probe, check_ext4, debugfs_cat, partitions, sha256_file};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// One boot may take this long before the VM is killed (a plain boot is ~30 s under TCG).
const BOOT_TIMEOUT: Duration = Duration::from_secs(420);

/// The marker the re-image step writes onto the SSD and expects to find again.
const MARKER: &str = "/piimg-e2e-marker";

/// The fleet image the agents boot (cluster.toml `[fleets.bookworm-workers]`).
const FLEET: &str = "bookworm-workers";

/// The agents that join the control plane VM, both from the fleet image: each with the
/// board its profile's `match` names (worker-1 by serial number, worker-2 by MAC), and what
/// its node carries of its own (a label only worker-2's profile has).
const AGENTS: [Agent; 2] = [
    Agent {
        node: "worker-1",
        serial: Some("10000000d83a0001"),
        mac: None,
        label: "piimg.dev/board=pi5",
    },
    Agent {
        node: "worker-2",
        serial: Some("10000000d83a00ff"),
        mac: Some("d8:3a:dd:00:00:02"),
        label: "piimg.dev/disk=fast",
    },
];

/// A board that boots the fleet image.
struct Agent {
    node: &'static str,
    /// Its serial number (`-smbios type=1,serial=…`).
    serial: Option<&'static str>,
    /// Its MAC.
    mac: Option<&'static str>,
    /// A node label its profile gives it.
    label: &'static str,
}

/// The port of `piimg-e2e-shutdown.socket` in the guest (tests/e2e/overlay).
const GUEST_SHUTDOWN_PORT: u16 = 7777;

/// On the kernel command line: the VM stays up after first boot (tests/e2e/overlay).
const STAY: &str = "piimg.e2e.stay";

/// sshd's port in the guest.
const GUEST_SSH_PORT: u16 = 22;

/// How long sshd may take to answer once first boot is done.
const SSH_WITHIN: Duration = Duration::from_secs(30);

/// The images are booted from a disk this much larger than the image, as a card or an SSD
/// is larger than the image written to it (for GPT the backup header is then not at the end).
const DISK_LARGER_BY: u64 = 1 << 30;

/// The root filesystem's partition in the e2e base (GPT p1, last on the disk).
const ROOT_PARTITION: u32 = 1;

/// The kernel parameter the control plane's profile adds (`kernel.cmdline_extra`).
const CMDLINE_MARKER: &str = "piimg.e2e.marker=1";

/// Where first boot must bind-mount the kubelet's data and the pod logs from the SSD:
/// `(path, directory under the SSD's mount point)`.
const SSD_BIND_MOUNTS: [(&str, &str); 2] = [
    ("/var/lib/kubelet", "/kubelet"),
    ("/var/log/pods", "/pod-logs"),
];

fn enabled() -> bool {
    if std::env::var("PIIMG_E2E").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("skipped: set PIIMG_E2E=1 (scripts/e2e-boot does) to boot baked images in QEMU");
    false
}

thread_local! {
    /// The running test's short name, for the phase lines (tests may run side by side).
    static TEST: std::cell::RefCell<&'static str> = const { std::cell::RefCell::new("") };
}

fn phase(name: &str, elapsed: Duration) {
    let test = TEST.with(|t| *t.borrow());
    eprintln!("e2e phase [{test}] {name}: {:.1} s", elapsed.as_secs_f64());
}

/// Makes the image file `extra` bytes longer (sparse), as writing it to a larger disk does.
fn enlarge(image: &Path, extra: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(image)
        .unwrap_or_else(|e| panic!("{}: {e}", image.display()));
    let len = f.metadata().expect("image metadata").len();
    f.set_len(len + extra)
        .unwrap_or_else(|e| panic!("{}: cannot enlarge: {e}", image.display()));
}

/// The serial console's lines about sshd and ordering cycles, for a failed SSH check.
fn ssh_lines(serial: &str) -> String {
    let lines: Vec<&str> = serial
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("ssh") || l.contains("ordering cycle")
        })
        .collect();
    if lines.is_empty() {
        return "(no line about ssh on the serial console)".into();
    }
    tail(&lines.join("\n"), 25)
}

/// A blank disk file of `gib` GiB (sparse).
fn blank_disk(path: &Path, gib: u64) {
    let f = std::fs::File::create(path).expect("create SSD file");
    f.set_len(gib << 30).expect("size SSD file");
}

/// One boot of one node with its SSD, watched from the host.
struct Boot {
    node: &'static str,
    outcome: Outcome,
    watch_status: Option<ExitStatus>,
    watch_out: String,
    serial_log: PathBuf,
}

/// The VM for one boot of `image` with `ssd`; `extra` is added to the kernel command line.
///
/// The direct kernel boot stands in for GRUB, so it passes what the `grub.cfg` first boot
/// wrote would pass: the control plane profile's `kernel.cmdline_extra` ([`CMDLINE_MARKER`]).
/// Otherwise first boot, which reboots once when the running kernel lacks the parameters it
/// just gave GRUB, would reboot a VM that `-no-reboot` then ends (that path is covered by
/// firstboot's own tests).
fn vm(base: &Base, image: &Path, ssd: &Disk, serial_log: PathBuf, extra: &str) -> Vm {
    Vm {
        kernel: base.kernel.clone(),
        initrd: base.initrd.clone(),
        append: format!(
            "root=LABEL={ROOT_LABEL} ro console=ttyS0 panic=-1 {CMDLINE_MARKER} {extra}"
        ),
        disks: vec![
            Disk {
                path: image.to_path_buf(),
                serial: None,
            },
            ssd.clone(),
        ],
        forwards: vec![],
        serial_log,
        timeout: BOOT_TIMEOUT,
        board_serial: None,
        mac: None,
    }
}

impl Boot {
    /// Boots `image` with `ssd` once, with `piimg watch --until-ready` for `node` running.
    fn run(
        name: &str,
        node: &'static str,
        base: &Base,
        cluster: &BootCluster,
        image: &Path,
        ssd: &Disk,
        logs: &Path,
    ) -> Boot {
        let watch = Watch::start(
            &cluster.report_key_file(),
            &[node],
            cluster.report_port,
            "10m",
            &logs.join(format!("{name}.watch.log")),
        );
        let serial_log = logs.join(format!("{name}.serial.log"));
        let outcome = vm(base, image, ssd, serial_log.clone(), "").boot();
        phase(&format!("boot {name}"), outcome.elapsed);
        let (watch_status, watch_out) = watch.finish(Duration::from_secs(15));
        Boot {
            node,
            outcome,
            watch_status,
            watch_out,
            serial_log,
        }
    }

    /// Everything a person needs to see why the boot went wrong.
    fn explain(&self) -> String {
        format!(
            "{}: {} after {:.0} s\n--- first boot on the serial console ---\n{}\n--- serial console (last 60 lines; whole log in {}) ---\n{}\n--- piimg watch ---\n{}",
            self.node,
            match self.outcome.status {
                None => "VM killed at the timeout".to_string(),
                Some(s) => format!("qemu exited with {s}"),
            },
            self.outcome.elapsed.as_secs_f64(),
            first_boot_lines(&self.outcome.serial),
            self.serial_log.display(),
            tail(&self.outcome.serial, 60),
            tail(&self.watch_out, 20),
        )
    }

    /// The VM powered off by itself, `piimg watch --until-ready` exited 0 with this build
    /// ready, and the serial console shows every first-boot step finished; panics otherwise.
    fn assert_ready(&self, build_id: &str) {
        if let Err(e) = self.ready(build_id) {
            panic!("{e}\n{}", self.explain());
        }
    }

    /// What [`Boot::assert_ready`] checks: `Err` names the first thing that does not hold.
    fn ready(&self, build_id: &str) -> Result<String, String> {
        if !self.outcome.powered_off() {
            return Err("the VM did not power off by itself".into());
        }
        if !self
            .outcome
            .serial
            .contains("piimg-e2e: first boot unit: active")
        {
            return Err("piimg-firstboot.service did not end active".into());
        }
        if !self.watch_status.is_some_and(|s| s.success()) {
            return Err(format!(
                "piimg watch --until-ready did not exit 0 ({:?})",
                self.watch_status
            ));
        }
        for step in ["storage", "k3s-data", "join", "report"] {
            if !self
                .outcome
                .serial
                .contains(&format!("piimg-e2e: status: {step}: ok"))
            {
                return Err(format!("first boot's step {step} did not finish"));
            }
        }
        let line = format!("{} ready address 10.0.2.15 build {build_id}", self.node);
        if !self.watch_out.contains(&line) {
            return Err(format!(
                "the report's build id is not the image's ({build_id})"
            ));
        }
        if !self
            .outcome
            .serial
            .contains(&format!("piimg-e2e: status: build: {build_id}"))
        {
            return Err("first boot's saved build id is not the image's".into());
        }
        Ok(format!("build {build_id}"))
    }

    /// What first boot did with the SSD (`formatted`, `mounted`), from its saved progress.
    fn storage_action(&self) -> Option<String> {
        self.outcome.serial.lines().find_map(|l| {
            let rest = l.split("piimg-e2e: status: storage: ").nth(1)?;
            let mut words = rest.split_whitespace();
            words.next()?; // the disk
            let action = words.next()?;
            (action != "ok").then(|| action.to_string())
        })
    }
}

/// The serial console's lines from piimg-firstboot and the e2e overlay (ANSI colours dropped).
fn first_boot_lines(serial: &str) -> String {
    let lines: Vec<&str> = serial
        .lines()
        .filter(|l| l.contains("piimg-firstboot[") || l.contains("piimg-e2e:"))
        .collect();
    if lines.is_empty() {
        return "(none: piimg-firstboot never ran, or its log does not reach the console)".into();
    }
    tail(&lines.join("\n"), 40)
}

/// The SSD's one partition: named for the cluster, ext4 with a piimg label, clean.
/// Returns its start and its filesystem UUID.
fn assert_piimg_ssd(ssd: &Path) -> (u64, String) {
    let parts = partitions(ssd);
    assert_eq!(
        parts.len(),
        1,
        "the SSD should hold one partition: {parts:?}"
    );
    let fs = blkid_probe(ssd, parts[0].start);
    assert_eq!(fs.get("TYPE").map(String::as_str), Some("ext4"), "{fs:?}");
    let label = fs.get("LABEL").cloned().unwrap_or_default();
    assert!(
        label.starts_with("piimg"),
        "SSD label {label:?} is not piimg's"
    );
    check_ext4(ssd, parts[0].start);
    (parts[0].start, fs.get("UUID").cloned().unwrap_or_default())
}

/// [`assert_piimg_ssd`], as a check: `Err` with what it panicked with.
fn piimg_ssd(ssd: &Path) -> Result<(u64, String), String> {
    std::panic::catch_unwind(|| assert_piimg_ssd(ssd)).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(no message)".into())
    })
}

/// The node password baked into an image (root filesystem = partition 1).
fn node_password(built: &Built) -> Vec<u8> {
    let root = partitions(&built.image)
        .into_iter()
        .find(|p| p.number == 1)
        .expect("root partition 1");
    debugfs_cat(&built.image, root.start, "/etc/rancher/node/password")
}

/// A different stand-in k3s: the same program with bytes appended (an ELF ignores them),
/// so the build pins another digest, as a newer k3s release would.
fn newer_k3s(k3s: &Path, dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(k3s).expect("read stand-in k3s");
    bytes.extend_from_slice(b"\n# piimg e2e: the next stand-in k3s\n");
    let path = dir.join("k3s-next");
    std::fs::write(&path, bytes).expect("write the next stand-in k3s");
    path
}

/// What every boot test starts from: its logs folder, the bootable base, the guest binaries.
struct Setup {
    logs: PathBuf,
    base: Base,
    firstboot: PathBuf,
    k3s: PathBuf,
}

/// `None` (the test is skipped) unless `PIIMG_E2E=1`.
fn setup(test: &'static str) -> Option<Setup> {
    if !enabled() {
        return None;
    }
    TEST.with(|t| *t.borrow_mut() = test);
    let logs = logs_dir(test);
    let t = Instant::now();
    let base = guest::base();
    phase("base (cached or built)", t.elapsed());
    let t = Instant::now();
    let firstboot = guest::binary("piimg-firstboot", "piimg-firstboot");
    let k3s = guest::binary("piimg-k3s-stand-in", "k3s");
    phase("guest binaries", t.elapsed());
    Some(Setup {
        logs,
        base,
        firstboot,
        k3s,
    })
}

impl Setup {
    /// A boot cluster with `nodes` pointed at the e2e base.
    fn cluster(&self, nodes: &[&str]) -> BootCluster {
        let cluster = BootCluster::new(
            &self.logs.join("work"),
            &self.base,
            free_port(),
            free_port(),
        );
        for node in nodes {
            cluster.prepare_node(node);
        }
        cluster
    }

    /// Bakes `node` with the guest binaries.
    fn bake(&self, cluster: &BootCluster, node: &str) -> Built {
        // One bake at a time: the first imports the base into the shared download cache,
        // the others then find it there instead of importing it side by side.
        static BAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = BAKING.lock().unwrap_or_else(|p| p.into_inner());
        let t = Instant::now();
        let built = cluster.build(node, &self.k3s, &self.firstboot);
        phase(&format!("bake {node}"), t.elapsed());
        built
    }

    /// Bakes the fleet image with the guest binaries.
    fn bake_fleet(&self, cluster: &BootCluster, fleet: &str) -> Built {
        static BAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = BAKING.lock().unwrap_or_else(|p| p.into_inner());
        let t = Instant::now();
        let built = cluster.build_fleet(fleet, &self.k3s, &self.firstboot);
        phase(&format!("bake fleet {fleet}"), t.elapsed());
        built
    }

    /// A blank SSD file of `gib` GiB and the disk the VM sees (serial `piimg-ssd-N`).
    fn blank_ssd(&self, name: &str, gib: u64, n: u32) -> Disk {
        let path = self.logs.join(name);
        blank_disk(&path, gib);
        Disk {
            path,
            serial: Some(format!("{SSD_SERIAL_PREFIX}{n}")),
        }
    }
}

/// A copy of a raw image (sparse), as a second card written from the same file.
fn copy_image(from: &Path, to: &Path) {
    let ok = std::process::Command::new("cp")
        .args(["--sparse=always", "--reflink=auto"])
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(ok.success(), "cp {} {}", from.display(), to.display());
}

/// What a file of a powered-off node's root filesystem holds (`None` when it is absent).
fn root_file(image: &Path, path: &str) -> Option<Vec<u8>> {
    let root = partitions(image)
        .into_iter()
        .find(|p| p.number == ROOT_PARTITION)
        .expect("root partition");
    if !piimg_e2e::debugfs_exists(image, root.start, path) {
        return None;
    }
    Some(debugfs_cat(image, root.start, path))
}

/// Named to sort first: libtest starts tests in name order, and this, the longest, then runs
/// beside the three short ones instead of after them.
#[test]
fn a_cluster_from_one_fleet_image_joins_the_control_plane_all_ready_and_a_reimage_keeps_the_data() {
    let Some(setup) = setup("cluster") else {
        return;
    };
    let logs = &setup.logs;
    let agents: Vec<&str> = AGENTS.iter().map(|a| a.node).collect();
    let cluster = setup.cluster(&["control-plane", agents[0], agents[1]]);
    // The server by name, at the address agents reach it at (the host, forwarding to the
    // control plane VM's API), as users write cluster.toml.
    let server_url = cluster.name_the_server();
    // An extra kernel parameter, as a user adds one (a USB quirk, say): on amd64 a GRUB drop-in
    // that first boot applies with update-grub.
    cluster.edit_profile("control-plane", |p| {
        let mut kernel = toml::Table::new();
        kernel.insert(
            "cmdline_extra".into(),
            toml::Value::Array(vec![CMDLINE_MARKER.into()]),
        );
        p.insert("kernel".into(), kernel.into());
    });
    let first = setup.bake(&cluster, "control-plane");
    // One image for both agents; each board gets its own copy, as each gets its own card.
    let fleet = setup.bake_fleet(&cluster, FLEET);
    let first_password = node_password(&first);
    let agent_images: Vec<Built> = AGENTS
        .iter()
        .map(|a| {
            let image = logs.join(format!("{}.img", a.node));
            copy_image(&fleet.image, &image);
            Built {
                image,
                build_id: fleet.build_id.clone(),
            }
        })
        .collect();
    // Written to disks larger than the images, as every card and SSD is.
    enlarge(&first.image, DISK_LARGER_BY);
    for b in &agent_images {
        enlarge(&b.image, DISK_LARGER_BY);
    }

    // The control plane's first boot, kept up (its k3s API forwarded to the host, where the
    // agent VMs reach it as 10.0.2.2, the server's address), and the agents', at the same time;
    // one watch for all. All stay up until the test has knocked on their sshd (port 22,
    // forwarded to the host).
    let cp_ssd = setup.blank_ssd("control-plane-ssd.img", 2, 1);
    let (cp_shutdown, cp_ssh) = (free_port(), free_port());
    let mut cp_vm = vm(
        &setup.base,
        &first.image,
        &cp_ssd,
        logs.join("first-boot.serial.log"),
        STAY,
    );
    cp_vm.forwards = vec![
        format!("tcp:127.0.0.1:{}-:{GUEST_API_PORT}", cluster.api_port),
        format!("tcp:127.0.0.1:{cp_shutdown}-:{GUEST_SHUTDOWN_PORT}"),
        format!("tcp:127.0.0.1:{cp_ssh}-:{GUEST_SSH_PORT}"),
    ];
    struct AgentVm {
        vm: Vm,
        ssd: Disk,
        shutdown: u16,
        ssh: u16,
    }
    let agent_vms: Vec<AgentVm> = AGENTS
        .iter()
        .zip(&agent_images)
        .enumerate()
        .map(|(i, (a, built))| {
            let ssd = setup.blank_ssd(&format!("{}-ssd.img", a.node), 2, 2 + i as u32);
            let (shutdown, ssh) = (free_port(), free_port());
            let mut vm = vm(
                &setup.base,
                &built.image,
                &ssd,
                logs.join(format!("{}.serial.log", a.node)),
                STAY,
            );
            vm.forwards = vec![
                format!("tcp:127.0.0.1:{shutdown}-:{GUEST_SHUTDOWN_PORT}"),
                format!("tcp:127.0.0.1:{ssh}-:{GUEST_SSH_PORT}"),
            ];
            vm.board_serial = a.serial.map(str::to_string);
            vm.mac = a.mac.map(str::to_string);
            AgentVm {
                vm,
                ssd,
                shutdown,
                ssh,
            }
        })
        .collect();
    let watch = Watch::start(
        &cluster.report_key_file(),
        &["control-plane", agents[0], agents[1]],
        cluster.report_port,
        "10m",
        &logs.join("cluster.watch.log"),
    );
    let t = Instant::now();
    let mut cp_running = cp_vm.start();
    let mut running: Vec<_> = agent_vms.iter().map(|a| a.vm.start()).collect();
    let not_done = |node: &str| Err(format!("{node} never finished first boot, so never asked"));
    let mut agent_done = Vec::new();
    let mut agent_banner = Vec::new();
    for ((a, r), v) in AGENTS.iter().zip(&mut running).zip(&agent_vms) {
        let done = r.wait_for_serial("piimg-e2e: staying up");
        phase(
            &format!("boot {} (until first boot done)", a.node),
            t.elapsed(),
        );
        agent_banner.push(if done {
            verdict::ssh_banner(v.ssh, SSH_WITHIN)
        } else {
            not_done(a.node)
        });
        agent_done.push(done);
    }
    let cp_done = cp_running.wait_for_serial("piimg-e2e: staying up");
    phase("boot control-plane (until first boot done)", t.elapsed());
    let cp_banner = if cp_done {
        verdict::ssh_banner(cp_ssh, SSH_WITHIN)
    } else {
        not_done("control-plane")
    };
    let (watch_status, watch_out) = watch.finish(Duration::from_secs(15));
    let agent_outcomes: Vec<Outcome> = running
        .into_iter()
        .zip(&agent_vms)
        .map(|(r, v)| r.power_off_via(v.shutdown))
        .collect();
    let cp_outcome = cp_running.power_off_via(cp_shutdown);
    phase("cluster boot in all", t.elapsed());
    let cp = Boot {
        node: "control-plane",
        outcome: cp_outcome,
        watch_status,
        watch_out: watch_out.clone(),
        serial_log: cp_vm.serial_log.clone(),
    };
    let workers: Vec<Boot> = AGENTS
        .iter()
        .zip(agent_outcomes)
        .zip(&agent_vms)
        .map(|((a, outcome), v)| Boot {
            node: a.node,
            outcome,
            watch_status,
            watch_out: watch_out.clone(),
            serial_log: v.vm.serial_log.clone(),
        })
        .collect();

    let mut v = Verdicts::new("cluster");
    let mut nodes = vec![(&cp, &first, &cp_ssd, cp_done, cp_banner)];
    for ((((w, built), av), done), banner) in workers
        .iter()
        .zip(&agent_images)
        .zip(&agent_vms)
        .zip(agent_done)
        .zip(agent_banner)
    {
        nodes.push((w, built, &av.ssd, done, banner));
    }
    let mut cp_ssd_made = None;
    let mut ssd_uuids = Vec::new();
    for (boot, built, ssd, done, banner) in nodes {
        let node = boot.node;
        let serial = &boot.outcome.serial;
        v.ensure(
            &format!("{node} finished first boot and stayed up"),
            done,
            || first_boot_lines(serial),
        );
        v.ensure(
            &format!("{node} powered off when asked"),
            serial.contains("piimg-e2e: asked to power off"),
            || tail(serial, 20),
        );
        v.check(
            &format!("{node} reported ready, every first-boot step ok"),
            boot.ready(&built.build_id)
                .map_err(|e| format!("{e}\n{}", first_boot_lines(serial))),
        );
        v.check(
            &format!("{node} answers on port 22 with an SSH banner"),
            banner.map_err(|e| {
                format!(
                    "{e}\n--- the guest's lines about ssh (ssh.socket is enabled, ssh.service not, as on Ubuntu) ---\n{}",
                    ssh_lines(serial)
                )
            }),
        );
        v.check(
            &format!("{node} booted without an ordering cycle"),
            verdict::no_ordering_cycle(serial),
        );
        v.check(
            &format!(
                "{node}'s root grew to the end of its disk ({} MiB larger than the image)",
                DISK_LARGER_BY >> 20
            ),
            verdict::root_fills_disk(&built.image, ROOT_PARTITION),
        );
        v.check(
            &format!("{node}: /var/lib/kubelet and /var/log/pods are bind mounts from the SSD"),
            verdict::bind_mounts_from_ssd(serial, &SSD_BIND_MOUNTS),
        );
        let formatted = boot.storage_action();
        v.ensure(
            &format!("{node}'s first boot formatted the SSD"),
            formatted.as_deref() == Some("formatted"),
            || format!("storage step: {formatted:?}\n{}", first_boot_lines(serial)),
        );
        let made = piimg_ssd(&ssd.path);
        if node == "control-plane" {
            cp_ssd_made = made.clone().ok();
        }
        if let Ok((_, uuid)) = &made {
            ssd_uuids.push(uuid.clone());
        }
        v.check(
            &format!("{node}'s SSD holds one clean ext4 with the piimg label"),
            made.map(|(_, uuid)| uuid),
        );
    }
    ssd_uuids.sort();
    ssd_uuids.dedup();
    v.ensure(
        "every node made a filesystem of its own on its own SSD",
        ssd_uuids.len() == 3,
        || format!("SSD filesystem UUIDs: {ssd_uuids:?}"),
    );
    let secrets = piimg::secrets::load(&cluster.profiles.join("secrets.toml")).expect("secrets");
    for (a, w) in AGENTS.iter().zip(&workers) {
        let node = a.node;
        let serial = &w.outcome.serial;
        v.ensure(
            &format!("the fleet image's board took the node {node} by its profile's match"),
            serial.contains(&format!("piimg: this board is {node}")),
            || first_boot_lines(serial),
        );
        v.ensure(
            &format!("{node} registered with the control plane at {server_url}, under its own name and with its own labels"),
            serial.lines().any(|l| {
                l.contains(&format!("agent {node} registered with {server_url}, node labels ["))
                    && l.contains(a.label)
            }),
            || first_boot_lines(serial),
        );
        for line in [
            format!("k3s (stand-in): node {node} joined"),
            format!("k3s (stand-in): node {node} Ready: True"),
        ] {
            v.ensure(
                &format!(
                    "the control plane's k3s logged {line:?} (the agent's Node Ready came from it)"
                ),
                cp.outcome.serial.contains(&line),
                || tail(&cp.outcome.serial, 30),
            );
        }
        // After first boot the node keeps its own node password and no other node's files.
        let own = piimg::secrets::node_password(&secrets.node_password_seed, node);
        let image = &agent_images[AGENTS.iter().position(|x| x.node == node).unwrap()].image;
        let password = root_file(image, "/etc/rancher/node/password");
        v.ensure(
            &format!("{node}'s root holds its own node password"),
            password
                .as_deref()
                .map(|p| String::from_utf8_lossy(p).trim().to_string())
                == Some(own.expose().to_string()),
            || "the password in /etc/rancher/node/password is not the node's".into(),
        );
        let left = [
            "/etc/piimg/fleet.toml",
            "/etc/piimg/fleet/worker-1.toml",
            "/etc/piimg/fleet/worker-2.toml",
        ]
        .into_iter()
        .filter(|f| root_file(image, f).is_some())
        .collect::<Vec<_>>();
        v.ensure(
            &format!("{node}'s root keeps no fleet files (no other node's password)"),
            left.is_empty(),
            || format!("still there: {left:?}"),
        );
    }
    v.check(
        &format!("the control plane's /boot/grub/grub.cfg has {CMDLINE_MARKER} on its linux lines"),
        verdict::grub_linux_lines_carry(&first.image, ROOT_PARTITION, CMDLINE_MARKER),
    );

    // Re-image: data on the SSD (written rootless through the builder's ext4 module), a newer
    // build (another k3s), the same SSD: mounted, not formatted; same node password. Only
    // when the first boot left a piimg SSD to re-image with.
    if let (Some((start, uuid)), Ok(_)) = (cp_ssd_made, cp.ready(&first.build_id)) {
        reimage(
            &setup,
            &cluster,
            &cp_ssd,
            start,
            &uuid,
            &first,
            &first_password,
            &mut v,
        );
    } else {
        eprintln!(
            "e2e check [cluster] skipped: the re-image (the control plane's first boot failed)"
        );
    }
    let explained: Vec<String> = std::iter::once(&cp)
        .chain(&workers)
        .map(Boot::explain)
        .collect();
    v.finish(|| explained.join("\n\n"));
}

/// The re-image half of the cluster test: a marker on the control plane's SSD, a newer
/// build as `.img.zst` (written to a larger disk again), booted with the same SSD.
#[allow(clippy::too_many_arguments)]
fn reimage(
    setup: &Setup,
    cluster: &BootCluster,
    cp_ssd: &Disk,
    start: u64,
    uuid: &str,
    first: &Built,
    first_password: &[u8],
    v: &mut Verdicts,
) {
    let logs = &setup.logs;
    let ssd = &cp_ssd.path;
    let mut fs = Ext4::open(ssd, start, Access::ReadWrite).expect("open the SSD's ext4");
    let meta = Meta {
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 1_700_000_000,
    };
    fs.write_file(MARKER, &mut &b"kept across re-imaging\n"[..], &meta)
        .expect("write the marker");
    fs.close().expect("close the SSD's ext4");
    let next_k3s = newer_k3s(&setup.k3s, logs);
    let t = Instant::now();
    // Built compressed (edited in a copy-on-write overlay, not a copy of the base) and decoded
    // with zstd, as a user flashing the .img.zst would: it must boot the same.
    let second = cluster.build_as("control-plane", &next_k3s, &setup.firstboot, "zst");
    phase("bake control-plane again", t.elapsed());
    v.ensure(
        "a new k3s makes a new build",
        second.build_id != first.build_id,
        || format!("both builds are {}", first.build_id),
    );
    v.ensure(
        "the node password is the same in the new build",
        node_password(&second) == first_password,
        || "the node password changed between builds".into(),
    );
    enlarge(&second.image, DISK_LARGER_BY);
    let boot = Boot::run(
        "re-image",
        "control-plane",
        &setup.base,
        cluster,
        &second.image,
        cp_ssd,
        logs,
    );
    v.check(
        "the re-imaged control plane reported ready, every first-boot step ok",
        boot.ready(&second.build_id)
            .map_err(|e| format!("{e}\n{}", boot.explain())),
    );
    let action = boot.storage_action();
    v.ensure(
        "the re-imaged control plane mounted its SSD (not formatted)",
        action.as_deref() == Some("mounted"),
        || format!("storage step: {action:?}\n{}", boot.explain()),
    );
    v.check(
        "after the re-image the SSD is the same filesystem (start, UUID)",
        piimg_ssd(ssd).and_then(|(s, u)| {
            if (s, u.as_str()) == (start, uuid) {
                Ok(u)
            } else {
                Err(format!(
                    "now at {s} with UUID {u}, before at {start} with {uuid}: re-formatted"
                ))
            }
        }),
    );
    let kept = debugfs_cat(ssd, start, MARKER);
    v.ensure(
        "the marker on the SSD survived the re-image",
        kept == b"kept across re-imaging\n",
        || format!("{MARKER} now holds {:?}", String::from_utf8_lossy(&kept)),
    );
    v.check(
        "the re-imaged control plane booted without an ordering cycle",
        verdict::no_ordering_cycle(&boot.outcome.serial),
    );
    v.check(
        "the re-imaged control plane's root grew to the end of its disk",
        verdict::root_fills_disk(&second.image, ROOT_PARTITION),
    );
    v.check(
        "the re-imaged control plane: /var/lib/kubelet and /var/log/pods are bind mounts from the SSD",
        verdict::bind_mounts_from_ssd(&boot.outcome.serial, &SSD_BIND_MOUNTS),
    );
}

#[test]
fn a_board_the_fleet_does_not_name_reports_its_serial_and_mac_and_touches_nothing() {
    let Some(setup) = setup("unmatched") else {
        return;
    };
    let cluster = setup.cluster(&AGENTS.map(|a| a.node));
    let fleet = setup.bake_fleet(&cluster, FLEET);
    let ssd = setup.blank_ssd("ssd.img", 1, 1);
    let before = sha256_file(&ssd.path);
    let watch = Watch::start(
        &cluster.report_key_file(),
        &AGENTS.map(|a| a.node),
        cluster.report_port,
        "10m",
        &setup.logs.join("unmatched.watch.log"),
    );
    let mut board = vm(
        &setup.base,
        &fleet.image,
        &ssd,
        setup.logs.join("unmatched.serial.log"),
        "",
    );
    let (serial, mac) = ("PIIMG-E2E-UNKNOWN", "52:54:00:00:0e:2e");
    board.board_serial = Some(serial.into());
    board.mac = Some(mac.into());
    let outcome = board.boot();
    phase("boot unmatched", outcome.elapsed);
    let (_, watch_out) = watch.finish(Duration::from_secs(10));
    let explain = || {
        format!(
            "--- first boot on the serial console ---\n{}\n--- serial console ---\n{}\n--- piimg watch ---\n{}",
            first_boot_lines(&outcome.serial),
            tail(&outcome.serial, 60),
            tail(&watch_out, 20)
        )
    };
    assert!(
        outcome.powered_off(),
        "the VM did not power off by itself\n{}",
        explain()
    );
    assert!(
        outcome.serial.contains("is no node of this fleet image")
            && outcome.serial.contains(&format!("serial {serial}")),
        "the board should say on its console that it is no node of the fleet\n{}",
        explain()
    );
    assert!(
        watch_out.contains(&format!("board serial {serial}, mac {mac}"))
            && watch_out.contains("does not join"),
        "piimg watch should show the board with its serial and MAC\n{}",
        explain()
    );
    assert_eq!(
        sha256_file(&ssd.path),
        before,
        "the SSD was written\n{}",
        explain()
    );
    assert!(
        root_file(&fleet.image, "/etc/piimg/node.toml").is_none(),
        "the board took a node"
    );
}

#[test]
fn a_foreign_disk_is_refused_reported_and_left_untouched() {
    let Some(setup) = setup("foreign-disk") else {
        return;
    };
    let cluster = setup.cluster(&["control-plane"]);
    let image = setup.bake(&cluster, "control-plane");
    let foreign = setup.blank_ssd("foreign-ssd.img", 1, 1);
    let mkfs = std::process::Command::new("mkfs.vfat")
        .args(["-F", "32", "-n", "HOLIDAYS"])
        .arg(&foreign.path)
        .output()
        .expect("run mkfs.vfat");
    assert!(mkfs.status.success(), "mkfs.vfat: {mkfs:?}");
    let before = sha256_file(&foreign.path);
    let boot = Boot::run(
        "foreign-disk",
        "control-plane",
        &setup.base,
        &cluster,
        &image.image,
        &foreign,
        &setup.logs,
    );
    assert!(
        boot.outcome.powered_off(),
        "the VM did not power off by itself\n{}",
        boot.explain()
    );
    assert!(
        boot.watch_status.is_some_and(|s| !s.success())
            && boot.watch_out.contains("control-plane failed")
            && boot.watch_out.contains("left untouched"),
        "piimg watch should report the refused disk and exit non-zero\n{}",
        boot.explain()
    );
    assert!(
        boot.outcome
            .serial
            .contains("piimg-e2e: status: storage: failed"),
        "first boot's storage step should have failed\n{}",
        boot.explain()
    );
    assert_eq!(
        sha256_file(&foreign.path),
        before,
        "the foreign disk was changed"
    );
}

#[test]
fn a_power_cut_right_after_formatting_is_finished_by_the_next_boot() {
    let Some(setup) = setup("power-cut") else {
        return;
    };
    let cluster = setup.cluster(&["control-plane"]);
    let image = setup.bake(&cluster, "control-plane");
    let ssd = setup.blank_ssd("ssd.img", 2, 1);

    // First boot dies right after formatting (the crash seam, set for every unit through
    // systemd's environment) and the overlay cuts the power at once, without a sync.
    let serial_log = setup.logs.join("power-cut.serial.log");
    let cut = vm(
        &setup.base,
        &image.image,
        &ssd,
        serial_log.clone(),
        "systemd.setenv=PIIMG_FIRSTBOOT_CRASH_AFTER=format",
    )
    .boot();
    phase("boot power-cut", cut.elapsed);
    let explain_cut = || {
        format!(
            "--- first boot on the serial console ---\n{}\n--- serial console (last 60 lines; whole log in {}) ---\n{}",
            first_boot_lines(&cut.serial),
            serial_log.display(),
            tail(&cut.serial, 60)
        )
    };
    assert!(
        cut.powered_off()
            && cut
                .serial
                .contains("piimg-e2e: power cut: first boot died after format"),
        "first boot should have died after formatting and the power gone at once\n{}",
        explain_cut()
    );
    assert!(
        !cut.serial.contains("piimg-e2e: first boot unit:"),
        "the VM ran on after the power cut\n{}",
        explain_cut()
    );
    let half_made = partitions(&ssd.path);
    let made_fs = half_made
        .first()
        .map(|p| blkid_probe(&ssd.path, p.start))
        .unwrap_or_default();
    eprintln!("after the power cut the SSD holds {half_made:?} {made_fs:?}");

    // The same image and SSD again, without the seam: first boot finishes the job.
    let boot = Boot::run(
        "after-power-cut",
        "control-plane",
        &setup.base,
        &cluster,
        &image.image,
        &ssd,
        &setup.logs,
    );
    boot.assert_ready(&image.build_id);
    let action = boot.storage_action();
    let verdict: Vec<&str> = boot
        .outcome
        .serial
        .lines()
        .filter(|l| l.contains("storage disk examined"))
        .collect();
    eprintln!(
        "after the power cut, first boot's storage step: {action:?} ({})",
        verdict.join(" | ")
    );
    // The cut came after formatting finished (mkfs and the state file are synced), so the
    // next boot finds the filesystem it made and mounts it rather than formatting again.
    assert_eq!(
        action.as_deref(),
        Some("mounted"),
        "after the power cut first boot should mount the filesystem it had made\n{}",
        boot.explain()
    );
    // The same result as a normal first boot: one piimg partition, a clean filesystem, and
    // the filesystem made before the cut.
    let (_, uuid) = assert_piimg_ssd(&ssd.path);
    assert_eq!(
        Some(&uuid),
        made_fs.get("UUID"),
        "the SSD was formatted again after the power cut"
    );
}
