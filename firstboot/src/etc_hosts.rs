//! `/etc/hosts`'s own-hostname line, one rule for both sides: the builder bakes it into a
//! node's image, and first boot rewrites it when a fleet image picks the board's node
//! (`piimg-firstboot identify`).

/// `/etc/hosts` with exactly one `127.0.1.1 <hostname>` line (Debian's convention for the
/// machine's own name): an existing 127.0.1.1 line is replaced in place, further ones dropped,
/// one appended if there was none. Every other line is kept as it is.
pub fn set_hostname(old: &str, hostname: &str) -> String {
    let wanted = format!("127.0.1.1\t{hostname}");
    let mut found = false;
    let mut out: Vec<String> = Vec::new();
    for line in old.lines() {
        if line.split_whitespace().next() == Some("127.0.1.1") {
            if !found {
                out.push(wanted.clone());
                found = true;
            }
            continue;
        }
        out.push(line.to_string());
    }
    if !found {
        out.push(wanted);
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::set_hostname;

    #[test]
    fn replaces_the_line_in_place_and_drops_repeats() {
        let old =
            "127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n::1\tip6-localhost\n127.0.1.1 other\n";
        assert_eq!(
            set_hostname(old, "worker-1"),
            "127.0.0.1\tlocalhost\n127.0.1.1\tworker-1\n::1\tip6-localhost\n"
        );
    }

    #[test]
    fn appends_when_missing_and_is_idempotent() {
        let once = set_hostname("127.0.0.1 localhost", "w");
        assert_eq!(once, "127.0.0.1 localhost\n127.0.1.1\tw\n");
        assert_eq!(set_hostname(&once, "w"), once);
    }
}
