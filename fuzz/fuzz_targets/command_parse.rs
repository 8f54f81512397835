//! The command grammar: parse → print → parse is stable, completion stays
//! inside the line.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ispyd_core::op::parse_line(data));
