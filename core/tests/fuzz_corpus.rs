//! Replays the committed fuzz corpus (`fuzz/corpus/TARGET/*`) through the
//! fuzz targets' entry points, on stable, in every `cargo test`.
//!
//! The named seeds are made here too ([`seeds`]); after changing them, or
//! [`Op`], run `cargo test -p ispyd-core --test fuzz_corpus -- --ignored`
//! to write them again. Inputs a fuzzer found (crashes that were fixed)
//! are added to the same folders by hand and replayed alongside.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "reading and writing the committed corpus files is what this test is for"
)]

use std::fs;
use std::path::PathBuf;

use ispyd_core::op::{self, Answer, ClientOp, LineChoice, Op};
use ispyd_core::{CLIENT_HELLO, Frame};

/// A fuzz target's entry point.
type Entry = fn(&[u8]);

/// The fuzz targets and the entry point each calls.
const TARGETS: &[(&str, Entry)] = &[
    ("frame_decode", op::decode_all),
    ("command_parse", op::parse_line),
    ("session_ops", op::drive_bytes),
    ("config_parse", op::parse_config),
    ("client_protocol", op::client_bytes),
];

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

#[test]
fn every_corpus_file_replays_cleanly() {
    for (target, entry) in TARGETS {
        let dir = corpus_dir(target);
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
            .map(|entry| entry.expect("directory entry").path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} holds no corpus", dir.display());
        for file in files {
            let data = fs::read(&file).expect("corpus file");
            if let Err(panic) = std::panic::catch_unwind(|| entry(&data)) {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                panic!("{target} fails on {}: {message}", file.display());
            }
        }
    }
}

#[test]
fn committed_seeds_match_their_generator() {
    for (target, name, data) in seeds() {
        let path = corpus_dir(target).join(name);
        let committed = fs::read(&path)
            .unwrap_or_else(|err| panic!("{}: {err}; regenerate with --ignored", path.display()));
        assert_eq!(committed, data, "{} is stale; regenerate", path.display());
    }
}

#[test]
fn session_seeds_decode_to_their_operations() {
    for (name, ops) in session_seeds() {
        assert_eq!(op::ops_from_bytes(&encode_ops(&ops)), ops, "seed {name}");
    }
    for (name, ops) in client_seeds() {
        assert_eq!(
            op::client_ops_from_bytes(&encode_client_ops(&ops)),
            ops,
            "seed {name}"
        );
    }
}

#[test]
#[ignore = "writes fuzz/corpus; run with --ignored after changing the seeds or Op"]
fn write_seed_corpus() {
    for (target, name, data) in seeds() {
        let dir = corpus_dir(target);
        fs::create_dir_all(&dir).expect("corpus folder");
        fs::write(dir.join(name), data).expect("seed file");
    }
}

/// Every named seed: target, file name, bytes.
fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut seeds = Vec::new();
    for (name, data) in frame_seeds() {
        seeds.push(("frame_decode", name, data));
    }
    for (name, line) in command_seeds() {
        seeds.push(("command_parse", name, line.to_vec()));
    }
    for (name, ops) in session_seeds() {
        seeds.push(("session_ops", name, encode_ops(&ops)));
    }
    for (name, text) in config_seeds() {
        seeds.push(("config_parse", name, text.into_bytes()));
    }
    for (name, ops) in client_seeds() {
        seeds.push(("client_protocol", name, encode_client_ops(&ops)));
    }
    seeds
}

fn frames(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for frame in frames {
        frame.encode(&mut out);
    }
    out
}

fn frame_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let line = |text: &str| Frame::Line(text.to_owned());
    let mut cut = frames(&[line("shell process")]);
    cut.pop();
    vec![
        (
            "client_frames",
            frames(&[
                line("shell process"),
                Frame::Complete("sh".into()),
                Frame::Eof,
            ]),
        ),
        (
            "server_frames",
            frames(&[
                Frame::Output("4242\n".into()),
                Frame::Error("*** Unknown syntax: x".into()),
                Frame::Prompt("(ispyd:4242) ".into()),
                Frame::Prompt(String::new()),
                Frame::Candidates {
                    start: 6,
                    items: vec!["process".into(), "python".into()],
                },
                Frame::Interactive("console".into()),
                Frame::InteractiveEnd,
                Frame::Close("bye".into()),
            ]),
        ),
        (
            "candidates_edge_cases",
            [
                frames(&[Frame::Candidates {
                    start: 0,
                    items: vec![],
                }]),
                vec![0, 0, 0, 7, 0x84, 0, 0, 0, 1, b'\n', b'\n'],
                vec![0, 0, 0, 3, 0x84, 0, 1],
            ]
            .concat(),
        ),
        (
            "skippable_errors_then_line",
            [
                vec![0, 0, 0, 2, 0x42, b'x'],
                vec![0, 0, 0, 3, 0x01, 0xff, 0xfe],
                vec![0, 0, 0, 2, 0x03, b'!'],
                frames(&[line("pid")]),
            ]
            .concat(),
        ),
        ("oversized_length", vec![0xff, 0xff, 0xff, 0xff, 0x01]),
        (
            "just_over_session_limit",
            vec![0, 0, 0x04, 0x02, 0x01, b'x'],
        ),
        (
            "zero_length",
            [frames(&[line("a")]), vec![0, 0, 0, 0]].concat(),
        ),
        ("cut_short", cut),
        (
            "handshake_then_frames",
            [CLIENT_HELLO.to_vec(), frames(&[line("help"), Frame::Eof])].concat(),
        ),
    ]
}

fn command_seeds() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("shell", b"shell process"),
        ("question_mark", b"?shell"),
        ("bang_space", b"! process"),
        ("spaces_around", b"  modules  os.*  "),
        ("tabs", b"help\tshell\t"),
        ("blank", b" \t "),
        ("completion_word", b"prompt o"),
        ("invalid_utf8", b"echo \xff\xfe \xc3\x28"),
        ("unicode", "echo ünïcödé 😀\u{3000}x".as_bytes()),
        ("nested_marks", b"? ?!"),
        ("hello_as_text", b"\0ISPY/1"),
    ]
}

fn session_seeds() -> Vec<(&'static str, Vec<Op>)> {
    use LineChoice::*;
    let line = |line| Op::Line { line, crlf: false };
    let crlf = |line| Op::Line { line, crlf: true };
    vec![
        (
            "text_pid_then_eof",
            vec![
                line(ShellProcess),
                line(Pid),
                Op::Answer(Answer::Natural),
                Op::Eof,
            ],
        ),
        (
            "telnet_crlf_and_refusals",
            vec![
                Op::Telnet,
                crlf(Help),
                crlf(Plugins),
                line(ShellLocked),
                line(ShellNope),
                line(Quit),
                line(Exit),
            ],
        ),
        (
            "framed_structured_results",
            vec![
                Op::Handshake,
                Op::WantData(false),
                Op::FramedLine(Plugins),
                Op::FramedLine(ShellProcess),
                Op::FramedLine(Pid),
                Op::Answer(Answer::Natural),
                Op::FramedLine(Junk),
                Op::Frame(Frame::Eof),
                Op::FramedLine(BangEcho),
                Op::FramedLine(Takeover),
                Op::Answer(Answer::Natural),
                Op::FramedLine(Block),
                Op::Answer(Answer::Fail),
                Op::Frame(Frame::WantData { text: true }),
            ],
        ),
        (
            "framed_interrupts",
            vec![
                Op::Handshake,
                Op::FramedLine(ShellEcho),
                Op::FramedLine(Slow),
                Op::Interrupt,
                Op::FramedLine(Takeover),
                Op::Answer(Answer::Natural),
                Op::FramedLine(Block),
                Op::Interrupt,
                Op::Answer(Answer::Continue),
                Op::Interrupt,
                Op::Advance(6000),
                Op::Frame(Frame::Eof),
            ],
        ),
        (
            "framed_takeover",
            vec![
                Op::Handshake,
                Op::FramedLine(BangEcho),
                Op::FramedComplete(Takeover),
                Op::FramedLine(Takeover),
                Op::Answer(Answer::Natural),
                Op::FramedLine(Block),
                Op::Answer(Answer::Natural),
                Op::Frame(Frame::Eof),
                Op::Answer(Answer::Natural),
                Op::Frame(Frame::Eof),
                Op::Frame(Frame::Eof),
            ],
        ),
        (
            "slow_call_abandoned_then_idle",
            vec![
                line(ShellEcho),
                line(Slow),
                line(Echo),
                Op::Advance(5000),
                Op::Answer(Answer::Late),
                Op::Answer(Answer::Natural),
                Op::Advance(60000),
                Op::Advance(1000),
            ],
        ),
        (
            "file_bigger_than_a_frame_to_a_client_that_saves_files",
            vec![
                Op::Handshake,
                Op::WantFiles,
                Op::FramedLine(ShellEcho),
                Op::FramedLine(File),
                Op::Answer(Answer::Natural),
                Op::FramedLine(File),
                Op::Reading(false),
                Op::Answer(Answer::Natural),
                Op::Advance(30000),
            ],
        ),
        (
            "long_call_reports_progress_then_is_interrupted",
            vec![
                Op::Handshake,
                Op::FramedLine(ShellEcho),
                Op::FramedLine(Slow),
                Op::Advance(4000),
                Op::Answer(Answer::Progress),
                Op::Advance(4000),
                Op::Answer(Answer::Progress),
                Op::Interrupt,
                Op::Advance(1000),
                Op::Answer(Answer::Natural),
            ],
        ),
        (
            "partial_writes_then_shutdown",
            vec![
                Op::WriteLimit(6),
                line(Help),
                Op::Handshake,
                Op::FramedLine(Big),
                Op::WriteLimit(u16::MAX),
                line(ShellEcho),
                line(Slow),
                Op::Shutdown,
            ],
        ),
        (
            "unread_output_hits_send_timeout",
            vec![
                Op::Reading(false),
                line(Help),
                Op::Advance(30000),
                Op::Advance(30000),
                line(Help),
            ],
        ),
        (
            "overlong_line",
            vec![line(ShellEcho), Op::Flood(5), line(Help)],
        ),
        (
            "invalid_utf8_line",
            vec![Op::Input(b"echo \xc3\x28\n".to_vec()), line(Plugins)],
        ),
        (
            "big_output_unread",
            vec![
                Op::Handshake,
                Op::FramedLine(ShellEcho),
                Op::FramedLine(Big),
                Op::Answer(Answer::Natural),
                Op::Reading(false),
                Op::FramedLine(Help),
                Op::FramedLine(Pid),
                Op::Reading(true),
            ],
        ),
        (
            "eof_while_call_pending",
            vec![
                line(ShellProcess),
                line(Pid),
                line(Help),
                Op::Eof,
                Op::Answer(Answer::Natural),
            ],
        ),
        (
            "prompt_off_takeover",
            vec![
                line(PromptOff),
                line(ShellEcho),
                line(Takeover),
                Op::Answer(Answer::Continue),
                line(Echo),
                Op::Answer(Answer::Finish),
                line(PromptOn),
            ],
        ),
        // Found by proptest: a call queued behind output the peer did not
        // read was abandoned as soon as the adapter took it.
        (
            "call_behind_unread_output",
            vec![
                line(BangEcho),
                line(Echo),
                line(Echo),
                Op::Reading(false),
                Op::Answer(Answer::Natural),
                Op::Advance(5000),
                Op::Reading(true),
            ],
        ),
        // The same when processing resumes after the output high-water
        // mark, once the peer reads: the call's timeout starts only when
        // the driver takes it.
        (
            "call_after_high_water_pause",
            vec![
                line(ShellEcho),
                line(Big),
                line(Slow),
                Op::Reading(false),
                Op::Answer(Answer::Natural),
                Op::Advance(6000),
                Op::Reading(true),
            ],
        ),
        (
            "framed_oversized_frame",
            vec![
                Op::Handshake,
                Op::Frame(Frame::InteractiveEnd),
                Op::Input(vec![0, 0, 0x10, 0, 0x01]),
            ],
        ),
    ]
}

/// Writes the bytes from which `arbitrary`'s derived `Op::arbitrary`, as
/// [`op::ops_from_bytes`] calls it, reads back `ops`. Covers the
/// operations the seeds use; [`session_seeds_decode_to_their_operations`]
/// checks it against the real decoder.
fn encode_ops(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        encode_op(op, &mut out);
    }
    out
}

/// An enum variant: a little-endian `u32` `v` chooses variant
/// `(v * count) >> 32`.
fn variant(index: usize, count: usize, out: &mut Vec<u8>) {
    let v = ((index as u64) << 32).div_ceil(count as u64);
    out.extend_from_slice(&u32::try_from(v).expect("index < count").to_le_bytes());
}

fn encode_op(op: &Op, out: &mut Vec<u8>) {
    const OPS: usize = 17;
    match op {
        Op::Input(bytes) => {
            variant(0, OPS, out);
            // A collection: each element preceded by a "more" flag.
            for &byte in bytes {
                out.extend_from_slice(&[1, byte]);
            }
            out.push(0);
        }
        Op::Line { line, crlf } => {
            variant(1, OPS, out);
            encode_line(*line, out);
            out.push(u8::from(*crlf));
        }
        Op::Telnet => variant(2, OPS, out),
        Op::Flood(n) => {
            variant(3, OPS, out);
            out.push(*n);
        }
        Op::Handshake => variant(4, OPS, out),
        Op::FramedLine(line) => {
            variant(5, OPS, out);
            encode_line(*line, out);
        }
        Op::FramedComplete(line) => {
            variant(6, OPS, out);
            encode_line(*line, out);
        }
        Op::Frame(frame) => {
            variant(7, OPS, out);
            let index = match frame {
                Frame::Eof => 2,
                Frame::WantData { .. } => 3,
                Frame::Interrupt => 4,
                Frame::WantFiles => 5,
                Frame::InteractiveEnd => 11,
                other => unimplemented!("seeds use frames without text, not {other:?}"),
            };
            variant(index, 16, out);
            if let Frame::WantData { text } = frame {
                out.push(u8::from(*text));
            }
        }
        Op::Eof => variant(8, OPS, out),
        Op::Advance(ms) => {
            variant(9, OPS, out);
            out.extend_from_slice(&ms.to_le_bytes());
        }
        Op::Answer(answer) => {
            variant(10, OPS, out);
            let index = match answer {
                Answer::Natural => 0,
                Answer::Fail => 1,
                Answer::Continue => 2,
                Answer::Finish => 3,
                Answer::Late => 4,
                Answer::Progress => 5,
            };
            variant(index, 6, out);
        }
        Op::Reading(reading) => {
            variant(11, OPS, out);
            out.push(u8::from(*reading));
        }
        Op::WriteLimit(limit) => {
            variant(12, OPS, out);
            out.extend_from_slice(&limit.to_le_bytes());
        }
        Op::Shutdown => variant(13, OPS, out),
        Op::WantData(text) => {
            variant(14, OPS, out);
            out.push(u8::from(*text));
        }
        Op::Interrupt => variant(15, OPS, out),
        Op::WantFiles => variant(16, OPS, out),
    }
}

fn encode_line(line: LineChoice, out: &mut Vec<u8>) {
    let index = LineChoice::ALL
        .iter()
        .position(|&l| l == line)
        .expect("every choice is in ALL");
    variant(index, LineChoice::ALL.len(), out);
}

fn config_seeds() -> Vec<(&'static str, String)> {
    let main = "[ispyd]\nlisten = /tmp/ispyd-%(pid)s.sock\n";
    let long = "v".repeat(3_000);
    vec![
        ("minimal", main.to_owned()),
        (
            "plugin_settings",
            format!("{main}[echo]\nsize = 3\ndelay = 0.5\nloud = yes\nlabel = x\nszie = 11\n"),
        ),
        (
            "plugin_setting_bad",
            format!("{main}[echo]\nsize = 11\nloud = maybe\n"),
        ),
        (
            "every_key",
            format!(
                "{main}plugins = %(builtins)s, debugger\nallow_remote = no\n\
                 allow_remote_gated = off\nmax_sessions = 4\nmax_line = 8192\n\
                 max_output = 1048576\nidle_timeout = 600\ncall_timeout = 2.5\n\
                 send_timeout = 30\nengine = mio\nworkers = 3\ndump_on = SIGUSR1, QUIT\n\
                 dump_file = /tmp/dump-%(pid)s.txt\nactivate_on = SIGUSR2\n\
                 [python:console]\nenabled = true\n[debugger]\nmax_tracebacks = 5\n"
            ),
        ),
        (
            "tcp_remote",
            "[ispyd]\nlisten = 0.0.0.0:7000\nallow_remote = yes\n".to_owned(),
        ),
        (
            "typo_of_listen",
            "[ispyd]\nlisen = /tmp/x\nplugns = process\n".to_owned(),
        ),
        ("no_main_section", "[process]\nenabled = true\n".to_owned()),
        ("key_before_section", "\u{2}=\n[ispyd]\n".to_owned()),
        ("syntax_error", "[ispyd\nlisten = /tmp/x\n".to_owned()),
        ("duplicate_key", format!("{main}listen = /tmp/y\n")),
        (
            "control_characters",
            "[is\u{1b}[2Jpyd]\nlisten = /tmp/x\n[\u{7}s]\n\r\u{0}k = 1\n".to_owned(),
        ),
        ("long_value", format!("{main}idle_timeout = {long}\n")),
        ("long_section", format!("{main}[{long}]\nenabled = true\n")),
        (
            "bad_values",
            format!("{main}max_line = -1\ncall_timeout = 1e99\ndump_on = SIGFOO\n"),
        ),
        (
            "many_sections",
            (0..60).fold(main.to_owned(), |text, i| {
                text + &format!("[s{i}]\nenabled = true\n")
            }),
        ),
        (
            "unknown_substitution",
            "[ispyd]\nlisten = /tmp/%(uid)s.sock\n".to_owned(),
        ),
    ]
}

fn client_seeds() -> Vec<(&'static str, Vec<ClientOp>)> {
    use ClientOp::{Abandon, AwaitCandidates, Complete, Eof, Greeting, Input, Line, Written};
    let server = |list: &[Frame]| Input(frames(list));
    let candidates = |start, items: &[&str]| Frame::Candidates {
        start,
        items: items.iter().map(|item| (*item).to_owned()).collect(),
    };
    let output = |text: &str| Frame::Output(text.to_owned());
    vec![
        (
            "session",
            vec![
                Greeting,
                server(&[output("4242\n"), Frame::Prompt("(ispyd:4242) ".into())]),
                Line(b"pid".to_vec()),
                Written(3),
                Written(1_000),
                server(&[Frame::Close("bye".into())]),
                server(&[output("after the close")]),
            ],
        ),
        (
            "completion_answered",
            vec![
                Greeting,
                Complete(b"sh".to_vec()),
                server(&[output("meanwhile"), candidates(0, &["shell"])]),
                AwaitCandidates,
            ],
        ),
        (
            "completion_given_up_then_late",
            vec![
                Greeting,
                Complete(b"sh".to_vec()),
                Abandon,
                Complete(b"pro".to_vec()),
                server(&[candidates(0, &["shell"]), candidates(0, &["process"])]),
            ],
        ),
        (
            "completion_outside_the_text",
            vec![
                Greeting,
                Complete("é".as_bytes().to_vec()),
                server(&[candidates(1, &["x"])]),
                Complete(b"ab".to_vec()),
                server(&[candidates(9, &[])]),
            ],
        ),
        (
            "unsolicited_candidates",
            vec![Greeting, server(&[candidates(0, &["x"])])],
        ),
        (
            "not_ispyd",
            vec![Input(b"SSH-2.0-OpenSSH_9.2p1\r\n".to_vec()), Eof],
        ),
        (
            "other_version",
            vec![Input(b"(ispyd:1) \0ISPY/2\n".to_vec())],
        ),
        (
            "refused_with_a_reason",
            vec![
                Input(b"*** ispyd: too many sessions (max_sessions = 1)\n".to_vec()),
                Eof,
            ],
        ),
        (
            "hello_in_pieces",
            vec![
                Input(b"(ispyd:7".to_vec()),
                Input(b"7) \0IS".to_vec()),
                Input(b"PY/1\n".to_vec()),
            ],
        ),
        (
            "cut_mid_frame",
            vec![Greeting, Input(vec![0, 0, 0, 9, 0x81, b'x']), Eof],
        ),
        (
            "bad_frames_skipped",
            vec![
                Greeting,
                Input(vec![0, 0, 0, 2, 0x99, b'x']),
                Input(vec![0, 0, 0, 3, 0x81, 0xff, 0xfe]),
                server(&[output("still here")]),
            ],
        ),
        (
            "oversized_frame",
            vec![Greeting, Input(vec![0xff, 0xff, 0xff, 0xff, 0x81])],
        ),
    ]
}

fn encode_client_ops(ops: &[ClientOp]) -> Vec<u8> {
    const OPS: usize = 9;
    let bytes = |index, data: &[u8], out: &mut Vec<u8>| {
        variant(index, OPS, out);
        for &byte in data {
            out.extend_from_slice(&[1, byte]);
        }
        out.push(0);
    };
    let mut out = Vec::new();
    for op in ops {
        match op {
            ClientOp::Input(data) => bytes(0, data, &mut out),
            ClientOp::Greeting => variant(1, OPS, &mut out),
            ClientOp::Frame(frame) => unimplemented!("seeds send frames as Input, not {frame:?}"),
            ClientOp::Eof => variant(3, OPS, &mut out),
            ClientOp::Complete(text) => bytes(4, text, &mut out),
            ClientOp::Abandon => variant(5, OPS, &mut out),
            ClientOp::AwaitCandidates => variant(6, OPS, &mut out),
            ClientOp::Line(text) => bytes(7, text, &mut out),
            ClientOp::Written(n) => {
                variant(8, OPS, &mut out);
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
    }
    out
}
