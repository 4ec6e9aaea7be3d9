#![no_main]
// Properties: see `rxledger_fuzz::check_digital_link` (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| rxledger_fuzz::check_digital_link(data));
