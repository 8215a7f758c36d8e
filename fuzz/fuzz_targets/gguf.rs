//! GGUF control vectors (llama.cpp's format) on import.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = analog_core::steering::gguf::import(data);
});
