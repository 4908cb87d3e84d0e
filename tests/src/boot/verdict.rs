//! What a user checks on a node that booted (issue 13), each check returning what it saw
//! rather than panicking at once: [`Verdicts`] gathers them, prints one line per check and
//! fails the test at the end with every failed check, so one fix still waited for on another
//! branch does not hide what the other checks found.
//!
//! - [`ssh_banner`]: sshd answers on the node's port 22 (forwarded to the host).
//! - [`no_ordering_cycle`]: systemd found no ordering cycle at boot (it breaks one by dropping
//!   a job of its choice, which differs from boot to boot: one boot loses `ssh.socket`, the
//!   next `sockets.target`, so a banner alone does not show the cycle every time).
//! - [`root_fills_disk`]: the image, enlarged before boot like a card bigger than the image,
//!   has its root partition grown to the end of the disk, a clean table, and a root ext4 that
//!   fills the partition and passes `e2fsck -fn`.
//! - [`grub_linux_lines_carry`]: `/boot/grub/grub.cfg` on the root filesystem (read with
//!   debugfs, no mount) carries a kernel parameter on every `linux` line.
//! - [`bind_mounts_from_ssd`]: the guest's own `findmnt` lines (printed on the serial console by
//!   `tests/e2e/overlay`'s `piimg-e2e-report`) show paths bind-mounted from the SSD.

use crate::fsread::offset_spec;
use crate::partitions::{table, PartInfo};
use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The checks of one test.
pub struct Verdicts {
    test: String,
    failed: Vec<String>,
}

impl Verdicts {
    /// No checks yet, for the test named `test` (in the printed lines).
    pub fn new(test: &str) -> Verdicts {
        Verdicts {
            test: test.into(),
            failed: Vec::new(),
        }
    }

    /// Records one check: `Ok(what was seen)` passes, `Err(what was seen instead)` fails.
    /// Prints `e2e check [TEST] ok|FAILED: WHAT` either way; returns whether it passed.
    pub fn check(&mut self, what: &str, result: Result<String, String>) -> bool {
        match result {
            Ok(seen) => {
                eprintln!("e2e check [{}] ok: {what} ({seen})", self.test);
                true
            }
            Err(seen) => {
                // The detail now too: a later panic (a broken tool) must not lose it.
                eprintln!("e2e check [{}] FAILED: {what}\n{seen}", self.test);
                self.failed.push(format!("FAILED: {what}\n{seen}"));
                false
            }
        }
    }

    /// Records a plain condition; `explain` says what was seen when it does not hold.
    pub fn ensure(&mut self, what: &str, ok: bool, explain: impl FnOnce() -> String) -> bool {
        let result = if ok { Ok("yes".into()) } else { Err(explain()) };
        self.check(what, result)
    }

    /// Whether every check so far passed.
    pub fn all_passed(&self) -> bool {
        self.failed.is_empty()
    }

    /// Panics with every failed check (each with what it saw), then `context` (console tails,
    /// the watch's output), if any failed.
    pub fn finish(self, context: impl FnOnce() -> String) {
        if self.failed.is_empty() {
            return;
        }
        panic!(
            "{} of the checks of {} failed:\n\n{}\n\n=== context ===\n{}",
            self.failed.len(),
            self.test,
            self.failed.join("\n\n"),
            context()
        );
    }
}

/// Connects to `127.0.0.1:port` (a host forward to the guest's port 22) and reads the first line
/// sshd sends, retrying for up to `within`: `Ok(banner)` when it starts with `SSH-2.0-`, else
/// what each try saw (through QEMU's user networking a guest with nothing listening shows as a
/// connection closed with no data).
pub fn ssh_banner(port: u16, within: Duration) -> Result<String, String> {
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let attempt = match TcpStream::connect(("127.0.0.1", port)) {
            Err(e) => Err(format!("connect: {e}")),
            Ok(mut stream) => {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
                let mut got = Vec::new();
                let mut buf = [0u8; 256];
                let why = loop {
                    match stream.read(&mut buf) {
                        Ok(0) if got.is_empty() => break "closed with no data".to_string(),
                        Ok(0) => break "closed".to_string(),
                        Ok(n) => {
                            got.extend_from_slice(&buf[..n]);
                            if got.contains(&b'\n') || got.len() >= 255 {
                                break String::new();
                            }
                        }
                        Err(e) => break format!("read: {e}"),
                    }
                };
                let line = String::from_utf8_lossy(&got).trim_end().to_string();
                if line.starts_with("SSH-2.0-") {
                    Ok(line)
                } else if got.is_empty() {
                    Err(why)
                } else {
                    Err(format!("got {line:?} ({why})"))
                }
            }
        };
        match attempt {
            Ok(banner) => return Ok(banner),
            Err(e) => seen.push(format!("{:.0} s: {e}", started.elapsed().as_secs_f64())),
        }
        if started.elapsed() >= within {
            return Err(format!(
                "no SSH banner on 127.0.0.1:{port} (the guest's port 22) within {} s; tries:\n  {}",
                within.as_secs(),
                seen.join("\n  ")
            ));
        }
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// The serial console shows no `Found ordering cycle` (nor the job systemd deleted to break it).
pub fn no_ordering_cycle(serial: &str) -> Result<String, String> {
    let lines: Vec<&str> = serial
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("ordering cycle"))
        .collect();
    if lines.is_empty() {
        Ok("none on the console".into())
    } else {
        Err(format!(
            "systemd broke an ordering cycle at boot by dropping a job (which one differs between boots):\n  {}",
            lines.join("\n  ")
        ))
    }
}

/// The partition numbered `number` in `image`'s table, from `sfdisk --json`.
fn partition(image: &Path, number: u32) -> Result<PartInfo, String> {
    let parts = table(image).partitions;
    parts
        .iter()
        .find(|p| p.number == number)
        .cloned()
        .ok_or_else(|| format!("{}: no partition {number} in {parts:?}", image.display()))
}

/// Runs a checker; its stdout and stderr together, and whether it exited 0.
fn run(cmd: &mut Command) -> Result<(bool, String, String), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("could not run {cmd:?}: {e}"))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `Block count` × `Block size` from `dumpe2fs -h` of the ext4 at byte `start`.
fn ext4_bytes(image: &Path, start: u64) -> Result<u64, String> {
    let (ok, out, err) = run(Command::new("dumpe2fs")
        .arg("-h")
        .arg(offset_spec(image, start)))?;
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    match (ok, field("Block count:"), field("Block size:")) {
        (true, Some(count), Some(size)) => Ok(count * size),
        _ => Err(format!(
            "dumpe2fs -h {} @ {start}: no block count and size\n{out}{err}",
            image.display()
        )),
    }
}

/// The image (enlarged before boot) has partition `root_number` grown to the end of the disk
/// (GPT: up to the backup table at the end, less at most 1 MiB of alignment), a table that
/// `sfdisk --verify` finds clean (so the backup header was moved to the new end too), a root
/// ext4 whose block count × block size is the partition's size (less at most 4 MiB: resize2fs
/// drops a last block group too small to hold its metadata), and `e2fsck -fn` clean.
pub fn root_fills_disk(image: &Path, root_number: u32) -> Result<String, String> {
    const MIB: u64 = 1 << 20;
    let disk = std::fs::metadata(image)
        .map_err(|e| format!("{}: {e}", image.display()))?
        .len();
    let info = table(image);
    let root = partition(image, root_number)?;
    let end = root.start + root.size;
    // GPT keeps its backup entries (32 sectors) and header (1) in the disk's last 33 sectors.
    let backup = if info.label == "gpt" { 33 * 512 } else { 0 };
    let mut problems = Vec::new();
    let unused = disk.saturating_sub(end + backup);
    if unused > MIB {
        problems.push(format!(
            "partition {root_number} ends at byte {end} ({} MiB) but the disk at {disk} ({} MiB): {} MiB after it unused (the root was not grown)",
            end / MIB,
            disk / MIB,
            unused / MIB
        ));
    }
    let (ok, out, err) = run(Command::new("sfdisk").arg("--verify").arg(image))?;
    if !ok || !out.contains("No errors detected.") || !err.trim().is_empty() {
        problems.push(format!(
            "sfdisk --verify {}:\n{}{}",
            image.display(),
            out.trim_end(),
            if err.trim().is_empty() {
                String::new()
            } else {
                format!("\n(stderr) {}", err.trim_end())
            }
        ));
    }
    match ext4_bytes(image, root.start) {
        Err(e) => problems.push(e),
        Ok(fs) if fs > root.size || root.size - fs > 4 * MIB => problems.push(format!(
            "the root ext4 holds {fs} bytes ({} MiB) but its partition is {} bytes ({} MiB) (dumpe2fs -h: block count × block size)",
            fs / MIB,
            root.size,
            root.size / MIB
        )),
        Ok(_) => {}
    }
    let (ok, out, err) = run(Command::new("e2fsck")
        .arg("-fn")
        .arg(offset_spec(image, root.start)))?;
    if !ok {
        problems.push(format!(
            "e2fsck -fn on the root filesystem:\n{}{}",
            out.trim_end(),
            err.trim_end()
        ));
    }
    if problems.is_empty() {
        Ok(format!(
            "partition {root_number} ends {} KiB before the disk's end, ext4 fills it, clean",
            (disk - end) / 1024
        ))
    } else {
        Err(problems.join("\n"))
    }
}

/// `/boot/grub/grub.cfg` of the root filesystem (partition `root_number`), read with debugfs
/// (no mount), has `marker` on every `linux` line (recovery entries included: grub-mkconfig
/// gives those `GRUB_CMDLINE_LINUX` but not `GRUB_CMDLINE_LINUX_DEFAULT`).
pub fn grub_linux_lines_carry(
    image: &Path,
    root_number: u32,
    marker: &str,
) -> Result<String, String> {
    const CFG: &str = "/boot/grub/grub.cfg";
    let root = partition(image, root_number)?;
    let (ok, cfg, err) = run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {CFG}"))
        .arg(offset_spec(image, root.start)))?;
    if !ok || cfg.is_empty() {
        let listing = run(Command::new("debugfs")
            .arg("-R")
            .arg("ls -l /boot/grub")
            .arg(offset_spec(image, root.start)))
        .map(|(_, out, err)| format!("{out}{err}"))
        .unwrap_or_else(|e| e);
        return Err(format!(
            "no {CFG} on the root filesystem (update-grub never ran?): debugfs said {:?}\n`ls -l /boot/grub`:\n{}",
            err.trim(),
            listing.trim_end()
        ));
    }
    let linux: Vec<&str> = cfg
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("linux"))
        .collect();
    let without: Vec<&str> = linux
        .iter()
        .copied()
        .filter(|l| !l.split_whitespace().any(|w| w == marker))
        .collect();
    if linux.is_empty() || !without.is_empty() {
        let defaults = cfg_default_drop_ins(image, root.start);
        return Err(format!(
            "{CFG}: {} `linux` lines, {} without {marker:?}:\n  {}\n/etc/default/grub.d/:\n{}",
            linux.len(),
            without.len(),
            if linux.is_empty() {
                "(none)".to_string()
            } else {
                without.join("\n  ")
            },
            defaults
        ));
    }
    Ok(format!("{} linux lines carry {marker}", linux.len()))
}

/// The GRUB drop-ins on the root filesystem, for a failure message.
fn cfg_default_drop_ins(image: &Path, start: u64) -> String {
    let ls = run(Command::new("debugfs")
        .arg("-R")
        .arg("ls /etc/default/grub.d")
        .arg(offset_spec(image, start)));
    let piimg = run(Command::new("debugfs")
        .arg("-R")
        .arg("cat /etc/default/grub.d/90-piimg.cfg")
        .arg(offset_spec(image, start)));
    let text = |r: Result<(bool, String, String), String>| match r {
        Ok((_, out, err)) => format!("{}{}", out.trim_end(), err.trim_end()),
        Err(e) => e,
    };
    format!(
        "{}\n90-piimg.cfg:\n{}",
        text(ls).replace('\n', " "),
        text(piimg)
    )
}

/// One `piimg-e2e: mount:` line of the guest: `findmnt -r -o TARGET,SOURCE,MAJ:MIN,FSROOT`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    target: String,
    source: String,
    dev: String,
    fsroot: String,
}

/// Every `(path, fsroot)` of `expected` is, in the guest's own `findmnt` (serial console lines
/// `piimg-e2e: mount: …`), a mount of a partition of the SSD (`piimg-e2e: ssd: LINK DEV
/// MAJ:MIN`) with that root inside the SSD's filesystem: a bind mount of `<mount_point>/NAME`
/// has fsroot `/NAME`.
pub fn bind_mounts_from_ssd(serial: &str, expected: &[(&str, &str)]) -> Result<String, String> {
    let after = |tag: &str| -> Vec<String> {
        serial
            .lines()
            .filter_map(|l| l.split(tag).nth(1))
            .map(|s| s.trim().to_string())
            .collect()
    };
    let ssd_lines = after("piimg-e2e: ssd: ");
    let ssd_devs: Vec<String> = ssd_lines
        .iter()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .collect();
    let mount_lines = after("piimg-e2e: mount: ");
    let mounts: Vec<Mount> = mount_lines
        .iter()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 4).then(|| Mount {
                target: w[0].into(),
                source: w[1].into(),
                dev: w[2].into(),
                fsroot: w[3].into(),
            })
        })
        .collect();
    let mut problems = Vec::new();
    let mut good = Vec::new();
    for (path, fsroot) in expected {
        // The last mount on a path is the one that shows there.
        match mounts.iter().rev().find(|m| m.target == *path) {
            None => problems.push(format!("{path} is not a mount point")),
            Some(m) if !ssd_devs.contains(&m.dev) || m.fsroot != *fsroot => problems.push(format!(
                "{path} is mounted from {} (device {}, root {}), not {fsroot} of the SSD (devices {ssd_devs:?})",
                m.source, m.dev, m.fsroot
            )),
            Some(m) => good.push(format!("{path} = {}", m.source)),
        }
    }
    if problems.is_empty() {
        Ok(good.join(", "))
    } else {
        Err(format!(
            "{}\nthe guest's lines (tests/e2e/overlay piimg-e2e-report):\n  ssd: {}\n  mount: {}",
            problems.join("\n"),
            if ssd_lines.is_empty() {
                "(none)".to_string()
            } else {
                ssd_lines.join("\n  ssd: ")
            },
            if mount_lines.is_empty() {
                "(none: piimg-e2e-report never ran?)".to_string()
            } else {
                mount_lines.join("\n  mount: ")
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::bind_mounts_from_ssd;

    const SERIAL: &str = "\
[  40.1] systemd[1]: Started x.
piimg-e2e: ssd: /dev/disk/by-id/virtio-piimg-ssd-1-part1 /dev/vdb1 254:17
piimg-e2e: mount: /mnt/storage /dev/vdb1 254:17 /
piimg-e2e: mount: /var/lib/kubelet /dev/vdb1[/kubelet] 254:17 /kubelet
piimg-e2e: mount: /var/log/pods not a mount point
";

    #[test]
    fn bind_mounts_are_told_from_the_guests_findmnt_lines() {
        assert!(bind_mounts_from_ssd(SERIAL, &[("/var/lib/kubelet", "/kubelet")]).is_ok());
        let err = bind_mounts_from_ssd(SERIAL, &[("/var/log/pods", "/pod-logs")]).unwrap_err();
        assert!(err.contains("/var/log/pods is not a mount point"), "{err}");
        let err = bind_mounts_from_ssd(SERIAL, &[("/var/lib/kubelet", "/pod-logs")]).unwrap_err();
        assert!(err.contains("not /pod-logs of the SSD"), "{err}");
        let other = SERIAL.replace(
            "/var/lib/kubelet /dev/vdb1[/kubelet] 254:17",
            "/var/lib/kubelet /dev/vda1[/var/lib/kubelet] 254:1",
        );
        assert!(bind_mounts_from_ssd(&other, &[("/var/lib/kubelet", "/kubelet")]).is_err());
    }
}
