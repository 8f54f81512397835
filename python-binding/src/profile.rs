//! The python plugin's `profile`: every thread's Python stack sampled at a
//! fixed rate from ispyd's own thread, aggregated in Rust as it comes, then
//! a top table, folded stacks and a flame graph (`inferno`).
//!
//! A sample takes the GIL, reads `sys._current_frames()` and walks each
//! thread's frames through `f_code` and `f_lineno`; each (code, line) place
//! is interned once, and a stack is a list of place numbers counted in a
//! map, so a profile's memory grows with the distinct stacks, not with its
//! length (and that too is capped). Between samples the GIL is let go.
//!
//! Idle threads (blocked in a lock, `select`, `sleep`: not running on a
//! CPU, as `/proc/self/task/TID/stat` says) are left out unless asked for,
//! and counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::{ffi, intern};

use crate::data::NativeData;
use crate::plugin::NativeProgress;

/// One profile at a time per process.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Distinct stacks kept; samples of further ones are counted together.
const MAX_STACKS: usize = 100_000;
/// Rows of the top table.
const TOP_ROWS: usize = 20;

/// A function and the line a sample found it at.
struct Place {
    /// Its code object's address: what makes it one function.
    code: usize,
    function: String,
    file: String,
    first_line: i64,
    line: i64,
}

#[derive(Default)]
struct Profile {
    places: Vec<Place>,
    index: HashMap<(usize, i64), u32>,
    /// Keeps the code objects whose addresses are in `index` alive.
    codes: Vec<Py<PyAny>>,
    stacks: HashMap<Vec<u32>, u64>,
    samples: u64,
    idle: u64,
    /// Samples of stacks past [`MAX_STACKS`].
    unkept: u64,
}

/// What `profile` was asked.
struct Request {
    seconds: f64,
    hz: u32,
    thread: Option<String>,
    idle: bool,
}

impl Profile {
    fn place(&mut self, py: Python<'_>, frame: &Bound<'_, PyAny>) -> PyResult<u32> {
        let code = frame.getattr(intern!(py, "f_code"))?;
        let line: Option<i64> = frame.getattr(intern!(py, "f_lineno"))?.extract()?;
        let line = line.unwrap_or(0);
        let key = (code.as_ptr() as usize, line);
        if let Some(&at) = self.index.get(&key) {
            return Ok(at);
        }
        let at = u32::try_from(self.places.len()).unwrap_or(u32::MAX);
        self.places.push(Place {
            code: key.0,
            function: code.getattr(intern!(py, "co_name"))?.extract()?,
            file: code.getattr(intern!(py, "co_filename"))?.extract()?,
            first_line: code.getattr(intern!(py, "co_firstlineno"))?.extract()?,
            line,
        });
        self.index.insert(key, at);
        self.codes.push(code.unbind());
        Ok(at)
    }

    fn sample(
        &mut self,
        py: Python<'_>,
        own: u64,
        selected: &dyn Fn(u64) -> bool,
        idle: &mut dyn FnMut(u64) -> bool,
    ) -> PyResult<()> {
        let frames = py
            .import("sys")?
            .call_method0(intern!(py, "_current_frames"))?
            .cast_into::<PyDict>()?;
        for (ident, frame) in frames.iter() {
            let ident: u64 = ident.extract()?;
            if ident == own || !selected(ident) {
                continue;
            }
            if idle(ident) {
                self.idle += 1;
                continue;
            }
            let mut stack = Vec::new();
            let mut frame = frame;
            for _ in 0..1000 {
                stack.push(self.place(py, &frame)?);
                let back = frame.getattr(intern!(py, "f_back"))?;
                if back.is_none() {
                    break;
                }
                frame = back;
            }
            stack.reverse();
            self.samples += 1;
            if let Some(count) = self.stacks.get_mut(&stack) {
                *count += 1;
            } else if self.stacks.len() < MAX_STACKS {
                self.stacks.insert(stack, 1);
            } else {
                self.unkept += 1;
            }
        }
        Ok(())
    }

    /// `function (file:line)` of a place, as folded stacks name frames.
    fn frame_name(&self, at: u32) -> String {
        let place = &self.places[at as usize];
        format!("{} ({}:{})", place.function, place.file, place.line).replace(';', ":")
    }

    fn folded(&self) -> String {
        let mut lines: Vec<String> = self
            .stacks
            .iter()
            .map(|(stack, count)| {
                let names: Vec<String> = stack.iter().map(|&at| self.frame_name(at)).collect();
                format!("{} {count}", names.join(";"))
            })
            .collect();
        if self.unkept > 0 {
            lines.push(format!(
                "[stacks past the {MAX_STACKS} kept] {}",
                self.unkept
            ));
        }
        lines.sort();
        lines.join("\n") + if lines.is_empty() { "" } else { "\n" }
    }

    /// Each function (a code object: one of its places) with its samples
    /// of its own and in total, most of its own first.
    fn functions(&self) -> Vec<(&Place, u64, u64)> {
        let mut table: HashMap<usize, (u32, u64, u64)> = HashMap::new();
        let mut seen: Vec<usize> = Vec::new();
        for (stack, &count) in &self.stacks {
            seen.clear();
            for (depth, &at) in stack.iter().enumerate() {
                let code = self.places[at as usize].code;
                let entry = table.entry(code).or_insert((at, 0, 0));
                if depth + 1 == stack.len() {
                    entry.1 += count;
                }
                if !seen.contains(&code) {
                    entry.2 += count;
                    seen.push(code);
                }
            }
        }
        let mut rows: Vec<_> = table
            .into_values()
            .map(|(at, own, total)| (&self.places[at as usize], own, total))
            .collect();
        rows.sort_by(|a, b| {
            (b.1, b.2)
                .cmp(&(a.1, a.2))
                .then_with(|| (&a.0.function, &a.0.file).cmp(&(&b.0.function, &b.0.file)))
        });
        rows
    }
}

/// Samples as `request` says, reporting to `progress` each second and
/// stopping early when it asks; returns the profile.
fn run(
    py: Python<'_>,
    request: &Request,
    progress: Option<&NativeProgress>,
) -> PyResult<(Profile, f64)> {
    // SAFETY: reads the calling thread's identity; no precondition.
    let own = unsafe { ffi::PyThread_get_thread_ident() } as u64;
    let threads = thread_table(py)?;
    let wanted = request.thread.clone();
    let selected = |ident: u64| match &wanted {
        None => true,
        Some(wanted) => {
            wanted.parse::<u64>().ok() == Some(ident)
                || threads.get(&ident).is_some_and(|(name, _)| name == wanted)
        }
    };
    let keep_idle = request.idle;
    let interval = Duration::from_secs_f64(1.0 / f64::from(request.hz.max(1)));
    // Idle: a thread that used (almost) no CPU since the last sample. Its
    // state at the sample says nothing: a busy thread waits for the GIL
    // that the sampler holds.
    let mut cpu: HashMap<u64, u64> = threads
        .values()
        .filter_map(|(_, native)| *native)
        .filter_map(|native| Some((native, cpu_ns(native)?)))
        .collect();
    let busy = (interval.as_nanos() as u64) / 50;
    let mut is_idle = |ident: u64| {
        if keep_idle {
            return false;
        }
        let Some(native) = threads.get(&ident).and_then(|(_, native)| *native) else {
            return false;
        };
        let Some(now) = cpu_ns(native) else {
            return false;
        };
        let before = cpu.insert(native, now).unwrap_or(now);
        now.saturating_sub(before) < busy
    };
    let total = Duration::from_secs_f64(request.seconds);
    let started = Instant::now();
    let mut next = started;
    let mut reported = 0u64;
    let mut profile = Profile::default();
    while started.elapsed() < total {
        if progress.is_some_and(NativeProgress::stop_requested) {
            break;
        }
        let now = Instant::now();
        if next > now {
            let wait = next - now;
            py.detach(|| std::thread::sleep(wait));
        }
        next += interval;
        profile.sample(py, own, &selected, &mut is_idle)?;
        let elapsed = started.elapsed().as_secs();
        if let Some(progress) = progress.filter(|_| elapsed > reported) {
            reported = elapsed;
            progress.report(&format!(
                "profiling: {elapsed} s of {}, {} samples",
                request.seconds, profile.samples
            ));
        }
    }
    Ok((profile, started.elapsed().as_secs_f64()))
}

/// Every Python thread's name and kernel id, by `threading.get_ident()`.
fn thread_table(py: Python<'_>) -> PyResult<HashMap<u64, (String, Option<u64>)>> {
    let active = py
        .import("threading")?
        .getattr("_active")?
        .cast_into::<PyDict>()?;
    let mut table = HashMap::new();
    for (ident, thread) in active.copy()?.iter() {
        let name: String = thread.getattr(intern!(py, "name"))?.extract()?;
        let native: Option<u64> = thread
            .getattr_opt(intern!(py, "native_id"))?
            .and_then(|id| id.extract().ok());
        table.insert(ident.extract()?, (name, native));
    }
    Ok(table)
}

/// The CPU time the kernel thread `native` has used, in nanoseconds
/// (`/proc/self/task/TID/schedstat`); `None` if it cannot be read.
fn cpu_ns(native: u64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{native}/schedstat")).ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// The `profile` command's work: `(text, folded, svg, data)`.
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
) -> PyResult<(String, String, Vec<u8>, Option<NativeData>)> {
    if RUNNING.swap(true, Ordering::AcqRel) {
        return Err(PyRuntimeError::new_err(
            "a profile is already running in this process; wait for it to end",
        ));
    }
    let request = Request {
        seconds,
        hz,
        thread,
        idle,
    };
    let ran = run(py, &request, progress.as_ref().map(Bound::get));
    RUNNING.store(false, Ordering::Release);
    let (profile, took) = ran?;

    let mut text = format!(
        "Profile of pid {}: {took:.1} s at {hz} Hz, {} samples",
        std::process::id(),
        profile.samples
    );
    if !request.idle {
        text.push_str(&format!(
            " ({} idle samples left out; --idle keeps them)",
            profile.idle
        ));
    }
    text.push_str("\n\n");
    let rows = profile.functions();
    let total = profile.samples.max(1) as f64;
    text.push_str("  SELF%  TOTAL%    SELF   TOTAL  FUNCTION (FILE:LINE)\n");
    for (place, own, all) in rows.iter().take(TOP_ROWS) {
        text.push_str(&format!(
            "{:>6.1}% {:>6.1}% {own:>7} {all:>7}  {} ({}:{})\n",
            *own as f64 * 100.0 / total,
            *all as f64 * 100.0 / total,
            place.function,
            place.file,
            place.first_line,
        ));
    }
    if rows.is_empty() {
        text.push_str("  (no samples)\n");
    }
    let folded = profile.folded();
    let mut svg = Vec::new();
    if !folded.is_empty() {
        let mut options = inferno::flamegraph::Options::default();
        options.title = format!("ispyd profile of pid {}", std::process::id());
        options.count_name = "samples".to_owned();
        inferno::flamegraph::from_lines(&mut options, folded.lines(), &mut svg).map_err(|err| {
            PyRuntimeError::new_err(format!("cannot draw the flame graph: {err}"))
        })?;
    }
    let data = if wants_data {
        let top: Vec<serde_json::Value> = rows
            .iter()
            .take(TOP_ROWS)
            .map(|(place, own, all)| {
                serde_json::json!({
                    "function": place.function, "file": place.file, "line": place.first_line,
                    "self": own, "total": all,
                    "self_pct": *own as f64 * 100.0 / total,
                    "total_pct": *all as f64 * 100.0 / total,
                })
            })
            .collect();
        Some(NativeData::of(&serde_json::json!({
            "seconds": took,
            "hz": hz,
            "samples": profile.samples,
            "idle_samples": profile.idle,
            "top": top,
            "folded": folded,
        }))?)
    } else {
        None
    };
    Ok((text, folded, svg, data))
}
