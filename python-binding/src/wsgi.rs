//! The `wsgi` plugin's native half: the WSGI application wrapper and the
//! registry of the requests it is serving now.
//!
//! ```python
//! from ispyd.plugins.wsgi import WSGIApplicationWrapper
//! application = WSGIApplicationWrapper(application)
//! ```
//!
//! `requests` in the `wsgi` plugin prints, for every request in the
//! registry, the block of the 2012 original:
//!
//! ```text
//!
//! ==== 67 ====
//!
//! thread_id = 140735076232384
//! start_time = Mon Apr  9 21:49:54 2012
//! duration = 0.013629 seconds
//!
//! PATH_INFO = '/'
//! …the rest of the environ, sorted by key…
//!
//! File: "wsgi.py", line 25, in <module>
//!   application.run(host='0.0.0.0', port=port)
//! …the stack of the thread serving it now, innermost call last…
//! ```
//!
//! # Theory of operation
//!
//! The wrapper sits on the hot path of the application it wraps, so a
//! request costs it one registry insert and one remove, one clock read and
//! one small object, and nothing per chunk of the response:
//!
//! 1. A call of the wrapper ([`wrapper`], a C-API type called through
//!    vectorcall where it can be) records the request in [`IN_FLIGHT`]
//!    under a fresh number: the calling thread's `threading.get_ident()`
//!    (the key of `sys._current_frames()`), a monotonic clock reading, a
//!    reference to the environ and, under gevent or eventlet, to the
//!    greenlet serving it ([`crate::greenlet`]: all the requests of such a
//!    process share one thread); what ends it holds a [`Ticket`]. It then
//!    calls the application with the very arguments it was given. If the
//!    application raises, the request is removed and the exception goes on
//!    unchanged.
//! 2. The application's iterable comes back inside a body object
//!    (`WSGIBody`, or `WSGISizedBody` for a list or tuple, which keeps its
//!    `len()` for servers that read it; both in [`body`], with a free list).
//!    PEP 3333 servers iterate what the application returned and then call
//!    its `close()`. The body's `__iter__` hands the server the inner
//!    iterable's own iterator, so the chunks and any exception raised while
//!    producing them never pass through ispyd; its `close()` calls the inner
//!    `close()`, if any, once, then removes the request, whether that
//!    `close()` raised or not. A body dropped without `close()` (a server
//!    that breaks PEP 3333) removes its request too, so nothing stays behind.
//! 3. A file wrapper (an instance of `environ['wsgi.file_wrapper']` when
//!    that is a class) is returned as it is, so the server still recognises
//!    it and can `sendfile()` it; its `close` attribute is replaced on the
//!    instance by [`FileClose`], which calls the original (if it had one)
//!    and then removes the request. A file wrapper that does not take an
//!    attribute (`__slots__`) goes into a body like any iterable: served
//!    correctly, by iteration.
//!
//! The registry's lock is held only to insert, remove or copy entries: no
//! Python code runs and no Python reference is dropped under it (a
//! finalizer could re-enter it); entries are taken out, the lock released,
//! then dropped, with the GIL known to be held (`untrack` takes `py`), so
//! that pyo3 releases their references at once rather than queueing them.
//! Every entry point already holds the GIL.
//!
//! `requests` ([`format_requests`], in the `requests` module) copies the
//! registry's entries out and formats them.

mod body;
mod heap_type;
mod requests;
mod wrapper;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};
use pyo3::{PyTraverseError, ffi, intern};
use slab::Slab;

pub(crate) use body::add_types as add_body_types;
pub(crate) use requests::{format_requests, requests_report};
pub(crate) use wrapper::add_type as add_wrapper_type;

use crate::dump::{self, slots};

/// Every request a wrapper is serving now.
static IN_FLIGHT: Mutex<InFlight> = Mutex::new(InFlight {
    last: 0,
    active: Slab::new(),
});

/// Whether this process has wrapped an application, for `requests` to say
/// why it never sees one.
static WRAPPED: AtomicBool = AtomicBool::new(false);

struct InFlight {
    /// The number of the last request recorded; numbers are never reused.
    last: u64,
    /// A slab rather than a map by number: a request is put in and taken
    /// out once each, by a key that is an index (no hashing, no probing).
    /// Keys are reused; a [`Ticket`] says which request it was for.
    active: Slab<Request>,
}

/// What ends a request: its key in the registry and the low bits of its
/// number, so that an end that comes twice, or late, after the key went to
/// another request, ends nothing. 0 is no request.
type Ticket = u64;

/// The bits of a ticket that hold the request's number; the rest hold its
/// key + 1 (so no ticket is 0), which allows 16 million requests in flight.
const NUMBER_BITS: u32 = 40;
const NUMBER_MASK: u64 = (1 << NUMBER_BITS) - 1;

fn ticket(key: usize, number: u64) -> Option<Ticket> {
    let key = u64::try_from(key).ok()?.checked_add(1)?;
    (key < 1 << (u64::BITS - NUMBER_BITS)).then_some(key << NUMBER_BITS | (number & NUMBER_MASK))
}

/// One request being served.
struct Request {
    /// Its number, as `requests` shows it.
    number: u64,
    /// `threading.get_ident()` of the thread that called the application.
    thread: u64,
    /// That thread's kernel id.
    native: u64,
    started: Instant,
    /// The WSGI environ, or the ASGI scope.
    environ: Py<PyAny>,
    /// The application coroutine of an ASGI request, whose await chain
    /// `requests` shows (the loop thread's stack would show the loop).
    task: Option<Py<PyAny>>,
    /// The greenlet serving a WSGI request under gevent or eventlet, whose
    /// stack `requests` shows (the thread's is whichever greenlet runs).
    greenlet: Option<Py<PyAny>>,
    /// Its place in the table a `dump_on` signal handler reads, while a
    /// dump is armed; freed with the request.
    _slot: Option<slots::Ticket>,
}

thread_local! {
    /// This thread's kernel id, asked for once.
    static NATIVE_ID: Cell<u64> = const { Cell::new(0) };
}

fn native_id() -> u64 {
    NATIVE_ID.with(|cached| {
        if cached.get() == 0 {
            // SAFETY: gettid has no precondition.
            cached.set(unsafe { libc::gettid() } as u64);
        }
        cached.get()
    })
}

/// `METHOD path?query` of a WSGI environ, as the dump shows it: the bytes
/// the client sent (WSGI strings are Latin-1 stand-ins for bytes), control
/// characters replaced, cut to what a slot holds.
fn request_text(environ: &Bound<'_, PyAny>) -> SlotText {
    let mut text = SlotText::default();
    let Ok(environ) = environ.cast::<PyDict>() else {
        return text;
    };
    let py = environ.py();
    let get = |key: &Bound<'_, PyString>| string_item(environ, key);
    text.push_latin1(&get(intern!(py, "REQUEST_METHOD")).unwrap_or_else(|| "?".into()));
    text.push(b" ");
    text.push_latin1(&get(intern!(py, "SCRIPT_NAME")).unwrap_or_default());
    text.push_latin1(&get(intern!(py, "PATH_INFO")).unwrap_or_default());
    if let Some(query) = get(intern!(py, "QUERY_STRING")).filter(|q| !q.is_empty()) {
        text.push(b"?");
        text.push_latin1(&query);
    }
    text
}

/// `METHOD path?query` as a slot of the dump's table holds it: control
/// characters replaced, cut to the slot's size.
pub(crate) struct SlotText {
    bytes: [u8; slots::TEXT_BYTES],
    len: usize,
}

impl Default for SlotText {
    fn default() -> SlotText {
        SlotText {
            bytes: [0; slots::TEXT_BYTES],
            len: 0,
        }
    }
}

impl SlotText {
    fn push(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.len == self.bytes.len() {
                return;
            }
            self.bytes[self.len] = if byte < 0x20 || byte == 0x7f {
                b'?'
            } else {
                byte
            };
            self.len += 1;
        }
    }

    /// A WSGI string: one byte per character (Latin-1 stand-ins for the
    /// bytes the client sent).
    fn push_latin1(&mut self, text: &str) {
        for c in text.chars() {
            self.push(&[u8::try_from(u32::from(c)).unwrap_or(b'?')]);
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The string value of `key` in `dict`, if it is one.
fn string_item(dict: &Bound<'_, PyDict>, key: &Bound<'_, PyString>) -> Option<String> {
    dict.get_item(key).ok().flatten()?.extract::<String>().ok()
}

fn in_flight() -> MutexGuard<'static, InFlight> {
    IN_FLIGHT.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records a request of the calling thread; returns its ticket.
#[inline(always)]
fn track(environ: Bound<'_, PyAny>) -> Ticket {
    let text = slots::is_armed().then(|| {
        crate::signals::rearm_if_asked();
        request_text(&environ)
    });
    let greenlet = crate::greenlet::current(environ.py());
    record(environ, Serving::Thread(greenlet), text).1
}

/// Records an ASGI request whose application coroutine is `coroutine`,
/// served on the calling thread (its event loop's); returns its number (as
/// `requests` and `tasks` show it) and the ticket that ends it. For
/// `ASGIApplicationWrapper`.
#[pyfunction]
pub(crate) fn asgi_track(scope: Bound<'_, PyAny>, coroutine: Bound<'_, PyAny>) -> (u64, Ticket) {
    WRAPPED.store(true, Ordering::Relaxed);
    let text = slots::is_armed().then(|| scope_text(&scope));
    record(scope, Serving::Task(coroutine.unbind()), text)
}

/// Forgets the ASGI request of `ticket`; for `ASGIApplicationWrapper`.
#[pyfunction]
pub(crate) fn asgi_untrack(py: Python<'_>, ticket: Ticket) {
    untrack(py, ticket);
}

/// `METHOD path?query` of an ASGI scope (`WEBSOCKET path` for a
/// websocket), as [`request_text`] makes it of an environ: ASGI paths are
/// text, sent as UTF-8; the query string is bytes.
fn scope_text(scope: &Bound<'_, PyAny>) -> SlotText {
    let mut text = SlotText::default();
    let Ok(scope) = scope.cast::<PyDict>() else {
        return text;
    };
    let py = scope.py();
    let get = |key: &Bound<'_, PyString>| string_item(scope, key);
    let method = match get(intern!(py, "type")).as_deref() {
        Some("websocket") => "WEBSOCKET".to_owned(),
        _ => get(intern!(py, "method")).unwrap_or_else(|| "?".into()),
    };
    text.push(method.as_bytes());
    text.push(b" ");
    text.push(get(intern!(py, "root_path")).unwrap_or_default().as_bytes());
    text.push(get(intern!(py, "path")).unwrap_or_default().as_bytes());
    let query = scope
        .get_item(intern!(py, "query_string"))
        .ok()
        .flatten()
        .and_then(|q| q.extract::<Vec<u8>>().ok())
        .filter(|q| !q.is_empty());
    if let Some(query) = query {
        text.push(b"?");
        text.push(&query);
    }
    text
}

/// What serves a request, besides the thread that called the application.
enum Serving {
    /// A WSGI request: its greenlet, if greenlets are in use.
    Thread(Option<Py<PyAny>>),
    /// An ASGI request: the application coroutine.
    Task(Py<PyAny>),
}

/// Records a request; returns its number and its ticket (0 and 0 when it
/// could not be recorded).
fn record(environ: Bound<'_, PyAny>, serving: Serving, text: Option<SlotText>) -> (u64, Ticket) {
    let (task, greenlet) = match serving {
        Serving::Thread(greenlet) => (None, greenlet),
        Serving::Task(task) => (Some(task), None),
    };
    // SAFETY: reads the calling thread's identity; no precondition.
    let thread = unsafe { ffi::PyThread_get_thread_ident() } as u64;
    let native = native_id();
    let started = Instant::now();
    let mut registry = in_flight();
    let Some(ticket) = ticket(registry.active.vacant_key(), registry.last + 1) else {
        // 16 million requests in flight: this one is served, not listed.
        return (0, 0);
    };
    registry.last += 1;
    let number = registry.last;
    let slot = text.map(|text| {
        slots::claim(
            number,
            dump::monotonic_ns(),
            thread,
            native,
            text.as_bytes(),
        )
    });
    registry.active.insert(Request {
        number,
        thread,
        native,
        started,
        environ: environ.unbind(),
        task,
        greenlet,
        _slot: slot,
    });
    (number, ticket)
}

/// Forgets the request of `ticket`, if it is still recorded.
///
/// Takes `py` so that the request's references are released at once:
/// dropping a `Py` where pyo3 does not know the GIL is held (the body's
/// C-API functions) would queue the release in pyo3's pool instead, which
/// allocates.
fn untrack(py: Python<'_>, ticket: Ticket) {
    let Some(key) = (ticket >> NUMBER_BITS).checked_sub(1) else {
        return;
    };
    let Ok(key) = usize::try_from(key) else {
        return;
    };
    let request = {
        let mut registry = in_flight();
        let current = registry
            .active
            .get(key)
            .is_some_and(|request| request.number & NUMBER_MASK == ticket & NUMBER_MASK);
        if current {
            registry.active.try_remove(key)
        } else {
            None
        }
    };
    // Unlocked: dropping the environ may run Python code (a finalizer).
    if let Some(request) = request {
        let Request {
            environ,
            task,
            greenlet,
            _slot,
            ..
        } = request;
        drop(environ.into_bound(py));
        drop(task.map(|task| task.into_bound(py)));
        drop(greenlet.map(|greenlet| greenlet.into_bound(py)));
    }
}

/// A request copied out of the registry for `requests`.
struct Copied {
    /// The serving task of an ASGI request.
    task: Option<Py<PyAny>>,
    /// The serving greenlet of a WSGI request, under gevent or eventlet.
    greenlet: Option<Py<PyAny>>,
    number: u64,
    thread: u64,
    native: u64,
    /// How long it has run.
    age: Duration,
    environ: Py<PyAny>,
}

/// How many requests are being served now, and a copy of those that have
/// run longer than `minimum` (all of them without one). Runs no Python
/// code: the environs are only referenced once more.
fn copy_requests(py: Python<'_>, minimum: Option<Duration>) -> (usize, Vec<Copied>) {
    let now = Instant::now();
    let registry = in_flight();
    let copied = registry
        .active
        .iter()
        .map(|(_, request)| (request, now.saturating_duration_since(request.started)))
        .filter(|&(_, age)| minimum.is_none_or(|minimum| age > minimum))
        .map(|(request, age)| Copied {
            number: request.number,
            thread: request.thread,
            native: request.native,
            age,
            environ: request.environ.clone_ref(py),
            task: request.task.as_ref().map(|task| task.clone_ref(py)),
            greenlet: request.greenlet.as_ref().map(|g| g.clone_ref(py)),
        })
        .collect();
    (registry.active.len(), copied)
}

/// Every request being served now, as the dump lists it: number, text,
/// age in nanoseconds, thread, kernel thread id.
pub(crate) fn dump_lines(py: Python<'_>) -> Vec<dump::Line> {
    let (_, copied) = copy_requests(py, None);
    copied
        .into_iter()
        .map(|request| {
            let text = match request.task {
                Some(_) => scope_text(request.environ.bind(py)),
                None => request_text(request.environ.bind(py)),
            };
            dump::Line {
                number: request.number,
                text: text.as_bytes().to_vec(),
                age_ns: u64::try_from(request.age.as_nanos()).unwrap_or(u64::MAX),
                thread: request.thread,
                native: request.native,
            }
        })
        .collect()
}

/// `(number, "METHOD path?query", age in seconds, application coroutine,
/// loop thread)` of every ASGI request being served now, for the asyncio
/// plugin.
#[pyfunction]
pub(crate) fn asgi_requests(py: Python<'_>) -> Vec<(u64, String, f64, Py<PyAny>, u64)> {
    let (_, copied) = copy_requests(py, None);
    copied
        .into_iter()
        .filter_map(|request| {
            let task = request.task?;
            let text = scope_text(request.environ.bind(py));
            Some((
                request.number,
                String::from_utf8_lossy(text.as_bytes()).into_owned(),
                request.age.as_secs_f64(),
                task,
                request.thread,
            ))
        })
        .collect()
}

/// `(number, "METHOD path?query", thread, greenlet)` of every WSGI
/// request being served by a greenlet now, for the python plugin's
/// `greenlets`.
#[pyfunction]
pub(crate) fn greenlet_requests(py: Python<'_>) -> Vec<(u64, String, u64, Py<PyAny>)> {
    let (_, copied) = copy_requests(py, None);
    copied
        .into_iter()
        .filter_map(|request| {
            let greenlet = request.greenlet?;
            let text = request_text(request.environ.bind(py));
            Some((
                request.number,
                String::from_utf8_lossy(text.as_bytes()).into_owned(),
                request.thread,
                greenlet,
            ))
        })
        .collect()
}

/// The kernel id of every thread serving a request now, by its
/// `threading.get_ident()`: for `threads`, which cannot read it of a thread
/// that `threading` did not start.
pub(crate) fn native_ids() -> rustc_hash::FxHashMap<u64, u64> {
    in_flight()
        .active
        .iter()
        .map(|(_, request)| (request.thread, request.native))
        .collect()
}

/// How many requests are being served now.
#[pyfunction]
pub(crate) fn active_request_count() -> usize {
    in_flight().active.len()
}

/// In a forked child, forgets the requests of every thread but the one
/// that forked: the others do not exist in the child and never end there.
pub(crate) fn forget_other_threads_after_fork() {
    // SAFETY: as in `track`.
    let thread = unsafe { ffi::PyThread_get_thread_ident() } as u64;
    let gone: Vec<Request> = {
        let mut registry = in_flight();
        let keys: Vec<usize> = registry
            .active
            .iter()
            .filter(|(_, request)| request.thread != thread)
            .map(|(key, _)| key)
            .collect();
        keys.into_iter()
            .filter_map(|key| registry.active.try_remove(key))
            .collect()
    };
    drop(gone);
}

/// Serves one request of a wrapped `application`: records it (when the
/// call has an `environ`, as every WSGI call does), runs `call`, and returns
/// the response in a body that ends the record on `close()`.
fn serve<'py>(
    application: &Bound<'py, PyAny>,
    environ: Option<Bound<'py, PyAny>>,
    call: impl FnOnce() -> PyResult<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = application.py();
    let Some(environ) = environ else {
        // Not a WSGI call; the application says what is wrong.
        return call();
    };
    let ticket = track(environ.clone());
    let response = match call() {
        Ok(response) => response,
        Err(err) => {
            untrack(py, ticket);
            return Err(err);
        }
    };
    // A list or tuple: no file wrapper, no `close()`.
    if response.is_exact_instance_of::<PyList>() || response.is_exact_instance_of::<PyTuple>() {
        return body::new(body::Kind::Sized, response, ticket);
    }
    if is_file_wrapper(&environ, &response) {
        if let Some(response) = hand_over_file(&response, ticket) {
            return Ok(response);
        }
    }
    body::new(body::Kind::Any, response, ticket)
}

/// Whether `response` is an instance of `environ['wsgi.file_wrapper']`,
/// the server's file wrapper class, which the server will look for.
///
/// By its type, as `PyObject_TypeCheck` does, without the `__class__`
/// lookup `isinstance` adds for proxies (40 ns a request). A proxy that
/// claims to be a file wrapper goes into a body: served by iteration. So
/// does everything when the server's file wrapper is not a class (uWSGI's
/// is a function).
fn is_file_wrapper(environ: &Bound<'_, PyAny>, response: &Bound<'_, PyAny>) -> bool {
    let Ok(environ) = environ.cast::<PyDict>() else {
        return false;
    };
    let key = intern!(environ.py(), "wsgi.file_wrapper");
    let Ok(Some(file_wrapper)) = environ.get_item(key) else {
        return false;
    };
    let Ok(file_wrapper) = file_wrapper.cast::<PyType>() else {
        return false;
    };
    // SAFETY: both pointers are live type objects: the response's type,
    // and `file_wrapper`, checked to be a type above.
    unsafe {
        ffi::PyType_IsSubtype(ffi::Py_TYPE(response.as_ptr()), file_wrapper.as_type_ptr()) != 0
    }
}

/// Returns the file wrapper `response` as it is, its `close` attribute
/// replaced by one that also ends request `ticket`; `None` if the instance
/// does not take the attribute.
fn hand_over_file<'py>(response: &Bound<'py, PyAny>, ticket: u64) -> Option<Bound<'py, PyAny>> {
    let py = response.py();
    let close = response.getattr_opt(intern!(py, "close")).ok()?;
    let file_close = Bound::new(
        py,
        FileClose {
            ticket,
            close: close.map(Bound::unbind),
        },
    )
    .ok()?;
    if response.setattr(intern!(py, "close"), &file_close).is_err() {
        // The body takes the request over; this must not end it.
        if let Ok(mut file_close) = file_close.try_borrow_mut() {
            file_close.ticket = 0;
        }
        return None;
    }
    Some(response.clone())
}

/// The `close` of a file wrapper handed to the server as it is: calls the
/// file wrapper's own `close` (if it had one) once, then ends the request.
#[pyclass(module = "ispyd._native", name = "WSGIFileClose")]
pub(crate) struct FileClose {
    ticket: u64,
    close: Option<Py<PyAny>>,
}

#[pymethods]
impl FileClose {
    fn __call__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let (ticket, close) = {
            let mut this = slf.try_borrow_mut()?;
            (std::mem::take(&mut this.ticket), this.close.take())
        };
        let closed = match close {
            Some(close) => close.bind(py).call0(),
            None => Ok(py.None().into_bound(py)),
        };
        if ticket != 0 {
            untrack(py, ticket);
        }
        closed
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.close)
    }

    fn __clear__(&mut self) {
        self.close = None;
    }
}

impl Drop for FileClose {
    fn drop(&mut self) {
        if self.ticket != 0 {
            Python::attach(|py| untrack(py, self.ticket));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{NUMBER_BITS, ticket};

    #[test]
    fn tickets_are_never_zero_and_tell_reuses_of_a_key_apart() {
        assert_ne!(ticket(0, 0), Some(0));
        assert_ne!(ticket(0, 1 << NUMBER_BITS), Some(0));
        assert_ne!(ticket(3, 7), ticket(3, 8));
        assert_ne!(ticket(3, 7), ticket(4, 7));
        assert_eq!(ticket((1 << (64 - NUMBER_BITS)) - 1, 1), None);
        assert!(ticket((1 << (64 - NUMBER_BITS)) - 2, 1).is_some());
    }
}
