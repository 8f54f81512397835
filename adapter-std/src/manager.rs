//! [`ShellManager`]: loads the configuration, binds the socket and runs the
//! listener thread; one thread per session.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};
use std::net::{Shutdown, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ispyd_core::{
    Address, Config, ConfigError, ConfigProblem, ConfigWarning, Host, Limits, Listen, MAIN_SECTION,
    Plugin, Refusal, Registry, Session,
};

use crate::peer;
use crate::process::ProcessPlugin;
use crate::serve::serve;
use crate::signals;
use crate::socket::{self, BindError, SocketPathGuard};
use crate::stream::Stream;

/// Why a [`ShellManager`] could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is missing, unreadable or wrong; the message names
    /// the file, section and key.
    Config(ConfigError),
    /// The listening socket could not be created.
    Bind(BindError),
    /// The listener thread could not be started.
    Thread(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(err) => write!(f, "ispyd: {err}"),
            Error::Bind(err) => write!(f, "ispyd: {err}"),
            Error::Thread(err) => write!(f, "ispyd: cannot start the listener thread: {err}"),
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

enum Source {
    File(PathBuf),
    Text { name: String, text: String },
    Listen(String),
    Parsed(Box<Config>),
}

/// Configures and starts a [`ShellManager`] from code.
///
/// ```no_run
/// use ispyd_std::ShellManager;
/// let manager = ShellManager::builder()
///     .listen("/run/user/1000/myapp-%(pid)s.sock")
///     .start()?;
/// # Ok::<(), ispyd_std::Error>(())
/// ```
#[must_use]
pub struct Builder {
    source: Source,
    plugins: Vec<Arc<dyn Plugin>>,
    enable: Vec<String>,
    limits: Option<Limits>,
    report_warnings: bool,
}

impl Builder {
    fn new(source: Source) -> Builder {
        Builder {
            source,
            plugins: Vec::new(),
            enable: Vec::new(),
            limits: None,
            report_warnings: true,
        }
    }

    /// Reads the configuration from an ini file (see the README).
    pub fn config_file(mut self, path: impl AsRef<Path>) -> Builder {
        self.source = Source::File(path.as_ref().to_path_buf());
        self
    }

    /// Takes the configuration as ini text; `name` appears in messages.
    pub fn config_text(mut self, name: impl Into<String>, text: impl Into<String>) -> Builder {
        self.source = Source::Text {
            name: name.into(),
            text: text.into(),
        };
        self
    }

    /// Takes a configuration already parsed (by a binding that needs to look
    /// at it first, e.g. to load the plugins it names).
    pub fn config(mut self, config: Config) -> Builder {
        self.source = Source::Parsed(Box::new(config));
        self
    }

    /// Configures in code: listen on `address` (an absolute socket path,
    /// `%(pid)s` allowed, or `host:port`), with every available plugin.
    pub fn listen(mut self, address: impl Into<String>) -> Builder {
        self.source = Source::Listen(address.into());
        self
    }

    /// Makes a plugin available. It is loaded unless the configuration's
    /// `plugins` list leaves it out (`%(builtins)s` includes it).
    pub fn plugin(mut self, plugin: impl Plugin + 'static) -> Builder {
        self.plugins.push(Arc::new(plugin));
        self
    }

    /// Enables a gated section (as `[section] enabled = true` would).
    pub fn enable(mut self, section: impl Into<String>) -> Builder {
        self.enable.push(section.into());
        self
    }

    /// Replaces the limits from the configuration.
    pub fn limits(mut self, limits: Limits) -> Builder {
        self.limits = Some(limits);
        self
    }

    /// Whether to print configuration warnings to standard error at start
    /// (the default). They are available from [`ShellManager::warnings`]
    /// either way.
    pub fn report_warnings(mut self, report: bool) -> Builder {
        self.report_warnings = report;
        self
    }

    /// Loads the configuration, binds the socket and starts listening.
    pub fn start(self) -> Result<ShellManager, Error> {
        let mut available: Vec<Arc<dyn Plugin>> = vec![Arc::new(ProcessPlugin::new())];
        available.extend(self.plugins);
        let available_names: Vec<String> = available.iter().map(|p| p.describe().name).collect();
        let builtins: Vec<&str> = available_names.iter().map(String::as_str).collect();

        let mut config = match &self.source {
            Source::File(path) => {
                let name = path.display().to_string();
                let text = std::fs::read_to_string(path)
                    .map_err(|err| ConfigError::unreadable(&name, err.to_string()))?;
                Config::parse(&name, &text, &builtins)?
            }
            Source::Text { name, text } => Config::parse(name, text, &builtins)?,
            Source::Listen(address) => {
                let listen = Listen::parse(address).map_err(|what| ConfigError {
                    file: "<code>".to_owned(),
                    section: Some(MAIN_SECTION.to_owned()),
                    key: Some("listen".to_owned()),
                    problem: ConfigProblem::InvalidValue(what),
                })?;
                Config::new(listen, &builtins)
            }
            Source::Parsed(config) => (**config).clone(),
        };
        for section in &self.enable {
            config.set_enabled(section, true);
        }
        if let Some(limits) = self.limits {
            config.limits = limits;
        }

        let mut registry = Registry::new();
        for name in &config.plugins {
            let plugin = available
                .iter()
                .find(|p| p.describe().name == *name)
                .ok_or_else(|| ConfigError {
                    file: config.file.clone(),
                    section: Some(MAIN_SECTION.to_owned()),
                    key: Some("plugins".to_owned()),
                    problem: ConfigProblem::InvalidValue(format!(
                        "no plugin named '{name}' (available: {})",
                        available_names.join(", ")
                    )),
                })?;
            registry.register(Arc::clone(plugin));
        }
        let warnings = config.warnings(&registry.infos());
        if self.report_warnings {
            for warning in &warnings {
                eprintln!("ispyd: warning: {warning}");
            }
        }
        ShellManager::start(config, registry, warnings)
    }
}

enum ListenerSocket {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl ListenerSocket {
    fn accept(&self) -> io::Result<Stream> {
        match self {
            ListenerSocket::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
            ListenerSocket::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
        }
    }

    fn raw_fd(&self) -> RawFd {
        match self {
            ListenerSocket::Unix(l) => l.as_raw_fd(),
            ListenerSocket::Tcp(l) => l.as_raw_fd(),
        }
    }
}

/// What the listener and the session threads share.
struct Shared {
    host: Arc<Host>,
    registry: Arc<Registry>,
    limits: Limits,
    euid: u32,
    next_id: AtomicU64,
    stopping: AtomicBool,
    /// A clone of every open session's stream, so shutdown can end them.
    sessions: Mutex<HashMap<u64, Stream>>,
}

/// An ispyd shell embedded in this process: a listener thread named
/// `ispyd-listener`, and a thread per connected session.
///
/// Dropping it (or [`ShellManager::shutdown`]) stops listening, ends the
/// sessions and removes the socket file. Idle, it costs nothing: the
/// listener sleeps in `accept` and no timer runs.
pub struct ShellManager {
    config: Config,
    shared: Arc<Shared>,
    address: Address,
    warnings: Vec<ConfigWarning>,
    listener_fd: RawFd,
    thread: Option<JoinHandle<()>>,
    socket_file: Option<SocketPathGuard>,
}

impl fmt::Debug for ShellManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShellManager")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl ShellManager {
    /// Starts ispyd as the 2012 original did: configuration from an ini file.
    pub fn from_config_file(path: impl AsRef<Path>) -> Result<ShellManager, Error> {
        ShellManager::builder().config_file(path).start()
    }

    /// Starts configuring a manager in code.
    pub fn builder() -> Builder {
        Builder::new(Source::Listen(String::new()))
    }

    fn start(
        config: Config,
        registry: Registry,
        warnings: Vec<ConfigWarning>,
    ) -> Result<ShellManager, Error> {
        quiet_plugin_panics();
        let pid = std::process::id();
        let address = config.listen.resolve(pid);
        let (listener, socket_file) = match &address {
            Address::Unix(path) => {
                let (listener, guard) = socket::bind_unix(Path::new(path))?.into_parts();
                (ListenerSocket::Unix(listener), Some(guard))
            }
            Address::Tcp(host, port) => {
                let listener = socket::bind_tcp(host, *port, config.allow_remote)?;
                (ListenerSocket::Tcp(listener), None)
            }
        };
        let host = Arc::new(Host::new(pid, &config, registry.infos()));
        let shared = Arc::new(Shared {
            host,
            registry: Arc::new(registry),
            limits: config.limits,
            euid: peer::effective_uid(),
            next_id: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            sessions: Mutex::new(HashMap::new()),
        });
        let listener_fd = listener.raw_fd();
        // Every ispyd thread descends from the listener and inherits its
        // signal mask: the host's signals go to the host's threads.
        let thread = signals::with_signals_blocked(|| {
            thread::Builder::new()
                .name("ispyd-listener".to_owned())
                .spawn({
                    let shared = Arc::clone(&shared);
                    move || listen(&listener, &shared)
                })
        })
        .map_err(Error::Thread)?;
        Ok(ShellManager {
            config,
            shared,
            address,
            warnings,
            listener_fd,
            thread: Some(thread),
            socket_file,
        })
    }

    /// Where this process listens.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// What looked wrong in the configuration (unknown keys and sections).
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.warnings
    }

    /// How many sessions are connected now.
    pub fn session_count(&self) -> usize {
        lock(&self.shared.sessions).len()
    }

    /// Stops listening, ends every session and removes the socket file.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// Call in the child right after `fork()`. The child has none of the
    /// parent's threads: this closes the descriptors it inherited from them
    /// and, when `listen` has `%(pid)s`, starts a listener of the child's
    /// own and returns `Ok(true)`. With a fixed address it returns
    /// `Ok(false)`: the parent keeps serving it alone.
    pub fn restart_after_fork(&mut self) -> Result<bool, Error> {
        // SAFETY: in the child the descriptor is an inherited copy that no
        // thread uses (the listener thread exists only in the parent).
        unsafe {
            libc::close(self.listener_fd);
        }
        // A lock held at fork time by a parent thread stays held forever in
        // the child: only try it.
        if let Ok(sessions) = self.shared.sessions.try_lock() {
            for stream in sessions.values() {
                // SAFETY: as above, inherited copies nobody here uses; the
                // streams themselves are never dropped (see below).
                unsafe {
                    libc::close(stream.raw_fd());
                }
            }
        }
        // The parent's threads are gone: never join or detach them. Their
        // shared state keeps references from them, so it is never freed and
        // the closed descriptors are never closed twice.
        std::mem::forget(self.thread.take());
        // Safe to drop: the guard never removes a file another pid bound.
        self.socket_file = None;
        if !self.config.listen.is_per_process() {
            return Ok(false);
        }
        let registry = (*self.shared.registry).clone();
        *self = ShellManager::start(self.config.clone(), registry, self.warnings.clone())?;
        Ok(true)
    }

    fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        // SAFETY: the listener is owned by the listener thread, which is
        // alive until joined below, so the descriptor is still open.
        // shutdown(2) on a listening socket makes a blocked accept return.
        unsafe {
            libc::shutdown(self.listener_fd, libc::SHUT_RDWR);
        }
        let _ = thread.join();
        for stream in lock(&self.shared.sessions).values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        self.socket_file = None;
    }
}

impl Drop for ShellManager {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Keeps panics caught in plugin calls off the host's standard error: the
/// client that made the call gets the message instead. Panics on the host's
/// own threads still reach the hook that was installed before.
fn quiet_plugin_panics() {
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn listen(listener: &ListenerSocket, shared: &Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok(stream) => admit(stream, shared),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                // Out of descriptors or memory: back off instead of spinning.
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Checks who is calling and whether there is room, then starts a session.
fn admit(stream: Stream, shared: &Arc<Shared>) {
    if let Stream::Unix(unix) = &stream {
        let allowed = peer::peer_credentials(unix)
            .map(|cred| (cred.uid, peer::is_allowed(cred.uid, shared.euid)));
        match allowed {
            Ok((_, true)) => {}
            Ok((uid, false)) => {
                let refusal = Refusal::NotAllowed {
                    peer_uid: uid,
                    host_uid: shared.euid,
                };
                return refuse(stream, &refusal);
            }
            Err(_) => return,
        }
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    {
        let mut sessions = lock(&shared.sessions);
        if sessions.len() >= shared.limits.max_sessions {
            drop(sessions);
            let refusal = Refusal::TooManySessions {
                limit: shared.limits.max_sessions,
            };
            return refuse(stream, &refusal);
        }
        match stream.try_clone() {
            Ok(clone) => sessions.insert(id, clone),
            Err(_) => return,
        };
    }
    let _ = stream.set_read_timeout(Some(shared.limits.idle_timeout));
    let _ = stream.set_write_timeout(Some(shared.limits.send_timeout));
    let session = Session::new(Arc::clone(&shared.host), id, Instant::now());
    let registry = Arc::clone(&shared.registry);
    let owner = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name(format!("ispyd-session-{id}"))
        .spawn(move || {
            serve(stream, session, registry);
            lock(&owner.sessions).remove(&id);
        });
    if spawned.is_err() {
        if let Some(mut clone) = lock(&shared.sessions).remove(&id) {
            let _ = clone.write_all(b"*** ispyd: cannot start a session thread now.\n");
            let _ = clone.shutdown(Shutdown::Both);
        }
    }
}

fn refuse(mut stream: Stream, refusal: &Refusal) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(refusal.message().as_bytes());
    let _ = stream.shutdown(Shutdown::Both);
}
