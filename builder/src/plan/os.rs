//! Per-OS edits: boot settings, swap, identity, access, first-boot tools, network.

use super::edit::{Content, Edit};
use super::text::FstabEntry;
use super::user::UserSpec;
use crate::spec::{Flavour, NodeSpec};

/// Kernel parameters k3s needs for the memory cgroup on Raspberry Pi kernels.
pub const CGROUP_PARAMS: [&str; 2] = ["cgroup_memory=1", "cgroup_enable=memory"];

/// Supplementary groups of the login user (those the base lacks are skipped).
pub const USER_GROUPS: [&str; 12] = [
    "adm", "sudo", "users", "video", "render", "input", "dialout", "plugdev", "netdev", "gpio",
    "i2c", "spi",
];

fn text(path: &str, content: &str, mode: u32) -> Edit {
    Edit::WriteFile {
        path: path.into(),
        content: Content::Text(content.into()),
        mode,
        uid: 0,
        gid: 0,
    }
}

fn remove(path: &str) -> Edit {
    Edit::Remove { path: path.into() }
}

/// Boot-partition edits.
pub fn boot(spec: &NodeSpec) -> Vec<Edit> {
    let flavour = spec.base.flavour();
    let mut params: Vec<String> = CGROUP_PARAMS.iter().map(|s| s.to_string()).collect();
    params.extend(spec.kernel.cmdline_extra.iter().cloned());
    let mut e = Vec::new();
    let cmdline = match flavour {
        Flavour::UbuntuRaspi { ab_boot: true } => Some("current/cmdline.txt"),
        Flavour::UbuntuAmd64 | Flavour::Debian => None,
        _ => Some("cmdline.txt"),
    };
    if let Some(file) = cmdline {
        e.push(Edit::EnsureCmdlineParams {
            file: file.into(),
            params,
        });
    }
    let set = |key: &str, value: &str| Edit::SetConfigTxt {
        file: "config.txt".into(),
        section: "pi5".into(),
        key: key.into(),
        value: value.into(),
    };
    // Ubuntu's Pi kernel has 4K pages already and boots `vmlinuz`: leave `kernel=` alone there.
    if matches!(flavour, Flavour::Bookworm | Flavour::Trixie) && !spec.kernel.keep_16k_pages {
        e.push(set("kernel", "kernel8.img"));
    }
    if spec.kernel.usb_max_current && !matches!(flavour, Flavour::UbuntuAmd64 | Flavour::Debian) {
        e.push(set("usb_max_current_enable", "1"));
    }
    e
}

/// GRUB drop-in for amd64 and Debian, only when the profile asks for kernel parameters
/// (cgroup v2 with memory is on by default there). update-grub must run for it to apply:
/// first boot's job. `GRUB_CMDLINE_LINUX`, not `…_DEFAULT`: grub-mkconfig puts the latter on
/// the normal entries only, so a node booted into recovery would lose the parameters.
pub fn grub(spec: &NodeSpec) -> Vec<Edit> {
    if !matches!(spec.base.flavour(), Flavour::UbuntuAmd64 | Flavour::Debian)
        || spec.kernel.cmdline_extra.is_empty()
    {
        return vec![];
    }
    vec![text(
        "/etc/default/grub.d/90-piimg.cfg",
        &format!(
            "# Written by piimg.\nGRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX {}\"\n",
            spec.kernel.cmdline_extra.join(" ")
        ),
        0o644,
    )]
}

/// Swap off for good, the way each base supports.
pub fn swap(spec: &NodeSpec) -> Vec<Edit> {
    match spec.base.flavour() {
        Flavour::Bookworm => vec![
            Edit::MaskUnit {
                unit: "dphys-swapfile.service".into(),
            },
            remove("/etc/systemd/system/multi-user.target.wants/dphys-swapfile.service"),
            remove("/var/swap"),
        ],
        Flavour::Trixie => vec![
            text(
                "/etc/rpi/swap.conf.d/90-piimg.conf",
                "# Written by piimg: k3s nodes run without swap.\n[Main]\nMechanism=none\n",
                0o644,
            ),
            remove("/var/swap"),
        ],
        Flavour::UbuntuRaspi { .. } | Flavour::UbuntuAmd64 => vec![remove("/swap.img")],
        // Debian's installer makes a swap partition, which the fstab edit drops.
        Flavour::Debian => vec![],
    }
}

/// The SSD's fstab line and mount point; swap lines dropped.
pub fn storage(spec: &NodeSpec) -> Vec<Edit> {
    vec![
        Edit::Mkdir {
            path: spec.storage.mount_point.clone(),
            mode: 0o755,
            uid: 0,
            gid: 0,
        },
        Edit::EditFstab {
            ensure: vec![FstabEntry {
                spec: format!("LABEL={}", spec.storage.label),
                file: spec.storage.mount_point.clone(),
                vfstype: "ext4".into(),
                options: "defaults,noatime,nofail,x-systemd.device-timeout=30s".into(),
                freq: 0,
                passno: 2,
            }],
            remove_swap: true,
        },
    ]
}

/// Hostname, time zone, machine id, SSH host keys, cloud-init and first-boot wizards.
pub fn identity(spec: &NodeSpec) -> Vec<Edit> {
    let flavour = spec.base.flavour();
    let mut e = vec![
        text("/etc/hostname", &format!("{}\n", spec.hostname), 0o644),
        Edit::EditHosts {
            hostname: spec.hostname.clone(),
            entries: spec.k3s.server_hosts_entry.iter().cloned().collect(),
        },
        Edit::Symlink {
            path: "/etc/localtime".into(),
            target: format!("/usr/share/zoneinfo/{}", spec.timezone),
        },
        text("/etc/timezone", &format!("{}\n", spec.timezone), 0o644),
        // The base's first-boot state, so systemd makes a fresh id and ConditionFirstBoot runs.
        text(
            "/etc/machine-id",
            if flavour == Flavour::Trixie {
                "uninitialized\n"
            } else {
                ""
            },
            0o444,
        ),
    ];
    for kind in ["rsa", "ecdsa", "ed25519", "dsa"] {
        e.push(remove(&format!("/etc/ssh/ssh_host_{kind}_key")));
        e.push(remove(&format!("/etc/ssh/ssh_host_{kind}_key.pub")));
    }
    if matches!(flavour, Flavour::Bookworm | Flavour::Trixie) {
        // Raspberry Pi OS's first-boot user wizard: piimg makes the user itself, so it undoes
        // what pi-gen's `rename-user -f -s` set up for the wizard, as the wizard's own
        // `cancel-rename` does (RPi-Distro/userconf-pi, 0.9): userconfig off, the sshd
        // banner gone, a login prompt on tty1 again. The account files, the home folder,
        // subuid/subgid and the sudoers drop-in follow the user's new name in `EnsureUser`.
        e.push(Edit::MaskUnit {
            unit: "userconfig.service".into(),
        });
        e.push(remove(
            "/etc/systemd/system/multi-user.target.wants/userconfig.service",
        ));
        e.push(remove("/etc/ssh/sshd_config.d/rename_user.conf"));
        // `systemctl enable getty@tty1` (getty@.service's `DefaultInstance=tty1`).
        e.push(Edit::Symlink {
            path: "/etc/systemd/system/getty.target.wants/getty@tty1.service".into(),
            target: "/lib/systemd/system/getty@.service".into(),
        });
        e.push(Edit::Symlink {
            path: "/etc/systemd/system/default.target".into(),
            target: "/lib/systemd/system/multi-user.target".into(),
        });
    }
    if flavour != Flavour::Bookworm {
        // cloud-init would re-do hostname, users and network behind our back: disabled.
        e.push(text(
            "/etc/cloud/cloud-init.disabled",
            "Disabled by piimg: the image is baked.\n",
            0o644,
        ));
    }
    e
}

/// The login user, its SSH keys, sudo and sshd.
pub fn access(spec: &NodeSpec) -> Vec<Edit> {
    let home = format!("/home/{}", spec.user);
    let uid = 1000;
    let mut keys = spec.ssh_keys.join("\n");
    keys.push('\n');
    let mut e = vec![
        Edit::EnsureUser(UserSpec {
            name: spec.user.clone(),
            uid,
            home: home.clone(),
            shell: "/bin/bash".into(),
            groups: USER_GROUPS.iter().map(|s| s.to_string()).collect(),
        }),
        Edit::Mkdir { path: home.clone(), mode: 0o750, uid, gid: uid },
        Edit::Mkdir { path: format!("{home}/.ssh"), mode: 0o700, uid, gid: uid },
        Edit::WriteFile {
            path: format!("{home}/.ssh/authorized_keys"),
            content: Content::Text(keys),
            mode: 0o600,
            uid,
            gid: uid,
        },
        text(
            &format!("/etc/sudoers.d/010-piimg-{}", spec.user),
            &format!("# Written by piimg: the user has no password, only SSH keys.\n{} ALL=(ALL) NOPASSWD: ALL\n", spec.user),
            0o440,
        ),
        text(
            "/etc/ssh/sshd_config.d/10-piimg.conf",
            "# Written by piimg: keys only.\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n",
            0o644,
        ),
        text("/etc/systemd/system/piimg-ssh-keygen.service", super::units::SSH_KEYGEN_UNIT, 0o644),
        Edit::EnableUnit {
            unit: "piimg-ssh-keygen.service".into(),
            unit_dir: "/etc/systemd/system".into(),
            wanted_by: "multi-user.target".into(),
        },
    ];
    if matches!(spec.base.flavour(), Flavour::Bookworm | Flavour::Trixie) {
        // Raspberry Pi OS ships sshd disabled; Ubuntu server images have it on already.
        e.push(Edit::EnableUnit {
            unit: "ssh.service".into(),
            unit_dir: "/lib/systemd/system".into(),
            wanted_by: "multi-user.target".into(),
        });
        e.push(Edit::Symlink {
            path: "/etc/systemd/system/sshd.service".into(),
            target: "/lib/systemd/system/ssh.service".into(),
        });
    }
    e
}

/// Network: NetworkManager keyfile on Raspberry Pi OS (static only; DHCP is its default);
/// netplan on Ubuntu (always: with cloud-init off nothing else would configure it);
/// systemd-networkd on Debian (always: it ships with systemd, where ifupdown may be absent).
pub fn network(spec: &NodeSpec) -> Vec<Edit> {
    let n = &spec.network;
    let secret_file = |path: &str, content: String| Edit::WriteFile {
        path: path.into(),
        content: Content::Text(content),
        mode: 0o600,
        uid: 0,
        gid: 0,
    };
    match spec.base.flavour() {
        Flavour::Bookworm | Flavour::Trixie => {
            let Some(s) = &n.static_address else {
                return vec![];
            };
            let iface = n.interface.clone().unwrap_or_else(|| "eth0".into());
            let dns: String = s.dns.iter().map(|d| format!("{d};")).collect();
            vec![secret_file(
                "/etc/NetworkManager/system-connections/piimg-wired.nmconnection",
                format!(
                    "[connection]\nid=piimg-wired\ntype=ethernet\ninterface-name={iface}\nautoconnect-priority=100\n\n[ethernet]\n\n[ipv4]\nmethod=manual\naddress1={},{}\n{}\n[ipv6]\nmethod=auto\n",
                    s.address,
                    s.gateway,
                    if dns.is_empty() { String::new() } else { format!("dns={dns}\n") }
                ),
            )]
        }
        Flavour::UbuntuRaspi { .. } | Flavour::UbuntuAmd64 => {
            let matcher = match &n.interface {
                Some(i) => format!("      match:\n        name: \"{i}\"\n"),
                None => "      match:\n        name: \"e*\"\n".into(),
            };
            let addressing = match &n.static_address {
                None => "      dhcp4: true\n".to_string(),
                Some(s) => {
                    let mut a = format!(
                        "      dhcp4: false\n      addresses: [\"{}\"]\n      routes:\n        - to: default\n          via: \"{}\"\n",
                        s.address, s.gateway
                    );
                    if !s.dns.is_empty() {
                        let list: Vec<String> = s.dns.iter().map(|d| format!("\"{d}\"")).collect();
                        a += &format!(
                            "      nameservers:\n        addresses: [{}]\n",
                            list.join(", ")
                        );
                    }
                    a
                }
            };
            vec![secret_file(
                "/etc/netplan/90-piimg.yaml",
                format!("# Written by piimg.\nnetwork:\n  version: 2\n  ethernets:\n    wired:\n{matcher}{addressing}"),
            )]
        }
        Flavour::Debian => networkd(n),
    }
}

/// A systemd-networkd `.network` file and the links `systemctl enable systemd-networkd` makes
/// (with its socket and wait-online, so `network-online.target` means an address is up).
fn networkd(n: &crate::spec::NetworkSpec) -> Vec<Edit> {
    let name = n.interface.as_deref().unwrap_or("en* eth*");
    let mut network = match &n.static_address {
        None => "DHCP=ipv4\n".to_string(),
        Some(s) => {
            let mut a = format!("Address={}\nGateway={}\n", s.address, s.gateway);
            for d in &s.dns {
                a += &format!("DNS={d}\n");
            }
            a
        }
    };
    network.insert_str(0, "[Network]\n");
    let enable = |unit: &str, wanted_by: &str| Edit::EnableUnit {
        unit: unit.into(),
        unit_dir: "/lib/systemd/system".into(),
        wanted_by: wanted_by.into(),
    };
    vec![
        text(
            "/etc/systemd/network/90-piimg.network",
            &format!("# Written by piimg.\n[Match]\nName={name}\n\n{network}"),
            0o644,
        ),
        enable("systemd-networkd.service", "multi-user.target"),
        enable("systemd-networkd.socket", "sockets.target"),
        enable(
            "systemd-networkd-wait-online.service",
            "network-online.target",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::StaticAddress;
    use crate::spec::NetworkSpec;

    fn written(edits: &[Edit]) -> String {
        edits
            .iter()
            .find_map(|e| match e {
                Edit::WriteFile {
                    path,
                    content: Content::Text(t),
                    ..
                } if path == "/etc/systemd/network/90-piimg.network" => Some(t.clone()),
                _ => None,
            })
            .expect("a .network file")
    }

    #[test]
    fn debian_gets_networkd_with_dhcp_or_a_static_address_and_enables_it() {
        let dhcp = networkd(&NetworkSpec {
            interface: None,
            static_address: None,
        });
        let text = written(&dhcp);
        assert!(text.contains("[Match]\nName=en* eth*\n"), "{text}");
        assert!(text.contains("[Network]\nDHCP=ipv4\n"), "{text}");
        let links: Vec<String> = dhcp
            .iter()
            .filter_map(Edit::enable_link)
            .map(|(link, _)| link)
            .collect();
        assert_eq!(
            links,
            [
                "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
                "/etc/systemd/system/sockets.target.wants/systemd-networkd.socket",
                "/etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service",
            ]
        );
        let fixed = networkd(&NetworkSpec {
            interface: Some("enp1s0".into()),
            static_address: Some(StaticAddress {
                address: "192.168.1.10/24".into(),
                gateway: "192.168.1.1".into(),
                dns: vec!["192.168.1.1".into()],
            }),
        });
        let text = written(&fixed);
        assert!(text.contains("Name=enp1s0\n"), "{text}");
        assert!(
            text.contains("Address=192.168.1.10/24\nGateway=192.168.1.1\nDNS=192.168.1.1\n"),
            "{text}"
        );
        assert!(!text.contains("DHCP"), "{text}");
    }
}
