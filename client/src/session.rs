//! Drives one connected session: shows what the server sends and answers
//! each `Prompt` with a line from the input.
//!
//! A reply is complete when its `Prompt` (or a `Close`) arrives: only then is
//! the next line read, so piped input is sent one line per reply and output
//! stays in order. The remote end can only end the session, never ispy: every
//! way out returns to the local shell, except the end of piped input.

use ispyd_core::Frame;

use crate::console::Console;
use crate::files::{Saved, Saver};
use crate::input::{Input, Typed};
use crate::remote::{Incoming, SessionError, Shared};

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// The input ran out (piped stdin): ispy should exit rather than go back
    /// to the local shell.
    pub input_ended: bool,
    /// The session ended abnormally (bad frames, lost connection); it
    /// counts against the exit status.
    pub failed: bool,
}

/// Runs the session on the connection in `conn` until it ends, saving the
/// files commands send with `files`, then drops the connection and saves
/// the history.
pub fn run(conn: &Shared, input: &mut Input, console: &mut Console, files: &mut Saver) -> Ended {
    let ended = drive(conn, input, console, files);
    if let Some(saved) = files.finish() {
        show_saved(console, saved);
    }
    *conn.borrow_mut() = None;
    input.leave_takeover();
    input.save_history();
    ended
}

/// Says where a file was saved, or why it was not.
pub fn show_saved(console: &mut Console, saved: Saved) {
    match saved {
        Ok(file) => console.out(&format!("{file}\n")),
        Err(why) => console.err_line(&format!("ispy: {why}")),
    }
}

fn drive(conn: &Shared, input: &mut Input, console: &mut Console, files: &mut Saver) -> Ended {
    let back = |failed| Ended {
        input_ended: false,
        failed,
    };
    loop {
        // The borrow ends before any line is read: the completer needs it.
        let Some(incoming) = conn.borrow_mut().as_mut().map(|c| c.next()) else {
            return back(false);
        };
        let frame = match incoming {
            Ok(Incoming::Frame(frame)) => frame,
            Ok(Incoming::Skipped(err)) => {
                console.err_line(&format!("ispy: ignored a bad frame from the server: {err}"));
                continue;
            }
            Ok(Incoming::InterruptSent) => {
                console.err_line(
                    " Interrupting… (Ctrl-C again, before the server answers, closes the connection)",
                );
                continue;
            }
            Err(err) => {
                console.err_line(&err.to_string());
                // Ctrl-C is the user's choice, not a failure.
                return back(err != SessionError::Interrupted);
            }
        };
        if let Some(saved) = files.see(&frame) {
            show_saved(console, saved);
        }
        match frame {
            Frame::Output(text) => console.out(&text),
            Frame::Progress(text) => console.progress(&text),
            Frame::Error(text) => console.err_line(&text),
            Frame::Interactive(name) => input.enter_takeover(&name),
            Frame::InteractiveEnd => input.leave_takeover(),
            Frame::Close(reason) => {
                show_reason(console, &reason);
                return back(false);
            }
            Frame::Prompt(prompt) => {
                console.wipe_progress();
                let line = loop {
                    match input.read_line(&prompt) {
                        Typed::Interrupted => {}
                        Typed::Line(line) => break Frame::Line(line),
                        // On a terminal Ctrl-D leaves the current shell or
                        // takeover; the server decides what that means.
                        Typed::Eof if input.is_interactive() => break Frame::Eof,
                        Typed::Eof => return finish(conn, console),
                    }
                };
                crate::interrupt::clear();
                let sent = conn.borrow_mut().as_mut().map(|c| c.send(&line));
                if let Some(Err(err)) = sent {
                    return after_send_failed(conn, console, &err);
                }
            }
            // Late completion answers, data (never asked for here), and
            // frames only a client sends, mean nothing here.
            Frame::Candidates { .. }
            | Frame::Data(_)
            | Frame::Line(_)
            | Frame::Complete(_)
            | Frame::Eof
            | Frame::WantData { .. }
            | Frame::WantFiles
            | Frame::File { .. }
            | Frame::Interrupt => {}
        }
    }
}

/// The end of piped input while connected: half-close so the server answers
/// what it has and closes, show the rest, and tell ispy to exit.
fn finish(conn: &Shared, console: &mut Console) -> Ended {
    // Closing without a `Close` is a fine answer to a half-close.
    let failed = half_close_and_drain(conn, console, |err, console| match err {
        SessionError::Closed => false,
        err => {
            console.err_line(&err.to_string());
            true
        }
    });
    Ended {
        input_ended: true,
        failed,
    }
}

/// A line could not be sent: the server has probably closed, maybe after
/// saying why in a `Close` frame still to be read.
fn after_send_failed(conn: &Shared, console: &mut Console, err: &SessionError) -> Ended {
    let failed = half_close_and_drain(conn, console, |_, console| {
        console.err_line(&err.to_string());
        true
    });
    Ended {
        input_ended: false,
        failed,
    }
}

/// Half-closes, shows what the server still sends and its `Close` reason.
/// If the connection ends otherwise, `on_error` reports it and says whether
/// that counts as a failure.
fn half_close_and_drain(
    conn: &Shared,
    console: &mut Console,
    on_error: impl FnOnce(SessionError, &mut Console) -> bool,
) -> bool {
    if let Some(c) = conn.borrow_mut().as_mut() {
        c.finish_input();
    }
    match drain(conn, console) {
        Ok(reason) => {
            show_reason(console, &reason);
            false
        }
        Err(err) => on_error(err, console),
    }
}

/// Shows output until the server closes; the `Close` reason, or why the
/// connection ended without one. Prompts are not answered.
fn drain(conn: &Shared, console: &mut Console) -> Result<String, SessionError> {
    loop {
        let Some(incoming) = conn.borrow_mut().as_mut().map(|c| c.next()) else {
            return Err(SessionError::Closed);
        };
        match incoming? {
            Incoming::Frame(Frame::Output(text)) => console.out(&text),
            Incoming::Frame(Frame::Error(text)) => console.err_line(&text),
            Incoming::Frame(Frame::Close(reason)) => return Ok(reason),
            Incoming::Frame(_) => {}
            Incoming::Skipped(err) => {
                console.err_line(&format!("ispy: ignored a bad frame from the server: {err}"));
            }
            Incoming::InterruptSent => {}
        }
    }
}

fn show_reason(console: &mut Console, reason: &str) {
    if !reason.is_empty() {
        console.err_line(reason);
    }
}

/// Protocol tests: a thread plays the server to check how a session copes
/// with a peer that misbehaves or closes.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::capture;
    use crate::remote::Connection;
    use crate::testutil::TempDir;
    use ispyd_core::{Address, Decoded, decode};
    use ispyd_std::stream::Stream;
    use std::cell::RefCell;
    use std::io::{Read as _, Write};
    use std::os::unix::net::UnixStream;
    use std::rc::Rc;
    use std::thread;
    use std::time::Duration;

    fn frames(list: &[Frame]) -> Vec<u8> {
        let mut out = Vec::new();
        for frame in list {
            frame.encode(&mut out);
        }
        out
    }

    /// Reads client frames until `want` lines arrived or the client closed;
    /// the `WantFiles` that comes first is checked and left out.
    fn read_lines(peer: &mut UnixStream, want: usize) -> Vec<Frame> {
        let mut buf = Vec::new();
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            while let Decoded::Frame(frame, used) = decode(&buf, 1 << 16) {
                buf.drain(..used);
                if frame == Frame::WantFiles {
                    assert!(got.is_empty(), "WantFiles comes before any line");
                    continue;
                }
                got.push(frame);
            }
            if got.len() >= want {
                return got;
            }
            match peer.read(&mut chunk) {
                Ok(0) | Err(_) => return got,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn session(
        stdin: &'static str,
        server: impl FnOnce(&mut UnixStream) + Send + 'static,
    ) -> (Ended, String, String) {
        let dir = TempDir::new();
        session_saving_in(&dir, stdin, server)
    }

    fn session_saving_in(
        dir: &TempDir,
        stdin: &'static str,
        server: impl FnOnce(&mut UnixStream) + Send + 'static,
    ) -> (Ended, String, String) {
        let (client, mut peer) = UnixStream::pair().unwrap();
        let handle = thread::spawn(move || {
            let mut hello = [0u8; 8];
            peer.read_exact(&mut hello).unwrap();
            peer.write_all(b"(ispyd:99) \0ISPY/1\n").unwrap();
            server(&mut peer);
        });
        let conn = Connection::handshake(
            Stream::Unix(client),
            &Address::Unix("/t.sock".into()),
            Duration::from_secs(5),
        )
        .unwrap();
        let shared: Shared = Rc::new(RefCell::new(Some(conn)));
        let mut input = Input::piped(Box::new(stdin.as_bytes()));
        let (mut console, out, err) = capture::console();
        let mut files = Saver::new(dir.path());
        let ended = run(&shared, &mut input, &mut console, &mut files);
        handle.join().unwrap();
        assert!(shared.borrow().is_none());
        (ended, out.text(), err.text())
    }

    #[test]
    fn protocol_piped_lines_wait_for_each_prompt_and_end_with_half_close() {
        let (ended, out, err) = session("pid\n", |peer| {
            peer.write_all(&frames(&[Frame::Prompt("(ispyd:99) ".into())]))
                .unwrap();
            assert_eq!(read_lines(peer, 1), vec![Frame::Line("pid".into())]);
            peer.write_all(&frames(&[
                Frame::Output("99\n".into()),
                Frame::Error("*** warning".into()),
                Frame::Prompt("(ispyd:99) ".into()),
            ]))
            .unwrap();
            // The client sends nothing more and half-closes.
            assert_eq!(read_lines(peer, 1), vec![]);
            peer.write_all(&frames(&[Frame::Close("bye".into())]))
                .unwrap();
        });
        assert_eq!(
            ended,
            Ended {
                input_ended: true,
                failed: false
            }
        );
        assert_eq!(out, "99\n");
        assert_eq!(err, "*** warning\nbye\n");
    }

    #[test]
    fn protocol_files_are_saved_from_their_pieces_and_named_on_stdout() {
        let dir = TempDir::new();
        let (ended, out, err) = session_saving_in(&dir, "profile 1\n", |peer| {
            peer.write_all(&frames(&[Frame::Prompt("(python:99) ".into())]))
                .unwrap();
            assert_eq!(read_lines(peer, 1), vec![Frame::Line("profile 1".into())]);
            let piece = |bytes: &[u8]| Frame::File {
                name: "profile-99-20261202-061500.svg".into(),
                bytes: bytes.to_vec(),
            };
            peer.write_all(&frames(&[
                Frame::Output("top\n".into()),
                piece(b"<svg>"),
                piece(b"</svg>"),
                Frame::File {
                    name: "../../etc/evil".into(),
                    bytes: b"x".to_vec(),
                },
                Frame::Prompt("(python:99) ".into()),
            ]))
            .unwrap();
            assert_eq!(read_lines(peer, 1), vec![]);
        });
        assert!(!ended.failed, "{err}");
        let saved = dir.path().join("profile-99-20261202-061500.svg");
        assert_eq!(std::fs::read(&saved).unwrap(), b"<svg></svg>");
        assert_eq!(out, format!("top\nsaved {} (11 bytes)\n", saved.display()));
        assert!(err.contains("ignored a bad frame"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn protocol_garbage_after_hello_ends_the_session_with_the_problem_named() {
        let (ended, out, err) = session("pid\n", |peer| {
            peer.write_all(b"\0\0\0\0").unwrap();
        });
        assert!(ended.failed && !ended.input_ended);
        assert_eq!(out, "");
        assert_eq!(
            err,
            "The server sent a bad frame (frame of length 0 has no type byte); connection closed.\n"
        );
    }

    #[test]
    fn protocol_close_mid_frame_says_connection_closed() {
        let (ended, _, err) = session("pid\n", |peer| {
            peer.write_all(b"\0\0\0\x09\x81abc").unwrap();
        });
        assert!(ended.failed && !ended.input_ended);
        assert_eq!(err, "Connection closed by the server.\n");
    }

    #[test]
    fn protocol_close_frame_returns_to_the_local_shell_with_its_reason() {
        let (ended, _, err) = session("exit\nservers\n", |peer| {
            peer.write_all(&frames(&[Frame::Prompt(String::new())]))
                .unwrap();
            assert_eq!(read_lines(peer, 1), vec![Frame::Line("exit".into())]);
            peer.write_all(&frames(&[Frame::Close("Goodbye.".into())]))
                .unwrap();
        });
        assert_eq!(
            ended,
            Ended {
                input_ended: false,
                failed: false
            }
        );
        assert_eq!(err, "Goodbye.\n");
    }
}
