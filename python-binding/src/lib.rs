//! The native half of the `ispyd` Python package.
//!
//! Thin by design: the protocol is `ispyd-core`, the sockets and threads are
//! `ispyd-std`, the client is `ispy`. This crate only adapts Python objects
//! to the [`Plugin`](ispyd_core::Plugin) trait, exposes the manager to
//! Python, and maps errors. The per-call Python logic (calling `do_*`
//! methods, capturing `self.stdout`) lives in `ispyd/_support.py`, where it
//! is plain Python.
//!
//! What embedding in a Python process adds, each in its own module: a
//! forked child's socket is removed by its parent if the child cannot
//! (`fork_watch`); no ispyd thread runs Python once the interpreter starts
//! to end (`gate`); the signals of `dump_on` and `activate_on` get a native
//! handler (`signals`), which writes the dump (`dump`, reading requests
//! from a table made for signal handlers) or wakes the thread that starts
//! listening (`activate`).

mod activate;
mod audit;
mod data;
mod dump;
mod error;
mod fork_watch;
mod gate;
mod greenlet;
mod manager;
mod plugin;
mod profile;
mod signals;
mod symbol;
mod threads;
mod unpatched;
mod wsgi;

use pyo3::prelude::*;

/// Runs the `ispy` client with `sys.argv`; the `ispy` console script.
#[pyfunction]
fn ispy_main(py: Python<'_>) -> PyResult<u8> {
    let argv: Vec<String> = py.import("sys")?.getattr("argv")?.extract()?;
    Ok(py.detach(|| ispy::run(argv)))
}

/// How `environ` shows `value` of the variable `name` by default: `None`
/// as it is, else the masked text (the core's rule, shared with the
/// process plugin: [`ispyd_core::secret::masked`]).
#[pyfunction]
fn masked_value(name: &str, value: &str) -> Option<String> {
    ispyd_core::secret::masked(name, value)
}

/// `os.register_at_fork(before=...)`, while a manager runs.
#[pyfunction]
fn fork_prepare() {
    fork_watch::prepare();
}

/// `os.register_at_fork(after_in_parent=...)`.
#[pyfunction]
fn fork_parent() {
    fork_watch::parent();
}

/// `os.register_at_fork(after_in_child=...)`, before the managers restart:
/// the child's own state for what the parent's threads were doing.
#[pyfunction]
fn fork_child(py: Python<'_>) {
    gate::reset_after_fork();
    threads::note_main_thread();
    fork_watch::child();
    wsgi::forget_other_threads_after_fork();
    dump::after_fork_in_child(py);
    activate::after_fork_in_child();
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    threads::note_main_thread();
    audit::install(py)?;
    m.add_class::<manager::NativeManager>()?;
    m.add_class::<data::NativeData>()?;
    m.add_class::<plugin::NativeProgress>()?;
    m.add_function(wrap_pyfunction!(ispy_main, m)?)?;
    m.add_function(wrap_pyfunction!(threads::format_threads, m)?)?;
    m.add_function(wrap_pyfunction!(threads::threads_report, m)?)?;
    m.add_function(wrap_pyfunction!(masked_value, m)?)?;
    m.add_function(wrap_pyfunction!(fork_prepare, m)?)?;
    m.add_function(wrap_pyfunction!(fork_parent, m)?)?;
    m.add_function(wrap_pyfunction!(fork_child, m)?)?;
    m.add_function(wrap_pyfunction!(gate::close_python_calls, m)?)?;
    m.add_function(wrap_pyfunction!(dump::dump_report, m)?)?;
    m.add_function(wrap_pyfunction!(profile::profile_report, m)?)?;
    m.add_function(wrap_pyfunction!(signals::keep_first, m)?)?;
    m.add_function(wrap_pyfunction!(signals::handled_signals, m)?)?;
    m.add_function(wrap_pyfunction!(signals::rearm_at_next_request, m)?)?;
    unpatched::add_to(m)?;
    wsgi::add_wrapper_type(m)?;
    wsgi::add_body_types(m)?;
    m.add_class::<wsgi::FileClose>()?;
    m.add_function(wrap_pyfunction!(wsgi::format_requests, m)?)?;
    m.add_function(wrap_pyfunction!(wsgi::requests_report, m)?)?;
    m.add_function(wrap_pyfunction!(wsgi::active_request_count, m)?)?;
    m.add_function(wrap_pyfunction!(wsgi::asgi_track, m)?)?;
    m.add_function(wrap_pyfunction!(wsgi::asgi_untrack, m)?)?;
    m.add_function(wrap_pyfunction!(wsgi::asgi_requests, m)?)?;
    m.add_function(wrap_pyfunction!(wsgi::greenlet_requests, m)?)?;
    m.add("IspydError", py.get_type::<error::IspydError>())?;
    m.add(
        "ConfigurationError",
        py.get_type::<error::ConfigurationError>(),
    )?;
    m.add("ListenError", py.get_type::<error::ListenError>())?;
    Ok(())
}
