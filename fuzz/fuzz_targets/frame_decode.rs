//! Frame decoding: never panics, always advances, decode → encode gives
//! back the input bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ispyd_core::op::decode_all(data));
