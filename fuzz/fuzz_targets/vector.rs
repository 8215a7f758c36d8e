//! Steering-vector JSON files.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = analog_core::steering::SteeringVector::from_json(data);
});
