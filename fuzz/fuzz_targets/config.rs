//! HF `config.json` of every supported family.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = analog_core::ModelConfig::from_hf_json(data);
});
