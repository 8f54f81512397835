//! One type for the two kinds of connection, and the one way ispyd writes
//! to a socket.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use ispyd_core::{Address, Peer};
use rustix::io::Errno;
use rustix::net::SendFlags;

/// Writes `buf` to the socket `fd` with `MSG_NOSIGNAL`, retrying on EINTR: a client that hangs up must not kill the
/// host with SIGPIPE when the host has not ignored that signal (a C or
/// embedded program; std's `UnixStream` writes with plain `write(2)`).
pub fn send_no_signal(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        match rustix::net::send(fd, buf, SendFlags::NOSIGNAL) {
            Err(Errno::INTR) => {}
            sent => return sent.map_err(io::Error::from),
        }
    }
}

/// A connection, UNIX or TCP: what the listener accepts, what the `ispy`
/// client connects, and (with mio's socket types) what the mio engine
/// serves. Every write goes through [`send_no_signal`].
#[derive(Debug)]
pub enum Stream<U = UnixStream, T = TcpStream> {
    /// A UNIX-domain socket.
    Unix(U),
    /// A TCP socket.
    Tcp(T),
}

/// How often a UNIX connect is tried again while the listener's backlog is
/// full.
const BACKLOG_RETRY: Duration = Duration::from_millis(10);

impl Stream {
    /// Connects to `address`, giving up after `timeout`: a TCP connect that
    /// gets no answer, or a UNIX listener whose backlog stays full (a
    /// blocking UNIX connect would wait for it for ever).
    pub fn connect(address: &Address, timeout: Duration) -> io::Result<Stream> {
        match address {
            Address::Unix(path) => connect_unix(Path::new(path), timeout).map(Stream::Unix),
            Address::Tcp(host, port) => {
                let mut last = None;
                for addr in (host.as_str(), *port).to_socket_addrs()? {
                    match TcpStream::connect_timeout(&addr, timeout) {
                        Ok(stream) => return Ok(Stream::Tcp(stream)),
                        Err(err) => last = Some(err),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "the host name has no address")
                }))
            }
        }
    }

    /// Half-closes: the peer reads end of input, and can still answer.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    /// Another handle on the same connection.
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }

    /// Shuts down reading, writing or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.shutdown(how),
            Stream::Tcp(s) => s.shutdown(how),
        }
    }

    /// Sets (or with `None` clears) the timeout of blocking reads.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(timeout),
            Stream::Tcp(s) => s.set_read_timeout(timeout),
        }
    }

    /// Sets (or with `None` clears) the timeout of blocking writes.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(timeout),
            Stream::Tcp(s) => s.set_write_timeout(timeout),
        }
    }
}

impl<U: AsFd, T: AsFd> Stream<U, T> {
    /// Who is on the other end, for [`ispyd_core::admit`] and the audit
    /// trail: a UNIX peer's credentials (`SO_PEERCRED`) and `listening`,
    /// the address it connected to; over TCP the peer's address and, for a process on this machine
    /// (loopback), the owner of its socket. A peer on another machine has
    /// no uid here (its session gets [`ispyd_core::Host::for_remote_peers`]);
    /// a local one whose uid cannot be found has `Some(None)`, which
    /// `admit` refuses.
    pub fn peer(&self, listening: &Address) -> Peer {
        match self {
            Stream::Unix(s) => {
                let credentials = crate::peer::peer_credentials(s).ok();
                Peer {
                    uid: Some(credentials.map(|c| c.uid)),
                    pid: credentials.and_then(|c| u32::try_from(c.pid).ok().filter(|&p| p != 0)),
                    gid: credentials.map(|c| c.gid),
                    address: listening.to_string(),
                }
            }
            Stream::Tcp(s) => {
                let Ok((local, peer)) = tcp_addresses(s.as_fd()) else {
                    return Peer {
                        uid: Some(None),
                        address: "TCP peer of unknown address".to_owned(),
                        ..Peer::default()
                    };
                };
                let uid = crate::peer::is_loopback(peer)
                    .then(|| crate::peer::tcp_peer_uid(local, peer).ok().flatten());
                Peer {
                    uid,
                    pid: None,
                    gid: None,
                    address: peer.to_string(),
                }
            }
        }
    }

    /// Shuts both directions down, so that the peer reads end of input even
    /// while another handle on the socket is open. Errors are ignored: the
    /// connection is being dropped.
    pub fn close(&self) {
        let _ = rustix::net::shutdown(self.as_fd(), rustix::net::Shutdown::Both);
    }
}

/// Our and the peer's addresses of the TCP socket `fd`. (Through a
/// duplicate in a std `TcpStream`: the mio engine's socket type is not one.)
fn tcp_addresses(fd: BorrowedFd<'_>) -> io::Result<(std::net::SocketAddr, std::net::SocketAddr)> {
    let socket = TcpStream::from(fd.try_clone_to_owned()?);
    Ok((socket.local_addr()?, socket.peer_addr()?))
}

impl<U: AsFd, T: AsFd> AsFd for Stream<U, T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }
}

impl<U: Read, T: Read> Read for Stream<U, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl<U: AsFd, T: AsFd> Write for Stream<U, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        send_no_signal(self.as_fd(), buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(feature = "mio")]
impl<U: mio::event::Source, T: mio::event::Source> mio::event::Source for Stream<U, T> {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.register(registry, token, interests),
            Stream::Tcp(s) => s.register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.reregister(registry, token, interests),
            Stream::Tcp(s) => s.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.deregister(registry),
            Stream::Tcp(s) => s.deregister(registry),
        }
    }
}

/// True for the error a read or write with a timeout gives when the time is
/// up.
pub fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A UNIX connect that cannot hang: non-blocking, tried again while the
/// backlog is full (`EAGAIN`), until `timeout`.
fn connect_unix(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let give_up = Instant::now() + timeout;
    loop {
        match crate::socket::connect_nonblocking(path) {
            Ok(fd) => {
                let stream = UnixStream::from(fd);
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(Errno::AGAIN) if Instant::now() < give_up => thread::sleep(BACKLOG_RETRY),
            Err(Errno::AGAIN) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the server's listen backlog stayed full",
                ));
            }
            Err(err) => return Err(err.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn unix_connect_to_a_full_backlog_times_out_instead_of_hanging() {
        let dir = std::env::temp_dir().join(format!("ispyd-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("full.sock");
        let _ = std::fs::remove_file(&path);
        let _listener = UnixListener::bind(&path).unwrap(); // never accepts
        let address = Address::Unix(path.display().to_string());
        let short = Duration::from_millis(50);
        let mut held = Vec::new();
        let err = loop {
            match Stream::connect(&address, short) {
                Ok(stream) => held.push(stream),
                Err(err) => break err,
            }
            assert!(held.len() < 100_000, "the backlog never filled");
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(matches!(
            crate::socket::probe(&path),
            crate::socket::Probe::Live
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
