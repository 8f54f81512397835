//! [`ShellManager`]: loads the configuration, binds the socket and runs the
//! listener thread; one thread per session, kept for the next session for a
//! few seconds after its own ends.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};
use std::net::{Shutdown, TcpListener};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ispyd_core::{
    Address, Config, ConfigWarning, Host, Hosts, Limits, Peer, Refusal, Registry, Session, admit,
    audit,
};

use crate::peer;
use crate::serve::{Greeted, Wake, Waker, greet, serve, wake_channel};
use crate::setup::{self, Builder, Error, Listener, Setup, quiet_plugin_panics};
use crate::signals;
use crate::socket::SocketPathGuard;
use crate::stream::Stream;

/// The listening socket: the one stream type, with listeners in it.
type ListenerSocket = Stream<UnixListener, TcpListener>;

fn accept(listener: &ListenerSocket) -> io::Result<Stream> {
    match listener {
        ListenerSocket::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
        ListenerSocket::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
    }
}

/// What the listener and the session threads share.
struct Shared {
    hosts: Hosts,
    /// Where the listener listens, for the audit trail.
    address: Address,
    registry: Arc<Registry>,
    limits: Limits,
    euid: u32,
    next_id: AtomicU64,
    stopping: AtomicBool,
    /// A clone of every open session's stream, and its wake channel, so
    /// that shutdown can end them.
    sessions: Mutex<HashMap<u64, (Stream, Waker)>>,
    /// Signalled each time a session ends.
    ended: Condvar,
    /// Session threads between sessions, each waiting on its channel for
    /// the next (see [`session_thread`]); emptied to stop them.
    idle: Mutex<Vec<(u64, SyncSender<Assignment>)>>,
    next_worker: AtomicU64,
}

/// How long a session thread waits for another session after its own ends.
/// A script that connects again and again (`ispy -c` in a loop, a fleet
/// sweep) reuses threads instead of starting and ending one a connection;
/// an idle process keeps no thread it does not need past this.
const IDLE_THREAD: Duration = Duration::from_secs(5);

/// A greeted session for a session thread.
struct Assignment {
    id: u64,
    greeted: Greeted,
}

/// How long shutdown waits for the sessions to say goodbye to their
/// clients; a client that does not read is not waited for longer.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// An ispyd shell embedded in this process: a listener thread named
/// `ispyd-listener`, and a thread per connected session.
///
/// Dropping it (or [`ShellManager::shutdown`]) stops listening, tells every
/// client that ispyd is shutting down (waiting up to a second for them to
/// be told), ends the sessions and removes the socket file. Idle, it costs
/// nothing: the listener sleeps in `accept` and no timer runs (a session's
/// thread waits up to 5 s for another session once its own ends, then
/// ends too).
pub struct ShellManager {
    config: Config,
    shared: Arc<Shared>,
    address: Address,
    warnings: Vec<ConfigWarning>,
    listener_fd: RawFd,
    thread: Option<JoinHandle<()>>,
    socket_file: Option<SocketPathGuard>,
    /// The process the listener thread runs in.
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
        let Setup {
            config,
            registry,
            warnings,
        } = setup;
        quiet_plugin_panics();
        let pid = std::process::id();
        let (address, listener) = setup::bind(&config, pid)?;
        let (listener, socket_file) = match listener {
            Listener::Unix(listener, guard) => (ListenerSocket::Unix(listener), Some(guard)),
            Listener::Tcp(listener) => (ListenerSocket::Tcp(listener), None),
        };
        let hosts = Hosts::new(Host::new(pid, &config, registry.infos()));
        let shared = Arc::new(Shared {
            hosts,
            address: address.clone(),
            registry: Arc::new(registry),
            limits: config.limits,
            euid: peer::effective_uid(),
            next_id: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            sessions: Mutex::new(HashMap::new()),
            ended: Condvar::new(),
            idle: Mutex::new(Vec::new()),
            next_worker: AtomicU64::new(1),
        });
        let listener_fd = listener.as_fd().as_raw_fd();
        // Every ispyd thread descends from the listener and inherits its
        // signal mask: the host's signals go to the host's threads.
        let thread = signals::with_signals_blocked(|| {
            thread::Builder::new()
                .name("ispyd-listener".to_owned())
                .spawn({
                    let shared = Arc::clone(&shared);
                    move || listen(&listener, &shared)
                })
        })
        .map_err(Error::Thread)?;
        Ok(ShellManager {
            config,
            shared,
            address,
            warnings,
            listener_fd,
            thread: Some(thread),
            socket_file,
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
        lock(&self.shared.sessions).len()
    }

    /// Stops listening, ends every session and removes the socket file.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// Call in the child right after `fork()`. The child has none of the
    /// parent's threads: this closes the descriptors it inherited from them
    /// and, when `listen` has `%(pid)s`, starts a listener of the child's
    /// own and returns `Ok(true)`. With a fixed address it returns
    /// `Ok(false)`: the parent keeps serving it alone.
    pub fn restart_after_fork(&mut self) -> Result<bool, Error> {
        self.forget_parents_threads();
        if !self.config.listen.is_per_process() {
            return Ok(false);
        }
        let setup = Setup {
            config: self.config.clone(),
            registry: (*self.shared.registry).clone(),
            warnings: self.warnings.clone(),
        };
        *self = ShellManager::start(setup)?;
        Ok(true)
    }

    /// In a forked child: lets go of what the parent's threads own, without
    /// touching those threads, which the child does not have.
    fn forget_parents_threads(&mut self) {
        // Once: the descriptors closed here may be reused afterwards.
        let Some(thread) = self.thread.take() else {
            return;
        };
        // SAFETY: in the child the descriptor is an inherited copy that no
        // thread uses (the listener thread exists only in the parent).
        unsafe {
            libc::close(self.listener_fd);
        }
        // A lock held at fork time by a parent thread stays held forever in
        // the child: only try it.
        if let Ok(sessions) = self.shared.sessions.try_lock() {
            for (stream, _) in sessions.values() {
                // SAFETY: as above, inherited copies nobody here uses; the
                // streams themselves are never dropped (see below).
                unsafe {
                    libc::close(stream.as_fd().as_raw_fd());
                }
            }
        }
        // The parent's threads are gone: never join or detach them. Their
        // shared state keeps references from them, so it is never freed and
        // the closed descriptors are never closed twice.
        std::mem::forget(thread);
        // Safe to drop: the guard never removes a file another pid bound.
        self.socket_file = None;
    }

    fn stop(&mut self) {
        if self.pid != std::process::id() {
            // Forked by a caller that never called restart_after_fork
            // (uWSGI forks its workers from C, past Python's at-fork
            // hooks): there is no thread here to stop or join, and the
            // parent's socket is the parent's.
            self.forget_parents_threads();
            return;
        }
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Idle session threads see their channel close and end.
        lock(&self.shared.idle).clear();
        // SAFETY: the listener is owned by the listener thread, which is
        // alive until joined below, so the descriptor is still open.
        // shutdown(2) on a listening socket makes a blocked accept return.
        unsafe {
            libc::shutdown(self.listener_fd, libc::SHUT_RDWR);
        }
        let _ = thread.join();
        // Each session thread then reads end of input, sees `stopping`, and
        // tells its client why the session ends before it closes.
        let mut sessions = lock(&self.shared.sessions);
        for (stream, wake) in sessions.values() {
            let _ = stream.shutdown(Shutdown::Read);
            // A session waiting for a call hears it on its wake channel.
            let _ = wake.wake(Wake::Shutdown);
        }
        let grace = Instant::now() + SHUTDOWN_GRACE;
        while !sessions.is_empty() {
            let left = grace.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sessions = self
                .shared
                .ended
                .wait_timeout(sessions, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(sessions);
        self.socket_file = None;
    }
}

impl Drop for ShellManager {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn listen(listener: &ListenerSocket, shared: &Arc<Shared>) {
    loop {
        let accepted = accept(listener);
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok(stream) => admit_one(stream, shared),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                // Out of descriptors or memory: back off instead of spinning.
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Checks who is calling and whether there is room, then starts a session.
fn admit_one(stream: Stream, shared: &Arc<Shared>) {
    let peer = stream.peer(&shared.address);
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let Ok((waker, wakes)) = wake_channel() else {
        let mut stream = stream;
        let _ = stream.write_all(b"*** ispyd: cannot start a session now (no descriptors left).\n");
        let _ = stream.shutdown(Shutdown::Both);
        return;
    };
    {
        let mut sessions = lock(&shared.sessions);
        if let Err(refusal) = admit(peer.uid, shared.euid, sessions.len(), &shared.limits) {
            drop(sessions);
            return refuse(stream, &peer, &refusal);
        }
        match stream.try_clone() {
            Ok(clone) => sessions.insert(id, (clone, waker)),
            Err(_) => return,
        };
    }
    let session = Session::new(shared.hosts.for_peer(peer.uid), id, Instant::now());
    let registry = Arc::clone(&shared.registry);
    let Some(greeted) = greet(stream, session, peer, registry, wakes) else {
        lock(&shared.sessions).remove(&id);
        shared.ended.notify_all();
        return;
    };
    let mut assignment = Assignment { id, greeted };
    // An idle session thread, if one waits; one that timed out as it was
    // taken has dropped its channel, and the next is tried.
    loop {
        let Some((_, idle)) = lock(&shared.idle).pop() else {
            break;
        };
        match idle.send(assignment) {
            Ok(()) => return,
            Err(mpsc::SendError(back)) => assignment = back,
        }
    }
    let owner = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name(session_thread_name(id))
        .spawn(move || session_thread(&owner, assignment));
    if spawned.is_err() {
        if let Some((mut clone, _)) = lock(&shared.sessions).remove(&id) {
            let _ = clone.write_all(b"*** ispyd: cannot start a session thread now.\n");
            let _ = clone.shutdown(Shutdown::Both);
        }
    }
}

/// Serves `first`, then waits up to [`IDLE_THREAD`] for another session,
/// and so on; ends when none comes or ispyd stops.
fn session_thread(shared: &Shared, first: Assignment) {
    let worker = shared.next_worker.fetch_add(1, Ordering::Relaxed);
    let mut named = first.id;
    let mut next = Some(first);
    while let Some(Assignment { id, greeted }) = next.take() {
        if named != id {
            rename(id);
            named = id;
        }
        serve(greeted, &shared.stopping);
        lock(&shared.sessions).remove(&id);
        shared.ended.notify_all();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let (sender, receiver) = mpsc::sync_channel(1);
        lock(&shared.idle).push((worker, sender));
        next = match receiver.recv_timeout(IDLE_THREAD) {
            Ok(assignment) => Some(assignment),
            // Stopping: the list was emptied, and this channel with it.
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                let mut idle = lock(&shared.idle);
                match idle.iter().position(|&(w, _)| w == worker) {
                    Some(at) => {
                        idle.swap_remove(at);
                        None
                    }
                    // Taken just now: the session is on its way.
                    None => {
                        drop(idle);
                        receiver.recv().ok()
                    }
                }
            }
        };
    }
}

/// Names the calling session thread for session `id`, as a new one is.
fn rename(id: u64) {
    #[cfg(target_os = "linux")]
    if let Ok(name) = std::ffi::CString::new(session_thread_name(id)) {
        let _ = rustix::thread::set_name(&name);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = id;
}

/// A name that Linux's 15-byte thread names keep whole and unique: the
/// session number, in hexadecimal past `ispyd-s-ffffff`, wraps only after
/// 16.7 million sessions.
fn session_thread_name(id: u64) -> String {
    format!("ispyd-s-{:x}", id & 0xff_ffff)
}

fn refuse(mut stream: Stream, peer: &Peer, refusal: &Refusal) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(refusal.message().as_bytes());
    let _ = stream.shutdown(Shutdown::Both);
    audit::refused(peer, refusal);
}

#[cfg(test)]
mod tests {
    use super::{ShellManager, lock, session_thread_name};
    use std::collections::HashSet;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    fn wait_for(what: &str, ready: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready() {
            assert!(Instant::now() < deadline, "gave up waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A manager listening on `ispyd.sock` in a fresh directory (removed
    /// by the test), and its shared state.
    fn listening(
        tag: &str,
    ) -> (
        ShellManager,
        std::sync::Arc<super::Shared>,
        std::path::PathBuf,
    ) {
        let dir = std::env::temp_dir().join(format!("ispyd-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let manager = ShellManager::builder()
            .listen(dir.join("ispyd.sock").display().to_string())
            .report_warnings(false)
            .start()
            .unwrap();
        let shared = std::sync::Arc::clone(&manager.shared);
        (manager, shared, dir)
    }

    /// Connects, reads the prompt, says `exit` and reads to the end.
    fn one_session(path: &std::path::Path) {
        let mut stream = UnixStream::connect(path).unwrap();
        let mut prompt = [0u8; 64];
        let n = stream.read(&mut prompt).unwrap();
        assert!(String::from_utf8_lossy(&prompt[..n]).starts_with("(ispyd:"));
        stream.write_all(b"exit\n").unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
    }

    #[test]
    fn a_session_thread_serves_the_next_session_and_ends_with_ispyd() {
        let (manager, shared, dir) = listening("pool");
        let path = dir.join("ispyd.sock");
        for round in 1..=3 {
            one_session(&path);
            wait_for("the session thread to wait for another", || {
                lock(&shared.idle).len() == 1 && lock(&shared.sessions).is_empty()
            });
            // One thread served every session so far.
            assert_eq!(
                shared.next_worker.load(Ordering::SeqCst),
                2,
                "round {round}"
            );
        }
        // Named for the last session it served, as a new thread would be.
        let names: Vec<String> = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .collect();
        assert!(
            names
                .iter()
                .any(|name| name.trim() == session_thread_name(3)),
            "{names:?}"
        );
        drop(manager);
        assert!(lock(&shared.idle).is_empty());
        // Its channel gone, the idle thread ends without waiting out its time.
        wait_for("the idle session thread to end", || {
            std::sync::Arc::strong_count(&shared) == 1
        });
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_idle_session_thread_ends_after_its_time() {
        let (manager, shared, dir) = listening("idle");
        let path = dir.join("ispyd.sock");
        one_session(&path);
        wait_for("the session thread to wait", || {
            lock(&shared.idle).len() == 1
        });
        // The manager and its listener hold the rest.
        wait_for("the idle thread to give up and end", || {
            lock(&shared.idle).is_empty() && std::sync::Arc::strong_count(&shared) == 3
        });
        // The next session gets a thread of its own.
        one_session(&path);
        wait_for("the new thread to wait", || lock(&shared.idle).len() == 1);
        assert_eq!(shared.next_worker.load(Ordering::SeqCst), 3);
        drop(manager);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn session_thread_names_fit_linux_and_stay_unique() {
        let names: HashSet<String> = (0..100_000).map(session_thread_name).collect();
        assert_eq!(names.len(), 100_000);
        assert!(names.iter().all(|name| name.len() <= 15));
        assert_eq!(session_thread_name(0xff_ffff), "ispyd-s-ffffff");
    }
}
