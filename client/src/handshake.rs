//! The handshake that switches a new connection to framed mode: send the
//! client hello, skip the text-mode greeting, find the server's answer.

use std::fmt;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use ispyd_core::{CLIENT_HELLO, PROTOCOL_VERSION, SERVER_HELLO, find_server_hello};

use crate::interrupt;
use ispyd_std::stream::{Stream, is_timeout};

/// How long the server has to answer the handshake. Its listener runs on its
/// own thread, so even a hung process answers quickly; a silent peer is
/// probably not an ispyd server.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Text tolerated before the handshake answer: the server sends only its
/// prompt, so more means something else is listening.
const GREETING_LIMIT: usize = 64 * 1024;

/// The marker that opens a handshake answer, before the version digit.
const HELLO_MARKER: &[u8] = b"\0ISPY/";

/// Why a connection could not be set up.
#[derive(Debug)]
pub struct ConnectError {
    /// The address tried, as shown to the user.
    pub address: String,
    /// What went wrong.
    pub problem: ConnectProblem,
}

/// What went wrong while connecting; see [`ConnectError`].
#[derive(Debug)]
pub enum ConnectProblem {
    /// The socket could not be connected or written.
    Io(io::Error),
    /// The peer closed before answering the handshake; it said this (a
    /// server at its session limit says so in text).
    ClosedEarly(String),
    /// No handshake answer within [`HANDSHAKE_TIMEOUT`].
    Timeout,
    /// The peer answered with something that is not a handshake.
    NotIspyd,
    /// The server chose a protocol version this client does not speak.
    Version(char),
    /// The user pressed Ctrl-C during the handshake.
    Interrupted,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let address = &self.address;
        match &self.problem {
            ConnectProblem::Io(err) => write!(f, "Cannot connect to {address}: {err}."),
            ConnectProblem::ClosedEarly(said) if said.is_empty() => {
                write!(f, "{address} closed the connection before the handshake.")
            }
            ConnectProblem::ClosedEarly(said) => {
                write!(
                    f,
                    "{address} closed the connection before the handshake: {said}"
                )
            }
            ConnectProblem::Timeout => write!(
                f,
                "{address} did not answer the handshake within {} s; is it an ispyd server?",
                HANDSHAKE_TIMEOUT.as_secs()
            ),
            ConnectProblem::NotIspyd => write!(
                f,
                "{address} does not speak the ispyd protocol (no handshake answer)."
            ),
            ConnectProblem::Interrupted => write!(f, "Connecting to {address} interrupted."),
            ConnectProblem::Version(v) => write!(
                f,
                "{address} speaks ispyd protocol version {v}; this ispy speaks version \
                 {PROTOCOL_VERSION}."
            ),
        }
    }
}

impl std::error::Error for ConnectError {}

/// What a successful handshake learnt.
#[derive(Debug)]
pub struct Greeted {
    /// The pid in the server's text-mode prompt, `(ispyd:PID) `.
    pub pid: Option<u32>,
    /// Bytes read after the answer: the start of the first frames.
    pub rest: Vec<u8>,
}

/// Performs the handshake on a connected `stream`, waiting at most
/// `timeout` for the answer. Leaves the stream with no read timeout.
pub fn handshake(stream: &mut Stream, timeout: Duration) -> Result<Greeted, ConnectProblem> {
    stream.write_all(CLIENT_HELLO).map_err(ConnectProblem::Io)?;
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        match scan_hello(&buf) {
            Hello::Found(end) => break end,
            Hello::Version(v) => return Err(ConnectProblem::Version(v)),
            Hello::Malformed => return Err(ConnectProblem::NotIspyd),
            Hello::Pending if buf.len() > GREETING_LIMIT => return Err(ConnectProblem::NotIspyd),
            Hello::Pending => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ConnectProblem::Timeout);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(ConnectProblem::Io)?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err(ConnectProblem::ClosedEarly(printable(&buf))),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {
                if interrupt::take() {
                    return Err(ConnectProblem::Interrupted);
                }
            }
            Err(err) if is_timeout(&err) => return Err(ConnectProblem::Timeout),
            Err(err) => return Err(ConnectProblem::Io(err)),
        }
    };
    stream.set_read_timeout(None).map_err(ConnectProblem::Io)?;
    Ok(Greeted {
        pid: greeting_pid(&buf[..end - SERVER_HELLO.len()]),
        rest: buf.split_off(end),
    })
}

/// Where the handshake answer stands in the bytes read so far.
#[derive(Debug, PartialEq, Eq)]
enum Hello {
    /// Not (completely) there yet.
    Pending,
    /// Version 1; the frames start at this offset.
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

/// Protocol tests: a thread plays the server, to check how the client copes
/// with peers that are not well-behaved ispyd servers.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil;
    use std::os::unix::net::UnixStream;

    fn greet(
        timeout: Duration,
        server: impl FnOnce(&mut UnixStream) + Send + 'static,
    ) -> Result<Greeted, ConnectProblem> {
        let (mut client, handle) = testutil::peer_after_hello(server);
        let result = handshake(&mut client, timeout);
        handle.join().unwrap();
        result
    }

    #[test]
    fn protocol_greeting_before_hello_is_skipped_and_pid_kept() {
        let greeted = greet(Duration::from_secs(5), |peer| {
            peer.write_all(b"(ispyd:4242) garbage\x01\x02").unwrap();
            peer.write_all(b"\0ISPY/1\nrest").unwrap();
        })
        .unwrap();
        assert_eq!(greeted.pid, Some(4242));
        assert_eq!(greeted.rest, b"rest");
    }

    #[test]
    fn protocol_other_version_is_refused_with_both_versions_named() {
        let problem = greet(Duration::from_secs(5), |peer| {
            peer.write_all(b"(ispyd:1) \0ISPY/7\n").unwrap();
        })
        .unwrap_err();
        assert!(matches!(problem, ConnectProblem::Version('7')));
        let err = ConnectError {
            address: "/test.sock".into(),
            problem,
        };
        assert_eq!(
            err.to_string(),
            "/test.sock speaks ispyd protocol version 7; this ispy speaks version 1."
        );
    }

    #[test]
    fn protocol_malformed_answer_is_not_ispyd() {
        let problem = greet(Duration::from_secs(5), |peer| {
            peer.write_all(b"\0ISPY/x\n").unwrap();
        })
        .unwrap_err();
        assert!(matches!(problem, ConnectProblem::NotIspyd), "{problem:?}");
    }

    #[test]
    fn protocol_close_before_hello_shows_what_the_peer_said() {
        let problem = greet(Duration::from_secs(5), |peer| {
            peer.write_all(b"*** Too many sessions\r\n").unwrap();
        })
        .unwrap_err();
        let err = ConnectError {
            address: "/test.sock".into(),
            problem,
        };
        assert_eq!(
            err.to_string(),
            "/test.sock closed the connection before the handshake: *** Too many sessions"
        );
    }

    #[test]
    fn protocol_silent_peer_times_out() {
        let (client, peer) = UnixStream::pair().unwrap();
        let problem = handshake(&mut Stream::Unix(client), Duration::from_millis(50)).unwrap_err();
        assert!(matches!(problem, ConnectProblem::Timeout), "{problem:?}");
        drop(peer);
    }

    #[test]
    fn protocol_endless_text_without_hello_is_not_ispyd() {
        let problem = greet(Duration::from_secs(5), |peer| {
            let junk = vec![b'x'; GREETING_LIMIT + 4096];
            // The client stops reading and closes; the rest may not fit.
            let _ = peer.write_all(&junk);
        })
        .unwrap_err();
        assert!(matches!(problem, ConnectProblem::NotIspyd), "{problem:?}");
    }

    #[test]
    fn printable_flattens_control_characters() {
        assert_eq!(printable(b"a\r\n\x1b[31mb\0 c"), "a [31mb c");
    }
}
