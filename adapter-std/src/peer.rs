//! Who is on the other end of a connection: a UNIX socket's peer
//! credentials, or the owner of the local end of a loopback TCP connection.
//!
//! The socket file's 0600 mode already keeps other users out, but a mode is a
//! property of one path at one moment; the kernel's record of the connecting
//! process is what an adapter checks before it lets a session start. The
//! rule (design, "Security model"): only the same effective uid, or root.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;

/// The process that connected, as the kernel recorded it at `connect(2)`.
///
/// These are the credentials the peer had when it connected (or created the
/// socket pair), not when it sends: a later `setuid` in the peer does not
/// change them, which is what an access check wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    /// Process id of the peer (in our pid namespace; 0 if it is in a
    /// namespace we cannot see).
    pub pid: i32,
    /// Effective user id of the peer.
    pub uid: u32,
    /// Effective group id of the peer.
    pub gid: u32,
}

impl PeerCredentials {
    /// Whether this peer may use the shell of a process running as `own_euid`.
    ///
    /// The rule is the core's [`ispyd_core::may_inspect`], the one every
    /// adapter applies through [`ispyd_core::admit`].
    #[must_use]
    pub fn is_allowed_for(&self, own_euid: u32) -> bool {
        ispyd_core::may_inspect(self.uid, own_euid)
    }
}

/// Reads the credentials of the process on the other end of `stream`.
///
/// Call it once per accepted connection, before the first byte reaches the
/// core. An error means "unknown peer": treat it as a refusal.
///
/// Uses `SO_PEERCRED`, so it is available on Linux and Android; elsewhere it
/// returns an [`io::ErrorKind::Unsupported`] error, so a port fails closed
/// rather than open.
pub fn peer_credentials(stream: &impl AsFd) -> io::Result<PeerCredentials> {
    imp::peer_credentials(stream.as_fd())
}

/// The effective uid of this process, the identity a peer must match.
///
/// Effective rather than real: a setuid program's shell exposes the
/// privileges of the effective user, so that is who may use it.
#[must_use]
pub fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The uid of the process at the other end of the TCP connection whose
/// own ends are `local` (ours) and `peer`, when `peer` is on this machine.
///
/// Linux keeps no credentials on a TCP socket, so this does what identd
/// does: it finds the socket whose local address is our peer's and whose
/// remote address is ours in `/proc/net/tcp` and `/proc/net/tcp6`, and reads
/// its owner's uid. `Ok(None)`: no such socket (the peer is gone already, or
/// lives in another network namespace); treat it as a refusal.
pub fn tcp_peer_uid(local: SocketAddr, peer: SocketAddr) -> io::Result<Option<u32>> {
    let (local, peer) = (unmapped(local), unmapped(peer));
    let mut last_error = None;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match std::fs::read_to_string(table) {
            Ok(text) => {
                if let Some(uid) = find_socket_owner(&text, peer, local) {
                    return Ok(Some(uid));
                }
            }
            Err(err) => last_error = Some(err),
        }
    }
    match last_error {
        Some(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(None),
    }
}

/// True when `address` belongs to this machine's loopback (IPv4, IPv6, or
/// IPv4 mapped into IPv6).
#[must_use]
pub fn is_loopback(address: SocketAddr) -> bool {
    unmapped(address).ip().is_loopback()
}

fn unmapped(address: SocketAddr) -> SocketAddr {
    match address {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => address,
        },
        SocketAddr::V4(_) => address,
    }
}

/// The uid column of the row of a `/proc/net/tcp{,6}` table whose local
/// and remote addresses are `local` and `remote`.
///
/// Only a socket a process still holds counts (one that has only shut its
/// sending side, as `socat` does at the end of its input, still does): a
/// socket its process has closed (`TIME_WAIT`, an orphaned `FIN_WAIT2`) is
/// listed with inode 0 and often uid 0, and must not pass for root.
fn find_socket_owner(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<u32> {
    table.lines().skip(1).find_map(|row| {
        let fields: Vec<&str> = row.split_whitespace().collect();
        let (row_local, row_remote) = (fields.get(1)?, fields.get(2)?);
        let (uid, inode) = (fields.get(7)?, fields.get(9)?);
        (*inode != "0" && proc_address(row_local)? == local && proc_address(row_remote)? == remote)
            .then(|| uid.parse().ok())
            .flatten()
    })
}

/// Reads `HEX:PORT` as the kernel prints it: the address as the 32-bit
/// words of its network-order bytes, each in this machine's byte order.
fn proc_address(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for word in address.as_bytes().chunks(8) {
        let word = u32::from_str_radix(std::str::from_utf8(word).ok()?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some(unmapped(SocketAddr::new(ip, port)))
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use super::PeerCredentials;
    use std::io;
    use std::mem;
    use std::os::fd::{AsRawFd, BorrowedFd};

    pub(super) fn peer_credentials(stream: BorrowedFd<'_>) -> io::Result<PeerCredentials> {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: the fd is a live socket borrowed from `stream`; `cred` and
        // `len` are valid for writes and `len` holds the size of `cred`.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&raw mut cred).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        if len as usize != mem::size_of::<libc::ucred>() {
            // A short answer would leave uid 0 (root) in the zeroed struct;
            // never let that pass as a real credential.
            return Err(io::Error::other(
                "SO_PEERCRED returned a truncated credential record",
            ));
        }
        Ok(PeerCredentials {
            pid: cred.pid,
            uid: cred.uid,
            gid: cred.gid,
        })
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use super::PeerCredentials;
    use std::io;
    use std::os::fd::BorrowedFd;

    pub(super) fn peer_credentials(_stream: BorrowedFd<'_>) -> io::Result<PeerCredentials> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "peer credentials (SO_PEERCRED) are not implemented on this platform",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socketpair_peer_is_this_process() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let creds = peer_credentials(&a).unwrap();
        assert_eq!(creds.pid, std::process::id() as i32);
        assert_eq!(creds.uid, effective_uid());
        // SAFETY: getegid has no preconditions and cannot fail.
        assert_eq!(creds.gid, rustix::process::getegid().as_raw());
        assert_eq!(peer_credentials(&b).unwrap(), creds);
    }

    #[test]
    fn loopback_tcp_peer_is_found_with_its_owner() {
        for listen in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(listener) = std::net::TcpListener::bind(listen) else {
                continue; // no IPv6 on this machine
            };
            let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().unwrap();
            let uid = tcp_peer_uid(server.local_addr().unwrap(), server.peer_addr().unwrap());
            assert_eq!(uid.unwrap(), Some(effective_uid()), "{listen}");
            // A peer that has closed its end is no longer anyone's.
            drop(client);
            let gone = tcp_peer_uid(server.local_addr().unwrap(), server.peer_addr().unwrap());
            assert_eq!(gone.unwrap(), None, "{listen}");
        }
    }

    #[test]
    fn proc_net_rows_are_read_in_the_kernels_byte_order() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   \
                     uid  timeout inode\n   \
                     0: 0100007F:1F90 0100007F:A2B4 01 00000000:00000000 00:00000000 00000000  \
                     1000        0 4242 1 0000000000000000 20 4 30 10 -1\n";
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let remote: SocketAddr = "127.0.0.1:41652".parse().unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(find_socket_owner(table, local, remote), Some(1000));
            assert_eq!(find_socket_owner(table, remote, local), None);
            let closed = table.replace(" 01 ", " 06 ").replace(" 4242 ", " 0 ");
            let half_closed = table.replace(" 01 ", " 05 ");
            assert_eq!(find_socket_owner(&half_closed, local, remote), Some(1000));
            assert_eq!(find_socket_owner(&closed, local, remote), None);
        }
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:8080".parse().unwrap();
        assert!(is_loopback(mapped));
        assert!(!is_loopback("10.0.0.1:1".parse().unwrap()));
    }

    #[test]
    fn credentials_check_uses_the_peer_uid() {
        let creds = PeerCredentials {
            pid: 1,
            uid: 1000,
            gid: 1000,
        };
        assert!(creds.is_allowed_for(1000));
        assert!(!creds.is_allowed_for(1001));
    }
}
