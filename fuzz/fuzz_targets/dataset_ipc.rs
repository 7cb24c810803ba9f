//! The dataset as Arrow IPC streams (what `ncf-prep -o -` writes and every tool reads from `-`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ncf_core::data::dataset::Dataset;

fuzz_target!(|data: &[u8]| {
    if let Ok(ds) = Dataset::read_ipc(data, "fuzz") {
        ds.validate("fuzz").expect("a loaded dataset is valid");
    }
});
