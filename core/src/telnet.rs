//! Removes telnet negotiation from text-mode input.
//!
//! A telnet client opens with `IAC DO/WILL …` sequences; the 2012 ispyd
//! treated them as command text. They are dropped here, never answered, and
//! the filter keeps its state across reads so any split of the input gives
//! the same result.

const IAC: u8 = 255;
const SB: u8 = 250;
const SE: u8 = 240;
const WILL: u8 = 251;
const DONT: u8 = 254;

/// Where the filter is within a telnet sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Telnet {
    #[default]
    Data,
    /// After `IAC`.
    Command,
    /// After `IAC WILL/WONT/DO/DONT`: one option byte follows.
    Option,
    /// Inside `IAC SB …`, until `IAC SE`.
    Sub,
    /// After `IAC` inside a subnegotiation.
    SubCommand,
}

impl Telnet {
    /// Appends the data bytes of `input` to `out`, dropping negotiation.
    pub(crate) fn filter(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &byte in input {
            *self = match (*self, byte) {
                (Telnet::Data, IAC) => Telnet::Command,
                (Telnet::Data, b) => {
                    out.push(b);
                    Telnet::Data
                }
                (Telnet::Command, IAC) => {
                    out.push(IAC);
                    Telnet::Data
                }
                (Telnet::Command, SB) => Telnet::Sub,
                (Telnet::Command, WILL..=DONT) => Telnet::Option,
                (Telnet::Command, _) | (Telnet::Option, _) => Telnet::Data,
                (Telnet::Sub, IAC) => Telnet::SubCommand,
                (Telnet::Sub, _) => Telnet::Sub,
                (Telnet::SubCommand, SE) => Telnet::Data,
                (Telnet::SubCommand, _) => Telnet::Sub,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filtered(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Telnet::default().filter(input, &mut out);
        out
    }

    #[test]
    fn negotiation_is_removed() {
        let input = [IAC, 253, 1, b'p', IAC, 251, 31, b'i', b'd', b'\n'];
        assert_eq!(filtered(&input), b"pid\n");
    }

    #[test]
    fn subnegotiation_is_removed() {
        let input = [IAC, SB, 31, 0, 80, 0, 24, IAC, SE, b'x'];
        assert_eq!(filtered(&input), b"x");
    }

    #[test]
    fn doubled_iac_is_a_literal_byte() {
        assert_eq!(filtered(&[b'a', IAC, IAC, b'b']), vec![b'a', IAC, b'b']);
    }

    #[test]
    fn state_carries_across_splits() {
        let input = [IAC, 253, 1, b'o', b'k'];
        let mut filter = Telnet::default();
        let mut out = Vec::new();
        for byte in input {
            filter.filter(&[byte], &mut out);
        }
        assert_eq!(out, b"ok");
    }
}
