//! `dump_on`: every thread's Python stack and every active request, written
//! from inside the signal handler, at the moment a worker is being killed.
//!
//! gunicorn sends `SIGABRT` to a worker that missed its timeout and
//! `SIGKILL` soon after. Python's own handlers run only between bytecodes of
//! the main thread, so a worker stuck in C (the case that times out) dies
//! without a word. ispyd's handler does its work synchronously, in the
//! handler, on whatever thread the signal lands on:
//!
//! 1. a header naming the pid, the signal and the time;
//! 2. the active requests, read from the lock-free table in [`slots`];
//! 3. every thread's Python stack, by CPython's own
//!    `_Py_DumpTracebackThreads` (what `faulthandler` calls from its
//!    handlers: it reads the thread states without the GIL and writes with
//!    `write(2)` only);
//!
//! then the signal goes on to what handled it before (see `signals`):
//! gunicorn's `handle_abort` still runs if the main thread ever gets back to
//! bytecode, and a signal whose default is to end the process still ends it.
//!
//! Nothing in the handler allocates, locks or opens: the file is opened when
//! the dump is armed (and again in a forked child when its name has
//! `%(pid)s`), and text is formatted into a buffer on the stack.

pub(crate) mod slots;

use std::ffi::{CString, c_char, c_int, c_void};
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use ispyd_core::Signal;
use ispyd_std::process::civil_from_days;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

use crate::data::NativeData;
use crate::signals::{self, Role};
use crate::wsgi;

/// Where dumps are written; -1 when none is armed.
static FD: AtomicI32 = AtomicI32::new(-1);
/// Whether [`FD`] is a file ispyd opened (and may close), not stderr.
static OWN_FD: AtomicBool = AtomicBool::new(false);
/// `_Py_DumpTracebackThreads`, found when the dump is armed; 0 if missing.
static TRACEBACKS: AtomicUsize = AtomicUsize::new(0);
/// Where the interpreter does not export it (3.13 and later):
/// faulthandler's own handler for a signal of its own, registered to
/// write every thread's stack to [`FD`], called directly (see
/// [`borrow_faulthandler`]); 0 if neither is there.
static FAULTHANDLER_USER: AtomicUsize = AtomicUsize::new(0);
/// The signal number faulthandler knows that registration by.
static RELAY_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// True while a handler writes, so that a second signal does not
/// interleave its dump with the first.
static DUMPING: AtomicBool = AtomicBool::new(false);
/// The `dump_file` template, for a forked child to open its own.
static TEMPLATE: Mutex<Option<String>> = Mutex::new(None);

type TracebacksFn = unsafe extern "C" fn(c_int, *mut c_void, *mut c_void) -> *const c_char;

/// Arms the dump: opens the file `template` names (standard error if
/// `None`), and installs the handler for the signals `on`, in front of
/// what each had.
pub(crate) fn arm(py: Python<'_>, on: &[Signal], template: Option<&str>) -> Result<(), String> {
    let path = template.map(|t| t.replace("%(pid)s", &std::process::id().to_string()));
    let fd = match &path {
        Some(path) => open_append(path)?,
        None => libc::STDERR_FILENO,
    };
    *TEMPLATE.lock().unwrap_or_else(PoisonError::into_inner) = template.map(str::to_owned);
    swap_fd(fd, path.is_some());
    if find_tracebacks() == 0 {
        borrow_faulthandler(py, fd)?;
    }
    slots::arm(true);
    for signal in on {
        signals::take(*signal, Role::Dump);
    }
    Ok(())
}

/// CPython's `_Py_DumpTracebackThreads`, if the interpreter exports it
/// (up to 3.12), remembered; 0 if not.
fn find_tracebacks() -> usize {
    // SAFETY: dlsym with a NUL-terminated name; the result is checked.
    let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"_Py_DumpTracebackThreads".as_ptr()) };
    TRACEBACKS.store(found as usize, Ordering::Release);
    found as usize
}

/// Gets faulthandler's signal handler to write every thread's stack to
/// `fd`, for interpreters that do not export the routine it calls.
///
/// faulthandler refuses `register()` for SIGABRT (it is `enable()`'s), so
/// it is registered for a real-time signal nobody sends (`SIGRTMAX - 2`);
/// its handler's address is read back and the signal's disposition put
/// back as it was, so nothing visible changes. ispyd's handler then calls
/// that function with that signal's number: faulthandler looks the
/// registration up by number and writes the stacks.
fn borrow_faulthandler(py: Python<'_>, fd: c_int) -> Result<(), String> {
    let relay = libc::SIGRTMAX() - 2;
    // SAFETY: sigaction reads and restores a disposition; structs zeroed.
    let (before, handler) = unsafe {
        let mut before: libc::sigaction = std::mem::zeroed();
        libc::sigaction(relay, std::ptr::null(), &mut before);
        let registered = py.import("faulthandler").and_then(|faulthandler| {
            let options = pyo3::types::PyDict::new(py);
            options.set_item("file", fd)?;
            options.set_item("all_threads", true)?;
            options.set_item("chain", false)?;
            faulthandler.call_method("register", (relay,), Some(&options))
        });
        if let Err(err) = registered {
            return Err(format!("cannot borrow faulthandler's stack writer: {err}"));
        }
        let mut now: libc::sigaction = std::mem::zeroed();
        libc::sigaction(relay, std::ptr::null(), &mut now);
        (before, now.sa_sigaction)
    };
    // SAFETY: puts back the disposition read above.
    unsafe { libc::sigaction(relay, &before, std::ptr::null_mut()) };
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        return Ok(());
    }
    RELAY_SIGNAL.store(relay, Ordering::Release);
    FAULTHANDLER_USER.store(handler, Ordering::Release);
    Ok(())
}

/// In a forked child whose `dump_file` has `%(pid)s`: its own file.
pub(crate) fn after_fork_in_child(py: Python<'_>) {
    // A lock a parent thread held at fork time stays held: only try.
    let template = match TEMPLATE.try_lock() {
        Ok(template) => template.clone(),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner().clone(),
        Err(std::sync::TryLockError::WouldBlock) => None,
    };
    let Some(template) = template.filter(|t| t.contains("%(pid)s")) else {
        return;
    };
    if FD.load(Ordering::Acquire) < 0 {
        return;
    }
    let path = template.replace("%(pid)s", &std::process::id().to_string());
    match open_append(&path) {
        Ok(fd) => {
            swap_fd(fd, true);
            if FAULTHANDLER_USER.load(Ordering::Acquire) != 0 {
                if let Err(err) = borrow_faulthandler(py, fd) {
                    eprintln!("ispyd: dump_on: {err}");
                }
            }
        }
        Err(err) => eprintln!("ispyd: dump_on: {err}; this process's dumps go to stderr"),
    }
}

fn swap_fd(fd: c_int, own: bool) {
    let old = FD.swap(fd, Ordering::AcqRel);
    let old_own = OWN_FD.swap(own, Ordering::AcqRel);
    if old >= 0 && old_own && old != fd {
        // SAFETY: a descriptor this module opened and no longer uses.
        unsafe { libc::close(old) };
    }
}

/// Opens the dump file for appending, created 0600. A symbolic link, or a
/// file that is not a regular file of this process's user, is refused:
/// in a shared folder someone else could have put it there, to have the
/// dumps (stacks, request paths) written where they can read them, or
/// appended to a file of ours.
fn open_append(path: &str) -> Result<c_int, String> {
    let c_path = CString::new(path).map_err(|_| format!("dump_file '{path}' has a NUL byte"))?;
    // SAFETY: a NUL-terminated path; the result is checked.
    let fd = unsafe {
        libc::open(
            c_path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            0o600,
        )
    };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ELOOP) {
            return Err(format!("dump_file '{path}' is a symbolic link; refused"));
        }
        return Err(format!("cannot open dump_file '{path}': {err}"));
    }
    // SAFETY: fstat of the descriptor just opened, into a zeroed struct.
    let (regular, owner) = unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut stat);
        (stat.st_mode & libc::S_IFMT == libc::S_IFREG, stat.st_uid)
    };
    // SAFETY: no precondition.
    let uid = unsafe { libc::geteuid() };
    if !regular || owner != uid {
        // SAFETY: the descriptor opened above, not kept.
        unsafe { libc::close(fd) };
        return Err(format!(
            "dump_file '{path}' is not a regular file of uid {uid} (it belongs to uid {owner}); refused"
        ));
    }
    Ok(fd)
}

/// The dump's part of the handler for `signum`: writes it, unless another
/// signal's dump is being written.
pub(crate) fn on_signal(signum: c_int) {
    if !DUMPING.swap(true, Ordering::AcqRel) {
        let fd = FD.load(Ordering::Acquire);
        if fd >= 0 {
            write_dump(fd, Some(signum), None, None);
        }
        DUMPING.store(false, Ordering::Release);
    }
}

/// Formats into a buffer on the stack and writes it with `write(2)`: no
/// allocation, no lock.
struct Out {
    fd: c_int,
    buf: [u8; 2048],
    len: usize,
}

impl Out {
    fn new(fd: c_int) -> Out {
        Out {
            fd,
            buf: [0; 2048],
            len: 0,
        }
    }

    fn bytes(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.len == self.buf.len() {
                self.flush();
            }
            let n = bytes.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
    }

    fn flush(&mut self) {
        let mut done = 0;
        while done < self.len {
            // SAFETY: writes initialised bytes of `buf`.
            let n = unsafe {
                libc::write(
                    self.fd,
                    self.buf[done..self.len].as_ptr().cast(),
                    self.len - done,
                )
            };
            if n > 0 {
                done += n as usize;
            } else if n < 0
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
                continue;
            } else {
                break;
            }
        }
        self.len = 0;
    }
}

impl fmt::Write for Out {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes(s.as_bytes());
        Ok(())
    }
}

fn clock(id: libc::clockid_t) -> (u64, u64) {
    // SAFETY: clock_gettime into a local; async-signal-safe.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(id, &mut now) };
    (now.tv_sec as u64, now.tv_nsec as u64)
}

/// `CLOCK_MONOTONIC` in nanoseconds, as the request table records it.
pub(crate) fn monotonic_ns() -> u64 {
    let (secs, nanos) = clock(libc::CLOCK_MONOTONIC);
    secs * 1_000_000_000 + nanos
}

/// UTC `YYYY-mm-dd HH:MM:SS` of `secs` since the epoch, without the C
/// library's time functions (not async-signal-safe).
struct Utc(u64);

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rest = self.0 % 86_400;
        let (year, month, day) = civil_from_days((self.0 / 86_400) as i64);
        write!(
            f,
            "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
            rest / 3600,
            rest / 60 % 60,
            rest % 60
        )
    }
}

/// Seconds with milliseconds, from nanoseconds.
struct Seconds(u64);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:03} s",
            self.0 / 1_000_000_000,
            self.0 / 1_000_000 % 1000
        )
    }
}

/// One line of the requests part: what both the signal handler (from the
/// table) and the `dump` command (from the registry) write.
pub(crate) fn write_request(
    out: &mut impl fmt::Write,
    number: u64,
    text: &[u8],
    age_ns: u64,
    thread: u64,
    native: u64,
) {
    let _ = out.write_str("  ");
    for chunk in text.utf8_chunks() {
        let _ = out.write_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            let _ = out.write_char('\u{fffd}');
        }
    }
    let _ = writeln!(
        out,
        "  (request {number}, {}, thread 0x{thread:016x}, native {native})",
        Seconds(age_ns)
    );
}

/// A request as the `dump` command lists it, from the registry.
pub(crate) struct Line {
    pub(crate) number: u64,
    pub(crate) text: Vec<u8>,
    pub(crate) age_ns: u64,
    pub(crate) thread: u64,
    pub(crate) native: u64,
}

/// Writes the whole dump to `fd`: header, requests, stacks, footer. From a
/// signal handler (`listed` is `None`: the requests come from the table),
/// async-signal-safe.
fn write_dump(
    fd: c_int,
    signum: Option<c_int>,
    listed: Option<&[Line]>,
    python: Option<&dyn Fn(c_int)>,
) {
    let mut out = Out::new(fd);
    // SAFETY: getpid is async-signal-safe.
    let pid = unsafe { libc::getpid() };
    let (wall, _) = clock(libc::CLOCK_REALTIME);
    let cause = match signum {
        Some(signum) => signals::name_of(signum),
        None => "the dump command",
    };
    let _ = writeln!(
        out,
        "\nispyd dump of pid {pid}, on {cause}, at {}: active requests, then every thread's \
         Python stack",
        Utc(wall)
    );
    let now = monotonic_ns();
    let mut count = 0usize;
    let _ = writeln!(out, "Active requests:");
    let overflow = match listed {
        Some(lines) => {
            for line in lines {
                count += 1;
                write_request(
                    &mut out,
                    line.number,
                    &line.text,
                    line.age_ns,
                    line.thread,
                    line.native,
                );
            }
            0
        }
        None => slots::read(|entry| {
            count += 1;
            write_request(
                &mut out,
                entry.number,
                entry.text(),
                now.saturating_sub(entry.started),
                entry.thread,
                entry.native,
            );
        }),
    };
    if count == 0 && overflow == 0 {
        let _ = writeln!(out, "  none");
    }
    if overflow > 0 {
        let _ = writeln!(
            out,
            "  …and {overflow} more, over the {} this dump can name",
            slots::SLOTS
        );
    }
    let _ = out.write_str("\n");
    write_stacks(&mut out, python);
    let _ = writeln!(out, "ispyd dump of pid {pid}: end");
    out.flush();
}

/// Writes every thread's stack: by `_Py_DumpTracebackThreads`, or by
/// faulthandler's handler (to [`FD`], where the signal path writes), or by
/// `python` (the `dump` command, with the GIL, where neither applies).
fn write_stacks(out: &mut Out, python: Option<&dyn Fn(c_int)>) {
    let tracebacks = TRACEBACKS.load(Ordering::Acquire);
    if tracebacks == 0 {
        out.flush();
        let borrowed = FAULTHANDLER_USER.load(Ordering::Acquire);
        match python {
            Some(python) => python(out.fd),
            None if borrowed != 0 && out.fd == FD.load(Ordering::Acquire) => {
                // SAFETY: faulthandler's handler, called as the kernel
                // would for the signal it was registered for.
                unsafe {
                    let handler = std::mem::transmute::<usize, extern "C" fn(c_int)>(borrowed);
                    handler(RELAY_SIGNAL.load(Ordering::Acquire));
                }
            }
            None => {
                let _ = writeln!(out, "(Thread stacks are not available in this Python.)");
            }
        }
        return;
    }
    out.flush();
    // SAFETY: the function faulthandler calls from its signal handlers,
    // with the same arguments (any interpreter, no current thread state).
    let failed = unsafe {
        let tracebacks: TracebacksFn = std::mem::transmute::<usize, TracebacksFn>(tracebacks);
        tracebacks(out.fd, std::ptr::null_mut(), std::ptr::null_mut())
    };
    if !failed.is_null() {
        // SAFETY: CPython returns a static NUL-terminated message.
        let message = unsafe { std::ffi::CStr::from_ptr(failed) };
        let _ = out.write_str("(");
        out.bytes(message.to_bytes());
        let _ = out.write_str(")\n");
    }
}

/// The dump as the handler would write it now, for the `dump` command: the
/// same writer into an anonymous in-memory file, read back; the requests
/// (`lines`) from the registry, which lists them whether a dump is armed
/// or not.
fn dump_now(py: Python<'_>, lines: &[Line]) -> PyResult<String> {
    if TRACEBACKS.load(Ordering::Acquire) == 0 {
        find_tracebacks();
    }
    // SAFETY: memfd_create with a NUL-terminated name; checked.
    let fd = unsafe { libc::memfd_create(c"ispyd-dump".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(PyOSError::new_err(format!(
            "cannot make a memory file for the dump: {}",
            std::io::Error::last_os_error()
        )));
    }
    use std::io::{Read, Seek};
    use std::os::fd::FromRawFd;
    // SAFETY: a descriptor just made and owned by nobody else.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    // Where the routine is not exported: faulthandler's Python function,
    // which calls it, into the same file.
    let python = |fd: c_int| {
        let written = py.import("faulthandler").and_then(|faulthandler| {
            let options = pyo3::types::PyDict::new(py);
            options.set_item("file", fd)?;
            options.set_item("all_threads", true)?;
            faulthandler.call_method("dump_traceback", (), Some(&options))
        });
        if let Err(err) = written {
            let message = format!("(faulthandler could not write the stacks: {err})\n");
            // SAFETY: writes the message's bytes to the memory file.
            unsafe { libc::write(fd, message.as_ptr().cast(), message.len()) };
        }
    };
    write_dump(fd, None, Some(lines), Some(&python));
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|()| file.read_to_end(&mut bytes))
        .map_err(|err| PyOSError::new_err(format!("cannot read the dump back: {err}")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The `dump` command: the text the handler would write now and, with
/// `wants_data`, the same requests as data (`RESULTS.md`, `python dump`).
#[pyfunction]
#[pyo3(signature = (wants_data=false))]
pub(crate) fn dump_report(
    py: Python<'_>,
    wants_data: bool,
) -> PyResult<(String, Option<NativeData>)> {
    let lines = wsgi::dump_lines(py);
    let text = dump_now(py, &lines)?;
    if !wants_data {
        return Ok((text, None));
    }
    let requests: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| {
            let text = String::from_utf8_lossy(&line.text);
            let (method, path) = text.split_once(' ').unwrap_or((&text, ""));
            serde_json::json!({
                "id": line.number,
                "method": method,
                "path": path,
                "duration_s": line.age_ns as f64 / 1e9,
                "thread_id": line.thread,
                "native_id": line.native,
            })
        })
        .collect();
    let data = serde_json::json!({
        "pid": std::process::id(),
        "dump_on": signals::dump_signals().into_iter().map(signals::name_of).collect::<Vec<_>>(),
        "requests": requests,
        "text": text.clone(),
    });
    Ok((text, Some(NativeData::of(&data)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_are_civil() {
        assert_eq!(Utc(0).to_string(), "1970-01-01 00:00:00 UTC");
        assert_eq!(Utc(951_782_400).to_string(), "2000-02-29 00:00:00 UTC");
        assert_eq!(Utc(1_796_183_999).to_string(), "2026-12-02 03:59:59 UTC");
    }

    #[test]
    fn seconds_keep_milliseconds() {
        assert_eq!(Seconds(2_503_999_999).to_string(), "2.503 s");
    }
}
