//! The native half of the `ispyd` Python package.
//!
//! Thin by design: the protocol is `ispyd-core`, the sockets and threads are
//! `ispyd-std`, the client is `ispy`. This crate only adapts Python objects
//! to the [`Plugin`](ispyd_core::Plugin) trait, exposes the manager to
//! Python, and maps errors. The per-call Python logic (calling `do_*`
//! methods, capturing `self.stdout`) lives in `ispyd/_support.py`, where it
//! is plain Python.

mod error;
mod manager;
mod plugin;
mod threads;

use pyo3::prelude::*;

/// Runs the `ispy` client with `sys.argv`; the `ispy` console script.
#[pyfunction]
fn ispy_main(py: Python<'_>) -> PyResult<u8> {
    let argv: Vec<String> = py.import("sys")?.getattr("argv")?.extract()?;
    Ok(py.detach(|| ispy::run(argv)))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<manager::NativeManager>()?;
    m.add_function(wrap_pyfunction!(ispy_main, m)?)?;
    m.add_function(wrap_pyfunction!(threads::format_threads, m)?)?;
    m.add("IspydError", py.get_type::<error::IspydError>())?;
    m.add(
        "ConfigurationError",
        py.get_type::<error::ConfigurationError>(),
    )?;
    m.add("ListenError", py.get_type::<error::ListenError>())?;
    Ok(())
}
