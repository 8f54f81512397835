//! The handshake that switches a new connection to framed mode, driven over
//! a socket: the protocol (send the client hello, skip the text-mode
//! greeting, find the server's answer) is the core's [`Client`].

use std::fmt;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use ispyd_core::{Client, ClientError, ClientEvent, PROTOCOL_VERSION};

use crate::interrupt;
use ispyd_std::stream::{Stream, is_timeout};

/// How long the server has to answer the handshake. Its listener runs on its
/// own thread, so even a hung process answers quickly; a silent peer is
/// probably not an ispyd server.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

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

impl ConnectProblem {
    /// The problem a failed handshake of the protocol state reports.
    fn from_protocol(err: ClientError) -> ConnectProblem {
        match err {
            ClientError::ClosedEarly(said) => ConnectProblem::ClosedEarly(said),
            ClientError::Version(v) => ConnectProblem::Version(v),
            ClientError::NotIspyd
            | ClientError::Closed
            | ClientError::ClosedMidFrame
            | ClientError::Fatal(_) => ConnectProblem::NotIspyd,
        }
    }
}

/// Performs the handshake of `client` (the core's protocol state, fresh)
/// on a connected `stream`, waiting at most `timeout` for the answer.
/// Returns the server's pid from its greeting; frames that came with the
/// answer stay in `client`. Leaves the stream with no read timeout.
pub fn handshake(
    stream: &mut Stream,
    client: &mut Client,
    timeout: Duration,
) -> Result<Option<u32>, ConnectProblem> {
    while let Some(bytes) = client.poll_transmit() {
        let n = stream.write(bytes).map_err(ConnectProblem::Io)?;
        client.handle_written(n);
    }
    let deadline = Instant::now() + timeout;
    let mut chunk = [0u8; 4096];
    loop {
        match client.poll_event() {
            Some(ClientEvent::Greeted { pid }) => {
                stream.set_read_timeout(None).map_err(ConnectProblem::Io)?;
                return Ok(pid);
            }
            Some(ClientEvent::Failed(err)) => return Err(ConnectProblem::from_protocol(err)),
            Some(_) => continue,
            None => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ConnectProblem::Timeout);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(ConnectProblem::Io)?;
        match stream.read(&mut chunk) {
            Ok(0) => client.handle_eof(),
            Ok(n) => client.handle_input(&chunk[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {
                if interrupt::take() {
                    return Err(ConnectProblem::Interrupted);
                }
            }
            Err(err) if is_timeout(&err) => return Err(ConnectProblem::Timeout),
            Err(err) => return Err(ConnectProblem::Io(err)),
        }
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
    ) -> Result<(Option<u32>, Client), ConnectProblem> {
        let (mut stream, handle) = testutil::peer_after_hello(server);
        let mut client = Client::new();
        let result = handshake(&mut stream, &mut client, timeout);
        handle.join().unwrap();
        result.map(|pid| (pid, client))
    }

    #[test]
    fn protocol_greeting_before_hello_is_skipped_and_pid_kept() {
        let (pid, mut client) = greet(Duration::from_secs(5), |peer| {
            peer.write_all(b"(ispyd:4242) garbage\x01\x02").unwrap();
            let mut rest = b"\0ISPY/1\n".to_vec();
            ispyd_core::Frame::Prompt("p".into()).encode(&mut rest);
            peer.write_all(&rest).unwrap();
        })
        .unwrap();
        assert_eq!(pid, Some(4242));
        assert_eq!(
            client.poll_event(),
            Some(ClientEvent::Frame(ispyd_core::Frame::Prompt("p".into())))
        );
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
        let problem = handshake(
            &mut Stream::Unix(client),
            &mut Client::new(),
            Duration::from_millis(50),
        )
        .unwrap_err();
        assert!(matches!(problem, ConnectProblem::Timeout), "{problem:?}");
        drop(peer);
    }

    #[test]
    fn protocol_endless_text_without_hello_is_not_ispyd() {
        let problem = greet(Duration::from_secs(5), |peer| {
            let junk = vec![b'x'; ispyd_core::GREETING_LIMIT + 4096];
            // The client stops reading and closes; the rest may not fit.
            let _ = peer.write_all(&junk);
        })
        .unwrap_err();
        assert!(matches!(problem, ConnectProblem::NotIspyd), "{problem:?}");
    }
}
