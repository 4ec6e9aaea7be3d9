#![no_main]
// Properties: see `rxledger_fuzz::check_xml_document` (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| rxledger_fuzz::check_xml_document(data));
