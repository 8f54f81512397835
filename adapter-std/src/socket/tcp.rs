//! Listening on TCP, loopback only unless remote access is allowed.

use super::*;

/// Listens on TCP `host:port`; loopback only unless `allow_remote`.
///
/// The configuration already rejects non-loopback hosts without
/// `allow_remote`; this checks again on the resolved addresses, because a
/// name like `localhost` can be made to resolve anywhere. Every resolved
/// address must be loopback, not just the first that binds. `host` is a
/// name or IP address (IPv6 with or without brackets); port 0 picks a free
/// port.
pub fn bind_tcp(host: &str, port: u16, allow_remote: bool) -> Result<TcpListener, BindError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let listen = if bare.contains(':') {
        format!("[{bare}]:{port}")
    } else {
        format!("{bare}:{port}")
    };
    let resolving = || format!("resolving {listen}");
    let addrs: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(io_error(resolving))?
        .collect();
    if addrs.is_empty() {
        return Err(BindError::Io {
            what: resolving(),
            source: io::Error::new(io::ErrorKind::NotFound, "the name has no addresses"),
        });
    }
    if !allow_remote {
        if let Some(&addr) = addrs.iter().find(|addr| !is_loopback_ip(addr.ip())) {
            return Err(BindError::Remote { listen, addr });
        }
    }
    let mut last_error = None;
    for addr in &addrs {
        match TcpListener::bind(addr) {
            Ok(listener) => return Ok(listener),
            Err(err) => last_error = Some((addr, err)),
        }
    }
    let (addr, source) = last_error.expect("addrs is not empty");
    Err(BindError::Io {
        what: format!("listening on {listen} ({addr})"),
        source,
    })
}
