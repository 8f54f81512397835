//! The client's side of framed mode, sans-IO: what `ispy` speaks, fed
//! bytes by whatever drives it.
//!
//! Theory of operation: a [`Client`] starts by queueing the client hello.
//! Until the server's hello arrives it skips the text-mode greeting (the
//! root prompt, from which it learns the server's pid), refusing to wait
//! through more than [`GREETING_LIMIT`] bytes of something else. Then it
//! decodes server frames one at a time ([`Client::poll_event`]). A
//! completion request is answered by the next `Candidates` frame; if the
//! driver gave up waiting for it ([`Client::abandon_completion`]), that
//! answer is recognised when it comes late and dropped. Everything the
//! server sends is untrusted: garbage ends the session with a typed
//! [`ClientError`], once, never a panic.

use std::collections::VecDeque;
use std::fmt;

use crate::frame::{
    CLIENT_HELLO, Decoded, Frame, FrameError, MAX_FRAME, PROTOCOL_VERSION, SERVER_HELLO, decode,
    find_server_hello,
};
use crate::received::Received;

/// Text tolerated before the server's hello: a server sends only its
/// prompt, so more means something else is listening.
pub const GREETING_LIMIT: usize = 64 * 1024;

/// The marker that opens a hello, before the version digit.
const HELLO_MARKER: &[u8] = b"\0ISPY/";

/// Why a client session ended abnormally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The peer closed before answering the handshake; it said this (a
    /// server at its session limit says why in text).
    ClosedEarly(String),
    /// The peer answered with something that is not a handshake.
    NotIspyd,
    /// The server chose a protocol version this client does not speak.
    Version(char),
    /// The server closed the stream without a `Close` frame, between
    /// frames.
    Closed,
    /// The server closed the stream in the middle of a frame.
    ClosedMidFrame,
    /// The server sent a frame after which the stream cannot go on.
    Fatal(FrameError),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::ClosedEarly(said) if said.is_empty() => {
                f.write_str("closed the connection before the handshake.")
            }
            ClientError::ClosedEarly(said) => {
                write!(f, "closed the connection before the handshake: {said}")
            }
            ClientError::NotIspyd => {
                f.write_str("does not speak the ispyd protocol (no handshake answer).")
            }
            ClientError::Version(v) => write!(
                f,
                "speaks ispyd protocol version {v}; this ispy speaks version {PROTOCOL_VERSION}."
            ),
            ClientError::Closed | ClientError::ClosedMidFrame => {
                f.write_str("Connection closed by the server.")
            }
            ClientError::Fatal(err) => {
                write!(f, "The server sent a bad frame ({err}); connection closed.")
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// What [`Client::poll_event`] has for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The handshake is done; the pid is the one in the server's greeting
    /// `(ispyd:PID) `, when it had one.
    Greeted {
        /// The server's process id.
        pid: Option<u32>,
    },
    /// A frame from the server (not the answer to a completion request).
    Frame(Frame),
    /// A frame that was skipped (bad text or layout); the stream goes on.
    /// Unknown frame types are skipped silently, as the protocol asks.
    Skipped(FrameError),
    /// The answer to [`Client::request_completion`]: where the replaced
    /// word starts in the text, and the candidates. `None` when the server's
    /// answer points outside the text (it would make an editor cut the line
    /// at an invalid place).
    Candidates(Option<(usize, Vec<String>)>),
    /// The session cannot go on; nothing follows.
    Failed(ClientError),
}

/// The client side of one connection (see the module documentation).
#[derive(Debug)]
pub struct Client {
    out: Vec<u8>,
    input: Received,
    greeted: bool,
    eof: bool,
    failed: bool,
    /// The text of the completion request awaiting its answer.
    completing: Option<String>,
    /// Completion answers still to come for requests given up on.
    late_candidates: usize,
    /// Events found while looking for something else.
    queued: VecDeque<ClientEvent>,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    /// A client whose hello is ready to be sent.
    pub fn new() -> Client {
        Client {
            out: CLIENT_HELLO.to_vec(),
            input: Received::default(),
            greeted: false,
            eof: false,
            failed: false,
            completing: None,
            late_candidates: 0,
            queued: VecDeque::new(),
        }
    }

    /// True once the server's hello has been read.
    pub fn is_greeted(&self) -> bool {
        self.greeted
    }

    /// True while a completion request waits for its answer.
    pub fn is_completing(&self) -> bool {
        self.completing.is_some()
    }

    /// Takes bytes from the server, in any split.
    pub fn handle_input(&mut self, data: &[u8]) {
        if !self.failed {
            self.input.extend_from_slice(data);
        }
    }

    /// The server will send nothing more.
    pub fn handle_eof(&mut self) {
        self.eof = true;
    }

    /// The bytes waiting to be sent, if any; report what the socket took
    /// with [`Client::handle_written`].
    pub fn poll_transmit(&self) -> Option<&[u8]> {
        Some(self.out.as_slice()).filter(|bytes| !bytes.is_empty())
    }

    /// The socket took the first `n` bytes of [`Client::poll_transmit`].
    pub fn handle_written(&mut self, n: usize) {
        self.out.drain(..n.min(self.out.len()));
    }

    /// Queues a frame for the server (a line, end of input).
    pub fn send(&mut self, frame: &Frame) {
        frame.encode(&mut self.out);
    }

    /// Asks the server to complete `text` (the line up to the cursor); the
    /// answer comes as [`ClientEvent::Candidates`].
    pub fn request_completion(&mut self, text: &str) {
        if self.completing.replace(text.to_owned()).is_some() {
            // A request superseded before its answer: that answer is late.
            self.late_candidates += 1;
        }
        self.send(&Frame::Complete(text.to_owned()));
    }

    /// The driver stopped waiting for the pending completion: its answer,
    /// when it comes, is dropped.
    pub fn abandon_completion(&mut self) {
        if self.completing.take().is_some() {
            self.late_candidates += 1;
        }
    }

    /// The next thing the server said, if a whole one has arrived.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        if let Some(event) = self.queued.pop_front() {
            return Some(event);
        }
        if self.failed {
            return None;
        }
        if !self.greeted {
            return self.poll_hello();
        }
        loop {
            match decode(&self.input, MAX_FRAME + 1) {
                Decoded::Incomplete if self.eof => {
                    let err = if self.input.is_empty() {
                        ClientError::Closed
                    } else {
                        ClientError::ClosedMidFrame
                    };
                    return Some(self.fail(err));
                }
                Decoded::Incomplete => return None,
                Decoded::Frame(frame, used) => {
                    self.input.consume(used);
                    if let Frame::Close(_) = frame {
                        // Nothing after a Close counts, and nothing will
                        // answer a completion.
                        self.failed = true;
                        self.input.clear();
                        self.completing = None;
                    }
                    return Some(match frame {
                        Frame::Candidates { .. } if self.late_candidates > 0 => {
                            self.late_candidates -= 1;
                            continue;
                        }
                        Frame::Candidates { start, items } => match self.completing.take() {
                            Some(text) => ClientEvent::Candidates(
                                usize::try_from(start)
                                    .ok()
                                    .filter(|&at| at <= text.len() && text.is_char_boundary(at))
                                    .map(|at| (at, items)),
                            ),
                            None => ClientEvent::Frame(Frame::Candidates { start, items }),
                        },
                        other => ClientEvent::Frame(other),
                    });
                }
                Decoded::Invalid(FrameError::UnknownType(_), Some(used)) => {
                    self.input.consume(used);
                }
                Decoded::Invalid(err, Some(used)) => {
                    self.input.consume(used);
                    return Some(ClientEvent::Skipped(err));
                }
                Decoded::Invalid(err, None) => return Some(self.fail(ClientError::Fatal(err))),
            }
        }
    }

    /// Takes an event out of order, keeping the others for
    /// [`Client::poll_event`]: the driver waiting for a completion's answer
    /// uses this, so that frames arriving meanwhile are not lost.
    pub fn poll_candidates(&mut self) -> Option<Option<(usize, Vec<String>)>> {
        let mut found = None;
        let mut rest = VecDeque::new();
        while let Some(event) = self.poll_event() {
            match event {
                ClientEvent::Candidates(answer) if found.is_none() => found = Some(answer),
                ClientEvent::Failed(err) => {
                    rest.push_back(ClientEvent::Failed(err));
                    break;
                }
                other => rest.push_back(other),
            }
            if found.is_some() {
                break;
            }
        }
        rest.extend(self.queued.drain(..));
        self.queued = rest;
        found
    }

    fn poll_hello(&mut self) -> Option<ClientEvent> {
        let failure = match scan_hello(&self.input) {
            Hello::Found(end) => {
                let pid = greeting_pid(&self.input[..end - SERVER_HELLO.len()]);
                self.input.consume(end);
                self.greeted = true;
                return Some(ClientEvent::Greeted { pid });
            }
            Hello::Version(v) => ClientError::Version(v),
            Hello::Malformed => ClientError::NotIspyd,
            Hello::Pending if self.input.len() > GREETING_LIMIT => ClientError::NotIspyd,
            Hello::Pending if self.eof => ClientError::ClosedEarly(printable(&self.input)),
            Hello::Pending => return None,
        };
        Some(self.fail(failure))
    }

    fn fail(&mut self, err: ClientError) -> ClientEvent {
        self.failed = true;
        self.input.clear();
        self.completing = None;
        ClientEvent::Failed(err)
    }
}

/// Where the server's hello stands in the bytes read so far.
#[derive(Debug, PartialEq, Eq)]
enum Hello {
    /// Not (completely) there yet.
    Pending,
    /// Our version; the frames start at this offset.
    Found(usize),
    /// A well-formed answer with another version digit.
    Version(char),
    /// The marker followed by something that is not `DIGIT \n`.
    Malformed,
}

fn scan_hello(buf: &[u8]) -> Hello {
    if let Some(end) = find_server_hello(buf) {
        return Hello::Found(end);
    }
    let Some(at) = buf
        .windows(HELLO_MARKER.len())
        .position(|w| w == HELLO_MARKER)
    else {
        return Hello::Pending;
    };
    match &buf[at + HELLO_MARKER.len()..] {
        [] | [_] => Hello::Pending,
        [digit, b'\n', ..] if digit.is_ascii_digit() => Hello::Version(char::from(*digit)),
        _ => Hello::Malformed,
    }
}

/// The pid in the last `(ispyd:PID) ` prompt of the text-mode greeting.
fn greeting_pid(greeting: &[u8]) -> Option<u32> {
    let text = String::from_utf8_lossy(greeting);
    let (_, after) = text.rsplit_once("(ispyd:")?;
    let (digits, _) = after.split_once(')')?;
    digits.parse().ok()
}

/// What a peer said before closing, made safe to print on one line.
fn printable(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect();
    let line = words.join(" ");
    if line.chars().count() > 200 {
        let cut: String = line.chars().take(200).collect();
        format!("{cut}...")
    } else {
        line
    }
}
