//! What identifies a board: its serial number and its wired interfaces' MACs, read from the
//! kernel's files (under the `--root` test prefix, like every node path).
//!
//! - Serial: the device tree's `serial-number` on a Raspberry Pi (the firmware puts it there;
//!   it is also `/proc/cpuinfo`'s `Serial`), else DMI's `product_serial` on a PC (QEMU's
//!   `-smbios type=1,serial=…`). Placeholders firmware writes when it has none are ignored.
//! - Wired interfaces: `/sys/class/net/*` of type 1 (Ethernet, `ARPHRD_ETHER`) backed by a
//!   device (`device` exists: not a bridge, veth or other virtual one) and not wireless.

use crate::paths::NodePaths;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Where the firmware's serial number is, first found wins.
pub const SERIAL_FILES: [&str; 3] = [
    "/proc/device-tree/serial-number",
    "/sys/firmware/devicetree/base/serial-number",
    "/sys/class/dmi/id/product_serial",
];

/// The network interfaces.
pub const NET_CLASS: &str = "/sys/class/net";

/// Values firmware writes into DMI when a board has no serial of its own.
const PLACEHOLDERS: [&str; 6] = [
    "",
    "0",
    "none",
    "not specified",
    "to be filled by o.e.m.",
    "default string",
];

/// A board as first boot sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    /// The serial number, if the board has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Wired interfaces, by name.
    #[serde(default)]
    pub nics: Vec<Nic>,
}

/// One wired interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nic {
    /// Its name (`eth0`, `end0`, `enp0s2`).
    pub name: String,
    /// Its MAC, lower-case with colons.
    pub mac: String,
}

impl Hardware {
    /// `serial 10000000abcd1234, mac d8:3a:dd:12:34:56 (eth0)`, or what is missing.
    pub fn describe(&self) -> String {
        let mut parts = vec![match &self.serial {
            Some(s) => format!("serial {s}"),
            None => "no serial number".into(),
        }];
        if self.nics.is_empty() {
            parts.push("no wired interface".into());
        }
        for n in &self.nics {
            parts.push(format!("mac {} ({})", n.mac, n.name));
        }
        parts.join(", ")
    }
}

/// Reads the board. Never fails: what cannot be read is missing, and the caller says so.
pub fn read(paths: &NodePaths) -> Hardware {
    Hardware {
        serial: serial(paths),
        nics: nics(&paths.node(NET_CLASS)),
    }
}

fn serial(paths: &NodePaths) -> Option<String> {
    SERIAL_FILES.iter().find_map(|f| {
        let bytes = std::fs::read(paths.node(f)).ok()?;
        // The device tree's strings end in NUL.
        let text = String::from_utf8_lossy(&bytes)
            .trim_matches(|c: char| c == '\0' || c.is_whitespace())
            .to_string();
        let placeholder = PLACEHOLDERS.contains(&text.to_ascii_lowercase().as_str());
        let printable = text.chars().all(|c| c.is_ascii_graphic());
        (!placeholder && printable).then_some(text)
    })
}

fn nics(class: &Path) -> Vec<Nic> {
    let Ok(dir) = std::fs::read_dir(class) else {
        return Vec::new();
    };
    let mut out: Vec<Nic> = dir
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let dev = class.join(&name);
            let read = |f: &str| std::fs::read_to_string(dev.join(f)).ok();
            let ethernet = read("type").is_some_and(|t| t.trim() == "1");
            let physical = dev.join("device").exists();
            let wireless = dev.join("wireless").exists() || dev.join("phy80211").exists();
            if !ethernet || !physical || wireless {
                return None;
            }
            let mac = normal_mac(&read("address")?)?;
            Some(Nic { name, mac })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// `aa:bb:cc:dd:ee:ff` from `AA-BB-CC-DD-EE-FF` or `aa:bb:…`; `None` if it is not six octets.
pub fn normal_mac(m: &str) -> Option<String> {
    let parts: Vec<&str> = m.trim().split([':', '-']).collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| parts.join(":").to_ascii_lowercase())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fake interface under `root`'s `/sys/class/net`.
    pub(crate) fn fake_nic(root: &Path, name: &str, mac: &str, kind: &str) {
        let dev = root.join("sys/class/net").join(name);
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("address"), format!("{mac}\n")).unwrap();
        std::fs::write(
            dev.join("type"),
            if kind == "loopback" { "772\n" } else { "1\n" },
        )
        .unwrap();
        if kind != "virtual" && kind != "loopback" {
            std::fs::create_dir_all(dev.join("device")).unwrap();
        }
        if kind == "wireless" {
            std::fs::create_dir_all(dev.join("wireless")).unwrap();
        }
    }

    #[test]
    fn reads_the_device_tree_serial_and_only_wired_physical_interfaces() {
        let root = tempfile::tempdir().unwrap();
        let dt = root.path().join("proc/device-tree");
        std::fs::create_dir_all(&dt).unwrap();
        std::fs::write(dt.join("serial-number"), b"10000000abcd1234\0").unwrap();
        fake_nic(root.path(), "eth0", "D8:3A:DD:12:34:56", "wired");
        fake_nic(root.path(), "wlan0", "d8:3a:dd:12:34:57", "wireless");
        fake_nic(root.path(), "cni0", "02:00:00:00:00:01", "virtual");
        fake_nic(root.path(), "lo", "00:00:00:00:00:00", "loopback");
        let hw = read(&NodePaths::new(root.path()));
        assert_eq!(hw.serial.as_deref(), Some("10000000abcd1234"));
        assert_eq!(
            hw.nics,
            [Nic {
                name: "eth0".into(),
                mac: "d8:3a:dd:12:34:56".into()
            }]
        );
        assert_eq!(
            hw.describe(),
            "serial 10000000abcd1234, mac d8:3a:dd:12:34:56 (eth0)"
        );
    }

    #[test]
    fn a_pc_has_its_dmi_serial_and_placeholders_are_no_serial() {
        let root = tempfile::tempdir().unwrap();
        let dmi = root.path().join("sys/class/dmi/id");
        std::fs::create_dir_all(&dmi).unwrap();
        std::fs::write(dmi.join("product_serial"), "PIIMG-E2E-A\n").unwrap();
        assert_eq!(
            read(&NodePaths::new(root.path())).serial.as_deref(),
            Some("PIIMG-E2E-A")
        );
        std::fs::write(dmi.join("product_serial"), "To Be Filled By O.E.M.\n").unwrap();
        let hw = read(&NodePaths::new(root.path()));
        assert_eq!(hw.serial, None);
        assert_eq!(hw.describe(), "no serial number, no wired interface");
    }
}
