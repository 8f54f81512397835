//! The client's side of the protocol: whatever a server sends, in any
//! split, the client keeps its rules and end of input ends the session.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ispyd_core::op::client_bytes(data));
