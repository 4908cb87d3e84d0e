//! Join tokens, parsed as `pkg/clientaccess/token.go` parseToken does.

/// The prefix of the full ("secure") form.
pub const PREFIX: &str = "K10";

/// A parsed token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Hex SHA-256 of the server's CA bundle; empty for the short form (CA not pinned).
    pub ca_hash: String,
    /// The user part (`server`, `node`; empty for the short form).
    pub username: String,
    /// The secret.
    pub password: String,
}

/// `kubeadm.NewBootstrapTokenString`: `[a-z0-9]{6}.[a-z0-9]{16}`.
fn is_bootstrap_token(t: &str) -> bool {
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    t.split_once('.')
        .is_some_and(|(id, secret)| ok(id, 6) && ok(secret, 16))
}

/// parseToken: a bare password becomes `K10:::password` (empty hash, empty user), then
/// `K10<hash>::<user>:<password>` is split; a hash must be 64 hex digits.
pub fn parse(token: &str) -> Result<Token, String> {
    if token.is_empty() {
        return Err("token must not be empty".into());
    }
    if is_bootstrap_token(token.rsplit("::").next().unwrap_or(token)) {
        return Err("kubeadm-style bootstrap tokens are not supported by the stand-in".into());
    }
    let full = if token.starts_with(PREFIX) {
        token.to_string()
    } else {
        format!("{PREFIX}:::{token}")
    };
    let rest = &full[PREFIX.len()..];
    let (hash, creds) = match rest.split_once("::") {
        Some((h, c)) => (h, c),
        None => ("", rest),
    };
    if !hash.is_empty() && hash.len() != 64 {
        return Err("invalid token CA hash length".into());
    }
    match creds.split_once(':') {
        Some((user, pass)) if !pass.is_empty() => Ok(Token {
            ca_hash: hash.to_string(),
            username: user.to_string(),
            password: pass.to_string(),
        }),
        _ => Err("invalid token format".into()),
    }
}

/// `FormatTokenBytes`: `K10<hash>::<user>:<password>`.
pub fn format(ca_hash: &str, user: &str, password: &str) -> String {
    format!("{PREFIX}{ca_hash}::{user}:{password}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_full_forms() {
        let short = parse("abc123").unwrap();
        assert_eq!(
            (
                short.ca_hash.as_str(),
                short.username.as_str(),
                short.password.as_str()
            ),
            ("", "", "abc123")
        );
        let h = "a".repeat(64);
        let full = parse(&format(&h, "server", "s3cret")).unwrap();
        assert_eq!(
            (full.ca_hash, full.username, full.password),
            (h, "server".into(), "s3cret".into())
        );
        assert_eq!(
            parse("K10abc::server:x").unwrap_err(),
            "invalid token CA hash length"
        );
        assert_eq!(parse("").unwrap_err(), "token must not be empty");
        assert_eq!(
            parse(&format!("K10{}::server:", "b".repeat(64))).unwrap_err(),
            "invalid token format"
        );
    }
}
