//! `/etc/fstab` entries as inspect reports them.

use serde::Serialize;

/// One mount line of fstab, fields as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FstabEntry {
    /// What is mounted: `PARTUUID=…`, `LABEL=…`, a path.
    pub spec: String,
    /// Where (`/`, `/boot/firmware`, `none` for swap).
    pub file: String,
    /// Filesystem type (`ext4`, `vfat`, `swap`).
    pub vfstype: String,
    /// Mount options, comma-separated.
    pub options: String,
    /// dump frequency.
    pub freq: String,
    /// fsck pass number.
    pub passno: String,
}

/// Parses fstab; comments, blank and malformed lines are skipped (inspect reports, it does not judge).
pub fn parse(text: &str) -> Vec<FstabEntry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 3 {
                return None;
            }
            let at = |i: usize, default: &str| f.get(i).copied().unwrap_or(default).to_string();
            Some(FstabEntry {
                spec: f[0].to_string(),
                file: f[1].to_string(),
                vfstype: f[2].to_string(),
                options: at(3, "defaults"),
                freq: at(4, "0"),
                passno: at(5, "0"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_raspios_fstab() {
        let text = "proc            /proc           proc    defaults          0       0\n\
                    PARTUUID=4e639091-01  /boot/firmware  vfat    defaults          0       2\n\
                    # a comment\n\n\
                    PARTUUID=4e639091-02  /               ext4    defaults,noatime  0       1\n";
        let entries = parse(text);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2].spec, "PARTUUID=4e639091-02");
        assert_eq!(entries[2].options, "defaults,noatime");
        assert_eq!(entries[1].passno, "2");
    }

    #[test]
    fn fills_missing_optional_fields() {
        let entries = parse("/swap.img none swap\n");
        assert_eq!(entries[0].options, "defaults");
        assert_eq!(entries[0].freq, "0");
    }
}
