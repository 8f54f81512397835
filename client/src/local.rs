//! The local shell, prompt `(ispyd) `: find servers and connect to one.
//!
//! Parsing and help follow Python's `cmd` module, as the 2012 `ispy` did:
//! the command is the leading run of letters, digits and `_`, `?` means
//! `help`, unknown input gets `*** Unknown syntax: LINE`.

use std::time::Duration;

use ispyd_core::Listen;

use crate::console::Console;
use crate::files::Saver;
use crate::input::{Input, Typed};
use crate::remote::{Connection, Shared};
use crate::servers::{self, ChooseError, Servers};
use crate::session;

/// The local shell's prompt.
pub const PROMPT: &str = "(ispyd) ";

/// The documented commands, in the order `help` lists them.
const COMMANDS: [&str; 4] = ["connect", "exit", "help", "servers"];

/// How long `connect` waits for a TCP connection to be accepted.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A parsed local command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// An empty line: nothing to do.
    Empty,
    /// `help [TOPIC]` or `? [TOPIC]`.
    Help(Option<&'a str>),
    /// `servers`.
    Servers,
    /// `connect [N]`.
    Connect(Option<&'a str>),
    /// `exit` or `quit`.
    Exit,
    /// Anything else: the whole line, trimmed.
    Unknown(&'a str),
}

/// Parses a line as Python's `cmd.Cmd.parseline` does.
pub fn parse(line: &str) -> Command<'_> {
    let line = line.trim();
    if line.is_empty() {
        return Command::Empty;
    }
    let (name, arg) = match line.strip_prefix('?') {
        Some(rest) => ("help", rest.trim()),
        None => {
            let end = line
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(line.len());
            (&line[..end], line[end..].trim())
        }
    };
    let arg = (!arg.is_empty()).then_some(arg);
    match name {
        "help" => Command::Help(arg),
        "servers" => Command::Servers,
        "connect" => Command::Connect(arg),
        "exit" | "quit" => Command::Exit,
        _ => Command::Unknown(line),
    }
}

/// The text `help [topic]` prints, or the error line for an unknown topic.
pub fn help(topic: Option<&str>) -> Result<String, String> {
    let Some(topic) = topic else {
        let header = "Documented commands (type help <topic>):";
        return Ok(format!(
            "\n{header}\n{}\n{}\n\n",
            "=".repeat(header.len()),
            COMMANDS.join("  ")
        ));
    };
    let text = match topic {
        "connect" => {
            "connect [N]\n\
             \x20   Connect to server N of the 'servers' list and enter its shell.\n\
             \x20   N may be left off when there is only one server. In the\n\
             \x20   server's shell, 'help' lists its commands; 'exit' (or Ctrl-D)\n\
             \x20   at its top level brings you back here.\n"
        }
        "servers" => {
            "servers\n\
             \x20   List the processes that can be connected to, found from the\n\
             \x20   'listen' setting of the configuration: number, pid, address\n\
             \x20   and command line. Sockets left behind by processes that have\n\
             \x20   gone are shown as stale, without a number.\n"
        }
        "exit" | "quit" => "exit\n    Leave ispy (also 'quit', or Ctrl-D).\n",
        "help" => "List available commands with \"help\" or detailed help with \"help cmd\".\n",
        _ => return Err(format!("*** No help on {topic}")),
    };
    Ok(text.to_owned())
}

/// Completion at the local prompt: command names, and help topics after
/// `help`. Returns where the completed word starts and the candidates.
pub fn complete(text: &str) -> (usize, Vec<String>) {
    let word_start = text
        .rfind(|c: char| c.is_whitespace() || c == '?')
        .map_or(0, |i| i + 1);
    let word = &text[word_start..];
    let before = text[..word_start].trim();
    let names: &[&str] = match before {
        "" => &["connect", "exit", "help", "quit", "servers"],
        "help" | "?" => &COMMANDS,
        _ => &[],
    };
    let mut items: Vec<String> = names
        .iter()
        .filter(|name| name.starts_with(word))
        .map(|name| (*name).to_owned())
        .collect();
    // A word completed for certain is followed by a space, as in a shell.
    if let [only] = items.as_mut_slice() {
        only.push(' ');
    }
    (word_start, items)
}

/// What the shell does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Exit,
}

/// The local shell and everything it drives.
pub struct Shell {
    listen: Listen,
    input: Input,
    conn: Shared,
    console: Console,
    files: Saver,
    failed: bool,
}

impl Shell {
    /// A shell finding servers from `listen`, reading `input`, saving the
    /// files commands send with `files`. `conn` is the slot the line
    /// editor's completer reads too.
    pub fn new(
        listen: Listen,
        input: Input,
        conn: Shared,
        console: Console,
        files: Saver,
    ) -> Shell {
        Shell {
            listen,
            input,
            conn,
            console,
            files,
            failed: false,
        }
    }

    /// Connects at once (the server was named directly), then goes on as
    /// [`Shell::run`] once the session ends.
    pub fn run_connected(mut self) -> u8 {
        if self.connect(None) == Flow::Exit {
            self.input.save_history();
            return u8::from(self.failed);
        }
        self.run()
    }

    /// Reads and runs commands until `exit` or the end of input; returns the
    /// exit status: 1 when a `connect` (or a session) failed, else 0.
    pub fn run(mut self) -> u8 {
        loop {
            let line = match self.input.read_line(PROMPT) {
                Typed::Line(line) => line,
                Typed::Interrupted => continue,
                Typed::Eof => break,
            };
            if self.execute(&line) == Flow::Exit {
                break;
            }
        }
        self.input.save_history();
        u8::from(self.failed)
    }

    fn execute(&mut self, line: &str) -> Flow {
        match parse(line) {
            Command::Empty => {}
            Command::Help(topic) => match help(topic) {
                Ok(text) => self.console.out(&text),
                Err(message) => self.console.err_line(&message),
            },
            Command::Servers => {
                let servers = servers::scan(&self.listen);
                if servers.live().is_empty() {
                    self.console.out(&format!("{}\n", ChooseError::NoServers));
                    if let Some(why) = servers::unreadable(&self.listen) {
                        self.console.err_line(&format!("*** {why}"));
                    }
                }
                self.console.out(&list(&servers));
            }
            Command::Connect(arg) => return self.connect(arg),
            Command::Exit => return Flow::Exit,
            Command::Unknown(line) => {
                self.console
                    .err_line(&format!("*** Unknown syntax: {line}"));
                self.console.err_line(
                    "Type 'help' for the commands here; a process's own commands work \
                     after 'connect'.",
                );
            }
        }
        Flow::Continue
    }

    fn connect(&mut self, arg: Option<&str>) -> Flow {
        let servers = servers::scan(&self.listen);
        let server = match servers.choose(arg) {
            Ok(server) => server.clone(),
            Err(err) => {
                self.failed = true;
                self.console.err_line(&err.to_string());
                if err == ChooseError::NoServers {
                    if let Some(why) = servers::unreadable(&self.listen) {
                        self.console.err_line(&format!("*** {why}"));
                    }
                }
                let listing = list(&servers);
                if !matches!(err, ChooseError::BadNumber { .. }) && !listing.is_empty() {
                    self.console.err_line(&listing);
                }
                return Flow::Continue;
            }
        };
        let conn = match Connection::open(&server.address, CONNECT_TIMEOUT) {
            Ok(conn) => conn,
            Err(err) => {
                self.failed = true;
                self.console.err_line(&err.to_string());
                return Flow::Continue;
            }
        };
        if self.input.is_interactive() {
            let place = match server.pid.or(conn.pid()) {
                Some(pid) => format!("pid {pid} ({})", server.address),
                None => server.address.to_string(),
            };
            self.console.err_line(&format!(
                "Connected to {place}. Type 'help' for commands, 'exit' or Ctrl-D to leave."
            ));
        }
        *self.conn.borrow_mut() = Some(conn);
        let ended = session::run(
            &self.conn,
            &mut self.input,
            &mut self.console,
            &mut self.files,
        );
        self.failed |= ended.failed;
        if ended.input_ended {
            Flow::Exit
        } else {
            Flow::Continue
        }
    }
}

/// The width to wrap the list at: the terminal's, in columns; unbounded
/// when standard output is not a terminal (a script reads one line per
/// command line).
fn terminal_width() -> usize {
    match rustix::termios::tcgetwinsize(std::io::stdout()) {
        Ok(size) if size.ws_col > 0 => usize::from(size.ws_col),
        _ => usize::MAX,
    }
}

fn list(servers: &Servers) -> String {
    let mut text = Vec::new();
    // Writing to memory cannot fail.
    let _ = servers.write_list(&mut text, terminal_width());
    String::from_utf8_lossy(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::capture;
    use crate::testutil::TempDir;
    use std::cell::RefCell;
    use std::os::unix::net::UnixListener;
    use std::rc::Rc;

    #[test]
    fn help_prints_the_python_cmd_layout() {
        assert_eq!(
            help(None).unwrap(),
            "\nDocumented commands (type help <topic>):\n\
             ========================================\n\
             connect  exit  help  servers\n\n"
        );
    }

    #[test]
    fn help_topic_explains_the_command() {
        let text = help(Some("connect")).unwrap();
        assert!(text.starts_with("connect [N]\n"), "{text}");
        assert!(text.contains("only one server"), "{text}");
        assert_eq!(help(Some("foo")), Err("*** No help on foo".to_owned()));
    }

    #[test]
    fn parse_follows_cmd_rules() {
        assert_eq!(parse("   "), Command::Empty);
        assert_eq!(parse("help"), Command::Help(None));
        assert_eq!(parse("?"), Command::Help(None));
        assert_eq!(parse("?connect"), Command::Help(Some("connect")));
        assert_eq!(parse(" help  servers "), Command::Help(Some("servers")));
        assert_eq!(parse("connect"), Command::Connect(None));
        assert_eq!(parse("connect 2"), Command::Connect(Some("2")));
        assert_eq!(parse("quit"), Command::Exit);
        assert_eq!(parse("exit now"), Command::Exit);
        assert_eq!(parse("connect1"), Command::Unknown("connect1"));
        assert_eq!(parse(" foo bar "), Command::Unknown("foo bar"));
        assert_eq!(parse("-x"), Command::Unknown("-x"));
    }

    #[test]
    fn completion_offers_commands_then_help_topics() {
        // A word completed for certain comes with its space.
        assert_eq!(complete("co"), (0, vec!["connect ".to_owned()]));
        assert_eq!(complete("e").1, vec!["exit ".to_owned()]);
        assert_eq!(complete("help se"), (5, vec!["servers ".to_owned()]));
        assert_eq!(complete("?h"), (1, vec!["help ".to_owned()]));
        assert_eq!(complete("").1.len(), 5, "no space among several");
        assert_eq!(complete("connect 1"), (8, vec![]));
    }

    /// Runs the shell on piped `stdin` against `listen`; returns the exit
    /// status, stdout and stderr.
    fn shell(listen: &Listen, stdin: &'static str) -> (u8, String, String) {
        let (console, out, err) = capture::console();
        let input = Input::piped(Box::new(stdin.as_bytes()));
        let conn: Shared = Rc::new(RefCell::new(None));
        let status = Shell::new(listen.clone(), input, conn, console, Saver::new(".")).run();
        (status, out.text(), err.text())
    }

    fn per_pid(dir: &TempDir) -> Listen {
        Listen::parse(&format!("{}/ispyd-%(pid)s.sock", dir.path().display())).unwrap()
    }

    #[test]
    fn piped_help_prints_no_prompt() {
        let dir = TempDir::new();
        let (status, out, err) = shell(&per_pid(&dir), "help\n\nexit\nhelp\n");
        assert_eq!(status, 0);
        assert_eq!(out, help(None).unwrap());
        assert_eq!(err, "");
    }

    #[test]
    fn unknown_command_gets_cmd_message_and_a_hint() {
        let dir = TempDir::new();
        let (status, out, err) = shell(&per_pid(&dir), "foo bar\n");
        assert_eq!(status, 0);
        assert_eq!(out, "");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines[0], "*** Unknown syntax: foo bar");
        assert!(lines[1].contains("'help'"), "{err}");
    }

    #[test]
    fn servers_without_any_says_so() {
        let dir = TempDir::new();
        let (status, out, _) = shell(&per_pid(&dir), "servers\n");
        assert_eq!(status, 0);
        assert_eq!(out, "No servers to connect to.\n");
    }

    #[test]
    fn servers_with_only_stale_sockets_lists_them_after_the_message() {
        let dir = TempDir::new();
        let path = dir.path().join("ispyd-12.sock");
        drop(UnixListener::bind(&path).unwrap());
        let (_, out, _) = shell(&per_pid(&dir), "servers\n");
        assert_eq!(
            out,
            format!(
                "No servers to connect to.\n   pid 12  {}  stale (nobody listening)\n",
                path.display()
            )
        );
    }

    #[test]
    fn connect_without_servers_fails_and_processing_goes_on() {
        let dir = TempDir::new();
        let (status, out, err) = shell(&per_pid(&dir), "connect\nhelp\n");
        assert_eq!(status, 1);
        assert_eq!(err, "No servers to connect to.\n");
        assert_eq!(out, help(None).unwrap());
    }

    #[test]
    fn connect_among_several_asks_which_and_lists_them() {
        let dir = TempDir::new();
        let _a = UnixListener::bind(dir.path().join("ispyd-5.sock")).unwrap();
        let _b = UnixListener::bind(dir.path().join("ispyd-6.sock")).unwrap();
        let (status, out, err) = shell(&per_pid(&dir), "connect\n");
        assert_eq!(status, 1);
        assert_eq!(out, "");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines[0], "Multiple servers, which should be used?");
        assert!(lines[1].starts_with("1: pid 5  "), "{err}");
        assert!(lines[2].starts_with("2: pid 6  "), "{err}");
    }

    #[test]
    fn connect_with_a_bad_number_names_the_range() {
        let dir = TempDir::new();
        let _a = UnixListener::bind(dir.path().join("ispyd-5.sock")).unwrap();
        let _b = UnixListener::bind(dir.path().join("ispyd-6.sock")).unwrap();
        let (status, _, err) = shell(&per_pid(&dir), "connect 3\n");
        assert_eq!(status, 1);
        assert_eq!(
            err,
            "No server number '3': choose from 1 to 2 (see 'servers').\n"
        );
    }

    #[test]
    fn connect_to_a_peer_that_closes_at_once_fails() {
        let dir = TempDir::new();
        let listener = UnixListener::bind(dir.path().join("ispyd-5.sock")).unwrap();
        let handle = std::thread::spawn(move || {
            // The probe, then the real connection: its hello is read and
            // it is closed without an answer.
            drop(listener.accept().unwrap());
            let (mut stream, _) = listener.accept().unwrap();
            let mut hello = [0u8; 8];
            std::io::Read::read_exact(&mut stream, &mut hello).unwrap();
        });
        let (status, _, err) = shell(&per_pid(&dir), "connect 1\n");
        handle.join().unwrap();
        assert_eq!(status, 1);
        assert!(
            err.ends_with("ispyd-5.sock closed the connection before the handshake.\n"),
            "{err}"
        );
    }
}
