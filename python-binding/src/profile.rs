//! The python plugin's `profile`: every thread's Python stack sampled at a
//! fixed rate from ispyd's own thread, aggregated in Rust as it comes, then
//! a top table, folded stacks and a flame graph (`inferno`).
//!
//! A sample takes the GIL and walks the interpreter's thread states and
//! their frames through CPython's C API (`PyInterpreterState_ThreadHead`,
//! `PyThreadState_GetFrame`, `PyFrame_GetBack`, `PyFrame_GetCode`,
//! `PyFrame_GetLineNumber`): no dict of frames, no attribute lookups, no
//! Python object made by ispyd. (CPython 3.11+ makes a frame object the
//! first time a frame is looked at, and keeps it for the frame's life.)
//! Each (code, line) place is interned once and the stacks are counted by
//! `ispyd_std::profile::Samples` (bounded by the distinct stacks), which
//! also draws the table and the flame graph. Between samples the GIL is
//! let go.
//!
//! Idle threads (blocked in a lock, `select`, `sleep`: they used no CPU
//! since the last sample, as `/proc/self/task/TID/schedstat` says, read
//! without the GIL) are left out unless asked for, and counted.

use std::collections::HashMap;
use std::fs::File;
use std::os::raw::{c_int, c_ulong};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use pyo3::{ffi, intern};

use ispyd_std::profile::{Place, Samples};

use crate::data::NativeData;
use crate::plugin::NativeProgress;

// Part of CPython's C API since 3.9, exported by every build, though not
// of the limited API this module is built against.
unsafe extern "C" {
    fn PyInterpreterState_ThreadHead(
        interp: *mut ffi::PyInterpreterState,
    ) -> *mut ffi::PyThreadState;
    fn PyThreadState_Next(tstate: *mut ffi::PyThreadState) -> *mut ffi::PyThreadState;
    fn PyThreadState_GetFrame(tstate: *mut ffi::PyThreadState) -> *mut ffi::PyObject;
    fn PyFrame_GetBack(frame: *mut ffi::PyObject) -> *mut ffi::PyObject;
    fn PyFrame_GetCode(frame: *mut ffi::PyObject) -> *mut ffi::PyObject;
    fn PyFrame_GetLineNumber(frame: *mut ffi::PyObject) -> c_int;
}

/// Frames read from one thread's stack.
const MAX_DEPTH: usize = 1000;
/// Words of a thread state searched for its thread's identity.
const LAYOUT_WORDS: usize = 32;

#[derive(Default)]
struct Profile {
    samples: Samples,
    index: HashMap<(usize, i64), u32>,
    /// Keeps the code objects whose addresses are in `index` alive.
    codes: Vec<Py<PyAny>>,
    /// The stack being read, reused from sample to sample.
    scratch: Vec<u32>,
    idle: u64,
}

/// What `profile` was asked.
struct Request {
    seconds: f64,
    hz: u32,
    thread: Option<String>,
    idle: bool,
}

/// Where a thread state keeps the thread's identity: found once, in the
/// sampler's own thread state, by the values it must hold (the layout is
/// CPython's private business and changes between versions).
#[derive(Clone, Copy)]
struct Layout {
    /// Of `thread_id` (`threading.get_ident()`).
    ident: usize,
    /// Of `native_thread_id` (3.11+), right after it.
    native: Option<usize>,
}

impl Layout {
    /// Looks for `thread_id`: a word equal to `pthread_self()` among the
    /// first [`LAYOUT_WORDS`] of the calling thread's state, and for
    /// `native_thread_id` (3.11+) in the word after it. The GIL must be
    /// held.
    fn find() -> Option<Layout> {
        // SAFETY: the GIL is held (callers have a `Python`), so the
        // current thread state exists; every CPython from 3.9 on has
        // `thread_id` within its first 256 bytes and is longer than that.
        unsafe {
            let state = ffi::PyThreadState_Get().cast::<c_ulong>();
            let ident = ffi::PyThread_get_thread_ident();
            let native = libc::gettid() as c_ulong;
            (2..LAYOUT_WORDS - 1)
                .find(|&at| *state.add(at) == ident)
                .map(|at| Layout {
                    ident: at,
                    native: (*state.add(at + 1) == native).then_some(at + 1),
                })
        }
    }

    /// The identity of `state`: `(ident, native id if kept)`.
    ///
    /// # Safety
    /// `state` is a live thread state and the GIL is held.
    unsafe fn read(self, state: *mut ffi::PyThreadState) -> (u64, Option<u64>) {
        // `unsigned long` is 64 bits on the LP64 systems this runs on.
        const _: () = assert!(std::mem::size_of::<c_ulong>() == 8);
        let words = state.cast::<u64>();
        // SAFETY: as `find` found, within the struct.
        unsafe { (*words.add(self.ident), self.native.map(|at| *words.add(at))) }
    }
}

impl Profile {
    /// The place of `frame`, a borrowed frame object.
    fn place(&mut self, py: Python<'_>, frame: *mut ffi::PyObject) -> PyResult<u32> {
        // SAFETY: `frame` is a live frame object and the GIL is held; the
        // code object is a new reference, owned by `code`.
        let (code, line) = unsafe {
            let code = Bound::from_owned_ptr(py, PyFrame_GetCode(frame));
            (code, i64::from(PyFrame_GetLineNumber(frame)))
        };
        let key = (code.as_ptr() as usize, line);
        if let Some(&at) = self.index.get(&key) {
            return Ok(at);
        }
        let at = self.samples.add_place(Place {
            function_id: key.0 as u64,
            function: code.getattr(intern!(py, "co_name"))?.extract()?,
            file: code.getattr(intern!(py, "co_filename"))?.extract()?,
            first_line: Some(code.getattr(intern!(py, "co_firstlineno"))?.extract()?),
            line: Some(line),
        });
        self.index.insert(key, at);
        self.codes.push(code.unbind());
        Ok(at)
    }

    /// Reads the stack of `state` into `scratch`, innermost frame last.
    ///
    /// # Safety
    /// `state` is a live thread state and the GIL is held.
    unsafe fn read_stack(
        &mut self,
        py: Python<'_>,
        state: *mut ffi::PyThreadState,
    ) -> PyResult<()> {
        self.scratch.clear();
        let mut placed = Ok(());
        // SAFETY: the GIL is held; every frame pointer is a new reference,
        // released once its caller is had (or the walk stops).
        let mut frame = unsafe { PyThreadState_GetFrame(state) };
        while !frame.is_null() {
            placed = self.place(py, frame).map(|at| self.scratch.push(at));
            let stop = placed.is_err() || self.scratch.len() == MAX_DEPTH;
            // SAFETY: as above.
            let back = if stop {
                std::ptr::null_mut()
            } else {
                unsafe { PyFrame_GetBack(frame) }
            };
            // SAFETY: `frame` is ours to release.
            unsafe { ffi::Py_DecRef(frame) };
            frame = back;
        }
        self.scratch.reverse();
        placed
    }

    /// One sample of every thread but `own` that `wanted` keeps. `natives`
    /// maps idents to kernel ids (updated from the thread states where
    /// they hold them); `busy` says which kernel ids used CPU since the
    /// last sample (`None`: count every thread).
    fn sample(
        &mut self,
        py: Python<'_>,
        layout: Layout,
        own: u64,
        wanted: &dyn Fn(u64) -> bool,
        natives: &mut HashMap<u64, u64>,
        busy: Option<&HashMap<u64, bool>>,
    ) -> PyResult<()> {
        // SAFETY: the GIL is held, which keeps the list of thread states
        // and every state on it alive while it is walked.
        unsafe {
            let mut state = PyInterpreterState_ThreadHead(ffi::PyInterpreterState_Get());
            while !state.is_null() {
                let (ident, native) = layout.read(state);
                if let Some(native) = native {
                    natives.insert(ident, native);
                }
                if ident != own && wanted(ident) {
                    // A thread not polled yet counts as busy.
                    let used = busy.is_none_or(|busy| {
                        let native = natives.get(&ident);
                        native.and_then(|n| busy.get(n)).copied().unwrap_or(true)
                    });
                    if used {
                        self.read_stack(py, state)?;
                        self.count();
                    } else {
                        self.idle += 1;
                    }
                }
                state = PyThreadState_Next(state);
            }
        }
        Ok(())
    }

    /// Counts the stack in `scratch`.
    fn count(&mut self) {
        self.samples.count(&self.scratch, 1);
    }
}

/// Samples as `request` says, reporting to `progress` each second and
/// stopping early when it asks; returns the profile.
fn run(
    py: Python<'_>,
    request: &Request,
    progress: Option<&NativeProgress>,
) -> PyResult<(Profile, f64)> {
    let layout = Layout::find().ok_or_else(|| {
        PyRuntimeError::new_err(format!(
            "profile cannot find the thread ids in this Python's thread states ({})",
            Python::version_str()
        ))
    })?;
    // SAFETY: reads the calling thread's identity; no precondition.
    let own = unsafe { ffi::PyThread_get_thread_ident() } as u64;
    let Threads { names, mut natives } = Threads::read(py)?;
    let wanted = |ident: u64| match &request.thread {
        None => true,
        Some(wanted) => {
            wanted.parse::<u64>().ok() == Some(ident)
                || names.get(&ident).is_some_and(|name| name == wanted)
        }
    };
    let interval = Duration::from_secs_f64(1.0 / f64::from(request.hz.max(1)));
    // Idle: a thread that used (almost) no CPU since the last sample. Its
    // state at the sample says nothing: a busy thread waits for the GIL
    // that the sampler holds.
    let mut cpu = Cpu::new((interval.as_nanos() as u64) / 50);
    let total = Duration::from_secs_f64(request.seconds);
    let started = Instant::now();
    let mut next = started;
    let mut reported = 0u64;
    let mut profile = Profile::default();
    while started.elapsed() < total {
        if progress.is_some_and(NativeProgress::stop_requested) {
            break;
        }
        let busy = py.detach(|| {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            (!request.idle).then(|| cpu.busy(natives.values().copied()))
        });
        next += interval;
        profile.sample(py, layout, own, &wanted, &mut natives, busy.as_ref())?;
        let elapsed = started.elapsed().as_secs();
        if elapsed > reported {
            reported = elapsed;
            if layout.native.is_none() {
                // Threads started since: their kernel ids, once a second.
                natives.extend(Threads::read(py)?.natives);
            }
            if let Some(progress) = progress {
                progress.report(&format!(
                    "profiling: {elapsed} s of {}, {} samples",
                    request.seconds, profile.samples.samples
                ));
            }
        }
    }
    Ok((profile, started.elapsed().as_secs_f64()))
}

/// Every Python thread's name and kernel id, by `threading.get_ident()`.
struct Threads {
    names: HashMap<u64, String>,
    natives: HashMap<u64, u64>,
}

impl Threads {
    fn read(py: Python<'_>) -> PyResult<Threads> {
        let active = py
            .import("threading")?
            .getattr("_active")?
            .cast_into::<PyDict>()?;
        let main: Option<u64> = py
            .import("threading")?
            .call_method0("main_thread")?
            .getattr(intern!(py, "ident"))?
            .extract()?;
        let mut threads = Threads {
            names: HashMap::new(),
            natives: HashMap::new(),
        };
        for (ident, thread) in active.copy()?.iter() {
            let ident: u64 = ident.extract()?;
            let name: String = thread.getattr(intern!(py, "name"))?.extract()?;
            threads.names.insert(ident, name);
            if let Some(native) = thread
                .getattr_opt(intern!(py, "native_id"))?
                .and_then(|id| id.extract::<u64>().ok())
            {
                let native = crate::threads::fresh_native_id(native, main == Some(ident));
                threads.natives.insert(ident, native);
            }
        }
        Ok(threads)
    }
}

/// The CPU time of threads, from `/proc/self/task/TID/schedstat`, each
/// file kept open and read again in place.
struct Cpu {
    files: HashMap<u64, (File, u64)>,
    /// Nanoseconds of CPU between samples that make a thread busy.
    threshold: u64,
}

impl Cpu {
    fn new(threshold: u64) -> Cpu {
        Cpu {
            files: HashMap::new(),
            threshold,
        }
    }

    /// Whether each thread of `natives` used CPU since the last call
    /// (true the first time it is seen, and when it cannot be read).
    fn busy(&mut self, natives: impl Iterator<Item = u64>) -> HashMap<u64, bool> {
        let mut busy = HashMap::new();
        for native in natives {
            let entry = match self.files.entry(native) {
                std::collections::hash_map::Entry::Occupied(entry) => Some(entry.into_mut()),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    File::open(format!("/proc/self/task/{native}/schedstat"))
                        .ok()
                        .map(|file| entry.insert((file, u64::MAX)))
                }
            };
            let Some((file, before)) = entry else {
                busy.insert(native, true);
                continue;
            };
            let mut buf = [0u8; 96];
            let now = file
                .read_at(&mut buf, 0)
                .ok()
                .and_then(|n| std::str::from_utf8(&buf[..n]).ok())
                .and_then(|text| text.split_whitespace().next()?.parse::<u64>().ok());
            let used = match now {
                Some(now) if *before != u64::MAX => now.saturating_sub(*before) >= self.threshold,
                _ => true,
            };
            *before = now.unwrap_or(u64::MAX);
            busy.insert(native, used);
        }
        busy
    }
}

/// The interpreter's switch interval, shortened while a profile runs.
///
/// A sample needs the GIL, and a thread running Python gives it up when it
/// next does I/O or when the waiter has waited a switch interval (5 ms by
/// default), whichever comes first; with 5 ms, most samples of a worker
/// that computes between reads and writes would land on its I/O. With
/// [`SAMPLE_SWITCH`] the sample is taken within that much of when it was
/// due, wherever the thread is, as a profiler from outside sees it. Only
/// threads that contend for the GIL switch more often meanwhile; the
/// interval is put back when the profile ends, unless the program changed
/// it in the meantime.
struct SwitchInterval {
    before: f64,
}

/// The switch interval while a profile runs, in seconds.
const SAMPLE_SWITCH: f64 = 0.000_2;

impl SwitchInterval {
    fn shorten(py: Python<'_>) -> PyResult<SwitchInterval> {
        let sys = py.import("sys")?;
        let before: f64 = sys.call_method0("getswitchinterval")?.extract()?;
        if before > SAMPLE_SWITCH {
            sys.call_method1("setswitchinterval", (SAMPLE_SWITCH,))?;
        }
        Ok(SwitchInterval { before })
    }

    fn restore(self, py: Python<'_>) {
        let Ok(sys) = py.import("sys") else { return };
        let now: Option<f64> = sys
            .call_method0("getswitchinterval")
            .and_then(|now| now.extract())
            .ok();
        // A value the program set meanwhile is the program's.
        if self.before > SAMPLE_SWITCH && now.is_some_and(|now| (now - SAMPLE_SWITCH).abs() < 1e-9)
        {
            let _ = sys.call_method1("setswitchinterval", (self.before,));
        }
    }
}

/// Files with their names, their contents as Python `bytes`.
type NamedFiles = Vec<(String, Py<PyBytes>)>;

/// The `profile` command's work: `(text, files, data)`, the files being
/// the flame graph and the folded stacks, named.
#[pyfunction]
#[pyo3(signature = (seconds, hz, thread=None, idle=false, progress=None, wants_data=false))]
pub(crate) fn profile_report(
    py: Python<'_>,
    seconds: f64,
    hz: u32,
    thread: Option<String>,
    idle: bool,
    progress: Option<Bound<'_, NativeProgress>>,
    wants_data: bool,
) -> PyResult<(String, NamedFiles, Option<NativeData>)> {
    let claim = ispyd_std::profile::claim()
        .map_err(|err| PyRuntimeError::new_err(err.message().to_owned()))?;
    let request = Request {
        seconds,
        hz,
        thread,
        idle,
    };
    let ran = SwitchInterval::shorten(py).and_then(|switch| {
        let ran = run(py, &request, progress.as_ref().map(Bound::get));
        switch.restore(py);
        ran
    });
    drop(claim);
    let (profile, took) = ran?;

    let pid = std::process::id();
    let mut header = format!(
        "Profile of pid {pid}: {took:.1} s at {hz} Hz, {} samples",
        profile.samples.samples
    );
    if !request.idle {
        header.push_str(&format!(
            " ({} idle samples left out; --idle keeps them)",
            profile.idle
        ));
    }
    let rendered = profile
        .samples
        .render(&header, &format!("ispyd profile of pid {pid}"))
        .map_err(|err| PyRuntimeError::new_err(err.message().to_owned()))?;
    let files = rendered
        .files()
        .into_iter()
        .map(|(name, bytes)| (name, PyBytes::new(py, &bytes).unbind()))
        .collect();
    let data = if wants_data {
        Some(NativeData::of(&serde_json::json!({
            "seconds": took,
            "hz": hz,
            "samples": profile.samples.samples,
            "idle_samples": profile.idle,
            "top": rendered.top,
            "folded": rendered.folded,
        }))?)
    } else {
        None
    };
    Ok((rendered.text, files, data))
}
