//! Pure text transforms the apply stage runs on files it reads from the image.
//!
//! Each is `fn(&str, …) -> String`, keeps every line and parameter it does not own, in order,
//! and is idempotent: running it on its own output changes nothing (tested below).

/// `cmdline.txt`: appends each of `params` that is not already there, keeping the one line,
/// every other parameter and their order. Exact duplicates only: `cgroup_enable=memory` next
/// to a firmware `cgroup_disable=memory` is wanted (the later one wins).
pub fn cmdline_ensure(old: &str, params: &[String]) -> String {
    let mut tokens: Vec<&str> = old.split_whitespace().collect();
    for p in params {
        if !tokens.contains(&p.as_str()) {
            tokens.push(p);
        }
    }
    let mut line = tokens.join(" ");
    line.push('\n');
    line
}

/// Whether a `config.txt` line opens a conditional section, and which (`[pi5]` → `pi5`).
fn section_of(line: &str) -> Option<&str> {
    let t = line.trim();
    t.strip_prefix('[')?.strip_suffix(']')
}

/// `config.txt`: sets `key=value` in `[section]`. Every existing `key=` under that section is
/// rewritten in place; when there is none, the setting is appended (after a `[section]` line
/// unless the file already ends in that section). Lines before any section count as `[all]`.
pub fn config_txt_set(old: &str, section: &str, key: &str, value: &str) -> String {
    let wanted = format!("{key}={value}");
    let mut current = "all".to_string();
    let mut found = false;
    let mut out: Vec<String> = Vec::new();
    for line in old.lines() {
        if let Some(s) = section_of(line) {
            current = s.to_string();
        } else if current == section {
            let t = line.trim_start();
            if t.split_once('=').is_some_and(|(k, _)| k.trim() == key) {
                found = true;
                out.push(wanted.clone());
                continue;
            }
        }
        out.push(line.to_string());
    }
    if !found {
        if current != section {
            out.push(format!("[{section}]"));
        }
        out.push(wanted);
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// One `/etc/fstab` line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FstabEntry {
    /// `LABEL=…`, `UUID=…`, a device.
    pub spec: String,
    /// Mount point.
    pub file: String,
    /// File-system type.
    pub vfstype: String,
    /// Options.
    pub options: String,
    /// dump field.
    pub freq: u32,
    /// fsck order.
    pub passno: u32,
}

impl FstabEntry {
    /// The line as written.
    pub fn line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            self.spec, self.file, self.vfstype, self.options, self.freq, self.passno
        )
    }
}

/// Fields of an fstab line, or None for comments and blank lines.
fn fstab_fields(line: &str) -> Option<Vec<&str>> {
    let t = line.trim();
    (!t.is_empty() && !t.starts_with('#')).then(|| t.split_whitespace().collect())
}

/// `/etc/fstab`: makes `entry` the line for its mount point (replacing one with the same
/// mount point, else appending); other lines untouched.
pub fn fstab_ensure(old: &str, entry: &FstabEntry) -> String {
    let mut found = false;
    let mut out: Vec<String> = Vec::new();
    for line in old.lines() {
        if fstab_fields(line).is_some_and(|f| f.get(1) == Some(&entry.file.as_str())) {
            if !found {
                out.push(entry.line());
                found = true;
            }
            continue;
        }
        out.push(line.to_string());
    }
    if !found {
        out.push(entry.line());
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// `/etc/fstab`: drops every swap line; other lines untouched.
pub fn fstab_remove_swap(old: &str) -> String {
    let mut text: String = old
        .lines()
        .filter(|l| fstab_fields(l).is_none_or(|f| f.get(2) != Some(&"swap")))
        .collect::<Vec<_>>()
        .join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    text
}

/// `/etc/hosts`: makes `127.0.1.1` name `hostname` (Debian's convention). The rule lives in
/// the firstboot crate, which applies it again when a fleet image picks its node.
pub use piimg_firstboot::etc_hosts::set_hostname as hosts_set_hostname;

/// `/etc/hosts` with `name` mapped to `address` on a line of its own: any other line's mapping
/// of `name` is dropped from that line (a line left with only its address goes), so the name
/// resolves to this address alone. Idempotent; every other line kept as it is.
pub fn hosts_ensure(old: &str, address: &str, name: &str) -> String {
    let wanted = format!("{address}\t{name}");
    let mut out: Vec<String> = Vec::new();
    for line in old.lines() {
        let (body, comment) = match line.find('#') {
            Some(i) => (&line[..i], &line[i..]),
            None => (line, ""),
        };
        let mut fields = body.split_whitespace();
        let Some(addr) = fields.next() else {
            out.push(line.to_string());
            continue;
        };
        let names: Vec<&str> = fields.collect();
        if !names.contains(&name) {
            out.push(line.to_string());
            continue;
        }
        let kept: Vec<&str> = names.into_iter().filter(|n| *n != name).collect();
        if !kept.is_empty() {
            let mut l = format!("{addr}\t{}", kept.join(" "));
            if !comment.is_empty() {
                l = format!("{l} {comment}");
            }
            out.push(l);
        }
    }
    out.push(wanted);
    let mut text = out.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOKWORM: &str = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n";
    const TRIXIE: &str = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait resize ds=nocloud;i=abc\n";

    fn cg() -> Vec<String> {
        vec!["cgroup_memory=1".into(), "cgroup_enable=memory".into()]
    }

    #[test]
    fn cmdline_appends_keeps_order_and_is_idempotent() {
        for base in [BOOKWORM, TRIXIE] {
            let once = cmdline_ensure(base, &cg());
            assert_eq!(once.lines().count(), 1);
            assert!(once.starts_with(base.trim_end()), "order kept: {once}");
            assert!(once
                .trim_end()
                .ends_with("cgroup_memory=1 cgroup_enable=memory"));
            assert_eq!(cmdline_ensure(&once, &cg()), once);
        }
        assert!(cmdline_ensure(TRIXIE, &cg()).contains(" resize ds=nocloud;i=abc "));
    }

    #[test]
    fn cmdline_never_duplicates_and_joins_broken_lines() {
        let broken = "console=tty1 cgroup_memory=1\nroot=LABEL=writable\n";
        let out = cmdline_ensure(broken, &cg());
        assert_eq!(
            out,
            "console=tty1 cgroup_memory=1 root=LABEL=writable cgroup_enable=memory\n"
        );
    }

    #[test]
    fn config_txt_sets_in_section_and_is_idempotent() {
        let base = "# comment\ndtparam=audio=on\n[cm4]\notg_mode=1\n[all]\narm_64bit=1\n";
        let once = config_txt_set(base, "pi5", "kernel", "kernel8.img");
        assert!(once.starts_with(base), "existing lines kept: {once}");
        assert!(once.ends_with("[pi5]\nkernel=kernel8.img\n"), "{once}");
        assert_eq!(config_txt_set(&once, "pi5", "kernel", "kernel8.img"), once);
        let changed = config_txt_set(&once, "pi5", "kernel", "kernel_2712.img");
        assert_eq!(changed.matches("kernel=").count(), 1);
        // a second key lands in the same trailing section
        let two = config_txt_set(&once, "pi5", "usb_max_current_enable", "1");
        assert_eq!(two.matches("[pi5]").count(), 1, "{two}");
    }

    #[test]
    fn config_txt_rewrites_existing_key_in_place() {
        let base = "[pi5]\nkernel=kernel_2712.img\n[all]\nfoo=1\n";
        let out = config_txt_set(base, "pi5", "kernel", "kernel8.img");
        assert_eq!(out, "[pi5]\nkernel=kernel8.img\n[all]\nfoo=1\n");
    }

    fn ssd() -> FstabEntry {
        FstabEntry {
            spec: "LABEL=piimg-01234567".into(),
            file: "/mnt/storage".into(),
            vfstype: "ext4".into(),
            options: "defaults,nofail".into(),
            freq: 0,
            passno: 2,
        }
    }

    #[test]
    fn fstab_ensure_keeps_lines_and_is_idempotent() {
        let base = "proc            /proc           proc    defaults          0       0\nPARTUUID=4e639091-01  /boot/firmware  vfat    defaults          0       2\n";
        let once = fstab_ensure(base, &ssd());
        assert!(once.starts_with(base));
        assert_eq!(fstab_ensure(&once, &ssd()), once);
        let mut other = ssd();
        other.options = "defaults".into();
        assert_eq!(
            fstab_ensure(&once, &other).matches("/mnt/storage").count(),
            1
        );
    }

    #[test]
    fn fstab_remove_swap_only_swap() {
        let base = "LABEL=cloudimg-rootfs / ext4 discard,errors=remount-ro 0 1\n/swap.img none swap sw 0 0\n# swap comment\n";
        let out = fstab_remove_swap(base);
        assert_eq!(
            out,
            "LABEL=cloudimg-rootfs / ext4 discard,errors=remount-ro 0 1\n# swap comment\n"
        );
        assert_eq!(fstab_remove_swap(&out), out);
    }

    #[test]
    fn hosts_maps_a_name_once_and_keeps_the_rest() {
        let deb = "127.0.0.1\tlocalhost\n127.0.1.1\tworker-2\n10.0.0.9 cp.lab cp # old\n";
        let out = hosts_ensure(deb, "192.168.1.10", "cp.lab");
        assert_eq!(
            out,
            "127.0.0.1\tlocalhost\n127.0.1.1\tworker-2\n10.0.0.9\tcp # old\n192.168.1.10\tcp.lab\n"
        );
        assert_eq!(hosts_ensure(&out, "192.168.1.10", "cp.lab"), out);
        assert_eq!(
            hosts_ensure("10.0.0.9 cp.lab\n", "192.168.1.10", "cp.lab"),
            "192.168.1.10\tcp.lab\n"
        );
    }

    #[test]
    fn hosts_replaces_or_appends() {
        let deb =
            "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost\n\n127.0.1.1\traspberrypi\n";
        let out = hosts_set_hostname(deb, "worker-2");
        assert_eq!(
            out,
            "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost\n\n127.0.1.1\tworker-2\n"
        );
        assert_eq!(hosts_set_hostname(&out, "worker-2"), out);
        let ubuntu = "127.0.0.1 localhost\n";
        assert!(hosts_set_hostname(ubuntu, "cp").ends_with("127.0.1.1\tcp\n"));
    }
}
