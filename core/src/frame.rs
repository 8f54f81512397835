//! Framed mode: the handshake and the length-delimited frames of
//! `PROTOCOL.md`, decoded with nom and encoded into caller-owned buffers.
//!
//! A frame is `len: u32 big-endian`, then `len` bytes: one type byte and the
//! payload. Client frames have types below `0x80`, server frames `0x80` and
//! above.

use nom::IResult;
use nom::Parser;
use nom::bytes::streaming::take;
use nom::number::streaming::{be_u8, be_u32};

/// What a client sends, as the very first bytes, to enter framed mode. The
/// digit is the highest protocol version the client speaks.
pub const CLIENT_HELLO: &[u8] = b"\0ISPY/1\n";

/// What the server answers to [`CLIENT_HELLO`] before its first frame. A
/// client skips everything before it (the text-mode prompt already sent).
pub const SERVER_HELLO: &[u8] = b"\0ISPY/1\n";

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest frame either side sends; longer output is split.
pub const MAX_FRAME: usize = 1 << 20;

/// One frame of framed mode.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(any(test, feature = "testing"), derive(arbitrary::Arbitrary))]
pub enum Frame {
    /// Client: a line typed by the user (no line terminator).
    Line(String),
    /// Client: asks for completion candidates for this text (the line up to
    /// the cursor).
    Complete(String),
    /// Client: end of input (Ctrl-D): leaves a takeover or the current shell.
    Eof,
    /// Client: from now on, answer every command with a [`Frame::Data`]
    /// (structured results, for scripts and `ispy --json`), and with its
    /// `Output` frames too unless `text` is false.
    WantData {
        /// Keep sending each command's text as well as its data.
        text: bool,
    },
    /// Client: Ctrl-C. Interrupts the code a takeover runs (as Ctrl-C at a
    /// local Python prompt), or gives up on the plugin call in progress;
    /// nothing when nothing runs.
    Interrupt,
    /// Client: the client saves the files commands send
    /// ([`Frame::File`]); without it, a command that makes files writes
    /// them on the server's side and says where.
    WantFiles,
    /// Server: text to show.
    Output(String),
    /// Server: an error message, shown apart from output.
    Error(String),
    /// Server: the reply is complete; read the next line at this prompt
    /// (empty when prompts are off).
    Prompt(String),
    /// Server: completion candidates; each replaces the line from byte
    /// offset `start` to the cursor.
    Candidates {
        /// Byte offset in the requested text where the completed word begins.
        start: u32,
        /// Full replacements for the word, sorted.
        items: Vec<String>,
    },
    /// Server: an interactive takeover (named, e.g. `console`, `pdb`) begins;
    /// its lines are not shell commands.
    Interactive(String),
    /// Server: the takeover is over; shell commands again.
    InteractiveEnd,
    /// Server: the session is over, with the reason (may be empty).
    Close(String),
    /// Server: a piece of the command's result as JSON (see `PROTOCOL.md`);
    /// the pieces sent before one `Prompt` concatenate to one document.
    Data(String),
    /// Server: how far a long command has got (`3 s of 10`): shown in
    /// place of the previous progress, never part of the result.
    Progress(String),
    /// Server: a file the command made (a flame graph), or a piece of it:
    /// consecutive `File` frames with the same name are one file, which
    /// the client saves under `name` (see [`is_file_name`]).
    File {
        /// The file's name, without a directory.
        name: String,
        /// Its bytes, or the next piece of them.
        bytes: Vec<u8>,
    },
}

/// The longest name a [`Frame::File`] may carry.
pub const MAX_FILE_NAME: usize = 128;

/// True for a name a [`Frame::File`] may carry: 1 to [`MAX_FILE_NAME`]
/// bytes of ASCII letters, digits, `.`, `_` and `-`, not starting with `.`
/// or `-`: a plain file name, never a path, a hidden file or an option.
pub fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_FILE_NAME
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The payload of a [`Frame::WantData`] that asks for data instead of text.
const DATA_ONLY: &[u8] = b"data-only";

/// Frame type bytes, as written on the wire.
mod kind {
    pub const LINE: u8 = 0x01;
    pub const COMPLETE: u8 = 0x02;
    pub const EOF: u8 = 0x03;
    pub const WANT_DATA: u8 = 0x04;
    pub const INTERRUPT: u8 = 0x05;
    pub const WANT_FILES: u8 = 0x06;
    pub const OUTPUT: u8 = 0x81;
    pub const ERROR: u8 = 0x82;
    pub const PROMPT: u8 = 0x83;
    pub const CANDIDATES: u8 = 0x84;
    pub const INTERACTIVE: u8 = 0x85;
    pub const INTERACTIVE_END: u8 = 0x86;
    pub const CLOSE: u8 = 0x87;
    pub const DATA: u8 = 0x88;
    pub const PROGRESS: u8 = 0x89;
    pub const FILE: u8 = 0x8a;
}

/// Why bytes could not be decoded as a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix announces more than the receiver accepts. Fatal:
    /// the receiver cannot find the next frame without reading it all.
    TooLong {
        /// The announced length.
        len: usize,
        /// The receiver's limit.
        limit: usize,
    },
    /// A length of zero: there is not even a type byte. Fatal.
    Empty,
    /// A type byte this version does not know; the frame was skipped.
    UnknownType(u8),
    /// A text payload that is not UTF-8; the frame was skipped.
    InvalidUtf8(u8),
    /// A payload whose layout does not match its type; the frame was skipped.
    Malformed(u8),
}

impl FrameError {
    /// True when the stream cannot go on after this error.
    pub fn is_fatal(&self) -> bool {
        matches!(self, FrameError::TooLong { .. } | FrameError::Empty)
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLong { len, limit } => {
                write!(f, "frame of {len} bytes is over the limit of {limit} bytes")
            }
            FrameError::Empty => f.write_str("frame of length 0 has no type byte"),
            FrameError::UnknownType(t) => write!(f, "unknown frame type 0x{t:02x}"),
            FrameError::InvalidUtf8(t) => {
                write!(f, "frame type 0x{t:02x} carries text that is not UTF-8")
            }
            FrameError::Malformed(t) => write!(f, "frame type 0x{t:02x} has a malformed payload"),
        }
    }
}

impl std::error::Error for FrameError {}

/// The result of [`decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// Not enough bytes for a whole frame yet.
    Incomplete,
    /// A frame, and how many bytes of input it took.
    Frame(Frame, usize),
    /// A bad frame. `used` is how many bytes to drop to go on, or `None` when
    /// the error is fatal (see [`FrameError::is_fatal`]).
    Invalid(FrameError, Option<usize>),
}

fn length(input: &[u8]) -> IResult<&[u8], u32> {
    be_u32.parse(input)
}

fn body(input: &[u8], len: usize) -> IResult<&[u8], (u8, &[u8])> {
    (be_u8, take(len - 1)).parse(input)
}

/// Decodes the first frame of `input`, accepting frames of at most `limit`
/// bytes (type byte and payload).
///
/// Never panics and never allocates more than the frame's own payload,
/// whatever the input.
pub fn decode(input: &[u8], limit: usize) -> Decoded {
    let Ok((rest, len)) = length(input) else {
        return Decoded::Incomplete;
    };
    let len = len as usize;
    if len == 0 {
        return Decoded::Invalid(FrameError::Empty, None);
    }
    if len > limit {
        return Decoded::Invalid(FrameError::TooLong { len, limit }, None);
    }
    let Ok((_, (ty, payload))) = body(rest, len) else {
        return Decoded::Incomplete;
    };
    let used = 4 + len;
    match payload_frame(ty, payload) {
        Ok(frame) => Decoded::Frame(frame, used),
        Err(err) => Decoded::Invalid(err, Some(used)),
    }
}

fn text(ty: u8, payload: &[u8]) -> Result<String, FrameError> {
    String::from_utf8(payload.to_vec()).map_err(|_| FrameError::InvalidUtf8(ty))
}

fn empty(ty: u8, payload: &[u8], frame: Frame) -> Result<Frame, FrameError> {
    if payload.is_empty() {
        Ok(frame)
    } else {
        Err(FrameError::Malformed(ty))
    }
}

/// A [`Frame::File`]: `name length: u16 BE`, the name, the bytes.
fn file(ty: u8, payload: &[u8]) -> Result<Frame, FrameError> {
    let (len, rest) = payload
        .split_at_checked(2)
        .ok_or(FrameError::Malformed(ty))?;
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let (name, bytes) = rest
        .split_at_checked(len)
        .ok_or(FrameError::Malformed(ty))?;
    match std::str::from_utf8(name) {
        Ok(name) if is_file_name(name) => Ok(Frame::File {
            name: name.to_owned(),
            bytes: bytes.to_vec(),
        }),
        _ => Err(FrameError::Malformed(ty)),
    }
}

fn payload_frame(ty: u8, payload: &[u8]) -> Result<Frame, FrameError> {
    match ty {
        kind::LINE => text(ty, payload).map(Frame::Line),
        kind::COMPLETE => text(ty, payload).map(Frame::Complete),
        kind::EOF => empty(ty, payload, Frame::Eof),
        kind::WANT_DATA => match payload {
            b"" => Ok(Frame::WantData { text: true }),
            DATA_ONLY => Ok(Frame::WantData { text: false }),
            _ => Err(FrameError::Malformed(ty)),
        },
        kind::INTERRUPT => empty(ty, payload, Frame::Interrupt),
        kind::WANT_FILES => empty(ty, payload, Frame::WantFiles),
        kind::OUTPUT => text(ty, payload).map(Frame::Output),
        kind::ERROR => text(ty, payload).map(Frame::Error),
        kind::PROMPT => text(ty, payload).map(Frame::Prompt),
        kind::CANDIDATES => {
            let Ok((items, start)) = be_u32::<_, nom::error::Error<&[u8]>>(payload) else {
                return Err(FrameError::Malformed(ty));
            };
            let items = text(ty, items)?;
            let items = if items.is_empty() {
                Vec::new()
            } else {
                items.split('\n').map(str::to_owned).collect()
            };
            Ok(Frame::Candidates { start, items })
        }
        kind::INTERACTIVE => text(ty, payload).map(Frame::Interactive),
        kind::INTERACTIVE_END => empty(ty, payload, Frame::InteractiveEnd),
        kind::CLOSE => text(ty, payload).map(Frame::Close),
        kind::DATA => text(ty, payload).map(Frame::Data),
        kind::PROGRESS => text(ty, payload).map(Frame::Progress),
        kind::FILE => file(ty, payload),
        other => Err(FrameError::UnknownType(other)),
    }
}

impl Frame {
    /// True for the frames a client sends.
    pub fn is_client(&self) -> bool {
        matches!(
            self,
            Frame::Line(_)
                | Frame::Complete(_)
                | Frame::Eof
                | Frame::WantData { .. }
                | Frame::Interrupt
                | Frame::WantFiles
        )
    }

    /// Appends the frame's wire form to `out`.
    ///
    /// Text longer than [`MAX_FRAME`] is the caller's to split (the session
    /// does so for output); candidates containing `\n` lose the part after it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (ty, payload): (u8, &[u8]) = match self {
            Frame::Line(s) => (kind::LINE, s.as_bytes()),
            Frame::Complete(s) => (kind::COMPLETE, s.as_bytes()),
            Frame::Eof => (kind::EOF, b""),
            Frame::WantData { text: true } => (kind::WANT_DATA, b""),
            Frame::WantData { text: false } => (kind::WANT_DATA, DATA_ONLY),
            Frame::Interrupt => (kind::INTERRUPT, b""),
            Frame::WantFiles => (kind::WANT_FILES, b""),
            Frame::Output(s) => (kind::OUTPUT, s.as_bytes()),
            Frame::Error(s) => (kind::ERROR, s.as_bytes()),
            Frame::Prompt(s) => (kind::PROMPT, s.as_bytes()),
            Frame::Interactive(s) => (kind::INTERACTIVE, s.as_bytes()),
            Frame::InteractiveEnd => (kind::INTERACTIVE_END, b""),
            Frame::Close(s) => (kind::CLOSE, s.as_bytes()),
            Frame::Data(s) => (kind::DATA, s.as_bytes()),
            Frame::Progress(s) => (kind::PROGRESS, s.as_bytes()),
            Frame::Candidates { start, items } => {
                let mut payload = start.to_be_bytes().to_vec();
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        payload.push(b'\n');
                    }
                    let item = item.split('\n').next().unwrap_or("");
                    payload.extend_from_slice(item.as_bytes());
                }
                write_frame(out, kind::CANDIDATES, &payload);
                return;
            }
            Frame::File { name, bytes } => {
                let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
                let mut payload = Vec::with_capacity(2 + name.len() + bytes.len());
                payload.extend_from_slice(&len.to_be_bytes());
                payload.extend_from_slice(&name.as_bytes()[..usize::from(len)]);
                payload.extend_from_slice(bytes);
                write_frame(out, kind::FILE, &payload);
                return;
            }
        };
        write_frame(out, ty, payload);
    }
}

impl Frame {
    /// The type byte of [`Frame::Prompt`].
    pub(crate) const PROMPT_TYPE: u8 = kind::PROMPT;
    /// The type byte of [`Frame::Data`].
    pub(crate) const DATA_TYPE: u8 = kind::DATA;
    /// The type byte of [`Frame::Output`].
    pub(crate) const OUTPUT_TYPE: u8 = kind::OUTPUT;
    /// The type byte of [`Frame::Error`].
    pub(crate) const ERROR_TYPE: u8 = kind::ERROR;
}

/// Writes a text frame of type `ty` whose payload is `parts` one after the
/// other, without joining them first.
pub(crate) fn write_text_frame(out: &mut Vec<u8>, ty: u8, parts: &[&str]) {
    let len: usize = parts.iter().map(|part| part.len()).sum();
    let len = u32::try_from(len + 1).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(ty);
    for part in parts {
        out.extend_from_slice(part.as_bytes());
    }
}

fn write_frame(out: &mut Vec<u8>, ty: u8, payload: &[u8]) {
    let len = u32::try_from(payload.len() + 1).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(ty);
    out.extend_from_slice(payload);
}

/// Finds the server's handshake answer in what a client has read so far.
///
/// Returns the offset just past [`SERVER_HELLO`], or `None` if it has not
/// arrived yet. Anything before it is the text-mode greeting and is skipped.
pub fn find_server_hello(input: &[u8]) -> Option<usize> {
    input
        .windows(SERVER_HELLO.len())
        .position(|w| w == SERVER_HELLO)
        .map(|at| at + SERVER_HELLO.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(frame: Frame) {
        let mut buf = Vec::new();
        frame.encode(&mut buf);
        assert_eq!(decode(&buf, MAX_FRAME), Decoded::Frame(frame, buf.len()));
    }

    #[test]
    fn every_frame_type_roundtrips() {
        roundtrip(Frame::Line("shell process".into()));
        roundtrip(Frame::Complete("sh".into()));
        roundtrip(Frame::Eof);
        roundtrip(Frame::Output("1234\n".into()));
        roundtrip(Frame::Error("*** Unknown syntax: x".into()));
        roundtrip(Frame::Prompt("(ispyd:1) ".into()));
        roundtrip(Frame::Prompt(String::new()));
        roundtrip(Frame::Candidates {
            start: 6,
            items: vec!["process".into(), "python".into()],
        });
        roundtrip(Frame::Candidates {
            start: 0,
            items: vec![],
        });
        roundtrip(Frame::Interactive("console".into()));
        roundtrip(Frame::InteractiveEnd);
        roundtrip(Frame::Close("bye".into()));
        roundtrip(Frame::WantData { text: true });
        roundtrip(Frame::WantData { text: false });
        roundtrip(Frame::Interrupt);
        roundtrip(Frame::Data(r#"{"schema":1}"#.into()));
        roundtrip(Frame::Progress("3 s of 10".into()));
    }

    #[test]
    fn partial_frame_is_incomplete() {
        let mut buf = Vec::new();
        Frame::Line("pid".into()).encode(&mut buf);
        for cut in 0..buf.len() {
            assert_eq!(decode(&buf[..cut], MAX_FRAME), Decoded::Incomplete);
        }
    }

    #[test]
    fn oversized_length_is_fatal_before_reading_payload() {
        let buf = [0xff, 0xff, 0xff, 0xff, 0x01];
        match decode(&buf, 1024) {
            Decoded::Invalid(err, None) => assert!(err.is_fatal()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn zero_length_is_fatal() {
        assert_eq!(
            decode(&[0, 0, 0, 0], 1024),
            Decoded::Invalid(FrameError::Empty, None)
        );
    }

    #[test]
    fn unknown_type_is_skipped_not_fatal() {
        let buf = [0, 0, 0, 2, 0x42, b'x'];
        assert_eq!(
            decode(&buf, 1024),
            Decoded::Invalid(FrameError::UnknownType(0x42), Some(6))
        );
    }

    #[test]
    fn invalid_utf8_line_is_skipped_not_fatal() {
        let buf = [0, 0, 0, 3, 0x01, 0xff, 0xfe];
        assert_eq!(
            decode(&buf, 1024),
            Decoded::Invalid(FrameError::InvalidUtf8(0x01), Some(7))
        );
    }

    #[test]
    fn server_hello_is_found_after_text_prompt() {
        let mut buf = b"(ispyd:42) ".to_vec();
        buf.extend_from_slice(SERVER_HELLO);
        buf.push(0);
        assert_eq!(find_server_hello(&buf), Some(buf.len() - 1));
        assert_eq!(find_server_hello(b"(ispyd:42) "), None);
    }
}
