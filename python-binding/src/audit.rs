//! The audit trail (`ispyd::audit` records) into Python's `logging`.
//!
//! `pyo3-log` does the bridging, but a record handed to it takes the GIL,
//! and a session must never wait for the GIL to say hello: a C extension
//! that holds it for seconds would stall every handshake. So ispyd's
//! logger only queues the record; one thread, `ispyd-audit`, started at the
//! first record (and again in a forked child, where it does not exist),
//! hands the records to Python in batches, each gathered for up to
//! [`GATHER`] so that a burst takes the GIL once. The queue is bounded: while
//! Python cannot take them, records past [`QUEUE`] are counted, and the
//! count is logged once Python takes records again. It is a channel that
//! allocates as it fills and frees as it empties, with a count for the
//! bound, so that a burst has room and an idle process keeps nothing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Metadata, Record};
use pyo3::prelude::*;

/// The most records waiting for the GIL (a few hundred bytes each).
const QUEUE: usize = 16_384;

/// How long the first record of a burst waits for the rest, and how often
/// the queue is emptied meanwhile (so that a burst does not fill it).
const GATHER: Duration = Duration::from_millis(10);
const GATHER_STEP: Duration = Duration::from_millis(1);

/// The most records handed to Python at once.
const BATCH: usize = 4096;

/// `first` and the records that follow it within [`GATHER`], at most
/// [`BATCH`]: the GIL is then taken once for all of them. A script that
/// connects again and again makes two records a connection; taking the GIL
/// for each, in competition with the host's own threads, cost each of its
/// connections more than the rest of the session's start (BENCHMARKS.md).
/// A record reaches `logging` at most [`GATHER`] later.
fn gather(first: Owned, inbox: &Inbox) -> Vec<Owned> {
    let mut batch = vec![first];
    let started = Instant::now();
    while started.elapsed() < GATHER && batch.len() < BATCH {
        thread::sleep(GATHER_STEP);
        let room = BATCH - batch.len();
        inbox.take_into(&mut batch, room);
    }
    batch
}

/// The receiving end of the queue, and the count of records in it.
struct Inbox {
    receiver: Receiver<Owned>,
    queued: Arc<AtomicUsize>,
}

impl Inbox {
    /// The next record, waiting for it; `None` once every sender is gone.
    fn recv(&self) -> Option<Owned> {
        let owned = self.receiver.recv().ok()?;
        self.queued.fetch_sub(1, Ordering::Relaxed);
        Some(owned)
    }

    /// Moves up to `room` of the records waiting now into `batch`.
    fn take_into(&self, batch: &mut impl Extend<Owned>, room: usize) {
        let mut taken = 0;
        batch.extend(self.receiver.try_iter().take(room).inspect(|_| taken += 1));
        self.queued.fetch_sub(taken, Ordering::Relaxed);
    }
}

/// A record taken out of its borrowed `log::Record`.
struct Owned {
    level: Level,
    target: String,
    message: String,
}

struct Queue {
    /// The process that started the thread: after `fork`, a child has no
    /// thread behind this sender.
    pid: u32,
    sender: Sender<Owned>,
    /// Records sent and not yet taken by the thread.
    queued: Arc<AtomicUsize>,
    dropped: u64,
}

impl Queue {
    /// Queues `owned` if there is room; false if not, or if the thread is
    /// gone.
    fn offer(&self, owned: Owned) -> Result<bool, ()> {
        if self.queued.load(Ordering::Relaxed) >= QUEUE {
            return Ok(false);
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        match self.sender.send(owned) {
            Ok(()) => Ok(true),
            Err(_) => Err(()),
        }
    }
}

/// The `log` facade's logger for a Python host.
struct Deferred {
    python: pyo3_log::Logger,
    queue: Mutex<Option<Queue>>,
}

impl Deferred {
    fn send(&self, record: Owned) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let pid = std::process::id();
        if queue.as_ref().is_none_or(|q| q.pid != pid) {
            *queue = start(pid);
        }
        let Some(q) = queue.as_mut() else {
            return;
        };
        if q.dropped > 0 {
            let note = Owned {
                level: Level::Warn,
                target: ispyd_core::audit::TARGET.to_owned(),
                message: format!(
                    "{} audit records were dropped while Python's logging did not take them",
                    q.dropped
                ),
            };
            match q.offer(note) {
                Ok(true) => q.dropped = 0,
                Ok(false) => {
                    q.dropped += 1;
                    return;
                }
                Err(()) => {
                    *queue = None;
                    return;
                }
            }
        }
        match q.offer(record) {
            Ok(true) => {}
            Ok(false) => q.dropped += 1,
            Err(()) => *queue = None,
        }
    }
}

static LOGGER: OnceLock<Deferred> = OnceLock::new();

/// Starts the thread that hands records to Python.
fn start(pid: u32) -> Option<Queue> {
    let (sender, receiver) = mpsc::channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let inbox = Inbox {
        receiver,
        queued: Arc::clone(&queued),
    };
    let spawned = ispyd_std::signals::with_signals_blocked(|| {
        thread::Builder::new()
            .name("ispyd-audit".to_owned())
            .spawn(move || forward(inbox))
    });
    spawned.ok().map(|_| Queue {
        pid,
        sender,
        queued,
        dropped: 0,
    })
}

fn forward(inbox: Inbox) {
    // A thread state of its own for the thread's whole life: without it
    // every record would create one and destroy it, and with it the
    // interpreter's frame stack, mapped and unmapped each time; an unmap
    // in a process with many threads costs a TLB shootdown on every CPU,
    // and made each connection slower as the host ran more threads.
    let Some(entry) = crate::gate::enter() else {
        return;
    };
    // SAFETY: the interpreter is running (the gate let us in); the state
    // made here is this thread's, the GIL is released at once and taken
    // again only through `Python::attach`, and both are undone below.
    let (gil, saved) = unsafe {
        let gil = pyo3::ffi::PyGILState_Ensure();
        (gil, pyo3::ffi::PyEval_SaveThread())
    };
    drop(entry);
    while let Some(first) = inbox.recv() {
        let Some(logger) = LOGGER.get() else {
            break;
        };
        let batch = gather(first, &inbox);
        let Some(_entry) = crate::gate::enter() else {
            // The interpreter is exiting: records now have nowhere to go.
            return;
        };
        Python::attach(|_| {
            let mut batch = VecDeque::from(batch);
            while let Some(owned) = batch.pop_front() {
                logger.python.log(
                    &Record::builder()
                        .level(owned.level)
                        .target(&owned.target)
                        .args(format_args!("{}", owned.message))
                        .build(),
                );
                // Handlers take time (a file written and flushed a record
                // at a time): what arrives meanwhile joins the batch, so
                // that the queue does not fill while Python works.
                let room = BATCH.saturating_sub(batch.len());
                inbox.take_into(&mut batch, room);
            }
        });
    }
    if let Some(_entry) = crate::gate::enter() {
        // SAFETY: undoes the two calls above, on the same thread.
        unsafe {
            pyo3::ffi::PyEval_RestoreThread(saved);
            pyo3::ffi::PyGILState_Release(gil);
        }
    }
}

impl Log for Deferred {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= Level::Info
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            self.send(Owned {
                level: record.level(),
                target: record.target().to_owned(),
                message: record.args().to_string(),
            });
        }
    }

    fn flush(&self) {}
}

/// Makes `log` records of this extension (the audit trail) go to Python's
/// `logging`: `ispyd::audit` becomes the logger `ispyd.audit`. Levels are
/// asked of Python at each record (records are rare), so configuring
/// `logging` after ispyd started still applies.
pub fn install(py: Python<'_>) -> PyResult<()> {
    let python = pyo3_log::Logger::new(py, pyo3_log::Caching::Loggers)?;
    let logger = LOGGER.get_or_init(|| Deferred {
        python,
        queue: Mutex::new(None),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
    Ok(())
}
