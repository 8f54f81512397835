//! One-shot commands on one server or many: `ispy TARGET -c CMD …`, with
//! `--pid`, `--all`, `--json` and `--timeout`.
//!
//! Theory of operation: the servers are picked from a scan (as `servers`
//! lists them, by pid), then up to `--jobs` of them are run at once, each on
//! a thread of its own with one framed session: the commands are sent in
//! order, each reply read up to its `Prompt`, and everything kept, not
//! printed. Every server has one deadline for all of it (connect, handshake,
//! commands); a server that passes it is given up on and reported. The main
//! thread prints each server's answers whole, in pid order, as soon as it
//! and every server before it are done, so lines of two servers never mix.
//! With `--json` the session asks for structured results and each
//! (server, command) becomes one JSON line.

use std::io;
use std::time::{Duration, Instant};

use ispyd_core::{Address, Frame};
use ispyd_std::stream::Stream;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::files::{Saved, Saver};
use crate::handshake::{ConnectProblem, HANDSHAKE_TIMEOUT};
use crate::remote::{Connection, Incoming, SessionError};
use ispyd_core::Listen;

use crate::ordered;
use crate::servers::{self, Server};

/// A structured result larger than this is refused: a broken or hostile
/// server must not make the client grow without bound.
const MAX_RESULT: usize = 256 * 1024 * 1024;

/// What to run, and how.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The command lines, in order, in one session per server.
    pub commands: Vec<String>,
    /// JSON Lines output (structured results) instead of text.
    pub json: bool,
    /// Given up on a server after this long.
    pub timeout: Duration,
    /// How many servers are run at once.
    pub jobs: usize,
    /// Where the files commands send are saved.
    pub out: std::path::PathBuf,
}

/// A server to run the plan on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its process id, when known.
    pub pid: Option<u32>,
    /// Where it listens.
    pub address: Address,
}

impl Target {
    fn of(server: &Server) -> Target {
        Target {
            pid: server.pid,
            address: server.address.clone(),
        }
    }

    /// The header of its block of output: `==> [HOST ]pid PID  ADDRESS <==`.
    pub(crate) fn header(&self, host: Option<&str>) -> String {
        format!("==> {} <==", self.name(host))
    }

    /// How it is named: `[HOST ]pid PID  ADDRESS`.
    pub(crate) fn name(&self, host: Option<&str>) -> String {
        let host = host.map(|h| format!("{h} ")).unwrap_or_default();
        match self.pid {
            Some(pid) => format!("{host}pid {pid}  {}", self.address),
            None => format!("{host}{}", self.address),
        }
    }
}

/// Why the servers could not be picked, with the exit status it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectError {
    /// The message for stderr.
    pub message: String,
    /// 1: nothing to reach; 2: the arguments do not say which.
    pub status: u8,
}

/// Picks the servers: the one with `pid`, every one `listen` points at
/// (`all`), or the only live one.
///
/// `--pid` and `--all` take the socket files as they are, unprobed: a
/// stale one is found out when its connect is refused ([`Run::stale`]),
/// which spares every live server a probe's session. Only the choice of
/// "the only live one" needs the probes.
pub fn select(listen: &Listen, pid: Option<u32>, all: bool) -> Result<Vec<Target>, SelectError> {
    let unreachable = |message: String| SelectError {
        message: match servers::unreadable(listen) {
            Some(why) => format!("{message} ({why})"),
            None => message,
        },
        status: 1,
    };
    let target = |(pid, address): (Option<u32>, Address)| Target { pid, address };
    if pid.is_some() || all {
        let found = servers::candidates(listen);
        if let Some(pid) = pid {
            return match found.into_iter().find(|(p, _)| *p == Some(pid)) {
                Some(found) => Ok(vec![target(found)]),
                None => Err(unreachable(format!(
                    "No server with pid {pid} (see --list)."
                ))),
            };
        }
        if found.is_empty() {
            return Err(unreachable("No servers to connect to.".to_owned()));
        }
        return Ok(found.into_iter().map(target).collect());
    }
    let servers = servers::scan(listen);
    match servers.live() {
        [] => Err(unreachable("No servers to connect to.".to_owned())),
        [only] => Ok(vec![Target::of(only)]),
        several => {
            let pids: Vec<String> = several
                .iter()
                .map(|s| s.pid.map_or_else(|| "?".to_owned(), |p| p.to_string()))
                .collect();
            Err(SelectError {
                message: format!(
                    "{} servers (pids {}): pick one with --pid PID, or all with --all.",
                    several.len(),
                    pids.join(", ")
                ),
                status: 2,
            })
        }
    }
}

/// A structured result as the server sent it (`PROTOCOL.md`): its data
/// is kept as the JSON text it came as, never parsed into a tree, so that
/// passing a big result on costs a scan, not a rebuild.
#[derive(Debug, Clone, Deserialize)]
pub struct Record {
    /// Whether the command succeeded.
    pub ok: bool,
    /// Why it did not.
    #[serde(default)]
    pub error: Option<String>,
    /// Its data; `None` for `null`.
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
}

/// What one command got back.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The command line as given.
    pub command: String,
    /// Its output.
    pub text: String,
    /// Its error messages (`*** …`).
    pub errors: Vec<String>,
    /// Its structured result, when asked for and sent.
    pub record: Option<Record>,
    /// The files it sent: where each was saved, or why it was not.
    pub files: Vec<Saved>,
}

impl Answer {
    fn ok(&self) -> bool {
        let saved = self.files.iter().all(Result::is_ok);
        saved
            && match &self.record {
                Some(record) => record.ok,
                None => self.errors.is_empty(),
            }
    }
}

/// Everything one server answered, and why it stopped short, if it did.
#[derive(Debug, Clone)]
pub struct Run {
    /// The server.
    pub target: Target,
    /// The commands answered, in order.
    pub answers: Vec<Answer>,
    /// Why the other commands were not answered.
    pub failure: Option<String>,
    /// The commands a failure left unsent.
    pub unsent: Vec<String>,
    /// Nobody listens on the socket: a process that has gone left it.
    pub stale: bool,
}

impl Run {
    /// True when every command ran and succeeded.
    pub fn ok(&self) -> bool {
        self.failure.is_none() && self.answers.iter().all(Answer::ok)
    }
}

/// Runs the plan on one server, within `plan.timeout`.
pub fn run_one(target: &Target, plan: &Plan) -> Run {
    let mut run = Run {
        target: target.clone(),
        answers: Vec::new(),
        failure: None,
        unsent: Vec::new(),
        stale: false,
    };
    match drive(target, plan, &mut run.answers) {
        Ok(()) => {}
        Err(Stopped::Stale) => {
            run.stale = true;
            run.failure = Some("stale (nobody listening)".to_owned());
            run.unsent = plan.commands.clone();
        }
        Err(Stopped::Failed(failure)) => {
            run.failure = Some(failure);
            run.unsent = plan.commands[run.answers.len()..].to_vec();
        }
    }
    run
}

/// Why a server's run stopped short.
enum Stopped {
    /// Its socket file is stale: nobody accepts connections on it.
    Stale,
    /// Anything else, said for the user.
    Failed(String),
}

impl From<String> for Stopped {
    fn from(message: String) -> Stopped {
        Stopped::Failed(message)
    }
}

fn drive(target: &Target, plan: &Plan, answers: &mut Vec<Answer>) -> Result<(), Stopped> {
    let deadline = Instant::now() + plan.timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let timed_out = || {
        format!(
            "no answer within {} s (--timeout); gave up on it",
            plan.timeout.as_secs_f64()
        )
    };
    let stream = Stream::connect(&target.address, left()).map_err(|err| {
        let gone = matches!(
            err.kind(),
            io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
        );
        match &target.address {
            Address::Unix(_) if gone => Stopped::Stale,
            _ => Stopped::Failed(format!("cannot connect to {}: {err}", target.address)),
        }
    })?;
    let mut conn = Connection::handshake(stream, &target.address, left().min(HANDSHAKE_TIMEOUT))
        .map_err(|err| match err.problem {
            // The deadline, not the handshake's own limit, cut it short.
            ConnectProblem::Timeout if left().is_zero() => timed_out(),
            _ => err.to_string(),
        })?;
    conn.set_deadline(deadline);
    let failed = |err: SessionError| match err {
        SessionError::TimedOut => Stopped::Failed(timed_out()),
        other => Stopped::Failed(other.to_string()),
    };
    if plan.json {
        // The text of a command is not printed with --json: data only.
        conn.send(&Frame::WantData { text: false })
            .map_err(failed)?;
    }
    let mut reading = Reading {
        conn,
        files: Saver::new(&plan.out),
        timeout: plan.timeout,
    };
    // The greeting's prompt.
    reading.reply(None).map_err(failed)?;
    for command in &plan.commands {
        reading
            .conn
            .send(&Frame::Line(command.clone()))
            .map_err(failed)?;
        let mut answer = Answer {
            command: command.clone(),
            text: String::new(),
            errors: Vec::new(),
            record: None,
            files: Vec::new(),
        };
        let result = reading.reply(Some(&mut answer));
        answers.push(answer);
        result.map_err(failed)?;
    }
    reading.conn.finish_input();
    Ok(())
}

/// A session's connection and what its replies need.
struct Reading {
    conn: Connection,
    files: Saver,
    /// A server that reports progress is given this long again each time.
    timeout: Duration,
}

impl Reading {
    /// Reads up to the next `Prompt`, keeping what it carries in `answer`.
    fn reply(&mut self, mut answer: Option<&mut Answer>) -> Result<(), SessionError> {
        let result = self.read(answer.as_deref_mut());
        if let (Some(saved), Some(answer)) = (self.files.finish(), answer) {
            answer.files.push(saved);
        }
        result
    }

    fn read(&mut self, mut answer: Option<&mut Answer>) -> Result<(), SessionError> {
        let conn = &mut self.conn;
        let mut data = String::new();
        loop {
            let frame = match conn.next()? {
                Incoming::Frame(frame) => frame,
                // One-shot runs do not catch Ctrl-C: it stops ispy.
                Incoming::InterruptSent => continue,
                Incoming::Skipped(err) => {
                    if let Some(answer) = answer.as_deref_mut() {
                        answer
                            .errors
                            .push(format!("ispy: ignored a bad frame from the server: {err}"));
                    }
                    continue;
                }
            };
            let Some(answer) = answer.as_deref_mut() else {
                match frame {
                    Frame::Prompt(_) => return Ok(()),
                    Frame::Close(reason) => return Err(SessionError::Io(closed(&reason))),
                    _ => continue,
                }
            };
            if let Some(saved) = self.files.see(&frame) {
                answer.files.push(saved);
            }
            match frame {
                // A command that says how far it has got is alive: the
                // deadline moves (`profile 30` needs no --timeout 31).
                Frame::Progress(_) => conn.set_deadline(Instant::now() + self.timeout),
                Frame::Output(text) => answer.text.push_str(&text),
                Frame::Error(text) => answer.errors.push(text),
                Frame::Data(piece) => {
                    if data.len() + piece.len() > MAX_RESULT {
                        return Err(SessionError::Io(format!(
                            "the server's result is over {} MiB; gave up on it",
                            MAX_RESULT >> 20
                        )));
                    }
                    data.push_str(&piece);
                }
                Frame::Prompt(_) => {
                    if !data.is_empty() {
                        answer.record = Some(serde_json::from_str(&data).map_err(|err| {
                            SessionError::Io(format!("the server's result is not JSON: {err}"))
                        })?);
                    }
                    return Ok(());
                }
                Frame::Close(reason) => return Err(SessionError::Io(closed(&reason))),
                _ => {}
            }
        }
    }
}

fn closed(reason: &str) -> String {
    let reason = reason.trim().trim_start_matches("*** ");
    if reason.is_empty() {
        "the server closed the session.".to_owned()
    } else {
        format!("the server closed the session: {reason}")
    }
}

/// Runs the plan on every target, `plan.jobs` at a time, and hands each
/// server's [`Run`] to `report` in target order as soon as it and those
/// before it are done.
pub fn run_all(targets: &[Target], plan: &Plan, mut report: impl FnMut(&Run)) {
    let jobs = plan.jobs;
    let plan = plan.clone();
    ordered::run_in_order(
        targets.to_vec(),
        jobs,
        move |target| run_one(target, &plan),
        |run| report(&run),
    );
}
