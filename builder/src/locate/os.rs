//! Which OS an image holds: `/etc/os-release` and the architecture of its binaries.

use super::tree::Tree;
use serde::Serialize;

/// The OS facts `piimg inspect` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OsInfo {
    /// `ID` from os-release (`debian`, `ubuntu`, `raspbian`).
    pub id: Option<String>,
    /// `VERSION_ID` (`12`, `24.04`).
    pub version_id: Option<String>,
    /// `VERSION_CODENAME` (`bookworm`, `trixie`, `noble`).
    pub codename: Option<String>,
    /// `PRETTY_NAME`, for people.
    pub pretty_name: Option<String>,
    /// `arm64`, `amd64`, … from the ELF header of a binary in `/usr/bin`.
    pub arch: Option<String>,
}

/// Parses os-release's `KEY=value` lines (values may be quoted).
pub fn parse_os_release(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

/// The value of `key` in parsed os-release fields; the last assignment wins, as in a shell.
pub fn field(fields: &[(String, String)], key: &str) -> Option<String> {
    fields
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// Debian's architecture name for an ELF `e_machine`, as package names and k3s assets use.
pub fn arch_of_machine(machine: u16) -> Option<&'static str> {
    match machine {
        183 => Some("arm64"),
        62 => Some("amd64"),
        40 => Some("armhf"),
        3 => Some("i386"),
        243 => Some("riscv64"),
        _ => None,
    }
}

/// The architecture from an ELF header, if `head` starts with one.
pub fn elf_arch(head: &[u8]) -> Option<&'static str> {
    if head.len() < 20 || &head[..4] != b"\x7fELF" {
        return None;
    }
    let machine = match head[5] {
        1 => u16::from_le_bytes([head[18], head[19]]),
        2 => u16::from_be_bytes([head[18], head[19]]),
        _ => return None,
    };
    arch_of_machine(machine)
}

/// Binaries every distribution has, tried before scanning `/usr/bin` (cheap to read).
const WELL_KNOWN: &[&str] = &["/usr/bin/true", "/usr/bin/env", "/usr/bin/ls", "/bin/true"];
/// Files larger than this are skipped when scanning, so inspect never reads a huge binary whole.
const SCAN_LIMIT: u64 = 4 << 20;

/// Reads os-release (`/etc/os-release`, else `/usr/lib/os-release`) and the binaries' architecture.
pub fn detect(tree: &dyn Tree) -> Option<OsInfo> {
    let text = tree
        .text("/etc/os-release")
        .or_else(|| tree.text("/usr/lib/os-release"))?;
    let fields = parse_os_release(&text);
    let get = |key: &str| field(&fields, key);
    Some(OsInfo {
        id: get("ID"),
        version_id: get("VERSION_ID"),
        codename: get("VERSION_CODENAME"),
        pretty_name: get("PRETTY_NAME"),
        arch: detect_arch(tree).map(str::to_string),
    })
}

fn detect_arch(tree: &dyn Tree) -> Option<&'static str> {
    let scanned = tree
        .list("/usr/bin")
        .into_iter()
        .map(|n| format!("/usr/bin/{n}"));
    let candidates = WELL_KNOWN.iter().map(|s| s.to_string()).chain(scanned);
    candidates
        .filter(|p| tree.size(p).is_some_and(|s| s <= SCAN_LIMIT))
        .find_map(|p| tree.read(&p).and_then(|b| elf_arch(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locate::tree::MemTree;

    fn elf(machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h
    }

    #[test]
    fn reads_quoted_and_plain_values() {
        let tree = MemTree::default()
            .file(
                "/etc/os-release",
                "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
            )
            .file("/usr/bin/aaa-script", "#!/bin/sh\n")
            .file("/usr/bin/zz", elf(183));
        let os = detect(&tree).unwrap();
        assert_eq!(os.id.as_deref(), Some("debian"));
        assert_eq!(os.version_id.as_deref(), Some("12"));
        assert_eq!(os.codename.as_deref(), Some("bookworm"));
        assert_eq!(
            os.pretty_name.as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(os.arch.as_deref(), Some("arm64"));
    }

    #[test]
    fn falls_back_to_usr_lib_and_tells_amd64() {
        let tree = MemTree::default()
            .file("/usr/lib/os-release", "ID=ubuntu\nVERSION_ID=24.04\n")
            .file("/usr/bin/true", elf(62));
        let os = detect(&tree).unwrap();
        assert_eq!(os.id.as_deref(), Some("ubuntu"));
        assert_eq!(os.arch.as_deref(), Some("amd64"));
    }

    #[test]
    fn no_os_release_means_no_os() {
        assert!(detect(&MemTree::default().file("/usr/bin/true", elf(62))).is_none());
    }

    #[test]
    fn non_elf_is_not_an_arch() {
        assert_eq!(elf_arch(b"#!/bin/sh\necho hello world\n"), None);
        assert_eq!(elf_arch(b"\x7fELF"), None);
    }
}
