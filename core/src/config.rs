//! The configuration model, parsed from ini text (the adapter reads the file).
//!
//! ```ini
//! [ispyd]
//! listen = /tmp/ispyd-%(pid)s.sock   ; absolute path: UNIX socket; host:port: TCP
//! plugins = %(builtins)s             ; the default
//! allow_remote = false               ; TCP on a non-loopback address
//! allow_remote_gated = false         ; gated features for peers on other machines
//! max_sessions = 8
//! max_line = 65536                   ; bytes
//! max_output = 8388608               ; bytes of one command's output kept
//! idle_timeout = 3600                ; seconds without a command
//! call_timeout = 10                  ; seconds before a slow call is given up on
//! send_timeout = 60                  ; seconds a client may stall reading
//! engine = threads                   ; or mio: one event-loop thread for all sessions
//! workers = 2                        ; mio: threads for calls that may wait
//! dump_on = SIGABRT                  ; Python hosts: stacks and requests on these signals
//! dump_file = stderr                 ; or an absolute path, %(pid)s allowed
//! activate_on = SIGUSR2              ; Python hosts: listen only once this arrives
//!
//! [python:console]
//! enabled = true
//! ```
//!
//! Every error names the file, the section and the key; unknown keys and
//! sections are warnings, reported at start-up.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ini::{Ini, ParseOption};

use crate::plugin::PluginInfo;
use crate::render::{echoed, escaped};
use crate::signal::Signal;

/// The main section's name.
pub const MAIN_SECTION: &str = "ispyd";

const MAIN_KEYS: &[&str] = &[
    "listen",
    "plugins",
    "allow_remote",
    "allow_remote_gated",
    "max_sessions",
    "max_line",
    "max_output",
    "idle_timeout",
    "call_timeout",
    "send_timeout",
    "engine",
    "workers",
    "dump_on",
    "dump_file",
    "activate_on",
];

/// `max_output` unless configured: 8 MiB, room for `threads` of a process
/// with thousands of threads, not for a runaway `print`.
pub const DEFAULT_MAX_OUTPUT: usize = 8 << 20;

/// Worker threads of the mio engine unless `workers` says otherwise.
pub const DEFAULT_WORKERS: usize = 2;

/// Limits every session and listener obeys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest accepted line (text mode) or frame (framed mode), in bytes.
    pub max_line: usize,
    /// The most bytes of one command's output (or one takeover line's)
    /// kept and sent; the rest is cut, and the user told how much.
    pub max_output: usize,
    /// Sessions served at once; further connections are refused politely.
    pub max_sessions: usize,
    /// A session with no command for this long is closed.
    pub idle_timeout: Duration,
    /// A plugin call still running after this long is given up on, and the
    /// user gets the shell back.
    pub call_timeout: Duration,
    /// A client that reads nothing of its pending output for this long is
    /// disconnected.
    pub send_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 64 * 1024,
            max_output: DEFAULT_MAX_OUTPUT,
            max_sessions: 8,
            idle_timeout: Duration::from_secs(3600),
            call_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(60),
        }
    }
}

/// Where the listener listens, as configured (`%(pid)s` not yet replaced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A UNIX socket path, absolute, possibly containing `%(pid)s`.
    Unix(String),
    /// A TCP address.
    Tcp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// Port, never 0.
        port: u16,
    },
}

/// Where one process listens: [`Listen`] with the pid filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A UNIX socket path.
    Unix(String),
    /// A TCP host and port.
    Tcp(String, u16),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => f.write_str(path),
            Address::Tcp(host, port) if host.contains(':') => write!(f, "[{host}]:{port}"),
            Address::Tcp(host, port) => write!(f, "{host}:{port}"),
        }
    }
}

const PID_VAR: &str = "%(pid)s";

impl Listen {
    /// Parses a `listen` value: an absolute path, or `host:port`.
    pub fn parse(value: &str) -> Result<Listen, String> {
        let value = value.trim();
        if value.starts_with('/') {
            check_template(value, &[PID_VAR])?;
            if value.ends_with('/') {
                return Err(format!(
                    "'{value}' names a directory, not a socket file",
                    value = echoed(value)
                ));
            }
            return Ok(Listen::Unix(value.to_owned()));
        }
        let Some((host, port)) = value.rsplit_once(':') else {
            return Err(format!(
                "'{value}' is neither an absolute path (UNIX socket) nor host:port (TCP)",
                value = echoed(value)
            ));
        };
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(format!(
                "'{value}' has no host before the port",
                value = echoed(value)
            ));
        }
        match port.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!(
                "'{value}': the port must be a number from 1 to 65535",
                value = echoed(value)
            )),
            Ok(port) => Ok(Listen::Tcp {
                host: host.to_owned(),
                port,
            }),
        }
    }

    /// The address of the process `pid`.
    pub fn resolve(&self, pid: u32) -> Address {
        match self {
            Listen::Unix(path) => Address::Unix(substitute_pid(path, &pid.to_string())),
            Listen::Tcp { host, port } => Address::Tcp(host.clone(), *port),
        }
    }

    /// True when the address differs per process (`%(pid)s` in a path).
    pub fn is_per_process(&self) -> bool {
        matches!(self, Listen::Unix(path) if path.contains(PID_VAR))
    }

    /// For a per-process path, the shell glob that matches every process's
    /// socket (`/tmp/ispyd-*.sock`); for others, the one address.
    pub fn pattern(&self) -> String {
        match self {
            Listen::Unix(path) => substitute_pid(&glob_escape(path), "*"),
            Listen::Tcp { .. } => self.resolve(0).to_string(),
        }
    }

    /// The pid a per-process socket path was made for, if `path` is one.
    pub fn pid_of(&self, path: &str) -> Option<u32> {
        let Listen::Unix(template) = self else {
            return None;
        };
        let template = template.replace("%%", "%");
        let (before, after) = template.split_once(PID_VAR)?;
        let digits = path.strip_prefix(before)?.strip_suffix(after)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    /// True for a TCP host that only this machine can reach.
    pub fn is_loopback(&self) -> bool {
        match self {
            Listen::Unix(_) => true,
            Listen::Tcp { host, .. } => is_loopback_host(host),
        }
    }
}

/// True for `localhost` and loopback IP addresses. Other names are assumed
/// reachable from elsewhere: the core resolves no names.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(is_loopback_ip)
}

/// True for an address only this machine can reach: IPv4 or IPv6
/// loopback, and `::ffff:127.0.0.1` (IPv4 loopback mapped into IPv6), which
/// reaches the same interface. The one loopback rule of every crate.
pub fn is_loopback_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

fn substitute_pid(template: &str, pid: &str) -> String {
    template.replace(PID_VAR, pid).replace("%%", "%")
}

fn glob_escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']') {
            out.push('[');
            out.push(c);
            out.push(']');
        } else {
            out.push(c);
        }
    }
    out
}

/// Checks that every `%(...)s` in `value` is one of `allowed`.
fn check_template(value: &str, allowed: &[&str]) -> Result<(), String> {
    let mut rest = value;
    while let Some(at) = rest.find('%') {
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("%%") {
            rest = after;
            continue;
        }
        match allowed.iter().find(|var| tail.starts_with(**var)) {
            Some(var) => rest = &tail[var.len()..],
            None => {
                let shown: String = tail.chars().take(12).collect();
                return Err(format!(
                    "unknown substitution '{shown}' in '{value}' (known: {}; write %% for a literal %)",
                    allowed.join(", "),
                    value = echoed(value),
                    shown = echoed(&shown)
                ));
            }
        }
    }
    Ok(())
}

/// What is wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigProblem {
    /// The file could not be read (the adapter fills in the OS's reason).
    Unreadable(String),
    /// The text is not ini.
    Syntax {
        /// 1-based line of the fault.
        line: usize,
        /// The parser's words.
        message: String,
    },
    /// A required section is absent.
    MissingSection,
    /// A required key is absent. `unknown` are the section's keys this
    /// version does not know, each with the known key it may be a typo of:
    /// the likeliest reason the required one is missing.
    MissingKey {
        /// Unknown keys of the section, with a suggestion when one is near.
        unknown: Vec<(String, Option<&'static str>)>,
    },
    /// A value does not have the form the key needs.
    InvalidValue(String),
    /// A key appears twice in one section.
    Duplicate,
}

/// A configuration that cannot be used, with where the fault is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or other source) the text came from.
    pub file: String,
    /// The section at fault, if the fault is in one.
    pub section: Option<String>,
    /// The key at fault, if the fault is in one.
    pub key: Option<String>,
    /// What is wrong.
    pub problem: ConfigProblem,
}

impl ConfigError {
    /// The file `file` could not be read, for `reason`.
    pub fn unreadable(file: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            file: file.into(),
            section: None,
            key: None,
            problem: ConfigProblem::Unreadable(reason.into()),
        }
    }

    fn at(file: &str, section: &str, key: Option<&str>, problem: ConfigProblem) -> Self {
        ConfigError {
            file: file.to_owned(),
            section: Some(section.to_owned()),
            key: key.map(str::to_owned),
            problem,
        }
    }
}

impl fmt::Display for ConfigError {
    /// One line, whatever the file holds: what came from the file (names,
    /// values, the ini parser's words about a line) is cut and its control
    /// characters escaped, and unknown keys are listed up to a count.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let ConfigProblem::Syntax { line, .. } = &self.problem {
            write!(f, ", line {line}")?;
        }
        if let Some(section) = &self.section {
            write!(f, ": [{}]", echoed(section))?;
        }
        if let Some(key) = &self.key {
            write!(f, " {}", echoed(key))?;
        }
        match &self.problem {
            ConfigProblem::Unreadable(reason) => write!(f, ": cannot read it: {reason}"),
            ConfigProblem::Syntax { message, .. } => {
                write!(f, ": not valid ini: {}", echoed(message))
            }
            ConfigProblem::MissingSection => f.write_str(": this section is required"),
            ConfigProblem::MissingKey { unknown } => {
                f.write_str(": this key is required")?;
                for (i, (key, near)) in unknown.iter().take(MAX_LISTED).enumerate() {
                    let lead = if i == 0 {
                        "; unknown keys here: "
                    } else {
                        ", "
                    };
                    write!(f, "{lead}'{}'", echoed(key))?;
                    if let Some(near) = near {
                        write!(f, " (did you mean '{near}'?)")?;
                    }
                }
                if unknown.len() > MAX_LISTED {
                    write!(f, ", and {} more", unknown.len() - MAX_LISTED)?;
                }
                Ok(())
            }
            // Its values were cut as it was made: the bound here only
            // keeps a message that forgot to from writing without end.
            ConfigProblem::InvalidValue(what) => {
                write!(f, ": {}", escaped(what, MAX_PROBLEM))
            }
            ConfigProblem::Duplicate => f.write_str(": given more than once"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The known name `typed` is most likely a typo of: at most two edits away
/// (a letter left out, added, changed or two swapped), and nearer than any
/// other.
fn nearest<'a>(typed: &str, known: &[&'a str]) -> Option<&'a str> {
    let length = typed.chars().count();
    known
        .iter()
        // Lengths further apart than the distance allowed cannot be near,
        // and skipping them keeps a hostile 100,000-character key cheap.
        .filter(|name| name.len().abs_diff(length) <= 2)
        .map(|name| (edits(typed, name), *name))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// The optimal string alignment distance: insertions, deletions,
/// substitutions and swaps of neighbours. (A dozen lines: not worth a
/// dependency.)
fn edits(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// Something in a configuration that is probably a mistake but does not stop
/// the program: an unknown key or section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The file the text came from.
    pub file: String,
    /// The section concerned.
    pub section: String,
    /// The key concerned, if any.
    pub key: Option<String>,
    /// What looks wrong.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    /// One line, whatever the file holds: the section and key are cut and
    /// their control characters escaped (see [`crate::render::echoed`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: [{}]", self.file, echoed(&self.section))?;
        if let Some(key) = &self.key {
            write!(f, " {}", echoed(key))?;
        }
        // Names in it were cut as it was made, as for a ConfigError.
        write!(f, ": {}", escaped(&self.message, MAX_PROBLEM))
    }
}

/// At most this many warnings are reported one by one; the rest are
/// counted in one more line, so that a broken or generated file cannot
/// make the host write without end.
pub const MAX_WARNINGS: usize = 10;

/// The longest description of a problem shown: room for [`MAX_LISTED`]
/// names of [`crate::render::ECHO_LIMIT`] characters, each already cut as
/// the description was made.
const MAX_PROBLEM: usize = 3_000;

/// Names listed in one message before the rest are counted.
const MAX_LISTED: usize = 10;

/// `names` for a message: each cut and escaped, at most [`MAX_LISTED`].
fn listed(names: &[&str]) -> String {
    let mut shown: Vec<String> = names.iter().take(MAX_LISTED).map(|n| echoed(n)).collect();
    if names.len() > MAX_LISTED {
        shown.push(format!("and {} more", names.len() - MAX_LISTED));
    }
    shown.join(", ")
}

/// A key a plugin reads from its own section `[NAME]`, and what its value
/// must be. A plugin that declares its keys (see
/// [`PluginInfo::setting`](crate::PluginInfo::setting)) has its section
/// checked by the core, as `[ispyd]` is: a bad value is a
/// [`ConfigError`] and an unknown key a [`ConfigWarning`], with the
/// same wording, bounds and typo hints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The key, as written in the file.
    pub key: String,
    /// What its value must be.
    pub kind: SettingKind,
}

/// What a [`Setting`]'s value must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingKind {
    /// Any text (a path, a name).
    Text,
    /// A boolean, as `enabled` is: true/false, on/off, yes/no, 1/0.
    Bool,
    /// A whole number from `min` to `max`, both included.
    Whole {
        /// The smallest value allowed.
        min: u64,
        /// The largest value allowed.
        max: u64,
    },
    /// A number of seconds above 0, at most a year (as `call_timeout`).
    Seconds,
}

impl SettingKind {
    /// Checks `value`; the error says what was wrong, quoting it cut and
    /// escaped.
    pub fn check(&self, value: &str) -> Result<(), String> {
        match self {
            SettingKind::Text => Ok(()),
            SettingKind::Bool => parse_bool(value).map(drop),
            SettingKind::Whole { min, max } => match value.trim().parse::<u64>() {
                Ok(n) if (*min..=*max).contains(&n) => Ok(()),
                _ => Err(format!(
                    "'{value}' is not a whole number from {min} to {max}",
                    value = echoed(value)
                )),
            },
            SettingKind::Seconds => parse_seconds(value).map(drop),
        }
    }
}

/// Keeps the first [`MAX_WARNINGS`] of `warnings` and counts the rest.
fn bounded(mut warnings: Vec<ConfigWarning>) -> Vec<ConfigWarning> {
    if warnings.len() > MAX_WARNINGS {
        let more = warnings.len() - MAX_WARNINGS;
        let last = warnings[MAX_WARNINGS].clone();
        warnings.truncate(MAX_WARNINGS);
        warnings.push(ConfigWarning {
            file: last.file,
            section: last.section,
            key: None,
            message: format!("and {more} more warnings like these, not shown"),
        });
    }
    warnings
}

/// Which adapter serves the sessions, where a host lets the configuration
/// choose (the Python binding does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    /// A listener thread and a thread per session (`ispyd-std`).
    #[default]
    Threads,
    /// One event-loop thread for every session, and a small pool for calls
    /// that may wait (`ispyd-mio`).
    Mio,
}

impl fmt::Display for EngineKind {
    /// The name `[ispyd] engine` gives it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EngineKind::Threads => "threads",
            EngineKind::Mio => "mio",
        })
    }
}

/// A parsed configuration: the main section's settings and every other
/// section's keys (for plugins to read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where the text came from, for messages.
    pub file: String,
    /// Where to listen.
    pub listen: Listen,
    /// Plugin names in load order, `%(builtins)s` expanded.
    pub plugins: Vec<String>,
    /// Allows a TCP `listen` address other than loopback.
    pub allow_remote: bool,
    /// Lets peers on other machines (no uid rule can apply to them) use
    /// gated features: the console and the debugger run code as the host.
    pub allow_remote_gated: bool,
    /// Session and listener limits.
    pub limits: Limits,
    /// The adapter the configuration asks for (`engine`), if it says.
    pub engine: Option<EngineKind>,
    /// Threads the mio engine may run plugin calls on (`workers`).
    pub workers: usize,
    /// Signals on which a Python host writes every thread's stack and
    /// every active request, then hands the signal on (`dump_on`).
    pub dump_on: Vec<Signal>,
    /// Where those dumps go (`dump_file`), `%(pid)s` not yet replaced;
    /// `None`: standard error.
    pub dump_file: Option<String>,
    /// A Python host listens only once this signal arrives (`activate_on`).
    pub activate_on: Option<Signal>,
    sections: BTreeMap<String, BTreeMap<String, String>>,
    warnings: Vec<ConfigWarning>,
}

impl Config {
    /// A configuration made in code, listening on `listen`, with the
    /// `builtins` as plugins and default limits.
    pub fn new(listen: Listen, builtins: &[&str]) -> Config {
        Config {
            file: "<code>".to_owned(),
            listen,
            plugins: builtins.iter().map(|s| (*s).to_owned()).collect(),
            allow_remote: false,
            allow_remote_gated: false,
            limits: Limits::default(),
            engine: None,
            workers: DEFAULT_WORKERS,
            dump_on: Vec::new(),
            dump_file: None,
            activate_on: None,
            sections: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    /// Parses ini `text` read from `file`. `%(builtins)s` in `plugins`
    /// expands to `builtins`.
    pub fn parse(file: &str, text: &str, builtins: &[&str]) -> Result<Config, ConfigError> {
        let options = ParseOption {
            enabled_quote: false,
            enabled_escape: false,
            ..ParseOption::default()
        };
        let ini = Ini::load_from_str_opt(text, options).map_err(|err| ConfigError {
            file: file.to_owned(),
            section: None,
            key: None,
            problem: ConfigProblem::Syntax {
                line: err.line + 1,
                message: err.msg.into_owned(),
            },
        })?;
        let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (name, props) in ini.iter() {
            let Some(name) = name else {
                if let Some((key, _)) = props.iter().next() {
                    return Err(ConfigError {
                        file: file.to_owned(),
                        section: None,
                        key: Some(key.to_owned()),
                        problem: ConfigProblem::InvalidValue(
                            "keys must come after a [section] header".to_owned(),
                        ),
                    });
                }
                continue;
            };
            let name = name.trim().to_owned();
            let section = sections.entry(name.clone()).or_default();
            for (key, value) in props.iter() {
                let key = key.trim().to_ascii_lowercase();
                if section
                    .insert(key.clone(), value.trim().to_owned())
                    .is_some()
                {
                    return Err(ConfigError::at(
                        file,
                        &name,
                        Some(&key),
                        ConfigProblem::Duplicate,
                    ));
                }
            }
        }
        Config::from_sections(file, sections, builtins)
    }

    fn from_sections(
        file: &str,
        sections: BTreeMap<String, BTreeMap<String, String>>,
        builtins: &[&str],
    ) -> Result<Config, ConfigError> {
        let main = sections.get(MAIN_SECTION).ok_or_else(|| ConfigError {
            file: file.to_owned(),
            section: Some(MAIN_SECTION.to_owned()),
            key: None,
            problem: ConfigProblem::MissingSection,
        })?;
        let invalid = |key: &str, what: String| {
            ConfigError::at(
                file,
                MAIN_SECTION,
                Some(key),
                ConfigProblem::InvalidValue(what),
            )
        };
        let listen = main.get("listen").ok_or_else(|| {
            let unknown = main
                .keys()
                .filter(|key| !MAIN_KEYS.contains(&key.as_str()))
                .map(|key| (key.clone(), nearest(key, MAIN_KEYS)))
                .collect();
            ConfigError::at(
                file,
                MAIN_SECTION,
                Some("listen"),
                ConfigProblem::MissingKey { unknown },
            )
        })?;
        let listen = Listen::parse(listen).map_err(|what| invalid("listen", what))?;

        let allow_remote = match main.get("allow_remote") {
            Some(value) => parse_bool(value).map_err(|what| invalid("allow_remote", what))?,
            None => false,
        };
        let allow_remote_gated = match main.get("allow_remote_gated") {
            Some(value) => parse_bool(value).map_err(|what| invalid("allow_remote_gated", what))?,
            None => false,
        };
        if let Listen::Tcp { host, .. } = &listen {
            if !allow_remote && !is_loopback_host(host) {
                return Err(invalid(
                    "listen",
                    format!(
                        "'{host}' is not a loopback address; anyone who can reach it could \
                         inspect this process. Use localhost, or set allow_remote = true \
                         if you really mean it"
                    ),
                ));
            }
        }

        let plugins_text = main
            .get("plugins")
            .map(String::as_str)
            .unwrap_or("%(builtins)s");
        check_template(plugins_text, &["%(builtins)s"]).map_err(|what| invalid("plugins", what))?;
        let mut plugins: Vec<String> = Vec::new();
        for word in plugins_text.split_whitespace() {
            let names: Vec<&str> = if word == "%(builtins)s" {
                builtins.to_vec()
            } else {
                vec![word]
            };
            for name in names {
                if !plugins.iter().any(|p| p == name) {
                    plugins.push(name.to_owned());
                }
            }
        }

        let mut limits = Limits::default();
        if let Some(value) = main.get("max_sessions") {
            limits.max_sessions = parse_number(value, 1, 100_000, "sessions")
                .map_err(|what| invalid("max_sessions", what))?;
        }
        if let Some(value) = main.get("max_line") {
            limits.max_line = parse_number(value, 256, 16 << 20, "bytes")
                .map_err(|what| invalid("max_line", what))?;
        }
        if let Some(value) = main.get("max_output") {
            limits.max_output = parse_number(value, 1024, 1 << 30, "bytes")
                .map_err(|what| invalid("max_output", what))?;
        }
        for (key, slot) in [
            ("idle_timeout", &mut limits.idle_timeout),
            ("call_timeout", &mut limits.call_timeout),
            ("send_timeout", &mut limits.send_timeout),
        ] {
            if let Some(value) = main.get(key) {
                *slot = parse_seconds(value).map_err(|what| invalid(key, what))?;
            }
        }

        let engine = match main
            .get("engine")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None => None,
            Some("threads") => Some(EngineKind::Threads),
            Some("mio") => Some(EngineKind::Mio),
            Some(other) => {
                return Err(invalid(
                    "engine",
                    format!("'{}' is not an engine; use threads or mio", echoed(other)),
                ));
            }
        };
        let workers = match main.get("workers") {
            Some(value) => {
                parse_number(value, 1, 64, "threads").map_err(|what| invalid("workers", what))?
            }
            None => DEFAULT_WORKERS,
        };

        let dump_on = match main.get("dump_on") {
            Some(value) => Signal::parse_list(value).map_err(|what| invalid("dump_on", what))?,
            None => Vec::new(),
        };
        let dump_file = match main.get("dump_file").map(|v| v.trim()) {
            None | Some("" | "stderr" | "-") => None,
            Some(path) if path.starts_with('/') => {
                check_template(path, &[PID_VAR]).map_err(|what| invalid("dump_file", what))?;
                Some(path.to_owned())
            }
            Some(path) => {
                return Err(invalid(
                    "dump_file",
                    format!("'{}' is not an absolute path (or stderr)", echoed(path)),
                ));
            }
        };
        let activate_on = match main.get("activate_on").map(|v| v.trim()) {
            None | Some("") => None,
            Some(value) => {
                let signal = Signal::parse(value).map_err(|what| invalid("activate_on", what))?;
                if dump_on.contains(&signal) {
                    return Err(invalid(
                        "activate_on",
                        format!("{signal} is also in dump_on; give each its own signal"),
                    ));
                }
                Some(signal)
            }
        };

        let mut warnings = Vec::new();
        if let Listen::Tcp { host, .. } = &listen {
            if !is_loopback_host(host) {
                let gated = if allow_remote_gated {
                    "and allow_remote_gated lets them use the console and the debugger"
                } else {
                    "the console and the debugger are refused to them (allow_remote_gated)"
                };
                warnings.push(ConfigWarning {
                    file: file.to_owned(),
                    section: MAIN_SECTION.to_owned(),
                    key: Some("listen".to_owned()),
                    message: format!(
                        "'{}' is reachable from other machines: no uid check can apply to \
                         their connections; {gated}",
                        echoed(host)
                    ),
                });
            }
        }
        for key in main.keys() {
            if !MAIN_KEYS.contains(&key.as_str()) {
                warnings.push(ConfigWarning {
                    file: file.to_owned(),
                    section: MAIN_SECTION.to_owned(),
                    key: Some(key.clone()),
                    message: match nearest(key, MAIN_KEYS) {
                        Some(near) => format!("unknown key, ignored (did you mean '{near}'?)"),
                        None => format!("unknown key, ignored (known: {})", MAIN_KEYS.join(", ")),
                    },
                });
            }
        }
        for (name, section) in &sections {
            if let Some(value) = section.get("enabled") {
                parse_bool(value).map_err(|what| {
                    ConfigError::at(
                        file,
                        name,
                        Some("enabled"),
                        ConfigProblem::InvalidValue(what),
                    )
                })?;
            }
        }

        Ok(Config {
            file: file.to_owned(),
            listen,
            plugins,
            allow_remote,
            allow_remote_gated,
            limits,
            engine,
            workers,
            dump_on,
            dump_file,
            activate_on,
            sections,
            warnings,
        })
    }

    /// The file the dumps of process `pid` go to; `None`: standard error.
    pub fn dump_path(&self, pid: u32) -> Option<String> {
        let template = self.dump_file.as_deref()?;
        Some(substitute_pid(template, &pid.to_string()))
    }

    /// True when section `name` has `enabled` set to a true value. Gated
    /// features are off unless enabled.
    pub fn is_enabled(&self, name: &str) -> bool {
        self.sections
            .get(name)
            .and_then(|s| s.get("enabled"))
            .and_then(|v| parse_bool(v).ok())
            .unwrap_or(false)
    }

    /// Sets `[name] enabled`, for programs that configure in code.
    pub fn set_enabled(&mut self, name: &str, enabled: bool) {
        self.sections
            .entry(name.to_owned())
            .or_default()
            .insert("enabled".to_owned(), enabled.to_string());
    }

    /// The keys of section `name`, for a plugin's own settings.
    pub fn section(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.sections.get(name)
    }

    /// Checks the section `[NAME]` of a plugin that declares its keys
    /// ([`PluginInfo::settings`]): every declared key present must hold a
    /// value of its kind. Unknown keys are not errors; [`Config::warnings`]
    /// names them.
    pub fn check_settings(&self, plugin: &PluginInfo) -> Result<(), ConfigError> {
        let (Some(settings), Some(section)) = (&plugin.settings, self.sections.get(&plugin.name))
        else {
            return Ok(());
        };
        for setting in settings {
            if let Some(value) = section.get(&setting.key) {
                setting.kind.check(value).map_err(|what| {
                    ConfigError::at(
                        &self.file,
                        &plugin.name,
                        Some(&setting.key),
                        ConfigProblem::InvalidValue(what),
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Warnings found while parsing, plus sections that match no loaded
    /// plugin and no gate of one, and keys that a plugin which declares its
    /// keys does not read.
    pub fn warnings(&self, plugins: &[PluginInfo]) -> Vec<ConfigWarning> {
        let mut warnings = self.warnings.clone();
        for plugin in plugins {
            let (Some(settings), Some(section)) =
                (&plugin.settings, self.sections.get(&plugin.name))
            else {
                continue;
            };
            let known: Vec<&str> = std::iter::once("enabled")
                .chain(settings.iter().map(|s| s.key.as_str()))
                .collect();
            for key in section.keys().filter(|key| !known.contains(&key.as_str())) {
                warnings.push(ConfigWarning {
                    file: self.file.clone(),
                    section: plugin.name.clone(),
                    key: Some(key.clone()),
                    message: match nearest(key, &known) {
                        Some(near) => format!("unknown key, ignored (did you mean '{near}'?)"),
                        None => format!("unknown key, ignored (known: {})", listed(&known)),
                    },
                });
            }
        }
        for name in self.sections.keys() {
            let known = name == MAIN_SECTION
                || plugins.iter().any(|p| {
                    p.name == *name
                        || p.gate.as_deref() == Some(name)
                        || p.commands.iter().any(|c| c.gate.as_deref() == Some(name))
                });
            if !known {
                let loaded: Vec<&str> = plugins.iter().map(|p| p.name.as_str()).collect();
                warnings.push(ConfigWarning {
                    file: self.file.clone(),
                    section: name.clone(),
                    key: None,
                    message: format!(
                        "no loaded plugin uses this section, ignored (loaded plugins: {})",
                        listed(&loaded)
                    ),
                });
            }
        }
        bounded(warnings)
    }
}

/// Parses a boolean the way the seed's configuration did.
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "on" | "yes" | "true" => Ok(true),
        "0" | "off" | "no" | "false" => Ok(false),
        _ => Err(format!(
            "'{value}' is not a boolean (use true/false, on/off, yes/no or 1/0)",
            value = echoed(value)
        )),
    }
}

fn parse_number(value: &str, min: usize, max: usize, unit: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "'{value}' is not a whole number of {unit} from {min} to {max}",
            value = echoed(value)
        )),
    }
}

fn parse_seconds(value: &str) -> Result<Duration, String> {
    match value.trim().parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= 31_536_000.0 => Ok(Duration::from_secs_f64(secs)),
        _ => Err(format!(
            "'{value}' is not a number of seconds above 0 (at most a year)",
            value = echoed(value)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUILTINS: &[&str] = &["process"];

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse("ispyd.ini", text, BUILTINS)
    }

    #[test]
    fn engine_and_workers_are_read_and_checked() {
        let config = parse("[ispyd]\nlisten = /tmp/a.sock\nengine = MIO\nworkers = 4\n").unwrap();
        assert_eq!(config.engine, Some(EngineKind::Mio));
        assert_eq!(config.workers, 4);
        let default = parse("[ispyd]\nlisten = /tmp/a.sock\n").unwrap();
        assert_eq!((default.engine, default.workers), (None, DEFAULT_WORKERS));
        let err = parse("[ispyd]\nlisten = /tmp/a.sock\nengine = tokio\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("engine"));
        assert!(err.to_string().contains("use threads or mio"), "{err}");
        let err = parse("[ispyd]\nlisten = /tmp/a.sock\nworkers = 0\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("workers"));
    }

    #[test]
    fn minimal_config_has_defaults() {
        let config = parse("[ispyd]\nlisten = /tmp/ispyd-%(pid)s.sock\n").unwrap();
        assert_eq!(
            config.listen,
            Listen::Unix("/tmp/ispyd-%(pid)s.sock".into())
        );
        assert_eq!(config.plugins, vec!["process".to_owned()]);
        assert_eq!(config.limits, Limits::default());
        assert!(!config.allow_remote);
    }

    #[test]
    fn pid_is_substituted_in_unix_path() {
        let listen = Listen::parse("/run/me/ispyd-%(pid)s.sock").unwrap();
        assert_eq!(
            listen.resolve(42),
            Address::Unix("/run/me/ispyd-42.sock".into())
        );
        assert_eq!(listen.pattern(), "/run/me/ispyd-*.sock");
        assert_eq!(listen.pid_of("/run/me/ispyd-42.sock"), Some(42));
        assert_eq!(listen.pid_of("/run/me/ispyd-x.sock"), None);
    }

    #[test]
    fn inline_comments_are_stripped() {
        let config = parse("[ispyd]\nlisten = /tmp/x.sock   # a comment\n").unwrap();
        assert_eq!(config.listen, Listen::Unix("/tmp/x.sock".into()));
    }

    #[test]
    fn tcp_listen_parses_host_and_port() {
        let config = parse("[ispyd]\nlisten = localhost:12345\n").unwrap();
        assert_eq!(
            config.listen,
            Listen::Tcp {
                host: "localhost".into(),
                port: 12345
            }
        );
        assert_eq!(
            Listen::parse("[::1]:80").unwrap().resolve(1),
            Address::Tcp("::1".into(), 80)
        );
    }

    #[test]
    fn a_huge_generated_file_gives_a_few_short_warnings() {
        let mut text = String::from("[ispyd]\nlisten = /tmp/x.sock\n");
        for n in 0..1000 {
            text.push_str(&format!("[s{n}]\nenabled = true\n"));
        }
        let config = parse(&text).unwrap();
        let long_name = "x".repeat(100_000);
        let plugins: Vec<PluginInfo> = (0..50)
            .map(|n| PluginInfo::new(format!("{long_name}{n}"), ""))
            .collect();
        let warnings = config.warnings(&plugins);
        assert_eq!(warnings.len(), MAX_WARNINGS + 1);
        let printed: usize = warnings.iter().map(|w| w.to_string().len()).sum();
        assert!(printed < 40_000, "{printed} bytes of warnings");
        assert!(
            warnings[MAX_WARNINGS]
                .to_string()
                .ends_with("and 990 more warnings like these, not shown"),
            "{}",
            warnings[MAX_WARNINGS]
        );
        assert!(
            warnings[0].to_string().contains(", and 40 more)"),
            "{}",
            warnings[0]
        );
    }

    #[test]
    fn a_plugin_that_declares_its_keys_has_its_section_checked() {
        let info = PluginInfo::new("cache", "")
            .setting("size", SettingKind::Whole { min: 1, max: 10 })
            .setting("ttl", SettingKind::Seconds)
            .setting("dir", SettingKind::Text);
        let config = parse(
            "[ispyd]\nlisten = /tmp/x.sock\n[cache]\nenabled = yes\nsize = 3\nttl = 0.5\n\
             dir = /x\nszie = 4\nzzzzzzzz = 1\n",
        )
        .unwrap();
        assert_eq!(config.check_settings(&info), Ok(()));
        let texts: Vec<String> = config
            .warnings(std::slice::from_ref(&info))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            texts,
            [
                "ispyd.ini: [cache] szie: unknown key, ignored (did you mean 'size'?)",
                "ispyd.ini: [cache] zzzzzzzz: unknown key, ignored (known: enabled, size, ttl, dir)",
            ]
        );
        // A plugin that declares nothing keeps its section to itself.
        assert!(config.warnings(&[PluginInfo::new("cache", "")]).is_empty());

        for (key, value, said) in [
            ("size", "-5", "'-5' is not a whole number from 1 to 10"),
            ("size", "11", "'11' is not a whole number from 1 to 10"),
            ("ttl", "1e9", "'1e9' is not a number of seconds above 0"),
        ] {
            let text = format!("[ispyd]\nlisten = /tmp/x.sock\n[cache]\n{key} = {value}\n");
            let err = parse(&text).unwrap().check_settings(&info).unwrap_err();
            assert_eq!(err.key.as_deref(), Some(key));
            assert!(
                err.to_string()
                    .starts_with(&format!("ispyd.ini: [cache] {key}: {said}")),
                "{err}"
            );
        }
        let hostile = format!(
            "[ispyd]\nlisten = /tmp/x.sock\n[cache]\nsize = {}\x1b[2J\n",
            "9".repeat(100_000)
        );
        let err = parse(&hostile).unwrap().check_settings(&info).unwrap_err();
        let line = err.to_string();
        assert!(line.len() < 1_000 && !line.contains('\x1b'), "{line}");
    }

    #[test]
    fn remote_listen_warns_and_remote_gated_is_read() {
        let config =
            parse("[ispyd]\nlisten = 0.0.0.0:1\nallow_remote = yes\nallow_remote_gated = on\n")
                .unwrap();
        assert!(config.allow_remote_gated);
        let warnings = config.warnings(&[]);
        assert!(
            warnings[0]
                .to_string()
                .contains("reachable from other machines"),
            "{}",
            warnings[0]
        );
        let local = parse("[ispyd]\nlisten = 127.0.0.1:1\n").unwrap();
        assert!(!local.allow_remote_gated);
        assert!(local.warnings(&[]).is_empty());
        let err = parse("[ispyd]\nlisten = /tmp/x.sock\nallow_remote_gated = maybe\n").unwrap_err();
        assert!(
            err.to_string().contains("[ispyd] allow_remote_gated"),
            "{err}"
        );
    }

    #[test]
    fn remote_tcp_needs_allow_remote() {
        let err = parse("[ispyd]\nlisten = 0.0.0.0:12345\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("listen"));
        assert!(err.to_string().contains("allow_remote"), "{err}");
        parse("[ispyd]\nlisten = 0.0.0.0:12345\nallow_remote = yes\n").unwrap();
    }

    #[test]
    fn missing_listen_names_file_section_and_key() {
        let err = parse("[ispyd]\nplugins = process\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "ispyd.ini: [ispyd] listen: this key is required"
        );
    }

    #[test]
    fn missing_main_section_is_an_error() {
        let err = parse("[debugger]\nenabled = true\n").unwrap_err();
        assert_eq!(err.problem, ConfigProblem::MissingSection);
        assert_eq!(
            err.to_string(),
            "ispyd.ini: [ispyd]: this section is required"
        );
    }

    #[test]
    fn relative_listen_path_is_rejected() {
        let err = parse("[ispyd]\nlisten = ispyd.sock\n").unwrap_err();
        assert!(
            err.to_string().contains("neither an absolute path"),
            "{err}"
        );
    }

    #[test]
    fn bad_port_is_rejected() {
        for value in ["localhost:0", "localhost:99999", "localhost:http", ":80"] {
            let err = parse(&format!("[ispyd]\nlisten = {value}\n")).unwrap_err();
            assert_eq!(err.key.as_deref(), Some("listen"), "{value}");
        }
    }

    #[test]
    fn a_typo_of_listen_is_named_beside_the_missing_key() {
        let err =
            Config::parse("ispyd.ini", "[ispyd]\nlisen = /tmp/x.sock\nfoo = 1\n", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ispyd.ini: [ispyd] listen: this key is required; unknown keys here: 'foo', \
             'lisen' (did you mean 'listen'?)"
        );
    }

    #[test]
    fn an_unknown_key_near_a_known_one_is_suggested() {
        let config = Config::parse(
            "ispyd.ini",
            "[ispyd]\nlisten = /tmp/x.sock\nmax_sesions = 3\n",
            &[],
        )
        .unwrap();
        let warnings = config.warnings(&[]);
        assert!(
            warnings
                .iter()
                .any(|w| w.to_string().contains("did you mean 'max_sessions'?")),
            "{warnings:?}"
        );
        assert_eq!(edits("lisen", "listen"), 1);
        assert_eq!(edits("lsiten", "listen"), 1, "a swap is one edit");
        assert_eq!(nearest("zzzzzz", MAIN_KEYS), None);
    }

    #[test]
    fn unknown_substitution_is_rejected() {
        let err = parse("[ispyd]\nlisten = /tmp/%(user)s.sock\n").unwrap_err();
        assert!(err.to_string().contains("unknown substitution"), "{err}");
    }

    #[test]
    fn builtins_expand_in_plugins() {
        let config = parse("[ispyd]\nlisten = /tmp/x\nplugins = demo %(builtins)s demo\n").unwrap();
        assert_eq!(
            config.plugins,
            vec!["demo".to_owned(), "process".to_owned()]
        );
    }

    #[test]
    fn enabled_accepts_the_seed_spellings() {
        for (value, expected) in [("1", true), ("on", true), ("Yes", true), ("off", false)] {
            let config = parse(&format!(
                "[ispyd]\nlisten = /tmp/x\n[debugger]\nenabled = {value}\n"
            ))
            .unwrap();
            assert_eq!(config.is_enabled("debugger"), expected, "{value}");
        }
        let config = parse("[ispyd]\nlisten = /tmp/x\n").unwrap();
        assert!(!config.is_enabled("debugger"));
    }

    #[test]
    fn bad_boolean_names_section_and_key() {
        let err = parse("[ispyd]\nlisten = /tmp/x\n[debugger]\nenabled = maybe\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "ispyd.ini: [debugger] enabled: 'maybe' is not a boolean (use true/false, on/off, yes/no or 1/0)"
        );
    }

    #[test]
    fn limits_are_read_and_checked() {
        let config = parse(
            "[ispyd]\nlisten = /tmp/x\nmax_sessions = 2\nmax_line = 1024\nidle_timeout = 0.5\n",
        )
        .unwrap();
        assert_eq!(config.limits.max_sessions, 2);
        assert_eq!(config.limits.max_line, 1024);
        assert_eq!(config.limits.idle_timeout, Duration::from_millis(500));
        let err = parse("[ispyd]\nlisten = /tmp/x\nmax_sessions = 0\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("max_sessions"));
        let err = parse("[ispyd]\nlisten = /tmp/x\nidle_timeout = -1\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("idle_timeout"));
    }

    #[test]
    fn unknown_keys_and_sections_are_warnings() {
        let config = parse("[ispyd]\nlisten = /tmp/x\nlisen = 1\n[proces]\nenabled = 1\n").unwrap();
        let plugins = vec![PluginInfo::new("process", "")];
        let warnings = config.warnings(&plugins);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert_eq!(warnings[0].key.as_deref(), Some("lisen"));
        assert_eq!(warnings[1].section, "proces");
    }

    #[test]
    fn syntax_error_names_the_line() {
        let err = parse("[ispyd\nlisten = /tmp/x\n").unwrap_err();
        assert!(matches!(err.problem, ConfigProblem::Syntax { .. }));
        assert!(err.to_string().starts_with("ispyd.ini, line"), "{err}");
    }

    #[test]
    fn an_error_is_one_short_line_whatever_the_file_holds() {
        let hostile = format!("\u{1b}[2J\r{}", "v".repeat(100_000));
        let mut texts: Vec<String> = MAIN_KEYS
            .iter()
            .filter(|key| **key != "listen" && **key != "plugins")
            .map(|key| format!("[ispyd]\nlisten = /tmp/x\n{key} = {hostile}\n"))
            .collect();
        texts.push(format!("[ispyd]\nlisten = {hostile}\n"));
        texts.push(format!("[ispyd]\nlisten = /{hostile}/\n"));
        texts.push(format!("[ispyd]\nlisten = /tmp/%{hostile}\n"));
        texts.push(format!("[ispyd]\nlisten = x:{hostile}\n"));
        texts.push(format!(
            "[ispyd]\nlisten = /tmp/x\n[s]\nenabled = {hostile}\n"
        ));
        texts.push(format!("\u{2}{hostile} = 1\n[ispyd]\n"));
        let unknown: String = (0..1_000).map(|i| format!("k{i}\u{7} = 1\n")).collect();
        texts.push(format!("[ispyd]\n{unknown}"));
        for text in texts {
            let message = parse(&text).unwrap_err().to_string();
            assert!(
                message.chars().count() < 1_500,
                "{} characters",
                message.len()
            );
            assert!(!message.chars().any(char::is_control), "{message:?}");
        }
    }

    #[test]
    fn duplicate_key_is_an_error() {
        let err = parse("[ispyd]\nlisten = /tmp/x\nlisten = /tmp/y\n").unwrap_err();
        assert_eq!(err.problem, ConfigProblem::Duplicate);
    }

    #[test]
    fn dump_and_activation_signals_are_read_and_checked() {
        let config = parse(
            "[ispyd]\nlisten = /tmp/x\ndump_on = SIGABRT term\n\
             dump_file = /var/log/app/dump-%(pid)s.txt\nactivate_on = usr2\n",
        )
        .unwrap();
        assert_eq!(config.dump_on, [Signal::Abrt, Signal::Term]);
        assert_eq!(
            config.dump_path(42).as_deref(),
            Some("/var/log/app/dump-42.txt")
        );
        assert_eq!(config.activate_on, Some(Signal::Usr2));

        let defaults = parse("[ispyd]\nlisten = /tmp/x\ndump_file = stderr\n").unwrap();
        assert!(defaults.dump_on.is_empty() && defaults.activate_on.is_none());
        assert_eq!(defaults.dump_path(42), None, "stderr");

        for (text, key) in [
            ("dump_on = SIGKILL", "dump_on"),
            ("dump_file = dumps.txt", "dump_file"),
            ("dump_file = /tmp/%(uid)s", "dump_file"),
            ("activate_on = SIGNOPE", "activate_on"),
            ("dump_on = SIGUSR2\nactivate_on = SIGUSR2", "activate_on"),
        ] {
            let err = parse(&format!("[ispyd]\nlisten = /tmp/x\n{text}\n")).unwrap_err();
            assert_eq!(err.key.as_deref(), Some(key), "{text}: {err}");
        }
    }
}
