//! Long calls that report progress: shown to the client, kept alive past
//! `call_timeout`, and asked (not given up on) at a Ctrl-C.

use super::*;

#[test]
fn progress_is_a_frame_in_place_and_keeps_a_long_call_alive() {
    let mut peer = Peer::framed();
    let call = peer.start_slow();
    let timeout = Limits::default().call_timeout;
    for second in 1..=3 {
        peer.wait(timeout - Duration::from_millis(1));
        let reported =
            peer.session
                .handle_progress(call.id, &format!("{second} of 3\nsecond line"), peer.now);
        assert_eq!(reported, Ok(()));
        peer.drain();
        assert_eq!(peer.frames(), [Frame::Progress(format!("{second} of 3"))]);
        assert!(peer.events().is_empty(), "not given up on");
    }
    peer.complete(call.id, Completion::Output("done\n".into()));
    let frames = peer.frames();
    assert_eq!(frames[0], Frame::Output("done\n".into()));
    assert!(matches!(frames.last(), Some(Frame::Prompt(_))));
    assert_eq!(
        peer.session.handle_progress(call.id, "late", peer.now),
        Err(UnexpectedResult::Late(call.id))
    );
}

#[test]
fn after_progress_ctrl_c_asks_the_call_to_finish_instead_of_giving_up() {
    let mut peer = Peer::framed();
    let call = peer.start_slow();
    peer.session
        .handle_progress(call.id, "1 of 10", peer.now)
        .unwrap();
    peer.drain();
    peer.frames();
    peer.send_frame(Frame::Interrupt);
    assert_eq!(peer.events(), [Event::Interrupt(call.id)]);
    assert_eq!(peer.frames(), [], "no error, no prompt: the answer comes");
    peer.complete(call.id, Completion::Output("what was collected\n".into()));
    assert_eq!(
        peer.frames()[0],
        Frame::Output("what was collected\n".into())
    );
}

#[test]
fn a_call_without_progress_is_still_given_up_on_at_ctrl_c() {
    let mut peer = Peer::framed();
    let call = peer.start_slow();
    peer.send_frame(Frame::Interrupt);
    assert_eq!(peer.events(), [Event::Abandon(call.id)]);
}

#[test]
fn progress_in_text_mode_is_a_line_cut_to_a_status_line() {
    let mut peer = Peer::greeted();
    peer.send("shell echo\nslow\n");
    peer.text();
    let call = peer.call();
    let long = "x".repeat(1000);
    peer.session
        .handle_progress(call.id, &long, peer.now)
        .unwrap();
    peer.drain();
    assert_eq!(peer.text(), format!("{}\n", "x".repeat(200)));
}

#[test]
fn progress_for_a_call_never_made_is_refused() {
    let mut peer = Peer::framed();
    assert_eq!(
        peer.session.handle_progress(CallId(99), "?", peer.now),
        Err(UnexpectedResult::Unknown(CallId(99)))
    );
    assert_eq!(peer.frames(), []);
}
