//! The requests being served now, in a table a signal handler can read.
//!
//! The `wsgi` registry is a `Mutex<HashMap>` of Python objects: a signal
//! handler must not touch it (the interrupted thread may hold the lock, or
//! be inside the allocator). So while a dump is armed, each request is also
//! written here: a fixed table of slots made of atomics, with no lock and
//! no allocation on either side.
//!
//! A slot's `state` is 0 when free, [`WRITING`] while the request's thread
//! fills it, and the request's number once it is complete. The handler reads
//! a slot's fields between two loads of `state` and keeps them only if the
//! number did not change in between (numbers are never reused, so a slot
//! freed and taken again is seen as changed). A request that finds no free
//! slot is counted, so the dump can say how many it does not show.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};

/// Slots in the table: requests in flight at once that a dump can name.
pub(crate) const SLOTS: usize = 256;
/// Bytes of `METHOD path?query` kept per request.
pub(crate) const TEXT_BYTES: usize = TEXT_WORDS * 8;
const TEXT_WORDS: usize = 30;
/// The state of a slot being filled.
const WRITING: u64 = u64::MAX;

struct Slot {
    state: AtomicU64,
    /// `CLOCK_MONOTONIC` at the start, in nanoseconds.
    started: AtomicU64,
    /// `threading.get_ident()` of the serving thread.
    thread: AtomicU64,
    /// Its kernel thread id.
    native: AtomicU64,
    len: AtomicUsize,
    text: [AtomicU64; TEXT_WORDS],
}

#[allow(clippy::declare_interior_mutable_const)] // a template for the array
const FREE: Slot = Slot {
    state: AtomicU64::new(0),
    started: AtomicU64::new(0),
    thread: AtomicU64::new(0),
    native: AtomicU64::new(0),
    len: AtomicUsize::new(0),
    text: [const { AtomicU64::new(0) }; TEXT_WORDS],
};

static TABLE: [Slot; SLOTS] = [FREE; SLOTS];
/// Requests in flight that found no free slot.
static OVERFLOW: AtomicUsize = AtomicUsize::new(0);
/// Whether requests are written here: only while a dump is armed.
static ARMED: AtomicBool = AtomicBool::new(false);

/// Starts (or stops) writing requests into the table. Requests already in
/// flight are not in it.
pub(crate) fn arm(armed: bool) {
    ARMED.store(armed, Ordering::Relaxed);
}

/// Whether requests are written into the table.
pub(crate) fn is_armed() -> bool {
    ARMED.load(Ordering::Relaxed)
}

/// A request's place in the table; dropping it frees the place.
#[derive(Debug)]
pub(crate) enum Ticket {
    /// In slot `0`.
    Slot(usize),
    /// The table was full: counted only.
    Overflow,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        match self {
            Ticket::Slot(index) => TABLE[*index].state.store(0, Ordering::Release),
            Ticket::Overflow => {
                OVERFLOW.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// What one slot said, copied out.
pub(crate) struct Entry {
    pub(crate) number: u64,
    pub(crate) started: u64,
    pub(crate) thread: u64,
    pub(crate) native: u64,
    pub(crate) len: usize,
    pub(crate) text: [u8; TEXT_BYTES],
}

impl Entry {
    pub(crate) fn text(&self) -> &[u8] {
        &self.text[..self.len.min(TEXT_BYTES)]
    }
}

/// Records request `number` (its `text` already cut to [`TEXT_BYTES`]).
pub(crate) fn claim(number: u64, started: u64, thread: u64, native: u64, text: &[u8]) -> Ticket {
    let start = (number as usize) % SLOTS;
    for step in 0..SLOTS {
        let slot = &TABLE[(start + step) % SLOTS];
        if slot
            .state
            .compare_exchange(0, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        slot.started.store(started, Ordering::Relaxed);
        slot.thread.store(thread, Ordering::Relaxed);
        slot.native.store(native, Ordering::Relaxed);
        let text = &text[..text.len().min(TEXT_BYTES)];
        slot.len.store(text.len(), Ordering::Relaxed);
        for (word, chunk) in slot.text.iter().zip(text.chunks(8)) {
            let mut bytes = [0u8; 8];
            bytes[..chunk.len()].copy_from_slice(chunk);
            word.store(u64::from_ne_bytes(bytes), Ordering::Relaxed);
        }
        slot.state.store(number, Ordering::Release);
        return Ticket::Slot((start + step) % SLOTS);
    }
    OVERFLOW.fetch_add(1, Ordering::Relaxed);
    Ticket::Overflow
}

/// Calls `each` with every complete slot, then returns how many requests
/// found no slot. Async-signal-safe: atomics and the stack only.
pub(crate) fn read(mut each: impl FnMut(&Entry)) -> usize {
    let mut entry = Entry {
        number: 0,
        started: 0,
        thread: 0,
        native: 0,
        len: 0,
        text: [0; TEXT_BYTES],
    };
    for slot in &TABLE {
        let number = slot.state.load(Ordering::Acquire);
        if number == 0 || number == WRITING {
            continue;
        }
        entry.number = number;
        entry.started = slot.started.load(Ordering::Relaxed);
        entry.thread = slot.thread.load(Ordering::Relaxed);
        entry.native = slot.native.load(Ordering::Relaxed);
        entry.len = slot.len.load(Ordering::Relaxed);
        for (word, chunk) in slot.text.iter().zip(entry.text.chunks_mut(8)) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
        }
        // The fields were read before the state is read again.
        fence(Ordering::Acquire);
        if slot.state.load(Ordering::Relaxed) == number {
            each(&entry);
        }
    }
    OVERFLOW.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed() -> Vec<(u64, Vec<u8>)> {
        let mut seen = Vec::new();
        read(|entry| seen.push((entry.number, entry.text().to_vec())));
        seen
    }

    // One test: the table is one static, shared by every test thread.
    #[test]
    fn claims_are_read_back_freed_on_drop_and_counted_when_the_table_is_full() {
        let long = vec![b'x'; TEXT_BYTES + 10];
        let a = claim(u64::MAX - 10, 1, 2, 3, b"GET /a?b=1");
        let b = claim(u64::MAX - 11, 1, 2, 3, &long);
        let seen = listed();
        assert!(seen.contains(&(u64::MAX - 10, b"GET /a?b=1".to_vec())));
        assert!(seen.contains(&(u64::MAX - 11, long[..TEXT_BYTES].to_vec())));
        drop((a, b));
        assert_eq!(listed(), []);

        let tickets: Vec<Ticket> = (0..SLOTS as u64 + 3)
            .map(|n| claim(1_000_000 + n, 0, 0, 0, b"GET /"))
            .collect();
        assert_eq!(read(|_| {}), 3);
        assert_eq!(listed().len(), SLOTS);
        drop(tickets);
        assert_eq!(read(|_| {}), 0);
        assert_eq!(listed(), []);
    }
}
