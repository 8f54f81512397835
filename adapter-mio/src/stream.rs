//! The non-blocking listener and connections of the loop, UNIX or TCP.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use ispyd_std::socket::SocketPathGuard;
use ispyd_std::stream::send_no_signal;
use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

/// A listening socket registered with the loop.
#[derive(Debug)]
pub(crate) enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    /// Takes a bound std listener into the loop (made non-blocking here),
    /// with the guard that removes its socket file.
    pub(crate) fn from_std(
        listener: ispyd_std::Listener,
    ) -> io::Result<(Listener, Option<SocketPathGuard>)> {
        Ok(match listener {
            ispyd_std::Listener::Unix(l, guard) => {
                l.set_nonblocking(true)?;
                (Listener::Unix(UnixListener::from_std(l)), Some(guard))
            }
            ispyd_std::Listener::Tcp(l) => {
                l.set_nonblocking(true)?;
                (Listener::Tcp(TcpListener::from_std(l)), None)
            }
        })
    }

    pub(crate) fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
            Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            Listener::Unix(l) => l.as_raw_fd(),
            Listener::Tcp(l) => l.as_raw_fd(),
        }
    }
}

impl Source for Listener {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Listener::Unix(l) => l.register(r, t, i),
            Listener::Tcp(l) => l.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Listener::Unix(l) => l.reregister(r, t, i),
            Listener::Tcp(l) => l.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Listener::Unix(l) => l.deregister(r),
            Listener::Tcp(l) => l.deregister(r),
        }
    }
}

/// An accepted connection.
#[derive(Debug)]
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    pub(crate) fn shutdown(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
        };
    }

    /// The peer's uid as the admission rule wants it: `Some(None)` when a
    /// UNIX peer's credentials cannot be read, `None` for TCP.
    pub(crate) fn peer_uid(&self) -> Option<Option<u32>> {
        match self {
            Stream::Unix(s) => Some(
                ispyd_std::peer::peer_credentials(s)
                    .ok()
                    .map(|cred| cred.uid),
            ),
            Stream::Tcp(_) => None,
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // MSG_NOSIGNAL: a client that hung up must not kill the host.
        send_no_signal(self.as_fd().as_raw_fd(), buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Stream {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.register(r, t, i),
            Stream::Tcp(s) => s.register(r, t, i),
        }
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.reregister(r, t, i),
            Stream::Tcp(s) => s.reregister(r, t, i),
        }
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.deregister(r),
            Stream::Tcp(s) => s.deregister(r),
        }
    }
}
