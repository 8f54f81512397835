//! The loop's sockets: `ispyd-std`'s one stream type, with mio's
//! non-blocking sockets in it, for the listener and for its connections.

use std::io;

use ispyd_std::socket::SocketPathGuard;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// An accepted connection.
pub(crate) type Stream = ispyd_std::stream::Stream<UnixStream, TcpStream>;

/// A listening socket registered with the loop.
pub(crate) type Listener = ispyd_std::stream::Stream<UnixListener, TcpListener>;

/// Takes a bound std listener into the loop (made non-blocking here), with
/// the guard that removes its socket file.
pub(crate) fn listener_from_std(
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

/// Accepts one connection, if one waits.
pub(crate) fn accept(listener: &Listener) -> io::Result<Stream> {
    match listener {
        Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
        Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
    }
}
