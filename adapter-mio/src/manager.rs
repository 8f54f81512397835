//! [`ShellManager`]: ispyd on a loop thread of its own (`ispyd-loop`).

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use ispyd_core::{Address, ConfigWarning};
use ispyd_std::{Error, Setup};
use mio::{Events, Poll, Token, Waker};

use crate::server::{Server, TokenRange};
use crate::{Builder, Mio};

/// The token of the waker that stops the loop; the server takes the rest.
const STOP: Token = Token(0);

/// Events taken from the kernel per poll.
const EVENTS: usize = 1024;

/// An ispyd shell embedded in this process, served by one event-loop
/// thread (`ispyd-loop`) and, for calls that may wait, a small pool of
/// worker threads started on first use.
///
/// Dropping it (or [`ShellManager::shutdown`]) tells every client that
/// ispyd is shutting down, ends the sessions and removes the socket file.
/// Idle, it costs nothing: the loop sleeps in `epoll_wait` with no timer
/// unless a session has a deadline.
pub struct ShellManager {
    address: Address,
    warnings: Vec<ConfigWarning>,
    sessions: Arc<AtomicUsize>,
    stop: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for ShellManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShellManager")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl ShellManager {
    /// Starts ispyd as the 2012 original did: configuration from an ini file.
    pub fn from_config_file(path: impl AsRef<Path>) -> Result<ShellManager, Error> {
        ShellManager::builder().config_file(path).start()
    }

    /// Starts configuring a manager in code.
    pub fn builder() -> Builder {
        Builder::new()
    }

    pub(crate) fn start(setup: Setup) -> Result<ShellManager, Error> {
        let poll = Poll::new().map_err(Error::Thread)?;
        let stop = Arc::new(Waker::new(poll.registry(), STOP).map_err(Error::Thread)?);
        let tokens = TokenRange {
            start: 1,
            len: usize::MAX / 2,
        };
        let server = Server::new(setup, poll.registry(), tokens)?;
        let address = server.address().clone();
        let warnings = server.warnings().to_vec();
        let sessions = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&sessions);
        // Every ispyd thread descends from the loop and inherits its
        // signal mask: the host's signals go to the host's threads.
        let thread = ispyd_std::signals::with_signals_blocked(|| {
            thread::Builder::new()
                .name("ispyd-loop".to_owned())
                .spawn(move || run(poll, server, &count))
        })
        .map_err(Error::Thread)?;
        Ok(ShellManager {
            address,
            warnings,
            sessions,
            stop,
            thread: Some(thread),
        })
    }

    /// Where this process listens.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// What looked wrong in the configuration (unknown keys and sections).
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.warnings
    }

    /// How many sessions are connected now.
    pub fn session_count(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Ends every session, stops listening and removes the socket file.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        if self.stop.wake().is_ok() {
            let _ = thread.join();
        }
    }
}

impl Drop for ShellManager {
    fn drop(&mut self) {
        self.stop();
    }
}

impl ispyd_std::Engine for Mio {
    type Manager = ShellManager;

    fn start(setup: Setup) -> Result<ShellManager, Error> {
        ShellManager::start(setup)
    }
}

/// The loop: poll with the server's next deadline as the timeout, hand it
/// every event, fire its timers, until the stop waker rings.
fn run(mut poll: Poll, mut server: Server, sessions: &AtomicUsize) {
    let mut events = Events::with_capacity(EVENTS);
    loop {
        let timeout = server
            .poll_timeout()
            .map(|at| at.saturating_duration_since(Instant::now()));
        if let Err(err) = poll.poll(&mut events, timeout) {
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // The loop cannot go on; end the sessions cleanly.
            server.shutdown(Instant::now());
            return;
        }
        let now = Instant::now();
        for event in &events {
            if event.token() == STOP {
                server.shutdown(now);
                sessions.store(0, Ordering::Relaxed);
                return;
            }
            server.handle_event(event, now);
        }
        server.handle_timeout(now);
        sessions.store(server.session_count(), Ordering::Relaxed);
    }
}
