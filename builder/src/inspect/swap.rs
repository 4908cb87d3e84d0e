//! How an image sets up swap. k3s nodes must run without it (the kubelet is started with
//! `--fail-swap-on=false`, so leftover swap raises no error), so inspect reports every mechanism
//! it knows and whether it is still active.

use super::fstab::FstabEntry;
use crate::locate::tree::Tree;
use serde::Serialize;

/// One swap mechanism found in the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwapMechanism {
    /// `dphys-swapfile` (bookworm), `rpi-swap` (trixie), `fstab` (a swap line), `swapfile-unit`.
    pub kind: String,
    /// Whether it would give the booted system swap.
    pub active: bool,
    /// Where it is configured and why it is (in)active.
    pub detail: String,
}

const WANTS: &str = "/etc/systemd/system/multi-user.target.wants";
const UNIT_DIR: &str = "/etc/systemd/system";

/// A unit is masked when `/etc/systemd/system/<unit>` links to `/dev/null`.
pub fn unit_masked(tree: &dyn Tree, unit: &str) -> bool {
    tree.link(&format!("{UNIT_DIR}/{unit}")).as_deref() == Some("/dev/null")
}

/// A unit is enabled (for our purposes) when some `*.wants/` directory under /etc links it.
pub fn unit_enabled(tree: &dyn Tree, unit: &str) -> bool {
    tree.list(UNIT_DIR)
        .iter()
        .filter(|d| d.ends_with(".wants"))
        .any(|d| tree.exists(&format!("{UNIT_DIR}/{d}/{unit}")))
}

/// Every swap mechanism the image carries; empty when it has none.
pub fn detect(tree: &dyn Tree, fstab: &[FstabEntry]) -> Vec<SwapMechanism> {
    let mut found = Vec::new();
    if tree.exists("/etc/dphys-swapfile") || tree.exists(&format!("{WANTS}/dphys-swapfile.service"))
    {
        let unit = "dphys-swapfile.service";
        let masked = unit_masked(tree, unit);
        let enabled = unit_enabled(tree, unit);
        let size = tree
            .text("/etc/dphys-swapfile")
            .and_then(|t| {
                t.lines()
                    .filter_map(|l| l.trim().strip_prefix("CONF_SWAPSIZE="))
                    .next_back()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "default".into());
        found.push(SwapMechanism {
            kind: "dphys-swapfile".into(),
            active: enabled && !masked,
            detail: format!(
                "/etc/dphys-swapfile CONF_SWAPSIZE={size}; unit {}",
                state_word(enabled, masked)
            ),
        });
    }
    if tree.exists("/etc/rpi/swap.conf") {
        let mechanism = rpi_swap_mechanism(tree);
        let masked = unit_masked(tree, "rpi-swap.service");
        found.push(SwapMechanism {
            kind: "rpi-swap".into(),
            active: mechanism != "none" && !masked,
            detail: format!("/etc/rpi/swap.conf (+ swap.conf.d) Mechanism={mechanism}"),
        });
    }
    for entry in fstab.iter().filter(|e| e.vfstype == "swap") {
        found.push(SwapMechanism {
            kind: "fstab".into(),
            active: !entry.options.split(',').any(|o| o == "noauto"),
            detail: format!(
                "/etc/fstab: {} {} swap {}",
                entry.spec, entry.file, entry.options
            ),
        });
    }
    found
}

/// What inspect says of swap as a whole (`swap_state` in the JSON): `active` when a mechanism
/// gives the booted system swap; else `unreadable` when a file that decides it could not be
/// read (a mechanism may hide behind it), `none` when the image has no mechanism, `off` when
/// every one it has is off. `unknown` is for an image without a root filesystem to read.
pub fn state(found: &[SwapMechanism], unread: bool) -> &'static str {
    if found.iter().any(|m| m.active) {
        "active"
    } else if unread {
        "unreadable"
    } else if found.is_empty() {
        "none"
    } else {
        "off"
    }
}

/// [`state`] of an image in which no root filesystem was found.
pub const UNKNOWN: &str = "unknown";

fn state_word(enabled: bool, masked: bool) -> &'static str {
    match (enabled, masked) {
        (_, true) => "masked",
        (true, false) => "enabled",
        (false, false) => "not enabled",
    }
}

/// rpi-swap reads `[Main] Mechanism=` from swap.conf, then drop-ins in lexical order, last wins.
fn rpi_swap_mechanism(tree: &dyn Tree) -> String {
    let mut files = vec!["/etc/rpi/swap.conf".to_string()];
    files.extend(
        tree.list("/etc/rpi/swap.conf.d")
            .into_iter()
            .filter(|n| n.ends_with(".conf"))
            .map(|n| format!("/etc/rpi/swap.conf.d/{n}")),
    );
    let mut mechanism = "auto".to_string();
    for file in files {
        let Some(text) = tree.text(&file) else {
            continue;
        };
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') && line.ends_with(']') {
                section = line[1..line.len() - 1].to_string();
            } else if section == "Main" {
                if let Some(v) = line.strip_prefix("Mechanism=") {
                    mechanism = v.trim().to_string();
                }
            }
        }
    }
    mechanism
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::fstab;
    use crate::locate::tree::MemTree;

    #[test]
    fn bookworm_dphys_enabled_then_masked() {
        let base = MemTree::default()
            .file("/etc/dphys-swapfile", "CONF_SWAPSIZE=512\n")
            .symlink(
                &format!("{WANTS}/dphys-swapfile.service"),
                "/lib/systemd/system/dphys-swapfile.service",
            );
        let found = detect(&base, &[]);
        assert_eq!(found.len(), 1);
        assert!(found[0].active);
        assert!(found[0].detail.contains("CONF_SWAPSIZE=512"));

        let masked = base.symlink("/etc/systemd/system/dphys-swapfile.service", "/dev/null");
        assert!(!detect(&masked, &[])[0].active);
    }

    #[test]
    fn trixie_rpi_swap_dropin_turns_it_off() {
        let base = MemTree::default().file("/etc/rpi/swap.conf", "[Main]\nMechanism=auto\n");
        assert!(detect(&base, &[])[0].active);
        let off = base.file(
            "/etc/rpi/swap.conf.d/50-piimg.conf",
            "[Main]\nMechanism=none\n",
        );
        let found = detect(&off, &[]);
        assert!(!found[0].active);
        assert!(found[0].detail.contains("Mechanism=none"));
    }

    #[test]
    fn ubuntu_swap_file_in_fstab() {
        let entries =
            fstab::parse("LABEL=cloudimg-rootfs / ext4 defaults 0 1\n/swap.img none swap sw 0 0\n");
        let found = detect(&MemTree::default(), &entries);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, "fstab");
        assert!(found[0].active);
    }

    #[test]
    fn no_swap_at_all() {
        assert!(detect(&MemTree::default(), &[]).is_empty());
        assert_eq!(state(&[], false), "none");
    }

    #[test]
    fn an_unread_file_is_not_no_swap() {
        assert_eq!(state(&[], true), "unreadable");
        let off = SwapMechanism {
            kind: "dphys-swapfile".into(),
            active: false,
            detail: String::new(),
        };
        assert_eq!(state(std::slice::from_ref(&off), false), "off");
        assert_eq!(state(std::slice::from_ref(&off), true), "unreadable");
        let on = SwapMechanism {
            active: true,
            ..off
        };
        assert_eq!(state(&[on], true), "active");
    }
}
