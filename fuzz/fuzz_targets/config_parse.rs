//! The configuration parser: any ini text gives a `Config` or one bounded
//! line of error, never a panic, and a bounded list of warnings.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ispyd_core::op::parse_config(data));
