//! A mio program of its own, with ispyd inside its loop: a TCP echo
//! service on a loopback port, and the ispyd shell on the configuration's
//! `listen`, both served by this program's one `mio::Poll` on its main
//! thread. ispyd starts no thread of its own unless a plugin call needs a
//! worker.
//!
//! ```text
//! cargo run -p ispyd-mio --example host-loop -- adapter-std/examples/demo.ini
//! ```
//!
//! It prints the echo port and ispyd's address, then runs until SIGINT or
//! SIGTERM (taken through a self-pipe registered on the same loop).

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;

use ispyd_mio::{Builder, Server, TokenRange};
use mio::net::{TcpListener, TcpStream, UnixStream};
use mio::{Events, Interest, Poll, Token};

/// The echo service's tokens; ispyd gets everything from `ISPYD_TOKENS`.
const ECHO_LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const FIRST_ECHO_CLIENT: usize = 16;
const ISPYD_TOKENS: TokenRange = TokenRange {
    start: 1 << 20,
    len: 1 << 20,
};

/// The write end of the signal pipe; an atomic load is async-signal-safe.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_: libc::c_int) {
    // SAFETY: write(2) is async-signal-safe; the descriptor is set before
    // the handler is installed and never closed.
    unsafe {
        libc::write(SIGNAL_PIPE.load(Ordering::Relaxed), b"s".as_ptr().cast(), 1);
    }
}

/// A non-blocking socket pair whose write end SIGINT and SIGTERM write to.
fn signal_pipe() -> io::Result<UnixStream> {
    let (read, write) = std::os::unix::net::UnixStream::pair()?;
    read.set_nonblocking(true)?;
    write.set_nonblocking(true)?;
    // Kept open for ever: the handler may write to it at any time.
    SIGNAL_PIPE.store(OwnedFd::from(write).into_raw_fd(), Ordering::Relaxed);
    // SAFETY: the handler only makes an async-signal-safe write.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    Ok(UnixStream::from_std(read))
}

struct Echo {
    stream: TcpStream,
    pending: Vec<u8>,
}

fn main() {
    let Some(config) = std::env::args().nth(1) else {
        eprintln!("usage: host-loop CONFIG.ini");
        std::process::exit(2);
    };
    if let Err(err) = run(&config) {
        eprintln!("host-loop: {err}");
        std::process::exit(1);
    }
}

fn run(config: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut poll = Poll::new()?;
    let mut echo_listener = TcpListener::bind("127.0.0.1:0".parse()?)?;
    poll.registry()
        .register(&mut echo_listener, ECHO_LISTENER, Interest::READABLE)?;
    let mut signals = signal_pipe()?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)?;

    let setup = Builder::new().config_file(config).prepare()?;
    let mut ispyd = Server::new(setup, poll.registry(), ISPYD_TOKENS)?;
    println!(
        "host-loop: pid {}, echo service on {}, ispyd listening on {}",
        std::process::id(),
        echo_listener.local_addr()?,
        ispyd.address()
    );

    let mut clients: HashMap<Token, Echo> = HashMap::new();
    let mut next_client = FIRST_ECHO_CLIENT;
    let mut events = Events::with_capacity(256);
    loop {
        // The host's own timers would join ispyd's here; it has none.
        let timeout = ispyd
            .poll_timeout()
            .map(|at| at.saturating_duration_since(Instant::now()));
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) => return Err(err.into()),
        }
        let now = Instant::now();
        for event in &events {
            let token = event.token();
            if ispyd.owns(token) {
                ispyd.handle_event(event, now);
            } else if token == SIGNALS {
                println!("host-loop: signal, shutting down");
                ispyd.shutdown(now);
                return Ok(());
            } else if token == ECHO_LISTENER {
                accept_echo_clients(&poll, &echo_listener, &mut clients, &mut next_client)?;
            } else if let Some(client) = clients.get_mut(&token) {
                if !serve_echo(client) {
                    let mut gone = clients.remove(&token).expect("present");
                    poll.registry().deregister(&mut gone.stream)?;
                }
            }
        }
        ispyd.handle_timeout(now);
    }
}

fn accept_echo_clients(
    poll: &Poll,
    listener: &TcpListener,
    clients: &mut HashMap<Token, Echo>,
    next: &mut usize,
) -> io::Result<()> {
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let token = Token(*next);
                *next = FIRST_ECHO_CLIENT + (*next + 1 - FIRST_ECHO_CLIENT) % (1 << 19);
                poll.registry()
                    .register(&mut stream, token, Interest::READABLE)?;
                clients.insert(
                    token,
                    Echo {
                        stream,
                        pending: Vec::new(),
                    },
                );
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

/// Echoes what the client sent; false once it is gone.
fn serve_echo(client: &mut Echo) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match client.stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => client.pending.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::WouldBlock => break,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    while !client.pending.is_empty() {
        match client.stream.write(&client.pending) {
            Ok(n) => {
                client.pending.drain(..n);
            }
            // A client that does not read its echo loses it.
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                client.pending.clear();
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}
