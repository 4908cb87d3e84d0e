//! The seam between first boot's logic and what only a real node has: block devices found in
//! sysfs, the kernel's `mount`, systemd, k3s and the network.
//!
//! [`Host`] is the one implementation. Its test seams (see the crate docs) swap device discovery
//! for a devices file and `mount` for a record in a directory; signature detection,
//! partitioning and `mkfs.ext4` always run for real on the disk's bytes.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::machine::{BlockTarget, Disk, MountedAt, RootDevice, RootPartition, SystemError};

fn io(path: &Path, what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SystemError {
    let path = path.to_owned();
    let what = what.into();
    move |source| SystemError::Io { path, what, source }
}

/// What first boot needs from the machine.
pub trait System {
    /// Every whole disk.
    fn disks(&self) -> Result<Vec<Disk>, SystemError>;
    /// Where partition `index` (1-based), starting at byte `start`, of `disk` can be opened.
    fn partition(&self, disk: &Disk, index: u32, start: u64) -> Result<BlockTarget, SystemError>;
    /// What is mounted at `target`: nothing, the filesystem at `source`, or something else
    /// (fstab may have mounted another disk that carries the same label).
    fn mounted(&self, source: &BlockTarget, target: &Path) -> Result<MountedAt, SystemError>;
    /// Mounts an ext4 filesystem at `target`.
    fn mount_ext4(&self, source: &BlockTarget, target: &Path) -> Result<(), SystemError>;
    /// What is mounted at `target`: nothing, the folder `subdir` (`/kubelet`) of the
    /// filesystem at `fs` (a bind made on an earlier boot), or something else.
    fn mounted_bind(
        &self,
        fs: &BlockTarget,
        subdir: &str,
        target: &Path,
    ) -> Result<MountedAt, SystemError>;
    /// Bind-mounts `from` (the folder `subdir` of the filesystem at `fs`, where it is
    /// mounted) on `target`.
    fn bind_mount(
        &self,
        fs: &BlockTarget,
        from: &Path,
        subdir: &str,
        target: &Path,
    ) -> Result<(), SystemError>;
    /// `systemctl start --no-block UNIT`.
    fn start_unit(&self, unit: &str) -> Result<(), SystemError>;
    /// The block device `/` is mounted from.
    fn root_device(&self) -> Result<RootDevice, SystemError>;
    /// Tells the kernel partition `number` of `disk` is now `sectors` 512-byte sectors long.
    fn resize_partition(&self, disk: &Path, number: u32, sectors: u64) -> Result<(), SystemError>;
    /// Grows the ext4 filesystem at `fs` to `bytes` (online when it is mounted).
    fn resize_ext4(&self, fs: &BlockTarget, bytes: u64) -> Result<(), SystemError>;
    /// `systemctl reboot`: queues the reboot and returns.
    fn reboot(&self) -> Result<(), SystemError>;
    /// Runs `update-grub` (regenerates `/boot/grub/grub.cfg` from `/etc/default/grub{,.d}`).
    fn update_grub(&self) -> Result<(), SystemError>;
    /// Runs `netplan generate` (turns `/etc/netplan` into the network services' files).
    fn netplan_generate(&self) -> Result<(), SystemError>;
    /// Runs the k3s binary (for `kubectl`) and returns its stdout.
    fn k3s(&self, args: &[&str]) -> Result<String, SystemError>;
    /// GET a local URL; the status code and body.
    fn http_get(&self, url: &str) -> Result<crate::http::Response, SystemError>;
    /// POST a body with headers; the status code and body.
    fn http_post(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<crate::http::Response, SystemError>;
    /// Non-loopback addresses of the node.
    fn addresses(&self) -> Vec<String>;
    /// Waits (backoff between retries).
    fn sleep(&self, d: Duration);
    /// Seconds since the epoch (node clock; used for report timestamps only).
    fn now_unix(&self) -> u64;
}

/// `update-grub`, found on the unit's `PATH` (it is `/usr/sbin/update-grub`, from the package
/// `grub2-common` on Debian and Ubuntu: Debian's file list of grub2-common; unverified for
/// every Ubuntu release).
pub const UPDATE_GRUB: &str = "update-grub";

/// How disks are found.
#[derive(Debug, Clone)]
pub enum DeviceSource {
    /// `/sys/block` and `/dev/disk/by-id` (the product).
    Sysfs,
    /// Test seam: a TOML file listing image files as disks.
    File(PathBuf),
}

/// How filesystems are mounted.
#[derive(Debug, Clone)]
pub enum Mounter {
    /// The kernel's mount(2) (the product).
    Kernel,
    /// Test seam: record each mount as a file in this directory and create the mount point.
    Record(PathBuf),
}

/// The real machine, with its test seams.
#[derive(Debug, Clone)]
pub struct Host {
    /// Disk discovery.
    pub devices: DeviceSource,
    /// Mounting.
    pub mounter: Mounter,
    /// The `systemctl` to run.
    pub systemctl: PathBuf,
    /// The k3s binary.
    pub k3s: PathBuf,
    /// The `update-grub` to run.
    pub update_grub: PathBuf,
    /// The `netplan` to run.
    pub netplan: PathBuf,
    /// Base delay for backoff; tests make it tiny.
    pub backoff_unit: Duration,
    /// Timeout for one HTTP request.
    pub http_timeout: Duration,
}

impl Default for Host {
    fn default() -> Self {
        Host {
            devices: DeviceSource::Sysfs,
            mounter: Mounter::Kernel,
            systemctl: "systemctl".into(),
            k3s: "/usr/local/bin/k3s".into(),
            update_grub: UPDATE_GRUB.into(),
            netplan: "netplan".into(),
            backoff_unit: Duration::from_secs(1),
            http_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevicesFile {
    #[serde(default)]
    disk: Vec<DeviceEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceEntry {
    path: PathBuf,
    #[serde(default)]
    ids: Vec<String>,
    serial: Option<String>,
    size: Option<u64>,
    transport: Option<String>,
    #[serde(default)]
    root: bool,
    /// With `root`: the number of the partition in `path` that holds the root filesystem.
    root_partition: Option<u32>,
}

fn run(cmd: Command) -> Result<String, SystemError> {
    run_from(cmd, None)
}

/// Runs `cmd`; when it is not installed and `package` provides it, the error names the package.
fn run_from(mut cmd: Command, package: Option<&'static str>) -> Result<String, SystemError> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| match package {
        Some(package) if e.kind() == std::io::ErrorKind::NotFound => SystemError::Missing {
            program: cmd.get_program().to_string_lossy().into_owned(),
            package,
        },
        _ => SystemError::Command {
            command: shown.clone(),
            detail: e.to_string(),
        },
    })?;
    if !out.status.success() {
        return Err(SystemError::Command {
            command: shown,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn mount_record_name(target: &Path) -> String {
    target.to_string_lossy().trim_matches('/').replace('/', "-")
}

/// The fake-mount seam's record of a mount: one line of `key=value` fields.
fn read_record(dir: &Path, target: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(mount_record_name(target))).ok()
}

fn record_field(text: &str, key: &str) -> String {
    text.split_whitespace()
        .find_map(|f| f.strip_prefix(key).map(str::to_owned))
        .unwrap_or_default()
}

/// Writes the fake-mount seam's record for `target` and appends the mount to `order.log`, so
/// tests see the order mounts were made in.
fn write_record(dir: &Path, target: &Path, text: &str) -> Result<(), SystemError> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(io(dir, "creating the record directory"))?;
    let record = dir.join(mount_record_name(target));
    std::fs::write(&record, text).map_err(io(&record, "recording the mount"))?;
    let log = dir.join("order.log");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| writeln!(f, "{} {}", target.display(), text.trim()))
        .map_err(io(&log, "logging the mount"))
}

impl System for Host {
    fn disks(&self) -> Result<Vec<Disk>, SystemError> {
        match &self.devices {
            DeviceSource::File(path) => disks_from_file(path),
            DeviceSource::Sysfs => crate::sysfs::disks(),
        }
    }

    fn partition(&self, disk: &Disk, index: u32, start: u64) -> Result<BlockTarget, SystemError> {
        match &self.devices {
            DeviceSource::File(_) => Ok(BlockTarget {
                path: disk.path.clone(),
                offset: start,
            }),
            DeviceSource::Sysfs => {
                // Writing the table and closing the disk makes udev re-read it (its `watch`
                // option on whole disks), which removes and adds the partition nodes again: a
                // node found at once can be gone when mkfs opens it ("The file /dev/vdb1 does
                // not exist", seen in the QEMU cluster boot). So wait for udev's queue to drain,
                // find the node, and wait once more before handing it on.
                let wait = || self.sleep(self.backoff_unit / 2);
                udev_settle();
                crate::sysfs::partition_node(disk, index, wait)?;
                udev_settle();
                crate::sysfs::partition_node(disk, index, wait)
            }
        }
    }

    fn mounted(&self, source: &BlockTarget, target: &Path) -> Result<MountedAt, SystemError> {
        match &self.mounter {
            Mounter::Record(dir) => {
                let Some(text) = read_record(dir, target) else {
                    return Ok(MountedAt::Nothing);
                };
                let (path, offset) = (
                    record_field(&text, "source="),
                    record_field(&text, "offset="),
                );
                if path == source.path.display().to_string() && offset == source.offset.to_string()
                {
                    Ok(MountedAt::Chosen)
                } else {
                    Ok(MountedAt::Other(format!("{path} at offset {offset}")))
                }
            }
            Mounter::Kernel => crate::sysfs::mounted_at(&source.path, target),
        }
    }

    fn mount_ext4(&self, source: &BlockTarget, target: &Path) -> Result<(), SystemError> {
        std::fs::create_dir_all(target).map_err(io(target, "creating the mount point"))?;
        match &self.mounter {
            Mounter::Record(dir) => {
                let text = format!(
                    "source={} offset={} fstype=ext4\n",
                    source.path.display(),
                    source.offset
                );
                write_record(dir, target, &text)
            }
            Mounter::Kernel => {
                if source.offset != 0 {
                    return Err(SystemError::Other(format!(
                        "{}: cannot mount at an offset without a partition device",
                        source.path.display()
                    )));
                }
                nix::mount::mount(
                    Some(source.path.as_path()),
                    target,
                    Some("ext4"),
                    nix::mount::MsFlags::MS_NOATIME,
                    None::<&str>,
                )
                .map_err(|e| {
                    SystemError::Other(format!(
                        "mounting {} at {}: {e}",
                        source.path.display(),
                        target.display()
                    ))
                })
            }
        }
    }

    fn mounted_bind(
        &self,
        fs: &BlockTarget,
        subdir: &str,
        target: &Path,
    ) -> Result<MountedAt, SystemError> {
        match &self.mounter {
            Mounter::Record(dir) => {
                let Some(text) = read_record(dir, target) else {
                    return Ok(MountedAt::Nothing);
                };
                let (path, offset, root) = (
                    record_field(&text, "source="),
                    record_field(&text, "offset="),
                    record_field(&text, "root="),
                );
                if path == fs.path.display().to_string()
                    && offset == fs.offset.to_string()
                    && root == subdir
                {
                    Ok(MountedAt::Chosen)
                } else {
                    Ok(MountedAt::Other(format!(
                        "{path} at offset {offset}, folder {root:?}"
                    )))
                }
            }
            Mounter::Kernel => crate::sysfs::bound_at(&fs.path, subdir, target),
        }
    }

    fn bind_mount(
        &self,
        fs: &BlockTarget,
        from: &Path,
        subdir: &str,
        target: &Path,
    ) -> Result<(), SystemError> {
        std::fs::create_dir_all(from).map_err(io(from, "creating the bind mount's source"))?;
        std::fs::create_dir_all(target).map_err(io(target, "creating the bind mount point"))?;
        match &self.mounter {
            Mounter::Record(dir) => {
                let text = format!(
                    "source={} offset={} root={subdir} fstype=bind\n",
                    fs.path.display(),
                    fs.offset
                );
                write_record(dir, target, &text)
            }
            Mounter::Kernel => nix::mount::mount(
                Some(from),
                target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| {
                SystemError::Other(format!(
                    "bind-mounting {} on {}: {e}",
                    from.display(),
                    target.display()
                ))
            }),
        }
    }

    fn start_unit(&self, unit: &str) -> Result<(), SystemError> {
        let mut cmd = Command::new(&self.systemctl);
        cmd.args(["start", "--no-block", unit]);
        run(cmd).map(|_| ())
    }

    fn root_device(&self) -> Result<RootDevice, SystemError> {
        match &self.devices {
            DeviceSource::Sysfs => crate::sysfs::root_device(),
            DeviceSource::File(path) => root_from_file(path),
        }
    }

    fn resize_partition(&self, disk: &Path, number: u32, sectors: u64) -> Result<(), SystemError> {
        match (&self.devices, &self.mounter) {
            (DeviceSource::File(_), Mounter::Record(dir)) => {
                // A file has no kernel partitions: record what would be said.
                use std::io::Write;
                std::fs::create_dir_all(dir).map_err(io(dir, "creating the record directory"))?;
                let log = dir.join("kernel.log");
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .and_then(|mut f| {
                        writeln!(f, "resizepart {} {number} {sectors}", disk.display())
                    })
                    .map_err(io(&log, "recording a partition resize"))
            }
            (DeviceSource::File(_), Mounter::Kernel) => Err(SystemError::Other(
                "the devices-file seam needs --fake-mount to record partition resizes".into(),
            )),
            (DeviceSource::Sysfs, _) => {
                // util-linux resizepart(8): `resizepart DEVICE PARTITION LENGTH`, LENGTH in
                // 512-byte sectors; it asks the kernel through the BLKPG ioctl, which works on
                // a mounted partition. util-linux is essential on Debian and Ubuntu.
                let mut cmd = Command::new("resizepart");
                cmd.arg(disk)
                    .arg(number.to_string())
                    .arg(sectors.to_string());
                run_from(cmd, Some("util-linux")).map(|_| ())
            }
        }
    }

    fn resize_ext4(&self, fs: &BlockTarget, bytes: u64) -> Result<(), SystemError> {
        if fs.offset == 0 {
            return resize2fs(&fs.path, bytes);
        }
        // Only the devices-file seam has filesystems at an offset. resize2fs truncates a
        // regular file to the filesystem's new size, without counting `?offset=` (seen with
        // e2fsprogs 1.47.0: the disk image lost its backup GPT), so the seam grows a
        // partition-sized copy with the real resize2fs and writes it back.
        let copy = fs.path.with_extension("resize2fs-partition");
        let _ = std::fs::remove_file(&copy);
        copy_range(&fs.path, fs.offset, &copy, 0, bytes)?;
        let resized = resize2fs(&copy, bytes);
        let len = std::fs::metadata(&copy)
            .map_err(io(&copy, "reading the resized copy's size"))?
            .len();
        let back = resized.and_then(|()| copy_range(&copy, 0, &fs.path, fs.offset, len));
        let _ = std::fs::remove_file(&copy);
        back
    }

    fn reboot(&self) -> Result<(), SystemError> {
        let mut cmd = Command::new(&self.systemctl);
        cmd.arg("reboot");
        run(cmd).map(|_| ())
    }

    fn update_grub(&self) -> Result<(), SystemError> {
        let mut cmd = Command::new(&self.update_grub);
        cmd.stdin(std::process::Stdio::null());
        run_from(cmd, Some("grub2-common")).map(|_| ())
    }

    fn netplan_generate(&self) -> Result<(), SystemError> {
        let mut cmd = Command::new(&self.netplan);
        cmd.arg("generate").stdin(std::process::Stdio::null());
        run_from(cmd, Some("netplan.io")).map(|_| ())
    }

    fn k3s(&self, args: &[&str]) -> Result<String, SystemError> {
        let mut cmd = Command::new(&self.k3s);
        cmd.args(args);
        run(cmd)
    }

    fn http_get(&self, url: &str) -> Result<crate::http::Response, SystemError> {
        crate::http::request("GET", url, &[], &[], self.http_timeout)
            .map_err(|e| SystemError::Other(e.to_string()))
    }

    fn http_post(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<crate::http::Response, SystemError> {
        crate::http::request("POST", url, headers, body, self.http_timeout)
            .map_err(|e| SystemError::Other(e.to_string()))
    }

    fn addresses(&self) -> Vec<String> {
        let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
            return Vec::new();
        };
        // IPv4 first, then routable IPv6: the first address is the one people are shown.
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for a in addrs {
            let Some(sa) = a.address else { continue };
            if let Some(sin) = sa.as_sockaddr_in() {
                let ip = sin.ip();
                if !ip.is_loopback() {
                    v4.push(ip.to_string());
                }
            } else if let Some(sin6) = sa.as_sockaddr_in6() {
                let ip = sin6.ip();
                let link_local = (ip.segments()[0] & 0xffc0) == 0xfe80;
                if !ip.is_loopback() && !link_local {
                    v6.push(ip.to_string());
                }
            }
        }
        v4.extend(v6);
        v4.dedup();
        v4
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }

    fn now_unix(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// resize2fs(8): a size with the suffix `s` is in 512-byte sectors; a mounted ext4 is grown
/// online (through the kernel, so the filesystem's device must already have its new size).
fn resize2fs(device: &Path, bytes: u64) -> Result<(), SystemError> {
    let mut cmd = Command::new("resize2fs");
    cmd.arg(device).arg(format!("{}s", bytes / 512));
    run_from(cmd, Some("e2fsprogs")).map(|_| ())
}

/// Copies `len` bytes from `from` at `from_off` to `to` at `to_off` (created if missing).
fn copy_range(
    from: &Path,
    from_off: u64,
    to: &Path,
    to_off: u64,
    len: u64,
) -> Result<(), SystemError> {
    use std::os::unix::fs::FileExt;
    let src = std::fs::File::open(from).map_err(io(from, "opening"))?;
    let dst = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(to)
        .map_err(io(to, "opening"))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0;
    while done < len {
        let n = usize::try_from((len - done).min(buf.len() as u64)).unwrap_or(buf.len());
        src.read_exact_at(&mut buf[..n], from_off + done)
            .map_err(io(from, "reading"))?;
        dst.write_all_at(&buf[..n], to_off + done)
            .map_err(io(to, "writing"))?;
        done += n as u64;
    }
    dst.sync_all().map_err(io(to, "syncing"))
}

fn read_devices(path: &Path) -> Result<DevicesFile, SystemError> {
    let text = std::fs::read_to_string(path).map_err(io(path, "reading the devices file"))?;
    toml::from_str(&text).map_err(|e| SystemError::Devices {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

/// The seam's root: the `root` disk's `root_partition`, with the sizes its table has now (as
/// a kernel reads them at boot).
fn root_from_file(path: &Path) -> Result<RootDevice, SystemError> {
    let file = read_devices(path)?;
    let disk = file
        .disk
        .into_iter()
        .find(|d| d.root)
        .ok_or_else(|| SystemError::Devices {
            path: path.to_owned(),
            detail: "no disk has root = true".into(),
        })?;
    let name = disk.path.display().to_string();
    let Some(number) = disk.root_partition else {
        return Ok(RootDevice {
            name,
            fstype: None,
            fs: BlockTarget {
                path: disk.path,
                offset: 0,
            },
            partition: None,
        });
    };
    let f = std::fs::File::open(&disk.path).map_err(io(&disk.path, "opening the root disk"))?;
    let disk_bytes = f
        .metadata()
        .map_err(io(&disk.path, "reading the root disk's size"))?
        .len();
    let slot = crate::rootfs::table::read_slot(&f, &disk.path, disk_bytes, 512, number)
        .map_err(|e| SystemError::Other(e.to_string()))?;
    Ok(RootDevice {
        name,
        fstype: None,
        fs: BlockTarget {
            path: disk.path.clone(),
            offset: slot.first * 512,
        },
        partition: Some(RootPartition {
            disk: disk.path,
            disk_bytes,
            sector_size: 512,
            number,
            start: slot.first * 512,
            size: (slot.last - slot.first + 1) * 512,
        }),
    })
}

fn disks_from_file(path: &Path) -> Result<Vec<Disk>, SystemError> {
    let file = read_devices(path)?;
    file.disk
        .into_iter()
        .map(|d| {
            let size = match d.size {
                Some(size) => size,
                None => std::fs::metadata(&d.path)
                    .map_err(io(&d.path, "reading the disk image's size"))?
                    .len(),
            };
            Ok(Disk {
                path: d.path,
                ids: d.ids,
                serial: d.serial,
                size,
                transport: d.transport,
                holds_root: d.root,
                sector_size: 512,
            })
        })
        .collect()
}

/// `udevadm settle`: waits (at most 30 s) until udev has handled every queued event. Best
/// effort: without udevadm, or if it times out, the partition lookup's own retries remain.
fn udev_settle() {
    match Command::new("udevadm")
        .args(["settle", "--timeout=30"])
        .status()
    {
        Ok(status) if status.success() => {}
        Ok(status) => tracing::warn!(%status, "udevadm settle did not finish"),
        Err(e) => tracing::debug!(error = %e, "no udevadm to settle with"),
    }
}
