//! The NCF authors' split files: train.rating, test.rating and test.negative, separated by 0xFF
//! bytes (which the text files never contain).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ncf_core::data::ingest::ncf_split_from_bytes;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0xFF);
    let train = parts.next().unwrap_or_default();
    let test = parts.next().unwrap_or_default();
    let neg = parts.next().unwrap_or_default();
    let _ = ncf_split_from_bytes(
        [train, test, neg],
        ["x.train.rating", "x.test.rating", "x.test.negative"],
        "x",
    );
});
