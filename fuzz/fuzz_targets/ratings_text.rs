//! Raw ratings parsers: ml-1m `::`, MovieLens CSV, u.data, any CSV/TSV, GroupLens zip, movies
//! files. Byte 0 picks the parser, byte 1 the options; the rest is the file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ncf_core::data::ingest::{parse_movies, parse_text, Format, ReadOptions};

const FORMATS: [Format; 6] = [
    Format::MlDat,
    Format::MlCsv,
    Format::Ml100k,
    Format::Csv,
    Format::Tsv,
    Format::Zip,
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (pick, flags, body) = (data[0], data[1], &data[2..]);
    let k = pick as usize % 8;
    if k >= 6 {
        let name = if k == 6 { "movies.csv" } else { "movies.dat" };
        let _ = parse_movies(body, name, name);
        return;
    }
    let opts = ReadOptions {
        text_ids: flags & 1 != 0,
        need_rating: flags & 2 != 0,
        header: match (flags >> 2) & 3 {
            0 => None,
            1 => Some(true),
            _ => Some(false),
        },
        // Either the format's own default, or sniffing (as ncf-prep does without --format).
        format: (flags & 16 != 0).then_some(FORMATS[k]),
        ..Default::default()
    };
    let _ = parse_text(body, FORMATS[k], "fuzz", &opts);
});
