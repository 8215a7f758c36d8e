//! Pair sets as JSONL (plain and CAA A/B items) and as CSV.
#![no_main]
use analog_core::steering::PairSet;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PairSet::from_jsonl(text);
        let _ = PairSet::from_csv(text);
    }
});
