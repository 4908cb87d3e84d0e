//! Picks the SSD among the node's disks by the profile's selector: exactly one match, and not
//! the disk the system booted from.

use crate::config::DiskSelector;
use crate::system::Disk;

/// Why no single disk was chosen.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// Nothing matched.
    #[error("no disk matches storage selector {selector} (disks seen: {seen}): plug in the SSD or fix the selector in the profile")]
    None {
        /// The selector, as written in the profile.
        selector: String,
        /// What the node sees.
        seen: String,
    },
    /// More than one matched.
    #[error("{count} disks match storage selector {selector} ({names}): unplug the extra ones or make the selector narrower")]
    Many {
        /// The selector.
        selector: String,
        /// How many.
        count: usize,
        /// Their names.
        names: String,
    },
    /// The match is the boot disk.
    #[error("the only disk matching storage selector {selector} is {disk}, which holds the root filesystem: it is never formatted; fix the selector")]
    Root {
        /// The selector.
        selector: String,
        /// The disk.
        disk: String,
    },
    /// The selector's glob is invalid.
    #[error("storage selector by_id {0:?} is not a valid glob: fix it in the profile")]
    Pattern(String),
}

fn describe(selector: &DiskSelector) -> String {
    match selector {
        DiskSelector::ById(p) => format!("by_id = {p:?}"),
        DiskSelector::UsbMinGb(gb) => format!("usb_min_gb = {gb}"),
    }
}

/// The one disk the selector names.
pub fn select<'a>(disks: &'a [Disk], selector: &DiskSelector) -> Result<&'a Disk, SelectError> {
    let matching: Vec<&Disk> = match selector {
        DiskSelector::ById(pattern) => {
            let glob =
                glob::Pattern::new(pattern).map_err(|_| SelectError::Pattern(pattern.clone()))?;
            disks
                .iter()
                .filter(|d| d.ids.iter().any(|id| glob.matches(id)))
                .collect()
        }
        DiskSelector::UsbMinGb(gb) => disks
            .iter()
            .filter(|d| d.transport.as_deref() == Some("usb"))
            .filter(|d| d.size >= gb.saturating_mul(1_000_000_000))
            .collect(),
    };
    match matching.as_slice() {
        [] => Err(SelectError::None {
            selector: describe(selector),
            seen: if disks.is_empty() {
                "none".into()
            } else {
                disks
                    .iter()
                    .map(|d| {
                        format!(
                            "{} {} GB {}",
                            d.display_name(),
                            d.size / 1_000_000_000,
                            d.transport.as_deref().unwrap_or("?")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }),
        [one] if one.holds_root => Err(SelectError::Root {
            selector: describe(selector),
            disk: one.display_name(),
        }),
        [one] => Ok(one),
        many => Err(SelectError::Many {
            selector: describe(selector),
            count: many.len(),
            names: many
                .iter()
                .map(|d| d.display_name())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(id: &str, gb: u64, transport: &str, root: bool) -> Disk {
        Disk {
            path: format!("/dev/{id}").into(),
            ids: vec![id.into()],
            serial: None,
            size: gb * 1_000_000_000,
            transport: Some(transport.into()),
            holds_root: root,
            sector_size: 512,
        }
    }

    #[test]
    fn by_id_and_usb_size() {
        let disks = [
            disk("mmc-SD64_0x1", 64, "mmc", true),
            disk("usb-Samsung_T7_S1-0:0", 500, "usb", false),
            disk("usb-Stick_S2-0:0", 16, "usb", false),
        ];
        let sel = DiskSelector::ById("usb-Samsung_*".into());
        assert_eq!(
            select(&disks, &sel).unwrap().ids[0],
            "usb-Samsung_T7_S1-0:0"
        );
        let sel = DiskSelector::UsbMinGb(100);
        assert_eq!(
            select(&disks, &sel).unwrap().ids[0],
            "usb-Samsung_T7_S1-0:0"
        );
        let sel = DiskSelector::UsbMinGb(10);
        assert!(matches!(
            select(&disks, &sel),
            Err(SelectError::Many { count: 2, .. })
        ));
        let sel = DiskSelector::UsbMinGb(1000);
        assert!(matches!(
            select(&disks, &sel),
            Err(SelectError::None { .. })
        ));
        let sel = DiskSelector::ById("mmc-*".into());
        assert!(matches!(
            select(&disks, &sel),
            Err(SelectError::Root { .. })
        ));
    }
}
