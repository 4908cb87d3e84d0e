//! One QEMU boot: `qemu-system-x86_64 -accel tcg` (KVM does not work on our machines), a
//! direct kernel boot, virtio disks, user-mode networking (the host is 10.0.2.2 to the guest),
//! the serial console in a file, and a hard timeout after which the VM is killed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A disk of the VM.
#[derive(Debug, Clone)]
pub struct Disk {
    /// The raw image file.
    pub path: PathBuf,
    /// Serial number: the guest sees it as `/dev/disk/by-id/virtio-SERIAL`.
    pub serial: Option<String>,
}

/// How to boot.
#[derive(Debug, Clone)]
pub struct Vm {
    /// Kernel for `-kernel`.
    pub kernel: PathBuf,
    /// Initramfs for `-initrd`.
    pub initrd: PathBuf,
    /// Kernel command line.
    pub append: String,
    /// Disks in order (`/dev/vda`, `/dev/vdb`, …).
    pub disks: Vec<Disk>,
    /// `hostfwd` rules for user networking, e.g. `tcp:127.0.0.1:16443-:6443`.
    pub forwards: Vec<String>,
    /// Where the serial console goes.
    pub serial_log: PathBuf,
    /// Killed after this long.
    pub timeout: Duration,
    /// The board's serial number, as firmware gives it (`-smbios type=1,serial=…`; Linux
    /// shows it in `/sys/class/dmi/id/product_serial`).
    pub board_serial: Option<String>,
    /// The network card's MAC (QEMU's default, `52:54:00:12:34:56`, when unset).
    pub mac: Option<String>,
}

/// How a boot ended.
#[derive(Debug)]
pub struct Outcome {
    /// QEMU's exit status; `None` when it was killed at the timeout.
    pub status: Option<ExitStatus>,
    /// How long it ran.
    pub elapsed: Duration,
    /// The serial console.
    pub serial: String,
}

impl Outcome {
    /// Whether the guest powered itself off (QEMU exits 0 on a guest power-off).
    pub fn powered_off(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

impl Vm {
    /// Starts qemu.
    fn spawn(&self) -> Child {
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-accel", "tcg", "-m", "1024", "-smp", "2"])
            .args(["-nodefaults", "-display", "none", "-no-reboot"])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            .arg("-append")
            .arg(&self.append)
            .arg("-serial")
            .arg(format!("file:{}", self.serial_log.display()));
        for (i, disk) in self.disks.iter().enumerate() {
            cmd.arg("-drive").arg(format!(
                "file={},format=raw,if=none,id=disk{i},cache=unsafe",
                disk.path.display()
            ));
            let mut device = format!("virtio-blk-pci,drive=disk{i}");
            if let Some(s) = &disk.serial {
                device += &format!(",serial={s}");
            }
            cmd.arg("-device").arg(device);
        }
        let mut net = "user,id=n0".to_string();
        for f in &self.forwards {
            net += &format!(",hostfwd={f}");
        }
        let mut nic = "virtio-net-pci,netdev=n0".to_string();
        if let Some(mac) = &self.mac {
            nic += &format!(",mac={mac}");
        }
        if let Some(serial) = &self.board_serial {
            cmd.arg("-smbios").arg(format!("type=1,serial={serial}"));
        }
        cmd.arg("-netdev")
            .arg(net)
            .args(["-device", &nic])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start qemu-system-x86_64: {e} (Debian: qemu-system-x86)")
        })
    }

    /// Boots and waits until the guest powers off or the timeout kills it.
    pub fn boot(&self) -> Outcome {
        self.start().wait()
    }

    /// Starts the VM and returns at once; the VM is killed when the [`Running`] is dropped,
    /// so a failing test leaves no qemu behind.
    pub fn start(&self) -> Running {
        Running {
            started: Instant::now(),
            child: Some(self.spawn()),
            timeout: self.timeout,
            serial_log: self.serial_log.clone(),
        }
    }
}

/// A VM that is running (or has stopped and not been waited for).
pub struct Running {
    child: Option<Child>,
    started: Instant,
    timeout: Duration,
    serial_log: PathBuf,
}

impl Running {
    /// The serial console so far.
    pub fn serial(&self) -> String {
        read_serial(&self.serial_log)
    }

    /// Waits until the serial console shows `needle` (true), or the VM stops or reaches its
    /// timeout (false).
    pub fn wait_for_serial(&mut self, needle: &str) -> bool {
        loop {
            if self.serial().contains(needle) {
                return true;
            }
            let stopped = !matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)));
            if stopped || self.started.elapsed() >= self.timeout {
                return self.serial().contains(needle);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until the guest powers off or the timeout kills it.
    pub fn wait(mut self) -> Outcome {
        let child = self.child.take().expect("a running VM");
        finish(child, self.started, self.timeout, &self.serial_log)
    }

    /// Connects to `127.0.0.1:port` (a host forward to the guest's `piimg-e2e-shutdown.socket`)
    /// so the guest powers itself off cleanly, then waits for it like [`Running::wait`].
    pub fn power_off_via(self, port: u16) -> Outcome {
        if let Err(e) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            eprintln!("asking the VM to power off through 127.0.0.1:{port}: {e}");
        }
        self.wait()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn read_serial(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Waits for `child` until `timeout` after `started`, killing it then; reads the serial log.
fn finish(mut child: Child, started: Instant, timeout: Duration, serial_log: &Path) -> Outcome {
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(250)),
            Err(e) => panic!("waiting for qemu: {e}"),
        }
    };
    if let Some(s) = status {
        if !s.success() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            eprintln!("qemu exited with {s}: {err}");
        }
    }
    Outcome {
        status,
        elapsed: started.elapsed(),
        serial: read_serial(serial_log),
    }
}
