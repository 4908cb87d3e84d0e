//! Fleet images: one image for several agent boards, each board picking its node at first boot
//! by what its hardware says.
//!
//! The builder writes [`FLEET_CONFIG_PATH`] (which boards are which node) and, per member,
//! [`MemberFiles`] under [`MEMBERS_DIR`] (the files that make a board that node: its
//! `node.toml`, k3s config, node password, hostname, …). First boot (`piimg-firstboot identify`) reads them on the
//! board, writes the chosen member's files into place and removes every member's, so a booted
//! node keeps no other node's secrets. Both sides compile against these types.

use crate::config::ReportConfig;
use crate::hardware::{normal_mac, Hardware};
use serde::{Deserialize, Serialize};

/// The fleet's table of members, in the image (0600: it holds the report key).
pub const FLEET_CONFIG_PATH: &str = "/etc/piimg/fleet.toml";

/// One `<node>.toml` per member (folder 0700, files 0600).
pub const MEMBERS_DIR: &str = "/etc/piimg/fleet";

/// Written once a board has taken its node: who it is and by which hardware.
pub const IDENTITY_PATH: &str = "/etc/piimg/identity.toml";

/// Written by `identify` when no member (or more than one) matches the board; read by `run`,
/// which reports it. In `/run`: a reboot looks again.
pub const UNMATCHED_PATH: &str = "/run/piimg/unmatched.toml";

/// Schema version of the fleet files; bumped on incompatible changes.
pub const FLEET_SCHEMA: u32 = 1;

/// How a profile names its board (`match = { serial = "…" }` or `{ mac = "…" }`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum BoardMatch {
    /// The board's serial number: on a Raspberry Pi the device tree's `serial-number` (the
    /// `Serial` line of `/proc/cpuinfo`), on a PC its DMI product serial. Compared without
    /// regard to case or leading zeros.
    Serial(String),
    /// A MAC address of one of the board's wired interfaces (`d8:3a:dd:12:34:56`; `-` works
    /// as a separator too). Compared without regard to case.
    Mac(String),
}

impl BoardMatch {
    /// Whether `hw` is this board.
    pub fn matches(&self, hw: &Hardware) -> bool {
        match self {
            BoardMatch::Serial(s) => hw
                .serial
                .as_deref()
                .is_some_and(|have| normal_serial(have) == normal_serial(s)),
            BoardMatch::Mac(m) => {
                let want = normal_mac(m);
                want.is_some() && hw.nics.iter().any(|n| normal_mac(&n.mac) == want)
            }
        }
    }

    /// Whether two matches name the same board (as [`BoardMatch::matches`] compares).
    pub fn same_board(&self, other: &BoardMatch) -> bool {
        match (self, other) {
            (BoardMatch::Serial(a), BoardMatch::Serial(b)) => normal_serial(a) == normal_serial(b),
            (BoardMatch::Mac(a), BoardMatch::Mac(b)) => {
                normal_mac(a).is_some() && normal_mac(a) == normal_mac(b)
            }
            _ => false,
        }
    }

    /// `serial 10000000abcd1234` / `mac d8:3a:dd:12:34:56`, as people read it.
    pub fn describe(&self) -> String {
        match self {
            BoardMatch::Serial(s) => format!("serial {s}"),
            BoardMatch::Mac(m) => format!("mac {m}"),
        }
    }

    /// Why the value can never match a board, if it cannot; the profile checks use it.
    pub fn problem(&self) -> Option<String> {
        match self {
            BoardMatch::Serial(s) if normal_serial(s).is_empty() => {
                Some("the serial is empty".into())
            }
            BoardMatch::Serial(s) if s.chars().any(|c| c.is_control() || c.is_whitespace()) => {
                Some(format!(
                    "the serial {s:?} holds spaces or control characters"
                ))
            }
            BoardMatch::Mac(m) if normal_mac(m).is_none() => Some(format!(
                "{m:?} is not a MAC address (six pairs of hex digits, e.g. d8:3a:dd:12:34:56)"
            )),
            _ => None,
        }
    }
}

/// Serials compare lower-case and without leading zeros: the device tree's `serial-number`
/// is printed zero-padded to 16 digits (`/proc/cpuinfo`), tools and stickers often drop them.
fn normal_serial(s: &str) -> String {
    let s = s.trim().trim_matches('\0').to_ascii_lowercase();
    let t = s.trim_start_matches('0');
    if t.is_empty() && !s.is_empty() {
        "0".into()
    } else {
        t.to_string()
    }
}

/// `/etc/piimg/fleet.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// Must equal [`FLEET_SCHEMA`].
    pub schema: u32,
    /// The fleet's name (`[fleets.NAME]` of cluster.toml), also the image's name.
    pub fleet: String,
    /// Cluster name.
    pub cluster: String,
    /// The image's build id.
    pub build_id: String,
    /// The k3s version baked in.
    pub k3s_version: String,
    /// Where a board that matches no member reports (the members' own, all alike).
    pub report: ReportConfig,
    /// Which board is which node.
    #[serde(default, rename = "member")]
    pub members: Vec<Member>,
}

/// One node of the fleet and the board it runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// The node (profile) name; its files are `MEMBERS_DIR/<node>.toml`.
    pub node: String,
    /// Its board.
    #[serde(rename = "match")]
    pub board: BoardMatch,
}

impl FleetConfig {
    /// The members whose board `hw` is.
    pub fn matching(&self, hw: &Hardware) -> Vec<&Member> {
        self.members
            .iter()
            .filter(|m| m.board.matches(hw))
            .collect()
    }
}

/// `MEMBERS_DIR/<node>.toml`: what makes a board this node, applied in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberFiles {
    /// Must equal [`FLEET_SCHEMA`].
    pub schema: u32,
    /// The node.
    pub node: String,
    /// Its hostname: `/etc/hosts`' 127.0.1.1 line and the kernel's hostname.
    pub hostname: String,
    /// The node's own entries of the root filesystem.
    #[serde(default, rename = "entry")]
    pub entries: Vec<Entry>,
}

/// One entry of a member's root filesystem. Modes are octal strings (`"0600"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Entry {
    /// A file with this text.
    File {
        /// Absolute path.
        path: String,
        /// Permission bits, octal.
        mode: String,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
        /// The content.
        content: String,
    },
    /// A folder.
    Dir {
        /// Absolute path.
        path: String,
        /// Permission bits, octal.
        mode: String,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// A symlink.
    Symlink {
        /// Absolute path of the link.
        path: String,
        /// Its target, as given.
        target: String,
    },
    /// Nothing at this path.
    Remove {
        /// Absolute path.
        path: String,
    },
}

impl Entry {
    /// The path the entry is about.
    pub fn path(&self) -> &str {
        match self {
            Entry::File { path, .. }
            | Entry::Dir { path, .. }
            | Entry::Symlink { path, .. }
            | Entry::Remove { path } => path,
        }
    }
}

/// Why a fleet file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// Not the schema.
    #[error("not a valid piimg fleet file: {0}")]
    Parse(#[from] toml::de::Error),
    /// Another version.
    #[error("fleet file has schema {found}, this piimg-firstboot understands {FLEET_SCHEMA}: rebuild the image with a matching piimg")]
    Schema {
        /// The schema found.
        found: u32,
    },
}

impl FleetConfig {
    /// Parses and checks the schema.
    pub fn from_toml(text: &str) -> Result<Self, FleetError> {
        let c: FleetConfig = toml::from_str(text)?;
        if c.schema != FLEET_SCHEMA {
            return Err(FleetError::Schema { found: c.schema });
        }
        Ok(c)
    }

    /// The file the builder writes; deterministic.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("FleetConfig always serialises")
    }
}

impl MemberFiles {
    /// Parses and checks the schema.
    pub fn from_toml(text: &str) -> Result<Self, FleetError> {
        let m: MemberFiles = toml::from_str(text)?;
        if m.schema != FLEET_SCHEMA {
            return Err(FleetError::Schema { found: m.schema });
        }
        Ok(m)
    }

    /// The file the builder writes; deterministic.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("MemberFiles always serialises")
    }
}

/// What `identify` found when no single member is this board (the content of
/// [`UNMATCHED_PATH`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unmatched {
    /// The board's serial and wired MACs.
    pub hardware: Hardware,
    /// The members that matched: none, or more than one.
    #[serde(default)]
    pub candidates: Vec<String>,
}

impl Unmatched {
    /// What the board says: which it is, why it does not join, and the fix.
    pub fn message(&self) -> String {
        let u = self;
        let hw = u.hardware.describe();
        let fix = match (&u.hardware.serial, u.hardware.nics.first()) {
            (Some(s), _) => format!("match = {{ serial = \"{s}\" }}"),
            (None, Some(n)) => format!("match = {{ mac = \"{}\" }}", n.mac),
            (None, None) => "match = { serial = \"…\" }".into(),
        };
        if u.candidates.is_empty() {
            format!(
                "piimg: this board ({hw}) is no node of this fleet image: put `{fix}` in the profile of the node it should be, rebuild and reflash; it does not join until then"
            )
        } else {
            format!(
                "piimg: this board ({hw}) matches {} nodes of this fleet image ({}): give each profile a `match` only its own board has, rebuild and reflash; it does not join until then",
                u.candidates.len(),
                u.candidates.join(", ")
            )
        }
    }
}

/// What [`IDENTITY_PATH`] records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The fleet image it came from.
    pub fleet: String,
    /// The node it took.
    pub node: String,
    /// What matched.
    #[serde(rename = "match")]
    pub board: BoardMatch,
    /// The board as read then.
    pub hardware: Hardware,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::Nic;

    fn hw(serial: Option<&str>, macs: &[&str]) -> Hardware {
        Hardware {
            serial: serial.map(str::to_owned),
            nics: macs
                .iter()
                .enumerate()
                .map(|(i, m)| Nic {
                    name: format!("eth{i}"),
                    mac: (*m).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn serials_match_without_case_or_leading_zeros() {
        let m = BoardMatch::Serial("ABCD1234".into());
        assert!(m.matches(&hw(Some("00000000abcd1234"), &[])));
        assert!(!m.matches(&hw(Some("00000000abcd1235"), &[])));
        assert!(!m.matches(&hw(None, &["d8:3a:dd:12:34:56"])));
    }

    #[test]
    fn macs_match_any_wired_interface_in_either_spelling() {
        let m = BoardMatch::Mac("D8-3A-DD-12-34-56".into());
        assert!(m.matches(&hw(None, &["02:00:00:00:00:01", "d8:3a:dd:12:34:56"])));
        assert!(!m.matches(&hw(Some("d83add123456"), &["d8:3a:dd:12:34:57"])));
        assert_eq!(
            BoardMatch::Mac("d8:3a:dd".into())
                .problem()
                .map(|p| p.contains("not a MAC")),
            Some(true)
        );
        assert_eq!(
            BoardMatch::Serial(" ".into()).problem(),
            Some("the serial is empty".into())
        );
        assert_eq!(BoardMatch::Serial("0".into()).problem(), None);
    }

    #[test]
    fn the_files_round_trip_and_refuse_other_schemas() {
        let cfg = FleetConfig {
            schema: FLEET_SCHEMA,
            fleet: "pis".into(),
            cluster: "homelab".into(),
            build_id: "b".into(),
            k3s_version: "v1.31.4+k3s1".into(),
            report: ReportConfig {
                url: Some("http://192.0.2.1:8787/report".into()),
                key: "00".repeat(32),
            },
            members: vec![
                Member {
                    node: "worker-1".into(),
                    board: BoardMatch::Serial("abcd".into()),
                },
                Member {
                    node: "worker-2".into(),
                    board: BoardMatch::Mac("d8:3a:dd:12:34:56".into()),
                },
            ],
        };
        let text = cfg.to_toml();
        assert!(
            text.contains("[member.match]") || text.contains("match = {"),
            "{text}"
        );
        assert_eq!(FleetConfig::from_toml(&text).unwrap(), cfg);
        let newer = text.replace("schema = 1", "schema = 2");
        assert!(matches!(
            FleetConfig::from_toml(&newer),
            Err(FleetError::Schema { found: 2 })
        ));
        let files = MemberFiles {
            schema: FLEET_SCHEMA,
            node: "worker-1".into(),
            hostname: "worker-1".into(),
            entries: vec![
                Entry::Dir {
                    path: "/etc/rancher/node".into(),
                    mode: "0700".into(),
                    uid: 0,
                    gid: 0,
                },
                Entry::File {
                    path: "/etc/hostname".into(),
                    mode: "0644".into(),
                    uid: 0,
                    gid: 0,
                    content: "worker-1\n".into(),
                },
                Entry::Symlink {
                    path: "/etc/a".into(),
                    target: "b".into(),
                },
                Entry::Remove {
                    path: "/etc/c".into(),
                },
            ],
        };
        assert_eq!(MemberFiles::from_toml(&files.to_toml()).unwrap(), files);
    }

    #[test]
    fn matching_lists_every_member_the_board_is() {
        let cfg = FleetConfig {
            schema: FLEET_SCHEMA,
            fleet: "pis".into(),
            cluster: "c".into(),
            build_id: "b".into(),
            k3s_version: "v".into(),
            report: ReportConfig {
                url: None,
                key: "00".repeat(16),
            },
            members: vec![
                Member {
                    node: "a".into(),
                    board: BoardMatch::Serial("1".into()),
                },
                Member {
                    node: "b".into(),
                    board: BoardMatch::Mac("02:00:00:00:00:01".into()),
                },
            ],
        };
        let both = hw(Some("0001"), &["02:00:00:00:00:01"]);
        let names: Vec<&str> = cfg
            .matching(&both)
            .iter()
            .map(|m| m.node.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert!(cfg.matching(&hw(Some("2"), &[])).is_empty());
    }
}
