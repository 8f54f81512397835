//! One connection's protocol state: bytes in, bytes and events out.
//!
//! Theory of operation: received bytes are buffered raw until the mode is
//! known (the first byte, or the handshake line, decides). Complete inputs
//! (a text line, or a frame) are taken from the buffer one at a time and
//! given to the [`Shell`]; a plugin call stops that until its completion
//! arrives, while further input keeps being buffered up to the limit (see
//! [`Session::wants_input`]). Replies are rendered into the transmit buffer
//! in the session's mode. Processing also pauses while more than
//! [`OUTPUT_HIGH_WATER`] bytes wait to be sent, so a client that never reads
//! cannot make the session grow.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::frame::{self, CLIENT_HELLO, Decoded, Frame, MAX_FRAME, PROTOCOL_VERSION};
use crate::shell::{Host, Next, Piece, Shell};
use crate::telnet::Telnet;

/// Processing of buffered input pauses while more than this many bytes of
/// output wait to be sent.
pub const OUTPUT_HIGH_WATER: usize = 256 * 1024;

/// Identifies one plugin call (or takeover feed) of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// A plugin command the adapter must run, then answer with
/// [`Session::complete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Give it back with the completion.
    pub id: CallId,
    /// The plugin's name.
    pub plugin: String,
    /// The command's name.
    pub command: String,
    /// The rest of the line, trimmed.
    pub args: String,
    /// The session's number, as given to [`Session::new`].
    pub session: u64,
}

/// A line for the running takeover; answer with [`Session::complete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    /// Give it back with the completion.
    pub id: CallId,
    /// The line, or `None` at end of input (Ctrl-D).
    pub line: Option<String>,
    /// The session's number, as given to [`Session::new`].
    pub session: u64,
}

/// The result of a call or a feed, handed back to the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Finished with this output. After a feed: the takeover is over.
    Output(String),
    /// Failed with this message (the shell adds `*** `). After a feed: the
    /// takeover is over.
    Error(String),
    /// A takeover runs: show `output`, then read a line at `prompt`.
    Interactive {
        /// Text to show.
        output: String,
        /// The takeover's prompt for the next line.
        prompt: String,
    },
}

/// Something the adapter must do for the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Run a plugin command.
    Call(Call),
    /// Feed a line to the session's takeover.
    Feed(Feed),
    /// The call took longer than `call_timeout`; its result will be ignored
    /// and its takeover, if any, should be dropped.
    Abandon(CallId),
    /// Send what is left to send, then close the connection.
    Close,
}

/// What [`Session::poll_output`] has for the adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Output {
    /// This many bytes were appended to the caller's buffer: write them.
    Transmit(usize),
    /// An event to act on.
    Event(Event),
    /// Nothing more for now. Call [`Session::handle_timeout`] at this time
    /// if nothing else happens first (at once if it is already past);
    /// `None`: no timer needed.
    Timeout(Option<Instant>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing decided the mode yet.
    Undecided,
    Text,
    Framed,
}

/// One unit of input taken from the buffer.
enum Input {
    Line(Vec<u8>),
    Complete(String),
    Eof,
    /// The peer sent something unusable but the stream can go on.
    Bad(String),
    /// The peer sent something after which the stream cannot go on.
    Fatal(String),
}

#[derive(Debug, Clone)]
struct Pending {
    id: CallId,
    command: String,
    plugin: String,
    /// True once its event was polled: the adapter has it.
    delivered: bool,
    /// When to give up on it: `call_timeout` after the adapter took its
    /// event. `None` until then, and after it while the session does not
    /// know the current time (see [`Session::arm`]).
    deadline: Option<Instant>,
}

/// The sans-IO state of one connection.
///
/// Driving it: create it with [`Session::new`]; give it received bytes with
/// [`Session::handle_input`] (only while [`Session::wants_input`] is true),
/// end of input with [`Session::handle_eof`], plugin results with
/// [`Session::complete`], and expired timers with
/// [`Session::handle_timeout`]. After each of these, call
/// [`Session::poll_output`] until it returns [`Output::Timeout`]. The
/// session never reads a clock: every `now` comes from the caller.
#[derive(Debug)]
pub struct Session {
    host: Arc<Host>,
    id: u64,
    mode: Mode,
    telnet: Telnet,
    input: Vec<u8>,
    outbuf: Vec<u8>,
    events: VecDeque<Event>,
    shell: Shell,
    pending: Option<Pending>,
    next_call: u64,
    idle_deadline: Instant,
    /// The last instant the adapter gave.
    now: Instant,
    /// False once time may have passed since `now` was given: after
    /// [`Session::poll_output`] handed out bytes (the adapter may block
    /// writing them) or found nothing queued. True again with the next
    /// `now`.
    now_is_current: bool,
    eof: bool,
    closed: bool,
}

impl Session {
    /// A new session for a connection accepted at `now`. Its greeting (the
    /// root prompt) is ready to be sent.
    pub fn new(host: Arc<Host>, id: u64, now: Instant) -> Session {
        let idle_deadline = now + host.limits().idle_timeout;
        let mut session = Session {
            host,
            id,
            mode: Mode::Undecided,
            telnet: Telnet::default(),
            input: Vec::new(),
            outbuf: Vec::new(),
            events: VecDeque::new(),
            shell: Shell::default(),
            pending: None,
            next_call: 0,
            idle_deadline,
            now,
            now_is_current: true,
            eof: false,
            closed: false,
        };
        session.write_prompt();
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

    /// True once the session has asked to close and everything has been
    /// polled out of it.
    pub fn is_closed(&self) -> bool {
        self.closed && self.outbuf.is_empty() && self.events.is_empty()
    }

    /// How many levels deep the shell is: 1 at the root, 2 in a plugin's
    /// shell, 3 in a takeover.
    pub fn depth(&self) -> usize {
        self.shell.depth()
    }

    /// True while a call or feed is awaiting its completion.
    pub fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// Bytes received and not yet processed (after telnet filtering).
    pub(crate) fn buffered_input(&self) -> usize {
        self.input.len()
    }

    /// Bytes rendered and not yet polled out.
    pub(crate) fn buffered_output(&self) -> usize {
        self.outbuf.len()
    }

    /// True once the handshake switched the session to frames.
    pub(crate) fn is_framed(&self) -> bool {
        self.mode == Mode::Framed
    }

    /// Above this many buffered bytes, [`Session::wants_input`] is false.
    pub(crate) fn input_limit(&self) -> usize {
        // One whole line or frame must fit, and a little beyond it so that
        // an over-long one is recognised as such.
        self.host.limits().max_line + 16
    }

    /// Takes bytes received from the peer, in any split.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        self.set_now(now);
        if self.closed || self.eof {
            return;
        }
        match self.mode {
            Mode::Text => self.telnet.filter(data, &mut self.input),
            Mode::Undecided | Mode::Framed => self.input.extend_from_slice(data),
        }
        self.advance();
    }

    /// The peer will send nothing more. Every complete command already
    /// received is still answered; then the session closes.
    pub fn handle_eof(&mut self, now: Instant) {
        self.set_now(now);
        self.eof = true;
        self.advance();
    }

    /// Time has passed; call at (or after) the instant of the last
    /// [`Output::Timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.set_now(now);
        if self.closed {
            return;
        }
        if let Some(pending) = self
            .pending
            .take_if(|p| p.deadline.is_some_and(|deadline| now >= deadline))
        {
            let seconds = self.host.limits().call_timeout.as_secs_f64();
            let waits_for = self
                .host
                .plugins()
                .iter()
                .find(|p| p.name == pending.plugin)
                .and_then(|p| p.waits_for.as_deref())
                .map(|what| format!(" It needs {what}, which another thread may be holding."))
                .unwrap_or_default();
            let message = format!(
                "*** '{}' ({} plugin) did not answer within {seconds} s.{waits_for} Gave up \
                 waiting for it (it may still be running, and its output will be discarded).",
                pending.command, pending.plugin
            );
            self.events.push_back(Event::Abandon(pending.id));
            let pieces = self.shell.abandon(message);
            self.show(pieces);
            self.write_prompt();
            self.idle_deadline = now + self.host.limits().idle_timeout;
        } else if self.pending.is_none() && now >= self.idle_deadline {
            let seconds = self.host.limits().idle_timeout.as_secs_f64();
            self.close(format!(
                "*** No command for {seconds} s (idle_timeout); closing the session."
            ));
            return;
        }
        self.advance();
    }

    /// Hands back the result of the call or feed `id`. Results of abandoned
    /// calls, and unknown ids, are ignored.
    pub fn complete(&mut self, id: CallId, completion: Completion, now: Instant) {
        self.set_now(now);
        let Some(pending) = self.pending.take_if(|p| p.id == id) else {
            return;
        };
        if self.closed {
            return;
        }
        let pieces = self.shell.finish(&pending.command, completion);
        self.show(pieces);
        self.write_prompt();
        self.idle_deadline = now + self.host.limits().idle_timeout;
        self.advance();
    }

    /// The next thing for the adapter: bytes to send (appended to `buf`), an
    /// event, or the time to call back.
    pub fn poll_output(&mut self, buf: &mut Vec<u8>) -> Output {
        if self.outbuf.is_empty() && self.events.is_empty() {
            // Processing may have paused on the output high-water mark.
            self.now_is_current = false;
            self.advance();
        }
        if !self.outbuf.is_empty() {
            let n = self.outbuf.len();
            buf.append(&mut self.outbuf);
            self.now_is_current = false;
            return Output::Transmit(n);
        }
        if let Some(event) = self.events.pop_front() {
            if let Event::Call(Call { id, .. }) | Event::Feed(Feed { id, .. }) = &event {
                self.arm(*id);
            }
            return Output::Event(event);
        }
        Output::Timeout(self.poll_timeout())
    }

    /// When [`Session::handle_timeout`] must be called, if no input comes.
    /// May be in the past: then call it at once (a call whose event was
    /// polled after a write needs the current time to arm its timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        match &self.pending {
            Some(pending) => Some(pending.deadline.unwrap_or(self.now)),
            None => Some(self.idle_deadline),
        }
    }

    /// Takes the adapter's current time, and arms the timeout of a call
    /// the adapter took when the session did not know the time.
    fn set_now(&mut self, now: Instant) {
        self.now = now;
        self.now_is_current = true;
        let call_timeout = self.host.limits().call_timeout;
        if let Some(pending) = self
            .pending
            .as_mut()
            .filter(|p| p.delivered && p.deadline.is_none())
        {
            pending.deadline = Some(now + call_timeout);
        }
    }

    /// The adapter takes the event of call `id`: its `call_timeout` starts
    /// now. If time may have passed since the last `now` (the event waited
    /// behind output the adapter wrote, or processing resumed inside
    /// [`Session::poll_output`]), the deadline waits for the next `now`,
    /// which [`Session::poll_timeout`] asks for at once.
    fn arm(&mut self, id: CallId) {
        let deadline = self
            .now_is_current
            .then(|| self.now + self.host.limits().call_timeout);
        if let Some(pending) = self.pending.as_mut().filter(|p| p.id == id) {
            pending.delivered = true;
            pending.deadline = deadline;
        }
    }

    /// Processes buffered input until it runs out, a call is pending, or
    /// enough output is waiting.
    fn advance(&mut self) {
        while !self.closed && self.pending.is_none() && self.outbuf.len() < OUTPUT_HIGH_WATER {
            if self.mode == Mode::Undecided && !self.decide_mode() {
                break;
            }
            let Some(input) = self.next_input() else {
                break;
            };
            self.idle_deadline = self.now + self.host.limits().idle_timeout;
            self.run(input);
        }
        if self.eof && !self.closed && self.pending.is_none() && self.input.is_empty() {
            self.close(String::new());
        }
    }

    /// Decides text or framed mode from the first bytes; false while the
    /// bytes so far could still be either.
    fn decide_mode(&mut self) -> bool {
        let Some(&first) = self.input.first() else {
            if self.eof {
                self.mode = Mode::Text;
            }
            return self.eof;
        };
        if first != 0 {
            return self.enter_text_mode();
        }
        let prefix = &CLIENT_HELLO[..6]; // "\0ISPY/"
        let end = self.input.iter().position(|&b| b == b'\n');
        let seen = end.unwrap_or(self.input.len());
        let agrees = self.input[..seen.min(prefix.len())] == prefix[..seen.min(prefix.len())];
        match end {
            Some(end) if agrees && end > prefix.len() => {
                let version = std::str::from_utf8(&self.input[prefix.len()..end])
                    .ok()
                    .filter(|v| {
                        !v.is_empty() && v.len() <= 9 && v.bytes().all(|b| b.is_ascii_digit())
                    })
                    .and_then(|v| v.parse::<u32>().ok())
                    .filter(|&v| v >= 1);
                match version {
                    Some(version) => {
                        self.input.drain(..=end);
                        self.enter_framed_mode(version.min(PROTOCOL_VERSION));
                        true
                    }
                    None => self.enter_text_mode(),
                }
            }
            None if agrees && seen < 16 && !self.eof => false,
            _ => self.enter_text_mode(),
        }
    }

    fn enter_text_mode(&mut self) -> bool {
        self.mode = Mode::Text;
        let raw = std::mem::take(&mut self.input);
        self.telnet.filter(&raw, &mut self.input);
        true
    }

    fn enter_framed_mode(&mut self, version: u32) {
        self.mode = Mode::Framed;
        self.outbuf.extend_from_slice(b"\0ISPY/");
        self.outbuf
            .extend_from_slice(version.to_string().as_bytes());
        self.outbuf.push(b'\n');
        self.write_prompt();
    }

    fn next_input(&mut self) -> Option<Input> {
        match self.mode {
            Mode::Undecided => None,
            Mode::Text => self.next_line(),
            Mode::Framed => self.next_frame(),
        }
    }

    fn next_line(&mut self) -> Option<Input> {
        let limit = self.host.limits().max_line;
        match self.input.iter().position(|&b| b == b'\n') {
            Some(end) if end <= limit || (end == limit + 1 && self.input[limit] == b'\r') => {
                let mut line: Vec<u8> = self.input.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Some(Input::Line(line))
            }
            Some(_) => Some(Input::Fatal(too_long(limit))),
            None if self.input.len() > limit => Some(Input::Fatal(too_long(limit))),
            None if self.eof && !self.input.is_empty() => {
                let mut line = std::mem::take(&mut self.input);
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
                self.input.drain(..used);
                Some(match frame {
                    Frame::Line(text) => Input::Line(text.into_bytes()),
                    Frame::Complete(text) => Input::Complete(text),
                    Frame::Eof => Input::Eof,
                    other => Input::Bad(format!(
                        "*** Ignored a server-side frame sent by the client: {other:?}"
                    )),
                })
            }
            Decoded::Invalid(err, Some(used)) => {
                self.input.drain(..used);
                Some(Input::Bad(format!("*** Ignored a bad frame: {err}")))
            }
            Decoded::Invalid(err, None) => Some(Input::Fatal(format!(
                "*** Bad frame from the client: {err}; closing the session."
            ))),
        }
    }

    fn run(&mut self, input: Input) {
        let reply = match input {
            Input::Line(bytes) => match String::from_utf8(bytes) {
                Ok(line) => self.shell.run_line(&line, &self.host),
                Err(_) => {
                    self.write_error("*** Input is not valid UTF-8; the line was ignored.");
                    self.write_prompt();
                    return;
                }
            },
            Input::Eof => self.shell.end_of_input(),
            Input::Complete(text) => {
                let (start, items) = self.shell.complete(&text, &self.host);
                let start = u32::try_from(start).unwrap_or(u32::MAX);
                Frame::Candidates { start, items }.encode(&mut self.outbuf);
                return;
            }
            Input::Bad(message) => {
                self.write_error(&message);
                return;
            }
            Input::Fatal(message) => {
                self.input.clear();
                self.close(message);
                return;
            }
        };
        self.show(reply.pieces);
        match reply.next {
            Next::Prompt => self.write_prompt(),
            Next::Close(reason) => self.close(reason),
            Next::Call {
                plugin,
                command,
                args,
            } => {
                let id = self.start_pending(command.clone(), plugin.clone());
                self.events.push_back(Event::Call(Call {
                    id,
                    plugin,
                    command,
                    args,
                    session: self.id,
                }));
            }
            Next::Feed(line) => {
                let command = self.shell.takeover_name().unwrap_or_default().to_owned();
                let plugin = self.shell.plugin_name(&self.host).to_owned();
                let id = self.start_pending(command, plugin);
                self.events.push_back(Event::Feed(Feed {
                    id,
                    line,
                    session: self.id,
                }));
            }
        }
    }

    fn start_pending(&mut self, command: String, plugin: String) -> CallId {
        let id = CallId(self.next_call);
        self.next_call += 1;
        self.pending = Some(Pending {
            id,
            command,
            plugin,
            delivered: false,
            deadline: None,
        });
        id
    }

    fn show(&mut self, pieces: Vec<Piece>) {
        for piece in pieces {
            match piece {
                Piece::Output(text) => self.write_output(&text),
                Piece::Error(text) => self.write_error(&text),
                Piece::TakeoverBegin(name) => {
                    if self.mode == Mode::Framed {
                        Frame::Interactive(name).encode(&mut self.outbuf);
                    }
                }
                Piece::TakeoverEnd => {
                    if self.mode == Mode::Framed {
                        Frame::InteractiveEnd.encode(&mut self.outbuf);
                    }
                }
            }
        }
    }

    fn write_output(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        // Plugins' output conventionally ends in a newline; a takeover's
        // (an interpreter echoing a partial line) may not, and is left as is.
        let add_newline = !text.ends_with('\n') && !self.shell.in_takeover();
        match self.mode {
            Mode::Framed => {
                for chunk in split_at_char_boundaries(text, MAX_FRAME - 1) {
                    Frame::Output(chunk.to_owned()).encode(&mut self.outbuf);
                }
                if add_newline {
                    Frame::Output("\n".to_owned()).encode(&mut self.outbuf);
                }
            }
            Mode::Text | Mode::Undecided => {
                self.outbuf.extend_from_slice(text.as_bytes());
                if add_newline {
                    self.outbuf.push(b'\n');
                }
            }
        }
    }

    fn write_error(&mut self, text: &str) {
        match self.mode {
            Mode::Framed => {
                for chunk in split_at_char_boundaries(text, MAX_FRAME - 1) {
                    Frame::Error(chunk.to_owned()).encode(&mut self.outbuf);
                }
            }
            Mode::Text | Mode::Undecided => {
                self.outbuf.extend_from_slice(text.as_bytes());
                self.outbuf.push(b'\n');
            }
        }
    }

    fn write_prompt(&mut self) {
        let prompt = self.shell.prompt(&self.host);
        match self.mode {
            Mode::Framed => Frame::Prompt(prompt.unwrap_or_default()).encode(&mut self.outbuf),
            Mode::Text | Mode::Undecided => {
                if let Some(prompt) = prompt {
                    self.outbuf.extend_from_slice(prompt.as_bytes());
                }
            }
        }
    }

    fn close(&mut self, reason: String) {
        if self.closed {
            return;
        }
        self.closed = true;
        match self.mode {
            Mode::Framed => {
                if !reason.is_empty() {
                    Frame::Error(reason.clone()).encode(&mut self.outbuf);
                }
                Frame::Close(reason).encode(&mut self.outbuf);
            }
            Mode::Text | Mode::Undecided => {
                if !reason.is_empty() {
                    self.outbuf.extend_from_slice(reason.as_bytes());
                    self.outbuf.push(b'\n');
                }
            }
        }
        if let Some(pending) = self.pending.take() {
            self.events.push_back(Event::Abandon(pending.id));
        }
        self.events.push_back(Event::Close);
    }
}

fn too_long(limit: usize) -> String {
    format!("*** Line longer than {limit} bytes (max_line); closing the session.")
}

fn split_at_char_boundaries(text: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(max);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

/// Why a connection is turned away before a session starts. The adapter
/// writes [`Refusal::message`] and closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `max_sessions` sessions are already open.
    TooManySessions {
        /// The configured limit.
        limit: usize,
    },
    /// The peer runs as a user who may not inspect this process.
    NotAllowed {
        /// The peer's effective uid.
        peer_uid: u32,
        /// The host's effective uid.
        host_uid: u32,
    },
}

impl Refusal {
    /// The line to send, in text form (which the `ispy` client shows as is).
    pub fn message(&self) -> String {
        match self {
            Refusal::TooManySessions { limit } => format!(
                "*** ispyd: already serving {limit} sessions (max_sessions = {limit}); \
                 try again when one ends.\n"
            ),
            Refusal::NotAllowed {
                peer_uid,
                host_uid: 0,
            } => {
                format!("*** ispyd: uid {peer_uid} may not inspect this process; only root may.\n")
            }
            Refusal::NotAllowed { peer_uid, host_uid } => format!(
                "*** ispyd: uid {peer_uid} may not inspect this process; only uid {host_uid} \
                 (its owner) and root may.\n"
            ),
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
