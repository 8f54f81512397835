//! One connection's protocol state: bytes in, bytes and events out.
//!
//! Theory of operation: received bytes are buffered raw until the mode is
//! known (see [`crate::mode`]). Complete inputs (a text line, or a frame)
//! are taken from the buffer one at a time and given to the [`Shell`]; a
//! plugin call stops that until its result arrives, while further input
//! keeps being buffered up to the limit (see [`Session::wants_input`]).
//! Replies are rendered into the session's [`Outbox`], which keeps every
//! byte until the driver reports it written ([`Session::handle_written`]).
//! Processing also pauses while more than [`OUTPUT_HIGH_WATER`] bytes are
//! unsent, so a client that never reads cannot make the session grow.
//!
//! Time: every verb that can start or move a deadline takes `now`. Three
//! deadlines exist, and [`Session::poll_timeout`] gives the earliest that
//! applies: the call timeout (from the moment the driver took the call's
//! event), the send timeout (from the last moment the peer took any bytes,
//! while output is unsent), and the idle timeout (from the last complete
//! command, or the greeting, while nothing else is going on).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::admission::Refusal;
use crate::audit;
use crate::frame::{self, Decoded, Frame, PROTOCOL_VERSION};
use crate::mode::{self, Detected};
use crate::name::Name;
use crate::received::Received;
use crate::render::{self, Body, Outbox};
use crate::shell::{Host, Next, Piece, Shell};
use crate::telnet::Telnet;

/// Processing of buffered input pauses while more than this many bytes of
/// output wait to be sent.
pub const OUTPUT_HIGH_WATER: usize = 256 * 1024;

/// Identifies one plugin call (or takeover feed) of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// A plugin command the adapter must run, then answer with
/// [`Session::handle_result`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Give it back with the result.
    pub id: CallId,
    /// The plugin's name.
    pub plugin: Name,
    /// The command's name.
    pub command: Name,
    /// The rest of the line, trimmed.
    pub args: String,
    /// The session's number, as given to [`Session::new`].
    pub session: u64,
    /// True when the client asked for structured results: the plugin
    /// should give its data as well as its text (see
    /// [`Report`](crate::Report)).
    pub wants_data: bool,
    /// False when the client takes the data instead of the text: a plugin
    /// whose text costs much to make may skip it.
    pub wants_text: bool,
    /// True when the client saves the files a command sends
    /// ([`Attachment`](crate::Attachment)s of a [`Report`](crate::Report));
    /// false: a command that makes files writes them where the server is
    /// configured to, and says where.
    pub wants_files: bool,
}

/// A line for the running takeover; answer with [`Session::handle_result`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    /// Give it back with the result.
    pub id: CallId,
    /// The line, or `None` at end of input (Ctrl-D).
    pub line: Option<String>,
    /// The session's number, as given to [`Session::new`].
    pub session: u64,
}

/// A completion request for the running takeover (Tab in a console or
/// pdb); answer with [`Session::handle_result`] and
/// [`Completion::Candidates`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completing {
    /// Give it back with the result.
    pub id: CallId,
    /// The line up to the cursor.
    pub text: String,
    /// The session's number, as given to [`Session::new`].
    pub session: u64,
    /// `None`: the running takeover completes `text`. Otherwise the plugin
    /// (`.0`) completes the arguments of its command (`.1`): `text` is
    /// then what follows the command's name.
    pub command: Option<(String, String)>,
}

/// The result of a call, a feed or a completion request, handed back to
/// the session with [`Session::handle_result`].
///
/// It is the session's one result type, whatever produced it: a plugin's
/// [`Outcome`](crate::Outcome) or [`Step`](crate::Step) (through
/// [`Execution`](crate::Execution)), an error, or completion candidates.
/// Adapters that run no plugins (a test, a fuzz driver) make it directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Finished with this output. After a feed: the takeover is over.
    Output(String),
    /// Finished with this output, the same facts as data and files for
    /// the client to save (made by [`Report`](crate::Report)).
    Report {
        /// The text a person reads.
        text: String,
        /// The structured result, JSON, when the call wanted data.
        data: Option<String>,
        /// Files for the client, when the call wanted files.
        files: Vec<crate::Attachment>,
    },
    /// Failed with this message (the shell adds `*** `). After a feed: the
    /// takeover is over.
    Error(String),
    /// The answer to a [`Completing`]: each candidate replaces the text from
    /// byte `start` to its end.
    Candidates {
        /// Where the completed word starts in the text.
        start: usize,
        /// Full replacements for the word.
        items: Vec<String>,
    },
    /// A takeover runs: show `output`, then read a line at `prompt`.
    Interactive {
        /// Text to show.
        output: String,
        /// The takeover's prompt for the next line.
        prompt: String,
    },
}

/// Why a session ended, carried by [`Event::Close`] so that drivers can log
/// and count endings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The user left: `exit`, or Ctrl-D at the root shell.
    Exit,
    /// The peer half-closed its side after its last command.
    EndOfInput,
    /// No command came for `idle_timeout`.
    IdleTimeout,
    /// The peer took none of its pending output for `send_timeout`.
    SendTimeout,
    /// A line or frame was longer than `max_line`.
    LineTooLong,
    /// The peer sent a frame after which the stream cannot go on.
    BadFrame,
    /// The connection was turned away before the session began.
    Refused(Refusal),
    /// The host stopped ispyd.
    Shutdown,
    /// The peer went away altogether (it closed both directions), while
    /// a call or a takeover's line was running.
    PeerGone,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Exit => f.write_str("the user exited"),
            CloseReason::EndOfInput => f.write_str("end of input"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::SendTimeout => f.write_str("send timeout (the client stopped reading)"),
            CloseReason::LineTooLong => f.write_str("line too long"),
            CloseReason::BadFrame => f.write_str("bad frame"),
            CloseReason::Refused(refusal) => write!(f, "refused: {refusal}"),
            CloseReason::Shutdown => f.write_str("shutdown"),
            CloseReason::PeerGone => f.write_str("the client went away"),
        }
    }
}

/// Something the adapter must do for the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Run a plugin command.
    Call(Call),
    /// Feed a line to the session's takeover.
    Feed(Feed),
    /// The call took longer than `call_timeout`, was interrupted, or the
    /// session closed: its result will be ignored and its takeover, if
    /// any, should be dropped, and the code a feed runs interrupted.
    Abandon(CallId),
    /// The user pressed Ctrl-C while this feed runs: interrupt the code it
    /// runs (its result still comes, and the takeover goes on).
    Interrupt(CallId),
    /// Ask the running takeover for completion candidates.
    Complete(Completing),
    /// Send what is left to send (while [`Session::wants_write`]), then
    /// close the connection.
    Close(CloseReason),
}

/// A result the session did not expect, returned by
/// [`Session::handle_result`] so that a driver can count or log it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnexpectedResult {
    /// The call was given up on (`call_timeout`) or the session closed
    /// before its result came.
    Late(CallId),
    /// The session never issued this id.
    Unknown(CallId),
}

impl fmt::Display for UnexpectedResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnexpectedResult::Late(id) => {
                write!(f, "result of call {} came after it was given up on", id.0)
            }
            UnexpectedResult::Unknown(id) => write!(f, "result for unknown call {}", id.0),
        }
    }
}

impl std::error::Error for UnexpectedResult {}

/// One unit of input taken from the buffer.
enum Input {
    Line(Vec<u8>),
    Complete(String),
    Eof,
    WantData {
        text: bool,
    },
    WantFiles,
    Interrupt,
    /// The peer sent something unusable but the stream can go on.
    Bad(String),
    /// The peer sent something after which the stream cannot go on.
    Fatal(CloseReason, String),
}

#[derive(Debug, Clone)]
struct Pending {
    id: CallId,
    command: Name,
    plugin: Name,
    /// A call (answered with a structured result when asked), not a feed.
    is_call: bool,
    /// A takeover's completion request: answered with `Candidates`, never
    /// a prompt.
    completing: bool,
    /// Where in the line the text a plugin completes begins.
    offset: usize,
    /// It has reported progress ([`Session::handle_progress`]): it is
    /// alive, and a Ctrl-C asks it to finish early instead of giving up.
    reports_progress: bool,
    /// When to give up on it: `call_timeout` after the driver polled its
    /// event; `None` while the event waits in the queue.
    deadline: Option<Instant>,
}

/// Unsent output beyond which progress is dropped: a client that does not
/// read gets the result, not a backlog of progress.
const PROGRESS_BACKLOG: usize = 64 * 1024;
/// The longest progress text shown, in characters: a status line.
const MAX_PROGRESS: usize = 200;

/// `text` cut to its first `max` characters.
fn truncate_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// The sans-IO state of one connection.
///
/// Methods, in the manner of quinn-proto's `Connection`:
/// - inputs: [`Session::handle_input`] (only while
///   [`Session::wants_input`]), [`Session::handle_eof`],
///   [`Session::handle_written`], [`Session::handle_result`],
///   [`Session::handle_progress`],
///   [`Session::handle_timeout`], [`Session::handle_shutdown`];
/// - outputs: [`Session::poll_event`], [`Session::poll_transmit`],
///   [`Session::poll_timeout`];
/// - getters: [`Session::wants_input`], [`Session::wants_write`],
///   [`Session::is_closed`] and a few for tests and statistics.
///
/// After every input, poll events until there are none (acting on each),
/// write what [`Session::poll_transmit`] offers as far as the socket takes
/// it (reporting each write with [`Session::handle_written`], which may
/// produce more events), and then arm the one timer from
/// [`Session::poll_timeout`]. The session never reads a clock.
#[derive(Debug)]
pub struct Session {
    host: Arc<Host>,
    id: u64,
    /// `None` until the first bytes decide.
    framed: Option<bool>,
    telnet: Telnet,
    input: Received,
    out: Outbox,
    events: VecDeque<Event>,
    shell: Shell,
    pending: Option<Pending>,
    next_call: u64,
    idle_deadline: Instant,
    /// While output is unsent: when the peer will have taken none of it for
    /// `send_timeout`.
    send_deadline: Option<Instant>,
    eof: bool,
    closed: bool,
    /// The client asked for a structured result after every command.
    wants_data: bool,
    /// The client wants the text of commands too (false: data only).
    wants_text: bool,
    /// The client saves the files commands send.
    wants_files: bool,
}

impl Session {
    /// A new session for a connection accepted at `now`. Its greeting (the
    /// root prompt) is ready to be sent.
    pub fn new(host: Arc<Host>, id: u64, now: Instant) -> Session {
        let idle_deadline = now + host.limits().idle_timeout;
        let mut session = Session {
            host,
            id,
            framed: None,
            telnet: Telnet::default(),
            input: Received::default(),
            out: Outbox::default(),
            events: VecDeque::new(),
            shell: Shell::default(),
            pending: None,
            next_call: 0,
            idle_deadline,
            send_deadline: None,
            eof: false,
            closed: false,
            wants_data: false,
            wants_text: true,
            wants_files: false,
        };
        session.write_prompt();
        session.settle(now);
        session
    }

    /// The number this session was created with.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// True while the adapter should read more from the connection. False
    /// once enough unprocessed input is buffered (a call is running, or the
    /// peer is not reading its output), after end of input, or once closing.
    pub fn wants_input(&self) -> bool {
        !self.closed && !self.eof && self.input.len() <= self.input_limit()
    }

    /// True while bytes wait to be sent: register write interest.
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// True once the session has asked to close and every event and byte
    /// has been taken (or dropped, when the peer stopped reading): the
    /// driver may close the connection.
    pub fn is_closed(&self) -> bool {
        self.closed && self.out.is_empty() && self.events.is_empty()
    }

    /// True once the session has decided to close (its [`Event::Close`] may
    /// still wait to be polled, and its last bytes to be written).
    pub fn is_closing(&self) -> bool {
        self.closed
    }

    /// How many levels deep the shell is: 1 at the root, 2 in a plugin's
    /// shell, 3 in a takeover.
    pub fn depth(&self) -> usize {
        self.shell.depth()
    }

    /// True while a call or feed is awaiting its result.
    pub fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// Bytes received and not yet processed (after telnet filtering).
    pub fn buffered_input(&self) -> usize {
        self.input.len()
    }

    /// Bytes rendered and not yet written.
    pub fn buffered_output(&self) -> usize {
        self.out.len()
    }

    /// True once the handshake switched the session to frames.
    pub fn is_framed(&self) -> bool {
        self.framed == Some(true)
    }

    /// Above this many buffered bytes, [`Session::wants_input`] is false.
    pub(crate) fn input_limit(&self) -> usize {
        // One whole line or frame must fit, and a little beyond it so that
        // an over-long one is recognised as such.
        self.host.limits().max_line + 16
    }

    /// Takes bytes received from the peer, in any split.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        if self.closed || self.eof {
            return;
        }
        match self.framed {
            Some(false) => self.telnet.filter(data, self.input.tail()),
            None | Some(true) => self.input.extend_from_slice(data),
        }
        self.advance(now);
    }

    /// The peer will send nothing more. Every complete command already
    /// received is still answered; then the session closes.
    pub fn handle_eof(&mut self, now: Instant) {
        self.eof = true;
        self.advance(now);
    }

    /// The socket took the first `n` bytes of [`Session::poll_transmit`].
    /// Processing paused on the output high-water mark resumes.
    pub fn handle_written(&mut self, n: usize, now: Instant) {
        if self.out.consume(n) > 0 {
            self.send_deadline = None;
        }
        self.advance(now);
    }

    /// Time has passed; call at (or after) the instant of
    /// [`Session::poll_timeout`]. Calling it early does no harm.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.send_deadline.is_some_and(|at| now >= at) {
            // Nothing can reach a peer that does not read, not even a
            // goodbye: end, and drop the output.
            self.close(CloseReason::SendTimeout, String::new());
            self.out.discard();
            self.send_deadline = None;
            return;
        }
        if self.closed {
            return;
        }
        if let Some(pending) = self
            .pending
            .take_if(|p| p.deadline.is_some_and(|deadline| now >= deadline))
        {
            let message = self.gave_up_message(&pending);
            self.give_up(pending, message, now);
        } else if self.idle_applies() && now >= self.idle_deadline {
            let seconds = self.host.limits().idle_timeout.as_secs_f64();
            self.close(
                CloseReason::IdleTimeout,
                format!("*** No command for {seconds} s (idle_timeout); closing the session."),
            );
        }
        self.advance(now);
    }

    /// The peer is gone altogether (the driver saw a hang-up: it closed
    /// both directions), not merely done sending: nobody will read an
    /// answer, so a call in progress is abandoned (a takeover's line is
    /// interrupted) and what was not sent is dropped. After a mere end of
    /// input ([`Session::handle_eof`]) the session still answers.
    pub fn handle_hangup(&mut self, now: Instant) {
        if self.pending.is_none() && self.closed {
            return;
        }
        self.close(CloseReason::PeerGone, String::new());
        self.out.discard();
        self.settle(now);
    }

    /// The host is stopping ispyd: the session says so and closes. A call
    /// in progress is abandoned.
    pub fn handle_shutdown(&mut self, now: Instant) {
        self.close(
            CloseReason::Shutdown,
            "*** ispyd is shutting down; closing the session.".to_owned(),
        );
        self.settle(now);
    }

    /// The running call or feed `id` says how far it has got (`3 s of
    /// 10`): the client is shown `text` (framed: a `Progress` frame, which
    /// it shows in place; text mode: a line), and the call has
    /// `call_timeout` from now again, as a command that reports progress
    /// is alive however long it runs. From its first progress on, a Ctrl-C
    /// asks the call to finish early ([`Event::Interrupt`]) instead of
    /// giving up on it. Progress is transient: with much output unsent
    /// (a client that does not read), it is dropped.
    pub fn handle_progress(
        &mut self,
        id: CallId,
        text: &str,
        now: Instant,
    ) -> Result<(), UnexpectedResult> {
        let call_timeout = self.host.limits().call_timeout;
        let Some(pending) = self
            .pending
            .as_mut()
            .filter(|p| p.id == id && !p.completing)
        else {
            return Err(if id.0 < self.next_call {
                UnexpectedResult::Late(id)
            } else {
                UnexpectedResult::Unknown(id)
            });
        };
        pending.reports_progress = true;
        if pending.deadline.is_some() {
            pending.deadline = Some(now + call_timeout);
        }
        if self.closed || self.out.len() > PROGRESS_BACKLOG {
            return Ok(());
        }
        let shown = truncate_chars(text.lines().next().unwrap_or(""), MAX_PROGRESS);
        if self.framed == Some(true) {
            self.out.frame(&Frame::Progress(shown.to_owned()));
        } else {
            self.out.output(shown, true);
        }
        self.settle(now);
        Ok(())
    }

    /// Hands back the result of the call or feed `id`. A result for a call
    /// that was given up on, or that the session never issued, changes
    /// nothing and is reported as such.
    pub fn handle_result(
        &mut self,
        id: CallId,
        completion: Completion,
        now: Instant,
    ) -> Result<(), UnexpectedResult> {
        let Some(pending) = self.pending.take_if(|p| p.id == id) else {
            return Err(if id.0 < self.next_call {
                UnexpectedResult::Late(id)
            } else {
                UnexpectedResult::Unknown(id)
            });
        };
        if pending.completing {
            let (start, items) = match completion {
                Completion::Candidates { start, items } => (start, items),
                // A takeover that cannot complete: nothing to offer.
                _ => (0, Vec::new()),
            };
            let start = u32::try_from(start + pending.offset).unwrap_or(u32::MAX);
            self.out.frame(&Frame::Candidates { start, items });
            self.advance(now);
            return Ok(());
        }
        // The data goes out as it came, after the text; the text-only and
        // failed cases are small and made into their record at once.
        let (mut completion, data, files) = match completion {
            Completion::Report { text, data, files } => (Completion::Output(text), data, files),
            other => (other, None, Vec::new()),
        };
        if let Completion::Output(text) | Completion::Interactive { output: text, .. } =
            &mut completion
        {
            cut_output(text, self.host.limits().max_output);
        }
        let data = data.filter(|data| data.len() <= self.host.limits().max_output);
        let record = (self.wants_data && pending.is_call && data.is_none()).then(|| {
            let takeover;
            let body = match &completion {
                Completion::Output(text) | Completion::Report { text, .. } => Body::Text(text),
                Completion::Error(message) => Body::Error(message),
                Completion::Interactive { .. } => {
                    takeover = serde_json::json!({ "takeover": pending.command }).to_string();
                    Body::Data(&takeover)
                }
                // Only a completion request gets candidates.
                Completion::Candidates { .. } => Body::Nothing,
            };
            render::record(&pending.plugin, &pending.command, body)
        });
        let data_only = self.wants_data
            && !self.wants_text
            && pending.is_call
            && !matches!(completion, Completion::Interactive { .. });
        let pieces = self.shell.finish(&pending.command, completion);
        self.show(pieces, data_only);
        if self.wants_files && pending.is_call {
            for file in &files {
                self.out.file(&file.name, &file.bytes);
            }
        }
        if let Some(record) = record {
            self.out.data(&record);
        } else if let Some(data) = data.filter(|_| self.wants_data && pending.is_call) {
            self.out
                .record(&pending.plugin, &pending.command, Body::Data(&data));
        }
        self.write_prompt();
        self.idle_deadline = now + self.host.limits().idle_timeout;
        self.advance(now);
        Ok(())
    }

    /// The next event for the adapter, if any. Taking a call's event starts
    /// its `call_timeout`, so poll when the call can start, with the time.
    pub fn poll_event(&mut self, now: Instant) -> Option<Event> {
        let event = self.events.pop_front()?;
        if let Event::Call(Call { id, .. })
        | Event::Feed(Feed { id, .. })
        | Event::Complete(Completing { id, .. }) = &event
        {
            let call_timeout = self.host.limits().call_timeout;
            if let Some(pending) = self.pending.as_mut().filter(|p| p.id == *id) {
                pending.deadline = Some(now + call_timeout);
            }
        }
        Some(event)
    }

    /// The bytes waiting to be sent, if any. Write as many as the socket
    /// takes, then report the count with [`Session::handle_written`]; the
    /// rest stays here. Needs no time: nothing is consumed until reported.
    pub fn poll_transmit(&self) -> Option<&[u8]> {
        Some(self.out.unsent()).filter(|bytes| !bytes.is_empty())
    }

    /// When [`Session::handle_timeout`] must be called if nothing else
    /// happens first; `None`: no timer is needed. Re-arm from it after
    /// every pass.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let call = self.pending.as_ref().and_then(|p| p.deadline);
        let idle = (!self.closed && self.idle_applies()).then_some(self.idle_deadline);
        [self.send_deadline, call, idle].into_iter().flatten().min()
    }

    /// The idle timeout runs only while nothing else may be holding the
    /// session up: no call pending, no output the peer has yet to take
    /// (which the send timeout watches).
    fn idle_applies(&self) -> bool {
        self.pending.is_none() && self.out.is_empty()
    }

    /// What the user is told when `call_timeout` gives up on `pending`:
    /// only what the session knows. It cannot tell a call still at work
    /// from one waiting for what its plugin needs (the GIL), so it names
    /// both; and a takeover's line is a line, not a command.
    fn gave_up_message(&self, pending: &Pending) -> String {
        let seconds = self.host.limits().call_timeout.as_secs_f64();
        let waits_for = self
            .host
            .plugins()
            .iter()
            .find(|p| p.name == pending.plugin)
            .and_then(|p| p.waits_for.as_deref())
            .map(|what| {
                format!(": it is still running, or waiting for {what}, which another thread may be holding")
            })
            .unwrap_or_default();
        let (command, plugin) = (&pending.command, &pending.plugin);
        if pending.is_call {
            format!(
                "*** '{command}' ({plugin} plugin) did not answer within {seconds} s{waits_for}. \
                 Gave up waiting for it (it may still be running, and its output will be \
                 discarded)."
            )
        } else {
            format!(
                "*** The line did not finish within {seconds} s in '{command}' ({plugin} \
                 plugin){waits_for}. Gave up on it and left '{command}' (it may still be \
                 running, and its output will be discarded)."
            )
        }
    }

    /// Processes buffered input until it runs out, a call is pending, or
    /// enough output is waiting; then brings the deadlines up to date.
    fn advance(&mut self, now: Instant) {
        // However the input was split: an interrupt right behind the line
        // that started a call is taken as soon as that call starts.
        while self.take_interrupts(now) | self.run_buffered(now) {}
        if self.eof && !self.closed && self.pending.is_none() && self.input.is_empty() {
            self.close(CloseReason::EndOfInput, String::new());
        }
        self.settle(now);
    }

    /// Runs buffered inputs until none is left, a call starts, or enough
    /// output waits. True if a call started (an interrupt may be behind it).
    fn run_buffered(&mut self, now: Instant) -> bool {
        while !self.closed && self.pending.is_none() && self.out.len() < OUTPUT_HIGH_WATER {
            if self.framed.is_none() && !self.decide_mode() {
                break;
            }
            let Some(input) = self.next_input() else {
                break;
            };
            self.idle_deadline = now + self.host.limits().idle_timeout;
            self.run(input);
            if self.pending.is_some() {
                return true;
            }
        }
        false
    }

    /// While a call or feed runs, an `Interrupt` at the front of the input
    /// is acted on at once, ahead of the result: it is what the user does
    /// when the result does not come. True if it gave up on a call (and
    /// the shell can go on with the input).
    fn take_interrupts(&mut self, now: Instant) -> bool {
        let mut gave_up = false;
        while self.pending.is_some() && !self.closed && self.framed == Some(true) {
            let limit = self.host.limits().max_line + 1;
            let Decoded::Frame(Frame::Interrupt, used) = frame::decode(&self.input, limit) else {
                break;
            };
            self.input.consume(used);
            let Some(pending) = self.pending.take() else {
                break;
            };
            if !pending.is_call || pending.reports_progress {
                // A takeover's line, or a call that reports progress: asked
                // to stop, it answers (with what it has), in call_timeout.
                let mut pending = pending;
                if pending.deadline.is_some() {
                    pending.deadline = Some(now + self.host.limits().call_timeout);
                }
                self.events.push_back(Event::Interrupt(pending.id));
                self.pending = Some(pending);
                continue;
            }
            let message = format!(
                "*** Interrupted: gave up on '{}' ({} plugin); it may still be running, and its \
                 output will be discarded.",
                pending.command, pending.plugin
            );
            self.give_up(pending, message, now);
            gave_up = true;
        }
        gave_up
    }

    /// Stops waiting for `pending`: the user gets `message` and the shell.
    fn give_up(&mut self, pending: Pending, message: String, now: Instant) {
        self.events.push_back(Event::Abandon(pending.id));
        self.idle_deadline = now + self.host.limits().idle_timeout;
        if pending.completing {
            // Every completion request gets its one answer and nothing
            // more: the client is editing a line, and a message with a
            // prompt of its own would put every later prompt one line
            // behind. A takeover stuck in the completion stays; the next
            // line sent to it is given up on with the message.
            self.out.frame(&Frame::Candidates {
                start: 0,
                items: Vec::new(),
            });
            return;
        }
        let record = (self.wants_data && pending.is_call).then(|| {
            let text = message.strip_prefix("*** ").unwrap_or(&message);
            render::record(&pending.plugin, &pending.command, Body::Error(text))
        });
        let pieces = self.shell.abandon(message);
        let spent = pieces.contains(&Piece::TakeoverEnd) && self.take_eof_for_the_takeover();
        self.show(pieces, false);
        if let Some(record) = record {
            self.out.data(&record);
        }
        self.write_prompt();
        if spent {
            // Every Eof gets its Prompt, as every line does: the client
            // counts them.
            self.write_prompt();
        }
    }

    /// An end of input the client sent while the takeover's line ran was
    /// meant for the takeover (Ctrl-D at `>>>` leaves the console). Giving
    /// up on the line has left the takeover already; taken again, the end
    /// of input would leave the plugin's shell too: one Ctrl-D, one level.
    /// True if there was one, taken: it is answered with a prompt only.
    fn take_eof_for_the_takeover(&mut self) -> bool {
        if self.framed != Some(true) {
            // In text mode, end of input is the stream's end: the session
            // closes either way.
            return false;
        }
        let limit = self.host.limits().max_line + 1;
        let Decoded::Frame(Frame::Eof, used) = frame::decode(&self.input, limit) else {
            return false;
        };
        self.input.consume(used);
        true
    }

    /// Starts the send timeout when output appears, ends it when none is
    /// left.
    fn settle(&mut self, now: Instant) {
        if self.out.is_empty() {
            self.send_deadline = None;
        } else if self.send_deadline.is_none() {
            self.send_deadline = Some(now + self.host.limits().send_timeout);
        }
    }

    /// Decides text or framed mode from the first bytes; false while the
    /// bytes so far could still be either.
    fn decide_mode(&mut self) -> bool {
        match mode::detect(&self.input, self.eof) {
            Detected::Undecided => false,
            Detected::Text => {
                self.framed = Some(false);
                let raw = self.input.take_all();
                self.telnet.filter(&raw, self.input.tail());
                true
            }
            Detected::Framed { version, used } => {
                self.input.consume(used);
                self.framed = Some(true);
                self.out.raw(b"\0ISPY/");
                self.out
                    .raw(version.min(PROTOCOL_VERSION).to_string().as_bytes());
                self.out.raw(b"\n");
                self.out.set_framed();
                self.write_prompt();
                true
            }
        }
    }

    fn next_input(&mut self) -> Option<Input> {
        match self.framed {
            None => None,
            Some(false) => self.next_line(),
            Some(true) => self.next_frame(),
        }
    }

    fn next_line(&mut self) -> Option<Input> {
        let limit = self.host.limits().max_line;
        match self.input.iter().position(|&b| b == b'\n') {
            Some(end) if end <= limit || (end == limit + 1 && self.input[limit] == b'\r') => {
                let mut line = self.input.take(end + 1);
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Some(Input::Line(line))
            }
            Some(_) => Some(too_long(limit)),
            None if self.input.len() > limit => Some(too_long(limit)),
            None if self.eof && !self.input.is_empty() => {
                let mut line = self.input.take_all();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Some(Input::Line(line))
            }
            None => None,
        }
    }

    fn next_frame(&mut self) -> Option<Input> {
        let limit = self.host.limits().max_line + 1;
        match frame::decode(&self.input, limit) {
            Decoded::Incomplete => {
                // A partial frame at end of input is dropped with the stream.
                if self.eof {
                    self.input.clear();
                }
                None
            }
            Decoded::Frame(frame, used) => {
                self.input.consume(used);
                Some(match frame {
                    Frame::Line(text) => Input::Line(text.into_bytes()),
                    Frame::Complete(text) => Input::Complete(text),
                    Frame::Eof => Input::Eof,
                    Frame::WantData { text } => Input::WantData { text },
                    Frame::WantFiles => Input::WantFiles,
                    Frame::Interrupt => Input::Interrupt,
                    other => Input::Bad(format!(
                        "*** Ignored a server-side frame sent by the client: {other:?}"
                    )),
                })
            }
            Decoded::Invalid(err, Some(used)) => {
                self.input.consume(used);
                Some(Input::Bad(format!("*** Ignored a bad frame: {err}")))
            }
            Decoded::Invalid(err, None) => {
                let reason = match err {
                    frame::FrameError::TooLong { .. } => CloseReason::LineTooLong,
                    _ => CloseReason::BadFrame,
                };
                Some(Input::Fatal(
                    reason,
                    format!("*** Bad frame from the client: {err}; closing the session."),
                ))
            }
        }
    }

    fn run(&mut self, input: Input) {
        let reply = match input {
            Input::Line(bytes) => match String::from_utf8(bytes) {
                Ok(line) => self.shell.run_line(&line, &self.host, self.wants_data),
                Err(_) => {
                    self.out
                        .error("*** Input is not valid UTF-8; the line was ignored.");
                    self.write_prompt();
                    return;
                }
            },
            Input::Eof => self.shell.end_of_input(),
            Input::Complete(text) if self.shell.in_takeover() => {
                // The interpreter knows its names: ask it.
                let (command, plugin) = self.shell.takeover_names(&self.host);
                let id = self.start_pending(command, plugin, false);
                if let Some(pending) = self.pending.as_mut() {
                    pending.completing = true;
                }
                self.events.push_back(Event::Complete(Completing {
                    id,
                    text,
                    session: self.id,
                    command: None,
                }));
                return;
            }
            Input::Complete(text) if self.shell.argument_of(&text, &self.host).is_some() => {
                // A command's arguments: its plugin knows them.
                let Some((plugin, command, offset)) = self.shell.argument_of(&text, &self.host)
                else {
                    return;
                };
                let id = self.start_pending(Name::from(&command), Name::from(&plugin), false);
                if let Some(pending) = self.pending.as_mut() {
                    pending.completing = true;
                    pending.offset = offset;
                }
                self.events.push_back(Event::Complete(Completing {
                    id,
                    text: text[offset..].to_owned(),
                    session: self.id,
                    command: Some((plugin, command)),
                }));
                return;
            }
            Input::Complete(text) => {
                let (start, items) = self.shell.completions(&text, &self.host);
                let start = u32::try_from(start).unwrap_or(u32::MAX);
                self.out.frame(&Frame::Candidates { start, items });
                return;
            }
            Input::WantData { text } => {
                self.wants_data = true;
                self.wants_text = text;
                return;
            }
            Input::WantFiles => {
                self.wants_files = true;
                return;
            }
            // Nothing runs: a Ctrl-C between commands means nothing.
            Input::Interrupt => return,
            Input::Bad(message) => {
                self.out.error(&message);
                return;
            }
            Input::Fatal(reason, message) => {
                self.input.clear();
                self.close(reason, message);
                return;
            }
        };
        let data_only = reply.record.is_some() && !self.wants_text;
        self.show(reply.pieces, data_only);
        if let Some(record) = reply.record {
            self.out.data(&record);
        }
        match reply.next {
            Next::Prompt => self.write_prompt(),
            Next::Close => self.close(CloseReason::Exit, String::new()),
            Next::Call {
                plugin,
                command,
                args,
            } => {
                if let Some(gate) = self.host.gate_of(&plugin, &command) {
                    audit::gated(self.id, gate, &plugin, &command, &args);
                }
                let id = self.start_pending(command.clone(), plugin.clone(), true);
                self.events.push_back(Event::Call(Call {
                    id,
                    plugin,
                    command,
                    args,
                    session: self.id,
                    wants_data: self.wants_data,
                    wants_text: !self.wants_data || self.wants_text,
                    wants_files: self.wants_files,
                }));
            }
            Next::Feed(line) => {
                let (command, plugin) = self.shell.takeover_names(&self.host);
                if let Some(gate) = self.host.gate_of(&plugin, &command) {
                    audit::line(self.id, gate, &command, line.as_deref());
                }
                let id = self.start_pending(command, plugin, false);
                self.events.push_back(Event::Feed(Feed {
                    id,
                    line,
                    session: self.id,
                }));
            }
        }
    }

    fn start_pending(&mut self, command: Name, plugin: Name, is_call: bool) -> CallId {
        let id = CallId(self.next_call);
        self.next_call += 1;
        self.pending = Some(Pending {
            id,
            command,
            plugin,
            is_call,
            completing: false,
            reports_progress: false,
            offset: 0,
            deadline: None,
        });
        id
    }

    /// Writes a reply's pieces; `data_only` leaves out the output (the
    /// client takes the command's facts from its data).
    fn show(&mut self, pieces: impl IntoIterator<Item = Piece>, data_only: bool) {
        for piece in pieces {
            match piece {
                Piece::Output(_) if data_only => {}
                Piece::Output(text) => {
                    // Plugins' output conventionally ends in a newline; a
                    // takeover's (an interpreter echoing a partial line)
                    // may not, and is left as is.
                    let newline = !text.ends_with('\n') && !self.shell.in_takeover();
                    self.out.output(&text, newline);
                }
                Piece::Error(text) => self.out.error(&text),
                Piece::TakeoverBegin(name) => self.out.takeover(Some(&name)),
                Piece::TakeoverEnd => self.out.takeover(None),
            }
        }
    }

    fn write_prompt(&mut self) {
        self.out.prompt(self.shell.prompt_parts(&self.host));
    }

    fn close(&mut self, reason: CloseReason, message: String) {
        if self.closed {
            return;
        }
        self.closed = true;
        audit::ended(self.id, &reason);
        self.out.close(&message);
        if let Some(pending) = self.pending.take() {
            self.events.push_back(Event::Abandon(pending.id));
        }
        self.events.push_back(Event::Close(reason));
    }
}

/// Cuts `text` to at most `limit` bytes (at a character boundary) and
/// says how much was left out: one command's output must not fill the
/// host's memory or the client's screen (`print('x' * 50_000_000)`).
///
/// A plugin that bounds its own buffer (the Python binding's) cuts first
/// and adds its own note; the room below keeps that note from being cut.
fn cut_output(text: &mut String, limit: usize) {
    const NOTE_ROOM: usize = 256;
    if text.len() <= limit + NOTE_ROOM {
        return;
    }
    let mut at = limit;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let left_out = text.len() - at;
    text.truncate(at);
    text.push_str(&format!(
        "\n*** Output cut at {limit} bytes (max_output); {left_out} more bytes not shown.\n"
    ));
}

fn too_long(limit: usize) -> Input {
    Input::Fatal(
        CloseReason::LineTooLong,
        format!("*** Line longer than {limit} bytes (max_line); closing the session."),
    )
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
