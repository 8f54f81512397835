//! Bytes received from the peer and not yet taken.

use std::ops::Deref;

/// Bytes received and not yet taken, taken from the front without moving
/// the rest each time: a read that holds thousands of tiny frames costs
/// time in proportion to its length, not to its length squared. Reads as
/// the untaken bytes (`&received[..]`).
#[derive(Debug, Default)]
pub(crate) struct Received {
    buf: Vec<u8>,
    /// How many bytes at the front of `buf` are taken already.
    start: usize,
}

impl Received {
    /// Drops the first `n` untaken bytes.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Takes the first `n` untaken bytes.
    pub(crate) fn take(&mut self, n: usize) -> Vec<u8> {
        let taken = self[..n].to_vec();
        self.consume(n);
        taken
    }

    /// Takes every untaken byte.
    pub(crate) fn take_all(&mut self) -> Vec<u8> {
        self.compact();
        std::mem::take(&mut self.buf)
    }

    /// Drops every untaken byte.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
    }

    /// Adds bytes at the end.
    pub(crate) fn extend_from_slice(&mut self, data: &[u8]) {
        self.tail().extend_from_slice(data);
    }

    /// The buffer to append to (the untaken bytes moved to its front once,
    /// here, rather than at every take).
    pub(crate) fn tail(&mut self) -> &mut Vec<u8> {
        self.compact();
        &mut self.buf
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

impl Deref for Received {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taking_from_the_front_keeps_the_rest_in_order() {
        let mut received = Received::default();
        received.extend_from_slice(b"abcdef");
        received.consume(2);
        assert_eq!(&received[..], b"cdef");
        assert_eq!(received.take(2), b"cd");
        received.extend_from_slice(b"gh");
        assert_eq!(&received[..], b"efgh");
        assert_eq!(received.take_all(), b"efgh");
        assert!(received.is_empty());
        received.extend_from_slice(b"x");
        received.consume(5);
        assert!(received.is_empty());
    }
}
