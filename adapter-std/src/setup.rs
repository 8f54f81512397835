//! From a configuration to a running engine: the [`Builder`] every engine
//! shares, what it resolves ([`Setup`]), and binding the listening socket.
//!
//! An engine (this crate's threads, `ispyd-mio`'s event loop) implements
//! [`Engine`]; the builder reads and checks the configuration, chooses the
//! plugins and reports warnings the same way for all of them, so that the
//! configuration file means one thing whatever engine serves it.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use ispyd_core::{
    Address, Config, ConfigError, ConfigProblem, ConfigWarning, EngineKind, Limits, Listen,
    MAIN_SECTION, Plugin, Registry,
};

use crate::process::ProcessPlugin;
use crate::socket::{self, BindError, SocketPathGuard};

/// Why ispyd could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is missing, unreadable or wrong; the message names
    /// the file, section and key.
    Config(ConfigError),
    /// The listening socket could not be created.
    Bind(BindError),
    /// ispyd's thread (listener or event loop) could not be started, or its
    /// event loop could not be created.
    Thread(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(err) => write!(f, "ispyd: {err}"),
            Error::Bind(err) => write!(f, "ispyd: {err}"),
            Error::Thread(err) => write!(f, "ispyd: cannot start its thread: {err}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config(err) => Some(err),
            Error::Bind(err) => Some(err),
            Error::Thread(err) => Some(err),
        }
    }
}

impl From<ConfigError> for Error {
    fn from(err: ConfigError) -> Self {
        Error::Config(err)
    }
}

impl From<BindError> for Error {
    fn from(err: BindError) -> Self {
        Error::Bind(err)
    }
}

/// Reads and parses a configuration file; `builtins` are the plugin names
/// `%(builtins)s` stands for.
pub fn read_config(path: &Path, builtins: &[&str]) -> Result<Config, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|err| ConfigError::unreadable(&name, err.to_string()))?;
    Config::parse(&name, &text, builtins)
}

/// What a [`Builder`] resolved: the checked configuration, the plugins it
/// names, and its warnings. An [`Engine`] starts from this.
#[derive(Debug)]
pub struct Setup {
    /// The configuration, with the builder's overrides applied.
    pub config: Config,
    /// The plugins the configuration names, in its order.
    pub registry: Registry,
    /// Unknown keys and sections.
    pub warnings: Vec<ConfigWarning>,
}

/// A way of serving sessions: std threads ([`Threads`]) or, in
/// `ispyd-mio`, an event loop.
pub trait Engine {
    /// Which engine this is, as `[ispyd] engine` names it.
    const KIND: EngineKind;
    /// What a started engine gives its host: stop it by dropping it.
    type Manager;
    /// Binds the socket and starts serving.
    fn start(setup: Setup) -> Result<Self::Manager, Error>;
}

/// The std engine: a listener thread and a thread per session.
#[derive(Debug, Clone, Copy, Default)]
pub struct Threads;

impl Engine for Threads {
    const KIND: EngineKind = EngineKind::Threads;
    type Manager = crate::ShellManager;

    fn start(setup: Setup) -> Result<crate::ShellManager, Error> {
        crate::ShellManager::start(setup)
    }
}

enum Source {
    File(PathBuf),
    Text { name: String, text: String },
    Listen(String),
    Parsed(Box<Config>),
}

/// Configures and starts ispyd from code, on the engine `E`.
///
/// ```no_run
/// use ispyd_std::ShellManager;
/// let manager = ShellManager::builder()
///     .listen("/run/user/1000/myapp-%(pid)s.sock")
///     .start()?;
/// # Ok::<(), ispyd_std::Error>(())
/// ```
#[must_use]
pub struct Builder<E: Engine = Threads> {
    source: Source,
    plugins: Vec<Arc<dyn Plugin>>,
    enable: Vec<String>,
    limits: Option<Limits>,
    report_warnings: bool,
    engine: PhantomData<E>,
}

impl<E: Engine> Default for Builder<E> {
    fn default() -> Self {
        Builder::new()
    }
}

impl<E: Engine> Builder<E> {
    /// A builder with no configuration yet (set one with
    /// [`Builder::config_file`], [`Builder::listen`] or the others).
    pub fn new() -> Builder<E> {
        Builder {
            source: Source::Listen(String::new()),
            plugins: Vec::new(),
            enable: Vec::new(),
            limits: None,
            report_warnings: true,
            engine: PhantomData,
        }
    }

    /// Reads the configuration from an ini file (see the README).
    pub fn config_file(mut self, path: impl AsRef<Path>) -> Self {
        self.source = Source::File(path.as_ref().to_path_buf());
        self
    }

    /// Takes the configuration as ini text; `name` appears in messages.
    pub fn config_text(mut self, name: impl Into<String>, text: impl Into<String>) -> Self {
        self.source = Source::Text {
            name: name.into(),
            text: text.into(),
        };
        self
    }

    /// Takes a configuration already parsed (by a binding that needs to look
    /// at it first, e.g. to load the plugins it names).
    pub fn config(mut self, config: Config) -> Self {
        self.source = Source::Parsed(Box::new(config));
        self
    }

    /// Configures in code: listen on `address` (an absolute socket path,
    /// `%(pid)s` allowed, or `host:port`), with every available plugin.
    pub fn listen(mut self, address: impl Into<String>) -> Self {
        self.source = Source::Listen(address.into());
        self
    }

    /// Makes a plugin available. It is loaded unless the configuration's
    /// `plugins` list leaves it out (`%(builtins)s` includes it).
    pub fn plugin(mut self, plugin: impl Plugin + 'static) -> Self {
        self.plugins.push(Arc::new(plugin));
        self
    }

    /// Makes a plugin available that is already shared (a binding that
    /// keeps its own handle on it).
    pub fn shared_plugin(mut self, plugin: Arc<dyn Plugin>) -> Self {
        self.plugins.push(plugin);
        self
    }

    /// Enables a gated section (as `[section] enabled = true` would).
    pub fn enable(mut self, section: impl Into<String>) -> Self {
        self.enable.push(section.into());
        self
    }

    /// Replaces the limits from the configuration.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Whether to print configuration warnings to standard error at start
    /// (the default). They are available from the manager either way.
    pub fn report_warnings(mut self, report: bool) -> Self {
        self.report_warnings = report;
        self
    }

    /// Loads and checks the configuration and chooses the plugins, without
    /// starting anything.
    pub fn prepare(self) -> Result<Setup, Error> {
        let mut available: Vec<Arc<dyn Plugin>> = vec![Arc::new(ProcessPlugin::new())];
        available.extend(self.plugins);
        let names: Vec<String> = available.iter().map(|p| p.describe().name).collect();
        let builtins: Vec<&str> = names.iter().map(String::as_str).collect();

        let mut config = match self.source {
            Source::File(path) => read_config(&path, &builtins)?,
            Source::Text { name, text } => Config::parse(&name, &text, &builtins)?,
            Source::Listen(address) => {
                let listen = Listen::parse(&address).map_err(|what| ConfigError {
                    file: "<code>".to_owned(),
                    section: Some(MAIN_SECTION.to_owned()),
                    key: Some("listen".to_owned()),
                    problem: ConfigProblem::InvalidValue(what),
                })?;
                Config::new(listen, &builtins)
            }
            Source::Parsed(config) => *config,
        };
        for section in &self.enable {
            config.set_enabled(section, true);
        }
        if let Some(limits) = self.limits {
            config.limits = limits;
        }
        // The builtin, now that the configuration says where its profiles
        // go for a client that does not save files.
        available[0] = Arc::new(ProcessPlugin::with_profile_dir(profile_dir(&config)));
        let registry = Registry::from_config(&config, &available)?;
        let mut warnings = config.warnings(&registry.infos());
        if let Some(asked) = config.engine.filter(|&asked| asked != E::KIND) {
            warnings.push(ConfigWarning {
                file: config.file.clone(),
                section: MAIN_SECTION.to_owned(),
                key: Some("engine".to_owned()),
                message: format!(
                    "this program embeds the {} engine; engine = {asked} is ignored (the key \
                     chooses only where the host lets it, as the Python package does)",
                    E::KIND
                ),
            });
        }
        if self.report_warnings {
            for warning in &warnings {
                eprintln!("ispyd: warning: {warning}");
            }
        }
        Ok(Setup {
            config,
            registry,
            warnings,
        })
    }

    /// Loads the configuration, binds the socket and starts serving.
    pub fn start(self) -> Result<E::Manager, Error> {
        E::start(self.prepare()?)
    }
}

/// `[process] profile_dir`, else the folder of the socket, else the
/// system's temporary directory.
fn profile_dir(config: &Config) -> std::path::PathBuf {
    let configured = config
        .section(crate::process::NAME)
        .and_then(|section| section.get("profile_dir"))
        .filter(|dir| !dir.is_empty());
    if let Some(dir) = configured {
        return dir.into();
    }
    match &config.listen {
        Listen::Unix(path) => std::path::Path::new(path)
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .map_or_else(std::env::temp_dir, std::path::Path::to_path_buf),
        _ => std::env::temp_dir(),
    }
}

/// A bound listening socket, not yet accepting.
#[derive(Debug)]
pub enum Listener {
    /// A UNIX socket; its guard removes the file when dropped.
    Unix(UnixListener, SocketPathGuard),
    /// A TCP socket.
    Tcp(TcpListener),
}

/// Binds the configuration's `listen` address for process `pid` (see
/// [`socket`] for the rules), and says where that is.
pub fn bind(config: &Config, pid: u32) -> Result<(Address, Listener), Error> {
    let address = config.listen.resolve(pid);
    let listener = match &address {
        Address::Unix(path) => {
            let (listener, guard) = socket::bind_unix(Path::new(path))?.into_parts();
            Listener::Unix(listener, guard)
        }
        Address::Tcp(host, port) => {
            Listener::Tcp(socket::bind_tcp(host, *port, config.allow_remote)?)
        }
    };
    Ok((address, listener))
}

/// Keeps panics caught in plugin calls off the host's standard error: the
/// client that made the call gets the message instead. Panics on the host's
/// own threads still reach the hook that was installed before. Every
/// engine names its threads `ispyd-…`.
pub fn quiet_plugin_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let ours = thread::current()
                .name()
                .is_some_and(|name| name.starts_with("ispyd-"));
            if !ours {
                previous(info);
            }
        }));
    });
}
