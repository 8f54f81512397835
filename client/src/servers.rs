//! Discovery: which processes the `listen` setting points at, which of them
//! are listening, and how the `servers` list numbers them.
//!
//! `servers` and `connect N` both scan afresh and sort the same way (by pid,
//! then address), so a number seen in the list picks the same process as long
//! as nothing started or stopped in between.

use std::fmt;
use std::io::{self, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::Duration;

use ispyd_core::{Address, Listen};
use ispyd_std::process::{age_and_parent, human_duration};
use ispyd_std::socket::{self, Probe};
use ispyd_std::stream::Stream;

/// How long a TCP probe waits for the connection to be accepted.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a probe found at an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Something accepts connections there.
    Live,
    /// A UNIX socket file that nobody listens on: left behind by a process
    /// that is gone.
    Stale,
    /// Not usable, for this reason (shown in the list).
    Unusable(String),
}

/// One address the configuration points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The process id, when the socket's name carries it.
    pub pid: Option<u32>,
    /// Where it listens.
    pub address: Address,
    /// The process's whole command line, on one line, when it can be read.
    pub command: Option<String>,
    /// How long the process has run, when it can be read.
    pub uptime: Option<Duration>,
    /// Its parent process, when it can be read: a server whose parent is a
    /// server too is a worker of it (gunicorn, uWSGI).
    pub parent: Option<u32>,
    /// What the probe found.
    pub status: Status,
}

/// The result of a scan: live servers, numbered from 1 in this order, and
/// the others, listed but not offered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Servers {
    live: Vec<Server>,
    others: Vec<Server>,
}

/// Why `connect` could not pick a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChooseError {
    /// No live server.
    NoServers,
    /// Several live servers and no number given.
    Ambiguous,
    /// The argument is not the number of a live server.
    BadNumber {
        /// The argument as typed.
        given: String,
        /// How many live servers there are.
        count: usize,
    },
}

impl fmt::Display for ChooseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChooseError::NoServers => f.write_str("No servers to connect to."),
            ChooseError::Ambiguous => f.write_str("Multiple servers, which should be used?"),
            ChooseError::BadNumber { given, count: 1 } => write!(
                f,
                "No server number '{given}': there is only server 1 (see 'servers')."
            ),
            ChooseError::BadNumber { given, count } => write!(
                f,
                "No server number '{given}': choose from 1 to {count} (see 'servers')."
            ),
        }
    }
}

impl std::error::Error for ChooseError {}

impl Servers {
    /// Sorts and splits probed servers.
    pub fn new(mut servers: Vec<Server>) -> Servers {
        servers.sort_by_cached_key(|s| (s.pid, s.address.to_string()));
        let (live, others) = servers.into_iter().partition(|s| s.status == Status::Live);
        Servers { live, others }
    }

    /// The servers that can be connected to, in list order.
    pub fn live(&self) -> &[Server] {
        &self.live
    }

    /// The addresses found that cannot be connected to (stale sockets,
    /// unusable files), by pid.
    pub fn others(&self) -> &[Server] {
        &self.others
    }

    /// Picks the server for `connect [arg]`.
    pub fn choose(&self, arg: Option<&str>) -> Result<&Server, ChooseError> {
        if self.live.is_empty() {
            return Err(ChooseError::NoServers);
        }
        let Some(arg) = arg else {
            return match self.live.as_slice() {
                [only] => Ok(only),
                _ => Err(ChooseError::Ambiguous),
            };
        };
        arg.parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| self.live.get(i))
            .ok_or_else(|| ChooseError::BadNumber {
                given: arg.to_owned(),
                count: self.live.len(),
            })
    }

    /// Writes the list: numbered live servers, then the others indented as
    /// far as the widest number. Each live server's line gives its pid,
    /// address, uptime and role (a master, or a worker of its parent, when
    /// its parent or child is also listed); its whole command line follows,
    /// wrapped at `width` columns. Writes nothing when there are no servers.
    pub fn write_list(&self, out: &mut dyn Write, width: usize) -> io::Result<()> {
        let indent = format!("{}: ", self.live.len().max(1)).len();
        for (i, server) in self.live.iter().enumerate() {
            // No padding after the number: every live row starts `N: `, as
            // the seed's did, which scripts may match.
            writeln!(out, "{}: {}", i + 1, self.row(server))?;
            if let Some(command) = &server.command {
                for line in wrap(command, width.saturating_sub(indent).max(20)) {
                    writeln!(out, "{:indent$}{line}", "")?;
                }
            }
        }
        for server in &self.others {
            writeln!(out, "{:indent$}{}", "", self.row(server))?;
        }
        Ok(())
    }

    fn row(&self, server: &Server) -> String {
        let pid = server
            .pid
            .map_or_else(|| "?".to_owned(), |pid| pid.to_string());
        let mut row = format!("pid {pid}  {}", server.address);
        match &server.status {
            Status::Live => {
                if let Some(up) = server.uptime {
                    row.push_str(&format!("  up {}", human_duration(up.as_secs_f64())));
                }
                if let Some(role) = self.role(server) {
                    row.push_str("  ");
                    row.push_str(&role);
                }
            }
            Status::Stale => row.push_str("  stale (nobody listening)"),
            Status::Unusable(why) => {
                row.push_str("  ");
                row.push_str(why);
            }
        }
        row
    }

    /// "worker of PID" when the server's parent is listed, "master of N
    /// workers" when it is the parent of listed ones.
    fn role(&self, server: &Server) -> Option<String> {
        let pid = server.pid?;
        if let Some(parent) = server
            .parent
            .filter(|p| self.live.iter().any(|s| s.pid == Some(*p)))
        {
            return Some(format!("worker of {parent}"));
        }
        let workers = self.live.iter().filter(|s| s.parent == Some(pid)).count();
        (workers > 0).then(|| {
            format!(
                "master of {workers} worker{}",
                if workers == 1 { "" } else { "s" }
            )
        })
    }
}

/// Splits `text` into lines of at most `width` characters, at spaces
/// where it can.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word = word;
        loop {
            let used = line.chars().count();
            let room = if used == 0 {
                width
            } else {
                width.saturating_sub(used + 1)
            };
            let len = word.chars().count();
            if len <= room {
                if used > 0 {
                    line.push(' ');
                }
                line.push_str(word);
                break;
            }
            if used > 0 {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            // A word longer than a line: cut it.
            let cut: String = word.chars().take(width).collect();
            word = &word[cut.len()..];
            lines.push(cut);
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Why nothing can be found where `listen` points, when it is not that
/// nothing is there: the directory of the sockets cannot be read (ispyd's
/// sockets often sit in a 0700 folder of the program's user).
pub fn unreadable(listen: &Listen) -> Option<String> {
    let Listen::Unix(path) = listen else {
        return None;
    };
    let dir = Path::new(path).parent()?;
    let err = match std::fs::read_dir(dir) {
        Ok(_) if listen.is_per_process() => return None,
        Ok(_) => match std::fs::symlink_metadata(path) {
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied => err,
            _ => return None,
        },
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Some(format!("{} does not exist", dir.display()));
        }
        Err(err) => err,
    };
    let owner = std::fs::metadata(dir).ok().map(|meta| {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        format!(
            " (owner uid {}, mode {:04o})",
            meta.uid(),
            meta.permissions().mode() & 0o7777
        )
    });
    let me = rustix::process::geteuid().as_raw();
    Some(format!(
        "cannot read {}{}: {err}; this ispy runs as uid {me}: run it as the program's user, or root",
        dir.display(),
        owner.unwrap_or_default()
    ))
}

/// Finds and probes every address `listen` points at.
pub fn scan(listen: &Listen) -> Servers {
    let servers = candidates(listen)
        .into_iter()
        .filter_map(|(pid, address)| {
            let status = probe(&address)?;
            let (command, age) = match (&status, pid) {
                (Status::Live, Some(pid)) => (command_line(pid), age_and_parent(pid)),
                _ => (None, None),
            };
            let (uptime, parent) = (age.map(|(up, _)| up), age.map(|(_, parent)| parent));
            Some(Server {
                pid,
                address,
                command,
                uptime,
                parent,
                status,
            })
        })
        .collect();
    Servers::new(servers)
}

/// The addresses `listen` points at, without probing them: every socket
/// file matching a per-process path, with the pid from its name, by pid;
/// or the one fixed address.
pub fn candidates(listen: &Listen) -> Vec<(Option<u32>, Address)> {
    if !listen.is_per_process() {
        return vec![(None, listen.resolve(0))];
    }
    let Ok(paths) = glob::glob(&listen.pattern()) else {
        return Vec::new();
    };
    let mut found: Vec<(Option<u32>, Address)> = paths
        .filter_map(Result::ok)
        .filter_map(|path| {
            let path = path.to_str()?.to_owned();
            let pid = listen.pid_of(&path)?;
            Some((Some(pid), Address::Unix(path)))
        })
        .collect();
    found.sort_by_cached_key(|(pid, address)| (*pid, address.to_string()));
    found
}

/// Tries to connect; `None` when there is nothing there any more (a socket
/// file removed since the glob, or a fixed path with no file).
fn probe(address: &Address) -> Option<Status> {
    match address {
        Address::Unix(path) => {
            let meta = std::fs::metadata(path).ok()?;
            if !meta.file_type().is_socket() {
                return Some(Status::Unusable("not a socket".to_owned()));
            }
            // Non-blocking: a live server with a full backlog must not
            // hang the listing.
            match socket::probe(Path::new(path)) {
                Probe::Live => Some(Status::Live),
                Probe::Stale => Some(Status::Stale),
                Probe::Gone => None,
                Probe::Unknown(err) => Some(Status::Unusable(format!("cannot connect: {err}"))),
            }
        }
        Address::Tcp(..) => match Stream::connect(address, PROBE_TIMEOUT) {
            Ok(_) => Some(Status::Live),
            Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
                Some(Status::Unusable("nobody listening".to_owned()))
            }
            Err(err) if err.kind() == io::ErrorKind::TimedOut => Some(Status::Unusable(format!(
                "no answer within {} s",
                PROBE_TIMEOUT.as_secs()
            ))),
            Err(err) => Some(Status::Unusable(format!("cannot connect: {err}"))),
        },
    }
}

/// The command line of process `pid`, from `/proc`, on one line. `None`
/// when it cannot be read (no such process, another user's, or not Linux).
pub fn command_line(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(join_arguments(&raw))
}

/// Joins NUL-separated arguments with spaces and replaces control
/// characters (a name must not be able to drive the terminal).
fn join_arguments(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    text.trim_end_matches(['\0', ' '])
        .chars()
        .map(|c| match c {
            '\0' => ' ',
            c if c.is_control() => '?',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::net::TcpListener;
    use std::os::unix::net::UnixListener;

    fn per_pid(dir: &TempDir) -> Listen {
        Listen::parse(&format!("{}/ispyd-%(pid)s.sock", dir.path().display())).unwrap()
    }

    /// Leaves a socket file that nobody listens on.
    fn stale_socket(path: &std::path::Path) {
        drop(UnixListener::bind(path).unwrap());
        assert!(path.exists());
    }

    fn list(servers: &Servers) -> String {
        let mut out = Vec::new();
        servers.write_list(&mut out, 200).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn per_pid_scan_lists_live_numbered_and_stale_after() {
        let dir = TempDir::new();
        let me = std::process::id();
        let live_path = dir.path().join(format!("ispyd-{me}.sock"));
        let _live = UnixListener::bind(&live_path).unwrap();
        let stale_path = dir.path().join("ispyd-1.sock");
        stale_socket(&stale_path);
        std::fs::write(dir.path().join("ispyd-notapid.sock"), "").unwrap();
        std::fs::write(dir.path().join("other.sock"), "").unwrap();

        let servers = scan(&per_pid(&dir));
        assert_eq!(servers.live().len(), 1);
        let live = &servers.live()[0];
        assert_eq!(live.pid, Some(me));
        assert_eq!(live.address, Address::Unix(live_path.display().to_string()));
        assert!(live.command.as_deref().is_some_and(|c| !c.is_empty()));
        assert!(
            live.uptime
                .is_some_and(|up| up < Duration::from_secs(86_400 * 365))
        );

        let text = list(&servers);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with(&format!("1: pid {me}  {}  up ", live_path.display())),
            "{text}"
        );
        // The whole command line, under its server.
        assert_eq!(lines[1].trim_start(), live.command.as_deref().unwrap());
        assert_eq!(
            lines[2],
            format!(
                "   pid 1  {}  stale (nobody listening)",
                stale_path.display()
            )
        );
    }

    #[test]
    fn live_servers_are_sorted_by_pid() {
        let dir = TempDir::new();
        let mut listeners = Vec::new();
        for pid in [30, 4, 200] {
            listeners
                .push(UnixListener::bind(dir.path().join(format!("ispyd-{pid}.sock"))).unwrap());
        }
        let servers = scan(&per_pid(&dir));
        let pids: Vec<Option<u32>> = servers.live().iter().map(|s| s.pid).collect();
        assert_eq!(pids, vec![Some(4), Some(30), Some(200)]);
        let text = list(&servers);
        assert!(text.starts_with("1: pid 4  "), "{text}");
        assert!(text.contains("\n3: pid 200  "), "{text}");
    }

    #[test]
    fn fixed_path_is_one_server_with_unknown_pid() {
        let dir = TempDir::new();
        let path = dir.path().join("ispyd.sock");
        let listen = Listen::parse(path.to_str().unwrap()).unwrap();
        assert_eq!(scan(&listen), Servers::default(), "no file, no server");

        let _listener = UnixListener::bind(&path).unwrap();
        let servers = scan(&listen);
        assert_eq!(servers.live().len(), 1);
        assert_eq!(list(&servers), format!("1: pid ?  {}\n", path.display()));
    }

    #[test]
    fn fixed_path_that_is_not_a_socket_is_listed_as_unusable() {
        let dir = TempDir::new();
        let path = dir.path().join("ispyd.sock");
        std::fs::write(&path, "").unwrap();
        let servers = scan(&Listen::parse(path.to_str().unwrap()).unwrap());
        assert!(servers.live().is_empty());
        assert_eq!(
            list(&servers),
            format!("   pid ?  {}  not a socket\n", path.display())
        );
    }

    #[test]
    fn tcp_address_is_probed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let listen = Listen::parse(&format!("127.0.0.1:{port}")).unwrap();
        let servers = scan(&listen);
        assert_eq!(list(&servers), format!("1: pid ?  127.0.0.1:{port}\n"));
        drop(listener);
        let servers = scan(&listen);
        assert!(servers.live().is_empty());
        assert_eq!(
            list(&servers),
            format!("   pid ?  127.0.0.1:{port}  nobody listening\n")
        );
    }

    fn live(pid: u32) -> Server {
        Server {
            pid: Some(pid),
            address: Address::Unix(format!("/tmp/ispyd-{pid}.sock")),
            command: None,
            uptime: None,
            parent: None,
            status: Status::Live,
        }
    }

    #[test]
    fn choose_without_servers_says_there_are_none() {
        let servers = Servers::default();
        assert_eq!(servers.choose(None), Err(ChooseError::NoServers));
        assert_eq!(servers.choose(Some("1")), Err(ChooseError::NoServers));
        assert_eq!(
            ChooseError::NoServers.to_string(),
            "No servers to connect to."
        );
    }

    #[test]
    fn choose_the_only_server_needs_no_number() {
        let servers = Servers::new(vec![live(7)]);
        assert_eq!(servers.choose(None).unwrap().pid, Some(7));
        assert_eq!(servers.choose(Some("1")).unwrap().pid, Some(7));
        let err = servers.choose(Some("2")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "No server number '2': there is only server 1 (see 'servers')."
        );
    }

    #[test]
    fn choose_among_several_needs_a_valid_number() {
        let servers = Servers::new(vec![live(9), live(3), live(5)]);
        assert_eq!(servers.choose(None), Err(ChooseError::Ambiguous));
        assert_eq!(
            ChooseError::Ambiguous.to_string(),
            "Multiple servers, which should be used?"
        );
        assert_eq!(servers.choose(Some("2")).unwrap().pid, Some(5));
        for bad in ["0", "4", "x", "-1", "1 2"] {
            let err = servers.choose(Some(bad)).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("No server number '{bad}': choose from 1 to 3 (see 'servers').")
            );
        }
    }

    #[test]
    fn stale_servers_are_not_offered() {
        let mut stale = live(1);
        stale.status = Status::Stale;
        let servers = Servers::new(vec![stale, live(2)]);
        assert_eq!(servers.choose(None).unwrap().pid, Some(2));
    }

    #[test]
    fn a_server_whose_parent_is_listed_is_its_worker() {
        let with_parent = |pid, parent| Server {
            parent,
            command: Some(format!("gunicorn: {pid}")),
            ..live(pid)
        };
        let servers = Servers::new(vec![
            with_parent(12, Some(10)),
            with_parent(10, Some(1)),
            with_parent(11, Some(10)),
            with_parent(99, Some(1)),
        ]);
        let mut out = Vec::new();
        servers.write_list(&mut out, 100).unwrap();
        let text = String::from_utf8(out).unwrap();
        let rows: Vec<&str> = text.lines().filter(|l| l.contains(": pid ")).collect();
        assert!(
            rows[0].starts_with("1: pid 10 ") && rows[0].ends_with("master of 2 workers"),
            "{text}"
        );
        assert!(
            rows[1].starts_with("2: pid 11 ") && rows[1].ends_with("worker of 10"),
            "{text}"
        );
        assert!(rows[2].ends_with("worker of 10"), "{text}");
        assert!(
            rows[3].starts_with("4: pid 99 ") && rows[3].ends_with("/tmp/ispyd-99.sock"),
            "{text}"
        );
        assert!(text.contains("\n   gunicorn: 10\n"), "{text}");
    }

    #[test]
    fn long_command_lines_wrap_at_spaces_and_cut_long_words() {
        assert_eq!(wrap("a bb ccc", 4), ["a bb", "ccc"]);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(
            wrap("gunicorn: worker [app:app]", 80),
            ["gunicorn: worker [app:app]"]
        );
        let line = "x".repeat(30) + " " + &"y".repeat(30);
        for part in wrap(&line, 25) {
            assert!(part.chars().count() <= 25, "{part}");
        }
    }

    #[test]
    fn command_line_is_joined() {
        assert_eq!(
            join_arguments(b"gunicorn: worker [app:app]\0\0\0"),
            "gunicorn: worker [app:app]"
        );
        assert_eq!(
            join_arguments(b"python\0app.py\0--x\0"),
            "python app.py --x"
        );
        assert_eq!(join_arguments(b"a\x1bb"), "a?b");
    }
}
