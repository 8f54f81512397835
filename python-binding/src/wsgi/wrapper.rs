//! `WSGIApplicationWrapper`, the type, written against the C API.
//!
//! A server calls the wrapper once per request, so the call is what counts.
//! A `#[pyclass]` under abi3 has only `tp_call`: CPython packs the server's
//! two arguments into a tuple to call it (≈200 instructions made and freed
//! per request), and pyo3's entry trampoline adds ≈170 more. This type
//! implements the vectorcall protocol (PEP 590) where the running Python
//! exports `PyObject_Vectorcall` (3.11 and later; in the stable ABI from
//! 3.12): the server's arguments arrive as the array it already has and go
//! on to the application as they came. On 3.9 and 3.10 the same type is
//! made without it and is called through `tp_call`, with the same
//! behaviour; the choice is made once, when the module is loaded, so one
//! abi3 wheel serves every version.
//!
//! Subclasses (`class Mine(WSGIApplicationWrapper)`) inherit `tp_call`
//! (CPython gives vectorcall only to immutable types) and so work on every
//! version.

use std::ffi::{CStr, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::{self, null_mut};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, Ordering};

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use pyo3::{ffi, intern};

use super::heap_type::{self, fetch, slot};
use super::serve;

#[repr(C)]
struct WrapperObject {
    ob_base: ffi::PyObject,
    /// Where `__vectorcalloffset__` points: CPython calls the instance
    /// through this.
    vectorcall: Option<ffi::vectorcallfunc>,
    /// The application (a strong reference), null once cleared by the
    /// garbage collector.
    application: *mut ffi::PyObject,
}

// CPython's values (`object.h`, `abstract.h`), which pyo3-ffi declares only
// for the versions whose limited API has them; the flags are the same bits
// from the version that introduced them on (vectorcall 3.8, immutable 3.10).
const HAVE_VECTORCALL: std::ffi::c_ulong = 1 << 11;
const IMMUTABLETYPE: std::ffi::c_ulong = 1 << 8;
const ARGUMENTS_OFFSET: libc::size_t = 1 << (libc::size_t::BITS - 1);

/// The type object, made once at module initialisation and never freed.
static TYPE: AtomicPtr<ffi::PyTypeObject> = AtomicPtr::new(null_mut());

/// `PyObject_Vectorcall` of the running interpreter, where it exports one.
static FORWARD: OnceLock<Option<ffi::vectorcallfunc>> = OnceLock::new();

/// `PyObject_Vectorcall`, where the interpreter exports it (see
/// [`crate::symbol`]).
fn find_forward() -> Option<ffi::vectorcallfunc> {
    let symbol = crate::symbol::find(c"PyObject_Vectorcall")?;
    // SAFETY: the interpreter's `PyObject_Vectorcall` has the C signature
    // of `vectorcallfunc` in every version that exports it.
    Some(unsafe { std::mem::transmute::<*mut c_void, ffi::vectorcallfunc>(symbol.as_ptr()) })
}

/// Makes the type and adds it to `module`; called once, at module
/// initialisation.
pub(crate) fn add_type(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let vectorcall = *FORWARD.get_or_init(|| {
        // Heap types honour `__vectorcalloffset__` from 3.9, but the
        // function to call onwards is exported only from 3.11.
        if py.version_info() >= (3, 11) {
            find_forward()
        } else {
            None
        }
    });
    let spec = spec(vectorcall.is_some(), py.version_info() >= (3, 10));
    let tp = heap_type::make(module, "WSGIApplicationWrapper", spec)?;
    TYPE.store(tp, Ordering::Release);
    Ok(())
}

fn spec(vectorcall: bool, immutable: bool) -> *mut ffi::PyType_Spec {
    let members = Box::leak(Box::new([
        ffi::PyMemberDef {
            name: c"__vectorcalloffset__".as_ptr(),
            type_code: ffi::Py_T_PYSSIZET,
            offset: std::mem::offset_of!(WrapperObject, vectorcall) as ffi::Py_ssize_t,
            flags: ffi::Py_READONLY,
            doc: ptr::null(),
        },
        ffi::PyMemberDef::default(),
    ]));
    let getset = Box::leak(Box::new([
        ffi::PyGetSetDef {
            name: c"__wrapped__".as_ptr(),
            get: Some(wrapped),
            set: None,
            doc: c"The wrapped application.".as_ptr(),
            closure: null_mut(),
        },
        ffi::PyGetSetDef::default(),
    ]));
    let doc: &'static CStr = c"WSGIApplicationWrapper(application)\n--\n\n\
        Wraps a WSGI application so that the wsgi plugin's `requests` command \
        sees every request it is serving.\n\n\
        Transparent to the server and the application: same arguments, same \
        response, same exceptions, close() called once, file wrappers passed \
        through for sendfile().";
    let mut slots = vec![
        slot(ffi::Py_tp_doc, doc.as_ptr() as *mut c_void),
        slot(ffi::Py_tp_new, new as *mut c_void),
        slot(ffi::Py_tp_call, call as *mut c_void),
        slot(ffi::Py_tp_descr_get, descr_get as *mut c_void),
        slot(ffi::Py_tp_repr, repr as *mut c_void),
        slot(ffi::Py_tp_getset, getset.as_mut_ptr().cast()),
        slot(ffi::Py_tp_dealloc, dealloc as *mut c_void),
        slot(ffi::Py_tp_traverse, traverse as *mut c_void),
        slot(ffi::Py_tp_clear, clear as *mut c_void),
    ];
    let mut flags = ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_BASETYPE | ffi::Py_TPFLAGS_HAVE_GC;
    if vectorcall {
        slots.push(slot(ffi::Py_tp_members, members.as_mut_ptr().cast()));
        flags |= HAVE_VECTORCALL;
    }
    if immutable {
        // Nobody may replace `__call__` on the type behind its vectorcall.
        flags |= IMMUTABLETYPE;
    }
    heap_type::spec::<WrapperObject>(c"ispyd._native.WSGIApplicationWrapper", flags, slots)
}

/// The arguments of a `tp_new` or `tp_call`: the tuple, and the keywords
/// (`None` for none).
///
/// # Safety
/// As the interpreter passes them: a live tuple, a live dict or null.
unsafe fn arguments<'py>(
    py: Python<'py>,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> PyResult<(Bound<'py, PyTuple>, Option<Bound<'py, PyDict>>)> {
    // SAFETY: as the caller promises.
    let (args, kwargs) = unsafe {
        (
            Bound::from_borrowed_ptr(py, args),
            Bound::from_borrowed_ptr_or_opt(py, kwargs),
        )
    };
    let kwargs = kwargs
        .map(|kwargs| kwargs.cast_into::<PyDict>())
        .transpose()?;
    Ok((args.cast_into::<PyTuple>()?, kwargs))
}

/// Runs `body` as a C-API entry point: its error is raised, and a panic
/// becomes a `RuntimeError` instead of crossing into C.
///
/// # Safety
/// Called by the interpreter, with the GIL held.
unsafe fn entry(
    body: impl FnOnce(Python<'_>) -> PyResult<*mut ffi::PyObject>,
) -> *mut ffi::PyObject {
    // SAFETY: the interpreter holds the GIL for us.
    let py = unsafe { Python::assume_attached() };
    let result = catch_unwind(AssertUnwindSafe(|| body(py))).unwrap_or_else(|_| {
        Err(PyRuntimeError::new_err(
            "ispyd's WSGI wrapper failed internally (a panic)",
        ))
    });
    match result {
        Ok(object) => object,
        Err(err) => {
            err.restore(py);
            null_mut()
        }
    }
}

/// The wrapped application of `object`, a live wrapper.
///
/// # Safety
/// `object` is a live instance of the type or a subclass; the GIL is held.
unsafe fn application<'py>(
    py: Python<'py>,
    object: *mut ffi::PyObject,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: as the caller promises.
    let application = unsafe { (*object.cast::<WrapperObject>()).application };
    if application.is_null() {
        return Err(PyRuntimeError::new_err(
            "this WSGIApplicationWrapper was cleared by the garbage collector",
        ));
    }
    // SAFETY: a live object the wrapper holds a reference to.
    Ok(unsafe { Bound::from_borrowed_ptr(py, application) })
}

/// `WSGIApplicationWrapper(application)`.
unsafe extern "C" fn new(
    subtype: *mut ffi::PyTypeObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the interpreter calls this with the GIL, a live type and
    // live (or null) arguments.
    unsafe {
        entry(|py| {
            let (args, kwargs) = arguments(py, args, kwargs)?;
            let kwargs = kwargs.filter(|kwargs| !kwargs.is_empty());
            let application = match (args.len(), kwargs) {
                (1, None) => args.get_item(0)?,
                (0, Some(kwargs)) if kwargs.len() == 1 => kwargs
                    .get_item(intern!(py, "application"))?
                    .ok_or_else(|| {
                        PyTypeError::new_err(
                            "WSGIApplicationWrapper() takes one argument, 'application'",
                        )
                    })?,
                _ => {
                    return Err(PyTypeError::new_err(
                        "WSGIApplicationWrapper() takes one argument, 'application'",
                    ));
                }
            };
            make(py, subtype, application)
        })
    }
}

/// A new wrapper of type `subtype` around `application`.
///
/// # Safety
/// `subtype` is the type or a subclass of it; the GIL is held.
unsafe fn make(
    py: Python<'_>,
    subtype: *mut ffi::PyTypeObject,
    application: Bound<'_, PyAny>,
) -> PyResult<*mut ffi::PyObject> {
    if !application.is_callable() {
        return Err(PyTypeError::new_err(format!(
            "WSGIApplicationWrapper wraps a WSGI application, a callable \
             taking (environ, start_response); got {}",
            application.repr()?
        )));
    }
    super::WRAPPED.store(true, Ordering::Relaxed);
    // SAFETY: a heap type (ours or a subclass), whose `tp_alloc` gives a
    // zeroed, tracked object of its size with a reference to the type.
    unsafe {
        let alloc = ffi::PyType_GetSlot(subtype, ffi::Py_tp_alloc);
        let alloc: ffi::allocfunc = if alloc.is_null() {
            ffi::PyType_GenericAlloc
        } else {
            std::mem::transmute::<*mut c_void, ffi::allocfunc>(alloc)
        };
        let object = alloc(subtype, 0);
        if object.is_null() {
            return Err(fetch(py));
        }
        let wrapper = object.cast::<WrapperObject>();
        (*wrapper).vectorcall = FORWARD
            .get()
            .copied()
            .flatten()
            .map(|_| vectorcall as ffi::vectorcallfunc);
        (*wrapper).application = application.into_ptr();
        Ok(object)
    }
}

/// A call through the vectorcall protocol: the server's arguments as they
/// are, passed on to the application the same way.
unsafe extern "C" fn vectorcall(
    callable: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: libc::size_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the interpreter calls this with the GIL, a live wrapper, and
    // `nargs` positional arguments followed by one per name in `kwnames`.
    unsafe {
        entry(|py| {
            let application = application(py, callable)?;
            let Some(forward) = FORWARD.get().copied().flatten() else {
                return Err(PyRuntimeError::new_err(
                    "vectorcall without PyObject_Vectorcall",
                ));
            };
            let nargs = nargsf & !ARGUMENTS_OFFSET;
            let environ = if nargs > 0 {
                Some(Bound::from_borrowed_ptr(py, *args))
            } else {
                keyword(py, args, kwnames, "environ")
            };
            serve(&application, environ, || {
                let response = forward(application.as_ptr(), args, nargsf, kwnames);
                Bound::from_owned_ptr_or_opt(py, response).ok_or_else(|| fetch(py))
            })
            .map(Bound::into_ptr)
        })
    }
}

/// The argument passed by keyword as `name` in a vectorcall, if any.
///
/// # Safety
/// As for [`vectorcall`], with `args` already past the positional ones:
/// the caller passes the call's `args` and `kwnames` unchanged.
unsafe fn keyword<'py>(
    py: Python<'py>,
    args: *const *mut ffi::PyObject,
    kwnames: *mut ffi::PyObject,
    name: &str,
) -> Option<Bound<'py, PyAny>> {
    // SAFETY: `kwnames` is null or a tuple of strings naming the arguments
    // after the positional ones, of which there are none here.
    unsafe {
        let kwnames = Bound::from_borrowed_ptr_or_opt(py, kwnames)?;
        let kwnames = kwnames.cast::<PyTuple>().ok()?;
        let at = kwnames
            .iter()
            .position(|kwname| kwname.cast::<PyString>().is_ok_and(|kwname| kwname == name))?;
        Some(Bound::from_borrowed_ptr(py, *args.add(at)))
    }
}

/// A call through `tp_call`: Python 3.9 and 3.10, and subclasses.
unsafe extern "C" fn call(
    object: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the interpreter calls this with the GIL, a live wrapper, an
    // argument tuple and a dict or null.
    unsafe {
        entry(|py| {
            let application = application(py, object)?;
            let (args, kwargs) = arguments(py, args, kwargs)?;
            let environ = match args.get_item(0) {
                Ok(environ) => Some(environ),
                Err(_) => kwargs
                    .as_ref()
                    .and_then(|kwargs| kwargs.get_item(intern!(py, "environ")).ok().flatten()),
            };
            serve(&application, environ, || {
                application.call(&args, kwargs.as_ref())
            })
            .map(Bound::into_ptr)
        })
    }
}

/// As a function does: a wrapper got from an instance wraps the
/// application bound to it.
unsafe extern "C" fn descr_get(
    object: *mut ffi::PyObject,
    instance: *mut ffi::PyObject,
    owner: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the interpreter calls this with the GIL and a live wrapper;
    // `instance` and `owner` are live or null.
    unsafe {
        entry(|py| {
            let this = Bound::from_borrowed_ptr(py, object);
            let Some(instance) = Bound::from_borrowed_ptr_or_opt(py, instance)
                .filter(|instance| !instance.is_none())
            else {
                return Ok(this.into_ptr());
            };
            let owner = Bound::from_borrowed_ptr_or_opt(py, owner);
            let application = application(py, object)?;
            let Some(get) = application.get_type().getattr_opt(intern!(py, "__get__"))? else {
                return Ok(this.into_ptr());
            };
            let bound = get.call1((&application, instance, owner))?;
            make(py, TYPE.load(Ordering::Acquire), bound)
        })
    }
}

unsafe extern "C" fn wrapped(object: *mut ffi::PyObject, _: *mut c_void) -> *mut ffi::PyObject {
    // SAFETY: the interpreter calls this with the GIL and a live wrapper.
    unsafe { entry(|py| Ok(application(py, object)?.into_ptr())) }
}

unsafe extern "C" fn repr(object: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: the interpreter calls this with the GIL and a live wrapper.
    unsafe {
        entry(|py| {
            let text = format!(
                "<ispyd WSGIApplicationWrapper of {}>",
                application(py, object)?.repr()?
            );
            Ok(PyString::new(py, &text).into_ptr())
        })
    }
}

unsafe extern "C" fn traverse(
    object: *mut ffi::PyObject,
    visit: ffi::visitproc,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: the collector calls this with a live wrapper.
    unsafe {
        let application = (*object.cast::<WrapperObject>()).application;
        heap_type::traverse_one(object, application, visit, arg)
    }
}

unsafe extern "C" fn clear(object: *mut ffi::PyObject) -> c_int {
    // SAFETY: the collector calls this with the GIL and a live wrapper.
    unsafe { heap_type::clear_one(&raw mut (*object.cast::<WrapperObject>()).application) };
    0
}

unsafe extern "C" fn dealloc(object: *mut ffi::PyObject) {
    // SAFETY: the interpreter calls this once, with the GIL, when the last
    // reference goes (for a subclass, after its own parts are cleared).
    unsafe {
        ffi::PyObject_GC_UnTrack(object.cast());
        clear(object);
        heap_type::free(object);
    }
}
