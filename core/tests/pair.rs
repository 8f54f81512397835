//! Client and server stepped against each other in memory, with a
//! simulated clock, as quinn-proto's tests drive two endpoints: a server
//! [`Session`] with its [`Dispatcher`] and real [`Plugin`]s, and the
//! client's protocol state [`Client`], with no sockets and no threads.
#![allow(
    clippy::disallowed_methods,
    reason = "the simulated clock needs one origin; every later instant is origin + simulated time"
)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ispyd_core::{
    Action, Call, Client, ClientError, ClientEvent, CloseReason, Config, Dispatcher, Frame, Host,
    Interactive, Job, Limits, Listen, OUTPUT_HIGH_WATER, Outcome, Plugin, PluginError, PluginInfo,
    Registry, Session, Step, UnexpectedResult,
};

const PID: u32 = 4242;
const ROOT: &str = "(ispyd:4242) ";
const ECHO: &str = "(echo:4242) ";

/// `echo ARGS`, `slow` (the test decides when it is done), `big` (more than
/// the output high-water mark) and `console` (a takeover echoing lines
/// until `quit()`).
struct EchoPlugin;

impl Plugin for EchoPlugin {
    fn describe(&self) -> PluginInfo {
        PluginInfo::new("echo", "Commands that answer as told")
            .command("echo", "Print the arguments.")
            .command("slow", "Answer when the test runs the job.")
            .command("big", "Print a lot.")
            .command("console", "A fake interpreter.")
    }

    fn call(&self, call: &Call) -> Result<Outcome, PluginError> {
        match call.command.as_str() {
            "echo" => Ok(Outcome::Output(format!("{}\n", call.args))),
            "slow" => Ok(Outcome::Output("finally\n".into())),
            "big" => Ok(Outcome::Output("x".repeat(3 * OUTPUT_HIGH_WATER))),
            "console" => Ok(Outcome::Interactive(Box::new(Console))),
            other => Err(PluginError::new(format!("no {other}"))),
        }
    }
}

struct Console;

impl Interactive for Console {
    fn start(&mut self) -> Step {
        Step::Continue {
            output: "Fake console\n".into(),
            prompt: ">>> ".into(),
        }
    }

    fn feed(&mut self, line: Option<&str>) -> Step {
        match line {
            None | Some("quit()") => Step::Done {
                output: String::new(),
            },
            Some(line) => Step::Continue {
                output: format!("{line}\n"),
                prompt: ">>> ".into(),
            },
        }
    }
}

/// `pid`, inline.
struct ProcessPlugin;

impl Plugin for ProcessPlugin {
    fn describe(&self) -> PluginInfo {
        PluginInfo::new("process", "The process")
            .command("pid", "Print the process id.")
            .inline()
    }

    fn call(&self, _call: &Call) -> Result<Outcome, PluginError> {
        Ok(Outcome::Output(format!("{PID}\n")))
    }
}

/// Both sides and the wire between them.
struct Pair {
    now: Instant,
    server: Session,
    dispatcher: Dispatcher,
    registry: Registry,
    client: Client,
    /// Jobs that are not inline wait here until [`Pair::run_jobs`].
    jobs: VecDeque<Job>,
    /// The most bytes one write moves, each way.
    write_limit: usize,
    /// False while the client does not read.
    client_reads: bool,
    events: Vec<ClientEvent>,
    closed: Option<CloseReason>,
    late: Vec<UnexpectedResult>,
}

impl Pair {
    fn new(limits: Limits) -> Pair {
        let mut registry = Registry::new();
        registry.register(Arc::new(ProcessPlugin));
        registry.register(Arc::new(EchoPlugin));
        let mut config = Config::new(Listen::Unix("/tmp/pair.sock".into()), &[]);
        config.limits = limits;
        let host = Arc::new(Host::new(PID, &config, registry.infos()));
        let now = Instant::now();
        let mut pair = Pair {
            now,
            server: Session::new(host, 1, now),
            dispatcher: Dispatcher::new(),
            registry,
            client: Client::new(),
            jobs: VecDeque::new(),
            write_limit: usize::MAX,
            client_reads: true,
            events: Vec::new(),
            closed: None,
            late: Vec::new(),
        };
        pair.drive();
        pair
    }

    /// A pair past the handshake, its first prompt taken.
    fn greeted() -> Pair {
        let mut pair = Pair::new(Limits::default());
        assert_eq!(
            pair.take(),
            [
                ClientEvent::Greeted { pid: Some(PID) },
                ClientEvent::Frame(Frame::Prompt(ROOT.into()))
            ]
        );
        pair
    }

    /// One pass of everything that can move; true if something did.
    fn step(&mut self) -> bool {
        let mut moved = false;
        while let Some(action) =
            self.dispatcher
                .poll_action(&mut self.server, &self.registry, self.now)
        {
            moved = true;
            match action {
                Action::Run(job) if job.is_inline() => {
                    let done = job.run(&self.registry);
                    let _ = self
                        .dispatcher
                        .handle_done(&mut self.server, done, self.now);
                }
                Action::Run(job) => self.jobs.push_back(job),
                // As a stuck worker would, the job stays and may finish late.
                Action::Forget(_) => {}
                Action::Interrupt(interrupter) => interrupter.interrupt(),
                Action::Close(reason) => self.closed = Some(reason),
            }
        }
        if let Some(bytes) = self.client.poll_transmit() {
            let n = bytes.len().min(self.write_limit);
            self.server.handle_input(&bytes[..n], self.now);
            self.client.handle_written(n);
            moved = true;
        }
        if self.client_reads {
            if let Some(bytes) = self.server.poll_transmit() {
                let n = bytes.len().min(self.write_limit);
                self.client.handle_input(&bytes[..n]);
                self.server.handle_written(n, self.now);
                moved = true;
            } else if self.server.is_closed() {
                self.client.handle_eof();
            }
        }
        while let Some(event) = self.client.poll_event() {
            self.events.push(event);
            moved = true;
        }
        if self.server.poll_timeout().is_some_and(|at| at <= self.now) {
            self.server.handle_timeout(self.now);
            moved = true;
        }
        moved
    }

    /// Steps until nothing moves; a pair that never settles fails the test.
    fn drive(&mut self) {
        for _ in 0..10_000_000 {
            if !self.step() {
                return;
            }
        }
        panic!("the pair never settled");
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.drive();
    }

    fn line(&mut self, line: &str) {
        self.client.send(&Frame::Line(line.into()));
        self.drive();
    }

    /// Runs the held jobs and hands their results back.
    fn run_jobs(&mut self) {
        while let Some(job) = self.jobs.pop_front() {
            let done = job.run(&self.registry);
            if let Err(unexpected) = self
                .dispatcher
                .handle_done(&mut self.server, done, self.now)
            {
                self.late.push(unexpected);
            }
        }
        self.drive();
    }

    fn take(&mut self) -> Vec<ClientEvent> {
        std::mem::take(&mut self.events)
    }

    /// The frames the client received since the last look.
    fn frames(&mut self) -> Vec<Frame> {
        self.take()
            .into_iter()
            .map(|event| match event {
                ClientEvent::Frame(frame) => frame,
                other => panic!("expected a frame, got {other:?}"),
            })
            .collect()
    }
}

fn output(text: &str) -> Frame {
    Frame::Output(text.into())
}

fn prompt(text: &str) -> Frame {
    Frame::Prompt(text.into())
}

#[test]
fn handshake_tells_the_client_the_server_pid() {
    Pair::greeted();
}

#[test]
fn an_inline_call_answers_with_its_output_and_the_next_prompt() {
    let mut pair = Pair::greeted();
    pair.line("shell process");
    assert_eq!(pair.frames(), [prompt("(process:4242) ")]);
    pair.line("pid");
    assert_eq!(pair.frames(), [output("4242\n"), prompt("(process:4242) ")]);
}

#[test]
fn completion_answers_the_request_with_candidates_inside_the_text() {
    let mut pair = Pair::greeted();
    pair.client.request_completion("sh");
    pair.drive();
    assert_eq!(
        pair.take(),
        [ClientEvent::Candidates(Some((0, vec!["shell ".into()])))]
    );
}

#[test]
fn an_answer_to_an_abandoned_completion_is_dropped() {
    let mut pair = Pair::greeted();
    pair.client.request_completion("sh");
    pair.client.abandon_completion();
    pair.drive();
    assert_eq!(pair.take(), []);
    pair.client.request_completion("ex");
    pair.drive();
    assert_eq!(
        pair.take(),
        [ClientEvent::Candidates(Some((0, vec!["exit ".into()])))]
    );
}

#[test]
fn frames_that_arrive_while_a_completion_waits_are_kept_in_order() {
    let mut pair = Pair::greeted();
    pair.client.send(&Frame::Line("help".into()));
    pair.client.request_completion("sh");
    // Deliver without polling, as a driver blocked in the editor would.
    pair.client_reads = true;
    while let Some(bytes) = pair.client.poll_transmit() {
        let n = bytes.len();
        pair.server.handle_input(bytes, pair.now);
        pair.client.handle_written(n);
    }
    while let Some(bytes) = pair.server.poll_transmit() {
        let n = bytes.len();
        pair.client.handle_input(bytes);
        pair.server.handle_written(n, pair.now);
    }
    assert_eq!(
        pair.client.poll_candidates(),
        Some(Some((0, vec!["shell ".into()])))
    );
    pair.drive();
    let frames = pair.frames();
    assert!(matches!(&frames[0], Frame::Output(help) if help.contains("Documented commands")));
    assert_eq!(frames.last(), Some(&prompt(ROOT)));
}

#[test]
fn a_takeover_is_bracketed_by_its_frames_and_gives_the_shell_back() {
    let mut pair = Pair::greeted();
    pair.line("shell echo");
    pair.frames();
    pair.line("console");
    pair.run_jobs();
    assert_eq!(
        pair.frames(),
        [
            Frame::Interactive("console".into()),
            output("Fake console\n"),
            prompt(">>> ")
        ]
    );
    pair.line("1 + 1");
    pair.run_jobs();
    assert_eq!(pair.frames(), [output("1 + 1\n"), prompt(">>> ")]);
    pair.line("quit()");
    pair.run_jobs();
    assert_eq!(pair.frames(), [Frame::InteractiveEnd, prompt(ECHO)]);
}

#[test]
fn a_slow_call_is_given_up_on_and_its_late_result_reported() {
    let mut pair = Pair::greeted();
    pair.line("shell echo");
    pair.frames();
    pair.line("slow");
    assert_eq!(pair.frames(), []);
    pair.advance(Limits::default().call_timeout);
    let frames = pair.frames();
    assert!(
        matches!(&frames[0], Frame::Error(msg) if msg.contains("'slow' (echo plugin) did not answer")),
        "{frames:?}"
    );
    assert_eq!(frames[1..], [prompt(ECHO)]);
    let slow = pair.jobs.front().map(Job::id).expect("the stuck job");
    pair.line("echo still here");
    pair.run_jobs();
    assert_eq!(pair.frames(), [output("still here\n"), prompt(ECHO)]);
    assert_eq!(pair.late, [UnexpectedResult::Late(slow)]);
}

#[test]
fn one_byte_writes_both_ways_give_the_same_conversation() {
    let script = |pair: &mut Pair| {
        pair.line("shell echo");
        pair.line("echo ünïcödé");
        pair.run_jobs();
        pair.line("big");
        pair.run_jobs();
        pair.client.request_completion("ec");
        pair.drive();
        pair.line("exit");
        pair.take()
    };
    let mut whole = Pair::greeted();
    let mut bytewise = Pair::greeted();
    bytewise.write_limit = 1;
    assert_eq!(script(&mut whole), script(&mut bytewise));
}

#[test]
fn a_client_that_stops_reading_keeps_the_server_bounded_then_gets_everything() {
    let mut pair = Pair::greeted();
    pair.line("shell echo");
    pair.frames();
    pair.client_reads = false;
    for _ in 0..3 {
        pair.line("big");
        pair.run_jobs();
    }
    let held = pair.server.buffered_output();
    assert!(
        held < OUTPUT_HIGH_WATER + 4 * OUTPUT_HIGH_WATER,
        "{held} bytes held"
    );
    assert!(pair.server.buffered_input() > 0, "the rest waits unread");
    pair.client_reads = true;
    pair.drive();
    pair.run_jobs();
    pair.run_jobs();
    let frames = pair.frames();
    let text: usize = frames
        .iter()
        .map(|f| match f {
            Frame::Output(text) => text.len(),
            _ => 0,
        })
        .sum();
    // Each output gets the final newline the plugin left out.
    assert_eq!(text, 3 * (3 * OUTPUT_HIGH_WATER + 1));
    assert_eq!(frames.last(), Some(&prompt(ECHO)));
}

#[test]
fn a_client_that_reads_nothing_is_cut_off_at_send_timeout() {
    let mut pair = Pair::greeted();
    pair.client_reads = false;
    pair.line("help");
    pair.advance(Limits::default().send_timeout);
    assert_eq!(pair.closed, Some(CloseReason::SendTimeout));
    pair.client_reads = true;
    pair.drive();
    assert_eq!(pair.take(), [ClientEvent::Failed(ClientError::Closed)]);
}

#[test]
fn an_idle_session_is_closed_and_the_client_told_why() {
    let mut pair = Pair::greeted();
    pair.advance(Limits::default().idle_timeout);
    let reason = "*** No command for 3600 s (idle_timeout); closing the session.";
    assert_eq!(
        pair.frames(),
        [Frame::Error(reason.into()), Frame::Close(reason.into())]
    );
    assert_eq!(pair.closed, Some(CloseReason::IdleTimeout));
}

#[test]
fn exit_closes_with_the_users_reason() {
    let mut pair = Pair::greeted();
    pair.line("exit");
    assert_eq!(pair.frames(), [Frame::Close(String::new())]);
    assert_eq!(pair.closed, Some(CloseReason::Exit));
}

#[test]
fn a_server_at_its_limit_is_reported_with_what_it_said() {
    let mut client = Client::new();
    client.handle_input(b"*** ispyd: already serving 8 sessions\r\n");
    client.handle_eof();
    assert_eq!(
        client.poll_event(),
        Some(ClientEvent::Failed(ClientError::ClosedEarly(
            "*** ispyd: already serving 8 sessions".into()
        )))
    );
    assert_eq!(client.poll_event(), None);
}

#[test]
fn a_peer_that_is_not_ispyd_is_recognised() {
    let mut client = Client::new();
    client.handle_input(&vec![b'x'; ispyd_core::GREETING_LIMIT + 1]);
    assert_eq!(
        client.poll_event(),
        Some(ClientEvent::Failed(ClientError::NotIspyd))
    );
    let mut client = Client::new();
    client.handle_input(b"(ispyd:1) \0ISPY/7\n");
    assert_eq!(
        client.poll_event(),
        Some(ClientEvent::Failed(ClientError::Version('7')))
    );
}
