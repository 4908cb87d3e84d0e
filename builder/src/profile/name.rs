//! What a name in the profiles may be: node names, host names and folder names are DNS labels,
//! because they become host names, Kubernetes node names and file stems. Here, below `spec`, so
//! loading a profile by name and checking a spec use the one rule.

/// RFC 1123 label: 1-63 of `a-z0-9-`, not starting or ending with `-`.
pub fn is_rfc1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}
