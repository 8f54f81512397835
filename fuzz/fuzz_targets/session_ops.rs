//! Whole sessions: fuzz bytes become `Op`s played against a session, whose
//! invariants are checked after every operation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ispyd_core::op::drive_bytes(data));
