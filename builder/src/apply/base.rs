//! Refusing the wrong base before any write: the plan's per-OS edits (dphys-swapfile vs
//! rpi-swap, `cmdline.txt` vs `current/cmdline.txt`, GRUB) only make sense on the OS they
//! were computed for, so a `--base` that does not match the profile is an error, not a guess.

use super::locate::{follow_file, Located, OS_RELEASE};
use super::ApplyError;
use crate::disk;
use crate::fs::ext4::Ext4;
use crate::fs::fat::BootFs;
use crate::inspect::os::{detect, parse_os_release};
use crate::inspect::rootfs::Ext4Tree;
use crate::plan::Plan;
use crate::spec::Flavour;
use std::path::Path;

/// What the image holds, as far as the flavour check cares.
struct Found {
    id: String,
    codename: String,
    pretty: String,
    arch: Option<String>,
    cmdline: bool,
    ab_cmdline: bool,
}

/// Checks that `image` holds the OS `plan.flavour` was computed for.
pub fn check(image: &Path, plan: &Plan, located: &Located, fs: &Ext4) -> Result<(), ApplyError> {
    let found = read_found(image, located, fs)?;
    let debian_like = matches!(found.id.as_str(), "debian" | "raspbian");
    let problem: Option<String> = match plan.flavour {
        Flavour::Bookworm | Flavour::Trixie if !debian_like => Some(String::new()),
        Flavour::Bookworm if found.codename != "bookworm" => Some(String::new()),
        Flavour::Trixie
            if matches!(found.codename.as_str(), "bookworm" | "bullseye" | "buster") =>
        {
            Some(String::new())
        }
        Flavour::Bookworm | Flavour::Trixie if !found.cmdline => {
            Some(" without cmdline.txt on a boot partition".into())
        }
        Flavour::UbuntuRaspi { .. } | Flavour::UbuntuAmd64 if found.id != "ubuntu" => {
            Some(String::new())
        }
        Flavour::UbuntuRaspi { .. } if found.arch.as_deref() == Some("amd64") => {
            Some(" for amd64".into())
        }
        Flavour::UbuntuRaspi { ab_boot: true } if !found.ab_cmdline => {
            Some(" without current/cmdline.txt (A/B boot) on its boot partition".into())
        }
        Flavour::UbuntuRaspi { ab_boot: false } if !found.cmdline => {
            Some(" without cmdline.txt on its boot partition".into())
        }
        Flavour::UbuntuAmd64 if found.arch.as_deref().is_some_and(|a| a != "amd64") => {
            Some(format!(" for {}", found.arch.as_deref().unwrap_or("?")))
        }
        Flavour::UbuntuAmd64 if found.cmdline || found.ab_cmdline => {
            Some(" with a Raspberry Pi boot partition (cmdline.txt)".into())
        }
        _ => None,
    };
    match problem {
        None => Ok(()),
        Some(detail) => Err(ApplyError::BaseMismatch {
            image: image.to_path_buf(),
            node: plan.node.clone(),
            base: plan.base.clone(),
            expected: plan.flavour.to_string(),
            found: format!("{}{detail}", found.pretty),
        }),
    }
}

fn read_found(image: &Path, located: &Located, fs: &Ext4) -> Result<Found, ApplyError> {
    let text = OS_RELEASE
        .iter()
        .find_map(|p| follow_file(fs, p))
        .and_then(|p| fs.read_file(&p).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let fields = parse_os_release(&text);
    let get = |key: &str| {
        fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let id = get("ID");
    let codename = get("VERSION_CODENAME");
    let pretty = match get("PRETTY_NAME") {
        p if !p.is_empty() => p,
        _ => format!("{id} {} {codename}", get("VERSION_ID"))
            .trim()
            .to_string(),
    };
    let arch = detect(&Ext4Tree(fs)).and_then(|os| os.arch);
    let (mut cmdline, mut ab_cmdline) = (false, false);
    if let Some(boot) = &located.boot {
        let view =
            disk::open_partition(image, boot, false).map_err(|source| ApplyError::Partition {
                image: image.to_path_buf(),
                partition: boot.number,
                source,
            })?;
        if let Ok(fat) = BootFs::open(view, 0) {
            cmdline = fat.exists("cmdline.txt");
            ab_cmdline = fat.exists("current/cmdline.txt");
        }
    }
    Ok(Found {
        id,
        codename,
        pretty,
        arch,
        cmdline,
        ab_cmdline,
    })
}
