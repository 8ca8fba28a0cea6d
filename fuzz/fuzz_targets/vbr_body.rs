#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| veeam_restore_exporter::fuzzing::vbr_body(data));
