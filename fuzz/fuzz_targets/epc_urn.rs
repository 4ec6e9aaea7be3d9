#![no_main]
// Properties: see `rxledger_fuzz::check_epc_urn` (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| rxledger_fuzz::check_epc_urn(data));
