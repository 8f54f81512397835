//! Properties of the session and the codecs, stated over the same
//! [`Op`] type the fuzzers use.

use std::time::Instant;

use ispyd_core::op::{self, Answer, LineChoice, Op, Transcript};
use ispyd_core::{Decoded, Frame, MAX_FRAME, decode};
use proptest::collection::vec;
use proptest::prelude::*;

/// The simulated clock's origin.
#[allow(
    clippy::disallowed_methods,
    reason = "the simulated clock needs one origin; a run only adds durations to it"
)]
fn origin() -> Instant {
    Instant::now()
}

/// Operations decoded from random bytes, as the session fuzzer makes them.
/// Most such sessions end early (random bytes are rarely a command), so
/// [`ops`] is the strategy that reaches calls and takeovers.
fn fuzz_ops() -> impl Strategy<Value = Vec<Op>> {
    vec(any::<u8>(), 0..2048).prop_map(|data| op::ops_from_bytes(&data))
}

/// One operation, weighted towards what keeps a session going: command
/// lines and answers.
fn one_op() -> impl Strategy<Value = Op> {
    let line = || prop::sample::select(LineChoice::ALL);
    let answer = prop_oneof![
        6 => Just(Answer::Natural),
        1 => Just(Answer::Fail),
        1 => Just(Answer::Continue),
        1 => Just(Answer::Finish),
        1 => Just(Answer::Late),
        1 => Just(Answer::Progress),
    ];
    prop_oneof![
        30 => (line(), any::<bool>()).prop_map(|(line, crlf)| Op::Line { line, crlf }),
        10 => line().prop_map(Op::FramedLine),
        3 => line().prop_map(Op::FramedComplete),
        20 => answer.prop_map(Op::Answer),
        5 => prop_oneof![4 => 0u16..100, 2 => 4000u16..6000, 1 => 60000u16..=u16::MAX]
            .prop_map(Op::Advance),
        1 => vec(any::<u8>(), 0..24).prop_map(Op::Input),
        2 => frame().prop_map(Op::Frame),
        1 => Just(Op::Handshake),
        1 => Just(Op::Telnet),
        1 => (0u8..6).prop_map(Op::Flood),
        1 => Just(Op::Eof),
        3 => any::<bool>().prop_map(Op::Reading),
        2 => prop_oneof![0u16..16, Just(u16::MAX)].prop_map(Op::WriteLimit),
        1 => Just(Op::Shutdown),
        2 => any::<bool>().prop_map(Op::WantData),
        2 => Just(Op::Interrupt),
    ]
}

/// Sessions of up to 60 operations. Half of them open with the handshake
/// and send their lines, raw bytes included, as frames; the others send
/// text. (Text in framed mode is mostly a fatal over-long frame; the
/// fuzzer and [`fuzz_ops`] cover that mix.)
fn ops() -> impl Strategy<Value = Vec<Op>> {
    (any::<bool>(), vec(one_op(), 0..60)).prop_map(|(framed, ops)| {
        let as_frame =
            |bytes: Vec<u8>| Op::Frame(Frame::Line(String::from_utf8_lossy(&bytes).into_owned()));
        let in_mode = |op: Op| match op {
            Op::Line { line, .. } if framed => Op::FramedLine(line),
            Op::Input(_) | Op::Telnet | Op::Flood(_) if framed => {
                as_frame(op.bytes().unwrap_or_default())
            }
            Op::FramedLine(line) if !framed => Op::Line { line, crlf: false },
            op => op,
        };
        let start = framed.then_some(Op::Handshake);
        start
            .into_iter()
            .chain(ops.into_iter().map(in_mode))
            .collect()
    })
}

/// The same operations, with every run of byte-sending operations joined
/// and cut again into reads of the given sizes (cycled). Everything else
/// stays where it was.
fn rechunk(ops: &[Op], sizes: &[usize]) -> Vec<Op> {
    let mut sizes = sizes.iter().copied().cycle();
    let mut out = Vec::new();
    let mut run = Vec::new();
    let mut flush = |run: &mut Vec<u8>, out: &mut Vec<Op>| {
        let mut rest = run.as_slice();
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(sizes.next().unwrap_or(1).clamp(1, rest.len()));
            out.push(Op::Input(chunk.to_vec()));
            rest = tail;
        }
        run.clear();
    };
    for op in ops {
        match op.bytes() {
            Some(bytes) => run.extend_from_slice(&bytes),
            None => {
                flush(&mut run, &mut out);
                out.push(op.clone());
            }
        }
    }
    flush(&mut run, &mut out);
    out
}

fn assert_same(left: &Transcript, right: &Transcript) {
    if left.sent != right.sent {
        let at = left
            .sent
            .iter()
            .zip(&right.sent)
            .position(|(a, b)| a != b)
            .unwrap_or(left.sent.len().min(right.sent.len()));
        let from = at.saturating_sub(40);
        panic!(
            "output differs at byte {at}:\n  {:?}\nvs\n  {:?}",
            String::from_utf8_lossy(&left.sent[from..(at + 40).min(left.sent.len())]),
            String::from_utf8_lossy(&right.sent[from..(at + 40).min(right.sent.len())]),
        );
    }
    assert_eq!(left.events, right.events);
    assert_eq!(left.closed, right.closed);
}

fn frame() -> impl Strategy<Value = Frame> {
    let text = || any::<String>();
    prop_oneof![
        text().prop_map(Frame::Line),
        text().prop_map(Frame::Complete),
        Just(Frame::Eof),
        text().prop_map(Frame::Output),
        text().prop_map(Frame::Error),
        text().prop_map(Frame::Prompt),
        (any::<u32>(), vec(text(), 0..4))
            .prop_map(|(start, items)| Frame::Candidates { start, items }),
        (any::<u32>(), vec("[a-z_.]{1,8}", 0..4))
            .prop_map(|(start, items)| Frame::Candidates { start, items }),
        text().prop_map(Frame::Interactive),
        Just(Frame::InteractiveEnd),
        text().prop_map(Frame::Close),
        text().prop_map(Frame::Data),
        text().prop_map(Frame::Progress),
        Just(Frame::Interrupt),
        any::<bool>().prop_map(|text| Frame::WantData { text }),
    ]
}

/// True for frames the wire form represents exactly: candidates hold no
/// newline, and one empty candidate would read back as none.
fn is_canonical(frame: &Frame) -> bool {
    match frame {
        Frame::Candidates { items, .. } => {
            items.iter().all(|item| !item.contains('\n')) && items != &[String::new()]
        }
        _ => true,
    }
}

fn encoded(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    frame.encode(&mut out);
    out
}

proptest! {
    #[test]
    fn any_split_of_the_input_gives_the_same_output(
        ops in ops(),
        sizes in vec(1usize..300, 1..8),
    ) {
        let base = origin();
        let whole = op::drive(&rechunk(&ops, &[usize::MAX]), base);
        let split = op::drive(&rechunk(&ops, &sizes), base);
        assert_same(&whole, &split);
        let original = op::drive(&ops, base);
        assert_same(&whole, &original);
    }

    #[test]
    fn partial_writes_of_any_size_give_the_same_output(
        ops in ops(),
        limit in prop_oneof![1 => 0u16..8, 3 => 8u16..600, 3 => 600u16..5000],
    ) {
        let base = origin();
        let whole = op::drive(&ops, base);
        let partial: Vec<Op> = std::iter::once(Op::WriteLimit(limit)).chain(ops).collect();
        assert_same(&whole, &op::drive(&partial, base));
    }

    #[test]
    fn every_session_that_ends_says_why(ops in ops()) {
        let transcript = op::drive(&ops, origin());
        let closes = transcript
            .events
            .iter()
            .filter(|event| matches!(event, ispyd_core::Event::Close(_)))
            .count();
        prop_assert_eq!(closes, usize::from(transcript.closed));
        prop_assert_eq!(transcript.close_reason().is_some(), transcript.closed);
    }

    #[test]
    fn random_operations_keep_the_invariants(ops in ops()) {
        op::drive(&ops, origin());
    }

    #[test]
    fn fuzz_shaped_operations_keep_the_invariants(ops in fuzz_ops()) {
        op::drive(&ops, origin());
    }

    #[test]
    fn frame_encode_decode_encode_is_stable(frame in frame()) {
        let bytes = encoded(&frame);
        let Decoded::Frame(first, used) = decode(&bytes, MAX_FRAME) else {
            panic!("{frame:?} does not decode");
        };
        prop_assert_eq!(used, bytes.len());
        if is_canonical(&frame) {
            prop_assert_eq!(&first, &frame);
        }
        let again = encoded(&first);
        prop_assert_eq!(decode(&again, MAX_FRAME), Decoded::Frame(first, again.len()));
    }

    #[test]
    fn a_stream_of_frames_decodes_back_in_order(frames in vec(frame(), 0..6)) {
        let frames: Vec<Frame> = frames.into_iter().filter(is_canonical).collect();
        let mut stream = Vec::new();
        for frame in &frames {
            frame.encode(&mut stream);
        }
        let mut rest = stream.as_slice();
        let mut decoded = Vec::new();
        while let Decoded::Frame(frame, used) = decode(rest, MAX_FRAME) {
            decoded.push(frame);
            rest = &rest[used..];
        }
        prop_assert!(rest.is_empty());
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(data in vec(any::<u8>(), 0..512)) {
        op::decode_all(&data);
    }

    #[test]
    fn decoding_frame_like_bytes_never_panics(
        len in 0u32..80,
        ty in prop_oneof![Just(0x01u8), Just(0x02), Just(0x03), Just(0x84), any::<u8>()],
        payload in vec(any::<u8>(), 0..80),
    ) {
        let mut data = len.to_be_bytes().to_vec();
        data.push(ty);
        data.extend_from_slice(&payload);
        op::decode_all(&data);
    }

    #[test]
    fn command_print_parse_is_stable(line in "[ \t?!a-z]{0,12}") {
        op::parse_line(line.as_bytes());
    }

    #[test]
    fn command_print_parse_is_stable_for_any_text(line in any::<String>()) {
        op::parse_line(line.as_bytes());
    }
}

/// A session through most features, whole and one byte at a time.
#[test]
fn byte_at_a_time_equals_whole_reads_for_a_scripted_session() {
    use LineChoice::*;
    let line = |line| Op::Line { line, crlf: false };
    let ops = vec![
        Op::Telnet,
        line(Help),
        Op::Line {
            line: ShellEcho,
            crlf: true,
        },
        line(Echo),
        line(Pid),
        Op::Answer(Answer::Natural),
        line(Takeover),
        line(Block),
        Op::Answer(Answer::Natural),
        Op::Answer(Answer::Natural),
        line(QuitTakeover),
        Op::Answer(Answer::Natural),
        line(Slow),
        line(Exit),
        Op::Advance(6000),
        Op::Answer(Answer::Late),
        line(Plugins),
        Op::Input(b"echo \xc3\x28\n".to_vec()),
        Op::Flood(8),
        Op::Eof,
    ];
    let base = origin();
    let whole = op::drive(&rechunk(&ops, &[usize::MAX]), base);
    let bytes = op::drive(&rechunk(&ops, &[1]), base);
    assert_same(&whole, &bytes);
    let text = String::from_utf8_lossy(&whole.sent);
    assert!(text.contains("did not answer within 5 s"), "{text}");
    assert!(text.ends_with("closing the session.\n"), "{text}");
    assert!(whole.closed);
}

/// The same in framed mode, with a takeover and an over-long frame.
#[test]
fn byte_at_a_time_equals_whole_reads_for_a_framed_session() {
    use LineChoice::*;
    let ops = vec![
        Op::Handshake,
        Op::FramedLine(BangEcho),
        Op::FramedComplete(Takeover),
        Op::FramedLine(Takeover),
        Op::Answer(Answer::Natural),
        Op::Frame(Frame::Line("1 + 1".into())),
        Op::Answer(Answer::Natural),
        Op::Frame(Frame::Eof),
        Op::Answer(Answer::Natural),
        Op::FramedLine(Big),
        Op::Frame(Frame::Output("from the client".into())),
        Op::Answer(Answer::Natural),
        Op::FramedLine(PromptOff),
        Op::Input(vec![0, 0, 0x10, 0, 0x01]),
    ];
    let base = origin();
    let whole = op::drive(&rechunk(&ops, &[usize::MAX]), base);
    let bytes = op::drive(&rechunk(&ops, &[1]), base);
    assert_same(&whole, &bytes);
    assert!(whole.closed);
}
