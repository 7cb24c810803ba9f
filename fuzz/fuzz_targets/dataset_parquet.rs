//! The dataset directory reader: meta.json and the five Parquet tables, each section a u32 LE
//! length followed by the file (a missing section is an empty file).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ncf_core::data::dataset::Dataset;

const FILES: [&str; 6] = [
    "meta.json",
    "train.parquet",
    "test.parquet",
    "users.parquet",
    "items.parquet",
    "test_negatives.parquet",
];

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut files: Vec<(&str, &[u8])> = Vec::new();
    for name in FILES {
        let body: &[u8] = if rest.len() >= 4 {
            let n = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            let n = n.min(rest.len() - 4);
            let b = &rest[4..4 + n];
            rest = &rest[4 + n..];
            b
        } else {
            rest = &[];
            &[]
        };
        files.push((name, body));
    }
    if let Ok(ds) = Dataset::from_bytes(&files) {
        ds.validate("fuzz").expect("a loaded dataset is valid");
    }
});
