//! [`Server`]: every session of the process on one `mio::Poll`, built from
//! the core's verbs alone.
//!
//! Theory of operation, in the manner of rustls' `tlsserver-mio`: each
//! connection is a [`Session`] and a [`Dispatcher`] beside a non-blocking
//! socket. On every readiness event the connection is *pumped*: actions
//! are taken from the dispatcher (inline jobs run here, others go to the
//! [`Pool`]), unsent bytes are written until the socket refuses more, one
//! read is fed in if the session wants input, and so on until nothing
//! moves. Then the socket's interest is set from what the session wants
//! (read only while [`Session::wants_input`], write only while bytes wait
//! and the socket is full) and the session's next deadline goes into the
//! one timer heap. The loop's poll timeout is the earliest deadline in the
//! heap, so with every session idle the loop sleeps without waking.
//!
//! Readiness is edge-triggered: a connection remembers that its socket is
//! readable (or writable) until an operation says `WouldBlock`. A
//! connection gets a turn of one read (`READS_PER_TURN`); one that still
//! has input then waits in a ready queue, which makes the poll timeout
//! zero, so that a client pipelining without end cannot starve the others.
//!
//! The server uses a range of tokens given by its owner ([`TokenRange`]):
//! the listener, the pool's waker, then one per connection. Its owner
//! forwards the events of those tokens ([`Server::handle_event`]) and calls
//! [`Server::handle_timeout`] after every poll, with its timeout taken
//! from [`Server::poll_timeout`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ispyd_core::{
    Action, Address, Config, ConfigWarning, Dispatcher, Host, Hosts, Limits, Refusal, Registry,
    Session, admit, audit,
};
use ispyd_std::socket::SocketPathGuard;
use ispyd_std::{Error, Setup};
use mio::event::Event;
use mio::{Interest, Token};

use crate::pool::{Doorbell, Pool};
use crate::stream::{Listener, Stream, accept, listener_from_std};

const READ_CHUNK: usize = 16 * 1024;

/// How long accepting pauses when the process is out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The tokens a [`Server`] may use on its owner's `Poll`: `len` of them
/// from `start`. Two go to the listener and the pool's waker; the rest
/// bound how many sessions can be open at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRange {
    /// The first token.
    pub start: usize,
    /// How many tokens, from `start`.
    pub len: usize,
}

impl TokenRange {
    /// True when `token` is one of this range's.
    pub fn contains(&self, token: Token) -> bool {
        token.0 >= self.start && token.0 - self.start < self.len
    }
}

struct Conn {
    stream: Stream,
    session: Session,
    dispatcher: Dispatcher,
    /// The socket may have bytes to read (no `WouldBlock` since the last
    /// readable event).
    readable: bool,
    /// The peer's end of input has been announced (`EPOLLRDHUP`): it comes
    /// after the bytes already there, with no new edge of its own, so a
    /// short read does not mean the socket is empty.
    read_closed: bool,
    /// The socket may take bytes.
    writable: bool,
    interest: Option<Interest>,
    /// True while it waits in the ready queue for its next turn.
    queued: bool,
    /// The connection's entry in the timer heap: never later than the
    /// session's own next deadline.
    deadline: Option<Instant>,
}

/// Every ispyd session of the process, driven from one `mio::Poll` (see the
/// module documentation).
pub struct Server {
    config: Config,
    warnings: Vec<ConfigWarning>,
    address: Address,
    hosts: Hosts,
    registry: Arc<Registry>,
    limits: Limits,
    euid: u32,
    tokens: TokenRange,
    /// The owner's poll registry, for the connections' interests.
    poll: mio::Registry,
    listener: Listener,
    socket_file: Option<SocketPathGuard>,
    pool: Pool,
    /// Where the pool's doorbell rings.
    bell: mio::net::UnixStream,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    by_session: HashMap<u64, usize>,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    accept_paused_until: Option<Instant>,
    /// Connections that yielded their turn with input left to read, and
    /// since when the first of them waits.
    ready: VecDeque<(usize, u64)>,
    ready_since: Option<Instant>,
    next_id: u64,
    buf: Box<[u8]>,
    /// Every descriptor the server holds, for a forked child to close (it
    /// inherits them, but not the thread that would close them).
    descriptors: Arc<Mutex<Vec<RawFd>>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("address", &self.address)
            .field("sessions", &self.by_session.len())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds the configured address and registers the listener and the
    /// pool's waker on `registry`, with tokens from `tokens` (at least 3).
    pub fn new(
        setup: Setup,
        registry: &mio::Registry,
        tokens: TokenRange,
    ) -> Result<Server, Error> {
        assert!(tokens.len >= 3, "a server needs at least 3 tokens");
        ispyd_std::quiet_plugin_panics();
        let Setup {
            config,
            registry: plugins,
            warnings,
        } = setup;
        let pid = std::process::id();
        let (address, bound) = ispyd_std::bind(&config, pid)?;
        let (mut listener, socket_file) = listener_from_std(bound).map_err(Error::Thread)?;
        mio::event::Source::register(
            &mut listener,
            registry,
            Token(tokens.start),
            Interest::READABLE,
        )
        .map_err(Error::Thread)?;
        let (doorbell, mut bell) = Doorbell::new().map_err(Error::Thread)?;
        let descriptors = vec![
            listener.as_fd().as_raw_fd(),
            bell.as_raw_fd(),
            doorbell.as_raw_fd(),
        ];
        registry
            .register(&mut bell, Token(tokens.start + 1), Interest::READABLE)
            .map_err(Error::Thread)?;
        let hosts = Hosts::new(Host::new(pid, &config, plugins.infos()));
        let plugins = Arc::new(plugins);
        let mut limits = config.limits;
        limits.max_sessions = limits.max_sessions.min(tokens.len - 2);
        Ok(Server {
            pool: Pool::new(Arc::clone(&plugins), doorbell, config.workers),
            bell,
            warnings,
            address,
            hosts,
            registry: plugins,
            limits,
            euid: ispyd_std::peer::effective_uid(),
            tokens,
            poll: registry.try_clone().map_err(Error::Thread)?,
            listener,
            socket_file,
            conns: Vec::new(),
            free: Vec::new(),
            by_session: HashMap::new(),
            timers: BinaryHeap::new(),
            accept_paused_until: None,
            ready: VecDeque::new(),
            ready_since: None,
            next_id: 1,
            buf: vec![0; READ_CHUNK].into_boxed_slice(),
            descriptors: Arc::new(Mutex::new(descriptors)),
            config,
        })
    }

    /// Where this server listens.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// What looked wrong in the configuration (unknown keys and sections).
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.warnings
    }

    /// The configuration it serves.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How many sessions are open now.
    pub fn session_count(&self) -> usize {
        self.by_session.len()
    }

    /// Threads the worker pool has started so far (none until the first
    /// call that is not inline).
    pub fn worker_threads(&self) -> usize {
        self.pool.threads()
    }

    /// The descriptors the server holds now, kept up to date as sessions
    /// come and go. For a host that forks: the child inherits them without
    /// the server that owns them, and should close them.
    pub fn descriptors(&self) -> Arc<Mutex<Vec<RawFd>>> {
        Arc::clone(&self.descriptors)
    }

    /// True when `token` belongs to this server: forward its events.
    pub fn owns(&self, token: Token) -> bool {
        self.tokens.contains(token)
    }

    /// Handles one event of a token this server [`owns`](Server::owns).
    pub fn handle_event(&mut self, event: &Event, now: Instant) {
        let Some(index) = event.token().0.checked_sub(self.tokens.start) else {
            return;
        };
        match index {
            0 => self.accept_all(now),
            1 => {
                Doorbell::hear(&mut self.bell);
                self.collect_done(now);
            }
            n => {
                let slot = n - 2;
                let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
                    return;
                };
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    conn.readable = true;
                }
                if event.is_read_closed() || event.is_error() {
                    conn.read_closed = true;
                }
                if event.is_writable() || event.is_write_closed() || event.is_error() {
                    conn.writable = true;
                }
                // Hung up (closed both ways) while a job runs: nobody will
                // read its answer.
                if (event.is_write_closed() || event.is_error())
                    && conn.dispatcher.running().is_some()
                {
                    conn.session.handle_hangup(now);
                }
                self.pump(slot, now);
            }
        }
        self.prune();
    }

    /// Fires every deadline that is due. Call after every poll; calling it
    /// when nothing is due costs a comparison.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.ready_since = None;
        for (slot, id) in std::mem::take(&mut self.ready) {
            let waiting = self.conns.get_mut(slot).and_then(Option::as_mut);
            if let Some(conn) = waiting.filter(|conn| conn.session.id() == id) {
                conn.queued = false;
                self.pump(slot, now);
            }
        }
        if self.accept_paused_until.is_some_and(|at| now >= at) {
            self.accept_paused_until = None;
            self.accept_all(now);
        }
        while let Some(&Reverse((at, slot, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(conn) = self.live(slot, id, at) else {
                continue;
            };
            conn.deadline = None;
            conn.session.handle_timeout(now);
            self.pump(slot, now);
        }
        self.prune();
    }

    /// When [`Server::handle_timeout`] must be called next, if no event
    /// comes first: the earliest deadline of any session, or at once while
    /// a connection waits for its next turn. `None` when nothing is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((at, _, _))| *at);
        [timer, self.accept_paused_until, self.ready_since]
            .into_iter()
            .flatten()
            .min()
    }

    /// Ends every session (each client is told why), stops listening and
    /// removes the socket file.
    pub fn shutdown(&mut self, now: Instant) {
        for slot in 0..self.conns.len() {
            if let Some(conn) = self.conns[slot].as_mut() {
                conn.session.handle_shutdown(now);
                conn.writable = true;
                self.pump(slot, now);
            }
            self.close(slot);
        }
        let _ = mio::event::Source::deregister(&mut self.listener, &self.poll);
        let _ = self.poll.deregister(&mut self.bell);
        self.timers.clear();
        self.socket_file = None;
    }

    /// The connection in `slot`, if it is still session `id` and its heap
    /// entry for `at` is the current one.
    fn live(&mut self, slot: usize, id: u64, at: Instant) -> Option<&mut Conn> {
        self.conns
            .get_mut(slot)
            .and_then(Option::as_mut)
            .filter(|conn| conn.session.id() == id && conn.deadline == Some(at))
    }

    /// Drops stale entries from the top of the heap (so the poll timeout
    /// is a real deadline), and rebuilds the heap when stale entries
    /// outnumber live ones.
    fn prune(&mut self) {
        while let Some(&Reverse((at, slot, id))) = self.timers.peek() {
            if self.live(slot, id, at).is_some() {
                break;
            }
            self.timers.pop();
        }
        if self.timers.len() > 2 * self.by_session.len() + 64 {
            self.timers = self
                .conns
                .iter()
                .enumerate()
                .filter_map(|(slot, conn)| {
                    let conn = conn.as_ref()?;
                    Some(Reverse((conn.deadline?, slot, conn.session.id())))
                })
                .collect();
        }
    }

    fn accept_all(&mut self, now: Instant) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            match accept(&self.listener) {
                Ok(stream) => self.admit(stream, now),
                Err(err) if err.kind() == ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    // Out of descriptors or memory: try again a little later
                    // instead of spinning on the listener.
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: Stream, now: Instant) {
        let peer = stream.peer(&self.address);
        if let Err(refusal) = admit(peer.uid, self.euid, self.by_session.len(), &self.limits) {
            refuse(&mut stream, &refusal);
            audit::refused(&peer, &refusal);
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        self.conns[slot] = Some(Conn {
            stream,
            session: Session::new(self.hosts.for_peer(peer.uid), id, now),
            dispatcher: Dispatcher::new(),
            readable: true,
            read_closed: false,
            writable: true,
            interest: None,
            queued: false,
            deadline: None,
        });
        self.by_session.insert(id, slot);
        if let Some(conn) = &self.conns[slot] {
            lock(&self.descriptors).push(conn.stream.as_fd().as_raw_fd());
        }
        self.pump(slot, now);
        // After the greeting is written: a slow logger delays no prompt.
        audit::accepted(id, &peer);
    }

    fn collect_done(&mut self, now: Instant) {
        let mut progressed = self.pool.take_progressed();
        progressed.dedup();
        for session in progressed {
            let Some(&slot) = self.by_session.get(&session) else {
                continue;
            };
            if let Some(conn) = self.conns[slot].as_mut() {
                conn.dispatcher.forward_progress(&mut conn.session, now);
                self.pump(slot, now);
            }
        }
        for done in self.pool.take_done() {
            let Some(&slot) = self.by_session.get(&done.session()) else {
                continue;
            };
            if let Some(conn) = self.conns[slot].as_mut() {
                let _ = conn.dispatcher.handle_done(&mut conn.session, done, now);
                self.pump(slot, now);
            }
        }
    }

    /// Moves the connection in `slot` as far as it goes now, then sets its
    /// interest and deadline, or closes it.
    fn pump(&mut self, slot: usize, now: Instant) {
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        let pumped = drive(conn, &self.registry, &self.pool, &mut self.buf, now);
        if pumped == Pumped::Failed || conn.session.is_closed() {
            self.close(slot);
            return;
        }
        if pumped == Pumped::Yielded && !conn.queued {
            // Edge-triggered: no new event will come for bytes already
            // there, so the connection waits its next turn in this queue,
            // once, however many events it gets meanwhile.
            conn.queued = true;
            self.ready.push_back((slot, conn.session.id()));
            self.ready_since.get_or_insert(now);
        }
        // An entry already in the heap that is not later than the new
        // deadline stays: when it fires early, the session is asked again
        // and the real deadline goes in. Most commands only move the idle
        // deadline later, so they touch the heap not at all.
        match (conn.deadline, conn.session.poll_timeout()) {
            (Some(armed), Some(wanted)) if armed <= wanted => {}
            (_, Some(wanted)) => {
                conn.deadline = Some(wanted);
                self.timers.push(Reverse((wanted, slot, conn.session.id())));
            }
            (_, None) => conn.deadline = None,
        }
        let token = Token(self.tokens.start + 2 + slot);
        let wanted = match (
            conn.session.wants_input(),
            conn.session.wants_write() && !conn.writable,
        ) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        };
        if wanted != conn.interest && set_interest(conn, wanted, token, &self.poll).is_err() {
            self.close(slot);
        }
    }

    fn close(&mut self, slot: usize) {
        let Some(mut conn) = self.conns[slot].take() else {
            return;
        };
        if conn.interest.is_some() {
            let _ = mio::event::Source::deregister(&mut conn.stream, &self.poll);
        }
        conn.stream.close();
        let fd = conn.stream.as_fd().as_raw_fd();
        lock(&self.descriptors).retain(|&held| held != fd);
        self.by_session.remove(&conn.session.id());
        self.free.push(slot);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What pumping a connection left it as.
#[derive(PartialEq, Eq)]
enum Pumped {
    /// Nothing more moves until an event or a deadline.
    Settled,
    /// It used its turn ([`READS_PER_TURN`]) with input still to read.
    Yielded,
    /// Its socket failed.
    Failed,
}

/// Reads one connection may make before the loop turns to the others: a
/// client that pipelines without end must not starve them. One read is up
/// to 16 KiB of input, some thousands of short commands.
const READS_PER_TURN: usize = 1;

/// Pumps one connection until nothing moves or its turn is up (see the
/// module documentation).
fn drive(
    conn: &mut Conn,
    registry: &Registry,
    pool: &Pool,
    buf: &mut [u8],
    now: Instant,
) -> Pumped {
    let mut reads = 0;
    loop {
        let mut moved = false;
        while let Some(action) = conn
            .dispatcher
            .poll_action(&mut conn.session, registry, now)
        {
            match action {
                Action::Run(job) if job.is_inline() => {
                    let done = job.run(registry);
                    let _ = conn.dispatcher.handle_done(&mut conn.session, done, now);
                }
                Action::Run(job) => {
                    if let Err((id, why)) = pool.submit(job) {
                        conn.dispatcher
                            .handle_lost(&mut conn.session, id, &why, now);
                    }
                }
                Action::Forget(id) => pool.forget(conn.session.id(), id),
                Action::Interrupt(interrupter) => interrupter.interrupt(),
                Action::Close(_) => {}
            }
        }
        while conn.writable {
            let Some(bytes) = conn.session.poll_transmit() else {
                break;
            };
            match conn.stream.write(bytes) {
                Ok(n) => {
                    conn.session.handle_written(n, now);
                    moved = true;
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => conn.writable = false,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Pumped::Failed,
            }
        }
        if conn.readable && conn.session.wants_input() {
            if reads == READS_PER_TURN {
                return Pumped::Yielded;
            }
            reads += 1;
            match conn.stream.read(buf) {
                Ok(0) => {
                    conn.readable = false;
                    conn.session.handle_eof(now);
                }
                Ok(n) => {
                    // A short read emptied the socket: what arrives later
                    // is a new edge, with an event of its own. Saves a read
                    // that would only say WouldBlock, and a turn. Not so for
                    // an end of input already announced: it has no edge
                    // left, and the next read returns it.
                    if n < buf.len() && !conn.read_closed {
                        conn.readable = false;
                    }
                    conn.session.handle_input(&buf[..n], now);
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => conn.readable = false,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Pumped::Failed,
            }
            moved = true;
        }
        if !moved {
            return Pumped::Settled;
        }
    }
}

fn set_interest(
    conn: &mut Conn,
    wanted: Option<Interest>,
    token: Token,
    registry: &mio::Registry,
) -> io::Result<()> {
    use mio::event::Source;
    match (conn.interest, wanted) {
        (None, Some(interest)) => conn.stream.register(registry, token, interest)?,
        (Some(_), Some(interest)) => conn.stream.reregister(registry, token, interest)?,
        (Some(_), None) => conn.stream.deregister(registry)?,
        (None, None) => {}
    }
    conn.interest = wanted;
    Ok(())
}

/// Tells a turned-away client why, as far as its socket takes it at once.
fn refuse(stream: &mut Stream, refusal: &Refusal) {
    let _ = stream.write(refusal.message().as_bytes());
    stream.close();
}
