//! safetensors bytes: header, tensor table, offsets, dtypes, q8_0 scales, every value read.
#![no_main]
use analog_core::WeightFiles;
use analog_core::quant::{WeightFormat, convert};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = convert(&WeightFiles::Single(data), WeightFormat::F32);
});
