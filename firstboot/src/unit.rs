//! The systemd units the builder installs, kept here so the builder installs exactly what this
//! binary expects.
//!
//! Ordering: first boot starts k3s itself once the SSD is mounted and waits for the node to be
//! ready, so its unit cannot be `Before=k3s.service` (k3s's start job would wait for first boot,
//! and first boot for k3s: a deadlock until the timeout). Instead the builder leaves the k3s
//! unit disabled and adds [`k3s_dropin`], so k3s never starts with its data-dir on the SD card.
//!
//! `After=time-sync.target`: reports carry a timestamp that `piimg watch` checks, and a Pi has
//! no battery-backed clock; enable `systemd-time-wait-sync.service` in the image so the target
//! means "the clock is synchronised".

/// Where the builder installs the binary: `sbin`, as a system daemon run by systemd as root
/// rather than a command for users (issue 3).
pub const BINARY_PATH: &str = "/usr/local/sbin/piimg-firstboot";

/// The unit's file name.
pub const UNIT_NAME: &str = "piimg-firstboot.service";

/// `/etc/systemd/system/piimg-firstboot.service`; enable it with a `multi-user.target.wants`
/// symlink.
pub const UNIT: &str = "\
[Unit]
Description=piimg first boot: prepare the SSD, join k3s, report readiness
Documentation=https://example.invalid/piimg
After=local-fs.target network-online.target time-sync.target
Wants=network-online.target
# A node's image has node.toml; a fleet image, until its board has taken a node, only the
# fleet table (a board that matches no node then reports what it is, and does nothing else).
ConditionPathExists=|/etc/piimg/node.toml
ConditionPathExists=|/etc/piimg/fleet.toml

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/piimg-firstboot run
NotifyAccess=main
TimeoutStartSec=25min
StandardOutput=journal+console
StandardError=journal+console
SyslogIdentifier=piimg-firstboot

[Install]
WantedBy=multi-user.target
";

/// The identify unit's file name (fleet images only).
pub const IDENTIFY_UNIT_NAME: &str = "piimg-identify.service";

/// `/etc/systemd/system/piimg-identify.service`, in fleet images: picks the board's node before
/// the network is configured, so the node's network files and hostname are read by the network
/// services when they start (systemd.special(7): units that must run before any network is
/// configured order themselves `Before=network-pre.target` and pull it in). Early boot:
/// `DefaultDependencies=no`, after the root is writable (`local-fs.target`) and the kernel's
/// devices are announced (`systemd-udev-trigger.service`), so wired interfaces are probing; it
/// waits for one itself when a member is matched by MAC. Enable it with a
/// `sysinit.target.wants` symlink.
pub const IDENTIFY_UNIT: &str = "\
[Unit]
Description=piimg fleet image: take this board's node by its serial number or MAC
Documentation=https://example.invalid/piimg
DefaultDependencies=no
After=local-fs.target systemd-udev-trigger.service
Before=network-pre.target sysinit.target piimg-firstboot.service shutdown.target
Wants=network-pre.target
Conflicts=shutdown.target
ConditionPathExists=/etc/piimg/fleet.toml

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/piimg-firstboot identify
TimeoutStartSec=2min
StandardOutput=journal+console
StandardError=journal+console
SyslogIdentifier=piimg-identify

[Install]
WantedBy=sysinit.target
";

/// Drop-in for `k3s.service` / `k3s-agent.service`
/// (`/etc/systemd/system/<unit>.d/10-piimg.conf`): k3s only runs on a mounted SSD.
pub fn k3s_dropin(mount_point: &str) -> String {
    format!(
        "[Unit]\n# k3s keeps its data-dir on the SSD; piimg-firstboot mounts it and starts k3s.\nConditionPathIsMountPoint={mount_point}\n"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn unit_runs_the_binary_and_waits_for_the_network() {
        assert!(super::UNIT.contains(&format!("ExecStart={} run", super::BINARY_PATH)));
        assert!(super::UNIT.contains("Type=oneshot"));
        assert!(super::UNIT.contains("After=local-fs.target network-online.target"));
        assert!(
            super::k3s_dropin("/mnt/storage").contains("ConditionPathIsMountPoint=/mnt/storage")
        );
        assert!(!super::UNIT.contains("Before=k3s"));
    }

    #[test]
    fn identify_runs_early_before_the_network_and_first_boot() {
        let u = super::IDENTIFY_UNIT;
        assert!(u.contains(&format!("ExecStart={} identify", super::BINARY_PATH)));
        assert!(u.contains("DefaultDependencies=no"));
        assert!(u.contains("Before=network-pre.target"));
        assert!(u.contains("piimg-firstboot.service"));
        assert!(u.contains("ConditionPathExists=/etc/piimg/fleet.toml"));
        assert!(super::UNIT.contains("ConditionPathExists=|/etc/piimg/fleet.toml"));
    }
}
