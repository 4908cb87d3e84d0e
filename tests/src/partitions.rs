//! The partition table as `sfdisk` sees it, independently of piimg's own table code, so the
//! tests compare piimg against a second opinion rather than against itself.

use crate::cmd;
use serde::Deserialize;
use std::path::Path;
use std::process::Command;

/// One partition as `sfdisk --json` reports it, with sectors turned into bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// The partition number (1 for `disk.img1`; GPT numbers need not follow disk order).
    pub number: u32,
    /// Byte offset of the partition in the image.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
    /// MBR type as sfdisk prints it (`c`, `83`) or GPT type GUID (upper case).
    pub type_id: String,
}

/// The whole table: its label (`dos` or `gpt`), identifier and partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// `dos` for MBR, `gpt` for GPT.
    pub label: String,
    /// MBR disk identifier (`0x4e639091`) or GPT disk GUID.
    pub id: String,
    /// Partitions in the order sfdisk lists them.
    pub partitions: Vec<PartInfo>,
    /// GPT partition UUIDs by partition number, upper case (empty for MBR, whose PARTUUIDs
    /// are derived from `id`).
    pub uuids: Vec<(u32, String)>,
}

#[derive(Deserialize)]
struct SfdiskJson {
    partitiontable: SfdiskTable,
}

#[derive(Deserialize)]
struct SfdiskTable {
    label: String,
    id: String,
    device: String,
    #[serde(default = "default_sector_size")]
    sectorsize: u64,
    #[serde(default)]
    partitions: Vec<SfdiskPart>,
}

fn default_sector_size() -> u64 {
    512
}

#[derive(Deserialize)]
struct SfdiskPart {
    node: String,
    start: u64,
    size: u64,
    #[serde(rename = "type")]
    type_id: String,
    #[serde(default)]
    uuid: Option<String>,
}

/// The partitions of `image`, from `sfdisk --json`.
pub fn partitions(image: &Path) -> Vec<PartInfo> {
    table(image).partitions
}

/// The table of `image`, from `sfdisk --json`; panics if sfdisk cannot read one.
pub fn table(image: &Path) -> TableInfo {
    let out = cmd::success(Command::new("sfdisk").arg("--json").arg(image));
    let parsed: SfdiskJson = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: cannot parse sfdisk --json output: {e}\n{}",
            image.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let t = parsed.partitiontable;
    let mut partitions = Vec::new();
    let mut uuids = Vec::new();
    for p in &t.partitions {
        let number = partition_number(&t.device, &p.node);
        partitions.push(PartInfo {
            number,
            start: p.start * t.sectorsize,
            size: p.size * t.sectorsize,
            type_id: p.type_id.clone(),
        });
        if let Some(uuid) = &p.uuid {
            uuids.push((number, uuid.to_uppercase()));
        }
    }
    TableInfo {
        label: t.label,
        id: t.id,
        partitions,
        uuids,
    }
}

/// `disk.img14` on device `disk.img` is partition 14.
fn partition_number(device: &str, node: &str) -> u32 {
    let digits = node.strip_prefix(device).unwrap_or(node);
    let digits = digits.trim_start_matches(|c: char| !c.is_ascii_digit());
    digits
        .parse()
        .unwrap_or_else(|_| panic!("sfdisk node {node:?} on {device:?} has no partition number"))
}

#[cfg(test)]
mod tests {
    use super::partition_number;

    #[test]
    fn numbers_come_from_the_node_suffix() {
        assert_eq!(partition_number("/t/disk.img", "/t/disk.img14"), 14);
        assert_eq!(partition_number("/t/p2.img", "/t/p2.img1"), 1);
        assert_eq!(partition_number("/dev/loop0", "/dev/loop0p3"), 3);
    }
}
