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
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use ispyd_core::{Action, CloseReason, Dispatcher, Job, JobDone, Registry, Session};

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
}

/// A thread that runs the session's slow jobs one at a time.
struct Worker {
    jobs: Sender<Job>,
}

impl Worker {
    fn spawn(registry: Arc<Registry>, session: u64, done: Sender<Wake>) -> std::io::Result<Worker> {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name(format!("ispyd-call-{session}"))
            .spawn(move || {
                for job in job_rx {
                    if done.send(Wake::Done(job.run(&registry))).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Worker { jobs })
    }
}

/// Runs one session until it closes, and says why it ended (`None`: the
/// connection failed). Never panics on I/O errors: they end the session.
/// `wake` is the session's channel: its workers report on it, and the
/// manager sends [`Wake::Shutdown`] on it (with `stopping` set) to stop a
/// session that waits for a call.
pub(crate) fn serve(
    stream: Stream,
    session: Session,
    registry: Arc<Registry>,
    stopping: &AtomicBool,
    wake: (Sender<Wake>, Receiver<Wake>),
) -> Option<CloseReason> {
    let mut driver = Driver {
        stream,
        session,
        dispatcher: Dispatcher::new(),
        registry,
        wake_tx: wake.0,
        wake: wake.1,
        worker: None,
        reason: None,
        read_timeout: None,
        write_timeout: None,
    };
    driver.run(stopping);
    let _ = driver.stream.shutdown(Shutdown::Both);
    driver.reason
}

struct Driver {
    stream: Stream,
    session: Session,
    dispatcher: Dispatcher,
    registry: Arc<Registry>,
    wake_tx: Sender<Wake>,
    wake: Receiver<Wake>,
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
            if self.session.is_closed() {
                return;
            }
            let deadline = self.session.poll_timeout();
            if self.dispatcher.running().is_some() {
                self.wait_for_job(deadline);
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
            match self.stream.read(&mut buf) {
                Ok(0) if stopping.load(Ordering::SeqCst) => {
                    self.session.handle_shutdown(Instant::now())
                }
                Ok(0) => self.session.handle_eof(Instant::now()),
                Ok(n) => self.session.handle_input(&buf[..n], Instant::now()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    self.session.handle_timeout(Instant::now())
                }
                Err(_) => return,
            }
        }
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
                Action::Forget(_) => self.worker = None,
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

    fn dispatch(&mut self, job: Job) {
        let id = job.id();
        if self.worker.is_none() {
            let done = self.wake_tx.clone();
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
        let sent = self
            .worker
            .as_ref()
            .is_some_and(|w| w.jobs.send(job).is_ok());
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

    /// Waits until the running job is done, the host stops ispyd, or the
    /// session's next deadline (its call timeout) comes.
    fn wait_for_job(&mut self, deadline: Option<Instant>) {
        // The driver holds a sender of its own: the channel never
        // disconnects, so an error here is only the deadline.
        let woke = match deadline {
            Some(deadline) => self
                .wake
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .ok(),
            None => self.wake.recv().ok(),
        };
        match woke {
            Some(Wake::Done(done)) => {
                let _ = self
                    .dispatcher
                    .handle_done(&mut self.session, done, Instant::now());
            }
            Some(Wake::Shutdown) => self.session.handle_shutdown(Instant::now()),
            None => self.session.handle_timeout(Instant::now()),
        }
    }
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
