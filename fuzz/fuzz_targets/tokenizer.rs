//! `tokenizer.json`, then encoding and decoding a fixed text with whatever loaded.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(tokenizer) = analog_core::Tokenizer::from_bytes(data) {
        if let Ok(ids) = tokenizer.encode("Once upon a time, <b>Lily</b> said: \"héllo\"") {
            let _ = tokenizer.decode(&ids);
        }
    }
});
