//! Command-line arguments, and turning the CONFIG argument into the one
//! setting the client needs: where the servers listen.

use std::path::{Path, PathBuf};

use clap::Parser;
use ispyd_core::{Config, ConfigError, Listen};

const ABOUT: &str = "Connect to processes that embed ispyd and inspect them.";

const LONG_ABOUT: &str = "\
Connect to processes that embed ispyd and inspect them.

ispy starts in a local shell, prompt `(ispyd) `: `servers` lists the
processes found from the configuration's `listen` setting, `connect N`
enters the shell of one of them. With stdin not a terminal, lines are read
from it and no prompts are printed, so scripts can pipe commands in:

    printf 'connect 1\\nshell process\\npid\\n' | ispy ispyd.ini

With -c, ispy runs the commands and exits; with --all, on every server at
once; with --json, the answers are data, one JSON object a line:

    ispy ispyd.ini -c 'shell process' -c pid
    ispy ispyd.ini --all --json -c 'shell python' -c threads | jq .

With --ssh HOST (repeatable), the same runs on other hosts through ssh,
with the ispy installed there; without -c, a terminal session on it:

    ispy --ssh web-1 --ssh web-2 /etc/app/ispyd.ini --all -c 'shell python' -c threads
    ispy --ssh web-1 /etc/app/ispyd.ini

Exit status: 0; 1 when a `connect` or a command failed, or a server could
not be reached (or a session broke off with an error); 2 when the
configuration or the arguments are unusable.";

/// The command line of `ispy`.
#[derive(Debug, Parser)]
#[command(name = "ispy", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Args {
    /// The ispyd.ini of the program to inspect (its [ispyd] listen setting
    /// says where the processes listen). Instead of a file, a listen value
    /// may be given directly: an existing socket's absolute path, a path
    /// containing %(pid)s (e.g. '/tmp/ispyd-%(pid)s.sock'), or host:port;
    /// or a process id, whose socket is found from its descriptors. On a
    /// terminal, a socket, host:port or pid is connected to at once.
    #[arg(value_name = "CONFIG")]
    pub config: String,

    /// Where to keep the history of typed lines. Defaults to $ISPY_HISTORY,
    /// else ~/.ispy_history.
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,

    /// Run this command line and exit, without prompts; repeat for several,
    /// run in order in one session: -c 'shell python' -c threads.
    #[arg(short = 'c', long = "command", value_name = "CMD")]
    pub commands: Vec<String>,

    /// With -c: the server of this process.
    #[arg(long, value_name = "PID", conflicts_with = "all")]
    pub pid: Option<u32>,

    /// With -c: every live server (e.g. every gunicorn worker), at once,
    /// each one's output under a header naming its pid; stale sockets are
    /// skipped and named on stderr.
    #[arg(long)]
    pub all: bool,

    /// List the servers (number, pid, status, uptime, address, command
    /// line) and exit.
    #[arg(long, conflicts_with = "commands")]
    pub list: bool,

    /// With -c or --list: JSON Lines on stdout, one object per server and
    /// command: host, pid, address, command, ok, and data or error.
    #[arg(long)]
    pub json: bool,

    /// With -c: give up on a server that has not answered everything after
    /// this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = seconds)]
    pub timeout: f64,

    /// Run on this host, through ssh, with the ispy installed there
    /// (repeatable; the hosts run at once). Without -c or --list: a
    /// terminal session on the host's ispy.
    #[arg(long = "ssh", value_name = "[USER@]HOST")]
    pub ssh: Vec<String>,

    /// The ssh program and its options (ports, keys, jump hosts), run by
    /// the shell, as git's GIT_SSH_COMMAND.
    #[arg(
        long,
        value_name = "CMD",
        env = "ISPY_SSH_COMMAND",
        default_value = "ssh"
    )]
    pub ssh_command: String,

    /// The ispy to run on the hosts of --ssh.
    #[arg(long, value_name = "PATH", default_value = "ispy")]
    pub remote_ispy: String,

    /// Names this host in headers and JSON: what a local ispy passes to
    /// the ispy it runs over ssh.
    #[arg(long, value_name = "HOST", hide = true)]
    pub host_label: Option<String>,

    /// Where to save the files commands send (a profile's flame graph and
    /// folded stacks, named after the pid and the time); created if
    /// missing. Files are never overwritten.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,

    /// With --all: how many servers are asked at once.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
}

/// A positive, finite number of seconds.
fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value > 0.0 && value.is_finite() && value < 1e9 => Ok(value),
        _ => Err(format!("'{text}' is not a number of seconds above 0")),
    }
}

impl Args {
    /// The history file to use: the option, `$ISPY_HISTORY`, or
    /// `~/.ispy_history`; `None` when none of them can be found (no `HOME`),
    /// then history lives only in memory.
    pub fn history_path(&self) -> Option<PathBuf> {
        history_path(
            self.history.clone(),
            std::env::var_os("ISPY_HISTORY"),
            std::env::var_os("HOME"),
        )
    }
}

fn history_path(
    option: Option<PathBuf>,
    env: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    option
        .or_else(|| env.filter(|v| !v.is_empty()).map(PathBuf::from))
        .or_else(|| {
            home.filter(|v| !v.is_empty())
                .map(|home| Path::new(&home).join(".ispy_history"))
        })
}

/// What the CONFIG argument points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Where the servers listen.
    pub listen: Listen,
    /// True when the argument names one server itself (a socket, a
    /// `host:port`, a pid): ispy connects to it at once.
    pub direct: bool,
}

/// Reads the CONFIG argument: a process id (the UNIX socket that process
/// listens on), or what [`load_listen`] takes.
pub fn load_target(config: &str) -> Result<Target, String> {
    if !config.is_empty()
        && config.bytes().all(|b| b.is_ascii_digit())
        && !Path::new(config).exists()
    {
        let pid: u32 = config
            .parse()
            .map_err(|_| format!("{config}: not a process id"))?;
        let path = crate::procinfo::socket_of(pid)?;
        return Ok(Target {
            listen: Listen::Unix(path),
            direct: true,
        });
    }
    let path = Path::new(config);
    let named_socket = config.ends_with(".sock") || config.ends_with(".socket");
    if named_socket && !path.exists() && !config.contains("%(pid)s") {
        return Err(format!("{config}: no such socket"));
    }
    let listen = load_listen(config).map_err(|err| err.to_string())?;
    let direct = !path.is_file()
        && match &listen {
            Listen::Tcp { .. } => true,
            listen => !listen.is_per_process(),
        };
    Ok(Target { listen, direct })
}

/// Reads the listen setting from the CONFIG argument.
///
/// A regular file is parsed as ispyd configuration (warnings are the server's
/// business, so they are dropped). Otherwise a listen value is used directly,
/// which lets an operator point ispy at a socket without a configuration
/// file at hand: `host:port`, a path with `%(pid)s`, or an existing socket.
/// A plain path that does not exist is reported as a missing file, since a
/// mistyped configuration path is the likelier mistake.
pub fn load_listen(config: &str) -> Result<Listen, ConfigError> {
    let path = Path::new(config);
    if !path.is_file() {
        match Listen::parse(config) {
            Ok(listen @ Listen::Tcp { .. }) => return Ok(listen),
            Ok(listen) if listen.is_per_process() || path.exists() => return Ok(listen),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(path)
        .map_err(|err| ConfigError::unreadable(config, err.to_string()))?;
    Config::parse(config, &text, &[]).map(|config| config.listen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn config_file_gives_its_listen_setting() {
        let dir = TempDir::new();
        let file = dir.path().join("ispyd.ini");
        std::fs::write(
            &file,
            "[ispyd]\nlisten = /tmp/ispyd-%(pid)s.sock\nfoo = 1\n",
        )
        .unwrap();
        let listen = load_listen(file.to_str().unwrap()).unwrap();
        assert_eq!(listen, Listen::Unix("/tmp/ispyd-%(pid)s.sock".into()));
    }

    #[test]
    fn listen_value_is_accepted_in_place_of_a_file() {
        assert_eq!(
            load_listen("localhost:12345").unwrap(),
            Listen::Tcp {
                host: "localhost".into(),
                port: 12345
            }
        );
        assert_eq!(
            load_listen("/nonexistent/ispyd-%(pid)s.sock").unwrap(),
            Listen::Unix("/nonexistent/ispyd-%(pid)s.sock".into())
        );
        let dir = TempDir::new();
        let socket = dir.path().join("ispyd.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let socket = socket.to_str().unwrap();
        assert_eq!(load_listen(socket).unwrap(), Listen::Unix(socket.into()));
    }

    #[test]
    fn missing_absolute_path_is_a_missing_config_not_a_socket() {
        let err = load_listen("/nonexistent/ispyd.ini").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/ispyd.ini: cannot read it:"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_error_names_the_file() {
        let err = load_listen("no-such-ispyd.ini").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("no-such-ispyd.ini: cannot read it:"),
            "{text}"
        );
        assert!(!text.contains('\n'));
    }

    #[test]
    fn bad_config_error_names_section_and_key() {
        let dir = TempDir::new();
        let file = dir.path().join("bad.ini");
        std::fs::write(&file, "[ispyd]\nplugins = x\n").unwrap();
        let err = load_listen(file.to_str().unwrap()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with(": [ispyd] listen: this key is required"),
            "{err}"
        );
    }

    #[test]
    fn history_path_prefers_option_then_env_then_home() {
        let opt = Some(PathBuf::from("/o"));
        let env = Some("/e".into());
        let home = Some("/h".into());
        assert_eq!(
            history_path(opt, env.clone(), home.clone()),
            Some("/o".into())
        );
        assert_eq!(history_path(None, env, home.clone()), Some("/e".into()));
        assert_eq!(
            history_path(None, None, home),
            Some("/h/.ispy_history".into())
        );
        assert_eq!(history_path(None, None, None), None);
    }
}
