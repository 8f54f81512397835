//! Which greenlet is running: for the WSGI wrapper to record the greenlet
//! serving a request under gevent or eventlet, where every request of a
//! process runs on one OS thread, each in a greenlet of its own.
//!
//! Read through greenlet's C API (`greenlet._C_API`, the table its
//! `greenlet.h` documents): the current greenlet and whether it is its
//! thread's main greenlet, a few nanoseconds, no Python code. ispyd never
//! imports greenlet: a process that has not imported it has no greenlets,
//! and each thread looks for it in `sys.modules` at its first request and
//! then once every [`LOOK_EVERY`] requests (the lookup costs tens of
//! nanoseconds, a tenth of what the wrapper costs a request), until it is
//! found, once for the process: a thread that starts serving after
//! greenlet was imported finds it at once.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// How many requests a thread serves between two looks for greenlet.
const LOOK_EVERY: u32 = 1024;

/// The entries of greenlet's C API table that ispyd calls (`greenlet.h`:
/// `PyGreenlet_GetCurrent_NUM`, `PyGreenlet_MAIN_NUM`), present from
/// greenlet 3.
const GET_CURRENT: usize = 4;
const MAIN: usize = 8;

/// greenlet's C API table, once found; null before.
static API: AtomicPtr<*const c_void> = AtomicPtr::new(std::ptr::null_mut());

thread_local! {
    /// Requests this thread serves before it looks for greenlet again.
    static UNTIL_LOOK: Cell<u32> = const { Cell::new(0) };
}

/// The greenlet running on the calling thread, unless it is the thread's
/// main greenlet (the thread's own stack is then the greenlet's) or
/// greenlet is not in use.
#[inline(always)]
pub(crate) fn current(py: Python<'_>) -> Option<Py<PyAny>> {
    let mut table = API.load(Ordering::Acquire);
    if table.is_null() {
        let due = UNTIL_LOOK.with(|until| match until.get() {
            0 => {
                until.set(LOOK_EVERY);
                true
            }
            n => {
                until.set(n - 1);
                false
            }
        });
        if !due {
            return None;
        }
        table = look(py)?;
    }
    // SAFETY: `table` is greenlet's C API table, checked to be of a
    // greenlet that has these entries, with these signatures
    // (`greenlet.h`); the GIL is held.
    unsafe {
        let get_current: extern "C" fn() -> *mut ffi::PyObject =
            std::mem::transmute(*table.add(GET_CURRENT));
        let is_main: extern "C" fn(*mut ffi::PyObject) -> c_int =
            std::mem::transmute(*table.add(MAIN));
        let current = get_current();
        if current.is_null() {
            // Out of memory making the thread's main greenlet: no
            // greenlet to record, and nothing to raise in the request.
            ffi::PyErr_Clear();
            return None;
        }
        let current = Bound::from_owned_ptr(py, current).unbind();
        (is_main(current.as_ptr()) == 0).then_some(current)
    }
}

/// Looks for greenlet in `sys.modules`; its C API table if found.
///
/// Out of line: inlined, its setup cost every request a dozen instructions
/// (callgrind).
#[cold]
#[inline(never)]
fn look(py: Python<'_>) -> Option<*mut *const c_void> {
    let name = PyString::new(py, "greenlet");
    // SAFETY: the GIL is held; `name` is a live str. PyImport_GetModule
    // returns a new reference or null, and imports nothing.
    let module = unsafe { ffi::PyImport_GetModule(name.as_ptr()) };
    if module.is_null() {
        // SAFETY: as above; a lookup that failed leaves no error behind.
        unsafe { ffi::PyErr_Clear() };
        return None;
    }
    // SAFETY: a new reference, owned here.
    let module = unsafe { Bound::from_owned_ptr(py, module) };
    let major: Option<u32> = module
        .getattr("__version__")
        .ok()
        .and_then(|version| version.extract::<String>().ok())
        .and_then(|version| version.split('.').next()?.parse().ok());
    if major.is_none_or(|major| major < 3) {
        // An older greenlet may lack the entries: requests are listed by
        // thread, as without greenlet. Looked at again later, harmlessly.
        return None;
    }
    // SAFETY: the GIL is held; greenlet is imported, so this imports
    // nothing, and returns the capsule's pointer or null with an error.
    let table = unsafe { ffi::PyCapsule_Import(c"greenlet._C_API".as_ptr(), 0) };
    if table.is_null() {
        // SAFETY: as above.
        unsafe { ffi::PyErr_Clear() };
        return None;
    }
    let table = table.cast::<*const c_void>();
    API.store(table, Ordering::Release);
    Some(table)
}
