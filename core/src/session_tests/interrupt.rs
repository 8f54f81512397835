//! Ctrl-C from a framed client (`Interrupt`): what it does to a call, a
//! takeover's line, and nothing at all.

use super::*;

#[test]
fn an_interrupt_during_a_call_gives_up_on_it_and_gives_the_shell_back() {
    let mut peer = Peer::framed();
    let call = peer.start_slow();
    peer.send_frame(Frame::Interrupt);
    assert_eq!(peer.events(), [Event::Abandon(call.id)]);
    let frames = peer.frames();
    assert!(
        matches!(&frames[0], Frame::Error(e) if e.starts_with("*** Interrupted: gave up on 'slow'")),
        "{frames:?}"
    );
    assert_eq!(frames.last(), Some(&Frame::Prompt(ECHO.into())));
    peer.complete(call.id, Completion::Output("too late\n".into()));
    assert_eq!(peer.frames(), [], "the late result is dropped");
}

#[test]
fn an_interrupt_during_a_takeover_line_asks_for_the_code_to_be_stopped() {
    let mut peer = Peer::framed();
    peer.start_takeover("", ">>> ");
    peer.frames();
    peer.send_frame(Frame::Line("while True: pass".into()));
    let feed = peer.feed();
    peer.send_frame(Frame::Interrupt);
    assert_eq!(peer.events(), [Event::Interrupt(feed.id)]);
    assert_eq!(peer.frames(), [], "the interpreter answers, not the shell");
    peer.complete(
        feed.id,
        Completion::Interactive {
            output: "KeyboardInterrupt\n".into(),
            prompt: ">>> ".into(),
        },
    );
    assert_eq!(
        peer.frames(),
        [
            Frame::Output("KeyboardInterrupt\n".into()),
            Frame::Prompt(">>> ".into())
        ]
    );
}

#[test]
fn an_interrupt_with_nothing_running_does_nothing() {
    let mut peer = Peer::framed();
    peer.send_frame(Frame::Interrupt);
    assert_eq!(peer.frames(), []);
    assert!(peer.events().is_empty());
    peer.send_frame(Frame::Line("prompt".into()));
    assert!(
        matches!(&peer.frames()[0], Frame::Output(text) if text.contains("prompt is on")),
        "the session goes on"
    );
}

#[test]
fn an_interrupt_behind_a_line_waits_for_its_turn() {
    let mut peer = Peer::framed();
    peer.enter("echo");
    let mut bytes = Vec::new();
    Frame::Line("slow".into()).encode(&mut bytes);
    Frame::Line("echo next".into()).encode(&mut bytes);
    Frame::Interrupt.encode(&mut bytes);
    peer.send(bytes);
    let call = peer.call();
    assert_eq!(call.command, "slow", "the interrupt is for a later command");
    peer.complete(call.id, Completion::Output("done\n".into()));
    match peer.events().as_slice() {
        [Event::Call(next), Event::Abandon(id)] => {
            assert_eq!(next.command, "echo");
            assert_eq!(
                *id, next.id,
                "the interrupt reaches the line sent before it"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_hang_up_during_a_call_abandons_it_and_closes() {
    let mut peer = Peer::framed();
    let call = peer.start_slow();
    peer.session.handle_hangup(peer.now);
    peer.drain();
    assert_eq!(
        peer.events(),
        [Event::Abandon(call.id), Event::Close(CloseReason::PeerGone)]
    );
    assert_eq!(peer.frames(), [], "nobody is there to read a goodbye");
    assert!(peer.session.is_closed());
}

#[test]
fn end_of_input_during_a_call_still_answers_it() {
    let mut peer = Peer::framed();
    let call = peer.start_slow();
    peer.eof();
    assert!(
        peer.events().is_empty(),
        "a half-close waits for the answer"
    );
    peer.complete(call.id, Completion::Output("finally\n".into()));
    assert!(peer.frames().contains(&Frame::Output("finally\n".into())));
}

#[test]
fn tab_in_a_takeover_asks_the_interpreter_and_the_takeover_goes_on() {
    let mut peer = Peer::framed();
    peer.start_takeover("", ">>> ");
    peer.frames();
    peer.send_frame(Frame::Complete("os.pa".into()));
    let completing = peer.completing();
    assert_eq!(completing.text, "os.pa");
    peer.complete(
        completing.id,
        Completion::Candidates {
            start: 0,
            items: vec!["os.pardir".into(), "os.path".into()],
        },
    );
    assert_eq!(
        peer.frames(),
        [Frame::Candidates {
            start: 0,
            items: vec!["os.pardir".into(), "os.path".into()]
        }],
        "candidates only: no prompt, no output"
    );
    assert_eq!(peer.session.depth(), 3, "still in the takeover");
    peer.send_frame(Frame::Line("1".into()));
    assert!(matches!(peer.events().as_slice(), [Event::Feed(_)]));
}

#[test]
fn a_completion_given_up_on_answers_nothing_and_keeps_the_prompts_in_step() {
    let mut peer = Peer::framed();
    peer.start_takeover("", "(Pdb) ");
    peer.frames();
    peer.send_frame(Frame::Complete("he".into()));
    let completing = peer.completing();
    peer.wait(Limits::default().call_timeout);
    assert_eq!(peer.events(), [Event::Abandon(completing.id)]);
    assert_eq!(
        peer.frames(),
        [Frame::Candidates {
            start: 0,
            items: Vec::new()
        }],
        "the one answer the client waits for, and no prompt it did not ask for"
    );
    assert_eq!(peer.session.depth(), 3, "still in the takeover");
    peer.send_frame(Frame::Line("where".into()));
    assert!(matches!(peer.events().as_slice(), [Event::Feed(_)]));
}

#[test]
fn ctrl_d_during_a_takeover_line_given_up_on_leaves_one_level() {
    let mut peer = Peer::framed();
    peer.start_takeover("", ">>> ");
    peer.frames();
    assert_eq!(peer.session.depth(), 3);
    peer.send_frame(Frame::Line("time.sleep(60)".into()));
    let feed = peer.feed();
    peer.send_frame(Frame::Eof);
    assert!(peer.events().is_empty(), "the line runs on");
    peer.wait(Duration::from_secs(10));
    assert_eq!(peer.events(), [Event::Abandon(feed.id)]);
    let frames = peer.frames();
    assert!(
        matches!(&frames[0], Frame::Error(e)
            if e.starts_with("*** The line did not finish within 10 s in 'takeover' (echo plugin): \
                              it is still running, or waiting for the echo lock")),
        "{frames:?}"
    );
    assert_eq!(
        frames[frames.len() - 2..],
        [Frame::Prompt(ECHO.into()), Frame::Prompt(ECHO.into())],
        "one prompt for the line, one for the Ctrl-D"
    );
    assert_eq!(
        peer.session.depth(),
        2,
        "the give-up left the takeover; the Ctrl-D meant for it is spent"
    );
    assert!(!peer.session.is_closed());
    peer.send_frame(Frame::Eof);
    assert_eq!(
        peer.session.depth(),
        1,
        "the next Ctrl-D leaves the next level"
    );
}

#[test]
fn one_read_of_a_hundred_thousand_tiny_frames_is_taken_whole() {
    // Each frame taken from the front used to move every byte behind it:
    // 500 KB of five-byte frames cost 25 GB of copying. Now the read is
    // taken in one pass.
    let mut peer = Peer::framed();
    let mut bytes = Vec::new();
    for _ in 0..100_000 {
        Frame::WantFiles.encode(&mut bytes);
    }
    Frame::Line("prompt".into()).encode(&mut bytes);
    peer.send(bytes);
    assert!(
        matches!(&peer.frames()[0], Frame::Output(text) if text.contains("prompt is on")),
        "every frame was taken, in order, and the session goes on"
    );
    assert_eq!(peer.session.buffered_input(), 0);
}
