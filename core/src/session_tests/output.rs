//! One command's output is bounded by `max_output`, whatever the plugin
//! hands back.

use super::*;

fn small_output_peer() -> Peer {
    let mut peer = Peer::with_limits(Limits {
        max_output: 1024,
        ..Limits::default()
    });
    peer.text();
    peer
}

#[test]
fn output_past_max_output_is_cut_at_a_character_and_the_user_told() {
    let mut peer = small_output_peer();
    peer.send("shell echo\nslow\n");
    peer.text();
    let call = peer.call();
    // Two-byte characters straddle the limit.
    peer.complete(call.id, Completion::Output("é".repeat(5000)));
    let text = peer.text();
    let (kept, rest) = text
        .split_once('\n')
        .expect("the note on a line of its own");
    assert_eq!(kept, "é".repeat(512));
    assert_eq!(
        rest,
        format!(
            "*** Output cut at 1024 bytes (max_output); {} more bytes not shown.\n{ECHO}",
            10_000 - 1024
        )
    );
}

#[test]
fn a_takeover_line_is_bounded_too() {
    let mut peer = Peer::framed_with_limits(Limits {
        max_output: 1024,
        ..Limits::default()
    });
    peer.start_takeover("", ">>> ");
    peer.frames();
    peer.send_frame(Frame::Line("print('x' * 50_000)".into()));
    let feed = peer.feed();
    peer.complete(
        feed.id,
        Completion::Interactive {
            output: "x".repeat(50_000),
            prompt: ">>> ".into(),
        },
    );
    let shown: usize = peer
        .frames()
        .iter()
        .map(|frame| match frame {
            Frame::Output(text) => text.len(),
            _ => 0,
        })
        .sum();
    assert!(shown < 1024 + 200, "{shown} bytes shown");
}
