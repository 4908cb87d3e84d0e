//! systemd unit files the plan installs.

use piimg_firstboot::config::Role;

/// The piimg-firstboot unit. PLACEHOLDER: the firstboot crate will own this text and export
/// it; until then the builder ships this equivalent.
pub const FIRSTBOOT_UNIT: &str = "\
[Unit]
Description=piimg first boot: prepare the SSD, join k3s, report readiness
Wants=network-online.target
After=network-online.target
ConditionPathExists=/etc/piimg/node.toml

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/piimg-firstboot

[Install]
WantedBy=multi-user.target
";

/// Makes SSH host keys at boot when the image has none (the plan deletes the base's, so each
/// node gets its own; Ubuntu does this through cloud-init, which piimg disables).
pub const SSH_KEYGEN_UNIT: &str = "\
[Unit]
Description=piimg: generate missing SSH host keys
Before=ssh.service ssh.socket
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
