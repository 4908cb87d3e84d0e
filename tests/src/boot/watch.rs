//! `piimg watch --until-ready` on the host, as the person flashing the nodes runs it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running `piimg watch`.
pub struct Watch {
    child: Option<Child>,
    log: PathBuf,
}

/// A free TCP port on 127.0.0.1 (the VM reaches it as 10.0.2.2).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Watch {
    /// Starts `piimg watch --until-ready` for `nodes` on 127.0.0.1:`port`, output to `log`.
    pub fn start(key_file: &Path, nodes: &[&str], port: u16, timeout: &str, log: &Path) -> Watch {
        let out = std::fs::File::create(log).expect("watch log");
        let child = Command::new(crate::piimg_bin())
            .args(["watch", "--until-ready", "--timeout", timeout, "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--nodes")
            .arg(nodes.join(","))
            .arg("--key-file")
            .arg(key_file)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone"))
            .stderr(out)
            .spawn()
            .expect("start piimg watch");
        Watch {
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    /// Waits up to `grace` for the watch to exit (killing it after); its status (None when
    /// killed) and output.
    pub fn finish(mut self, grace: Duration) -> (Option<ExitStatus>, String) {
        let started = Instant::now();
        let mut child = self.child.take().expect("a running watch");
        let status = loop {
            match child.try_wait().expect("wait for watch") {
                Some(s) => break Some(s),
                None if started.elapsed() >= grace => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                None => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        (status, text)
    }
}

impl Drop for Watch {
    /// A test that fails before [`Watch::finish`] leaves no `piimg watch` behind.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
