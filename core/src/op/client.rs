//! The client's side of the protocol under test: what a server (or
//! whatever listens where `ispy` connects) sends, in any split, played
//! against a [`Client`] whose rules are checked after every step.

use arbitrary::Arbitrary;

use crate::client::{Client, ClientEvent};
use crate::frame::{CLIENT_HELLO, Frame, SERVER_HELLO};

use super::PID;

/// One thing that happens to the client's side of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub enum ClientOp {
    /// These bytes arrive from the server.
    Input(Vec<u8>),
    /// The server's greeting arrives whole: its root prompt, then its
    /// hello (so that a fuzzer gets past the handshake at once).
    Greeting,
    /// This frame arrives from the server, encoded.
    Frame(Frame),
    /// The server sends nothing more.
    Eof,
    /// The person presses Tab after this text (lossily UTF-8).
    Complete(Vec<u8>),
    /// The driver stops waiting for the pending completion's answer.
    Abandon,
    /// The driver waits for the pending completion's answer, keeping what
    /// else arrives for later.
    AwaitCandidates,
    /// The person sends this line (lossily UTF-8).
    Line(Vec<u8>),
    /// The socket takes this many of the bytes waiting to be sent.
    Written(u16),
}

/// What the driver knows the client must be in.
struct Expected {
    /// Bytes queued for the server and not yet taken by the socket.
    unsent: usize,
    /// The text of the completion request the next answer belongs to.
    completing: Option<String>,
    greeted: bool,
    /// A `Failed` or `Close` was handed out: nothing may follow.
    ended: bool,
    /// Bytes given to the client so far, which bounds how many events
    /// it may hand out.
    fed: usize,
    events: usize,
}

/// Turns fuzz input into client operations (at most [`MAX_OPS`](super::MAX_OPS)).
pub fn client_ops_from_bytes(data: &[u8]) -> Vec<ClientOp> {
    super::arbitrary_ops(data)
}

/// The fuzz entry point for the client: [`client_ops_from_bytes`], then
/// [`play_client`].
pub fn client_bytes(data: &[u8]) {
    play_client(&client_ops_from_bytes(data));
}

/// Plays `ops` against a new [`Client`], polling every event after each
/// one, then ends the input and polls again.
///
/// # Panics
///
/// When a rule breaks: an event after `Failed` or `Close`, a frame before
/// the handshake or a second `Greeted`, a completion answer with no request
/// pending or pointing outside its text, `is_completing` or the queued
/// bytes disagreeing with what was asked, more events than bytes fed, or
/// an end of input that does not end the session with `Failed` or `Close`.
pub fn play_client(ops: &[ClientOp]) {
    let mut client = Client::new();
    let mut expected = Expected {
        unsent: CLIENT_HELLO.len(),
        completing: None,
        greeted: false,
        ended: false,
        fed: 0,
        events: 0,
    };
    for op in ops {
        apply(&mut client, &mut expected, op);
        drain(&mut client, &mut expected, op);
    }
    client.handle_eof();
    drain(&mut client, &mut expected, &ClientOp::Eof);
    assert!(
        expected.ended,
        "end of input left the session open (neither Failed nor Close)"
    );
}

fn apply(client: &mut Client, expected: &mut Expected, op: &ClientOp) {
    match op {
        ClientOp::Input(data) => feed(client, expected, data),
        ClientOp::Greeting => {
            let greeting = [format!("(ispyd:{PID}) ").as_bytes(), SERVER_HELLO].concat();
            feed(client, expected, &greeting);
        }
        ClientOp::Frame(frame) => {
            let mut data = Vec::new();
            frame.encode(&mut data);
            feed(client, expected, &data);
        }
        ClientOp::Eof => client.handle_eof(),
        ClientOp::Complete(text) => {
            let text = String::from_utf8_lossy(text).into_owned();
            client.request_completion(&text);
            expected.unsent += encoded_len(&Frame::Complete(text.clone()));
            expected.completing = Some(text);
        }
        ClientOp::Abandon => {
            client.abandon_completion();
            expected.completing = None;
        }
        ClientOp::AwaitCandidates => {
            if let Some(answer) = client.poll_candidates() {
                check_candidates(expected, answer.as_ref(), op);
            }
        }
        ClientOp::Line(text) => {
            let frame = Frame::Line(String::from_utf8_lossy(text).into_owned());
            client.send(&frame);
            expected.unsent += encoded_len(&frame);
        }
        ClientOp::Written(n) => {
            let n = usize::from(*n).min(expected.unsent);
            client.handle_written(n);
            expected.unsent -= n;
        }
    }
}

fn feed(client: &mut Client, expected: &mut Expected, data: &[u8]) {
    client.handle_input(data);
    expected.fed += data.len();
}

fn encoded_len(frame: &Frame) -> usize {
    let mut data = Vec::new();
    frame.encode(&mut data);
    data.len()
}

fn drain(client: &mut Client, expected: &mut Expected, op: &ClientOp) {
    while let Some(event) = client.poll_event() {
        assert!(!expected.ended, "{event:?} came after the session ended");
        expected.events += 1;
        // Every event but the end consumes at least one byte.
        assert!(
            expected.events <= expected.fed + 1,
            "{} events from {} bytes, after {op:?}",
            expected.events,
            expected.fed
        );
        match &event {
            ClientEvent::Greeted { .. } => {
                assert!(!expected.greeted, "a second Greeted, after {op:?}");
                expected.greeted = true;
            }
            ClientEvent::Failed(_) | ClientEvent::Frame(Frame::Close(_)) => {
                // Nothing can answer a completion any more.
                expected.ended = true;
                expected.completing = None;
            }
            ClientEvent::Frame(_) | ClientEvent::Skipped(_) => {
                assert!(expected.greeted, "{event:?} before the handshake");
            }
            ClientEvent::Candidates(answer) => {
                assert!(expected.greeted, "{event:?} before the handshake");
                check_candidates(expected, answer.as_ref(), op);
            }
        }
    }
    if expected.ended {
        assert_eq!(client.poll_candidates(), None, "an answer after the end");
    }
    assert_eq!(
        client.is_completing(),
        expected.completing.is_some(),
        "is_completing() is wrong after {op:?}"
    );
    assert_eq!(
        client.poll_transmit().map_or(0, <[u8]>::len),
        expected.unsent,
        "the bytes waiting to be sent are wrong after {op:?}"
    );
}

fn check_candidates(expected: &mut Expected, answer: Option<&(usize, Vec<String>)>, op: &ClientOp) {
    let text = expected
        .completing
        .take()
        .unwrap_or_else(|| panic!("a completion answer with no request pending, after {op:?}"));
    if let Some((start, _)) = answer {
        assert!(
            *start <= text.len() && text.is_char_boundary(*start),
            "a completion of {text:?} starting at {start}"
        );
    }
}
