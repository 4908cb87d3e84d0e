//! `piimg-firstboot identify`: on a fleet image, before the network comes up, find which member
//! this board is and make the board that node.
//!
//! Runs as `piimg-identify.service` ([`crate::unit::IDENTIFY_UNIT`]), ordered before
//! `network-pre.target`, so the node's own network files and hostname are in place before the
//! network services read them. Steps, each safe to repeat after a power cut:
//! 1. `node.toml` exists already: a node was chosen on an earlier boot; only finish removing the
//!    fleet's files.
//! 2. Read the board ([`crate::hardware`]) and the fleet's table; exactly one member must match.
//!    None or several: write [`crate::fleet::UNMATCHED_PATH`] for `run` to report, change
//!    nothing else (no SSD is touched, k3s never starts).
//! 3. Write the member's entries into place, each atomically, its `node.toml` last (until it
//!    exists, the next boot starts over from step 2), set `/etc/hosts` and the kernel's
//!    hostname, record [`crate::fleet::IDENTITY_PATH`], then remove every member's files and
//!    the fleet table, so the node keeps no other node's secrets.

use crate::config::NODE_CONFIG_PATH;
use crate::fleet::{
    Entry, FleetConfig, FleetError, Identity, MemberFiles, Unmatched, FLEET_CONFIG_PATH,
    IDENTITY_PATH, MEMBERS_DIR, UNMATCHED_PATH,
};
use crate::hardware::{self, Hardware};
use crate::paths::NodePaths;
use crate::system::System;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a test root records the kernel hostname `identify` set.
pub const KERNEL_HOSTNAME: &str = "/proc/sys/kernel/hostname";

/// How long to wait for a wired interface to appear when a member matches by MAC.
pub const NIC_WAIT: Duration = Duration::from_secs(30);

/// What `identify` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This board became `node` now.
    Chosen(String),
    /// A node was chosen on an earlier boot.
    AlreadyChosen,
    /// No member, or more than one, is this board: recorded for `run` to report.
    Unmatched(Unmatched),
}

/// Why `identify` could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum IdentifyError {
    /// A file could not be read or written.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// A fleet file is not valid.
    #[error("{path}: {source}")]
    Fleet {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: FleetError,
    },
    /// The member's file does not belong to it.
    #[error(
        "{path}: holds the files of {found}, not of {expected}: the image is damaged; rebuild it"
    )]
    WrongMember {
        /// The file.
        path: PathBuf,
        /// The member it should be.
        expected: String,
        /// What it says.
        found: String,
    },
    /// An entry's path or mode is not usable.
    #[error("{path}: {problem}: the image is damaged; rebuild it")]
    Entry {
        /// The entry's path.
        path: String,
        /// What is wrong.
        problem: String,
    },
}

fn io(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> IdentifyError {
    let path = path.to_owned();
    move |source| IdentifyError::Io { path, what, source }
}

/// Reads the fleet table.
pub fn load_fleet(paths: &NodePaths) -> Result<FleetConfig, IdentifyError> {
    let path = paths.node(FLEET_CONFIG_PATH);
    let text = std::fs::read_to_string(&path).map_err(io(&path, "reading the fleet table"))?;
    FleetConfig::from_toml(&text).map_err(|source| IdentifyError::Fleet { path, source })
}

/// Reads the board, waiting up to `wait` for a wired interface to appear when a member is
/// matched by MAC and the board has none yet (drivers may still be probing this early in
/// boot). A board with an interface is read as it is: waiting would not change its MAC.
pub fn read_board(
    fleet: &FleetConfig,
    paths: &NodePaths,
    sys: &dyn System,
    wait: Duration,
) -> Hardware {
    let by_mac = fleet
        .members
        .iter()
        .any(|m| matches!(m.board, crate::fleet::BoardMatch::Mac(_)));
    let step = Duration::from_millis(500);
    let mut waited = Duration::ZERO;
    loop {
        let hw = hardware::read(paths);
        let single = fleet.matching(&hw).len() == 1;
        if single || !by_mac || !hw.nics.is_empty() || waited >= wait {
            return hw;
        }
        sys.sleep(step);
        waited += step;
    }
}

/// Runs the identification (see the module docs).
pub fn identify(
    paths: &NodePaths,
    sys: &dyn System,
    wait: Duration,
    dry_run: bool,
) -> Result<Outcome, IdentifyError> {
    if paths.node(NODE_CONFIG_PATH).exists() {
        if !dry_run {
            forget_fleet(paths)?;
        }
        return Ok(Outcome::AlreadyChosen);
    }
    let fleet = load_fleet(paths)?;
    let hw = read_board(&fleet, paths, sys, wait);
    let candidates: Vec<String> = fleet.matching(&hw).iter().map(|m| m.node.clone()).collect();
    let [node] = candidates.as_slice() else {
        let unmatched = Unmatched {
            hardware: hw,
            candidates,
        };
        if !dry_run {
            let path = paths.node(UNMATCHED_PATH);
            let text = toml::to_string_pretty(&unmatched).unwrap_or_default();
            crate::state::write_atomic(&path, text.as_bytes(), 0o644)
                .map_err(|(what, source)| IdentifyError::Io { path, what, source })?;
        }
        return Ok(Outcome::Unmatched(unmatched));
    };
    let member = fleet
        .members
        .iter()
        .find(|m| &m.node == node)
        .cloned()
        .expect("a candidate is a member");
    let path = paths.node(&format!("{MEMBERS_DIR}/{node}.toml"));
    let text = std::fs::read_to_string(&path).map_err(io(&path, "reading the member's files"))?;
    let files = MemberFiles::from_toml(&text).map_err(|source| IdentifyError::Fleet {
        path: path.clone(),
        source,
    })?;
    if files.node != *node {
        return Err(IdentifyError::WrongMember {
            path,
            expected: node.clone(),
            found: files.node,
        });
    }
    if dry_run {
        for e in &files.entries {
            println!("would write {}", e.path());
        }
        println!("would become {node} ({})", member.board.describe());
        return Ok(Outcome::Chosen(node.clone()));
    }
    let node_config = become_member(paths, sys, &files)?;
    let identity = Identity {
        fleet: fleet.fleet.clone(),
        node: node.clone(),
        board: member.board,
        hardware: hw,
    };
    let ipath = paths.node(IDENTITY_PATH);
    let itext = toml::to_string_pretty(&identity).unwrap_or_default();
    crate::state::write_atomic(&ipath, itext.as_bytes(), 0o644).map_err(|(what, source)| {
        IdentifyError::Io {
            path: ipath,
            what,
            source,
        }
    })?;
    // Last: once node.toml exists, the board is this node on every later boot.
    for entry in node_config {
        apply(paths, entry)?;
    }
    let _ = std::fs::remove_file(paths.node(UNMATCHED_PATH));
    forget_fleet(paths)?;
    Ok(Outcome::Chosen(node.clone()))
}

/// Writes the member's entries but `node.toml`, then `/etc/hosts` and the kernel hostname;
/// returns the `node.toml` entry for the caller to write once the identity is recorded.
fn become_member<'f>(
    paths: &NodePaths,
    sys: &dyn System,
    files: &'f MemberFiles,
) -> Result<Vec<&'f Entry>, IdentifyError> {
    let (last, first): (Vec<&Entry>, Vec<&Entry>) = files
        .entries
        .iter()
        .partition(|e| e.path() == NODE_CONFIG_PATH);
    let mut netplan = false;
    for entry in first {
        apply(paths, entry)?;
        netplan |= entry.path().starts_with("/etc/netplan/");
    }
    let hosts = paths.node("/etc/hosts");
    let old = std::fs::read_to_string(&hosts).unwrap_or_default();
    let new = crate::etc_hosts::set_hostname(&old, &files.hostname);
    if new != old {
        crate::state::write_atomic(&hosts, new.as_bytes(), 0o644).map_err(|(what, source)| {
            IdentifyError::Io {
                path: hosts,
                what,
                source,
            }
        })?;
    }
    // systemd set the kernel's hostname from /etc/hostname before any unit ran
    // (systemd `src/shared/hostname-setup.c` `hostname_setup`, called by PID 1); the node's
    // /etc/hostname is an entry above (NetworkManager sends that one in DHCP), and the kernel's
    // is set now, as hostnamed does with sethostname(2) (networkd sends that one). A test root
    // records it in `<root>/proc/sys/kernel/hostname` instead.
    let set = if paths.is_machine() {
        nix::unistd::sethostname(&files.hostname).map_err(std::io::Error::from)
    } else {
        let record = paths.node(KERNEL_HOSTNAME);
        record
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&record, &files.hostname))
    };
    if let Err(e) = set {
        tracing::warn!(error = %e, "cannot set the hostname now; it applies at the next boot");
    }
    if netplan {
        // Netplan turned /etc/netplan into network files at the start of boot (its systemd
        // generator); a file written since needs this before the network services start.
        if let Err(e) = sys.netplan_generate() {
            tracing::warn!(error = %e, "netplan generate failed; the node's netplan file applies at the next boot");
        }
    }
    Ok(last)
}

fn mode_of(path: &str, mode: &str) -> Result<u32, IdentifyError> {
    u32::from_str_radix(mode, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| IdentifyError::Entry {
            path: path.into(),
            problem: format!("mode {mode:?} is not octal permission bits"),
        })
}

/// Applies one entry; safe to repeat.
fn apply(paths: &NodePaths, entry: &Entry) -> Result<(), IdentifyError> {
    let abs = entry.path();
    if !abs.starts_with('/') || abs.split('/').any(|c| c == "..") {
        return Err(IdentifyError::Entry {
            path: abs.into(),
            problem: "not an absolute path without `..`".into(),
        });
    }
    let target = paths.node(abs);
    match entry {
        Entry::File {
            mode,
            uid,
            gid,
            content,
            ..
        } => {
            let mode = mode_of(abs, mode)?;
            write_file(&target, content.as_bytes(), mode, *uid, *gid)
        }
        Entry::Dir { mode, uid, gid, .. } => {
            let mode = mode_of(abs, mode)?;
            std::fs::create_dir_all(&target).map_err(io(&target, "creating the folder"))?;
            own(&target, mode, *uid, *gid)
        }
        Entry::Symlink { target: to, .. } => {
            let parent = target.parent().unwrap_or(Path::new("/"));
            std::fs::create_dir_all(parent).map_err(io(parent, "creating its folder"))?;
            let tmp = sibling(&target, "link");
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(to, &tmp).map_err(io(&tmp, "creating the symlink"))?;
            std::fs::rename(&tmp, &target).map_err(io(&target, "renaming the symlink into place"))
        }
        Entry::Remove { .. } => match std::fs::remove_file(&target) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&target, "removing")(e)),
            _ => Ok(()),
        },
    }
}

fn sibling(path: &Path, what: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.piimg-{what}"))
}

/// Writes through a temporary file with its mode and owner set before the rename, so the
/// path never holds a partial file or a secret with the wrong mode.
fn write_file(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(), IdentifyError> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(io(parent, "creating its folder"))?;
    let tmp = sibling(path, "tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp, "creating a temporary file"))?;
    f.write_all(bytes).map_err(io(&tmp, "writing"))?;
    own(&tmp, mode, uid, gid)?;
    f.sync_all().map_err(io(&tmp, "syncing"))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io(path, "renaming into place"))
}

/// Sets mode and owner. Only root can give a file away; the tests' `--root` runs may not be
/// root, and a node always is (the unit runs as root).
fn own(path: &Path, mode: u32, uid: u32, gid: u32) -> Result<(), IdentifyError> {
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(io(path, "setting the owner"))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io(path, "setting the mode"))
}

/// Removes every member's files and then the fleet table; each removal is safe to repeat.
fn forget_fleet(paths: &NodePaths) -> Result<(), IdentifyError> {
    let dir = paths.node(MEMBERS_DIR);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io(&dir, "removing the fleet's member files")(e))
        }
        _ => {}
    }
    let table = paths.node(FLEET_CONFIG_PATH);
    match std::fs::remove_file(&table) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io(&table, "removing the fleet table")(e))
        }
        _ => Ok(()),
    }
}

/// The identity a board took, if this node came from a fleet image.
pub fn identity(paths: &NodePaths) -> Option<Identity> {
    let text = std::fs::read_to_string(paths.node(IDENTITY_PATH)).ok()?;
    toml::from_str(&text).ok()
}

/// The console line for an outcome.
pub fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Chosen(node) => format!("piimg: this board is {node}"),
        Outcome::AlreadyChosen => "piimg: this board took its node on an earlier boot".into(),
        Outcome::Unmatched(u) => u.message(),
    }
}
