//! Operations on a session, shared by the property tests and the fuzzers.
//!
//! One [`Op`] is one thing that can happen to a connection: the peer sends
//! bytes (raw, a likely command line, the handshake, a frame), the peer
//! half-closes, time passes, a plugin answers, the peer stops or resumes
//! reading. [`drive`] plays a list of them against a [`Session`] of a fixed
//! in-memory host ([`fixture_host`]) with no threads and a simulated clock,
//! and panics with a message naming the broken rule as soon as an invariant
//! does not hold. The fuzz targets and the tests call the same entry points:
//!
//! - [`drive_bytes`]: bytes → `Vec<Op>` (via [`arbitrary`]) → [`drive`],
//! - [`decode_all`]: frame decoding never panics, always advances, and
//!   decode → encode gives back the input bytes,
//! - [`parse_line`]: command parsing, printing and parsing again is stable,
//!   and completion stays inside the text,
//! - [`parse_config`]: any ini text gives a [`Config`] or one bounded line
//!   of error, and a bounded list of warnings,
//! - [`client_bytes`]: bytes → `Vec<ClientOp>` → [`play_client`], the
//!   client's side of the protocol against whatever a server sends.
//!
//! The entry points share one [`fixture_host`], built on first use: a host
//! never changes once made, so one per process changes nothing a fuzzer
//! can find, and building it per input cost more than the input's work.
//!
//! Nothing here runs in a real session; it lives in the library so that the
//! fuzz crate and the integration tests can reach it.

mod client;
mod driver;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};

use crate::command::parse_command;
use crate::config::{Config, Limits, Listen, SettingKind};
use crate::frame::{self, CLIENT_HELLO, Decoded, Frame, MAX_FRAME};
use crate::plugin::PluginInfo;
use crate::session::Session;
use crate::shell::{Host, Shell};

pub use client::{ClientOp, client_bytes, client_ops_from_bytes, play_client};
pub use driver::Transcript;

/// The fixture host's process id, shown in its prompts.
pub const PID: u32 = 4242;

/// The number [`drive`] gives its session.
pub const SESSION_ID: u64 = 7;

/// Limits of the session [`drive`] runs: small, so that a fuzzer reaches
/// the over-long line and both timeouts with few bytes.
pub const DRIVE_LIMITS: Limits = Limits {
    max_line: 1024,
    max_output: 64 * 1024,
    max_sessions: 1,
    idle_timeout: Duration::from_secs(60),
    call_timeout: Duration::from_secs(5),
    send_timeout: Duration::from_secs(60),
};

/// At most this many operations are taken from a fuzz input.
pub const MAX_OPS: usize = 256;

/// One thing that happens to a connection.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub enum Op {
    /// The peer sends these bytes.
    Input(Vec<u8>),
    /// The peer sends a command line from a fixed vocabulary.
    Line {
        /// Which line.
        line: LineChoice,
        /// End it with `\r\n` instead of `\n`.
        crlf: bool,
    },
    /// The peer sends a telnet client's opening negotiation.
    Telnet,
    /// The peer sends `n × 256` bytes of `x` and no newline.
    Flood(u8),
    /// The peer sends [`CLIENT_HELLO`].
    Handshake,
    /// The peer sends a [`Frame::Line`] from the vocabulary.
    FramedLine(LineChoice),
    /// The peer sends a [`Frame::Complete`] for a line of the vocabulary.
    FramedComplete(LineChoice),
    /// The peer sends this frame, encoded.
    Frame(Frame),
    /// The peer half-closes: it sends nothing more.
    Eof,
    /// This many milliseconds pass; the session's timer fires if due.
    Advance(u16),
    /// The call or feed the session is waiting for gets this answer.
    Answer(Answer),
    /// The peer stops (`false`) or resumes (`true`) reading the output.
    Reading(bool),
    /// From now on, each write the driver makes takes at most this many
    /// bytes plus one (a socket whose buffer is nearly full); `u16::MAX`:
    /// whole writes again.
    WriteLimit(u16),
    /// The host stops ispyd.
    Shutdown,
    /// The peer asks for structured results ([`Frame::WantData`]), with
    /// the text (`true`) or instead of it.
    WantData(bool),
    /// The peer presses Ctrl-C ([`Frame::Interrupt`]).
    Interrupt,
    /// The peer saves files ([`Frame::WantFiles`]).
    WantFiles,
}

impl Op {
    /// The bytes this operation makes the peer send, or `None` for an
    /// operation that sends none (time, answers, end of input, reading).
    pub fn bytes(&self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        match self {
            Op::Input(data) => out.extend_from_slice(data),
            Op::Line { line, crlf } => {
                out.extend_from_slice(line.text().as_bytes());
                out.extend_from_slice(if *crlf { b"\r\n" } else { b"\n" });
            }
            Op::Telnet => out.extend_from_slice(TELNET_OPENING),
            Op::Flood(n) => out.resize(usize::from(*n) * 256, b'x'),
            Op::Handshake => out.extend_from_slice(CLIENT_HELLO),
            Op::FramedLine(line) => Frame::Line(line.text().to_owned()).encode(&mut out),
            Op::FramedComplete(line) => Frame::Complete(line.text().to_owned()).encode(&mut out),
            Op::WantData(text) => Frame::WantData { text: *text }.encode(&mut out),
            Op::Interrupt => Frame::Interrupt.encode(&mut out),
            Op::WantFiles => Frame::WantFiles.encode(&mut out),
            Op::Frame(frame) => frame.encode(&mut out),
            Op::Eof
            | Op::Advance(_)
            | Op::Answer(_)
            | Op::Reading(_)
            | Op::WriteLimit(_)
            | Op::Shutdown => return None,
        }
        Some(out)
    }
}

/// What a telnet client sends first: `DO ECHO`, `WILL NAWS`, and the window
/// size in a subnegotiation.
pub const TELNET_OPENING: &[u8] = &[
    255, 253, 1, 255, 251, 31, 255, 250, 31, 0, 80, 0, 24, 255, 240,
];

/// A command line likely to mean something to the fixture host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
#[allow(
    missing_docs,
    reason = "each variant is named after its text; see LineChoice::text"
)]
pub enum LineChoice {
    Help,
    Question,
    HelpShell,
    HelpEcho,
    ShellProcess,
    BangEcho,
    ShellEcho,
    ShellNope,
    ShellLocked,
    ShellAlone,
    Exit,
    Quit,
    PromptOff,
    PromptOn,
    PromptAsk,
    PromptBad,
    Plugins,
    Pid,
    Environ,
    Echo,
    EchoUnicode,
    Slow,
    Fail,
    Big,
    Takeover,
    Secret,
    QuitTakeover,
    Block,
    Junk,
    Blank,
    Spaces,
    HelloAsText,
    File,
}

impl LineChoice {
    /// Every choice, in declaration order.
    pub const ALL: &[LineChoice] = &[
        LineChoice::Help,
        LineChoice::Question,
        LineChoice::HelpShell,
        LineChoice::HelpEcho,
        LineChoice::ShellProcess,
        LineChoice::BangEcho,
        LineChoice::ShellEcho,
        LineChoice::ShellNope,
        LineChoice::ShellLocked,
        LineChoice::ShellAlone,
        LineChoice::Exit,
        LineChoice::Quit,
        LineChoice::PromptOff,
        LineChoice::PromptOn,
        LineChoice::PromptAsk,
        LineChoice::PromptBad,
        LineChoice::Plugins,
        LineChoice::Pid,
        LineChoice::Environ,
        LineChoice::Echo,
        LineChoice::EchoUnicode,
        LineChoice::Slow,
        LineChoice::Fail,
        LineChoice::Big,
        LineChoice::Takeover,
        LineChoice::Secret,
        LineChoice::QuitTakeover,
        LineChoice::Block,
        LineChoice::Junk,
        LineChoice::Blank,
        LineChoice::Spaces,
        LineChoice::HelloAsText,
        LineChoice::File,
    ];

    /// The line, without its terminator.
    pub fn text(self) -> &'static str {
        match self {
            LineChoice::Help => "help",
            LineChoice::Question => "?",
            LineChoice::HelpShell => "help shell",
            LineChoice::HelpEcho => "? echo",
            LineChoice::ShellProcess => "shell process",
            LineChoice::BangEcho => "!echo",
            LineChoice::ShellEcho => "shell echo",
            LineChoice::ShellNope => "shell nope",
            LineChoice::ShellLocked => "shell locked",
            LineChoice::ShellAlone => "shell",
            LineChoice::Exit => "exit",
            LineChoice::Quit => "quit",
            LineChoice::PromptOff => "prompt off",
            LineChoice::PromptOn => "prompt on",
            LineChoice::PromptAsk => "prompt",
            LineChoice::PromptBad => "prompt maybe",
            LineChoice::Plugins => "plugins",
            LineChoice::Pid => "pid",
            LineChoice::Environ => "environ",
            LineChoice::Echo => "echo hi",
            LineChoice::EchoUnicode => "echo  ünïcödé 😀 ",
            LineChoice::Slow => "slow",
            LineChoice::Fail => "fail",
            LineChoice::Big => "big",
            LineChoice::Takeover => "takeover",
            LineChoice::Secret => "secret",
            LineChoice::QuitTakeover => "quit()",
            LineChoice::Block => "if x:",
            LineChoice::Junk => "frobnicate --now",
            LineChoice::Blank => "",
            LineChoice::Spaces => " \t ",
            LineChoice::HelloAsText => "\0ISPY/1",
            LineChoice::File => "file",
        }
    }
}

/// How the fixture answers the call or feed the session waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum Answer {
    /// What the fixture's plugin would answer (see [`fixture_host`]).
    Natural,
    /// The plugin fails: [`Completion::Error`](crate::Completion::Error).
    Fail,
    /// A takeover goes on (or starts), with the prompt `(Pdb) `.
    Continue,
    /// Output without a final newline; after a feed, the takeover is over.
    Finish,
    /// The result of a call abandoned earlier (or of an id never issued)
    /// arrives: the session must ignore it.
    Late,
    /// The running call or feed reports progress, and goes on running.
    Progress,
}

/// The host every [`drive`] runs against, with these limits.
///
/// Plugins, described as data:
/// - `process` (inline): `pid` answers `4242` (and `{"pid":4242}` as data); `environ` is behind the
///   gate `process:environ`, which is enabled.
/// - `echo`: `echo ARGS` answers its arguments, `slow` answers only when
///   told, `fail` fails, `big` answers more than [`MAX_FRAME`] bytes,
///   `takeover` starts an interactive takeover (a fake console that echoes
///   lines until `quit()` or end of input), `file` sends a file of
///   [`big_output`] as `fixture.txt` to a client that saves files, `secret` is behind the gate
///   `echo:secret`, which is not enabled, and `quiet` has no help text.
///   It declares the keys of `[echo]`: `size` (1 to 10), `delay`
///   (seconds), `loud` (a boolean) and `label` (text).
/// - `locked`: gated by `locked`, not enabled.
pub fn fixture_host(limits: Limits) -> Host {
    let mut config = Config::new(Listen::Unix("/tmp/ispyd-fixture.sock".to_owned()), &[]);
    config.limits = limits;
    config.set_enabled("process:environ", true);
    let plugins = vec![
        PluginInfo::new("process", "The operating system's view of the process")
            .command("pid", "Print the process id.")
            .gated_command("environ", "Print the environment.", "process:environ")
            .inline(),
        PluginInfo::new("echo", "Commands that answer as told")
            .command("echo", "Print the arguments.")
            .command("slow", "Answer only when the test says so.")
            .command("fail", "Fail.")
            .command("big", "Print more than a frame holds.")
            .command("takeover", "Take the session over.")
            .command("file", "Send a file bigger than a frame.")
            .gated_command("secret", "Never enabled.", "echo:secret")
            .command("quiet", "")
            .waits_for("the echo lock")
            .setting("size", SettingKind::Whole { min: 1, max: 10 })
            .setting("delay", SettingKind::Seconds)
            .setting("loud", SettingKind::Bool)
            .setting("label", SettingKind::Text),
        PluginInfo::new("locked", "Gated, and the gate is closed")
            .command("open", "Never reachable.")
            .gated("locked"),
    ];
    Host::new(PID, &config, plugins)
}

/// Text of more than [`MAX_FRAME`] bytes whose two-byte characters straddle
/// the frame boundary, without a final newline.
pub fn big_output() -> String {
    "é".repeat(MAX_FRAME / 2 + 4)
}

/// Plays `ops` against a new session of [`fixture_host`] with
/// [`DRIVE_LIMITS`], starting the simulated clock at `base`.
///
/// The driver behaves as an adapter would: it feeds each operation's bytes
/// as one read while [`Session::wants_input`] holds (keeping the rest, in
/// order, as unread socket data), delivers end of input only after every
/// byte was read, polls events after every operation, writes output (in
/// pieces as small as [`Op::WriteLimit`] says) unless the peer stopped
/// reading, and answers calls and feeds only when an [`Op::Answer`] says
/// so. At the end the peer reads whatever is left.
///
/// # Panics
///
/// When an invariant breaks; the message names it and the operation.
pub fn drive(ops: &[Op], base: Instant) -> Transcript {
    driver::Driver::new(base).run(ops)
}

/// Turns fuzz input into operations (at most [`MAX_OPS`]).
pub fn ops_from_bytes(data: &[u8]) -> Vec<Op> {
    arbitrary_ops(data)
}

/// Up to [`MAX_OPS`] operations of any kind, read from fuzz input until it
/// runs out or stops making sense.
fn arbitrary_ops<'a, T: Arbitrary<'a>>(data: &'a [u8]) -> Vec<T> {
    let mut input = Unstructured::new(data);
    let mut ops = Vec::new();
    while !input.is_empty() && ops.len() < MAX_OPS {
        match T::arbitrary(&mut input) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    ops
}

/// The fuzz entry point for sessions: [`ops_from_bytes`], then [`drive`].
pub fn drive_bytes(data: &[u8]) {
    drive(&ops_from_bytes(data), origin());
}

/// The one instant a fuzz run starts its simulated clock at.
#[allow(
    clippy::disallowed_methods,
    reason = "a driver needs one origin; every later instant is origin + simulated time, so a run \
              does not depend on when it happens"
)]
fn origin() -> Instant {
    Instant::now()
}

/// The fuzz entry point for the frame codec: decodes `data` as a stream of
/// client frames, with the session's limit and with [`MAX_FRAME`].
///
/// # Panics
///
/// When decoding does not advance, a fatal error is not reported as one,
/// a strict prefix of a frame is not [`Decoded::Incomplete`], or encoding a
/// decoded frame does not give back its input bytes (so parse → print →
/// parse is stable).
pub fn decode_all(data: &[u8]) {
    for limit in [DRIVE_LIMITS.max_line + 1, MAX_FRAME] {
        decode_stream(data, limit);
    }
}

fn decode_stream(data: &[u8], limit: usize) {
    let mut rest = data;
    loop {
        match frame::decode(rest, limit) {
            Decoded::Incomplete => return,
            Decoded::Frame(frame, used) => {
                check_used(rest, used, limit);
                let mut printed = Vec::new();
                frame.encode(&mut printed);
                assert_eq!(
                    printed,
                    &rest[..used],
                    "encoding the decoded {frame:?} does not give back its bytes"
                );
                assert_eq!(
                    frame::decode(&printed, limit),
                    Decoded::Frame(frame, used),
                    "decoding a printed frame again gives another frame"
                );
                rest = &rest[used..];
            }
            Decoded::Invalid(err, Some(used)) => {
                assert!(!err.is_fatal(), "{err:?} is fatal but told how to skip it");
                check_used(rest, used, limit);
                rest = &rest[used..];
            }
            Decoded::Invalid(err, None) => {
                assert!(
                    err.is_fatal(),
                    "{err:?} is not fatal but gave no way to skip it"
                );
                return;
            }
        }
    }
}

fn check_used(input: &[u8], used: usize, limit: usize) {
    assert!(
        (5..=input.len()).contains(&used) && used <= limit + 4,
        "decode used {used} of {} bytes (limit {limit})",
        input.len()
    );
    assert_eq!(
        frame::decode(&input[..used - 1], limit),
        Decoded::Incomplete,
        "a frame cut short by one byte is not incomplete"
    );
}

/// The fuzz entry point for the command grammar: parses `data` (lossily
/// decoded as UTF-8) as a command line, and asks the shell to complete it.
///
/// # Panics
///
/// When a blank line is not `None` or a non-blank one is, when printing the
/// parsed command and parsing that gives another command, or when a
/// completion starts outside the text or does not extend the word.
pub fn parse_line(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let blank = text.chars().all(|c| c == ' ' || c == '\t');
    match parse_command(&text) {
        None => assert!(blank, "{text:?} is not blank but parsed as nothing"),
        Some(command) => {
            assert!(!blank, "blank {text:?} parsed as {command:?}");
            let printed = command.to_string();
            assert_eq!(
                parse_command(&printed),
                Some(command),
                "{text:?} printed as {printed:?} parses differently"
            );
        }
    }
    let host = shared_host();
    let mut shell = Shell::default();
    for _ in 0..2 {
        let (start, items) = shell.completions(&text, host);
        assert!(
            text.is_char_boundary(start),
            "completion of {text:?} starts at {start}, not a character boundary in the text"
        );
        for item in &items {
            assert!(
                item.starts_with(&text[start..]),
                "candidate {item:?} does not extend {:?}",
                &text[start..]
            );
        }
        let _ = shell.run_line("shell echo", host, false);
    }
}

/// The [`fixture_host`] with [`DRIVE_LIMITS`] that every entry point here
/// shares.
fn shared_host() -> &'static Arc<Host> {
    static HOST: OnceLock<Arc<Host>> = OnceLock::new();
    HOST.get_or_init(|| Arc::new(fixture_host(DRIVE_LIMITS)))
}

/// A session of [`fixture_host`] with [`DRIVE_LIMITS`], as [`drive`] makes.
pub(crate) fn fixture_session(base: Instant) -> Session {
    Session::new(Arc::clone(shared_host()), SESSION_ID, base)
}

/// The plugins [`parse_config`] expands `%(builtins)s` to.
const CONFIG_BUILTINS: &[&str] = &["process", "python"];

/// The longest line [`parse_config`] accepts for an error or a warning:
/// each name and value in it shows at most [`crate::render::ECHO_LIMIT`]
/// characters and a message lists at most ten, so even a hostile file's
/// messages stay within a few thousand.
pub const MAX_MESSAGE: usize = 4_096;

/// The fuzz entry point for the configuration parser: parses `data`
/// (lossily decoded as UTF-8) as an ini file.
///
/// # Panics
///
/// When the error, or a warning, is not one line of at most
/// [`MAX_MESSAGE`] characters free of control characters, or when there are
/// more warnings than the core's bound (ten) and the line counting
/// the rest.
pub fn parse_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Config::parse("fuzz.ini", &text, CONFIG_BUILTINS) {
        Ok(config) => {
            for plugin in shared_host().plugins() {
                if let Err(err) = config.check_settings(plugin) {
                    check_message(&err.to_string(), "error");
                }
            }
            let warnings = config.warnings(shared_host().plugins());
            assert!(
                warnings.len() <= crate::config::MAX_WARNINGS + 1,
                "{} warnings",
                warnings.len()
            );
            for warning in &warnings {
                check_message(&warning.to_string(), "warning");
            }
        }
        Err(err) => check_message(&err.to_string(), "error"),
    }
}

fn check_message(message: &str, what: &str) {
    let length = message.chars().count();
    assert!(
        length <= MAX_MESSAGE,
        "a {what} of {length} characters: {:?}…",
        message.chars().take(300).collect::<String>()
    );
    assert!(
        !message.chars().any(char::is_control),
        "a {what} with a control character: {message:?}"
    );
}
