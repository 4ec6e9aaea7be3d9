#![no_main]
// Properties: see `rxledger_fuzz::check_envelope_epcis` (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| rxledger_fuzz::check_envelope_epcis(data));
