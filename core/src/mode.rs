//! Deciding the wire mode from a connection's first bytes.
//!
//! A text client (`nc`, `socat`, telnet) starts with a printable byte; the
//! `ispy` client starts with [`CLIENT_HELLO`], whose first byte is NUL.
//! Anything that starts with NUL but is not a well-formed hello is text, so
//! a garbled handshake is answered like any unknown command.

use crate::frame::CLIENT_HELLO;

/// What the first bytes of a connection say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detected {
    /// The bytes so far could still be either mode.
    Undecided,
    /// A text client.
    Text,
    /// A framed client speaking `version`; its hello is `used` bytes long.
    Framed {
        /// The version the client asked for (at least 1).
        version: u32,
        /// Bytes of the hello, newline included.
        used: usize,
    },
}

/// Looks at the bytes received so far; `eof` means no more will come.
pub(crate) fn detect(input: &[u8], eof: bool) -> Detected {
    let Some(&first) = input.first() else {
        return if eof {
            Detected::Text
        } else {
            Detected::Undecided
        };
    };
    if first != 0 {
        return Detected::Text;
    }
    let prefix = &CLIENT_HELLO[..6]; // "\0ISPY/"
    let end = input.iter().position(|&b| b == b'\n');
    let seen = end.unwrap_or(input.len());
    let agrees = input[..seen.min(prefix.len())] == prefix[..seen.min(prefix.len())];
    match end {
        Some(end) if agrees && end > prefix.len() => std::str::from_utf8(&input[prefix.len()..end])
            .ok()
            .filter(|v| !v.is_empty() && v.len() <= 9 && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|&v| v >= 1)
            .map_or(Detected::Text, |version| Detected::Framed {
                version,
                used: end + 1,
            }),
        None if agrees && seen < 16 && !eof => Detected::Undecided,
        _ => Detected::Text,
    }
}
