//! Whether a socket file has a live listener, found out without blocking.

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

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
    match connect_nonblocking(path) {
        Ok(_) => Probe::Live,
        Err(err) if err == Errno::INPROGRESS || err == Errno::AGAIN => Probe::Live,
        Err(err) if err == Errno::CONNREFUSED => Probe::Stale,
        Err(err) if err == Errno::NOENT => Probe::Gone,
        Err(err) => Probe::Unknown(err.into()),
    }
}

/// A non-blocking, close-on-exec UNIX stream socket connecting to `path`:
/// connected, or the error of the attempt (`EAGAIN` while the backlog is
/// full, `EINPROGRESS` where the kernel connects later).
pub(crate) fn connect_nonblocking(path: &Path) -> Result<OwnedFd, Errno> {
    let addr = SocketAddrUnix::new(path)?;
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    rustix::net::connect(&fd, &addr)?;
    Ok(fd)
}
