//! GGUF files (llama.cpp's format): control vectors on import, and model files through the one
//! parser, the configuration, the tokenizer rebuilt from metadata and the chat template.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = analog_core::steering::gguf::import(data);
    if let Ok(file) = analog_core::gguf::Gguf::parse(data) {
        let _ = analog_core::ModelConfig::from_gguf(&file);
        let _ = analog_core::Tokenizer::from_gguf(&file);
        let _ = analog_core::weights::footprint(&analog_core::WeightFiles::Gguf(data));
        for tensor in file.tensors.iter().filter(|t| t.len <= 1 << 20) {
            let _ = file.values(tensor);
        }
    }
});
