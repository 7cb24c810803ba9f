//! The model file reader (safetensors with ncf metadata and checksums).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ncf_core::model::file::from_bytes;

fuzz_target!(|data: &[u8]| {
    if let Ok((model, meta)) = from_bytes(data, "fuzz") {
        assert_eq!(model.params.len(), model.layout.total);
        assert_eq!(meta.config, model.config);
    }
});
