//! Who is on the other end of a UNIX socket connection.
//!
//! The socket file's 0600 mode already keeps other users out, but a mode is a
//! property of one path at one moment; the kernel's record of the connecting
//! process is what an adapter checks before it lets a session start. The
//! rule (design, "Security model"): only the same effective uid, or root.

use std::io;
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
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
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
        assert_eq!(creds.gid, unsafe { libc::getegid() });
        assert_eq!(peer_credentials(&b).unwrap(), creds);
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
