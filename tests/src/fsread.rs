//! Reading files back out of an image with the reference tools (`debugfs`, mtools), so tests
//! check what piimg wrote with something other than piimg.

use crate::cmd;
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Output};

/// `image?offset=N`, the io-options form e2fsprogs tools accept to open a partition in place.
pub fn offset_spec(image: &Path, start: u64) -> OsString {
    let mut spec = image.as_os_str().to_owned();
    spec.push(format!("?offset={start}"));
    spec
}

/// Runs one debugfs request on the ext4 filesystem at byte `start`. debugfs exits 0 even when
/// the request fails, so anything on stderr besides its version banner is a failure.
fn debugfs(image: &Path, start: u64, request: &str) -> Output {
    let mut command = Command::new("debugfs");
    command
        .arg("-R")
        .arg(request)
        .arg(offset_spec(image, start));
    let out = cmd::output(&mut command);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failed = stderr
        .lines()
        .any(|l| !l.trim().is_empty() && !l.starts_with("debugfs "));
    if !out.status.success() || failed {
        panic!(
            "{} @ {start}: debugfs {request:?} failed\n{}",
            image.display(),
            cmd::describe(&command, &out)
        );
    }
    out
}

fn quoted(path: &str) -> String {
    assert!(
        !path.contains('"'),
        "debugfs paths cannot contain a double quote: {path:?}"
    );
    format!("\"{path}\"")
}

/// Whether `path` exists in the ext4 filesystem at byte `start` (a symlink itself counts).
pub fn debugfs_exists(image: &Path, start: u64, path: &str) -> bool {
    let mut command = Command::new("debugfs");
    command
        .arg("-R")
        .arg(format!("stat {}", quoted(path)))
        .arg(offset_spec(image, start));
    let out = cmd::output(&mut command);
    !String::from_utf8_lossy(&out.stderr).contains("File not found")
}

/// The bytes of `path` in the ext4 filesystem at byte `start`; panics if it does not exist.
/// A symlink as the last component is not followed (debugfs semantics).
pub fn debugfs_cat(image: &Path, start: u64, path: &str) -> Vec<u8> {
    // `cat` of a missing file prints nothing on stdout; the lookup error is on stderr.
    debugfs(image, start, &format!("cat {}", quoted(path))).stdout
}

/// What `debugfs stat` says about one inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InodeInfo {
    /// `regular`, `directory`, `symlink`, ... as debugfs prints it.
    pub file_type: String,
    /// Permission bits including setuid/setgid/sticky (`0o1777` for /tmp), without type bits.
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// The inode flags (`EXT4_INDEX_FL` = 0x1000 marks an htree-indexed directory).
    pub flags: u32,
    /// The target of a symlink.
    pub link_target: Option<String>,
}

/// `EXT4_INDEX_FL`: the directory has an htree index.
pub const EXT4_INDEX_FL: u32 = 0x1000;

impl InodeInfo {
    /// Whether the directory is htree-indexed, as real images' big directories are.
    pub fn is_indexed(&self) -> bool {
        self.flags & EXT4_INDEX_FL != 0
    }
}

/// The inode of `path` (not following a final symlink) in the ext4 filesystem at `start`.
pub fn debugfs_inode(image: &Path, start: u64, path: &str) -> InodeInfo {
    let out = debugfs(image, start, &format!("stat {}", quoted(path)));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut info = parse_stat(&text).unwrap_or_else(|| {
        panic!(
            "{} @ {start}: cannot parse debugfs stat of {path}:\n{text}",
            image.display()
        )
    });
    // A symlink whose target is kept in a data block ("slow" symlink, as mkfs.ext4 -d makes
    // for longer targets): its target is the block's content, which `cat` prints.
    if info.file_type == "symlink" && info.link_target.is_none() {
        let target = debugfs_cat(image, start, path);
        info.link_target = Some(String::from_utf8_lossy(&target).into_owned());
    }
    info
}

/// `(mode, uid, gid, size)` of `path`; mode holds the permission bits only (see [`InodeInfo`]).
pub fn debugfs_stat(image: &Path, start: u64, path: &str) -> (u32, u32, u32, u64) {
    let i = debugfs_inode(image, start, path);
    (i.mode, i.uid, i.gid, i.size)
}

/// The value that follows `key` on the line, as one whitespace-separated word.
fn word_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let at = line.find(key)?;
        line[at + key.len()..].split_whitespace().next()
    })
}

fn parse_stat(text: &str) -> Option<InodeInfo> {
    let mode = u32::from_str_radix(word_after(text, "Mode:")?, 8).ok()?;
    let flags = word_after(text, "Flags:")?;
    let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()?;
    let link_target = text.lines().find_map(|l| {
        let rest = l.strip_prefix("Fast link dest: ")?;
        Some(rest.trim().trim_matches('"').to_string())
    });
    Some(InodeInfo {
        file_type: word_after(text, "Type:")?.to_string(),
        mode,
        uid: word_after(text, "User:")?.parse().ok()?,
        gid: word_after(text, "Group:")?.parse().ok()?,
        size: word_after(text, "Size:")?.parse().ok()?,
        flags,
        link_target,
    })
}

/// One entry of a directory listing, as `debugfs ls -p` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name.
    pub name: String,
    /// Inode number.
    pub inode: u64,
    /// Full mode with type bits, as stat(2) gives it (`0o40755` for a directory).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
}

impl DirEntry {
    /// Whether the entry is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }
}

/// The entries of directory `path` in the ext4 filesystem at `start`, without `.` and `..`.
pub fn debugfs_ls(image: &Path, start: u64, path: &str) -> Vec<DirEntry> {
    let out = debugfs(image, start, &format!("ls -p {}", quoted(path)));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(parse_ls_line)
        .filter(|e| e.name != "." && e.name != "..")
        .collect()
}

/// `/inode/mode/uid/gid/name/size/` (the size is empty for devices and absent entries).
fn parse_ls_line(line: &str) -> Option<DirEntry> {
    let fields: Vec<&str> = line.trim().split('/').collect();
    if fields.len() < 6 || fields[5].is_empty() {
        return None;
    }
    Some(DirEntry {
        inode: fields[1].parse().ok()?,
        mode: u32::from_str_radix(fields[2], 8).ok()?,
        uid: fields[3].parse().ok()?,
        gid: fields[4].parse().ok()?,
        name: fields[5].to_string(),
    })
}

/// What `blkid -p` finds at byte `start` (`TYPE`, `LABEL`, `UUID`, `VERSION`, ...): a second
/// opinion on filesystem labels that does not come from piimg.
pub fn blkid_probe(image: &Path, start: u64) -> std::collections::BTreeMap<String, String> {
    let out = cmd::success(
        Command::new("blkid")
            .args(["-p", "-o", "export", "-O"])
            .arg(start.to_string())
            .arg(image),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The bytes of `path` (`/cmdline.txt`) in the FAT filesystem at byte `start`, via mtools.
pub fn mtype(image: &Path, start: u64, path: &str) -> Vec<u8> {
    let mut spec = image.as_os_str().to_owned();
    spec.push(format!("@@{start}"));
    let target = format!(
        "::{}",
        if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        }
    );
    let mut command = Command::new("mtype");
    command
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(spec)
        .arg(target);
    cmd::success(&mut command).stdout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debugfs_stat_of_a_symlink() {
        let text = "Inode: 328   Type: symlink    Mode:  0777   Flags: 0x0\n\
            Generation: 0    Version: 0x00000000:00000000\n\
            User:     0   Group:     0   Project:     0   Size: 21\n\
            Fast link dest: \"../usr/lib/os-release\"\n";
        let i = parse_stat(text).expect("parses");
        assert_eq!(i.file_type, "symlink");
        assert_eq!((i.mode, i.uid, i.gid, i.size), (0o777, 0, 0, 21));
        assert_eq!(i.link_target.as_deref(), Some("../usr/lib/os-release"));
        assert!(!i.is_indexed());
    }

    #[test]
    fn parses_ls_p_lines() {
        let e = parse_ls_line(" /19/040755/0/0/etc//").expect("dir");
        assert_eq!((e.inode, e.mode, e.uid, e.gid), (19, 0o40755, 0, 0));
        assert_eq!(e.name, "etc");
        assert!(e.is_dir());
        let f = parse_ls_line("/366/100755/0/0/dash/64/").expect("file");
        assert!(!f.is_dir());
        assert_eq!(parse_ls_line(""), None);
    }

    #[test]
    fn parses_sticky_indexed_directory() {
        let text = "Inode: 19   Type: directory    Mode:  01777   Flags: 0x81000\n\
            User:  1000   Group:   100   Project:     0   Size: 16384\n";
        let i = parse_stat(text).expect("parses");
        assert_eq!((i.mode, i.uid, i.gid, i.size), (0o1777, 1000, 100, 16384));
        assert!(i.is_indexed());
    }
}
