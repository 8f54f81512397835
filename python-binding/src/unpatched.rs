//! Threads, locks and events for ispyd's own Python code that green-thread
//! monkey-patching cannot replace.
//!
//! gevent's `monkey.patch_all()` and eventlet's `monkey_patch()` swap
//! `threading` and `_thread` for greenlet versions, in place: after them,
//! `threading.Thread` starts a greenlet on the calling thread's hub,
//! `threading.get_ident()` names a greenlet, and a lock or an event waits by
//! switching to the hub. ispyd's console runs each line on a thread of its
//! own so that Ctrl-C can interrupt it (by thread id), and its pdb talks to
//! its session through a condition; made with `threading` in a patched
//! process, the line would run as a greenlet on the session's thread, its
//! id would name no thread, and Ctrl-C would reach nothing. Whether ispyd
//! is imported before or after the patching, these stay the operating
//! system's: threads started here are native threads (as the sessions'
//! are), and waiting releases the GIL and blocks the calling thread.
//!
//! Waits are not interruptible by an exception raised in the waiting
//! thread (nor are `threading`'s); callers that must notice one wait in
//! slices.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;

use crate::gate;

/// `threading.get_ident()` of the calling thread as the interpreter has
/// it, whatever `threading` has been replaced with.
#[pyfunction]
pub(crate) fn thread_ident() -> u64 {
    // SAFETY: reads the calling thread's identity; no precondition.
    unsafe { ffi::PyThread_get_thread_ident() as u64 }
}

/// Runs `target()` on a new native thread named `name` (at most 15 bytes
/// reach the operating system), with the host's signals blocked in it, as
/// in every ispyd thread. An exception it raises is reported as
/// unraisable. Once the interpreter has begun to exit, it does not run.
#[pyfunction]
pub(crate) fn start_thread(target: Py<PyAny>, name: String) -> PyResult<()> {
    let spawned = ispyd_std::signals::with_signals_blocked(|| {
        std::thread::Builder::new().name(name).spawn(move || {
            let Some(_entry) = gate::enter() else {
                // Released by pyo3's pool at its next use of the GIL: the
                // interpreter is ending and must not be entered here.
                drop(target);
                return;
            };
            Python::attach(|py| {
                let target = target.into_bound(py);
                if let Err(err) = target.call0() {
                    err.write_unraisable(py, Some(&target));
                }
            });
        })
    });
    spawned
        .map(drop)
        .map_err(|err| PyRuntimeError::new_err(format!("cannot start a thread: {err}")))
}

/// A timeout in seconds as Python's `threading` takes it: `None` or a
/// negative number waits for ever.
fn deadline(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(seconds) if seconds.is_nan() => Err(PyValueError::new_err("timeout is not a number")),
        Some(seconds) if seconds < 0.0 => Ok(None),
        Some(seconds) => Ok(Some(
            Duration::try_from_secs_f64(seconds)
                .ok()
                .and_then(|wait| Instant::now().checked_add(wait))
                .unwrap_or_else(far_future),
        )),
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// Waits on `condvar` until `done` holds or `deadline` passes; whether it
/// holds.
fn wait_for<'a, T>(
    condvar: &Condvar,
    mut guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
    mut done: impl FnMut(&T) -> bool,
) -> (MutexGuard<'a, T>, bool) {
    while !done(&guard) {
        guard = match deadline {
            None => condvar.wait(guard).unwrap_or_else(PoisonError::into_inner),
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return (guard, false);
                }
                condvar
                    .wait_timeout(guard, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
    }
    (guard, true)
}

/// `threading.Event`, native: `set()`, `clear()`, `is_set()`,
/// `wait(timeout=None)`.
#[pyclass(module = "ispyd._native", name = "Event", frozen)]
#[derive(Default)]
pub(crate) struct Event {
    set: Mutex<bool>,
    changed: Condvar,
}

impl Event {
    fn flag(&self) -> MutexGuard<'_, bool> {
        self.set.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[pymethods]
impl Event {
    #[new]
    fn new() -> Event {
        Event::default()
    }

    fn set(&self) {
        *self.flag() = true;
        self.changed.notify_all();
    }

    fn clear(&self) {
        *self.flag() = false;
    }

    fn is_set(&self) -> bool {
        *self.flag()
    }

    /// Waits until the event is set, at most `timeout` seconds; whether
    /// it is set.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = deadline(timeout)?;
        if *self.flag() {
            return Ok(true);
        }
        Ok(py.detach(|| wait_for(&self.changed, self.flag(), deadline, |set| *set).1))
    }
}

/// `threading.Condition(threading.Lock())`, native: a lock (`acquire`,
/// `release`, `with`) that is also its own condition (`wait`,
/// `notify_all`).
#[pyclass(module = "ispyd._native", name = "Lock", frozen)]
#[derive(Default)]
pub(crate) struct Lock {
    state: Mutex<LockState>,
    /// Signalled when the lock is released.
    released: Condvar,
    /// Signalled by `notify_all`.
    notified: Condvar,
}

#[derive(Default)]
struct LockState {
    held: bool,
    /// Counts the notifications, so that a waiter tells its own wake-up
    /// from a spurious one.
    notifications: u64,
}

impl Lock {
    fn state(&self) -> MutexGuard<'_, LockState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn held_state(&self) -> PyResult<MutexGuard<'_, LockState>> {
        let state = self.state();
        if state.held {
            Ok(state)
        } else {
            Err(PyRuntimeError::new_err(
                "cannot do this with an un-acquired lock",
            ))
        }
    }

    /// Takes the lock, waiting without the GIL; whether it was taken.
    fn take(&self, py: Python<'_>, deadline: Option<Instant>) -> bool {
        {
            let mut state = self.state();
            if !state.held {
                state.held = true;
                return true;
            }
        }
        py.detach(|| {
            let (mut state, free) = wait_for(&self.released, self.state(), deadline, |s| !s.held);
            if free {
                state.held = true;
            }
            free
        })
    }
}

#[pymethods]
impl Lock {
    #[new]
    fn new() -> Lock {
        Lock::default()
    }

    #[pyo3(signature = (blocking=true, timeout=-1.0))]
    fn acquire(&self, py: Python<'_>, blocking: bool, timeout: f64) -> PyResult<bool> {
        let deadline = if blocking {
            deadline(Some(timeout))?
        } else {
            Some(Instant::now())
        };
        Ok(self.take(py, deadline))
    }

    fn release(&self) -> PyResult<()> {
        self.held_state()?.held = false;
        self.released.notify_one();
        Ok(())
    }

    fn locked(&self) -> bool {
        self.state().held
    }

    fn __enter__(&self, py: Python<'_>) -> bool {
        self.take(py, None)
    }

    fn __exit__(
        &self,
        _kind: Option<Bound<'_, PyAny>>,
        _value: Option<Bound<'_, PyAny>>,
        _traceback: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.release()
    }

    /// Releases the lock, waits to be notified (at most `timeout`
    /// seconds), takes the lock again; whether it was notified. The lock
    /// must be held.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = deadline(timeout)?;
        let mut state = self.held_state()?;
        let seen = state.notifications;
        state.held = false;
        drop(state);
        self.released.notify_one();
        Ok(py.detach(|| {
            let (state, notified) = wait_for(&self.notified, self.state(), deadline, |s| {
                s.notifications != seen
            });
            let (mut state, _) = wait_for(&self.released, state, None, |s| !s.held);
            state.held = true;
            notified
        }))
    }

    /// Wakes every thread waiting in `wait`. The lock must be held.
    fn notify_all(&self) -> PyResult<()> {
        let mut state = self.held_state()?;
        state.notifications += 1;
        drop(state);
        self.notified.notify_all();
        Ok(())
    }
}

/// The module's functions and types, for `_native`.
pub(crate) fn add_to(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(thread_ident, m)?)?;
    m.add_function(wrap_pyfunction!(start_thread, m)?)?;
    m.add_class::<Event>()?;
    m.add_class::<Lock>()?;
    Ok(())
}
