//! The `requests` command's text (see the parent module for the format).
//!
//! The registry and `sys._current_frames()` are read in one snapshot, with
//! the garbage collector paused, so that no Python code runs in between
//! (another thread can take the GIL only then) and each request's stack is
//! the one of the thread serving it at that moment. A request served by a
//! greenlet that is not running (under gevent, all but one at a time) has
//! its greenlet's stack, from its `gr_frame`; the running one has its
//! thread's. The stacks are
//! formatted by the python plugin's `threads` code ([`StackFormatter`]);
//! `repr()` of the environ's values runs after the snapshot, on copies.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use ispyd_core::secret;

use super::{Copied, WRAPPED, copy_requests};
use crate::data::NativeData;
use crate::threads::{GcPaused, RecordedStack, StackFormatter};

/// One request as `requests` lists it, copied out of the registry.
struct Listed<'py> {
    number: u64,
    thread: u64,
    age: Duration,
    /// The environ's `(key, value)` pairs at the snapshot, or the environ
    /// itself if it is not a dict.
    environ: Result<Bound<'py, PyList>, Bound<'py, PyAny>>,
    /// An ASGI request's application coroutine, and the name of the
    /// asyncio task awaiting it (found after the snapshot).
    asgi: Option<(Bound<'py, PyAny>, String)>,
    /// The greenlet serving a WSGI request, under gevent or eventlet.
    greenlet: Option<Bound<'py, PyAny>>,
    stack: Option<RecordedStack>,
}

/// The `requests` command's text: every request being served now (with
/// `older_than`, only those running longer than that many seconds), oldest
/// first, in the 2012 original's format.
#[pyfunction]
#[pyo3(signature = (older_than=None))]
pub(crate) fn format_requests(py: Python<'_>, older_than: Option<f64>) -> PyResult<String> {
    requests_report(py, older_than, false).map(|(text, _)| text)
}

/// `requests`: the text of [`format_requests`] and, with `wants_data`, the
/// same requests as JSON (`RESULTS.md`, `wsgi requests`), from one
/// snapshot.
#[pyfunction]
#[pyo3(signature = (older_than=None, wants_data=false))]
pub(crate) fn requests_report(
    py: Python<'_>,
    older_than: Option<f64>,
    wants_data: bool,
) -> PyResult<(String, Option<NativeData>)> {
    let minimum = match older_than {
        None => None,
        Some(seconds) if seconds.is_nan() || seconds < 0.0 => {
            return Err(PyValueError::new_err(format!(
                "older_than must be a number of seconds, 0 or more; got {seconds}"
            )));
        }
        // Longer than any process has run.
        Some(seconds) => Some(Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)),
    };
    let sys = py.import("sys")?;
    let current_frames = PyString::intern(py, "_current_frames");
    let gr_frame = PyString::intern(py, "gr_frame");
    let mut formatter = StackFormatter::new(py);

    // 1. Snapshot: no Python code runs until the stacks are recorded.
    let paused = GcPaused::new(py)?;
    let (active, copied) = copy_requests(py, minimum);
    let frames = sys.call_method0(&current_frames)?.cast_into::<PyDict>()?;
    let mut listed = Vec::with_capacity(copied.len());
    for Copied {
        number,
        thread,
        age,
        native: _,
        environ,
        task,
        greenlet,
    } in copied
    {
        let greenlet = greenlet.map(|greenlet| greenlet.into_bound(py));
        let environ = environ.into_bound(py);
        let environ = match environ.cast::<PyDict>() {
            Ok(dict) if task.is_some() => Ok(asgi_items(dict)?),
            Ok(dict) => Ok(dict.items()),
            Err(_) => Err(environ),
        };
        let (asgi, stack) = match task {
            // An ASGI request: its coroutine's await chain, not the loop's
            // stack.
            Some(coroutine) => {
                let coroutine = coroutine.into_bound(py);
                let chain = coroutine_chain(&coroutine)?;
                let stack = formatter.record_frames(chain)?;
                (Some((coroutine, String::new())), Some(stack))
            }
            None => {
                // A greenlet switched out has its stack from its top frame;
                // the one running (or not started, or done) has no frame of
                // its own, and the thread's stack is its.
                let suspended = match &greenlet {
                    Some(greenlet) => greenlet.getattr(&gr_frame)?,
                    None => py.None().into_bound(py),
                };
                let frame = if suspended.is_none() {
                    frames.get_item(thread)?
                } else {
                    Some(suspended)
                };
                (
                    None,
                    frame.map(|frame| formatter.record(frame)).transpose()?,
                )
            }
        };
        listed.push(Listed {
            number,
            thread,
            age,
            environ,
            asgi,
            greenlet,
            stack,
        });
    }
    drop(frames);
    drop(paused);
    listed.sort_by_key(|request| request.number);
    if listed.iter().any(|request| request.asgi.is_some()) {
        name_tasks(py, &mut listed)?;
    }

    // 2. Text.
    let wall_now = SystemTime::now();
    let rendered = formatter.render(py, wants_data)?;
    let ctime = py.import("time")?.getattr("ctime")?;
    let mut out = String::new();
    if listed.is_empty() {
        match older_than {
            Some(seconds) if active > 0 => {
                let seconds = if seconds < 1e15 {
                    format!("{seconds}")
                } else {
                    format!("{seconds:e}")
                };
                let _ = writeln!(
                    out,
                    "No active transactions older than {seconds} seconds ({active} younger)."
                );
            }
            _ => out.push_str("No active transactions.\n"),
        }
        if !WRAPPED.load(Ordering::Relaxed) {
            out.push_str(
                "(No WSGI or ASGI application in this process is wrapped: see 'help requests'.)\n",
            );
        }
    }
    for request in &listed {
        let started = started_epoch(wall_now, request.age);
        let started: String = ctime.call1((started,))?.extract()?;
        let _ = write!(
            out,
            "\n==== {} ====\n\nthread_id = {}\n",
            request.number, request.thread,
        );
        if let Some((_, task)) = &request.asgi {
            let _ = writeln!(out, "task = {task}");
        }
        if let Some(greenlet) = &request.greenlet {
            let _ = writeln!(out, "greenlet = {}", repr_of(greenlet));
        }
        let _ = write!(
            out,
            "start_time = {started}\nduration = {:.6} seconds\n\n",
            request.age.as_secs_f64(),
        );
        write_environ(&mut out, &request.environ);
        out.push('\n');
        match &request.stack {
            Some(stack) => rendered.write(stack, &mut out),
            None => {
                let _ = writeln!(
                    out,
                    "(thread {} is running no Python code now)",
                    request.thread
                );
            }
        }
        if request.asgi.is_some() && request.stack.as_ref().is_some_and(RecordedStack::is_empty) {
            out.push_str("(the task has not started, or has no frame now)\n");
        }
    }
    out.push('\n');
    if !wants_data {
        return Ok((out, None));
    }
    let datetime = py.import("datetime")?;
    let utc = datetime.getattr("timezone")?.getattr("utc")?;
    let fromtimestamp = datetime.getattr("datetime")?.getattr("fromtimestamp")?;
    let mut data = Vec::with_capacity(listed.len());
    for request in &listed {
        let epoch = started_epoch(wall_now, request.age);
        let iso: String = fromtimestamp
            .call1((epoch, &utc))?
            .call_method0("isoformat")?
            .extract()?;
        data.push(serde_json::json!({
            "id": request.number,
            "thread_id": request.thread,
            "start_time": iso,
            "start_epoch": epoch,
            "duration_s": request.age.as_secs_f64(),
            "environ": if request.asgi.is_none() { environ_data(&request.environ) } else { serde_json::Value::Null },
            "scope": if request.asgi.is_some() { environ_data(&request.environ) } else { serde_json::Value::Null },
            "task": request.asgi.as_ref().map(|(_, task)| task),
            "greenlet": request.greenlet.as_ref().map(repr_of),
            "frames": request.stack.as_ref().map(|stack| rendered.frames(stack)),
        }));
    }
    let data = serde_json::json!({
        "requests": data,
        "active": active,
        "wrapped": WRAPPED.load(Ordering::Relaxed),
    });
    Ok((out, Some(NativeData::of(&data)?)))
}

/// Names the task awaiting each ASGI request's coroutine, as the asyncio
/// plugin finds it (`?` if none does: the coroutine has not started).
fn name_tasks(py: Python<'_>, listed: &mut [Listed<'_>]) -> PyResult<()> {
    let by_coroutine = py
        .import("ispyd.plugins.asyncio")?
        .call_method0("tasks_by_coroutine")?
        .cast_into::<PyDict>()?;
    for (coroutine, name) in listed.iter_mut().filter_map(|r| r.asgi.as_mut()) {
        let id = coroutine.as_ptr() as usize;
        *name = match by_coroutine.get_item(id)? {
            Some(task) => task.call_method0(intern!(py, "get_name"))?.extract()?,
            None => "?".to_owned(),
        };
    }
    Ok(())
}

/// The keys of an ASGI scope that the ASGI specification defines: what
/// `requests` shows. Frameworks add their own objects to the scope
/// (Starlette its app, router, endpoint…), whose `repr()`s would bury it.
const ASGI_SCOPE_KEYS: &[&str] = &[
    "type",
    "asgi",
    "http_version",
    "method",
    "scheme",
    "path",
    "raw_path",
    "query_string",
    "root_path",
    "headers",
    "client",
    "server",
    "subprotocols",
];

fn asgi_items<'py>(scope: &Bound<'py, PyDict>) -> PyResult<Bound<'py, PyList>> {
    let items = PyList::empty(scope.py());
    for key in ASGI_SCOPE_KEYS {
        if let Some(value) = scope.get_item(key)? {
            items.append((key, value))?;
        }
    }
    Ok(items)
}

/// The frames of `coroutine` and of each coroutine it awaits, outermost
/// first: what `Task.get_stack()` walks, read as attributes so that no
/// Python code runs during the snapshot.
fn coroutine_chain<'py>(coroutine: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let py = coroutine.py();
    let mut chain = Vec::new();
    let mut awaited = coroutine.clone();
    // Bounded: a chain is as deep as the awaits in the program.
    for _ in 0..1000 {
        let (frame, next) = if let Some(frame) = awaited.getattr_opt(intern!(py, "cr_frame"))? {
            (frame, awaited.getattr_opt(intern!(py, "cr_await"))?)
        } else if let Some(frame) = awaited.getattr_opt(intern!(py, "gi_frame"))? {
            (frame, awaited.getattr_opt(intern!(py, "gi_yieldfrom"))?)
        } else {
            break;
        };
        // An awaitable without a frame (ispyd's ASGI wrapper) still says
        // what it awaits.
        if !frame.is_none() {
            chain.push(frame);
        }
        match next {
            Some(next) if !next.is_none() => awaited = next,
            _ => break,
        }
    }
    Ok(chain)
}

/// When a request that has run for `age` started, in seconds since the
/// epoch.
fn started_epoch(wall_now: SystemTime, age: Duration) -> f64 {
    wall_now
        .checked_sub(age)
        .and_then(|started| started.duration_since(UNIX_EPOCH).ok())
        .map_or(0.0, |since| since.as_secs_f64())
}

/// The environ as data: string values as they are, others as `repr()`.
fn environ_data(environ: &Result<Bound<'_, PyList>, Bound<'_, PyAny>>) -> serde_json::Value {
    let Ok(items) = environ else {
        return serde_json::Value::Null;
    };
    let mut map = serde_json::Map::new();
    for item in items.iter() {
        let Ok(pair) = item.cast::<PyTuple>() else {
            continue;
        };
        let (Ok(key), Ok(value)) = (pair.get_item(0), pair.get_item(1)) else {
            continue;
        };
        let key = text_of(&key);
        let value = match value.cast::<PyString>() {
            Ok(text) => {
                let text = text.to_string_lossy();
                secret::masked(&key, &text).unwrap_or_else(|| text.into_owned())
            }
            Err(_) => repr_of(&value),
        };
        map.insert(key, value.into());
    }
    let mut sorted: Vec<_> = map.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    serde_json::Value::Object(sorted.into_iter().collect())
}

/// The environ's `KEY = repr(value)` lines, sorted by key. A value whose
/// `repr()` fails says so instead of failing the whole command.
fn write_environ(out: &mut String, environ: &Result<Bound<'_, PyList>, Bound<'_, PyAny>>) {
    let items = match environ {
        Ok(items) => items,
        Err(other) => {
            let _ = writeln!(out, "(the environ is not a dict: {})", repr_of(other));
            return;
        }
    };
    let mut lines: Vec<(String, String)> = items
        .iter()
        .map(|item| match item.cast::<PyTuple>() {
            Ok(pair) if pair.len() == 2 => {
                let key = pair
                    .get_item(0)
                    .map(|key| text_of(&key))
                    .unwrap_or_default();
                let value = pair.get_item(1).map(|value| shown(&key, &value));
                (key, value.unwrap_or_default())
            }
            _ => (String::new(), repr_of(&item)),
        })
        .collect();
    lines.sort();
    for (key, value) in lines {
        let _ = writeln!(out, "{key} = {value}");
    }
}

/// How the environ's `value` of `key` is shown: its `repr()`, unless it
/// is a string that looks secret ([`secret::masked`]: an `Authorization`
/// or `Cookie` header, a key or token, a URL's password), masked.
fn shown(key: &str, value: &Bound<'_, PyAny>) -> String {
    let Ok(text) = value.cast::<PyString>() else {
        return repr_of(value);
    };
    match secret::masked(key, &text.to_string_lossy()) {
        None => repr_of(value),
        Some(mask) => secret::shown(&mask, |mask| format!("{mask:?}")),
    }
}

/// `str(value)`, or what went wrong.
fn text_of(value: &Bound<'_, PyAny>) -> String {
    match value.str() {
        Ok(text) => text.to_string_lossy().into_owned(),
        Err(err) => format!("<str() failed: {err}>"),
    }
}

/// `repr(value)`, or what went wrong.
fn repr_of(value: &Bound<'_, PyAny>) -> String {
    match value.repr() {
        Ok(text) => text.to_string_lossy().into_owned(),
        Err(err) => format!("<repr() failed: {err}>"),
    }
}
