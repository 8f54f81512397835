//! Whether a socket file has a live listener, found out without blocking.

use super::*;

/// What connecting to an existing socket file revealed.
#[derive(Debug)]
pub enum Probe {
    /// Someone accepted the connection or has a full backlog.
    Live,
    /// Refused: the file outlived its listener.
    Stale,
    /// The file vanished.
    Gone,
    /// Could not tell (e.g. no permission to connect).
    Unknown(io::Error),
}

/// Connects to `path` without blocking, to tell whether a live process
/// listens there. The binder uses it before replacing a socket file, the
/// `ispy` client to list servers.
///
/// `UnixStream::connect` would block while a live but busy listener's
/// backlog is full, hanging start-up; a non-blocking connect answers at once.
/// The listener sees one connection that closes at once.
pub fn probe(path: &Path) -> Probe {
    let (addr, addr_len) = match sockaddr_un(path) {
        Ok(addr) => addr,
        Err(err) => return Probe::Unknown(err),
    };
    // SAFETY: plain socket creation; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Probe::Unknown(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if let Err(err) = set_nonblocking_cloexec(&fd) {
        return Probe::Unknown(err);
    }
    // SAFETY: `addr` is a valid sockaddr_un and `addr_len` its used length.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&raw const addr).cast::<libc::sockaddr>(),
            addr_len,
        )
    };
    if rc == 0 {
        return Probe::Live;
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINPROGRESS | libc::EAGAIN) => Probe::Live,
        Some(libc::ECONNREFUSED) => Probe::Stale,
        Some(libc::ENOENT) => Probe::Gone,
        _ => Probe::Unknown(err),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) const SOCK_CLOEXEC: libc::c_int = libc::SOCK_CLOEXEC;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) const SOCK_CLOEXEC: libc::c_int = 0;

pub(super) fn set_nonblocking_cloexec(fd: &OwnedFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
        // Redundant where SOCK_CLOEXEC exists; closes the gap elsewhere.
        if libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

pub(crate) fn sockaddr_un(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain integers and arrays; all-zero is valid.
    let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path does not fit in a UNIX socket address",
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = libc::c_char::from_ne_bytes([src]);
    }
    let len = mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}
