//! The `threads` dump of the python plugin: every Python thread's current
//! stack, in the format of the 2012 original.
//!
//! ```text
//! # Threads: 3
//!
//! # ThreadID: 140735076232384
//! # Name: MainThread
//! # Native ID: 48213
//! File: "app.py", line 25, in <module>
//!   application.run(host='0.0.0.0', port=port)
//! File: "/…/werkzeug/serving.py", line 617, in run_simple
//!   inner()
//!
//! # ThreadID: 140735071123136
//! # Name: ispyd-call-1 (not a threading.Thread; this ispyd session's thread)
//! File: "/…/ispyd/_support.py", line 80, in run_command
//!   result = getattr(instance, "do_" + command)(args)
//! …
//! ```
//!
//! Frames run outermost first, innermost (the line running now) last, as in
//! a traceback; a frame's source line is left out when `linecache` has none.
//! Threads come in the order they were started (the order of
//! `threading.enumerate()`, so `MainThread` first), then the threads that
//! have no `threading.Thread` (native threads that called into Python) by
//! ident, named by the operating system when it knows them; the thread that
//! runs this dump, ispyd's own, comes last so that a long dump ends where the
//! reader's terminal does not matter and starts with the application.
//!
//! # Theory of operation
//!
//! The dump is fast because it does the costly work once per *place*, a
//! distinct (code object, instruction) pair, not once per frame: a thousand
//! threads waiting in the same `Event.wait()` share their places. It runs in three
//! passes, all in one call and holding nothing afterwards:
//!
//! 1. *Snapshot.* With the garbage collector paused, `sys._current_frames()`,
//!    then each stack walked by `f_back`, each frame recorded as an index
//!    into the table of places (`f_lineno`, which scans the code's line
//!    table, is read once per place). Only C code runs in this pass, and no
//!    collection can run a finalizer, so no other thread can run: CPython
//!    hands the GIL over only between bytecodes. The stacks are therefore
//!    one moment, and a thread listed cannot exit before the pass ends,
//!    which the OS-name lookup relies on (see [`os_thread_name`]).
//! 2. *Names.* `Thread.name` is a property, Python code: other threads may
//!    run again from here on, which no longer changes what was recorded.
//! 3. *Source.* `linecache.checkcache` once per file, as `traceback` does,
//!    then `linecache.getline` once per place; each place is rendered once
//!    and the text assembled into one `String` of the exact size.

use std::collections::HashSet;
use std::collections::hash_map::Entry;
use std::ffi::{CStr, c_int, c_void};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::data::NativeData;

/// Marks the thread that runs the dump.
const SERVING: &str = "this ispyd session's thread";
/// Marks a thread that Python's `threading` did not start.
const NOT_THREADING: &str = "not a threading.Thread";

/// The attribute and method names the dump uses, interned once per dump.
///
/// Not `intern!`: its first use releases the GIL while it initializes,
/// which must not happen in the snapshot.
struct Names<'py> {
    active: Bound<'py, PyString>,
    checkcache: Bound<'py, PyString>,
    co_filename: Bound<'py, PyString>,
    co_name: Bound<'py, PyString>,
    current_frames: Bound<'py, PyString>,
    enumerate: Bound<'py, PyString>,
    f_back: Bound<'py, PyString>,
    f_code: Bound<'py, PyString>,
    f_globals: Bound<'py, PyString>,
    f_lasti: Bound<'py, PyString>,
    f_lineno: Bound<'py, PyString>,
    getline: Bound<'py, PyString>,
    ident: Bound<'py, PyString>,
}

impl<'py> Names<'py> {
    fn new(py: Python<'py>) -> Names<'py> {
        let intern = |name| PyString::intern(py, name);
        Names {
            active: intern("_active"),
            checkcache: intern("checkcache"),
            co_filename: intern("co_filename"),
            co_name: intern("co_name"),
            current_frames: intern("_current_frames"),
            enumerate: intern("enumerate"),
            f_back: intern("f_back"),
            f_code: intern("f_code"),
            f_globals: intern("f_globals"),
            f_lasti: intern("f_lasti"),
            f_lineno: intern("f_lineno"),
            getline: intern("getline"),
            ident: intern("ident"),
        }
    }
}

/// Formats every Python thread's stack like the 2012 original.
///
/// `serving` is the `threading.get_ident()` of the calling thread, which
/// is marked and listed last. See the module documentation for the format.
#[pyfunction]
pub(crate) fn format_threads(py: Python<'_>, serving: u64) -> PyResult<Bound<'_, PyString>> {
    threads_report(py, serving, false, true, false).map(|(text, _)| text)
}

/// `threads`: the text of [`format_threads`] and, with `wants_data`, the
/// same stacks as JSON (`RESULTS.md`, `python threads`), made from one
/// snapshot.
#[pyfunction]
///
/// The OS threads without a Python stack are listed when the process has
/// at most [`LIST_OS_THREADS_UP_TO`] threads, or with `list_os_threads`;
/// otherwise only counted.
#[pyo3(signature = (serving, wants_data=false, wants_text=true, list_os_threads=false))]
pub(crate) fn threads_report(
    py: Python<'_>,
    serving: u64,
    wants_data: bool,
    wants_text: bool,
    list_os_threads: bool,
) -> PyResult<(Bound<'_, PyString>, Option<NativeData>)> {
    let sys = py.import("sys")?;
    let threading = py.import("threading")?;
    let linecache = py.import("linecache")?;
    let names = Names::new(py);
    // Before the snapshot: the fallback runs Python code, as does
    // `main_thread()`.
    let active = active_threads(&threading, &names)?;
    let main = threading.call_method0("main_thread")?;

    // 1. Snapshot: no Python code runs until the walk ends.
    let paused = GcPaused::new(py)?;
    let frames = sys
        .call_method0(&names.current_frames)?
        .cast_into::<PyDict>()?;
    let mut listed = Vec::with_capacity(frames.len());
    for (ident_object, frame) in frames.iter() {
        let ident: u64 = ident_object.extract()?;
        let owner = match active.get_item(&ident_object)? {
            Some(thread) => Owner::Started(thread),
            // gevent's patching re-keys the main thread under its main
            // greenlet's id.
            None if ident == MAIN_IDENT.load(Ordering::Relaxed) => Owner::Started(main.clone()),
            None => Owner::Native(os_thread_name(ident)),
        };
        listed.push((ident, owner, frame));
    }
    let mut order = FastMap::with_capacity_and_hasher(active.len(), Default::default());
    for (position, (ident, _)) in active.iter().enumerate() {
        order.insert(ident.extract::<u64>()?, position);
    }
    let mut places = Places::default();
    let (owners, innermost): (Vec<_>, Vec<_>) = listed
        .into_iter()
        .map(|(ident, owner, frame)| ((ident, owner), frame))
        .unzip();
    let mut stacks: Vec<Stack> = owners
        .into_iter()
        .zip(places.walk_all(innermost, &names)?)
        .map(|((ident, owner), places)| Stack {
            ident,
            owner,
            places,
        })
        .collect();
    drop(frames);
    drop(paused);

    // 2. Names, in the order the dump lists the threads.
    stacks.sort_by_key(|stack| {
        let (kind, key) = match stack.owner {
            // (Only the fallback `active` can miss a thread: it was built
            // before the snapshot.)
            Owner::Started(_) if stack.ident == MAIN_IDENT.load(Ordering::Relaxed) => (0, 0),
            Owner::Started(_) => (0, order.get(&stack.ident).map_or(u64::MAX, |&p| p as u64)),
            Owner::Native(_) => (1, stack.ident),
        };
        (stack.ident == serving, kind, key)
    });
    let mut attributes = ThreadAttributes::new(&threading);
    let mut described = stacks
        .iter()
        .map(|stack| describe(stack, &mut attributes, wants_data, &main))
        .collect::<PyResult<Vec<_>>>()?;
    let without_python =
        os_threads_without_python(&stacks, &mut described, serving, list_os_threads);

    // 3. Source lines, one lookup per place.
    let rendered = places.render(&linecache, &names, wants_data)?;

    // Data instead of text: the client reads only the data.
    let wants_text = wants_text || !wants_data;
    let out = if wants_text {
        joined_text(py, &stacks, &described, serving, &rendered, &without_python)?
    } else {
        PyString::new(py, "")
    };
    if !wants_data {
        return Ok((out, None));
    }
    let threads: Vec<ThreadData<'_>> = stacks
        .iter()
        .zip(described)
        .map(|(stack, about)| ThreadData {
            id: stack.ident,
            native_id: about.native_id,
            name: about.name,
            daemon: about.daemon,
            threading: matches!(stack.owner, Owner::Started(_)),
            serving: stack.ident == serving,
            frames: stack
                .places
                .iter()
                .filter_map(|&p| rendered[p].frame.as_deref())
                .collect(),
        })
        .collect();
    // Straight to text: a `Value` tree of every frame would cost more than
    // the dump itself.
    Ok((
        out,
        Some(NativeData::of(&ThreadsData {
            threads,
            without_python_count: without_python.count,
            without_python: without_python.threads,
        })?),
    ))
}

/// The dump's text, as one `str` that Python joins from shared pieces:
/// one per thread for its header, and one per place, made once however
/// many threads are there.
///
/// Joined by `str.join` rather than written into a Rust `String` and
/// converted: for a thousand deep stacks the text is megabytes, and a
/// `String` of it would be a second buffer as large, its fresh pages
/// faulted in, then copied and checked for ASCII into the `str`: under
/// `perf`, with 1,000 threads, those faults and copies were about a third
/// of the dump's samples. The join sizes the `str` once and copies each
/// piece into it.
fn joined_text<'py>(
    py: Python<'py>,
    stacks: &[Stack<'py>],
    described: &[About],
    serving: u64,
    rendered: &[PlaceText],
    without_python: &WithoutPython,
) -> PyResult<Bound<'py, PyString>> {
    let mut place_strings: Vec<Option<Bound<'py, PyString>>> = vec![None; rendered.len()];
    let mut pieces = Vec::with_capacity(
        1 + stacks.len() + stacks.iter().map(|stack| stack.places.len()).sum::<usize>(),
    );
    pieces.push(PyString::new(py, &format!("# Threads: {}\n", stacks.len())));
    // One buffer for every header: each becomes its `str` at once.
    let mut header = String::with_capacity(256);
    for (stack, about) in stacks.iter().zip(described) {
        header.clear();
        let _ = write!(header, "\n# ThreadID: {}\n", stack.ident);
        name_line(stack, about, serving, &mut header);
        pieces.push(PyString::new(py, &header));
        for &place in &stack.places {
            let text = place_strings[place]
                .get_or_insert_with(|| PyString::new(py, &rendered[place].text));
            pieces.push(text.clone());
        }
    }
    pieces.push(PyString::new(py, &without_python.text()));
    let pieces = PyList::new(py, pieces)?;
    PyString::new(py, "")
        .call_method1(pyo3::intern!(py, "join"), (pieces,))?
        .cast_into::<PyString>()
        .map_err(Into::into)
}

/// The structured result of `threads`.
#[derive(Serialize)]
struct ThreadsData<'a> {
    threads: Vec<ThreadData<'a>>,
    without_python_count: Option<usize>,
    without_python: Option<Vec<OsThread>>,
}

/// An OS thread of the process that runs no Python code now.
#[derive(Serialize)]
struct OsThread {
    native_id: u64,
    name: String,
}

/// The OS threads that have no Python stack now: threads of the host's
/// own (a server's that have not called into Python yet, or are idle), and
/// ispyd's.
struct WithoutPython {
    /// How many there are, if known.
    count: Option<usize>,
    /// Each of them, when listed.
    threads: Option<Vec<OsThread>>,
    /// How many threads with a Python stack have no known kernel id: as
    /// many of `threads` are theirs.
    missing: usize,
    /// Why they could not be listed, if so.
    unknown: Option<String>,
}

impl WithoutPython {
    /// Their text, after the Python threads' stacks.
    fn text(&self) -> String {
        let mut text = String::new();
        if let Some(why) = &self.unknown {
            let _ = writeln!(
                text,
                "\n# OS threads without a Python stack: not known ({why})"
            );
            return text;
        }
        let Some(threads) = &self.threads else {
            let _ = writeln!(
                text,
                "\n# OS threads without a Python stack now: {}, not listed in a process of more \
                 than {LIST_OS_THREADS_UP_TO} threads ('threads --os' lists them; 'process threads' \
                 shows every thread)",
                self.count.unwrap_or(0)
            );
            return text;
        };
        if threads.is_empty() {
            return text;
        }
        let _ = write!(
            text,
            "\n# OS threads without a Python stack now: {} (native id, name)",
            threads.len()
        );
        match self.missing {
            0 => text.push('\n'),
            1 => text.push_str("; one of them is the thread above whose native id is not known\n"),
            n => {
                let _ = writeln!(
                    text,
                    "; {n} of them are the threads above whose native ids are not known"
                );
            }
        }
        for thread in threads {
            let _ = writeln!(text, "# {} {}", thread.native_id, thread.name);
        }
        text
    }
}

/// The most OS threads a process may have for `threads` to list those
/// without a Python stack unasked. Listing them reads `/proc/self/task`,
/// where the kernel makes an entry for each thread: 0.9–3 ms for 1,000
/// threads, as much as the whole dump of their stacks; counting them
/// (the directory's link count) takes microseconds.
const LIST_OS_THREADS_UP_TO: usize = 256;

/// Every OS thread of the process that is not one of `stacks`' threads,
/// with its kernel id and name; fills in the kernel id of each of
/// `stacks`' threads that `threading` does not know (a native thread that
/// called into Python) where ispyd knows it: the thread running this
/// command, and those serving a request through the WSGI wrapper (a
/// server's request threads: mod_wsgi's, uWSGI's), which records it.
///
/// CPython's stable ABI does not show a thread's kernel id, and matching
/// threads by their stacks would need `/proc/self/task/*/syscall`, which a
/// server that changed its user (Apache's children) cannot read.
fn os_threads_without_python(
    stacks: &[Stack<'_>],
    described: &mut [About],
    serving: u64,
    list: bool,
) -> WithoutPython {
    let failed = |err: std::io::Error| WithoutPython {
        count: None,
        threads: None,
        missing: 0,
        unknown: Some(format!("/proc/self/task: {err}")),
    };
    // A directory's links are its entries' and its own two: the count of
    // threads without listing them.
    let os_threads = match std::fs::metadata("/proc/self/task") {
        Ok(task) => usize::try_from(std::os::unix::fs::MetadataExt::nlink(&task))
            .unwrap_or(usize::MAX)
            .saturating_sub(2),
        Err(err) => return failed(err),
    };
    // SAFETY: no precondition.
    let own = unsafe { libc::gettid() } as u64;
    let serving_requests = crate::wsgi::native_ids();
    let mut known: HashSet<u64> = HashSet::new();
    for (stack, about) in stacks.iter().zip(described.iter_mut()) {
        if about.native_id.is_none() {
            about.native_id = if stack.ident == serving {
                Some(own)
            } else {
                serving_requests.get(&stack.ident).copied()
            };
        }
        known.extend(about.native_id);
    }
    let missing = described.iter().filter(|a| a.native_id.is_none()).count();
    if !list && os_threads > LIST_OS_THREADS_UP_TO {
        return WithoutPython {
            count: Some(os_threads.saturating_sub(stacks.len())),
            threads: None,
            missing,
            unknown: None,
        };
    }
    let tasks = match std::fs::read_dir("/proc/self/task") {
        Ok(tasks) => tasks,
        Err(err) => return failed(err),
    };
    let mut threads: Vec<OsThread> = tasks
        .flatten()
        .filter_map(|task| {
            let tid = task.file_name().to_str()?.parse::<u64>().ok()?;
            if known.contains(&tid) {
                return None;
            }
            let name = std::fs::read_to_string(task.path().join("comm"))
                .map(|name| name.trim_end().to_owned())
                .unwrap_or_default();
            Some(OsThread {
                native_id: tid,
                name,
            })
        })
        .collect();
    threads.sort_by_key(|thread| thread.native_id);
    WithoutPython {
        count: Some(threads.len()),
        threads: Some(threads),
        missing,
        unknown: None,
    }
}

/// One thread in the structured result of `threads`.
#[derive(Serialize)]
struct ThreadData<'a> {
    id: u64,
    native_id: Option<u64>,
    name: String,
    daemon: Option<bool>,
    threading: bool,
    serving: bool,
    frames: Vec<&'a RawValue>,
}

/// One frame of a stack, as data: where it is and the source line there.
#[derive(Serialize)]
struct FrameData {
    file: String,
    line: Option<i32>,
    function: String,
    source: Option<String>,
}

/// A place's text and its data, each made once however many frames are
/// at that place (a thousand threads waiting in one `wait()` share it).
pub(crate) struct PlaceText {
    text: String,
    /// Made only when data is wanted.
    frame: Option<Box<RawValue>>,
}

/// Formats chosen stacks the way [`format_threads`] formats each thread's:
/// `File:` lines, outermost first, with their source lines.
///
/// For a caller that lists some threads with text of its own between them
/// (the wsgi plugin's `requests`). Record every stack first, as
/// `format_threads` does, in one snapshot (see [`GcPaused`]): [`record`]
/// runs no Python code. Then [`render`] looks each distinct place's source
/// line up once, and [`write`](Rendered::write) writes a recorded stack.
///
/// [`record`]: StackFormatter::record
/// [`render`]: StackFormatter::render
pub(crate) struct StackFormatter<'py> {
    names: Names<'py>,
    places: Places<'py>,
}

/// A stack recorded by a [`StackFormatter`].
pub(crate) struct RecordedStack(Vec<usize>);

impl RecordedStack {
    /// True when no frame was recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The text of every place a [`StackFormatter`] recorded.
pub(crate) struct Rendered(Vec<PlaceText>);

impl<'py> StackFormatter<'py> {
    /// A formatter with nothing recorded; make it before the snapshot, as
    /// `format_threads` makes its names.
    pub(crate) fn new(py: Python<'py>) -> StackFormatter<'py> {
        StackFormatter {
            names: Names::new(py),
            places: Places::default(),
        }
    }

    /// Records the stack whose innermost frame is `frame`. Runs no Python
    /// code.
    pub(crate) fn record(&mut self, frame: Bound<'py, PyAny>) -> PyResult<RecordedStack> {
        self.places.walk(frame, &self.names).map(RecordedStack)
    }

    /// Records a stack made of `frames`, outermost first, each frame on
    /// its own (a task's chain of coroutines, which `f_back` does not
    /// link). Runs no Python code.
    pub(crate) fn record_frames(
        &mut self,
        frames: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<RecordedStack> {
        frames
            .iter()
            .map(|frame| self.places.index(frame, &self.names))
            .collect::<PyResult<_>>()
            .map(RecordedStack)
    }

    /// Each recorded place's text; runs `linecache`, Python code.
    pub(crate) fn render(&self, py: Python<'py>, wants_data: bool) -> PyResult<Rendered> {
        let linecache = py.import("linecache")?;
        self.places
            .render(&linecache, &self.names, wants_data)
            .map(Rendered)
    }
}

impl Rendered {
    /// Appends `stack`'s lines to `out`.
    pub(crate) fn write(&self, stack: &RecordedStack, out: &mut String) {
        for &place in &stack.0 {
            out.push_str(&self.0[place].text);
        }
    }

    /// `stack`'s frames as data, outermost first.
    pub(crate) fn frames(&self, stack: &RecordedStack) -> Vec<&RawValue> {
        stack
            .0
            .iter()
            .filter_map(|&place| self.0[place].frame.as_deref())
            .collect()
    }
}

/// `threading._active`, ident to `Thread`, in the order the threads
/// started; built from `threading.enumerate()` should a Python version not
/// have it.
fn active_threads<'py>(
    threading: &Bound<'py, PyModule>,
    names: &Names<'py>,
) -> PyResult<Bound<'py, PyDict>> {
    let py = threading.py();
    if let Ok(active) = threading.getattr(&names.active) {
        if let Ok(active) = active.cast_into::<PyDict>() {
            return Ok(active);
        }
    }
    let active = PyDict::new(py);
    for thread in threading.call_method0(&names.enumerate)?.try_iter()? {
        let thread = thread?;
        let ident = thread.getattr(&names.ident)?;
        if !ident.is_none() {
            active.set_item(ident, thread)?;
        }
    }
    Ok(active)
}

/// Keeps the cyclic garbage collector off while alive, if it was on: a
/// collection may run finalizers, Python code, during which other threads
/// may take the GIL.
pub(crate) struct GcPaused<'py> {
    gc: Bound<'py, PyModule>,
    was_enabled: bool,
}

impl<'py> GcPaused<'py> {
    pub(crate) fn new(py: Python<'py>) -> PyResult<GcPaused<'py>> {
        let gc = py.import("gc")?;
        let was_enabled = gc.call_method0("isenabled")?.is_truthy()?;
        if was_enabled {
            gc.call_method0("disable")?;
        }
        Ok(GcPaused { gc, was_enabled })
    }
}

impl Drop for GcPaused<'_> {
    fn drop(&mut self) {
        if self.was_enabled {
            if let Err(err) = self.gc.call_method0("enable") {
                err.write_unraisable(self.gc.py(), None);
            }
        }
    }
}

/// Who a thread is, as far as the snapshot could tell.
enum Owner<'py> {
    /// Started by `threading`: its `Thread`.
    Started(Bound<'py, PyAny>),
    /// Not a `threading.Thread`; the operating system's name for it, if any.
    Native(Option<String>),
}

/// One thread's recorded stack.
struct Stack<'py> {
    ident: u64,
    owner: Owner<'py>,
    /// Indices into [`Places`], outermost frame first.
    places: Vec<usize>,
}

/// What `threading` knows of a thread besides its stack.
struct About {
    name: String,
    native_id: Option<u64>,
    daemon: Option<bool>,
}

/// Reads a thread's name, its native id and, for data, its daemon flag:
/// may run Python code (a subclass's properties), so only after the
/// snapshot.
fn describe<'py>(
    stack: &Stack<'py>,
    attributes: &mut ThreadAttributes<'py>,
    wants_data: bool,
    main: &Bound<'_, PyAny>,
) -> PyResult<About> {
    Ok(match &stack.owner {
        Owner::Started(thread) => About {
            name: attributes
                .get(thread, Attribute::Name)?
                .str()?
                .to_string_lossy()
                .into_owned(),
            native_id: attributes
                .get(thread, Attribute::NativeId)
                .ok()
                .filter(|value| !value.is_none())
                .and_then(|id| id.extract().ok())
                .map(|id| fresh_native_id(id, thread.is(main))),
            daemon: wants_data
                .then(|| attributes.get(thread, Attribute::Daemon).ok())
                .flatten()
                .and_then(|d| d.extract().ok()),
        },
        Owner::Native(name) => About {
            name: name.clone().unwrap_or_default(),
            native_id: None,
            daemon: None,
        },
    })
}

/// The attributes of a `threading.Thread` a dump reads.
#[derive(Clone, Copy)]
enum Attribute {
    Name,
    NativeId,
    Daemon,
}

/// Reads [`Attribute`]s of threads.
///
/// `name`, `native_id` and `daemon` are Python properties of
/// `threading.Thread`, each returning an instance attribute (`_name`,
/// `_native_id`, `_daemonic`): read through the property, each is a call
/// of Python code, a third of the time spent naming a thousand threads.
/// For a thread whose class has `Thread`'s own three properties, the
/// instance attribute is read instead; a class that overrides any of them
/// (or a `Thread` without the instance attribute) is read through its
/// properties.
struct ThreadAttributes<'py> {
    /// Per attribute: (the property's name, the instance attribute's).
    names: [(Bound<'py, PyString>, Bound<'py, PyString>); 3],
    /// `threading.Thread`'s three properties, as `names` orders them.
    properties: Option<Vec<Bound<'py, PyAny>>>,
    /// Type address to whether it has `Thread`'s own three properties;
    /// the types live as long as their threads, which the dump holds.
    checked: Vec<(usize, bool)>,
}

impl<'py> ThreadAttributes<'py> {
    fn new(threading: &Bound<'py, PyModule>) -> ThreadAttributes<'py> {
        let py = threading.py();
        let names = [
            ("name", "_name"),
            ("native_id", "_native_id"),
            ("daemon", "_daemonic"),
        ]
        .map(|(public, own)| (PyString::intern(py, public), PyString::intern(py, own)));
        let properties = threading.getattr("Thread").ok().and_then(|class| {
            names
                .iter()
                .map(|(public, _)| class.getattr(public).ok())
                .collect()
        });
        ThreadAttributes {
            names,
            properties,
            checked: Vec::new(),
        }
    }

    fn get(&mut self, thread: &Bound<'py, PyAny>, which: Attribute) -> PyResult<Bound<'py, PyAny>> {
        let plain = self.is_plain(thread);
        let (public, own) = &self.names[which as usize];
        if plain {
            if let Ok(value) = thread.getattr(own) {
                return Ok(value);
            }
        }
        thread.getattr(public)
    }

    /// True if `thread`'s class reads all three through `Thread`'s own
    /// properties.
    fn is_plain(&mut self, thread: &Bound<'py, PyAny>) -> bool {
        let class = thread.get_type();
        let address = class.as_ptr() as usize;
        if let Some(&(_, plain)) = self.checked.iter().find(|(seen, _)| *seen == address) {
            return plain;
        }
        let plain = self.properties.as_ref().is_some_and(|properties| {
            properties
                .iter()
                .zip(&self.names)
                .all(|(property, (public, _))| {
                    class.getattr(public).is_ok_and(|found| found.is(property))
                })
        });
        self.checked.push((address, plain));
        plain
    }
}

/// `threading.get_ident()` of the process's main thread: noted when
/// `_native` is imported on it (as it almost always is) and in a forked
/// child (whose only thread is its main one); 0 while not known.
static MAIN_IDENT: AtomicU64 = AtomicU64::new(0);

/// Notes the calling thread as the main thread if it is: its kernel id is
/// the process id.
pub(crate) fn note_main_thread() {
    // SAFETY: neither call has a precondition.
    let (tid, pid) = unsafe { (libc::gettid(), libc::getpid()) };
    if tid == pid {
        // SAFETY: reads the calling thread's identity; no precondition.
        let ident = unsafe { ffi::PyThread_get_thread_ident() } as u64;
        MAIN_IDENT.store(ident, Ordering::Relaxed);
    }
}

/// A thread's native id as `threading` has it, made right after a fork:
/// Python (3.11) keeps the main thread's id from before the fork, the
/// parent's, while the thread that forked, now the child's main thread,
/// has the child's pid as its id.
pub(crate) fn fresh_native_id(id: u64, is_main: bool) -> u64 {
    if is_main && !Path::new(&format!("/proc/self/task/{id}")).exists() {
        u64::from(std::process::id())
    } else {
        id
    }
}

/// The `# Name:` line of a thread and, when known, its `# Native ID:` line
/// (the OS thread id, as `process threads` and `top -H` show it), newlines
/// included, appended to `line`.
fn name_line(stack: &Stack<'_>, about: &About, serving: u64, line: &mut String) {
    let name = &about.name;
    let mut notes = Vec::with_capacity(2);
    if let Owner::Native(_) = stack.owner {
        notes.push(NOT_THREADING);
    }
    if stack.ident == serving {
        notes.push(SERVING);
    }
    let _ = match (name.is_empty(), notes.is_empty()) {
        (_, true) => writeln!(line, "# Name: {name}"),
        (true, false) => writeln!(line, "# Name: ({})", notes.join("; ")),
        (false, false) => writeln!(line, "# Name: {name} ({})", notes.join("; ")),
    };
    if let Some(native_id) = about.native_id {
        let _ = writeln!(line, "# Native ID: {native_id}");
    }
}

/// A code object seen in the dump.
struct Code<'py> {
    /// Held so that its address, the key of [`Places::code_index`], cannot
    /// be reused by another code object before the dump ends.
    _object: Bound<'py, PyAny>,
    /// `co_filename` as Python has it, for `linecache`.
    filename_object: Bound<'py, PyAny>,
    /// `f_globals` of the first frame seen running it: `linecache` finds the
    /// source of a module loaded from a zip file through its `__loader__`.
    globals: Bound<'py, PyAny>,
    filename: String,
    function: String,
}

/// How many stacks [`Places::walk_all`] walks side by side.
const LANES: usize = 16;

/// The distinct places of the dump: (code object, instruction) pairs.
#[derive(Default)]
struct Places<'py> {
    codes: Vec<Code<'py>>,
    /// Code object address to index into `codes`.
    code_index: FastMap<usize, usize>,
    /// Each place's index into `codes` and line, in the order first seen.
    places: Vec<(usize, Option<i32>)>,
    /// (Code object address, `f_lasti`) to index into `places`: keyed by
    /// address, as `code_index` is, so that a frame at a known place costs
    /// one lookup. The address stays the code's: `codes` holds it.
    place_index: FastMap<(usize, i64), usize>,
}

impl<'py> Places<'py> {
    /// The places of the stack that `frame` is the innermost frame of,
    /// outermost first, each added if new. Runs no Python code.
    fn walk(&mut self, frame: Bound<'py, PyAny>, names: &Names<'py>) -> PyResult<Vec<usize>> {
        let mut stacks = self.walk_all(vec![frame], names)?;
        Ok(stacks.pop().unwrap_or_default())
    }

    /// The places of each stack whose innermost frame `frames` lists, in
    /// that order, as [`Places::walk`] gives them. Runs no Python code.
    ///
    /// Stacks are walked [`LANES`] at a time, in rounds: each round first
    /// steps every lane's frame to its outer frame, one call after another,
    /// then looks up the places of the frames it left. A step outward is a
    /// load from memory no other stack shares (a cache miss each when a
    /// thousand stacks are walked); made back to back, the steps of the
    /// lanes wait for their misses together rather than one after another.
    fn walk_all(
        &mut self,
        frames: Vec<Bound<'py, PyAny>>,
        names: &Names<'py>,
    ) -> PyResult<Vec<Vec<usize>>> {
        let Some(first) = frames.first() else {
            return Ok(Vec::new());
        };
        let calls = FrameCalls::get(first.py());
        let mut stacks = vec![Vec::new(); frames.len()];
        let mut waiting = frames.into_iter().enumerate();
        // (stack, its frame to read next, its places so far, innermost first)
        let mut lanes: Vec<(usize, Bound<'py, PyAny>, Vec<usize>)> = waiting
            .by_ref()
            .take(LANES)
            .map(|(stack, frame)| (stack, frame, Vec::new()))
            .collect();
        let mut backs = Vec::with_capacity(LANES);
        while !lanes.is_empty() {
            backs.clear();
            for (_, frame, _) in &lanes {
                backs.push(calls.back(frame, names)?);
            }
            let mut lane = lanes.len();
            while lane > 0 {
                lane -= 1;
                let (stack, frame, walked) = &mut lanes[lane];
                walked.push(self.index(frame, names)?);
                if let Some(back) = backs[lane].take() {
                    *frame = back;
                    continue;
                }
                stacks[*stack] = walked.iter().rev().copied().collect();
                walked.clear();
                match waiting.next() {
                    Some((next, frame)) => {
                        lanes[lane].0 = next;
                        lanes[lane].1 = frame;
                    }
                    None => {
                        lanes.swap_remove(lane);
                    }
                }
            }
        }
        Ok(stacks)
    }

    /// The index of `frame`'s place, added if new. Runs no Python code.
    ///
    /// A place is looked up by code object and `f_lasti`, the instruction
    /// the frame is at: `f_lineno` scans the code's line table, which would
    /// be most of the dump's time were it done for every frame.
    fn index(&mut self, frame: &Bound<'py, PyAny>, names: &Names<'py>) -> PyResult<usize> {
        let calls = FrameCalls::get(frame.py());
        let code = calls.code(frame, names)?;
        let instruction = calls.lasti(frame, names)?;
        let address = code.as_ptr() as usize;
        // Most frames are at a place seen before: one lookup.
        if let Some(&place) = self.place_index.get(&(address, instruction)) {
            return Ok(place);
        }
        let code = match self.code_index.entry(address) {
            Entry::Occupied(entry) => *entry.get(),
            Entry::Vacant(entry) => {
                let filename_object = code.getattr(&names.co_filename)?;
                let filename = filename_object
                    .cast::<PyString>()?
                    .to_string_lossy()
                    .into_owned();
                let function = code
                    .getattr(&names.co_name)?
                    .cast::<PyString>()?
                    .to_string_lossy()
                    .into_owned();
                self.codes.push(Code {
                    _object: code,
                    filename_object,
                    globals: frame.getattr(&names.f_globals)?,
                    filename,
                    function,
                });
                *entry.insert(self.codes.len() - 1)
            }
        };
        let line: Option<i32> = frame.getattr(&names.f_lineno)?.extract()?;
        self.places.push((code, line));
        self.place_index
            .insert((address, instruction), self.places.len() - 1);
        Ok(self.places.len() - 1)
    }

    /// Each place's text: its `File:` line and its source line, if any;
    /// and with `wants_data`, the same as data.
    fn render(
        &self,
        linecache: &Bound<'py, PyModule>,
        names: &Names<'py>,
        wants_data: bool,
    ) -> PyResult<Vec<PlaceText>> {
        let mut checked = HashSet::new();
        for code in &self.codes {
            if checked.insert(code.filename.as_str()) {
                linecache.call_method1(&names.checkcache, (code.filename_object.clone(),))?;
            }
        }
        self.places
            .iter()
            .map(|&(code, line)| {
                let code = &self.codes[code];
                let mut text = format!(
                    "File: \"{}\", line {}, in {}\n",
                    code.filename,
                    line.map_or_else(|| "None".to_owned(), |line| line.to_string()),
                    code.function
                );
                let mut source = None;
                if let Some(line) = line {
                    let found = linecache.call_method1(
                        &names.getline,
                        (code.filename_object.clone(), line, code.globals.clone()),
                    )?;
                    let found = found.cast::<PyString>()?.to_string_lossy();
                    let found = found.trim();
                    if !found.is_empty() {
                        let _ = writeln!(text, "  {found}");
                        source = Some(found.to_owned());
                    }
                }
                let frame =
                    if wants_data {
                        let frame = FrameData {
                            file: code.filename.clone(),
                            line,
                            function: code.function.clone(),
                            source,
                        };
                        Some(serde_json::value::to_raw_value(&frame).map_err(|err| {
                            pyo3::exceptions::PyValueError::new_err(err.to_string())
                        })?)
                    } else {
                        None
                    };
                Ok(PlaceText { text, frame })
            })
            .collect()
    }
}

/// `PyFrame_GetBack(frame)` and `PyFrame_GetCode(frame)` (new references,
/// or null), `PyFrame_GetLasti(frame)`.
type FrameObjectCall = unsafe extern "C" fn(*mut ffi::PyObject) -> *mut ffi::PyObject;
type FrameIntCall = unsafe extern "C" fn(*mut ffi::PyObject) -> c_int;

/// The frame accessors of the C API, where the interpreter has them.
///
/// The walk reads three attributes of every frame (`f_back`, `f_code`,
/// `f_lasti`): through `getattr`, each is a generic attribute lookup (the
/// type's MRO, a descriptor, a bound call), most of the dump's time for
/// a thousand deep stacks. The C API has a direct call for each, outside
/// the limited API this wheel is built for (see [`crate::symbol`]):
/// `PyFrame_GetBack` and `PyFrame_GetCode` from 3.9, `PyFrame_GetLasti`
/// from 3.11. Each one missing falls back to `getattr`, as does any object
/// that is not exactly a frame.
struct FrameCalls {
    /// `types.FrameType`, by address: a static type, alive for the process.
    frame_type: usize,
    get_back: Option<FrameObjectCall>,
    get_code: Option<FrameObjectCall>,
    get_lasti: Option<FrameIntCall>,
}

static FRAME_CALLS: OnceLock<FrameCalls> = OnceLock::new();

impl FrameCalls {
    fn get(py: Python<'_>) -> &'static FrameCalls {
        FRAME_CALLS.get_or_init(|| {
            let frame_type = py
                .import("types")
                .and_then(|types| types.getattr("FrameType"))
                .map_or(0, |frame_type| frame_type.as_ptr() as usize);
            let find = |name: &CStr| {
                // Without the frame type to check objects against, no call.
                crate::symbol::find(name).filter(|_| frame_type != 0)
            };
            // SAFETY: these are the C signatures of the three functions in
            // every version that exports them.
            unsafe {
                FrameCalls {
                    frame_type,
                    get_back: find(c"PyFrame_GetBack")
                        .map(|f| std::mem::transmute::<*mut c_void, FrameObjectCall>(f.as_ptr())),
                    get_code: find(c"PyFrame_GetCode")
                        .map(|f| std::mem::transmute::<*mut c_void, FrameObjectCall>(f.as_ptr())),
                    get_lasti: find(c"PyFrame_GetLasti")
                        .map(|f| std::mem::transmute::<*mut c_void, FrameIntCall>(f.as_ptr())),
                }
            }
        })
    }

    fn is_frame(&self, object: &Bound<'_, PyAny>) -> bool {
        // SAFETY: a live object's type pointer is readable.
        unsafe { ffi::Py_TYPE(object.as_ptr()) as usize == self.frame_type }
    }

    /// `frame.f_back`, `None` at the outermost frame.
    fn back<'py>(
        &self,
        frame: &Bound<'py, PyAny>,
        names: &Names<'py>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = frame.py();
        match self.get_back {
            Some(get_back) if self.is_frame(frame) => {
                // SAFETY: `frame` is exactly a frame object; the call returns
                // a new reference, or null: no outer frame, or (making the
                // outer frame's object) an error, set.
                match unsafe { Bound::from_owned_ptr_or_opt(py, get_back(frame.as_ptr())) } {
                    Some(back) => Ok(Some(back)),
                    None => PyErr::take(py).map_or(Ok(None), Err),
                }
            }
            _ => {
                let back = frame.getattr(&names.f_back)?;
                Ok((!back.is_none()).then_some(back))
            }
        }
    }

    /// `frame.f_code`.
    fn code<'py>(
        &self,
        frame: &Bound<'py, PyAny>,
        names: &Names<'py>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = frame.py();
        match self.get_code {
            Some(get_code) if self.is_frame(frame) => {
                // SAFETY: `frame` is exactly a frame object; the call returns
                // a new reference (never null in CPython; treated as an error).
                unsafe { Bound::from_owned_ptr_or_opt(py, get_code(frame.as_ptr())) }.ok_or_else(
                    || {
                        PyErr::take(py).unwrap_or_else(|| {
                            pyo3::exceptions::PyRuntimeError::new_err("a frame without code")
                        })
                    },
                )
            }
            _ => frame.getattr(&names.f_code),
        }
    }

    /// `frame.f_lasti`: the instruction the frame is at, in bytes
    /// (`PyFrame_GetLasti` gives the same value).
    fn lasti(&self, frame: &Bound<'_, PyAny>, names: &Names<'_>) -> PyResult<i64> {
        match self.get_lasti {
            // SAFETY: `frame` is exactly a frame object.
            Some(get_lasti) if self.is_frame(frame) => {
                Ok(unsafe { get_lasti(frame.as_ptr()) }.into())
            }
            _ => frame.getattr(&names.f_lasti)?.extract(),
        }
    }
}

/// The operating system's name of the thread whose `threading.get_ident()`
/// is `ident`, if it can be read.
///
/// Call only in the snapshot pass, for an `ident` that
/// `sys._current_frames()` listed in it.
#[cfg(target_os = "linux")]
fn os_thread_name(ident: u64) -> Option<String> {
    let thread = libc::pthread_t::try_from(ident).ok()?;
    let mut buf = [0 as libc::c_char; 16];
    // SAFETY: `thread` names a live thread. On POSIX, CPython's thread ident
    // is the thread's `pthread_self()`. A thread listed by
    // `sys._current_frames()` has a thread state with a running frame; to
    // exit, it must first delete that thread state, which needs the GIL, and
    // the caller has held the GIL since that snapshot without running Python
    // code (the only place the GIL is handed over). `buf` is writable for
    // its length, and the function writes at most that, NUL included.
    let status = unsafe { libc::pthread_getname_np(thread, buf.as_mut_ptr(), buf.len()) };
    if status != 0 {
        return None;
    }
    let bytes: Vec<u8> = buf.iter().map(|&c| c as u8).collect();
    let name = std::ffi::CStr::from_bytes_until_nul(&bytes).ok()?;
    Some(name.to_string_lossy().into_owned()).filter(|name| !name.is_empty())
}

/// The operating system's name of a thread: not read on this platform.
#[cfg(not(target_os = "linux"))]
fn os_thread_name(_ident: u64) -> Option<String> {
    None
}

/// A `HashMap` keyed by addresses and small integers of this process,
/// with rustc's FxHash: the keys here are not chosen by anyone, so
/// SipHash's defence buys nothing, and it cost a tenth of a large dump's
/// time.
type FastMap<K, V> = rustc_hash::FxHashMap<K, V>;
