//! The exceptions the package raises, and turning Python errors into text
//! for the client.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    ispyd,
    IspydError,
    PyException,
    "Base class of the errors ispyd raises."
);
create_exception!(
    ispyd,
    ConfigurationError,
    IspydError,
    "The configuration is missing or wrong; the message names the file, section and key."
);
create_exception!(
    ispyd,
    ListenError,
    IspydError,
    "The listening socket could not be created (e.g. its path is held by a live process)."
);

/// Maps the std adapter's start-up error to the matching exception.
pub(crate) fn start_error(err: &ispyd_std::Error) -> PyErr {
    match err {
        ispyd_std::Error::Config(_) => ConfigurationError::new_err(err.to_string()),
        _ => ListenError::new_err(err.to_string()),
    }
}

/// The traceback of `err` as Python prints it.
pub(crate) fn traceback_text(py: Python<'_>, err: &PyErr) -> String {
    let formatted = py.import("traceback").and_then(|tb| {
        tb.call_method1(
            "format_exception",
            (err.get_type(py), err.value(py), err.traceback(py)),
        )?
        .extract::<Vec<String>>()
    });
    match formatted {
        Ok(lines) => lines.concat().trim_end().to_owned(),
        Err(_) => err.to_string(),
    }
}
