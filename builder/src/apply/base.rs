//! Refusing the wrong base before any write: the plan's per-OS edits (dphys-swapfile vs
//! rpi-swap, `cmdline.txt` vs `current/cmdline.txt`, GRUB) only make sense on the OS they
//! were computed for, so a `--base` that does not match the profile is an error, not a guess.

use super::ApplyError;
use crate::disk;
use crate::fs::ext4::Ext4;
use crate::fs::fat::{BootFs, FatError};
use crate::locate::os::{detect, field, parse_os_release};
use crate::locate::rootfs::Ext4Tree;
use crate::locate::{follow_file, Located, OS_RELEASE};
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
    match mismatch(plan.flavour, &found) {
        None => Ok(()),
        // No boot partition was found, but the table types one as FAT: its filesystem is
        // gone (a damaged or overwritten boot sector), which is not another OS.
        Some(_) if located.boot.is_none() && !found.cmdline && !found.ab_cmdline => {
            match fat_typed_without_fat(image, located) {
                Some(part) => Err(ApplyError::BootNotFat {
                    image: image.to_path_buf(),
                    partition: part.number,
                    kind: part
                        .type_name
                        .clone()
                        .unwrap_or_else(|| part.type_id.clone()),
                }),
                None => Err(mismatch_error(image, plan, &found)),
            }
        }
        Some(_) => Err(mismatch_error(image, plan, &found)),
    }
}

/// The first partition whose table entry says FAT (MBR types 01, 04, 06, 0b, 0c, 0e, or the
/// GPT ESP) but on which no FAT filesystem is found.
fn fat_typed_without_fat<'a>(image: &Path, located: &'a Located) -> Option<&'a disk::Partition> {
    const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
    located.layout.partitions.iter().find(|p| {
        let fat_typed = matches!(p.type_id.as_str(), "01" | "04" | "06" | "0b" | "0c" | "0e")
            || p.type_id.eq_ignore_ascii_case(ESP);
        fat_typed
            && disk::open_partition(image, p, false)
                .and_then(|mut view| disk::probe(&mut view))
                .is_ok_and(|(kind, _)| kind != disk::FsKind::Vfat)
    })
}

fn mismatch_error(image: &Path, plan: &Plan, found: &Found) -> ApplyError {
    let detail = mismatch(plan.flavour, found).unwrap_or_default();
    ApplyError::BaseMismatch {
        image: image.to_path_buf(),
        node: plan.node.clone(),
        base: plan.base.clone(),
        expected: plan.flavour.to_string(),
        found: format!("{}{detail}", found.pretty),
    }
}

/// `None` when `found` is what `flavour` needs; else what is off, to append to the OS name
/// (empty when the OS itself is the wrong one).
fn mismatch(flavour: Flavour, found: &Found) -> Option<String> {
    let debian_like = matches!(found.id.as_str(), "debian" | "raspbian");
    match flavour {
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
        Flavour::UbuntuAmd64 | Flavour::Debian if found.cmdline || found.ab_cmdline => {
            Some(" with a Raspberry Pi boot partition (cmdline.txt)".into())
        }
        Flavour::Debian if found.id != "debian" => Some(String::new()),
        _ => None,
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
    let get = |key: &str| field(&fields, key).unwrap_or_default();
    let id = get("ID");
    let codename = get("VERSION_CODENAME");
    let pretty = match get("PRETTY_NAME") {
        p if !p.is_empty() => p,
        _ => format!("{id} {} {codename}", get("VERSION_ID"))
            .trim()
            .to_string(),
    };
    let arch = detect(&Ext4Tree::new(fs)).and_then(|os| os.arch);
    let (mut cmdline, mut ab_cmdline) = (false, false);
    if let Some(boot) = &located.boot {
        let view =
            disk::open_partition(image, boot, false).map_err(|source| ApplyError::Partition {
                image: image.to_path_buf(),
                partition: boot.number,
                source,
            })?;
        match BootFs::open_named(view, 0, "the FAT boot filesystem") {
            Ok(fat) => {
                cmdline = fat.exists("cmdline.txt");
                ab_cmdline = fat.exists("current/cmdline.txt");
            }
            Err(source @ FatError::Damaged { .. }) => {
                return Err(ApplyError::Fat {
                    image: image.to_path_buf(),
                    partition: boot.number,
                    edit: "checking the boot partition".into(),
                    source: Box::new(source),
                })
            }
            Err(_) => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    fn found(id: &str, codename: &str, arch: &str, cmdline: bool, ab: bool) -> Found {
        Found {
            id: id.into(),
            codename: codename.into(),
            pretty: format!("{id} {codename}"),
            arch: Some(arch.into()),
            cmdline,
            ab_cmdline: ab,
        }
    }

    #[test]
    fn each_flavour_accepts_its_own_base() {
        let cases = [
            (
                Flavour::Bookworm,
                found("debian", "bookworm", "arm64", true, false),
            ),
            (
                Flavour::Trixie,
                found("debian", "trixie", "arm64", true, false),
            ),
            (
                Flavour::UbuntuRaspi { ab_boot: false },
                found("ubuntu", "noble", "arm64", true, false),
            ),
            (
                Flavour::UbuntuRaspi { ab_boot: true },
                found("ubuntu", "questing", "arm64", false, true),
            ),
            (
                Flavour::UbuntuAmd64,
                found("ubuntu", "noble", "amd64", false, false),
            ),
            (
                Flavour::Debian,
                found("debian", "bookworm", "amd64", false, false),
            ),
        ];
        for (flavour, f) in cases {
            assert_eq!(mismatch(flavour, &f), None, "{flavour}");
        }
    }

    #[test]
    fn wrong_release_layout_or_arch_is_named() {
        let bookworm = found("debian", "bookworm", "arm64", true, false);
        assert_eq!(mismatch(Flavour::Trixie, &bookworm), Some(String::new()));
        let no_cmdline = found("debian", "bookworm", "arm64", false, false);
        assert!(mismatch(Flavour::Bookworm, &no_cmdline).is_some_and(|d| d.contains("cmdline.txt")));
        let noble_pi = found("ubuntu", "noble", "arm64", true, false);
        let ab = mismatch(Flavour::UbuntuRaspi { ab_boot: true }, &noble_pi);
        assert!(ab.is_some_and(|d| d.contains("current/cmdline.txt")));
        assert!(mismatch(Flavour::UbuntuAmd64, &noble_pi).is_some_and(|d| d.contains("arm64")));
        let amd = found("ubuntu", "noble", "amd64", false, false);
        assert!(mismatch(Flavour::UbuntuRaspi { ab_boot: false }, &amd).is_some());
        assert_eq!(mismatch(Flavour::Debian, &amd), Some(String::new()));
        let raspios = found("debian", "bookworm", "arm64", true, false);
        assert!(mismatch(Flavour::Debian, &raspios).is_some_and(|d| d.contains("cmdline.txt")));
    }
}
