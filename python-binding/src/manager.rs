//! `NativeManager`: the `ShellManager` of the engine the configuration
//! chooses (`[ispyd] engine = threads | mio`), with the plugins it names
//! loaded from Python.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use ispyd_core::{Address, Config, EngineKind, Plugin};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::activate;
use crate::dump;
use crate::error::{ConfigurationError, start_error, traceback_text};
use crate::fork_watch;
use crate::plugin::{BrokenPlugin, PyPlugin};

/// The adapter the configuration's `engine` chose.
enum EngineManager {
    Threads(ispyd_std::ShellManager),
    Mio(ispyd_mio::ShellManager),
}

fn builder<E: ispyd_std::Engine>(
    config: Config,
    plugins: Vec<Arc<dyn Plugin>>,
    report_warnings: bool,
) -> ispyd_std::Builder<E> {
    plugins
        .into_iter()
        .fold(ispyd_std::Builder::new(), ispyd_std::Builder::shared_plugin)
        .config(config)
        .report_warnings(report_warnings)
}

impl EngineManager {
    /// Starts the engine the configuration names; `report_warnings`: print
    /// the configuration's warnings on stderr (not again when a dormant
    /// manager wakes: it printed them when it was made).
    fn start(
        config: Config,
        plugins: Vec<Arc<dyn Plugin>>,
        report_warnings: bool,
    ) -> Result<EngineManager, ispyd_std::Error> {
        Ok(match config.engine.unwrap_or_default() {
            EngineKind::Threads => EngineManager::Threads(
                builder::<ispyd_std::Threads>(config, plugins, report_warnings).start()?,
            ),
            EngineKind::Mio => EngineManager::Mio(
                builder::<ispyd_mio::Mio>(config, plugins, report_warnings).start()?,
            ),
        })
    }

    /// What [`EngineManager::start`] would check and warn of, without
    /// listening: for a manager that waits for `activate_on`, so that a bad
    /// plugin section fails and an unknown key is reported when the host
    /// starts, not when someone sends the signal.
    fn prepare(
        config: &Config,
        plugins: &[Arc<dyn Plugin>],
    ) -> Result<Vec<ispyd_core::ConfigWarning>, ispyd_std::Error> {
        let (config, plugins) = (config.clone(), plugins.to_vec());
        Ok(match config.engine.unwrap_or_default() {
            EngineKind::Threads => builder::<ispyd_std::Threads>(config, plugins, true).prepare(),
            EngineKind::Mio => builder::<ispyd_mio::Mio>(config, plugins, true).prepare(),
        }?
        .warnings)
    }

    fn address(&self) -> &Address {
        match self {
            EngineManager::Threads(m) => m.address(),
            EngineManager::Mio(m) => m.address(),
        }
    }

    fn warnings(&self) -> &[ispyd_core::ConfigWarning] {
        match self {
            EngineManager::Threads(m) => m.warnings(),
            EngineManager::Mio(m) => m.warnings(),
        }
    }

    fn shutdown(self) {
        match self {
            EngineManager::Threads(m) => m.shutdown(),
            EngineManager::Mio(m) => m.shutdown(),
        }
    }

    fn restart_after_fork(&mut self) -> Result<bool, ispyd_std::Error> {
        match self {
            EngineManager::Threads(m) => m.restart_after_fork(),
            EngineManager::Mio(m) => m.restart_after_fork(),
        }
    }
}

/// A shell configured with `activate_on`, waiting for its signal.
struct Dormant {
    config: Config,
    plugins: Vec<Arc<dyn Plugin>>,
}

/// The native side of `ispyd.manager.ShellManager`.
#[pyclass(module = "ispyd._native")]
pub(crate) struct NativeManager {
    inner: Arc<Mutex<Option<EngineManager>>>,
    /// Set while `activate_on`'s signal has not come.
    dormant: Arc<Mutex<Option<Dormant>>>,
    /// The Python plugin objects, for their `shutdown()`.
    plugins: Vec<Py<PyAny>>,
    address: String,
    warnings: Vec<String>,
    /// `listen` has `%(pid)s`: each forked child can listen on its own.
    per_process: bool,
}

#[pymethods]
impl NativeManager {
    /// Loads `config_file`, loads the plugins it names and starts listening.
    #[new]
    fn new(py: Python<'_>, config_file: String) -> PyResult<NativeManager> {
        let support = py.import("ispyd._support")?;
        let python_builtins: Vec<String> = support
            .getattr("BUILTINS")?
            .call_method0("keys")?
            .try_iter()?
            .map(|k| k.and_then(|k| k.extract::<String>()))
            .collect::<PyResult<_>>()?;
        let mut builtins = vec!["process"];
        builtins.extend(python_builtins.iter().map(String::as_str));

        let mut config = ispyd_std::read_config(Path::new(&config_file), &builtins)
            .map_err(|err| ConfigurationError::new_err(format!("ispyd: {err}")))?;
        // What one command or console line keeps of its output, before it
        // reaches Rust (where the core bounds it again, for every plugin).
        support.setattr("MAX_OUTPUT", config.limits.max_output)?;

        let mut available: Vec<Arc<dyn Plugin>> = Vec::new();
        let mut names = Vec::with_capacity(config.plugins.len());
        let mut plugins = Vec::new();
        for spec in &config.plugins {
            if spec == ispyd_std::process::NAME {
                names.push(spec.clone());
                continue;
            }
            let (module, class) = spec.split_once(':').unwrap_or_default();
            if !builtins.contains(&spec.as_str()) && (module.is_empty() || class.is_empty()) {
                return Err(ConfigurationError::new_err(format!(
                    "ispyd: {}: [ispyd] plugins: '{}' is neither a builtin ({}) nor of the form \
                     'package.module:Class'",
                    config.file,
                    ispyd_core::echoed(spec),
                    builtins.join(", ")
                )));
            }
            match load_plugin(&support, &config, spec) {
                Err(Loading::Bad(line)) => return Err(ConfigurationError::new_err(line)),
                Ok(plugin) => {
                    names.push(plugin.name().to_owned());
                    plugins.push(plugin.instance(py));
                    available.push(Arc::new(plugin));
                }
                Err(Loading::Failed(err)) => {
                    let traceback = traceback_text(py, &err);
                    eprintln!(
                        "ispyd: warning: plugin '{}' failed to load:\n{traceback}",
                        ispyd_core::echoed(spec)
                    );
                    names.push(spec.clone());
                    available.push(Arc::new(BrokenPlugin::new(spec, traceback)));
                }
            }
        }
        config.plugins = names;
        let per_process = config.listen.is_per_process();
        if !config.dump_on.is_empty() {
            dump::arm(py, &config.dump_on, config.dump_file.as_deref()).map_err(|err| {
                ConfigurationError::new_err(format!(
                    "ispyd: {}: [ispyd] dump_file: {err}",
                    config.file
                ))
            })?;
        }
        if let Some(signal) = config.activate_on {
            let warnings =
                EngineManager::prepare(&config, &available).map_err(|err| start_error(&err))?;
            let address = config.listen.resolve(std::process::id()).to_string();
            let file = config.file.clone();
            let inner = Arc::new(Mutex::new(None));
            let dormant = Arc::new(Mutex::new(Some(Dormant {
                config,
                plugins: available,
            })));
            activate::arm(signal, wake_up(signal, &inner, &dormant)).map_err(|err| {
                ConfigurationError::new_err(format!("ispyd: {file}: [ispyd] activate_on: {err}"))
            })?;
            return Ok(NativeManager {
                address,
                warnings: warnings.iter().map(ToString::to_string).collect(),
                inner,
                dormant,
                plugins,
                per_process,
            });
        }
        let manager = py
            .detach(|| EngineManager::start(config, available, true))
            .map_err(|err| start_error(&err))?;
        Ok(NativeManager {
            address: manager.address().to_string(),
            warnings: manager.warnings().iter().map(ToString::to_string).collect(),
            inner: Arc::new(Mutex::new(Some(manager))),
            dormant: Arc::new(Mutex::new(None)),
            plugins,
            per_process,
        })
    }

    /// Where this process listens: a socket path, or `host:port`.
    #[getter]
    fn address(&self) -> &str {
        &self.address
    }

    /// True when `listen` has `%(pid)s`, so that forked children listen on
    /// sockets of their own.
    #[getter]
    fn per_process(&self) -> bool {
        self.per_process
    }

    /// Unknown keys and sections found in the configuration.
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    /// True until `shutdown()`, also while waiting for `activate_on`.
    #[getter]
    fn running(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
            || self.is_dormant()
    }

    /// True while waiting for `activate_on`'s signal.
    #[getter]
    fn dormant(&self) -> bool {
        self.is_dormant()
    }

    /// Stops listening, ends every session and removes the socket file.
    /// Calling it again does nothing.
    fn shutdown(&self, py: Python<'_>) {
        let waiting = self
            .dormant
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if waiting.is_some() {
            // The waiting thread wakes, finds nothing to start and ends.
            activate::wake();
        }
        let manager = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(manager) = manager {
            // Session threads may be waiting for the GIL to finish a call.
            py.detach(|| manager.shutdown());
            let plugins: Vec<Py<PyAny>> = self.plugins.iter().map(|p| p.clone_ref(py)).collect();
            if let Ok(support) = py.import("ispyd._support") {
                if let Err(err) = support.call_method1("shutdown_plugins", (plugins,)) {
                    err.print(py);
                }
            }
        }
    }

    /// For the child after `os.fork()`: forgets the parent's threads and,
    /// with `%(pid)s` in `listen`, starts listening as the child. Returns
    /// whether the child listens.
    fn restart_after_fork(&mut self) -> PyResult<bool> {
        if self.is_dormant() {
            // Still waiting: this child waits for a signal of its own
            // (`activate::after_fork_in_child`), under its own pid.
            self.address = self.dormant_address().unwrap_or_default();
            return Ok(true);
        }
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(manager) = inner.as_mut() else {
            return Ok(false);
        };
        let listening = manager
            .restart_after_fork()
            .map_err(|err| start_error(&err))?;
        if listening {
            self.address = manager.address().to_string();
            if let Address::Unix(path) = manager.address() {
                fork_watch::report(Path::new(path));
            }
        } else {
            // The parent keeps the address; this child has no shell.
            std::mem::forget(inner.take());
        }
        Ok(listening)
    }
}

impl NativeManager {
    fn is_dormant(&self) -> bool {
        // A lock a parent thread held at fork time stays held: only try.
        self.dormant
            .try_lock()
            .is_ok_and(|dormant| dormant.is_some())
    }

    fn dormant_address(&self) -> Option<String> {
        let dormant = self.dormant.try_lock().ok()?;
        let config = &dormant.as_ref()?.config;
        Some(config.listen.resolve(std::process::id()).to_string())
    }
}

/// What the `activate_on` thread does when the signal comes: starts the
/// shell (no GIL needed) and says so on stderr; if it cannot listen, says
/// why and waits for the next signal.
fn wake_up(
    signal: ispyd_core::Signal,
    inner: &Arc<Mutex<Option<EngineManager>>>,
    dormant: &Arc<Mutex<Option<Dormant>>>,
) -> activate::OnWake {
    let inner = Arc::clone(inner);
    let dormant = Arc::clone(dormant);
    Arc::new(move || {
        let Some(Dormant { config, plugins }) = dormant
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return true;
        };
        match EngineManager::start(config.clone(), plugins.clone(), false) {
            Ok(manager) => {
                eprintln!(
                    "ispyd: {signal} received: listening on {}",
                    manager.address()
                );
                if let Address::Unix(path) = manager.address() {
                    fork_watch::report(Path::new(path));
                }
                *inner.lock().unwrap_or_else(PoisonError::into_inner) = Some(manager);
                true
            }
            Err(err) => {
                eprintln!("ispyd: {signal} received, but {err}; the next {signal} tries again");
                *dormant.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(Dormant { config, plugins });
                false
            }
        }
    })
}

/// Imports the plugin `spec`, reads its description, checks the keys it
/// declares and activates it with its own section.
///
/// The section is the one named after the plugin (`[NAME]`), as for the
/// builtins' gates, so the configuration's warnings (which know plugins by
/// name) agree about which sections are used. The name is only known once
/// the plugin exists, hence the separate activation step.
fn load_plugin(
    support: &Bound<'_, PyModule>,
    config: &Config,
    spec: &str,
) -> Result<PyPlugin, Loading> {
    let py = support.py();
    let instance = support
        .call_method1("load_plugin", (spec,))
        .map_err(Loading::Failed)?;
    let plugin = PyPlugin::new(py, instance.unbind()).map_err(Loading::Failed)?;
    config
        .check_settings(plugin.info())
        .map_err(|err| Loading::Bad(format!("ispyd: {err}")))?;
    let section = section_dict(py, config, plugin.name()).map_err(Loading::Failed)?;
    match support.call_method1("activate_plugin", (plugin.instance(py), section)) {
        Ok(_) => Ok(plugin),
        // The plugin's own section is wrong: a bad configuration, told as
        // one for [ispyd] keys is, not a plugin failure.
        Err(err) if err.is_instance_of::<ConfigurationError>(py) => {
            let message = err.value(py).to_string();
            Err(Loading::Bad(format!(
                "ispyd: {}: {}",
                config.file,
                ispyd_core::echoed(message.lines().next().unwrap_or_default())
            )))
        }
        Err(err) => Err(Loading::Failed(err)),
    }
}

/// Why a plugin named in `plugins` is not loaded.
enum Loading {
    /// Its section is wrong: the one line that says so, naming the file.
    Bad(String),
    /// It failed (import, describe or activate): it becomes a broken plugin
    /// that shows the traceback.
    Failed(PyErr),
}

/// The keys of the section `[name]`, for a plugin's `activate()`.
fn section_dict<'py>(py: Python<'py>, config: &Config, name: &str) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    if let Some(section) = config.section(name) {
        for (key, value) in section {
            dict.set_item(key, value)?;
        }
    }
    Ok(dict)
}
