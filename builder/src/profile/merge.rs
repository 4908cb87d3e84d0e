//! How a profile layer lands on the layer beneath it (`extends`, `[defaults]`).

use super::types::{ExtraFile, KernelProfile, NodeProfile, StorageProfile};

/// Layering: `self.merge(upper)` puts `upper` on top of `self`.
///
/// Scalars: `upper` wins when it sets one. Lists and maps follow the rule written on their
/// field in [`NodeProfile`]. One trait keeps the rules in one place and one test per rule.
pub trait Merge {
    /// Puts `upper` on top of `self`.
    fn merge(&mut self, upper: Self);
}

fn scalar<T>(lower: &mut Option<T>, upper: Option<T>) {
    if upper.is_some() {
        *lower = upper;
    }
}

fn append_unique<T: PartialEq>(lower: &mut Option<Vec<T>>, upper: Option<Vec<T>>) {
    let Some(upper) = upper else { return };
    let list = lower.get_or_insert_with(Vec::new);
    for item in upper {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

fn nested<T: Merge + Default>(lower: &mut Option<T>, upper: Option<T>) {
    if let Some(upper) = upper {
        lower.get_or_insert_with(T::default).merge(upper);
    }
}

impl Merge for StorageProfile {
    fn merge(&mut self, upper: Self) {
        scalar(&mut self.selector, upper.selector);
        scalar(&mut self.mount_point, upper.mount_point);
        scalar(&mut self.wipe, upper.wipe);
    }
}

impl Merge for KernelProfile {
    fn merge(&mut self, upper: Self) {
        scalar(&mut self.keep_16k_pages, upper.keep_16k_pages);
        scalar(&mut self.usb_max_current, upper.usb_max_current);
        append_unique(&mut self.cmdline_extra, upper.cmdline_extra);
    }
}

impl Merge for NodeProfile {
    fn merge(&mut self, upper: Self) {
        // `extends` names the parent of one file; it is not a value that layers.
        self.extends = upper.extends;
        // A board is one profile's: a parent's (or `[defaults]`') `match` would make two
        // nodes claim the same board.
        self.board = upper.board;
        scalar(&mut self.hostname, upper.hostname);
        scalar(&mut self.role, upper.role);
        scalar(&mut self.base, upper.base);
        scalar(&mut self.k3s_version, upper.k3s_version);
        if let Some(labels) = upper.labels {
            self.labels
                .get_or_insert_with(Default::default)
                .extend(labels);
        }
        scalar(&mut self.taints, upper.taints);
        scalar(&mut self.network, upper.network);
        scalar(&mut self.user, upper.user);
        append_unique(&mut self.ssh_keys, upper.ssh_keys);
        scalar(&mut self.timezone, upper.timezone);
        nested(&mut self.storage, upper.storage);
        scalar(&mut self.report_url, upper.report_url);
        nested(&mut self.kernel, upper.kernel);
        append_unique(&mut self.overlays, upper.overlays);
        scalar(&mut self.manifests, upper.manifests);
        if let Some(files) = upper.files {
            let list: &mut Vec<ExtraFile> = self.files.get_or_insert_with(Vec::new);
            for file in files {
                list.retain(|f| f.path != file.path);
                list.push(file);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::types::NetworkProfile;
    use piimg_firstboot::config::{DiskSelector, Role};

    fn p(f: impl FnOnce(&mut NodeProfile)) -> NodeProfile {
        let mut n = NodeProfile::default();
        f(&mut n);
        n
    }

    #[test]
    fn scalar_upper_wins_when_set() {
        let mut lower = p(|n| {
            n.role = Some(Role::Agent);
            n.base = Some("bookworm".into());
        });
        lower.merge(p(|n| n.base = Some("trixie".into())));
        assert_eq!(lower.base.as_deref(), Some("trixie"));
        assert_eq!(lower.role, Some(Role::Agent), "unset upper keeps lower");
    }

    #[test]
    fn ssh_keys_append_without_duplicates() {
        let mut lower = p(|n| n.ssh_keys = Some(vec!["a".into(), "b".into()]));
        lower.merge(p(|n| n.ssh_keys = Some(vec!["b".into(), "c".into()])));
        assert_eq!(lower.ssh_keys.unwrap(), ["a", "b", "c"]);
    }

    #[test]
    fn labels_merge_by_key() {
        let mut lower = p(|n| {
            n.labels = Some([("zone".into(), "a".into()), ("disk".into(), "ssd".into())].into())
        });
        lower.merge(p(|n| n.labels = Some([("zone".into(), "b".into())].into())));
        let labels = lower.labels.unwrap();
        assert_eq!(labels["zone"], "b");
        assert_eq!(labels["disk"], "ssd");
    }

    #[test]
    fn taints_replace_and_empty_list_clears() {
        let mut lower = p(|n| n.taints = Some(vec!["a=b:NoSchedule".into()]));
        lower.merge(p(|n| n.taints = Some(vec![])));
        assert_eq!(lower.taints, Some(vec![]));
    }

    #[test]
    fn network_replaces_as_a_whole() {
        let mut lower = p(|n| {
            n.network = Some(NetworkProfile {
                interface: Some("eth1".into()),
                static_address: None,
            })
        });
        lower.merge(p(|n| n.network = Some(NetworkProfile::default())));
        assert_eq!(lower.network.unwrap().interface, None);
    }

    #[test]
    fn storage_and_kernel_merge_key_by_key() {
        let mut lower = p(|n| {
            n.storage = Some(StorageProfile {
                selector: Some(DiskSelector::UsbMinGb(100)),
                mount_point: Some("/mnt/a".into()),
                wipe: None,
            });
            n.kernel = Some(KernelProfile {
                keep_16k_pages: Some(true),
                usb_max_current: None,
                cmdline_extra: Some(vec!["quiet".into()]),
            });
        });
        lower.merge(p(|n| {
            n.storage = Some(StorageProfile {
                mount_point: Some("/mnt/b".into()),
                ..Default::default()
            });
            n.kernel = Some(KernelProfile {
                cmdline_extra: Some(vec!["usb-storage.quirks=1:2:u".into()]),
                ..Default::default()
            });
        }));
        let s = lower.storage.unwrap();
        assert_eq!(s.selector, Some(DiskSelector::UsbMinGb(100)));
        assert_eq!(s.mount_point.as_deref(), Some("/mnt/b"));
        let k = lower.kernel.unwrap();
        assert_eq!(k.keep_16k_pages, Some(true));
        assert_eq!(
            k.cmdline_extra.unwrap(),
            ["quiet", "usb-storage.quirks=1:2:u"]
        );
    }

    #[test]
    fn overlays_append() {
        let mut lower = p(|n| n.overlays = Some(vec!["gpu".into()]));
        lower.merge(p(|n| n.overlays = Some(vec!["monitoring".into()])));
        assert_eq!(lower.overlays.unwrap(), ["gpu", "monitoring"]);
    }

    #[test]
    fn files_append_and_same_path_replaces() {
        let f = |path: &str, content: &str| ExtraFile {
            path: path.into(),
            content: Some(content.into()),
            source: None,
            replace_piimg_file: None,
            mode: None,
            uid: None,
            gid: None,
        };
        let mut lower = p(|n| n.files = Some(vec![f("/etc/a", "1"), f("/etc/b", "1")]));
        lower.merge(p(|n| n.files = Some(vec![f("/etc/a", "2")])));
        let files = lower.files.unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[1].path, "/etc/a");
        assert_eq!(files[1].content.as_deref(), Some("2"));
    }

    #[test]
    fn match_is_not_inherited() {
        use piimg_firstboot::fleet::BoardMatch;
        let mut lower = p(|n| n.board = Some(BoardMatch::Serial("1".into())));
        lower.merge(p(|_| {}));
        assert_eq!(lower.board, None);
        lower.merge(p(|n| {
            n.board = Some(BoardMatch::Mac("02:00:00:00:00:01".into()))
        }));
        assert_eq!(
            lower.board,
            Some(BoardMatch::Mac("02:00:00:00:00:01".into()))
        );
    }

    #[test]
    fn extends_is_not_inherited() {
        let mut lower = p(|n| n.extends = Some("base".into()));
        lower.merge(p(|_| {}));
        assert_eq!(lower.extends, None);
    }
}
