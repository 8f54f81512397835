//! Structured results: what a session that asked for them (`WantData`)
//! sends with every command, and that nobody else gets them.

use super::*;

/// A framed peer that has asked for structured results.
fn wanting_data() -> Peer {
    let mut peer = Peer::framed();
    peer.send_frame(Frame::WantData { text: true });
    assert_eq!(peer.frames(), [], "WantData has no answer of its own");
    peer
}

/// The one structured result among `frames`, parsed (the pieces of all
/// `Data` frames concatenated).
fn record(frames: &[Frame]) -> serde_json::Value {
    let json: String = frames
        .iter()
        .filter_map(|frame| match frame {
            Frame::Data(piece) => Some(piece.as_str()),
            _ => None,
        })
        .collect();
    serde_json::from_str(&json).unwrap_or_else(|err| panic!("{err}: {json:.200}"))
}

#[test]
fn a_call_answered_with_a_report_sends_its_data_before_the_prompt() {
    let mut peer = wanting_data();
    peer.enter("process");
    peer.send_frame(Frame::Line("pid".into()));
    let call = peer.call();
    assert!(call.wants_data);
    let completion = Completion::Report {
        text: "4242\n".into(),
        data: Some(r#"{"pid":4242}"#.into()),
        files: Vec::new(),
    };
    peer.complete(call.id, completion);
    let frames = peer.frames();
    assert_eq!(frames[0], Frame::Output("4242\n".into()));
    assert!(matches!(frames[1], Frame::Data(_)));
    assert_eq!(frames.last(), Some(&Frame::Prompt(PROCESS.into())));
    assert_eq!(
        record(&frames),
        serde_json::json!({
            "schema": 1, "shell": "process", "command": "pid", "ok": true,
            "data": {"pid": 4242},
        })
    );
}

#[test]
fn text_only_output_becomes_data_carrying_the_text() {
    let mut peer = wanting_data();
    peer.enter("echo");
    peer.send_frame(Frame::Line("echo hi".into()));
    let call = peer.call();
    peer.complete(call.id, Completion::Output("hi\n".into()));
    let record = record(&peer.frames());
    assert_eq!(record["ok"], true);
    assert_eq!(record["data"], serde_json::json!({"text": "hi\n"}));
}

#[test]
fn a_failed_call_is_not_ok_and_carries_the_message() {
    let mut peer = wanting_data();
    peer.enter("process");
    peer.send_frame(Frame::Line("pid".into()));
    let call = peer.call();
    peer.complete(call.id, Completion::Error("no such thing".into()));
    let frames = peer.frames();
    assert_eq!(frames[0], Frame::Error("*** no such thing".into()));
    let record = record(&frames);
    assert_eq!(record["ok"], false);
    assert_eq!(record["error"], "no such thing");
    assert!(record.get("data").is_none());
}

#[test]
fn a_call_given_up_on_is_reported_as_failed() {
    let mut peer = wanting_data();
    peer.enter("echo");
    peer.send_frame(Frame::Line("slow".into()));
    let _call = peer.call();
    peer.wait(Limits::default().call_timeout);
    let record = record(&peer.frames());
    assert_eq!(record["ok"], false);
    assert!(
        record["error"].as_str().unwrap().contains("did not answer"),
        "{record}"
    );
}

#[test]
fn plugins_is_data_with_every_plugin_and_its_commands() {
    let mut peer = wanting_data();
    peer.send_frame(Frame::Line("plugins".into()));
    let record = record(&peer.frames());
    assert_eq!(record["shell"], "ispyd");
    let plugins = record["data"]["plugins"].as_array().unwrap();
    let process = plugins.iter().find(|p| p["name"] == "process").unwrap();
    assert_eq!(process["enabled"], true);
    assert!(
        process["commands"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "pid")
    );
}

#[test]
fn builtins_give_data_and_refusals_are_errors() {
    let mut peer = wanting_data();
    peer.send_frame(Frame::Line("shell process".into()));
    let entered = record(&peer.frames());
    assert_eq!(entered["data"], serde_json::json!({"shell": "process"}));
    assert_eq!(entered["shell"], "ispyd", "the shell the command ran in");
    peer.send_frame(Frame::Line("frobnicate".into()));
    let unknown = record(&peer.frames());
    assert_eq!(unknown["ok"], false);
    assert!(unknown["error"].as_str().unwrap().contains("frobnicate"));
    peer.send_frame(Frame::Line("help pid".into()));
    let help = record(&peer.frames());
    assert!(help["data"]["text"].as_str().unwrap().contains("id"));
}

#[test]
fn an_empty_line_has_no_result() {
    let mut peer = wanting_data();
    peer.send_frame(Frame::Line(String::new()));
    assert_eq!(peer.frames(), [Frame::Prompt(ROOT.into())]);
}

#[test]
fn without_asking_no_data_is_sent_nor_made() {
    let mut peer = Peer::framed();
    peer.send_frame(Frame::Line("plugins".into()));
    let frames = peer.frames();
    assert!(!frames.iter().any(|f| matches!(f, Frame::Data(_))));
    peer.enter("process");
    peer.send_frame(Frame::Line("pid".into()));
    assert!(!peer.call().wants_data);
}

#[test]
fn a_result_larger_than_a_frame_is_split_and_concatenates() {
    let mut peer = wanting_data();
    peer.enter("echo");
    peer.send_frame(Frame::Line("echo x".into()));
    let call = peer.call();
    let big = "é".repeat(MAX_FRAME);
    let data = serde_json::json!({ "big": big }).to_string();
    peer.complete(
        call.id,
        Completion::Report {
            text: String::new(),
            data: Some(data),
            files: Vec::new(),
        },
    );
    let frames = peer.frames();
    let pieces = frames
        .iter()
        .filter(|f| matches!(f, Frame::Data(_)))
        .count();
    assert!(pieces >= 2, "{pieces} data frames");
    assert_eq!(record(&frames)["data"]["big"], big.as_str());
}

#[test]
fn a_takeover_says_it_began_and_its_lines_have_no_result() {
    let mut peer = wanting_data();
    peer.start_takeover("hello\n", "> ");
    let began = record(&peer.frames());
    assert_eq!(began["data"], serde_json::json!({"takeover": "takeover"}));
    peer.send_frame(Frame::Line("1+1".into()));
    let feed = peer.feed();
    peer.complete(
        feed.id,
        Completion::Interactive {
            output: "2\n".into(),
            prompt: "> ".into(),
        },
    );
    let frames = peer.frames();
    assert!(
        !frames.iter().any(|f| matches!(f, Frame::Data(_))),
        "{frames:?}"
    );
}

#[test]
fn want_data_in_text_mode_is_just_an_unknown_line() {
    let mut peer = Peer::greeted();
    let mut bytes = Vec::new();
    Frame::WantData { text: true }.encode(&mut bytes);
    bytes.push(b'\n');
    peer.send(bytes);
    let text = peer.text();
    assert!(text.starts_with("*** "), "{text:?}");
}

#[test]
fn data_only_leaves_out_the_text_of_commands_but_not_their_errors() {
    let mut peer = Peer::framed();
    peer.send_frame(Frame::WantData { text: false });
    peer.send_frame(Frame::Line("plugins".into()));
    let frames = peer.frames();
    assert!(
        !frames.iter().any(|f| matches!(f, Frame::Output(_))),
        "{frames:?}"
    );
    assert!(record(&frames)["data"]["plugins"].is_array());
    peer.enter("process");
    peer.send_frame(Frame::Line("pid".into()));
    let call = peer.call();
    let completion = Completion::Report {
        text: "4242\n".into(),
        data: Some(r#"{"pid":4242}"#.into()),
        files: Vec::new(),
    };
    peer.complete(call.id, completion);
    let frames = peer.frames();
    assert!(
        !frames.iter().any(|f| matches!(f, Frame::Output(_))),
        "{frames:?}"
    );
    assert_eq!(record(&frames)["data"]["pid"], 4242);
    peer.send_frame(Frame::Line("nonsense".into()));
    let frames = peer.frames();
    assert!(
        matches!(&frames[0], Frame::Error(e) if e.contains("nonsense")),
        "{frames:?}"
    );
}

#[test]
fn data_only_still_shows_a_takeover() {
    let mut peer = Peer::framed();
    peer.send_frame(Frame::WantData { text: false });
    peer.start_takeover("hello\n", "> ");
    let frames = peer.frames();
    assert!(
        frames.contains(&Frame::Output("hello\n".into())),
        "{frames:?}"
    );
}
