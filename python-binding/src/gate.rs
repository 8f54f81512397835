//! Keeping ispyd's threads out of the interpreter once it begins to end.
//!
//! Plugin calls run Python on ispyd's own threads. If the interpreter starts
//! finalizing while one of them is inside a call, CPython (before 3.14)
//! ends that thread with `pthread_exit` the next time it takes the GIL
//! back; the forced unwind runs pyo3's guard, which releases a thread state
//! that is no longer current, and the process aborts ("PyGILState_Release:
//! thread state ... must be current") or crashes instead of exiting.
//!
//! So every call enters through [`enter`], and at interpreter exit (from an
//! `atexit` handler, while the interpreter is still whole)
//! [`close_python_calls`] refuses
//! new calls and waits for the running ones: first for them to finish, then
//! after raising `SystemExit` in them (a console stuck in a loop), each wait
//! bounded. A call still blocked in C code after that stays blocked through
//! the exit and is ended with the process.

use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use pyo3::ffi;
use pyo3::prelude::*;

struct Gate {
    state: Mutex<State>,
    left: Condvar,
}

struct State {
    closed: bool,
    /// The Python thread ids of the threads inside a call.
    running: Vec<std::ffi::c_ulong>,
}

impl Gate {
    const fn new() -> Gate {
        Gate {
            state: Mutex::new(State {
                closed: false,
                running: Vec::new(),
            }),
            left: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

static FIRST: Gate = Gate::new();

/// The gate in use: [`FIRST`] until a fork, then one made for the child.
static CURRENT: AtomicPtr<Gate> = AtomicPtr::new(ptr::null_mut());

fn gate() -> &'static Gate {
    let current = CURRENT.load(Ordering::Acquire);
    if current.is_null() {
        &FIRST
    } else {
        // SAFETY: only ever set to a leaked Box, valid for ever.
        unsafe { &*current }
    }
}

/// In a child after `fork()`: a fresh gate. The parent's call threads do
/// not exist here, and one of them may have held the old gate's lock at
/// the fork, which would then stay locked; the old gate is left unused.
pub(crate) fn reset_after_fork() {
    CURRENT.store(Box::into_raw(Box::new(Gate::new())), Ordering::Release);
}

/// A thread's permission to run Python; dropping it says the call is over.
#[must_use = "the call counts as running until the entry is dropped"]
pub(crate) struct Entry {
    gate: &'static Gate,
    ident: std::ffi::c_ulong,
}

/// Lets the calling thread into the interpreter, unless the interpreter is
/// ending. Hold the entry for as long as the thread may run Python.
pub(crate) fn enter() -> Option<Entry> {
    // SAFETY: needs no GIL; the same id as threading.get_ident().
    let ident = unsafe { ffi::PyThread_get_thread_ident() };
    let gate = gate();
    let mut state = gate.state();
    if state.closed {
        return None;
    }
    state.running.push(ident);
    Some(Entry { gate, ident })
}

impl Drop for Entry {
    fn drop(&mut self) {
        let mut state = self.gate.state();
        if let Some(at) = state.running.iter().position(|&id| id == self.ident) {
            state.running.swap_remove(at);
        }
        self.gate.left.notify_all();
    }
}

/// The message a call refused by a closed gate gives.
pub(crate) const CLOSED: &str = "the Python interpreter is shutting down; no more Python commands";

/// At interpreter exit: refuses new calls and waits for the running ones,
/// at most `timeout` seconds twice (see the module doc). Returns how many
/// calls are still running.
#[pyfunction]
pub(crate) fn close_python_calls(py: Python<'_>, timeout: f64) -> usize {
    let timeout = Duration::try_from_secs_f64(timeout).unwrap_or(Duration::ZERO);
    gate().state().closed = true;
    if py.detach(|| wait_until_idle(timeout)) == 0 {
        return 0;
    }
    interrupt_running(py);
    py.detach(|| wait_until_idle(timeout))
}

/// Waits, without the GIL, for the running calls to end; returns how many
/// are left.
fn wait_until_idle(timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    let gate = gate();
    let mut state = gate.state();
    loop {
        let now = Instant::now();
        if state.running.is_empty() || now >= deadline {
            return state.running.len();
        }
        state = gate
            .left
            .wait_timeout(state, deadline - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// Raises `SystemExit` in every thread still inside a call; it takes effect
/// when that thread next runs Python bytecode.
fn interrupt_running(_py: Python<'_>) {
    let running = gate().state().running.clone();
    for ident in running {
        // SAFETY: the GIL is held (`_py`); the id names a live thread or
        // none, and an unknown id is a no-op returning 0.
        unsafe {
            ffi::PyThreadState_SetAsyncExc(ident as std::ffi::c_long, ffi::PyExc_SystemExit);
        }
    }
}
