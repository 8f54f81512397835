//! The response object a wrapped WSGI application returns to its server:
//! `WSGIBody`, and `WSGISizedBody` for a list or tuple.
//!
//! Written against the C API rather than as `#[pyclass]`es because one is
//! made, iterated, closed and freed on every request, and each of those
//! four steps through pyo3 costs an entry trampoline (the GIL count in a
//! thread-local, a panic guard, the reference pool), an allocation through
//! `tp_alloc` and a free: ≈1,000 instructions a request, more than half of
//! the wrapper's whole cost (`BENCHMARKS.md`, "what `WSGIApplicationWrapper`
//! costs a request"). Here the types come from `PyType_FromSpec` (the
//! stable ABI, one abi3 wheel), and freed objects are kept in a short free
//! list, as CPython keeps its own small objects: the next request's body
//! reuses one without touching the allocator.
//!
//! Every function here is called by the interpreter with the GIL held, and
//! none can panic: the free lists and the type pointers are read and written
//! only under the GIL.

use std::cell::UnsafeCell;
use std::ffi::{CStr, c_int, c_void};
use std::ptr::null_mut;

use pyo3::ffi;
use pyo3::prelude::*;

use super::heap_type::{self, slot};
use super::{Ticket, untrack};

/// The layout of both body types.
#[repr(C)]
struct BodyObject {
    ob_base: ffi::PyObject,
    /// The application's iterable (a strong reference), null once cleared
    /// by the garbage collector.
    inner: *mut ffi::PyObject,
    /// The request this body ends, 0 once ended.
    ticket: Ticket,
}

/// Which of the two types.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Any iterable: `close()` calls its `close()`, if it has one.
    Any,
    /// A list or tuple: it has a `len()` (wsgiref and waitress read it to
    /// set `Content-Length`) and no `close()` to call.
    Sized,
}

/// The most freed bodies kept per type. A worker serves its requests one
/// at a time (or a few, threaded), so a handful covers the steady state.
const FREE_LIST: usize = 16;

struct TypeState {
    /// The type object, made at module initialisation (a strong reference
    /// kept for the life of the process).
    tp: *mut ffi::PyTypeObject,
    free: [*mut BodyObject; FREE_LIST],
    len: usize,
}

/// State only touched with the GIL held.
struct GilCell<T>(UnsafeCell<T>);

// SAFETY: every access goes through `GilCell::get`, whose callers hold the
// GIL, which serialises them.
unsafe impl<T> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    /// # Safety
    /// The caller holds the GIL and does not call back into Python (which
    /// could re-enter) while it uses the reference.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get(&self) -> &mut T {
        // SAFETY: the GIL serialises access, as the caller promises.
        unsafe { &mut *self.0.get() }
    }
}

const EMPTY: TypeState = TypeState {
    tp: null_mut(),
    free: [null_mut(); FREE_LIST],
    len: 0,
};

static STATES: GilCell<[TypeState; 2]> = GilCell(UnsafeCell::new([EMPTY, EMPTY]));

fn index(kind: Kind) -> usize {
    match kind {
        Kind::Any => 0,
        Kind::Sized => 1,
    }
}

/// Makes both types and adds them to `module` (as `WSGIBody` and
/// `WSGISizedBody`); called once, at module initialisation.
pub(crate) fn add_types(module: &Bound<'_, PyModule>) -> PyResult<()> {
    for (kind, name) in [(Kind::Any, "WSGIBody"), (Kind::Sized, "WSGISizedBody")] {
        let tp = heap_type::make(module, name, spec(kind))?;
        // SAFETY: the GIL is held (we have `module`).
        unsafe {
            STATES.get()[index(kind)].tp = tp;
        }
    }
    Ok(())
}

fn spec(kind: Kind) -> *mut ffi::PyType_Spec {
    let (name, doc): (&'static CStr, &'static CStr) = match kind {
        Kind::Any => (
            c"ispyd._native.WSGIBody",
            c"A wrapped application's response, as its server sees it: iterating it \
              iterates the application's iterable; close() closes that (once) and ends \
              the request.",
        ),
        Kind::Sized => (
            c"ispyd._native.WSGISizedBody",
            c"A wrapped application's list or tuple response: its len(), its items, and \
              a close() that ends the request.",
        ),
    };
    let close_doc: &'static CStr = match kind {
        Kind::Any => c"Closes the application's iterable (once) and ends the request.",
        Kind::Sized => c"Ends the request (a list or tuple has no close() to call).",
    };
    let methods = Box::leak(Box::new([
        ffi::PyMethodDef {
            ml_name: c"close".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunction: match kind {
                    Kind::Any => close_any,
                    Kind::Sized => close_sized,
                },
            },
            ml_flags: ffi::METH_NOARGS,
            ml_doc: close_doc.as_ptr(),
        },
        ffi::PyMethodDef::zeroed(),
    ]));
    let mut slots = vec![
        slot(ffi::Py_tp_doc, doc.as_ptr() as *mut c_void),
        slot(ffi::Py_tp_iter, iter as *mut c_void),
        slot(ffi::Py_tp_methods, methods.as_mut_ptr().cast()),
        slot(ffi::Py_tp_dealloc, dealloc as *mut c_void),
        slot(ffi::Py_tp_traverse, traverse as *mut c_void),
        slot(ffi::Py_tp_clear, clear as *mut c_void),
    ];
    if kind == Kind::Sized {
        slots.push(slot(ffi::Py_sq_length, length as *mut c_void));
    }
    // Not a base type (nothing may subclass it and change its layout), and
    // with no `__new__`: only the wrapper makes bodies.
    heap_type::spec::<BodyObject>(
        name,
        ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_HAVE_GC,
        slots,
    )
}

/// A body of `kind` holding `inner`, which ends request `ticket`.
pub(super) fn new<'py>(
    kind: Kind,
    inner: Bound<'py, PyAny>,
    ticket: Ticket,
) -> PyResult<Bound<'py, PyAny>> {
    let py = inner.py();
    // SAFETY: the GIL is held; nothing below calls into Python before the
    // state is left.
    let state = unsafe { &mut STATES.get()[index(kind)] };
    let object = if state.len > 0 {
        state.len -= 1;
        let object = state.free[state.len];
        // SAFETY: a freed body of this type: untracked, its fields cleared,
        // its memory still its own. `PyObject_Init` gives it its type (and a
        // reference to it) and a reference count of 1, as a fresh object.
        unsafe { ffi::PyObject_Init(object.cast(), state.tp) };
        object
    } else {
        if state.tp.is_null() {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "ispyd's WSGI body types are not initialised",
            ));
        }
        // SAFETY: `tp` is a live type; the allocation is zeroed and, for a
        // GC type, tracked.
        let object = unsafe { ffi::PyType_GenericAlloc(state.tp, 0) }.cast::<BodyObject>();
        if object.is_null() {
            return Err(heap_type::fetch(py));
        }
        // Tracked from birth; untracked until the fields are set, below.
        // SAFETY: a live GC object.
        unsafe { ffi::PyObject_GC_UnTrack(object.cast()) };
        object
    };
    // SAFETY: `object` is a live body that no one else references yet.
    unsafe {
        (*object).inner = inner.into_ptr();
        (*object).ticket = ticket;
        ffi::PyObject_GC_Track(object.cast());
        Ok(Bound::from_owned_ptr(py, object.cast()))
    }
}

/// The request's ticket, leaving 0 (ended) behind.
///
/// # Safety
/// `object` is a live body; the GIL is held.
unsafe fn take_ticket(object: *mut ffi::PyObject) -> Ticket {
    let body = object.cast::<BodyObject>();
    // SAFETY: as the caller promises.
    unsafe { std::mem::take(&mut (*body).ticket) }
}

/// Ends the body's request, if it has not ended.
///
/// # Safety
/// As for [`take_ticket`].
unsafe fn end(object: *mut ffi::PyObject) {
    // SAFETY: as the caller promises.
    let ticket = unsafe { take_ticket(object) };
    if ticket != 0 {
        // SAFETY: the caller holds the GIL.
        untrack(unsafe { Python::assume_attached() }, ticket);
    }
}

/// `iter(body)`: the application's iterable's own iterator, so chunks never
/// pass through ispyd.
unsafe extern "C" fn iter(object: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: the interpreter calls this with a live body and the GIL.
    unsafe {
        let inner = (*object.cast::<BodyObject>()).inner;
        if inner.is_null() {
            ffi::PyErr_SetString(
                ffi::PyExc_ValueError,
                c"the response was cleared by the garbage collector".as_ptr(),
            );
            return null_mut();
        }
        ffi::PyObject_GetIter(inner)
    }
}

/// `len(body)` of a list or tuple response.
unsafe extern "C" fn length(object: *mut ffi::PyObject) -> ffi::Py_ssize_t {
    // SAFETY: as for `iter`.
    unsafe {
        let inner = (*object.cast::<BodyObject>()).inner;
        if inner.is_null() {
            return 0;
        }
        ffi::PyObject_Size(inner)
    }
}

/// `close()` of a list or tuple response: ends the request, once.
unsafe extern "C" fn close_sized(
    object: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the interpreter calls this with a live body and the GIL.
    unsafe { end(object) };
    none()
}

/// `close()` of any other response: the iterable's own `close()` (if it
/// has one), once, then the end of the request, whether that raised or
/// not; its exception, if any, goes to the server unchanged.
unsafe extern "C" fn close_any(
    object: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the interpreter calls this with a live body and the GIL.
    unsafe {
        let ticket = take_ticket(object);
        if ticket == 0 {
            return none();
        }
        let inner = (*object.cast::<BodyObject>()).inner;
        let closed = if inner.is_null() {
            none()
        } else {
            call_close(inner)
        };
        if closed.is_null() {
            // Ending the request may run a finalizer (the environ's last
            // reference); the close's exception must survive it.
            let (mut kind, mut value, mut traceback) = (null_mut(), null_mut(), null_mut());
            ffi::PyErr_Fetch(&mut kind, &mut value, &mut traceback);
            untrack(Python::assume_attached(), ticket);
            ffi::PyErr_Restore(kind, value, traceback);
        } else {
            untrack(Python::assume_attached(), ticket);
        }
        closed
    }
}

/// `inner.close()` if `inner` has a `close`; `None` if not.
///
/// # Safety
/// `inner` is live; the GIL is held.
unsafe fn call_close(inner: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: as the caller promises; the name is an interned string that
    // lives as long as the interpreter.
    unsafe {
        let py = Python::assume_attached();
        let name = pyo3::intern!(py, "close");
        let close = ffi::PyObject_GetAttr(inner, name.as_ptr());
        if close.is_null() {
            if ffi::PyErr_ExceptionMatches(ffi::PyExc_AttributeError) != 0 {
                ffi::PyErr_Clear();
                return none();
            }
            return null_mut();
        }
        let result = ffi::PyObject_CallObject(close, null_mut());
        ffi::Py_DecRef(close);
        result
    }
}

/// A new reference to `None`.
fn none() -> *mut ffi::PyObject {
    // SAFETY: `Py_None` is immortal in effect; the caller holds the GIL.
    unsafe {
        let none = ffi::Py_None();
        ffi::Py_IncRef(none);
        none
    }
}

unsafe extern "C" fn traverse(
    object: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: the collector calls this with a live body.
    unsafe { heap_type::traverse_one(object, (*object.cast::<BodyObject>()).inner, visit, arg) }
}

unsafe extern "C" fn clear(object: *mut ffi::PyObject) -> c_int {
    // SAFETY: the collector calls this with a live body and the GIL.
    unsafe { heap_type::clear_one(&raw mut (*object.cast::<BodyObject>()).inner) };
    0
}

/// Frees a body: ends its request if `close()` never came (a server that
/// breaks PEP 3333), drops the iterable, and keeps the memory for the next
/// body if the free list has room.
unsafe extern "C" fn dealloc(object: *mut ffi::PyObject) {
    // SAFETY: the interpreter calls this once, with the GIL, when the last
    // reference goes.
    unsafe {
        ffi::PyObject_GC_UnTrack(object.cast());
        end(object);
        let body = object.cast::<BodyObject>();
        // May run Python code (a generator's finally, a finalizer), which
        // may make and free other bodies: the free list is looked at only
        // after.
        heap_type::clear_one(&raw mut (*body).inner);
        let tp = ffi::Py_TYPE(object);
        let state = STATES
            .get()
            .iter_mut()
            .find(|state| state.tp == tp)
            .filter(|state| state.len < FREE_LIST);
        match state {
            Some(state) => {
                state.free[state.len] = body;
                state.len += 1;
                // Each instance holds a reference to its heap type; a body
                // in the free list holds none until `PyObject_Init`.
                ffi::Py_DecRef(tp.cast());
            }
            None => heap_type::free(object),
        }
    }
}
