//! Frontier transfer reports: JSON, schema v1 and every semantic rule.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = analog_core::report::parse(data);
});
