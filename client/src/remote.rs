//! A framed-mode connection to one server: frames both ways after the
//! handshake (see PROTOCOL.md).
//!
//! Everything the server sends is untrusted: bad bytes end the connection
//! with a [`SessionError`] naming the problem, never a panic, so the caller
//! reports it once and goes back to the local shell.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use ispyd_core::{Address, Client, ClientError, ClientEvent, Frame, FrameError};

use crate::handshake::{ConnectError, ConnectProblem, HANDSHAKE_TIMEOUT, handshake};
use crate::interrupt;
use ispyd_std::stream::{Stream, is_timeout};

/// The connection of the current session, if any, shared between the session
/// loop and the line editor's completer (which must ask the server).
pub type Shared = Rc<RefCell<Option<Connection>>>;

/// How long a Tab waits for candidates before the line editor gets control
/// back; a late answer is recognised and dropped.
const COMPLETE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a session ended abnormally. A failure to read is sticky: every later
/// call returns the same error. A failure to send is not, so that a `Close`
/// the server sent before closing can still be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// The server closed the socket without a `Close` frame, between frames.
    Closed,
    /// The server closed the socket in the middle of a frame.
    ClosedMidFrame,
    /// Reading or writing the socket failed.
    Io(String),
    /// The server sent a frame the stream cannot go on after.
    Fatal(FrameError),
    /// The user pressed Ctrl-C twice while waiting for the server (once
    /// sends an interrupt; see [`Incoming::InterruptSent`]).
    Interrupted,
    /// The server did not answer before the deadline
    /// ([`Connection::set_deadline`]).
    TimedOut,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Closed | SessionError::ClosedMidFrame => {
                f.write_str("Connection closed by the server.")
            }
            SessionError::Io(err) => write!(f, "Connection to the server failed: {err}."),
            SessionError::Fatal(err) => {
                write!(f, "The server sent a bad frame ({err}); connection closed.")
            }
            SessionError::Interrupted => f.write_str("Interrupted twice; connection closed."),
            SessionError::TimedOut => f.write_str("No answer in time; gave up on the server."),
        }
    }
}

impl std::error::Error for SessionError {}

/// One thing read from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A frame.
    Frame(Frame),
    /// A frame that was skipped (bad text or layout); the stream goes on.
    /// Unknown frame types are skipped silently, as the protocol asks, and
    /// never show up here.
    Skipped(FrameError),
    /// Ctrl-C while waiting: an interrupt went to the server (which stops
    /// the running line or gives up on the call). Another Ctrl-C before the
    /// server says anything closes the connection.
    InterruptSent,
}

/// A framed-mode session with one server: the core's [`Client`] protocol
/// state, driven over a socket.
///
/// Call [`next`](Connection::next) to get what the server sends, in order,
/// and [`send`](Connection::send) to answer each `Prompt` with a line.
/// [`complete`](Connection::complete) may be called between the two (from
/// the line editor); frames read meanwhile are kept for `next`.
#[derive(Debug)]
pub struct Connection {
    stream: Stream,
    client: Client,
    pid: Option<u32>,
    failed: Option<SessionError>,
    /// When to stop waiting for the server, if ever.
    deadline: Option<Instant>,
    /// When an interrupt was sent, while the server has said nothing since.
    interrupted: Option<Instant>,
    /// What each read fills, kept between reads; it starts small (most
    /// replies are) and doubles, up to 256 KiB, while reads fill it.
    chunk: Vec<u8>,
}

impl Connection {
    /// Connects to `address` and performs the handshake.
    pub fn open(address: &Address, timeout: Duration) -> Result<Connection, ConnectError> {
        interrupt::clear();
        let stream = Stream::connect(address, timeout).map_err(|err| ConnectError {
            address: address.to_string(),
            problem: ConnectProblem::Io(err),
        })?;
        Connection::handshake(stream, address, HANDSHAKE_TIMEOUT)
    }

    /// Performs the handshake on a connected `stream` (see
    /// [`handshake`](crate::handshake::handshake)).
    pub fn handshake(
        mut stream: Stream,
        address: &Address,
        timeout: Duration,
    ) -> Result<Connection, ConnectError> {
        let mut client = Client::new();
        let pid = handshake(&mut stream, &mut client, timeout).map_err(|problem| ConnectError {
            address: address.to_string(),
            problem,
        })?;
        // ispy saves the files commands send (`--out`). Sent with the
        // first line, so that a server that has already closed is read
        // (its `Close` says why) before a write can fail.
        client.send(&Frame::WantFiles);
        Ok(Connection {
            stream,
            client,
            pid,
            failed: None,
            deadline: None,
            interrupted: None,
            chunk: Vec::new(),
        })
    }

    /// Gives up waiting for the server at `deadline`: a read that would go
    /// past it fails the session with [`SessionError::TimedOut`].
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
    }

    /// The server's pid, as its text-mode greeting `(ispyd:PID) ` told.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Sends one frame.
    pub fn send(&mut self, frame: &Frame) -> Result<(), SessionError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        self.client.send(frame);
        self.flush()
    }

    /// Writes what the protocol state has queued. Not sticky on failure: a
    /// server that closed may have sent a `Close` with its reason first,
    /// and `next` can still read it.
    fn flush(&mut self) -> Result<(), SessionError> {
        while let Some(bytes) = self.client.poll_transmit() {
            let n = self.stream.write(bytes).map_err(io_error)?;
            self.client.handle_written(n);
        }
        Ok(())
    }

    /// Ends the input to the server (half-close), so that it answers what it
    /// has and closes. Only [`next`](Connection::next) makes sense after.
    pub fn finish_input(&mut self) {
        // A server that already closed makes this fail; `next` reports it.
        let _ = self.stream.shutdown_write();
    }

    /// The next thing the server sends, waiting for it.
    pub fn next(&mut self) -> Result<Incoming, SessionError> {
        loop {
            if let Some(err) = &self.failed {
                return Err(err.clone());
            }
            match self.client.poll_event() {
                Some(ClientEvent::Frame(frame)) => {
                    self.interrupted = None;
                    return Ok(Incoming::Frame(frame));
                }
                Some(ClientEvent::Skipped(err)) => return Ok(Incoming::Skipped(err)),
                Some(ClientEvent::Failed(err)) => return Err(self.fail(session_error(err))),
                // Stray answers (nothing asked): nothing to show.
                Some(ClientEvent::Candidates(_) | ClientEvent::Greeted { .. }) => {}
                None => match self.fill() {
                    Ok(()) => {}
                    Err(FillError::CtrlC) => {
                        // The server has said nothing since the last one.
                        if self.interrupted.is_some() {
                            return Err(self.fail(SessionError::Interrupted));
                        }
                        self.interrupted = Some(Instant::now());
                        self.client.send(&Frame::Interrupt);
                        self.flush()?;
                        return Ok(Incoming::InterruptSent);
                    }
                    Err(FillError::Failed(err)) => return Err(self.fail(err)),
                    // Completion reads handle their own timeout; this is the
                    // deadline.
                    Err(FillError::Timeout) => return Err(self.fail(SessionError::TimedOut)),
                },
            }
        }
    }

    /// Asks the server to complete `text` (the line up to the cursor) and
    /// returns where the replaced word starts and the candidates.
    ///
    /// `None` when the server did not answer in time or the connection
    /// failed (the failure is then reported by the next `next`).
    pub fn complete(&mut self, text: &str) -> Option<(usize, Vec<String>)> {
        if self.failed.is_some() {
            return None;
        }
        self.client.request_completion(text);
        self.flush().ok()?;
        if let Err(err) = self.stream.set_read_timeout(Some(COMPLETE_TIMEOUT)) {
            self.fail(io_error(err));
            return None;
        }
        let answer = loop {
            if let Some(answer) = self.client.poll_candidates() {
                break answer;
            }
            match self.fill() {
                Ok(()) => {}
                Err(FillError::Timeout | FillError::CtrlC) => {
                    self.client.abandon_completion();
                    break None;
                }
                Err(FillError::Failed(err)) => {
                    self.fail(err);
                    break None;
                }
            }
        };
        if let Err(err) = self.stream.set_read_timeout(None) {
            self.fail(io_error(err));
            return None;
        }
        answer
    }

    /// Reads once from the socket into the protocol state.
    fn fill(&mut self) -> Result<(), FillError> {
        if self.chunk.is_empty() {
            self.chunk.resize(8 * 1024, 0);
        }
        loop {
            if interrupt::take() {
                return Err(FillError::CtrlC);
            }
            if let Some(deadline) = self.deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(FillError::Timeout);
                }
                if let Err(err) = self.stream.set_read_timeout(Some(left)) {
                    return Err(FillError::Failed(io_error(err)));
                }
            }
            match self.stream.read(&mut self.chunk) {
                Ok(0) => {
                    self.client.handle_eof();
                    return Ok(());
                }
                Ok(n) => {
                    self.client.handle_input(&self.chunk[..n]);
                    if n == self.chunk.len() && n < 256 * 1024 {
                        self.chunk.resize(n * 2, 0);
                    }
                    return Ok(());
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if is_timeout(&err) => return Err(FillError::Timeout),
                Err(err) => return Err(FillError::Failed(io_error(err))),
            }
        }
    }

    fn fail(&mut self, err: SessionError) -> SessionError {
        self.failed = Some(err.clone());
        err
    }
}

enum FillError {
    Timeout,
    /// The user pressed Ctrl-C.
    CtrlC,
    Failed(SessionError),
}

/// The session error for a failure of the protocol state.
fn session_error(err: ClientError) -> SessionError {
    match err {
        ClientError::Closed => SessionError::Closed,
        ClientError::ClosedMidFrame => SessionError::ClosedMidFrame,
        ClientError::Fatal(err) => SessionError::Fatal(err),
        other => SessionError::Io(other.to_string()),
    }
}

fn io_error(err: io::Error) -> SessionError {
    match err.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => SessionError::Closed,
        _ => SessionError::Io(err.to_string()),
    }
}

/// Protocol tests: a thread plays the server over a socket pair, to check
/// how the client copes with what a real server would never send.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil;
    use ispyd_core::{Decoded, decode};
    use std::os::unix::net::UnixStream;
    use std::thread;

    /// Handshakes with `server`, played on the far end of a socket pair.
    fn connect_to(
        server: impl FnOnce(&mut UnixStream) + Send + 'static,
    ) -> (Result<Connection, ConnectError>, thread::JoinHandle<()>) {
        let (client, handle) = testutil::peer_after_hello(server);
        let address = Address::Unix("/test.sock".into());
        let conn = Connection::handshake(client, &address, Duration::from_millis(500));
        (conn, handle)
    }

    fn frame_bytes(frames: &[Frame]) -> Vec<u8> {
        let mut out = Vec::new();
        for frame in frames {
            frame.encode(&mut out);
        }
        out
    }

    #[test]
    fn protocol_connection_knows_the_greeting_pid_and_the_first_frame() {
        let (conn, handle) = connect_to(|peer| {
            peer.write_all(b"(ispyd:4242) garbage\x01\x02").unwrap();
            peer.write_all(b"\0ISPY/1\n").unwrap();
            peer.write_all(&frame_bytes(&[Frame::Prompt("(ispyd:4242) ".into())]))
                .unwrap();
        });
        let mut conn = conn.unwrap();
        assert_eq!(conn.pid(), Some(4242));
        assert_eq!(
            conn.next().unwrap(),
            Incoming::Frame(Frame::Prompt("(ispyd:4242) ".into()))
        );
        handle.join().unwrap();
    }

    #[test]
    fn protocol_frames_in_the_same_read_as_the_hello_are_kept() {
        let (conn, handle) = connect_to(|peer| {
            let mut bytes = b"(ispyd:1) \0ISPY/1\n".to_vec();
            bytes.extend(frame_bytes(&[
                Frame::Output("a".into()),
                Frame::Prompt("p".into()),
            ]));
            peer.write_all(&bytes).unwrap();
        });
        let mut conn = conn.unwrap();
        assert_eq!(
            conn.next().unwrap(),
            Incoming::Frame(Frame::Output("a".into()))
        );
        assert_eq!(
            conn.next().unwrap(),
            Incoming::Frame(Frame::Prompt("p".into()))
        );
        handle.join().unwrap();
    }

    #[test]
    fn protocol_split_frame_is_reassembled() {
        let (conn, handle) = connect_to(|peer| {
            peer.write_all(b"\0ISPY/1\n").unwrap();
            let bytes = frame_bytes(&[Frame::Output("hello world".into())]);
            for byte in bytes {
                peer.write_all(&[byte]).unwrap();
                thread::sleep(Duration::from_millis(1));
            }
        });
        let mut conn = conn.unwrap();
        assert_eq!(
            conn.next().unwrap(),
            Incoming::Frame(Frame::Output("hello world".into()))
        );
        handle.join().unwrap();
    }

    #[test]
    fn protocol_fatal_length_ends_the_session_with_a_named_problem() {
        let (conn, handle) = connect_to(|peer| {
            peer.write_all(b"\0ISPY/1\n\xff\xff\xff\xff\x81").unwrap();
        });
        let mut conn = conn.unwrap();
        let err = conn.next().unwrap_err();
        assert!(matches!(
            err,
            SessionError::Fatal(FrameError::TooLong { .. })
        ));
        assert!(err.to_string().contains("over the limit"), "{err}");
        assert_eq!(conn.next().unwrap_err(), err, "the failure is sticky");
        handle.join().unwrap();
    }

    #[test]
    fn protocol_close_in_the_middle_of_a_frame_is_reported_as_closed() {
        let (conn, handle) = connect_to(|peer| {
            peer.write_all(b"\0ISPY/1\n\0\0\0\x10\x81abc").unwrap();
        });
        let mut conn = conn.unwrap();
        handle.join().unwrap();
        let err = conn.next().unwrap_err();
        assert_eq!(err, SessionError::ClosedMidFrame);
        assert_eq!(err.to_string(), "Connection closed by the server.");
    }

    #[test]
    fn protocol_unknown_frame_type_is_ignored_and_bad_text_skipped() {
        let (conn, handle) = connect_to(|peer| {
            peer.write_all(b"\0ISPY/1\n\0\0\0\x02\x99x\0\0\0\x02\x81\xff")
                .unwrap();
            peer.write_all(&frame_bytes(&[Frame::Prompt(String::new())]))
                .unwrap();
        });
        let mut conn = conn.unwrap();
        assert_eq!(
            conn.next().unwrap(),
            Incoming::Skipped(FrameError::InvalidUtf8(0x81))
        );
        assert_eq!(
            conn.next().unwrap(),
            Incoming::Frame(Frame::Prompt(String::new()))
        );
        handle.join().unwrap();
    }

    #[test]
    fn protocol_completion_keeps_frames_that_arrive_first() {
        let (conn, handle) = connect_to(|peer| {
            peer.write_all(b"\0ISPY/1\n").unwrap();
            let mut buf = [0u8; 64];
            let n = peer.read(&mut buf).unwrap();
            assert_eq!(decode(&buf[..n], 1024), Decoded::Frame(Frame::WantFiles, 5));
            assert_eq!(
                decode(&buf[5..n], 1024),
                Decoded::Frame(Frame::Complete("sh".into()), n - 5)
            );
            peer.write_all(&frame_bytes(&[
                Frame::Output("late".into()),
                Frame::Candidates {
                    start: 0,
                    items: vec!["shell".into()],
                },
            ]))
            .unwrap();
        });
        let mut conn = conn.unwrap();
        assert_eq!(conn.complete("sh"), Some((0, vec!["shell".into()])));
        assert_eq!(
            conn.next().unwrap(),
            Incoming::Frame(Frame::Output("late".into()))
        );
        handle.join().unwrap();
    }

    #[test]
    fn protocol_candidates_start_past_the_text_are_refused() {
        let (conn, handle) = connect_to(|peer| {
            peer.write_all(b"\0ISPY/1\n").unwrap();
            let mut buf = [0u8; 64];
            let _ = peer.read(&mut buf).unwrap();
            peer.write_all(&frame_bytes(&[Frame::Candidates {
                start: 99,
                items: vec!["x".into()],
            }]))
            .unwrap();
        });
        let mut conn = conn.unwrap();
        assert_eq!(conn.complete("sh"), None);
        handle.join().unwrap();
    }
}
