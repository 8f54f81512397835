//! Python objects as ispyd plugins.
//!
//! A Python plugin has the shape of the 2012 original's: a `name`, `do_*`
//! methods whose docstrings are their help, and `self.stdout` to write to.
//! `ispyd/_support.py` describes it and runs its commands; this file only
//! carries the calls across, holding the GIL for no longer than each call.

use std::sync::Arc;

use ispyd_core::{
    Attachment, Call, CommandInfo, Interactive, Interrupt, Outcome, Plugin, PluginError,
    PluginInfo, Progress, Report, Setting, SettingKind, Step,
};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyDict;
use serde_json::value::RawValue;

use crate::data::NativeData;
use crate::error::traceback_text;
use crate::gate;

/// Names what every Python call may wait for.
const INTERPRETER: &str = "the Python interpreter (the GIL)";

fn support(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    py.import("ispyd._support")
}

/// A loaded Python plugin instance.
pub(crate) struct PyPlugin {
    instance: Py<PyAny>,
    info: PluginInfo,
}

impl PyPlugin {
    /// Wraps `instance`, reading its description once.
    pub(crate) fn new(py: Python<'_>, instance: Py<PyAny>) -> PyResult<PyPlugin> {
        let described = support(py)?.call_method1("describe", (instance.bind(py),))?;
        let described = described.cast::<PyDict>()?;
        let name: String = item(described, "name")?;
        let summary: String = item(described, "summary")?;
        let gate: Option<String> = item(described, "gate")?;
        let commands: Vec<(String, String, Option<String>)> = item(described, "commands")?;
        let settings: Option<Vec<(String, String, u64, u64)>> = item(described, "settings")?;
        let mut info = PluginInfo::new(name, summary).waits_for(INTERPRETER);
        info.gate = gate;
        info.settings = settings.map(|settings| {
            settings
                .into_iter()
                .map(|(key, kind, min, max)| Setting {
                    key,
                    kind: match kind.as_str() {
                        "whole" => SettingKind::Whole { min, max },
                        "bool" => SettingKind::Bool,
                        "seconds" => SettingKind::Seconds,
                        _ => SettingKind::Text,
                    },
                })
                .collect()
        });
        info.commands = commands
            .into_iter()
            .map(|(name, help, gate)| CommandInfo {
                name,
                help,
                gate,
                long: false,
            })
            .collect();
        Ok(PyPlugin { instance, info })
    }

    /// What the plugin told the core about itself.
    pub(crate) fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The plugin's name.
    pub(crate) fn name(&self) -> &str {
        &self.info.name
    }

    /// Another reference to the Python object.
    pub(crate) fn instance(&self, py: Python<'_>) -> Py<PyAny> {
        self.instance.clone_ref(py)
    }
}

fn item<'py, T: FromPyObjectOwned<'py>>(dict: &Bound<'py, PyDict>, key: &str) -> PyResult<T> {
    match dict.get_item(key)? {
        Some(value) => value.extract().map_err(Into::into),
        None => Err(pyo3::exceptions::PyKeyError::new_err(key.to_owned())),
    }
}

impl Plugin for PyPlugin {
    fn describe(&self) -> PluginInfo {
        self.info.clone()
    }

    fn complete(&self, command: &str, text: &str) -> (usize, Vec<String>) {
        let nothing = (text.len(), Vec::new());
        let Some(_entry) = gate::enter() else {
            return nothing;
        };
        Python::attach(|py| {
            completion(
                py,
                "complete_command",
                (self.instance.bind(py), command, text),
            )
            .unwrap_or(nothing)
        })
    }

    fn call(&self, call: &Call) -> Result<Outcome, PluginError> {
        self.run(call, None)
    }

    fn call_with_progress(&self, call: &Call, progress: &Progress) -> Result<Outcome, PluginError> {
        self.run(call, Some(progress))
    }
}

/// `(start, candidates)` from the completion function `name` of
/// `ispyd._support`.
fn completion<'py>(
    py: Python<'py>,
    name: &str,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> PyResult<(usize, Vec<String>)> {
    support(py)?.call_method1(name, args)?.extract()
}

/// A Python object driving an interactive takeover: `start()` and
/// `feed(line)` each return `(output, prompt)`, with `prompt` `None` once
/// it is done.
struct PyInteractive {
    object: Owned,
    /// What the command printed before it returned the object.
    preamble: String,
    /// Its `interrupt()`, when it has one.
    interrupter: Option<Arc<dyn Interrupt>>,
}

/// Calls a Python takeover's `interrupt()` (the console's raises
/// KeyboardInterrupt in the line it runs). That needs the GIL, which the
/// running line may hold for a while, and a driver's loop must never wait
/// for it: the call is made from a short-lived thread of its own.
struct PyInterrupt {
    /// Shared, so that handing it to the thread needs no GIL.
    object: Arc<Owned>,
}

impl Interrupt for PyInterrupt {
    fn interrupt(&self) {
        let object = Arc::clone(&self.object);
        let _ = std::thread::Builder::new()
            .name("ispyd-interrupt".into())
            .spawn(move || {
                let Some(_entry) = gate::enter() else {
                    return;
                };
                Python::attach(|py| {
                    if let Some(Err(err)) = object.get().map(|o| o.call_method0(py, "interrupt")) {
                        err.write_unraisable(py, None);
                    }
                });
            });
    }
}

impl PyInteractive {
    fn step(&mut self, method: &str, line: Option<&str>) -> Step {
        let Some(object) = self.object.get() else {
            return Step::Done {
                output: String::new(),
            };
        };
        let Some(_entry) = gate::enter() else {
            return Step::Done {
                output: format!("*** {}\n", gate::CLOSED),
            };
        };
        Python::attach(|py| {
            let result = support(py).and_then(|support| {
                support
                    .call_method1("step_interactive", (object.bind(py), method, line))?
                    .extract::<(String, Option<String>)>()
            });
            match result {
                Ok((output, Some(prompt))) => Step::Continue { output, prompt },
                Ok((output, None)) => Step::Done { output },
                Err(err) => Step::Done {
                    output: format!("{}\n", traceback_text(py, &err)),
                },
            }
        })
    }
}

impl Interactive for PyInteractive {
    fn interrupter(&self) -> Option<Arc<dyn Interrupt>> {
        self.interrupter.clone()
    }

    fn complete(&mut self, text: &str) -> (usize, Vec<String>) {
        let nothing = (text.len(), Vec::new());
        let Some(object) = self.object.get() else {
            return nothing;
        };
        let Some(_entry) = gate::enter() else {
            return nothing;
        };
        Python::attach(|py| {
            completion(py, "complete_interactive", (object.bind(py), text))
                .ok()
                .filter(|(start, _)| *start <= text.len() && text.is_char_boundary(*start))
                .unwrap_or(nothing)
        })
    }

    fn start(&mut self) -> Step {
        let preamble = std::mem::take(&mut self.preamble);
        match self.step("start", None) {
            Step::Continue { output, prompt } => Step::Continue {
                output: preamble + &output,
                prompt,
            },
            Step::Done { output } => Step::Done {
                output: preamble + &output,
            },
        }
    }

    fn feed(&mut self, line: Option<&str>) -> Step {
        let step = self.step("feed", line);
        if matches!(step, Step::Done { .. }) {
            self.object = Owned(None);
        }
        step
    }
}

/// A Python object that Rust may drop on any thread, and that is released
/// when it is dropped, not later: a takeover given up on (its session
/// ended, its line timed out) must stop now (a pdb's `__del__` ends that
/// pdb's thread). pyo3 defers a decref made without the GIL until some
/// thread next enters Python through ispyd, which may be never; and the
/// thread dropping it (a driver's loop) must not wait for the GIL. So the
/// reference is dropped from a short-lived thread that takes the GIL.
///
/// Every Rust-held reference to a takeover is one of these: the last one
/// dropped is the one that frees it.
struct Owned(Option<Py<PyAny>>);

impl Owned {
    fn get(&self) -> Option<&Py<PyAny>> {
        self.0.as_ref()
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        let Some(object) = self.0.take() else {
            return;
        };
        let _ = std::thread::Builder::new()
            .name("ispyd-release".into())
            .spawn(move || {
                let Some(_entry) = gate::enter() else {
                    // The interpreter is exiting: pyo3's deferred decref will do.
                    return;
                };
                Python::attach(|_| drop(object));
            });
    }
}

/// Stands for a plugin that failed to load, so that the failure is seen
/// where the plugin would have been: in `plugins`, and in its shell.
pub(crate) struct BrokenPlugin {
    info: PluginInfo,
    traceback: String,
}

impl BrokenPlugin {
    pub(crate) fn new(spec: &str, traceback: String) -> BrokenPlugin {
        let last = traceback
            .lines()
            .last()
            .unwrap_or("error")
            .trim()
            .to_owned();
        let info = PluginInfo::new(
            spec,
            format!("FAILED TO LOAD ({last}); 'shell {spec}' then 'traceback' shows why"),
        )
        .command(
            "traceback",
            "Show the traceback of the failure to load this plugin.",
        )
        .inline();
        BrokenPlugin { info, traceback }
    }
}

impl Plugin for BrokenPlugin {
    fn describe(&self) -> PluginInfo {
        self.info.clone()
    }

    fn call(&self, _call: &Call) -> Result<Outcome, PluginError> {
        Ok(Outcome::Output(format!("{}\n", self.traceback)))
    }
}

impl PyPlugin {
    /// A call, with the progress of a long one for the command to report
    /// to (`self.progress` in Python; see `ispyd._support.run_command`).
    fn run(&self, call: &Call, progress: Option<&Progress>) -> Result<Outcome, PluginError> {
        let Some(_entry) = gate::enter() else {
            return Err(PluginError::new(gate::CLOSED));
        };
        Python::attach(|py| {
            type Ran = (
                String,
                Option<Py<PyAny>>,
                Option<Py<PyAny>>,
                Option<String>,
                Vec<(String, PyBackedBytes)>,
            );
            let run = || -> PyResult<Ran> {
                let progress = match progress {
                    Some(progress) => Some(Bound::new(
                        py,
                        NativeProgress {
                            progress: progress.clone(),
                        },
                    )?),
                    None => None,
                };
                support(py)?
                    .call_method1(
                        "run_command",
                        (
                            self.instance.bind(py),
                            call.command.as_str(),
                            &call.args,
                            call.session,
                            call.wants_data,
                            call.wants_text,
                            progress,
                            call.wants_files,
                        ),
                    )?
                    .extract()
            };
            let attach = |report: Report, files: Vec<(String, PyBackedBytes)>| {
                files.into_iter().try_fold(report, |report, (name, bytes)| {
                    Ok(report.attach(Attachment::new(name, bytes.to_vec())?))
                })
            };
            match run() {
                Ok((_, _, _, Some(message), _)) => Err(PluginError::new(message)),
                Ok((preamble, Some(interactive), _, None, _)) => {
                    let interrupter = interactive
                        .bind(py)
                        .hasattr("interrupt")
                        .unwrap_or(false)
                        .then(|| {
                            Arc::new(PyInterrupt {
                                object: Arc::new(Owned(Some(interactive.clone_ref(py)))),
                            }) as Arc<dyn Interrupt>
                        });
                    Ok(Outcome::Interactive(Box::new(PyInteractive {
                        object: Owned(Some(interactive)),
                        preamble,
                        interrupter,
                    })))
                }
                Ok((output, None, Some(data), None, files)) => {
                    let data = data.bind(py);
                    if let Ok(native) = data.cast::<NativeData>() {
                        let report = Report::new(call, output, native.get().json())?;
                        return attach(report, files).map(Outcome::Report);
                    }
                    let json: String = data
                        .extract()
                        .map_err(|err: PyErr| PluginError::new(traceback_text(py, &err)))?;
                    let json = RawValue::from_string(json).map_err(|err| {
                        PluginError::new(format!(
                            "'{}' gave data that is not JSON: {err}",
                            call.command
                        ))
                    })?;
                    attach(Report::new(call, output, &json)?, files).map(Outcome::Report)
                }
                Ok((output, None, None, None, files)) if files.is_empty() => {
                    Ok(Outcome::Output(output))
                }
                Ok((output, None, None, None, files)) => {
                    attach(Report::new(call, output, &())?, files).map(Outcome::Report)
                }
                Err(err) => Err(PluginError::new(traceback_text(py, &err))),
            }
        })
    }
}

/// What a Python plugin command reports its progress to: `self.progress`.
#[pyclass(module = "ispyd._native", frozen)]
pub(crate) struct NativeProgress {
    progress: Progress,
}

#[pymethods]
impl NativeProgress {
    /// Shows how far the command has got (`3 s of 10`) in place, and keeps
    /// it alive for another `call_timeout`.
    pub(crate) fn report(&self, text: &str) {
        self.progress.report(text);
    }

    /// True once the user pressed Ctrl-C (or the session gave up): answer
    /// now with what there is.
    #[getter]
    pub(crate) fn stop_requested(&self) -> bool {
        self.progress.stop_requested()
    }
}
