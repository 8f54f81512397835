//! The non-blocking listener of the loop, UNIX or TCP, and the type of its
//! connections.

use std::io;
use std::os::fd::AsRawFd;

use ispyd_std::socket::SocketPathGuard;
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

/// An accepted connection: `ispyd-std`'s one stream type, with mio's
/// non-blocking sockets.
pub(crate) type Stream = ispyd_std::stream::Stream<UnixStream, TcpStream>;
