//! The session's unsent output, and how replies are rendered into it in
//! each wire mode.
//!
//! The [`Outbox`] keeps every byte until the driver says the socket took
//! it ([`Outbox::consume`]), as rustls keeps TLS records: a driver that
//! writes partially hands back nothing, so the session's limit on unsent
//! output bounds its memory whatever the driver does.

use crate::frame::{self, Frame, MAX_FRAME};

/// The version of the structured results' shapes, sent as `schema` in
/// every result (see `PROTOCOL.md` and `RESULTS.md`). It changes when a
/// field is removed or changes meaning; adding a field keeps it.
pub const SCHEMA_VERSION: u32 = 1;

/// What a command's structured result says.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Body<'a> {
    /// The command's data, a JSON document.
    Data(&'a str),
    /// A command with text only: `{"text": ...}`.
    Text(&'a str),
    /// The command failed with this message (without `*** `).
    Error(&'a str),
    /// The command succeeded and says nothing: `null`.
    Nothing,
}

/// The JSON envelope of one command's result:
/// `{"schema":1,"shell":…,"command":…,"ok":…,"data"|"error":…}`.
pub(crate) fn record(shell: &str, command: &str, body: Body<'_>) -> String {
    envelope(shell, command, body).concat()
}

/// The envelope in pieces to write one after the other, so that a big
/// result's data is never copied into a second string.
fn envelope<'a>(shell: &str, command: &str, body: Body<'a>) -> [std::borrow::Cow<'a, str>; 3] {
    use std::borrow::Cow;
    // Serialising a string cannot fail.
    let quoted = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let head = format!(
        r#"{{"schema":{SCHEMA_VERSION},"shell":{},"command":{},"#,
        quoted(shell),
        quoted(command)
    );
    match body {
        Body::Data(data) => [
            Cow::Owned(head + r#""ok":true,"data":"#),
            Cow::Borrowed(data),
            Cow::Borrowed("}"),
        ],
        Body::Text(text) => [
            Cow::Owned(head + r#""ok":true,"data":{"text":"#),
            Cow::Owned(quoted(text)),
            Cow::Borrowed("}}"),
        ],
        Body::Error(message) => [
            Cow::Owned(head + r#""ok":false,"error":"#),
            Cow::Owned(quoted(message)),
            Cow::Borrowed("}"),
        ],
        Body::Nothing => [
            Cow::Owned(head + r#""ok":true,"data":null}"#),
            Cow::Borrowed(""),
            Cow::Borrowed(""),
        ],
    }
}

/// Once this many bytes at the front have been sent, they are dropped from
/// the buffer instead of being skipped over.
const COMPACT_AT: usize = 64 * 1024;

/// Rendered bytes not yet taken by the socket.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already sent.
    sent: usize,
    framed: bool,
}

impl Outbox {
    /// Renders frames from now on (after the handshake).
    pub(crate) fn set_framed(&mut self) {
        self.framed = true;
    }

    /// Bytes waiting to be sent.
    pub(crate) fn unsent(&self) -> &[u8] {
        &self.buf[self.sent..]
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len() - self.sent
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The socket took the first `n` unsent bytes. Returns how many of
    /// them there really were (a driver may not claim more than it had).
    pub(crate) fn consume(&mut self, n: usize) -> usize {
        let n = n.min(self.len());
        self.sent += n;
        if self.sent == self.buf.len() {
            self.buf.clear();
            self.sent = 0;
        } else if self.sent >= COMPACT_AT && self.sent * 2 >= self.buf.len() {
            self.buf.drain(..self.sent);
            self.sent = 0;
        }
        n
    }

    /// Drops everything unsent: the peer will never read it.
    pub(crate) fn discard(&mut self) {
        self.buf.clear();
        self.sent = 0;
    }

    /// Bytes that are the same in both modes (the server hello).
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub(crate) fn frame(&mut self, frame: &Frame) {
        frame.encode(&mut self.buf);
    }

    /// A plugin's or the shell's output; `newline` adds the final newline
    /// the text lacks.
    pub(crate) fn output(&mut self, text: &str, newline: bool) {
        if text.is_empty() {
            return;
        }
        if self.framed {
            for chunk in split_at_char_boundaries(text, MAX_FRAME - 1) {
                frame::write_text_frame(&mut self.buf, Frame::OUTPUT_TYPE, &[chunk]);
            }
            if newline {
                frame::write_text_frame(&mut self.buf, Frame::OUTPUT_TYPE, &["\n"]);
            }
        } else {
            self.buf.extend_from_slice(text.as_bytes());
            if newline {
                self.buf.push(b'\n');
            }
        }
    }

    /// A command's structured result, made by [`record`], in as many
    /// `Data` frames as it needs; only framed mode carries it.
    pub(crate) fn data(&mut self, json: &str) {
        self.data_parts(&[json]);
    }

    /// A file for the client, in as many `File` frames as its size needs
    /// (framed mode only: a text-mode client never asks for files).
    pub(crate) fn file(&mut self, name: &str, bytes: &[u8]) {
        if !self.framed {
            return;
        }
        let room = MAX_FRAME - 1 - 2 - name.len();
        // At least one frame: an empty file is still a file.
        let mut rest = bytes;
        loop {
            let (piece, later) = rest.split_at(rest.len().min(room));
            self.frame(&Frame::File {
                name: name.to_owned(),
                bytes: piece.to_vec(),
            });
            rest = later;
            if rest.is_empty() {
                return;
            }
        }
    }

    /// A command's structured result (see [`record`]) written straight
    /// into `Data` frames.
    pub(crate) fn record(&mut self, shell: &str, command: &str, body: Body<'_>) {
        if self.framed {
            let parts = envelope(shell, command, body);
            self.data_parts(&[&parts[0], &parts[1], &parts[2]]);
        }
    }

    /// The concatenation of `parts` in `Data` frames of at most the frame
    /// limit, split at character boundaries, without joining the parts.
    fn data_parts(&mut self, parts: &[&str]) {
        if !self.framed {
            return;
        }
        let room = MAX_FRAME - 1;
        let mut pieces: Vec<&str> = Vec::with_capacity(parts.len() + 1);
        let mut size = 0;
        for part in parts {
            let mut rest = *part;
            while size + rest.len() > room {
                let mut end = room - size;
                while !rest.is_char_boundary(end) {
                    end -= 1;
                }
                let (now, later) = rest.split_at(end);
                pieces.push(now);
                frame::write_text_frame(&mut self.buf, Frame::DATA_TYPE, &pieces);
                pieces.clear();
                size = 0;
                rest = later;
            }
            if !rest.is_empty() {
                pieces.push(rest);
                size += rest.len();
            }
        }
        if !pieces.is_empty() {
            frame::write_text_frame(&mut self.buf, Frame::DATA_TYPE, &pieces);
        }
    }

    /// An error message: its own frame type in framed mode, a line in text
    /// mode.
    pub(crate) fn error(&mut self, text: &str) {
        if self.framed {
            for chunk in split_at_char_boundaries(text, MAX_FRAME - 1) {
                frame::write_text_frame(&mut self.buf, Frame::ERROR_TYPE, &[chunk]);
            }
        } else {
            self.buf.extend_from_slice(text.as_bytes());
            self.buf.push(b'\n');
        }
    }

    /// The prompt for the next line, given in pieces; `None` when prompts
    /// are off (an empty prompt frame in framed mode, so the client still
    /// knows the reply ended).
    pub(crate) fn prompt(&mut self, parts: Option<[&str; 5]>) {
        let parts = parts.unwrap_or_default();
        if self.framed {
            frame::write_text_frame(&mut self.buf, Frame::PROMPT_TYPE, &parts);
        } else {
            for part in parts {
                self.buf.extend_from_slice(part.as_bytes());
            }
        }
    }

    /// A takeover begins (`Some(name)`) or ends (`None`); only framed mode
    /// marks it.
    pub(crate) fn takeover(&mut self, name: Option<&str>) {
        if !self.framed {
            return;
        }
        match name {
            Some(name) => Frame::Interactive(name.to_owned()).encode(&mut self.buf),
            None => Frame::InteractiveEnd.encode(&mut self.buf),
        }
    }

    /// The last words of a session: the message, then in framed mode the
    /// `Close` frame.
    pub(crate) fn close(&mut self, message: &str) {
        if self.framed {
            if !message.is_empty() {
                frame::write_text_frame(&mut self.buf, Frame::ERROR_TYPE, &[message]);
            }
            Frame::Close(message.to_owned()).encode(&mut self.buf);
        } else if !message.is_empty() {
            self.buf.extend_from_slice(message.as_bytes());
            self.buf.push(b'\n');
        }
    }
}

fn split_at_char_boundaries(text: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(max);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

/// Rows as aligned columns under `header`, two spaces apart: the text
/// tables of the `process` plugin and `ispy --list`. `right[i]` right-aligns
/// column `i` (numbers); widths count characters. A last column aligned
/// left is not padded, and no line ends in spaces, so a long last cell (a command line)
/// costs only its own length. Each line ends with a newline.
///
/// # Panics
///
/// When `right` is shorter than a row.
pub fn table(header: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let start = out.len();
        for (i, cell) in row.iter().enumerate() {
            let width = if i + 1 == row.len() && !right[i] {
                0
            } else {
                widths[i]
            };
            if right[i] {
                out.push_str(&format!("{cell:>width$}  "));
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        let end = out[start..].trim_end().len();
        out.truncate(start + end);
        out.push('\n');
    }
    out
}

/// The longest piece of a client's own text echoed back in a message.
pub const ECHO_LIMIT: usize = 200;

/// `text` as it may be shown back to a person: control characters (NUL,
/// `\r`, escape sequences' ESC…) escaped as Rust writes them (`\u{1b}`),
/// so a line cannot move another person's cursor or recolour their terminal
/// (a shared screen, a log), and at most [`ECHO_LIMIT`] characters, the
/// rest counted.
pub fn echoed(text: &str) -> String {
    escaped(text, ECHO_LIMIT)
}

/// `text` with its control characters escaped, and cut where what is
/// shown (escapes counted at their written length) would pass `limit`
/// characters, the characters left out counted: [`echoed`] with another
/// limit.
pub(crate) fn escaped(text: &str, limit: usize) -> String {
    let mut out = String::with_capacity(text.len().min(limit));
    let mut shown = 0;
    for (taken, c) in text.chars().enumerate() {
        let escape = c.is_control().then(|| c.escape_debug());
        let width = escape.clone().map_or(1, Iterator::count);
        if shown + width > limit {
            let rest = text.chars().count() - taken;
            out.push_str(&format!("… ({rest} more characters)"));
            break;
        }
        shown += width;
        match escape {
            Some(escape) => out.extend(escape),
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod echo_tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_long_text_cut() {
        assert_eq!(echoed("a\0b\r\u{1b}[2Jc\t"), "a\\0b\\r\\u{1b}[2Jc\\t");
        assert_eq!(echoed("plain words"), "plain words");
        let long = "x".repeat(ECHO_LIMIT + 5);
        assert_eq!(
            echoed(&long),
            format!("{}… (5 more characters)", "x".repeat(ECHO_LIMIT))
        );
        let controls = "\u{1e}".repeat(ECHO_LIMIT);
        let shown = echoed(&controls);
        assert!(shown.starts_with("\\u{1e}\\u{1e}"), "{shown}");
        let (escapes, note) = shown.split_once('…').unwrap();
        assert!(escapes.len() <= ECHO_LIMIT, "{shown}");
        assert_eq!(
            note,
            format!(" ({} more characters)", ECHO_LIMIT - escapes.len() / 6)
        );
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;

    #[test]
    fn columns_align_by_characters_and_no_line_ends_in_spaces() {
        let rows = vec![
            vec!["1".to_owned(), "é-thread".to_owned(), "running".to_owned()],
            vec!["1234".to_owned(), "main".to_owned(), String::new()],
        ];
        assert_eq!(
            table(&["TID", "NAME", "STATE"], &[true, false, false], &rows),
            " TID  NAME      STATE\n   1  é-thread  running\n1234  main\n"
        );
        assert_eq!(table(&["N"], &[true], &[]), "N\n");
    }
}
