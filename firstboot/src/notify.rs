//! `sd_notify` status lines, so `systemctl status piimg-firstboot` says which step is running.
//! The protocol is one datagram to `$NOTIFY_SOCKET`; writing it here avoids a dependency.

use std::os::unix::net::UnixDatagram;

/// Sends `STATUS=<text>` if systemd is listening; silently does nothing otherwise.
pub fn status(text: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let msg = format!("STATUS={text}");
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|addr| sock.send_to_addr(msg.as_bytes(), &addr))
    } else {
        sock.send_to(msg.as_bytes(), &path)
    };
    if let Err(e) = sent {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}
