//! The thread that drives one session: reads the socket, feeds the core,
//! writes what it transmits, and runs the jobs its dispatcher hands out.
//!
//! Every blocking wait (read, write, waiting for a worker) is bounded by
//! the session's own next deadline ([`Session::poll_timeout`]), re-armed
//! before each wait, so the core's idle, send and call timeouts hold here
//! exactly as in an event loop.
//!
//! Inline jobs (see [`Job::is_inline`]) run right here. Others go to a
//! worker thread owned by the session, so that a job stuck behind a lock
//! (or the GIL) can be given up on when the core says so; the stuck worker
//! is then left to finish alone and a new one serves the next job.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use ispyd_core::{Action, CloseReason, Dispatcher, Job, JobDone, Peer, Registry, Session, audit};

use rustix::event::{PollFd, PollFlags, Timespec};

use crate::stream::Stream;

const READ_CHUNK: usize = 16 * 1024;

/// A socket timeout of zero means "none" to the OS; the shortest real one.
const SHORTEST_WAIT: Duration = Duration::from_millis(1);

/// A socket timeout is set again only when the wanted one differs from the
/// one in force by more than this: a command moves the idle deadline by
/// microseconds, and a wait that ends this much late is still on time for
/// deadlines counted in seconds. Saves two system calls per command.
const TIMEOUT_SLACK: Duration = Duration::from_millis(1);

/// What wakes a session thread that waits for its worker.
pub(crate) enum Wake {
    /// The worker finished a job.
    Done(JobDone),
    /// The host is stopping ispyd.
    Shutdown,
    /// The running call reported progress.
    Progress,
}

/// Sends [`Wake`]s to a session thread and rings its bell, a socket pair
/// that the thread polls beside its connection while a job runs: it keeps
/// reading the client then (a Ctrl-C must reach a call that does not
/// answer), and hears the worker the moment it is done.
#[derive(Clone)]
pub(crate) struct Waker {
    tx: Sender<Wake>,
    bell: Arc<UnixStream>,
}

impl Waker {
    /// Tells the session thread.
    pub(crate) fn wake(&self, wake: Wake) -> bool {
        let sent = self.tx.send(wake).is_ok();
        // A full bell already has a ring waiting to be heard.
        let _ = (&*self.bell).write(b"!");
        sent
    }
}

/// A session thread's wake channel: the [`Waker`] to hand out, and what
/// [`serve`] takes.
pub(crate) fn wake_channel() -> std::io::Result<(Waker, Wakes)> {
    let (tx, rx) = mpsc::channel();
    let (bell, heard) = UnixStream::pair()?;
    bell.set_nonblocking(true)?;
    heard.set_nonblocking(true)?;
    let waker = Waker {
        tx,
        bell: Arc::new(bell),
    };
    Ok((waker.clone(), Wakes { waker, rx, heard }))
}

/// The receiving side of [`wake_channel`].
pub(crate) struct Wakes {
    /// Kept so the channel never disconnects, and for the workers.
    waker: Waker,
    rx: Receiver<Wake>,
    heard: UnixStream,
}

impl Wakes {
    /// Empties the bell, so that the next ring wakes the next poll.
    fn hear(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.heard).read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// A thread that runs the session's slow jobs one at a time.
struct Worker {
    jobs: Sender<Job>,
    /// Who the running job's result belongs to (see [`JobState`]): the
    /// worker and the session decide it with one compare-and-swap each, so
    /// a result given up on is never left waiting in the session's channel
    /// (with the takeover it carries: a pdb would linger until the session
    /// next waited for a job).
    state: Arc<AtomicU8>,
}

/// The states of [`Worker::state`].
struct JobState;

impl JobState {
    /// A job runs, its result still wanted.
    const RUNNING: u8 = 0;
    /// The worker has claimed the result and is sending it.
    const DELIVERING: u8 = 1;
    /// The session gave up on the job: the worker drops its result.
    const FORGOTTEN: u8 = 2;
}

impl Worker {
    fn spawn(registry: Arc<Registry>, session: u64, done: Waker) -> std::io::Result<Worker> {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let state = Arc::new(AtomicU8::new(JobState::RUNNING));
        let shared = Arc::clone(&state);
        thread::Builder::new()
            .name(format!("ispyd-call-{session}"))
            .spawn(move || {
                for job in job_rx {
                    let result = job.run(&registry);
                    let claimed = shared.compare_exchange(
                        JobState::RUNNING,
                        JobState::DELIVERING,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    );
                    // Forgotten: the result (and any takeover in it) is
                    // dropped here and now, and the worker is done.
                    if claimed.is_err() || !done.wake(Wake::Done(result)) {
                        break;
                    }
                }
            })?;
        Ok(Worker { jobs, state })
    }

    /// Gives up on the running job. False when its result was already
    /// claimed: it is in the session's channel, or about to be.
    fn forget(&self) -> bool {
        self.state
            .compare_exchange(
                JobState::RUNNING,
                JobState::FORGOTTEN,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
    }
}

/// Starts a session on `stream` and writes its greeting (the first
/// prompt) from the calling thread. The thread that accepted the connection
/// is running already; a thread started for the session would first have to
/// be scheduled, often on the other CPU, which costs the client ≈ 100 µs of
/// wake-up here before its prompt arrives. `None`: the connection failed.
///
/// One write only: on a new socket the few bytes of a prompt always fit,
/// so the accepting thread never waits on a peer; whatever is left is the
/// session thread's to write.
///
/// `wake` is the session's channel: its workers report on it, and the
/// manager sends [`Wake::Shutdown`] on it (with `stopping` set) to stop a
/// session that waits for a call.
pub(crate) fn greet(
    stream: Stream,
    session: Session,
    peer: Peer,
    registry: Arc<Registry>,
    wake: Wakes,
) -> Option<Greeted> {
    let mut driver = Driver {
        stream,
        session,
        opened: Some(peer),
        dispatcher: Dispatcher::new(),
        registry,
        wake,
        worker: None,
        reason: None,
        read_timeout: None,
        write_timeout: None,
    };
    driver.act();
    if driver.session.poll_transmit().is_some() && !driver.write() {
        let _ = driver.stream.shutdown(Shutdown::Both);
        return None;
    }
    Some(Greeted(driver))
}

/// A session whose greeting is written, ready for its own thread.
pub(crate) struct Greeted(Driver);

/// Runs a greeted session until it closes, and says why it ended (`None`:
/// the connection failed). Never panics on I/O errors: they end the session.
pub(crate) fn serve(greeted: Greeted, stopping: &AtomicBool) -> Option<CloseReason> {
    let Greeted(mut driver) = greeted;
    driver.run(stopping);
    let _ = driver.stream.shutdown(Shutdown::Both);
    driver.reason
}

struct Driver {
    stream: Stream,
    session: Session,
    /// The peer, until the session's opening is recorded (once its first
    /// prompt is written: a slow logger must not delay the prompt).
    opened: Option<Peer>,
    dispatcher: Dispatcher,
    registry: Arc<Registry>,
    wake: Wakes,
    worker: Option<Worker>,
    reason: Option<CloseReason>,
    /// The socket's read and write timeouts in force.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl Driver {
    fn run(&mut self, stopping: &AtomicBool) {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            self.act();
            if self.session.poll_transmit().is_some() {
                if !self.write() {
                    return;
                }
                continue;
            }
            if let Some(peer) = self.opened.take() {
                audit::accepted(self.session.id(), &peer);
            }
            if self.session.is_closed() {
                return;
            }
            let deadline = self.session.poll_timeout();
            if self.dispatcher.running().is_some() {
                self.wait_for_job(deadline, &mut buf, stopping);
                continue;
            }
            if !self.session.wants_input() {
                // Nothing running and nothing more to read: only time can
                // move the session on.
                let Some(deadline) = deadline else {
                    return;
                };
                thread::sleep(deadline.saturating_duration_since(Instant::now()));
                self.session.handle_timeout(Instant::now());
                continue;
            }
            let wait = wait_until(deadline);
            if differs(self.read_timeout, wait) && self.stream.set_read_timeout(Some(wait)).is_ok()
            {
                self.read_timeout = Some(wait);
            }
            if !self.read(&mut buf, stopping) {
                return;
            }
        }
    }

    /// Reads once and feeds the session. False when the connection is gone.
    fn read(&mut self, buf: &mut [u8], stopping: &AtomicBool) -> bool {
        match self.stream.read(buf) {
            Ok(0) if stopping.load(Ordering::SeqCst) => {
                self.session.handle_shutdown(Instant::now())
            }
            Ok(0) => self.session.handle_eof(Instant::now()),
            Ok(n) => self.session.handle_input(&buf[..n], Instant::now()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                self.session.handle_timeout(Instant::now())
            }
            Err(_) => return false,
        }
        true
    }

    /// Takes the dispatcher's actions until there are none.
    fn act(&mut self) {
        while let Some(action) =
            self.dispatcher
                .poll_action(&mut self.session, &self.registry, Instant::now())
        {
            match action {
                Action::Run(job) if job.is_inline() => {
                    let done = job.run(&self.registry);
                    let _ = self
                        .dispatcher
                        .handle_done(&mut self.session, done, Instant::now());
                }
                Action::Run(job) => self.dispatch(job),
                // The worker is stuck in the job; leave it behind.
                Action::Forget(_) => {
                    if let Some(worker) = self.worker.take() {
                        if !worker.forget() {
                            // It finished as it was given up on: take the
                            // late result now (the session drops it), and
                            // keep the worker, which is free again.
                            self.take_late_result();
                            self.worker = Some(worker);
                        }
                    }
                }
                Action::Interrupt(interrupter) => interrupter.interrupt(),
                Action::Close(reason) => self.reason = Some(reason),
            }
        }
    }

    /// Writes once, as much as the socket takes before the session's next
    /// deadline. False when the connection is gone.
    fn write(&mut self) -> bool {
        let wait = wait_until(self.session.poll_timeout());
        if differs(self.write_timeout, wait) && self.stream.set_write_timeout(Some(wait)).is_ok() {
            self.write_timeout = Some(wait);
        }
        let Some(bytes) = self.session.poll_transmit() else {
            return true;
        };
        match self.stream.write(bytes) {
            Ok(n) => self.session.handle_written(n, Instant::now()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                self.session.handle_timeout(Instant::now())
            }
            Err(_) => return false,
        }
        true
    }

    /// Waits, briefly, for a result the worker claimed just as the job was
    /// given up on, and hands it to the dispatcher, which drops it.
    fn take_late_result(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        while let Ok(wake) = self
            .wake
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            match wake {
                Wake::Done(done) => {
                    let _ = self
                        .dispatcher
                        .handle_done(&mut self.session, done, Instant::now());
                    return;
                }
                Wake::Shutdown => self.session.handle_shutdown(Instant::now()),
                Wake::Progress => {}
            }
        }
    }

    fn dispatch(&mut self, job: Job) {
        let id = job.id();
        if let Some(progress) = job.progress() {
            let waker = self.wake.waker.clone();
            progress.set_waker(Arc::new(move || {
                waker.wake(Wake::Progress);
            }));
        }
        if self.worker.is_none() {
            let done = self.wake.waker.clone();
            match Worker::spawn(Arc::clone(&self.registry), self.session.id(), done) {
                Ok(worker) => self.worker = Some(worker),
                Err(err) => {
                    let why = format!("cannot start a thread for the call: {err}");
                    self.dispatcher
                        .handle_lost(&mut self.session, id, &why, Instant::now());
                    return;
                }
            }
        }
        let sent = self.worker.as_ref().is_some_and(|w| {
            w.state.store(JobState::RUNNING, Ordering::SeqCst);
            w.jobs.send(job).is_ok()
        });
        if !sent {
            self.worker = None;
            self.dispatcher.handle_lost(
                &mut self.session,
                id,
                "the call's thread has exited",
                Instant::now(),
            );
        }
    }

    /// Waits until the running job is done, the host stops ispyd, the
    /// client sends something (a Ctrl-C for the job, or lines to buffer), or
    /// the session's next deadline (its call timeout) comes.
    fn wait_for_job(&mut self, deadline: Option<Instant>, buf: &mut [u8], stopping: &AtomicBool) {
        loop {
            match self.wake.rx.try_recv() {
                Ok(Wake::Done(done)) => {
                    let _ = self
                        .dispatcher
                        .handle_done(&mut self.session, done, Instant::now());
                    return;
                }
                Ok(Wake::Shutdown) => return self.session.handle_shutdown(Instant::now()),
                Ok(Wake::Progress) => {
                    self.dispatcher
                        .forward_progress(&mut self.session, Instant::now());
                    return;
                }
                // The driver holds a waker of its own: never disconnected.
                Err(_) => {}
            }
            let wait = wait_until(deadline);
            match self.poll(wait) {
                Ready::Bell => self.wake.hear(),
                // Nobody will read the answer: give up on the job now.
                Ready::HungUp => return self.session.handle_hangup(Instant::now()),
                Ready::Client => {
                    if !self.read(buf, stopping) {
                        // The client is gone: the session ends, and the
                        // job with it.
                        return self.session.handle_eof(Instant::now());
                    }
                    return;
                }
                Ready::Timeout => return self.session.handle_timeout(Instant::now()),
            }
        }
    }

    /// Waits up to `wait` for the bell, the client hanging up, or, while
    /// the session takes input, the client's bytes.
    fn poll(&self, wait: Duration) -> Ready {
        let client = if self.session.wants_input() {
            PollFlags::IN
        } else {
            // A hang-up is reported whatever is asked for.
            PollFlags::empty()
        };
        let mut fds = [
            PollFd::new(&self.wake.heard, PollFlags::IN),
            PollFd::new(&self.stream, client),
        ];
        let wait = Timespec::try_from(wait.max(Duration::from_millis(1))).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
        match rustix::event::poll(&mut fds, Some(&wait)) {
            Ok(0) => return Ready::Timeout,
            // An interrupted poll is tried again by the caller's loop.
            Err(_) => return Ready::Bell,
            Ok(_) => {}
        }
        if fds[1].revents().intersects(PollFlags::HUP | PollFlags::ERR) {
            Ready::HungUp
        } else if !fds[0].revents().is_empty() {
            Ready::Bell
        } else {
            Ready::Client
        }
    }
}

/// What [`Driver::poll`] saw.
enum Ready {
    Bell,
    Client,
    HungUp,
    Timeout,
}

/// True when the timeout in force is not within [`TIMEOUT_SLACK`] of `wanted`.
fn differs(in_force: Option<Duration>, wanted: Duration) -> bool {
    in_force.is_none_or(|current| current.abs_diff(wanted) > TIMEOUT_SLACK)
}

/// How long a blocking socket call may wait: until `deadline`, at least
/// [`SHORTEST_WAIT`]; with no deadline, a day (the session then only
/// waits for its peer, and nothing else is due).
fn wait_until(deadline: Option<Instant>) -> Duration {
    deadline
        .map_or(Duration::from_secs(86_400), |at| {
            at.saturating_duration_since(Instant::now())
        })
        .max(SHORTEST_WAIT)
}
