//! systemd unit files the plan installs. The first-boot unit and the k3s drop-in are not here:
//! the firstboot crate owns them ([`piimg_firstboot::unit`]), so the image runs what the binary
//! expects.

use piimg_firstboot::config::Role;

/// `systemd-time-wait-sync.service` holds `time-sync.target` until the clock is synchronised,
/// which first boot waits for (its reports carry a timestamp and a Pi has no RTC). Upstream it
/// waits forever; a node that cannot reach a time server would then never start first boot and
/// never report. This bounds the wait: after it the unit fails, `time-sync.target` is reached
/// anyway (first boot is only ordered after it), and the node reports what it can.
pub const TIME_WAIT_SYNC_DROPIN: &str = "\
[Service]
# Written by piimg: wait for the clock, but not forever (first boot must still report).
TimeoutStartSec=5min
";

/// Makes SSH host keys at boot when the image has none (the plan deletes the base's, so each
/// node gets its own; Ubuntu does this through cloud-init, which piimg disables).
///
/// `DefaultDependencies=no`: Ubuntu enables `ssh.socket` since 22.10, and a socket unit is
/// `Before=sockets.target`; default dependencies would put this unit `After=basic.target`,
/// which is `After=sockets.target` (systemd.special(7), systemd.socket(5)), so `Before=
/// ssh.socket` closed a cycle and systemd dropped a job at boot (sockets.target itself, seen
/// with systemd 252's `systemd-analyze verify`: `tests/tests/boot_order.rs`). Without them the
/// unit needs only a writable root: `After=local-fs.target` (the root is remounted rw before
/// it), and it stops nothing at shutdown, being a oneshot without `RemainAfterExit`.
pub const SSH_KEYGEN_UNIT: &str = "\
[Unit]
Description=piimg: generate missing SSH host keys
DefaultDependencies=no
After=local-fs.target
Before=ssh.service ssh.socket sockets.target
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
";

/// The k3s unit as the official installer writes it, plus `RequiresMountsFor` the data dir's
/// mount point. Installed, not enabled: first boot starts it once the SSD is ready.
pub fn k3s_unit(role: Role, mount_point: &str) -> String {
    let (desc, cmd, ty) = match role {
        Role::Server => ("Lightweight Kubernetes", "server", "notify"),
        Role::Agent => ("Lightweight Kubernetes (agent)", "agent", "exec"),
    };
    format!(
        "\
[Unit]
Description={desc}
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target
RequiresMountsFor={mount_point}

[Install]
WantedBy=multi-user.target

[Service]
Type={ty}
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
KillMode=process
Delegate=yes
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/local/bin/k3s {cmd}
"
    )
}
