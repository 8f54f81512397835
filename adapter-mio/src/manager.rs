//! [`ShellManager`]: ispyd on a loop thread of its own (`ispyd-loop`).

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use ispyd_core::{Address, Config, ConfigWarning, Registry};
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
    /// What it was started from, to start again in a forked child.
    config: Config,
    registry: Registry,
    warnings: Vec<ConfigWarning>,
    sessions: Arc<AtomicUsize>,
    stop: Waker,
    thread: Option<JoinHandle<()>>,
    /// The loop's epoll descriptor and the server's, for a forked child to
    /// close.
    poll_fd: RawFd,
    descriptors: Arc<Mutex<Vec<RawFd>>>,
    /// The process the loop runs in.
    pid: u32,
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
        let config = setup.config.clone();
        let registry = setup.registry.clone();
        let poll = Poll::new().map_err(Error::Thread)?;
        let poll_fd = poll.as_raw_fd();
        let stop = Waker::new(poll.registry(), STOP).map_err(Error::Thread)?;
        let tokens = TokenRange {
            start: 1,
            len: usize::MAX / 2,
        };
        let server = Server::new(setup, poll.registry(), tokens)?;
        let address = server.address().clone();
        let warnings = server.warnings().to_vec();
        let descriptors = server.descriptors();
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
            config,
            registry,
            warnings,
            sessions,
            stop,
            thread: Some(thread),
            poll_fd,
            descriptors,
            pid: std::process::id(),
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

    /// Call in the child right after `fork()`. The child has none of the
    /// parent's threads: this closes the descriptors it inherited from them
    /// and, when `listen` has `%(pid)s`, starts a loop of the child's own
    /// and returns `Ok(true)`. With a fixed address it returns `Ok(false)`:
    /// the parent keeps serving it alone.
    pub fn restart_after_fork(&mut self) -> Result<bool, Error> {
        self.forget_parents_loop();
        if !self.config.listen.is_per_process() {
            return Ok(false);
        }
        let setup = Setup {
            config: self.config.clone(),
            registry: self.registry.clone(),
            warnings: self.warnings.clone(),
        };
        *self = ShellManager::start(setup)?;
        Ok(true)
    }

    /// In a forked child: lets go of what the parent's loop owns, without
    /// touching the loop, which the child does not have.
    fn forget_parents_loop(&mut self) {
        // Once: the descriptors closed here may be reused afterwards.
        let Some(thread) = self.thread.take() else {
            return;
        };
        // A lock held at fork time by the parent's loop stays held forever
        // in the child: only try it.
        if let Ok(descriptors) = self.descriptors.try_lock() {
            for &fd in descriptors.iter() {
                // SAFETY: inherited copies that no thread of the child uses;
                // the server owning them lives on in the parent only, and
                // its memory here is never dropped (see below).
                unsafe {
                    libc::close(fd);
                }
            }
        }
        // SAFETY: as above; the Poll was moved into the parent's loop thread.
        unsafe {
            libc::close(self.poll_fd);
        }
        // The loop thread is gone: never join it. The server it owned stays
        // unfreed, so its socket guard never removes the parent's file and
        // the closed descriptors are never closed twice.
        std::mem::forget(thread);
    }

    fn stop(&mut self) {
        if self.pid != std::process::id() {
            // Forked by a caller that never called restart_after_fork
            // (uWSGI forks its workers from C, past Python's at-fork
            // hooks): there is no loop here, and the stop waker's eventfd
            // is the parent's own; ringing it would stop the parent's.
            self.forget_parents_loop();
            return;
        }
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
    const KIND: ispyd_core::EngineKind = ispyd_core::EngineKind::Mio;
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
