//! Structured results made by native code (`threads`, `requests`): JSON
//! already, carried through the Python plugin untouched.

use pyo3::prelude::*;
use serde::Serialize;
use serde_json::value::RawValue;

/// A command's data as JSON, made in Rust. A plugin command returns it as
/// it got it; `run_command` and the plugin bridge pass it on without
/// turning it into a Python string and back (a big dump would be copied
/// four times and checked again).
#[pyclass(frozen, module = "ispyd._native")]
pub(crate) struct NativeData {
    json: Box<RawValue>,
}

impl NativeData {
    /// `value` serialised; no check needed, serde wrote it.
    pub(crate) fn of<T: Serialize>(value: &T) -> PyResult<NativeData> {
        serde_json::value::to_raw_value(value)
            .map(|json| NativeData { json })
            .map_err(|err| pyo3::exceptions::PyValueError::new_err(err.to_string()))
    }

    /// The JSON.
    pub(crate) fn json(&self) -> &RawValue {
        &self.json
    }
}

#[pymethods]
impl NativeData {
    /// The JSON text, for a caller that wants to look.
    fn __str__(&self) -> &str {
        self.json.get()
    }
}
