#![no_main]
// Properties: see `rxledger_fuzz::check_scan` (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| rxledger_fuzz::check_scan(data));
