//! What the WSGI module's C-API types ([`super::wrapper`], [`super::body`])
//! share: making a type from its spec, and the garbage-collector and
//! deallocation steps of an object that holds one reference.

use std::ffi::{CStr, c_int, c_void};
use std::ptr::null_mut;

use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;

/// A slot of a `PyType_Spec`.
pub(super) fn slot(slot: c_int, pfunc: *mut c_void) -> ffi::PyType_Slot {
    ffi::PyType_Slot { slot, pfunc }
}

/// A `PyType_Spec` named `name`, for objects of type `T`, with `slots`
/// (closed here by the zero slot), leaked: a type points into its spec for
/// as long as it lives.
pub(super) fn spec<T>(
    name: &'static CStr,
    flags: std::ffi::c_ulong,
    mut slots: Vec<ffi::PyType_Slot>,
) -> *mut ffi::PyType_Spec {
    slots.push(slot(0, null_mut()));
    Box::leak(Box::new(ffi::PyType_Spec {
        name: name.as_ptr(),
        basicsize: c_int::try_from(size_of::<T>()).unwrap_or(c_int::MAX),
        itemsize: 0,
        flags: flags as _,
        slots: Box::leak(slots.into_boxed_slice()).as_mut_ptr(),
    }))
}

/// Makes the type `spec` describes and adds it to `module` as `name`;
/// returns a reference to it that is kept for the life of the process.
pub(super) fn make(
    module: &Bound<'_, PyModule>,
    name: &str,
    spec: *mut ffi::PyType_Spec,
) -> PyResult<*mut ffi::PyTypeObject> {
    let py = module.py();
    // SAFETY: `spec` is leaked (see [`spec`]), so it lives as long as the
    // type, as `PyType_FromSpec` requires.
    let tp = unsafe { ffi::PyType_FromSpec(spec) };
    if tp.is_null() {
        return Err(fetch(py));
    }
    // SAFETY: a new reference; the module takes one more, and this one is
    // never released.
    let tp = unsafe { Bound::from_owned_ptr(py, tp) };
    module.add(name, &tp)?;
    Ok(tp.into_ptr().cast())
}

/// The pending exception, or a `RuntimeError` if CPython failed without
/// setting one.
pub(super) fn fetch(py: Python<'_>) -> PyErr {
    PyErr::take(py).unwrap_or_else(|| PyRuntimeError::new_err("failed without an exception"))
}

/// `tp_traverse` of an object holding `field` (or null): visits it, then
/// the object's type, as instances of heap types must (Python 3.9+).
///
/// # Safety
/// Called from a `tp_traverse` with its arguments; `field` is live or null.
pub(super) unsafe fn traverse_one(
    object: *mut ffi::PyObject,
    field: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: as the caller promises.
    unsafe {
        if !field.is_null() {
            let visited = visit(field, arg);
            if visited != 0 {
                return visited;
            }
        }
        visit(ffi::Py_TYPE(object).cast(), arg)
    }
}

/// Nulls `*field`, then releases what it held, as `Py_CLEAR` does: the
/// release may run Python code, which must not find the reference again.
///
/// # Safety
/// `field` points into a live object; the GIL is held.
pub(super) unsafe fn clear_one(field: *mut *mut ffi::PyObject) {
    // SAFETY: as the caller promises.
    unsafe {
        let held = std::ptr::replace(field, null_mut());
        if !held.is_null() {
            ffi::Py_DecRef(held);
        }
    }
}

/// The last step of a `tp_dealloc`: frees `object` with its type's
/// `tp_free`, then releases the reference each instance of a heap type
/// holds to it.
///
/// # Safety
/// `object` is untracked, its fields released, and nothing uses it again.
pub(super) unsafe fn free(object: *mut ffi::PyObject) {
    // SAFETY: as the caller promises; a heap type always has `tp_free`.
    unsafe {
        let tp = ffi::Py_TYPE(object);
        let free = ffi::PyType_GetSlot(tp, ffi::Py_tp_free);
        if !free.is_null() {
            let free = std::mem::transmute::<*mut c_void, ffi::freefunc>(free);
            free(object.cast());
        }
        ffi::Py_DecRef(tp.cast());
    }
}
