//! One behaviour of [`Session`] per test, driven in memory with a fake
//! clock by [`Peer`], a minimal adapter.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::config::Limits;
use crate::frame::{CLIENT_HELLO, Decoded, Frame, MAX_FRAME, SERVER_HELLO};
use crate::op::{SESSION_ID, big_output, fixture_host};

const ROOT: &str = "(ispyd:4242) ";
const PROCESS: &str = "(process:4242) ";
const ECHO: &str = "(echo:4242) ";

/// The fake clock's origin; every instant of a test is this plus a
/// simulated duration.
#[allow(
    clippy::disallowed_methods,
    reason = "the fake clock needs one origin; tests only ever add durations to it"
)]
fn origin() -> Instant {
    Instant::now()
}

/// A peer and an adapter in one: sends bytes, reads everything the session
/// transmits, collects its events, and moves the fake clock.
struct Peer {
    session: Session,
    now: Instant,
    received: Vec<u8>,
    events: Vec<Event>,
}

impl Peer {
    fn new() -> Peer {
        Peer::with_limits(Limits::default())
    }

    fn with_limits(limits: Limits) -> Peer {
        Peer::with_host(fixture_host(limits), SESSION_ID)
    }

    /// A peer of session `id` of `host`, greeting unread.
    fn with_host(host: Host, id: u64) -> Peer {
        let now = origin();
        let mut peer = Peer {
            session: Session::new(Arc::new(host), id, now),
            now,
            received: Vec::new(),
            events: Vec::new(),
        };
        peer.drain();
        peer
    }

    /// A peer that has read its greeting.
    fn greeted() -> Peer {
        let mut peer = Peer::new();
        peer.text();
        peer
    }

    /// A peer in framed mode that has read the handshake and first prompt.
    fn framed() -> Peer {
        Peer::framed_with_limits(Limits::default())
    }

    fn framed_with_limits(limits: Limits) -> Peer {
        let mut peer = Peer::with_limits(limits);
        peer.send(CLIENT_HELLO);
        let bytes = std::mem::take(&mut peer.received);
        let hello_at = crate::frame::find_server_hello(&bytes).expect("server hello");
        peer.received = bytes[hello_at..].to_vec();
        assert_eq!(peer.frames(), [Frame::Prompt(ROOT.into())]);
        peer
    }

    /// Polls until the session says `Timeout`, firing a timer that is
    /// already due as an adapter would, like `drive_bounded` in
    /// quinn-proto's tests: a session that never stops fails the test.
    fn drain(&mut self) {
        for _ in 0..100_000 {
            while let Some(event) = self.session.poll_event(self.now) {
                self.events.push(event);
            }
            if let Some(bytes) = self.session.poll_transmit() {
                let n = bytes.len();
                self.received.extend_from_slice(bytes);
                self.session.handle_written(n, self.now);
                continue;
            }
            match self.session.poll_timeout() {
                Some(at) if at <= self.now => self.session.handle_timeout(self.now),
                _ => return,
            }
        }
        panic!("the session never settled");
    }

    fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.session.handle_input(bytes.as_ref(), self.now);
        self.drain();
    }

    /// Enters plugin `name`'s shell (framed), dropping the reply.
    fn enter(&mut self, name: &str) {
        self.send_frame(Frame::Line(format!("shell {name}")));
        self.frames();
    }

    /// In the echo shell, starts `slow`, which answers only when told.
    fn start_slow(&mut self) -> Call {
        self.enter("echo");
        self.send_frame(Frame::Line("slow".into()));
        self.call()
    }

    /// In the echo shell, starts a takeover that printed `output` and
    /// shows `prompt`; its frames are left unread.
    fn start_takeover(&mut self, output: &str, prompt: &str) {
        self.enter("echo");
        self.send_frame(Frame::Line("takeover".into()));
        let call = self.call();
        self.complete(
            call.id,
            Completion::Interactive {
                output: output.into(),
                prompt: prompt.into(),
            },
        );
    }

    /// The one completion request emitted since the last look.
    fn completing(&mut self) -> Completing {
        match self.events().as_slice() {
            [Event::Complete(completing)] => completing.clone(),
            other => panic!("expected one completion, got {other:?}"),
        }
    }

    fn send_frame(&mut self, frame: Frame) {
        let mut bytes = Vec::new();
        frame.encode(&mut bytes);
        self.send(bytes);
    }

    fn eof(&mut self) {
        self.session.handle_eof(self.now);
        self.drain();
    }

    /// Lets `duration` pass, firing the session's timer if it is due.
    fn wait(&mut self, duration: Duration) {
        self.now += duration;
        if self.session.poll_timeout().is_some_and(|at| self.now >= at) {
            self.session.handle_timeout(self.now);
        }
        self.drain();
    }

    fn complete(&mut self, id: CallId, completion: Completion) {
        let _ = self.session.handle_result(id, completion, self.now);
        self.drain();
    }

    /// Everything received since the last look, as text.
    fn text(&mut self) -> String {
        String::from_utf8(std::mem::take(&mut self.received)).expect("UTF-8 output")
    }

    /// Everything received since the last look, as whole frames.
    fn frames(&mut self) -> Vec<Frame> {
        let bytes = std::mem::take(&mut self.received);
        let mut rest = bytes.as_slice();
        let mut frames = Vec::new();
        while !rest.is_empty() {
            match crate::frame::decode(rest, MAX_FRAME) {
                Decoded::Frame(frame, used) => {
                    frames.push(frame);
                    rest = &rest[used..];
                }
                other => panic!("bad frame from the server: {other:.80?}"),
            }
        }
        frames
    }

    fn events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The one call emitted since the last look.
    fn call(&mut self) -> Call {
        match self.events().as_slice() {
            [Event::Call(call)] => call.clone(),
            other => panic!("expected one call, got {other:?}"),
        }
    }

    /// The one feed emitted since the last look.
    fn feed(&mut self) -> Feed {
        match self.events().as_slice() {
            [Event::Feed(feed)] => feed.clone(),
            other => panic!("expected one feed, got {other:?}"),
        }
    }
}

fn limits(max_line: usize) -> Limits {
    Limits {
        max_line,
        ..Limits::default()
    }
}

#[test]
fn greeting_is_root_prompt() {
    let mut peer = Peer::new();
    assert_eq!(peer.text(), ROOT);
    assert!(peer.events().is_empty());
    assert!(peer.session.wants_input());
}

#[test]
fn pid_call_roundtrip_in_text_mode() {
    let mut peer = Peer::greeted();
    peer.send("shell process\n");
    assert_eq!(peer.text(), PROCESS);
    peer.send("pid\n");
    assert_eq!(peer.text(), "", "nothing is sent while the call runs");
    let call = peer.call();
    assert_eq!(
        (
            call.plugin.as_str(),
            call.command.as_str(),
            call.args.as_str()
        ),
        ("process", "pid", "")
    );
    assert_eq!(call.session, SESSION_ID);
    assert!(peer.session.is_waiting());
    peer.complete(call.id, Completion::Output("4242\n".into()));
    assert_eq!(peer.text(), format!("4242\n{PROCESS}"));
    assert!(!peer.session.is_waiting());
}

#[test]
fn crlf_and_lf_both_end_lines() {
    let mut peer = Peer::greeted();
    peer.send("shell process\r\n");
    assert_eq!(peer.text(), PROCESS);
    peer.send("exit\n");
    assert_eq!(peer.text(), ROOT);
    peer.send("shell echo\r\necho a b \r\n");
    assert_eq!(peer.text(), ECHO);
    assert_eq!(peer.call().args, "a b", "the \\r is not part of the line");
}

#[test]
fn overlong_line_gets_one_error_and_closes() {
    let mut peer = Peer::with_limits(limits(16));
    peer.text();
    peer.send("x".repeat(40));
    assert_eq!(
        peer.text(),
        "*** Line longer than 16 bytes (max_line); closing the session.\n"
    );
    assert_eq!(peer.events(), [Event::Close(CloseReason::LineTooLong)]);
    assert!(!peer.session.wants_input());
    assert!(peer.session.is_closed());
}

#[test]
fn line_of_exactly_max_line_bytes_is_accepted_with_crlf_too() {
    for ending in ["\n", "\r\n"] {
        let mut peer = Peer::with_limits(limits(16));
        peer.text();
        peer.send(format!("{:<16}{ending}", "exit"));
        assert_eq!(peer.text(), "", "{ending:?}");
        assert_eq!(
            peer.events(),
            [Event::Close(CloseReason::Exit)],
            "{ending:?}"
        );
    }
}

#[test]
fn ten_megabytes_without_newline_stays_bounded() {
    let mut peer = Peer::greeted();
    let read = vec![b'a'; 64 * 1024];
    let mut accepted = 0;
    while accepted < 10 << 20 && peer.session.wants_input() {
        peer.send(&read);
        accepted += read.len();
        assert!(peer.session.buffered_input() <= peer.session.input_limit() + read.len());
    }
    assert!(
        accepted <= 2 * read.len(),
        "read {accepted} bytes before refusing"
    );
    assert_eq!(
        peer.text(),
        "*** Line longer than 65536 bytes (max_line); closing the session.\n"
    );
    assert_eq!(peer.events(), [Event::Close(CloseReason::LineTooLong)]);
}

#[test]
fn invalid_utf8_line_gets_error_and_session_continues() {
    let mut peer = Peer::greeted();
    // Not 0xFF: in text mode that byte starts a telnet command.
    peer.send(b"echo \xc3\x28 \xe2\x82\n");
    assert_eq!(
        peer.text(),
        format!("*** Input is not valid UTF-8; the line was ignored.\n{ROOT}")
    );
    peer.send("shell process\n");
    assert_eq!(peer.text(), PROCESS);
}

#[test]
fn telnet_negotiation_is_ignored() {
    let mut peer = Peer::greeted();
    peer.send(crate::op::TELNET_OPENING);
    peer.send(b"shell pro\xff\xfb\x01cess\n");
    assert_eq!(
        peer.text(),
        PROCESS,
        "negotiation is neither answered nor kept"
    );
}

#[test]
fn eof_answers_every_buffered_command_then_closes() {
    let mut peer = Peer::greeted();
    peer.send("shell process\npid\nhelp pid\nexit\nprompt off\nplugins");
    peer.eof();
    assert_eq!(peer.text(), PROCESS);
    let call = peer.call();
    assert!(
        !peer.session.is_closed(),
        "the pending call is still answered"
    );
    peer.complete(call.id, Completion::Output("4242\n".into()));
    let plugins = "echo     Commands that answer as told\n\
                   locked   Gated, and the gate is closed (disabled: set enabled = true in [locked])\n\
                   process  The operating system's view of the process\n";
    assert_eq!(
        peer.text(),
        format!("4242\n{PROCESS}Print the process id.\n{PROCESS}{ROOT}{plugins}")
    );
    assert_eq!(peer.events(), [Event::Close(CloseReason::EndOfInput)]);
    assert!(peer.session.is_closed());
}

#[test]
fn input_is_buffered_while_call_pending_up_to_limit() {
    let mut peer = Peer::with_limits(limits(64));
    peer.send("shell process\npid\n");
    let call = peer.call();
    peer.text();
    let mut lines = 0;
    while peer.session.wants_input() {
        peer.send("help pid\n");
        lines += 1;
    }
    assert_eq!(peer.text(), "", "nothing is answered while the call runs");
    let limit = peer.session.input_limit();
    assert!(peer.session.buffered_input() > limit);
    assert!(peer.session.buffered_input() <= limit + "help pid\n".len());
    peer.complete(call.id, Completion::Output("4242\n".into()));
    let answer = format!("Print the process id.\n{PROCESS}");
    assert_eq!(
        peer.text(),
        format!("4242\n{PROCESS}{}", answer.repeat(lines))
    );
    assert!(peer.session.wants_input());
}

#[test]
fn slow_call_is_abandoned_after_call_timeout_and_late_result_ignored() {
    let mut peer = Peer::greeted();
    peer.send("shell echo\nslow\n");
    peer.text();
    let call = peer.call();
    peer.wait(Duration::from_millis(9_999));
    assert_eq!(peer.text(), "");
    peer.wait(Duration::from_millis(1));
    assert_eq!(
        peer.text(),
        format!(
            "*** 'slow' (echo plugin) did not answer within 10 s: it is still running, or waiting \
             for the echo lock, which another thread may be holding. Gave up waiting for it (it \
             may still be running, and its output will be discarded).\n{ECHO}"
        )
    );
    assert_eq!(peer.events(), [Event::Abandon(call.id)]);
    peer.complete(call.id, Completion::Output("too late\n".into()));
    assert_eq!(peer.text(), "");
    assert!(peer.events().is_empty());
    peer.send("echo again\n");
    assert_ne!(peer.call().id, call.id);
}

#[test]
fn idle_session_closes_after_idle_timeout() {
    let mut peer = Peer::greeted();
    peer.wait(Duration::from_secs(3599));
    assert_eq!(peer.text(), "");
    peer.wait(Duration::from_secs(1));
    assert_eq!(
        peer.text(),
        "*** No command for 3600 s (idle_timeout); closing the session.\n"
    );
    assert_eq!(peer.events(), [Event::Close(CloseReason::IdleTimeout)]);
}

#[test]
fn handshake_enters_framed_mode_and_sends_prompt_frame() {
    let mut peer = Peer::new();
    peer.send(CLIENT_HELLO);
    let mut expected = ROOT.as_bytes().to_vec();
    expected.extend_from_slice(SERVER_HELLO);
    Frame::Prompt(ROOT.into()).encode(&mut expected);
    assert_eq!(peer.received, expected);
}

#[test]
fn handshake_split_byte_by_byte_still_detected() {
    let mut peer = Peer::greeted();
    for &byte in CLIENT_HELLO {
        peer.send([byte]);
    }
    let mut expected = SERVER_HELLO.to_vec();
    Frame::Prompt(ROOT.into()).encode(&mut expected);
    assert_eq!(peer.received, expected);
}

#[test]
fn handshake_with_a_higher_version_is_answered_with_ours() {
    let mut peer = Peer::greeted();
    peer.send(b"\0ISPY/7\n");
    assert!(peer.received.starts_with(b"\0ISPY/1\n"));
}

#[test]
fn handshake_after_the_first_line_is_an_unknown_command() {
    let mut peer = Peer::greeted();
    peer.send("help\n");
    peer.text();
    peer.send(CLIENT_HELLO);
    assert!(peer.text().starts_with("*** Unknown syntax: \\0ISPY/1\n"));
}

#[test]
fn framed_line_gets_output_then_prompt() {
    let mut peer = Peer::framed();
    peer.send_frame(Frame::Line("help exit".into()));
    assert_eq!(
        peer.frames(),
        [
            Frame::Output(
                "Leave this shell: from a plugin's shell back to the top level; at the top \
                 level, end the session.\n"
                    .into()
            ),
            Frame::Prompt(ROOT.into()),
        ]
    );
}

#[test]
fn framed_completion_returns_candidates() {
    let mut peer = Peer::framed();
    peer.send_frame(Frame::Complete("shell e".into()));
    assert_eq!(
        peer.frames(),
        [Frame::Candidates {
            start: 6,
            // The one candidate ends in a space: `shell echo ` is typed.
            items: vec!["echo ".into()]
        }]
    );
}

#[test]
fn framed_eof_leaves_subshell_then_closes_at_root() {
    let mut peer = Peer::framed();
    peer.send_frame(Frame::Line("shell echo".into()));
    assert_eq!(peer.frames(), [Frame::Prompt(ECHO.into())]);
    peer.send_frame(Frame::Eof);
    assert_eq!(peer.frames(), [Frame::Prompt(ROOT.into())]);
    peer.send_frame(Frame::Eof);
    assert_eq!(peer.frames(), [Frame::Close(String::new())]);
    assert_eq!(peer.events(), [Event::Close(CloseReason::Exit)]);
}

#[test]
fn framed_oversized_frame_is_fatal() {
    let mut peer = Peer::framed_with_limits(limits(64));
    peer.send([0, 0, 0, 66, 0x01]);
    let reason = "*** Bad frame from the client: frame of 66 bytes is over the limit of 65 \
                  bytes; closing the session.";
    assert_eq!(
        peer.frames(),
        [Frame::Error(reason.into()), Frame::Close(reason.into())]
    );
    assert_eq!(peer.events(), [Event::Close(CloseReason::LineTooLong)]);
}

#[test]
fn framed_unknown_type_gets_error_and_continues() {
    let mut peer = Peer::framed();
    peer.send([0, 0, 0, 2, 0x42, b'x']);
    assert_eq!(
        peer.frames(),
        [Frame::Error(
            "*** Ignored a bad frame: unknown frame type 0x42".into()
        )]
    );
    peer.send_frame(Frame::Line("prompt".into()));
    assert_eq!(
        peer.frames(),
        [
            Frame::Output("The prompt is on. Use: prompt on|off\n".into()),
            Frame::Prompt(ROOT.into())
        ]
    );
}

#[test]
fn takeover_lines_become_feeds_and_done_restores_plugin_prompt() {
    let mut peer = Peer::greeted();
    peer.send("shell echo\ntakeover\n");
    peer.text();
    let call = peer.call();
    peer.complete(
        call.id,
        Completion::Interactive {
            output: "Fake console\n".into(),
            prompt: ">>> ".into(),
        },
    );
    assert_eq!(peer.text(), "Fake console\n>>> ");
    assert_eq!(peer.session.depth(), 3);
    peer.send("exit\n");
    let feed = peer.feed();
    assert_eq!(
        feed.line.as_deref(),
        Some("exit"),
        "exit goes to the takeover"
    );
    peer.complete(
        feed.id,
        Completion::Interactive {
            output: "use quit()".into(),
            prompt: ">>> ".into(),
        },
    );
    assert_eq!(
        peer.text(),
        "use quit()>>> ",
        "takeover output is left as is"
    );
    peer.send("quit()\n");
    let feed = peer.feed();
    peer.complete(feed.id, Completion::Output(String::new()));
    assert_eq!(peer.text(), ECHO);
    assert_eq!(peer.session.depth(), 2);
}

#[test]
fn takeover_frames_mark_begin_and_end() {
    let mut peer = Peer::framed();
    peer.send_frame(Frame::Line("shell echo".into()));
    peer.send_frame(Frame::Line("takeover".into()));
    peer.frames();
    let call = peer.call();
    peer.complete(
        call.id,
        Completion::Interactive {
            output: "Fake console\n".into(),
            prompt: ">>> ".into(),
        },
    );
    assert_eq!(
        peer.frames(),
        [
            Frame::Interactive("takeover".into()),
            Frame::Output("Fake console\n".into()),
            Frame::Prompt(">>> ".into()),
        ]
    );
    peer.send_frame(Frame::Eof);
    let feed = peer.feed();
    assert_eq!(feed.line, None, "Ctrl-D is fed to the takeover");
    peer.complete(feed.id, Completion::Output(String::new()));
    assert_eq!(
        peer.frames(),
        [Frame::InteractiveEnd, Frame::Prompt(ECHO.into())]
    );
}

#[test]
fn prompt_off_sends_empty_prompt_frame() {
    let mut peer = Peer::framed();
    peer.send_frame(Frame::Line("prompt off".into()));
    assert_eq!(peer.frames(), [Frame::Prompt(String::new())]);
    peer.send_frame(Frame::Line("shell echo".into()));
    assert_eq!(peer.frames(), [Frame::Prompt(String::new())]);
}

#[test]
fn prompt_off_writes_no_prompt_in_text_mode() {
    let mut peer = Peer::greeted();
    peer.send("prompt off\nshell process\nhelp pid\n");
    assert_eq!(peer.text(), "Print the process id.\n");
}

#[test]
fn output_larger_than_max_frame_is_split() {
    let mut peer = Peer::framed();
    peer.send_frame(Frame::Line("shell echo".into()));
    peer.send_frame(Frame::Line("big".into()));
    peer.frames();
    let call = peer.call();
    let big = big_output();
    peer.complete(call.id, Completion::Output(big.clone()));
    let frames = peer.frames();
    let mut joined = String::new();
    for frame in &frames[..frames.len() - 1] {
        let Frame::Output(text) = frame else {
            panic!("expected output, got {frame:.40?}")
        };
        assert!(text.len() < MAX_FRAME);
        joined.push_str(text);
    }
    assert!(frames.len() >= 3, "split over at least two frames");
    assert_eq!(joined, big + "\n");
    assert_eq!(frames.last(), Some(&Frame::Prompt(ECHO.into())));
}

#[test]
fn processing_pauses_above_output_high_water() {
    let mut peer = Peer::greeted();
    let lines = "help\n".repeat(13_000);
    // The peer sends, but reads nothing: the session is not polled.
    peer.session.handle_input(lines.as_bytes(), peer.now);
    let pending = peer.session.buffered_output();
    assert!(pending >= OUTPUT_HIGH_WATER);
    assert!(
        pending < OUTPUT_HIGH_WATER + 1024,
        "{pending} bytes pending"
    );
    assert!(
        peer.session.buffered_input() > 0,
        "the rest waits unprocessed"
    );
    peer.drain();
    let text = peer.text();
    assert_eq!(text.matches(ROOT).count(), 13_000);
    assert_eq!(peer.session.buffered_input(), 0);
}

#[test]
fn call_queued_behind_unread_output_gets_its_whole_call_timeout() {
    let mut peer = Peer::greeted();
    let mut input = "help\n".repeat(3_000);
    input.push_str("shell echo\nslow\n");
    peer.session.handle_input(input.as_bytes(), peer.now);
    assert!(
        peer.session.buffered_input() > 0,
        "paused on the high-water mark"
    );
    // The peer reads nothing for longer than call_timeout (but less than
    // send_timeout); then it reads, which resumes processing and starts
    // the call.
    peer.now += Duration::from_secs(30);
    peer.drain();
    let call = peer.call();
    assert_eq!(call.command, "slow");
    peer.wait(Duration::from_millis(9_999));
    assert!(peer.events().is_empty(), "abandoned before call_timeout");
    peer.wait(Duration::from_millis(1));
    assert_eq!(peer.events(), [Event::Abandon(call.id)]);
}

#[test]
fn call_timeout_counts_from_when_the_adapter_takes_the_call() {
    let mut peer = Peer::greeted();
    peer.session.handle_input(b"shell echo\nslow\n", peer.now);
    assert_eq!(
        peer.session.poll_timeout(),
        Some(peer.now + Limits::default().send_timeout),
        "the queued call's timer does not run yet"
    );
    peer.now += Duration::from_secs(30);
    peer.drain();
    let call = peer.call();
    peer.wait(Duration::from_millis(9_999));
    assert!(peer.events().is_empty(), "abandoned before call_timeout");
    peer.wait(Duration::from_millis(1));
    assert_eq!(peer.events(), [Event::Abandon(call.id)]);
}

#[test]
fn partial_writes_keep_the_rest_in_the_session() {
    let mut peer = Peer::greeted();
    peer.session.handle_input(b"help\n", peer.now);
    let whole = peer.session.poll_transmit().expect("help text").to_vec();
    let mut written = Vec::new();
    while let Some(bytes) = peer.session.poll_transmit() {
        written.push(bytes[0]);
        peer.session.handle_written(1, peer.now);
    }
    assert_eq!(written, whole);
    assert!(!peer.session.wants_write());
    assert_eq!(peer.session.buffered_output(), 0);
}

#[test]
fn a_peer_that_reads_nothing_is_closed_at_send_timeout() {
    let mut peer = Peer::greeted();
    peer.session.handle_input(b"help\n", peer.now);
    let send_timeout = Limits::default().send_timeout;
    assert_eq!(peer.session.poll_timeout(), Some(peer.now + send_timeout));
    peer.now += send_timeout;
    peer.session.handle_timeout(peer.now);
    assert_eq!(
        peer.session.poll_event(peer.now),
        Some(Event::Close(CloseReason::SendTimeout))
    );
    assert!(peer.session.is_closed(), "unsent output is dropped");
    assert_eq!(peer.session.poll_transmit(), None);
    assert_eq!(peer.session.poll_timeout(), None);
}

#[test]
fn every_byte_the_peer_takes_restarts_the_send_timeout() {
    let mut peer = Peer::greeted();
    peer.session
        .handle_input("help\n".repeat(100).as_bytes(), peer.now);
    let send_timeout = Limits::default().send_timeout;
    for _ in 0..5 {
        peer.now += send_timeout - Duration::from_secs(1);
        peer.session.handle_timeout(peer.now);
        peer.session.handle_written(1, peer.now);
        assert_eq!(
            peer.session.poll_event(peer.now),
            None,
            "closed while reading"
        );
    }
    assert!(peer.session.wants_write());
}

/// Sends `bytes` every 0.6 s to a session with a 1 s idle timeout: no
/// command is ever complete, so the session must close on time.
fn assert_trickle_closes_at_idle_timeout(bytes: &[u8]) {
    let mut peer = Peer::with_limits(Limits {
        idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    });
    peer.text();
    for _ in 0..3 {
        peer.now += Duration::from_millis(600);
        peer.send(bytes);
    }
    assert_eq!(peer.events(), [Event::Close(CloseReason::IdleTimeout)]);
}

#[test]
fn trickled_bytes_without_a_newline_do_not_postpone_the_idle_timeout() {
    assert_trickle_closes_at_idle_timeout(b"x");
}

#[test]
fn telnet_nops_do_not_postpone_the_idle_timeout() {
    assert_trickle_closes_at_idle_timeout(&[0xff, 0xf1]);
}

#[test]
fn shutdown_tells_the_client_and_abandons_the_call() {
    let mut peer = Peer::greeted();
    peer.send("shell echo\nslow\n");
    peer.text();
    let call = peer.call();
    peer.session.handle_shutdown(peer.now);
    peer.drain();
    assert_eq!(
        peer.text(),
        "*** ispyd is shutting down; closing the session.\n"
    );
    assert_eq!(
        peer.events(),
        [Event::Abandon(call.id), Event::Close(CloseReason::Shutdown)]
    );
}

#[test]
fn late_and_unknown_results_are_reported() {
    let mut peer = Peer::greeted();
    peer.send("shell echo\nslow\n");
    let call = peer.call();
    peer.wait(Limits::default().call_timeout);
    assert_eq!(peer.events(), [Event::Abandon(call.id)]);
    let late = Completion::Output("late".into());
    assert_eq!(
        peer.session.handle_result(call.id, late.clone(), peer.now),
        Err(UnexpectedResult::Late(call.id))
    );
    assert_eq!(
        peer.session.handle_result(CallId(99), late, peer.now),
        Err(UnexpectedResult::Unknown(CallId(99)))
    );
}

#[test]
fn disabled_plugin_message_exact() {
    let mut peer = Peer::greeted();
    peer.send("shell locked\n");
    assert_eq!(
        peer.text(),
        format!(
            "Sorry, the locked plugin is disabled.\n\
             To enable it, set 'enabled = true' in the [locked] section of the configuration \
             file.\n{ROOT}"
        )
    );
    assert_eq!(peer.session.depth(), 1);
}

#[test]
fn disabled_command_makes_no_call() {
    let mut peer = Peer::greeted();
    peer.send("shell echo\nsecret\n");
    assert!(
        peer.text()
            .contains("Sorry, the secret command is disabled.")
    );
    assert!(peer.events().is_empty());
}

#[test]
fn failed_call_shows_error_with_stars() {
    let mut peer = Peer::greeted();
    peer.send("shell echo\nfail\n");
    peer.text();
    let call = peer.call();
    peer.complete(call.id, Completion::Error("no such thing".into()));
    assert_eq!(peer.text(), format!("*** no such thing\n{ECHO}"));
}

#[test]
fn no_output_after_close() {
    let mut peer = Peer::greeted();
    peer.send("exit\n");
    assert_eq!(peer.text(), "");
    assert_eq!(peer.events(), [Event::Close(CloseReason::Exit)]);
    peer.send("plugins\n");
    peer.complete(CallId(0), Completion::Output("x".into()));
    peer.wait(Duration::from_secs(7200));
    peer.eof();
    assert_eq!(peer.text(), "");
    assert!(peer.events().is_empty());
    assert_eq!(peer.session.poll_timeout(), None);
}

#[path = "session_tests/data.rs"]
mod data;

#[path = "session_tests/interrupt.rs"]
mod interrupt;

#[path = "session_tests/progress.rs"]
mod progress;

#[path = "session_tests/files.rs"]
mod files;

#[path = "session_tests/audit.rs"]
mod audit;

#[path = "session_tests/output.rs"]
mod output;
