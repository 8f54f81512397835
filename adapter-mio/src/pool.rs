//! The bounded pool of threads that runs every job that is not inline, off
//! the loop.
//!
//! Theory of operation: jobs wait in one queue; up to `size` threads
//! (started on first use, never before) take them in order. A finished job
//! is put on the done list and the loop is woken through a [`Doorbell`]
//! (not a `mio::Waker`: mio allows one per `Poll`, and a host loop that
//! embeds ispyd may have its own). A job the core gave up on (`call_timeout`) still holds
//! its thread, maybe for ever (a call waiting for a GIL that is never let
//! go): the pool then may run one extra thread for each such job, so that
//! stuck calls never keep fresh ones waiting, and the extra thread leaves
//! once the stuck job comes back. At most [`MAX_STUCK`] such threads exist;
//! past that, new jobs wait like anything else in a full pool.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;

use ispyd_core::{CallId, Job, JobDone, Registry};

/// The most threads kept on jobs that were given up on.
const MAX_STUCK: usize = 16;

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    done: Vec<JobDone>,
    threads: usize,
    idle: usize,
    /// Jobs given up on that a thread may still be running.
    forgotten: HashSet<(u64, CallId)>,
    /// Jobs now running, by session and id.
    running: HashSet<(u64, CallId)>,
    /// Sessions whose running call reported progress since the loop last
    /// looked.
    progressed: Vec<u64>,
    stopping: bool,
}

impl State {
    /// How many threads may exist now.
    fn allowed(&self, size: usize) -> usize {
        size + self.forgotten.len().min(MAX_STUCK)
    }
}

/// Wakes the loop from another thread: a socket pair whose reading end is
/// registered on the loop's `Poll`.
pub(crate) struct Doorbell {
    ring: UnixStream,
}

impl Doorbell {
    /// The doorbell and the end to register (readable) on the loop.
    pub(crate) fn new() -> std::io::Result<(Doorbell, mio::net::UnixStream)> {
        let (ring, listen) = UnixStream::pair()?;
        ring.set_nonblocking(true)?;
        listen.set_nonblocking(true)?;
        Ok((Doorbell { ring }, mio::net::UnixStream::from_std(listen)))
    }

    /// The ringing end's descriptor.
    pub(crate) fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.ring)
    }

    fn ring(&self) {
        // A full socket already has a ring waiting to be heard.
        let _ = (&self.ring).write(b"!");
    }

    /// Empties the listening end, so that the next ring is a new edge.
    pub(crate) fn hear(listen: &mut mio::net::UnixStream) {
        let mut buf = [0u8; 256];
        loop {
            match listen.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    registry: Arc<Registry>,
    doorbell: Doorbell,
    size: usize,
}

/// A handle on the pool, owned by the loop.
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    /// A pool of at most `size` threads (at least one), none started yet.
    pub(crate) fn new(registry: Arc<Registry>, doorbell: Doorbell, size: usize) -> Pool {
        Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                work: Condvar::new(),
                registry,
                doorbell,
                size: size.max(1),
            }),
        }
    }

    /// Queues a job; a thread takes it as soon as one is free. `Err` gives
    /// the reason when no thread could be started to run it.
    pub(crate) fn submit(&self, job: Job) -> Result<(), (CallId, String)> {
        if let Some(progress) = job.progress() {
            // Weak: a queued job's progress must not keep the pool alive.
            let shared = Arc::downgrade(&self.shared);
            let session = job.session();
            progress.set_waker(Arc::new(move || {
                if let Some(shared) = shared.upgrade() {
                    shared.lock().progressed.push(session);
                    shared.doorbell.ring();
                }
            }));
        }
        let mut state = self.shared.lock();
        state.queue.push_back(job);
        self.shared.work.notify_one();
        self.grow(&mut state).map_err(|err| {
            let job = state.queue.pop_back().expect("just queued");
            (job.id(), err)
        })
    }

    /// The job `id` of `session` was given up on: its result, if it ever
    /// comes, will be late, and its thread does not count against the pool.
    pub(crate) fn forget(&self, session: u64, id: CallId) {
        let mut state = self.shared.lock();
        if state.running.contains(&(session, id)) {
            state.forgotten.insert((session, id));
            let _ = self.grow(&mut state);
        } else {
            // Still queued: it will never run.
            state
                .queue
                .retain(|job| (job.session(), job.id()) != (session, id));
        }
    }

    /// Takes every finished job.
    pub(crate) fn take_done(&self) -> Vec<JobDone> {
        std::mem::take(&mut self.shared.lock().done)
    }

    /// Takes the sessions whose call reported progress.
    pub(crate) fn take_progressed(&self) -> Vec<u64> {
        std::mem::take(&mut self.shared.lock().progressed)
    }

    /// Threads started so far (for statistics and tests).
    pub(crate) fn threads(&self) -> usize {
        self.shared.lock().threads
    }

    /// Starts a thread if a job waits, none is idle and the pool may grow.
    fn grow(&self, state: &mut MutexGuard<'_, State>) -> Result<(), String> {
        if state.queue.len() <= state.idle || state.threads >= state.allowed(self.shared.size) {
            return Ok(());
        }
        let shared = Arc::clone(&self.shared);
        let spawned = ispyd_std::signals::with_signals_blocked(|| {
            thread::Builder::new()
                .name("ispyd-worker".to_owned())
                .spawn(move || shared.work_loop())
        });
        match spawned {
            Ok(_) => {
                state.threads += 1;
                Ok(())
            }
            Err(err) if state.threads == 0 => Err(format!("cannot start a thread for it: {err}")),
            // A thread exists and will get to the job.
            Err(_) => Ok(()),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.stopping = true;
        state.queue.clear();
        self.shared.work.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn work_loop(&self) {
        let mut state = self.lock();
        loop {
            if state.stopping {
                state.threads -= 1;
                return;
            }
            let Some(job) = state.queue.pop_front() else {
                state.idle += 1;
                state = self
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                state.idle -= 1;
                continue;
            };
            let key = (job.session(), job.id());
            state.running.insert(key);
            drop(state);
            let done = job.run(&self.registry);
            state = self.lock();
            state.running.remove(&key);
            let was_forgotten = state.forgotten.remove(&key);
            if was_forgotten {
                // Dropped here, off the loop and outside the lock: a late
                // result may hold a takeover whose drop is slow (a Python
                // object waiting for the GIL).
                drop(state);
                drop(done);
                state = self.lock();
            } else {
                state.done.push(done);
                self.doorbell.ring();
            }
            if state.threads > state.allowed(self.size) {
                state.threads -= 1;
                return;
            }
        }
    }
}
