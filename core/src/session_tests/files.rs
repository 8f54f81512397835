//! Files a command sends (`File` frames): only to a client that asked for
//! them, after the text, split at the frame limit.

use super::*;
use crate::{Attachment, MAX_FRAME};

fn with_file(bytes: Vec<u8>) -> Completion {
    Completion::Report {
        text: "drawn\n".into(),
        data: None,
        files: vec![Attachment::new("profile-4242-20261202-061500.svg", bytes).unwrap()],
    }
}

#[test]
fn a_client_that_saves_files_gets_them_after_the_text_in_pieces() {
    let mut peer = Peer::framed();
    peer.send_frame(Frame::WantFiles);
    assert_eq!(peer.frames(), [], "WantFiles has no answer of its own");
    peer.enter("echo");
    peer.send_frame(Frame::Line("echo x".into()));
    let call = peer.call();
    assert!(call.wants_files);
    let bytes: Vec<u8> = (0..MAX_FRAME + 10).map(|i| (i % 251) as u8).collect();
    peer.complete(call.id, with_file(bytes.clone()));
    let frames = peer.frames();
    assert_eq!(frames[0], Frame::Output("drawn\n".into()));
    let mut got = Vec::new();
    for frame in &frames[1..frames.len() - 1] {
        let Frame::File { name, bytes } = frame else {
            panic!("not a file piece: {frame:?}");
        };
        assert_eq!(name, "profile-4242-20261202-061500.svg");
        got.extend_from_slice(bytes);
    }
    assert_eq!(
        frames.len(),
        4,
        "two pieces between the text and the prompt"
    );
    assert_eq!(got, bytes);
    assert_eq!(frames.last(), Some(&Frame::Prompt(ECHO.into())));
}

#[test]
fn an_empty_file_is_still_sent() {
    let mut peer = Peer::framed();
    peer.send_frame(Frame::WantFiles);
    peer.enter("echo");
    peer.send_frame(Frame::Line("echo x".into()));
    let call = peer.call();
    peer.complete(call.id, with_file(Vec::new()));
    let frames = peer.frames();
    assert!(
        frames.contains(&Frame::File {
            name: "profile-4242-20261202-061500.svg".into(),
            bytes: Vec::new()
        }),
        "{frames:?}"
    );
}

#[test]
fn a_client_that_did_not_ask_gets_no_files() {
    let mut peer = Peer::framed();
    peer.enter("echo");
    peer.send_frame(Frame::Line("echo x".into()));
    let call = peer.call();
    assert!(!call.wants_files);
    peer.complete(call.id, with_file(b"<svg/>".to_vec()));
    let frames = peer.frames();
    assert_eq!(
        frames,
        [Frame::Output("drawn\n".into()), Frame::Prompt(ECHO.into())]
    );
}

#[test]
fn bad_input_a_file_name_that_is_a_path_is_refused() {
    for name in ["../x", "/etc/passwd", ".hidden", "-rf", "a b", ""] {
        assert!(Attachment::new(name, Vec::new()).is_err(), "{name:?}");
    }
    // And a client never decodes one, whatever a server sends.
    let mut bytes = Vec::new();
    Frame::File {
        name: "../x".into(),
        bytes: b"x".to_vec(),
    }
    .encode(&mut bytes);
    assert!(matches!(
        crate::frame::decode(&bytes, MAX_FRAME),
        crate::Decoded::Invalid(crate::FrameError::Malformed(0x8a), Some(_))
    ));
}
