//! The in-memory adapter behind [`drive`](super::drive): a peer, a plugin
//! host that answers when told, a simulated clock, and the invariants
//! checked after every operation.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::{Answer, DRIVE_LIMITS, Op, PID, SESSION_ID, big_output, fixture_session};
use crate::Name;
use crate::frame::{self, Decoded, Frame, MAX_FRAME, SERVER_HELLO};
use crate::session::{CallId, CloseReason, Completion, Event, OUTPUT_HIGH_WATER, Session};

/// What a session did during [`drive`](super::drive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    /// Every byte the session transmitted, in order.
    pub sent: Vec<u8>,
    /// Every event the session emitted, in order.
    pub events: Vec<Event>,
    /// True when the session closed.
    pub closed: bool,
}

impl Transcript {
    /// Why the session closed, if it did.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.events.iter().find_map(|event| match event {
            Event::Close(reason) => Some(reason),
            _ => None,
        })
    }
}

/// Polls (events, timers) without a byte written beyond which the session is
/// taken to be spinning.
const MAX_POLLS: usize = 100_000;

/// The most output a session may hold unpolled: the high-water mark, plus
/// one reply that crossed it, plus one plugin result.
const MAX_BUFFERED_OUTPUT: usize = OUTPUT_HIGH_WATER + 2 * MAX_FRAME + 16 * 1024;

/// The call or feed the session waits for, as the driver saw it, and when
/// the driver saw it.
#[derive(Debug)]
struct Running {
    request: Request,
    /// When it started, or last reported progress or was interrupted.
    started: Instant,
    /// It reported progress: a Ctrl-C interrupts it.
    progressed: bool,
}

#[derive(Debug)]
enum Request {
    Call {
        id: CallId,
        plugin: Name,
        command: Name,
        args: String,
    },
    Feed {
        id: CallId,
        line: Option<String>,
    },
    Complete {
        id: CallId,
        text: String,
    },
}

impl Request {
    fn id(&self) -> CallId {
        match self {
            Request::Call { id, .. } | Request::Feed { id, .. } | Request::Complete { id, .. } => {
                *id
            }
        }
    }

    /// What the fixture's plugins answer, as documented on
    /// [`fixture_host`](super::fixture_host).
    fn natural(&self) -> Completion {
        match self {
            Request::Call {
                plugin,
                command,
                args,
                ..
            } => match (plugin.as_str(), command.as_str()) {
                ("process", "pid") => Completion::Report {
                    text: format!("{PID}\n"),
                    data: Some(format!(r#"{{"pid":{PID}}}"#)),
                    files: Vec::new(),
                },
                ("echo", "file") => Completion::Report {
                    text: "sent fixture.txt\n".to_owned(),
                    data: None,
                    files: vec![crate::Attachment {
                        name: "fixture.txt".to_owned(),
                        bytes: big_output().into_bytes(),
                    }],
                },
                ("process", "environ") => Completion::Output("PATH=/usr/bin\n".to_owned()),
                ("echo", "echo") => Completion::Output(args.clone()),
                ("echo", "slow") => Completion::Output("finally\n".to_owned()),
                ("echo", "fail") => Completion::Error("failed on purpose".to_owned()),
                ("echo", "big") => Completion::Output(big_output()),
                ("echo", "takeover") => Completion::Interactive {
                    output: "Fake console\n".to_owned(),
                    prompt: ">>> ".to_owned(),
                },
                _ => Completion::Error(format!("the fixture has no {plugin} {command}")),
            },
            // The fake console completes `quit()` from any prefix of it.
            Request::Complete { text, .. } => Completion::Candidates {
                start: 0,
                items: "quit()"
                    .starts_with(text.as_str())
                    .then(|| "quit()".to_owned())
                    .into_iter()
                    .collect(),
            },
            Request::Feed { line: None, .. } => Completion::Output(String::new()),
            Request::Feed {
                line: Some(line), ..
            } if line == "quit()" => Completion::Output("bye\n".to_owned()),
            Request::Feed {
                line: Some(line), ..
            } => Completion::Interactive {
                output: format!("{line}\n"),
                prompt: if line.ends_with(':') { "... " } else { ">>> " }.to_owned(),
            },
        }
    }
}

pub(super) struct Driver {
    session: Session,
    now: Instant,
    /// Bytes the peer sent that the session has not read, one read each.
    unread: VecDeque<Vec<u8>>,
    peer_eof: bool,
    eof_delivered: bool,
    reading: bool,
    /// The most bytes one write takes; `None`: all of them.
    write_limit: Option<usize>,
    /// Unsent output when the Close event came: the most there may be
    /// from then on.
    backlog_at_close: Option<usize>,
    /// True once a send timeout dropped unsent output.
    cut: bool,
    running: Option<Running>,
    abandoned: Vec<CallId>,
    /// Every id the driver answered.
    answered: BTreeSet<CallId>,
    ids: BTreeSet<CallId>,
    transcript: Transcript,
    /// Every byte the session read, in order.
    fed: Vec<u8>,
}

impl Driver {
    pub(super) fn new(base: Instant) -> Driver {
        Driver {
            session: fixture_session(base),
            now: base,
            unread: VecDeque::new(),
            peer_eof: false,
            eof_delivered: false,
            reading: true,
            write_limit: None,
            backlog_at_close: None,
            cut: false,
            running: None,
            abandoned: Vec::new(),
            answered: BTreeSet::new(),
            ids: BTreeSet::new(),
            transcript: Transcript::default(),
            fed: Vec::new(),
        }
    }

    pub(super) fn run(mut self, ops: &[Op]) -> Transcript {
        self.pump();
        for (index, op) in ops.iter().enumerate() {
            self.apply(op);
            self.pump();
            self.check(index, op);
        }
        self.reading = true;
        self.pump();
        self.check(ops.len(), &Op::Reading(true));
        self.check_stream();
        self.transcript
    }

    fn apply(&mut self, op: &Op) {
        if let Some(bytes) = op.bytes() {
            // A peer that half-closed sends nothing more.
            if !self.peer_eof {
                self.unread.push_back(bytes);
            }
            return;
        }
        match op {
            Op::Eof => self.peer_eof = true,
            Op::Advance(ms) => {
                self.now += Duration::from_millis(u64::from(*ms));
                if self.session.poll_timeout().is_some_and(|at| self.now >= at) {
                    self.fire_timer();
                }
            }
            Op::Answer(answer) => self.answer(*answer),
            Op::Reading(reading) => self.reading = *reading,
            Op::WriteLimit(limit) => {
                self.write_limit = (*limit != u16::MAX).then(|| usize::from(*limit) + 1);
            }
            Op::Shutdown => self.session.handle_shutdown(self.now),
            _ => unreachable!("{op:?} sends bytes"),
        }
    }

    fn answer(&mut self, answer: Answer) {
        if answer == Answer::Late {
            let id = self.abandoned.first().copied().unwrap_or(CallId(u64::MAX));
            let before = (
                self.session.buffered_output(),
                self.session.is_waiting(),
                self.session.depth(),
            );
            let result =
                self.session
                    .handle_result(id, Completion::Output("late\n".to_owned()), self.now);
            assert!(result.is_err(), "the late result of {id:?} was accepted");
            let after = (
                self.session.buffered_output(),
                self.session.is_waiting(),
                self.session.depth(),
            );
            assert_eq!(
                before, after,
                "the late result of {id:?} changed the session"
            );
            return;
        }
        if answer == Answer::Progress {
            let Some(running) = self.running.as_mut() else {
                return;
            };
            if matches!(running.request, Request::Complete { .. }) {
                return;
            }
            let id = running.request.id();
            let result = self.session.handle_progress(id, "1 of 2", self.now);
            assert_eq!(result, Ok(()), "progress of the running {id:?} was refused");
            // A sign of life: call_timeout counts from here.
            running.started = self.now;
            running.progressed = true;
            return;
        }
        let Some(Running { request, .. }) = self.running.take() else {
            return;
        };
        let completion = match answer {
            Answer::Natural => request.natural(),
            Answer::Fail => Completion::Error("failed as told".to_owned()),
            Answer::Continue => Completion::Interactive {
                output: "> stopped here".to_owned(),
                prompt: "(Pdb) ".to_owned(),
            },
            Answer::Finish => Completion::Output("finished".to_owned()),
            Answer::Late | Answer::Progress => unreachable!(),
        };
        self.answered.insert(request.id());
        let result = self
            .session
            .handle_result(request.id(), completion, self.now);
        assert_eq!(result, Ok(()), "the awaited result was refused");
    }

    /// Moves output out and input in until neither can move.
    fn pump(&mut self) {
        loop {
            self.drain();
            if !self.session.wants_input() {
                return;
            }
            if let Some(chunk) = self.unread.pop_front() {
                self.session.handle_input(&chunk, self.now);
                self.fed.extend_from_slice(&chunk);
                let limit = self.session.input_limit();
                let buffered = self.session.buffered_input();
                assert!(
                    buffered <= limit + chunk.len(),
                    "{buffered} bytes of input buffered after a read of {}, limit {limit}",
                    chunk.len()
                );
            } else if self.peer_eof && !self.eof_delivered {
                self.eof_delivered = true;
                self.session.handle_eof(self.now);
            } else {
                return;
            }
        }
    }

    /// Takes every event, writes while the peer reads, and fires a timer
    /// already due, until none of them moves the session.
    fn drain(&mut self) {
        let mut idle_polls = 0;
        while idle_polls < MAX_POLLS {
            idle_polls += 1;
            while let Some(event) = self.session.poll_event(self.now) {
                self.on_event(event);
            }
            if let Some(limit) = self.backlog_at_close {
                let backlog = self.session.buffered_output();
                assert!(
                    backlog <= limit,
                    "output grew from {limit} to {backlog} bytes after the Close event"
                );
                self.backlog_at_close = Some(backlog);
            }
            if self.reading {
                if let Some(bytes) = self.session.poll_transmit() {
                    assert!(!bytes.is_empty(), "poll_transmit offered no bytes");
                    let n = bytes.len().min(self.write_limit.unwrap_or(usize::MAX));
                    self.transcript.sent.extend_from_slice(&bytes[..n]);
                    self.session.handle_written(n, self.now);
                    idle_polls = 0;
                    continue;
                }
            }
            assert_eq!(
                self.session.wants_write(),
                self.session.poll_transmit().is_some(),
                "wants_write disagrees with poll_transmit"
            );
            match self.session.poll_timeout() {
                // A timer already due fires at once, as in an adapter.
                Some(at) if at <= self.now => self.fire_timer(),
                at => {
                    if self.session.is_closed() {
                        assert_eq!(at, None, "a finished session asks for a timer");
                    } else {
                        assert!(at.is_some(), "an open session arms no timer");
                    }
                    return;
                }
            }
        }
        panic!("livelock: the session did not settle after {MAX_POLLS} polls");
    }

    /// Fires the session's timer, noting whether it dropped unsent output
    /// (a send timeout) so that the stream check expects a cut.
    fn fire_timer(&mut self) {
        let unsent = self.session.buffered_output();
        self.session.handle_timeout(self.now);
        if unsent > 0 && self.session.buffered_output() == 0 {
            self.cut = true;
        }
    }

    fn on_event(&mut self, event: Event) {
        assert!(
            !self.transcript.closed,
            "{event:?} emitted after the Close event"
        );
        match &event {
            Event::Call(call) => {
                assert_eq!(call.session, SESSION_ID, "call for another session");
                self.start(Request::Call {
                    id: call.id,
                    plugin: call.plugin.clone(),
                    command: call.command.clone(),
                    args: call.args.clone(),
                });
            }
            Event::Feed(feed) => {
                assert_eq!(feed.session, SESSION_ID, "feed for another session");
                self.start(Request::Feed {
                    id: feed.id,
                    line: feed.line.clone(),
                });
            }
            Event::Abandon(id) => {
                match self.running.take() {
                    Some(running) if running.request.id() == *id => {
                        let waited = self.now - running.started;
                        let interrupted = client_frames(&self.fed)
                            .iter()
                            .any(|f| matches!(f, Frame::Interrupt));
                        assert!(
                            waited >= DRIVE_LIMITS.call_timeout
                                || self.session.is_closing()
                                || interrupted,
                            "{id:?} abandoned after {waited:?}, before call_timeout"
                        );
                    }
                    // Answered while the event waited unpolled: a late answer.
                    None if self.answered.contains(id) => {}
                    other => panic!("abandoned {id:?}, but the running request is {other:?}"),
                }
                assert!(!self.abandoned.contains(id), "{id:?} abandoned twice");
                self.abandoned.push(*id);
            }
            Event::Complete(completing) => {
                assert_eq!(
                    completing.session, SESSION_ID,
                    "completion for another session"
                );
                self.start(Request::Complete {
                    id: completing.id,
                    text: completing.text.clone(),
                });
            }
            Event::Interrupt(id) => {
                let running = self.running.as_ref().map(|r| r.request.id());
                assert!(
                    running == Some(*id) || self.answered.contains(id),
                    "interrupted {id:?}, but the running request is {running:?}"
                );
                assert!(
                    matches!(
                        self.running.as_ref(),
                        Some(Running {
                            request: Request::Feed { .. } | Request::Complete { .. },
                            ..
                        }) | Some(Running {
                            progressed: true,
                            ..
                        }) | None
                    ),
                    "a call without progress was interrupted instead of given up on"
                );
                // Asked to stop, it has call_timeout to answer.
                if let Some(running) = self.running.as_mut() {
                    running.started = self.now;
                }
            }
            Event::Close(_) => {
                self.transcript.closed = true;
                self.backlog_at_close = Some(self.session.buffered_output());
            }
        }
        self.transcript.events.push(event);
    }

    fn start(&mut self, request: Request) {
        let id = request.id();
        assert!(self.ids.insert(id), "{id:?} was used twice");
        if let Some(running) = &self.running {
            panic!("{request:?} started while {running:?} still runs");
        }
        self.running = Some(Running {
            request,
            started: self.now,
            progressed: false,
        });
    }

    fn check(&self, index: usize, op: &Op) {
        let session = &self.session;
        let at = || format!("after op #{index} ({op:.60?})");
        assert!(
            (1..=3).contains(&session.depth()),
            "shell depth {} {}",
            session.depth(),
            at()
        );
        assert!(
            session.buffered_output() <= MAX_BUFFERED_OUTPUT,
            "{} bytes of output buffered {}",
            session.buffered_output(),
            at()
        );
        if self.transcript.closed {
            assert!(!session.wants_input(), "closed but wants input {}", at());
            assert!(!session.is_waiting(), "closed but waiting {}", at());
        }
        assert_eq!(
            session.is_waiting(),
            self.running.is_some(),
            "session waiting = {}, driver running {:?} {}",
            session.is_waiting(),
            self.running,
            at()
        );
        if let Some(running) = &self.running {
            let waited = self.now - running.started;
            assert!(
                waited < DRIVE_LIMITS.call_timeout,
                "{:?} still runs after {waited:?}, over call_timeout, {}",
                running.request,
                at()
            );
        }
        if self.reading {
            // Everything was written: the driver knows what the session knows.
            assert_eq!(
                session.is_closed(),
                self.transcript.closed,
                "is_closed() disagrees with the Close event {}",
                at()
            );
        }
    }

    /// Checks the whole byte stream: a text greeting, then in framed mode
    /// the server hello, well-formed server frames up to `Close`, takeover
    /// frames that pair up, and one reply per request.
    fn check_stream(&self) {
        let greeting = format!("(ispyd:{PID}) ");
        let sent = &self.transcript.sent;
        // A peer that stopped reading loses what was unsent, even mid-frame.
        let cut = self.cut;
        if cut && sent.len() < greeting.len() {
            assert!(
                greeting.as_bytes().starts_with(sent),
                "the greeting is wrong"
            );
            return;
        }
        assert!(
            sent.starts_with(greeting.as_bytes()),
            "the session did not open with the root prompt"
        );
        if !self.session.is_framed() {
            return;
        }
        let rest = &sent[greeting.len()..];
        if cut && !rest.starts_with(SERVER_HELLO) {
            return;
        }
        assert!(
            rest.starts_with(SERVER_HELLO),
            "framed mode did not begin with the server hello"
        );
        let replies = server_frames(&rest[SERVER_HELLO.len()..], cut);
        let closed = matches!(replies.last(), Some(Frame::Close(_)));
        if cut {
            return;
        }
        assert_eq!(
            closed, self.transcript.closed,
            "Close frame and Close event disagree"
        );
        check_records(&replies, &client_frames(&self.fed));
        let mut in_takeover = false;
        for frame in &replies {
            match frame {
                Frame::Interactive(_) => {
                    assert!(!in_takeover, "Interactive inside a takeover");
                    in_takeover = true;
                }
                Frame::InteractiveEnd => {
                    assert!(in_takeover, "InteractiveEnd outside a takeover");
                    in_takeover = false;
                }
                _ => {}
            }
        }
        let settled = !closed && self.running.is_none() && self.unread.is_empty();
        if !settled {
            return;
        }
        assert_eq!(
            in_takeover,
            self.session.depth() == 3,
            "takeover frames disagree with the shell depth {}",
            self.session.depth()
        );
        // Every request was answered: one Prompt for the handshake and for
        // each Line or Eof, one Candidates for each Complete.
        let requests = client_frames(&self.fed);
        let count =
            |frames: &[Frame], pred: fn(&Frame) -> bool| frames.iter().filter(|f| pred(f)).count();
        assert_eq!(
            count(&replies, |f| matches!(f, Frame::Prompt(_))),
            1 + count(&requests, |f| matches!(f, Frame::Line(_) | Frame::Eof)),
            "not one Prompt per line"
        );
        assert_eq!(
            count(&replies, |f| matches!(f, Frame::Candidates { .. })),
            count(&requests, |f| matches!(f, Frame::Complete(_))),
            "not one Candidates per completion request"
        );
    }
}

/// Structured results come only to a client that asked, at most one per
/// reply, each a JSON document of the current schema.
fn check_records(replies: &[Frame], requests: &[Frame]) {
    let asked = requests.iter().any(|f| matches!(f, Frame::WantData { .. }));
    let mut json = String::new();
    for frame in replies {
        match frame {
            Frame::Data(piece) => {
                assert!(asked, "a Data frame for a client that did not ask");
                json.push_str(piece);
            }
            Frame::Prompt(_) | Frame::Close(_) if !json.is_empty() => {
                let record: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|err| {
                    panic!("a structured result is not one JSON document: {err}")
                });
                assert_eq!(record["schema"], crate::SCHEMA_VERSION, "schema missing");
                assert!(record["ok"].is_boolean(), "ok missing: {record}");
                json.clear();
            }
            _ => {}
        }
    }
}

/// Decodes what the server sent after its hello; every byte must be part
/// of a server frame (the last may be `cut` short), and nothing may follow
/// `Close`.
fn server_frames(mut rest: &[u8], cut: bool) -> Vec<Frame> {
    let mut frames = Vec::new();
    while !rest.is_empty() {
        if let Some(Frame::Close(_)) = frames.last() {
            panic!("{} bytes sent after the Close frame", rest.len());
        }
        match frame::decode(rest, MAX_FRAME) {
            Decoded::Frame(frame, used) => {
                assert!(
                    !frame.is_client(),
                    "the server sent a client frame {frame:?}"
                );
                frames.push(frame);
                rest = &rest[used..];
            }
            Decoded::Incomplete if cut => break,
            other => panic!("the server sent a bad frame: {other:.80?}"),
        }
    }
    frames
}

/// The whole client frames among the bytes the session read, after the
/// handshake line.
fn client_frames(fed: &[u8]) -> Vec<Frame> {
    let start = fed
        .iter()
        .position(|&b| b == b'\n')
        .map_or(fed.len(), |at| at + 1);
    let mut rest = &fed[start..];
    let mut frames = Vec::new();
    loop {
        match frame::decode(rest, DRIVE_LIMITS.max_line + 1) {
            Decoded::Frame(frame, used) => {
                frames.push(frame);
                rest = &rest[used..];
            }
            Decoded::Invalid(_, Some(used)) => rest = &rest[used..],
            Decoded::Incomplete | Decoded::Invalid(_, None) => return frames,
        }
    }
}
