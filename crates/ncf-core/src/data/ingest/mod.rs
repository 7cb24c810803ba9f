//! Reading rating files into [`Interactions`]: MovieLens `::` .dat, MovieLens CSV, ml-100k
//! `u.data`, any CSV/TSV, Parquet, GroupLens .zip archives, and the NCF authors' pre-split files.
//! Text is parsed as bytes (no per-line allocation), in parallel over newline-aligned chunks.
//! One file per format: [`delimited`] text, [`archive`] (.zip), [`parquet_file`], [`ncf_split`]
//! (the authors' files), [`movies`] (titles); this module detects the format and dispatches.

mod archive;
mod budget;
mod chunked;
mod columns;
mod delimited;
mod movies;
mod ncf_split;
mod parquet_file;
mod sniff;

use archive::*;
use budget::Held;
pub use chunked::{open_chunked, Chunked};
use delimited::*;
pub use delimited::{layout_for, parse_delimited, parse_text, sniff_text, Layout};
pub use movies::parse_movies;
use movies::*;
use ncf_split::*;
pub use ncf_split::{ncf_split_from_bytes, read_ncf_split};
use parquet_file::*;
use sniff::{gunzip, GZIP_MAGIC};

use crate::data::dataset::{hex, Dataset};
use crate::{Error, Result};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// Input formats `ncf-prep --format` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// MovieLens ml-1m / ml-10m `UserID::MovieID::Rating[::Timestamp]`, no header.
    MlDat,
    /// MovieLens `ratings.csv` (`userId,movieId,rating,timestamp`, header).
    MlCsv,
    /// ml-100k `u.data`: `user\titem\trating\ttimestamp`, no header.
    Ml100k,
    /// Any comma-separated file (header sniffed).
    Csv,
    /// Any tab-separated file (header sniffed).
    Tsv,
    Parquet,
    /// A GroupLens .zip (ratings file found inside).
    Zip,
    /// The NCF authors' `*.train.rating`, `*.test.rating`, `*.test.negative`.
    NcfSplit,
}

impl Format {
    pub const NAMES: [&'static str; 8] = [
        "ml-dat", "ml-csv", "ml-100k", "csv", "tsv", "parquet", "zip", "ncf",
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::MlDat => "ml-dat",
            Format::MlCsv => "ml-csv",
            Format::Ml100k => "ml-100k",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Parquet => "parquet",
            Format::Zip => "zip",
            Format::NcfSplit => "ncf",
        }
    }

    pub fn parse(s: &str) -> Result<Format> {
        Ok(match s {
            "ml-dat" | "dat" => Format::MlDat,
            "ml-csv" => Format::MlCsv,
            "ml-100k" | "u.data" => Format::Ml100k,
            "csv" => Format::Csv,
            "tsv" => Format::Tsv,
            "parquet" => Format::Parquet,
            "zip" => Format::Zip,
            "ncf" => Format::NcfSplit,
            _ => {
                return Err(Error::usage(format!(
                    "unknown format `{s}` (expected one of {})",
                    Format::NAMES.join(", ")
                )))
            }
        })
    }
}

/// How to read the input: everything `ncf-prep` lets the user override.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    pub format: Option<Format>,
    /// Column names or 1-based numbers.
    pub user_col: Option<String>,
    pub item_col: Option<String>,
    pub time_col: Option<String>,
    pub rating_col: Option<String>,
    /// Field separator (`\t` and `tab` mean a tab).
    pub sep: Option<String>,
    /// Some(true): first line is a header; Some(false): it is data; None: sniff.
    pub header: Option<bool>,
    /// Ids may be any text (otherwise they must be non-negative integers).
    pub text_ids: bool,
    /// Ratings are needed (`--min-rating`): the rating column must exist and parse.
    pub need_rating: bool,
    /// Movies file for titles (`--movies`).
    pub movies: Option<PathBuf>,
}

/// Raw ids, sorted in dense-id order: integers ascending, or text (byte order, or numeric
/// order when every id is a canonical integer).
#[derive(Clone, Debug, PartialEq)]
pub enum RawIds {
    Int(Vec<u64>),
    Text(Vec<String>),
}

impl RawIds {
    pub fn len(&self) -> usize {
        match self {
            RawIds::Int(v) => v.len(),
            RawIds::Text(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn text(&self, code: u32) -> String {
        match self {
            RawIds::Int(v) => v[code as usize].to_string(),
            RawIds::Text(v) => v[code as usize].clone(),
        }
    }
}

/// Every input row, ids replaced by codes into the sorted `user_ids` / `item_ids`.
#[derive(Clone, Debug, Default)]
pub struct Interactions {
    pub users: Vec<u32>,
    pub items: Vec<u32>,
    pub user_ids: RawIds,
    pub item_ids: RawIds,
    pub timestamps: Option<Vec<i64>>,
    pub ratings: Option<Vec<f32>>,
}

impl Default for RawIds {
    fn default() -> Self {
        RawIds::Int(Vec::new())
    }
}

/// What was read: the rows, or (authors' split) a finished dataset; titles; provenance.
pub enum Input {
    Rows {
        rows: Interactions,
        titles: Option<HashMap<String, String>>,
    },
    Split(Box<Dataset>),
}

pub struct Loaded {
    pub input: Input,
    /// `{"path", "format", "files": [{"path", "sha256", "bytes"}], ...}` for meta.json.
    pub source: serde_json::Value,
}

/// A whole input file: memory-mapped, or read (stdin, zip entries).
enum Bytes {
    Map(memmap2::Mmap),
    Vec(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Map(m) => m,
            Bytes::Vec(v) => v,
        }
    }
}

/// A whole input: a regular file mapped, anything else (stdin, a pipe) read and checked against
/// the memory available as it arrives (as text whose ratings are read when `rating`).
fn open_bytes(path: &Path, rating: bool) -> Result<Bytes> {
    let name = display_name(path);
    if crate::io::is_stdio(path) {
        let stdin = std::io::stdin();
        let v = budget::read_checked(stdin.lock(), &name, Held::default(), rating, |e| {
            Error::io("<stdin>", e)
        })?;
        return Ok(Bytes::Vec(v));
    }
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    if len == 0 || !f.metadata().map(|m| m.is_file()).unwrap_or(false) {
        let v = budget::read_checked(&f, &name, Held::default(), rating, |e| Error::io(path, e))?;
        return Ok(Bytes::Vec(v));
    }
    // SAFETY: the file is only read; a concurrent truncation by another process could fault,
    // which is the usual caveat of mmap-based readers (ripgrep, xsv).
    let m = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| Error::io(path, e))?;
    Ok(Bytes::Map(m))
}

fn sha256_hex(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

/// How an input path is named in messages (`<stdin>` for `-`).
pub fn display_name(path: &Path) -> String {
    if crate::io::is_stdio(path) {
        "<stdin>".into()
    } else {
        path.display().to_string()
    }
}

const PARQUET_HINT: &str =
    "looks like Parquet, which needs random access: give a .parquet file or --format parquet";
const RATINGS_FILES: [&str; 3] = ["ratings.csv", "ratings.dat", "u.data"];
const MOVIES_FILES: [&str; 3] = ["movies.csv", "movies.dat", "u.item"];

/// The prefix of the NCF authors' files when `path` is read as their split (`format` given, or
/// detected from the path: `x.train.rating`, a prefix, a directory holding them), else `None`.
/// Their split cannot come from stdin: it is three files.
pub fn authors_split(path: &Path, format: Option<Format>) -> Result<Option<PathBuf>> {
    let stdin = crate::io::is_stdio(path);
    match format {
        Some(Format::NcfSplit) if stdin => Err(Error::usage(
            "the NCF authors' split (--format ncf) is three files, PREFIX.train.rating, \
             PREFIX.test.rating and PREFIX.test.negative: give their PREFIX or their directory, \
             not stdin",
        )),
        Some(Format::NcfSplit) => Ok(Some(ncf_prefix(path).unwrap_or_else(|| path.to_path_buf()))),
        Some(_) => Ok(None),
        None if stdin => Ok(None),
        None => {
            let lower = path.to_string_lossy().to_ascii_lowercase();
            if lower.ends_with(".zip") || lower.ends_with(".parquet") {
                Ok(None)
            } else {
                Ok(ncf_prefix(path))
            }
        }
    }
}

/// Read any supported input.
pub fn load(path: &Path, opts: &ReadOptions) -> Result<Loaded> {
    if let Some(prefix) = authors_split(path, opts.format)? {
        return read_ncf_split(&prefix);
    }
    let stdin = crate::io::is_stdio(path);
    let format = match opts.format {
        Some(f) => Some(f),
        None if stdin => None,
        None => {
            let lower = path.to_string_lossy().to_ascii_lowercase();
            if lower.ends_with(".zip") {
                Some(Format::Zip)
            } else if lower.ends_with(".parquet") {
                Some(Format::Parquet)
            } else {
                None
            }
        }
    };
    // A directory: the ratings file inside it (and its movies file).
    if !stdin && path.is_dir() {
        let ratings = RATINGS_FILES
            .iter()
            .map(|n| path.join(n))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{}: directory holds no ratings file (looked for {}, *.train.rating)",
                    path.display(),
                    RATINGS_FILES.join(", ")
                ))
            })?;
        let mut opts = opts.clone();
        if opts.movies.is_none() {
            opts.movies = MOVIES_FILES
                .iter()
                .map(|n| path.join(n))
                .find(|p| p.is_file());
        }
        return load(&ratings, &opts);
    }
    let name = display_name(path);
    if format == Some(Format::Parquet) {
        if stdin {
            return Err(Error::usage(
                "cannot read Parquet from stdin (it needs random access): give a file",
            ));
        }
        return read_parquet(path, opts);
    }
    let bytes = open_bytes(path, opts.need_rating)?;
    // What is held: the input (mapped, or read from a pipe), then the text inside a gzip.
    let mut held = Held {
        bytes: bytes.len() as u64,
        resident: if matches!(bytes, Bytes::Vec(_)) {
            bytes.len() as u64
        } else {
            0
        },
    };
    // gzip (`ratings.csv.gz`) is read as the text inside it; the checksum is the file's.
    let unzipped = match bytes.starts_with(GZIP_MAGIC) {
        true => Some(gunzip(&bytes, &name, held, opts.need_rating)?),
        false => None,
    };
    if let Some(u) = &unzipped {
        held = held.plus_resident(u.len() as u64);
    }
    let content: &[u8] = unzipped.as_deref().unwrap_or(&bytes);
    let hash = std::thread::scope(|s| {
        let h = s.spawn(|| sha256_hex(&bytes));
        let format = match format {
            Some(f) => f,
            None if content.starts_with(b"PK\x03\x04") => Format::Zip,
            None if content.starts_with(b"PAR1") => {
                return Err(Error::usage(format!("{name}: {PARQUET_HINT}")))
            }
            None => sniff_text(name.strip_suffix(".gz").unwrap_or(&name), content),
        };
        let input = if format == Format::Zip {
            read_zip(content, &name, opts, held)
        } else {
            read_text(content, format, &name, opts, held).map(|(rows, f)| (rows, f, None))
        };
        Ok((input, h.join().expect("hash thread"), format))
    })?;
    let (input, sha, _) = hash;
    let (rows, format, entries) = input?;
    let mut files = vec![json!({"path": name, "sha256": sha, "bytes": bytes.len()})];
    if unzipped.is_some() {
        files[0]["compression"] = json!("gzip");
    }
    drop(unzipped);
    drop(bytes);
    let mut titles = None;
    if let Some((entry_titles, e)) = entries {
        titles = entry_titles;
        files[0]["entries"] = e;
    }
    if let Some(m) = &opts.movies {
        let (t, file) = read_movies_file(m)?;
        titles = Some(t);
        files.push(file);
    }
    Ok(Loaded {
        input: Input::Rows { rows, titles },
        source: json!({"path": name, "format": format.name(), "files": files}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ReadOptions {
        ReadOptions::default()
    }

    fn parse(text: &str, format: Format, o: &ReadOptions) -> Result<Interactions> {
        read_text(text.as_bytes(), format, "f", o, Held::default()).map(|(r, _)| r)
    }

    #[test]
    fn ml_dat_with_and_without_timestamps() {
        let r = parse(
            "1::10::5::100\n2::5::3::50\n1::5::4::70\n",
            Format::MlDat,
            &opts(),
        )
        .unwrap();
        assert_eq!(r.user_ids, RawIds::Int(vec![1, 2]));
        assert_eq!(r.item_ids, RawIds::Int(vec![5, 10]));
        assert_eq!(r.users, vec![0, 1, 0]);
        assert_eq!(r.items, vec![1, 0, 0]);
        assert_eq!(r.timestamps, Some(vec![100, 50, 70]));
        let r = parse("1::10::5\r\n2::5::3\r\n", Format::MlDat, &opts()).unwrap();
        assert_eq!(r.timestamps, None);
        assert_eq!(r.users, vec![0, 1]);
    }

    #[test]
    fn csv_with_header_in_any_column_order() {
        let r = parse(
            "timestamp,rating,movieId,userId\n9,4.0,7,3\n8,1.5,2,3\n",
            Format::Csv,
            &opts(),
        )
        .unwrap();
        assert_eq!(r.user_ids, RawIds::Int(vec![3]));
        assert_eq!(r.item_ids, RawIds::Int(vec![2, 7]));
        assert_eq!(r.timestamps, Some(vec![9, 8]));
        let o = ReadOptions {
            need_rating: true,
            ..opts()
        };
        let r = parse(
            "timestamp,rating,movieId,userId\n9,4.0,7,3\n8,1.5,2,3\n",
            Format::Csv,
            &o,
        )
        .unwrap();
        assert_eq!(r.ratings, Some(vec![4.0, 1.5]));
    }

    #[test]
    fn numbered_columns_and_separator() {
        let o = ReadOptions {
            user_col: Some("3".into()),
            item_col: Some("1".into()),
            time_col: Some("2".into()),
            sep: Some(";".into()),
            header: Some(false),
            ..opts()
        };
        let r = parse("7;100;42\n8;101;42\n", Format::Csv, &o).unwrap();
        assert_eq!(r.user_ids, RawIds::Int(vec![42]));
        assert_eq!(r.item_ids, RawIds::Int(vec![7, 8]));
        assert_eq!(r.timestamps, Some(vec![100, 101]));
    }

    #[test]
    fn text_ids_sorted_by_bytes_or_numerically() {
        let o = ReadOptions {
            text_ids: true,
            header: Some(false),
            ..opts()
        };
        let r = parse("b,x\na,y\nb,y\n", Format::Csv, &o).unwrap();
        assert_eq!(r.user_ids, RawIds::Text(vec!["a".into(), "b".into()]));
        assert_eq!(r.users, vec![1, 0, 1]);
        let r = parse("10,x\n9,y\n", Format::Csv, &o).unwrap();
        assert_eq!(r.user_ids, RawIds::Text(vec!["9".into(), "10".into()]));
    }

    #[test]
    fn errors_name_file_line_and_expectation() {
        let e = parse("1::2::3::4\n1::x::3::4\n", Format::MlDat, &opts())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f:2: expected an integer item id"), "{e}");
        let e = parse("1::2::3::4\n1::2::3\n", Format::MlDat, &opts())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f:2: expected 4 fields"), "{e}");
        let e = parse("UserID::MovieID::Rating\n1::2::3\n", Format::MlDat, &opts())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("f:1: expected an integer user id") && e.contains("header"),
            "{e}"
        );
        let e = parse("userId,rating,timestamp\n1,2,3\n", Format::Csv, &opts())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("f:1: header [userId, rating, timestamp] has no item column"),
            "{e}"
        );
        let e = parse("", Format::Csv, &opts()).unwrap_err().to_string();
        assert!(e.starts_with("f: empty input"), "{e}");
        let e = parse("userId,movieId\n", Format::Csv, &opts())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f: no rating rows"), "{e}");
        let e = parse("1,2,3,x\n", Format::Csv, &opts())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f:1: expected an integer timestamp"), "{e}");
        let e = parse("1,02,3\n", Format::Csv, &opts())
            .unwrap_err()
            .to_string();
        assert!(e.contains("item id"), "{e}");
    }

    #[test]
    fn parallel_chunks_report_global_line_numbers() {
        let mut s = String::new();
        for k in 0..400_000 {
            s.push_str(&format!("{},{},4,{}\n", k % 1000, k % 77, k));
        }
        let r = parse(&s, Format::Csv, &opts()).unwrap();
        assert_eq!(r.users.len(), 400_000);
        assert_eq!(r.timestamps.as_ref().unwrap()[399_999], 399_999);
        assert_eq!(r.user_ids.len(), 1000);
        assert_eq!(r.users[1234], 234);
        s.push_str("5,x,4,1\n");
        let e = parse(&s, Format::Csv, &opts()).unwrap_err().to_string();
        assert!(e.starts_with("f:400001:"), "{e}");
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff_text("r.dat", b"1::2::3"), Format::MlDat);
        assert_eq!(sniff_text("x/u.data", b"1\t2\t3\t4"), Format::Ml100k);
        assert_eq!(
            sniff_text("r.csv", b"userId,movieId,rating,timestamp"),
            Format::MlCsv
        );
        assert_eq!(sniff_text("r.txt", b"a\tb"), Format::Tsv);
        assert_eq!(sniff_text("r.txt", b"a,b"), Format::Csv);
    }

    #[test]
    fn movies_files() {
        let m = parse_movies(
            b"movieId,title,genres\r\n1,Toy Story (1995),A\r\n2,\"City, The (1990)\",B\r\n",
            "movies.csv",
            "m",
        )
        .unwrap();
        assert_eq!(m["1"], "Toy Story (1995)");
        assert_eq!(m["2"], "City, The (1990)");
        let m = parse_movies(b"3::Caf\xe9 (1990)::Drama\n", "movies.dat", "m").unwrap();
        assert_eq!(m["3"], "Caf\u{e9} (1990)");
        let m = parse_movies(b"4|Four Rooms (1995)|01-Jan-1995||http|0\n", "u.item", "m").unwrap();
        assert_eq!(m["4"], "Four Rooms (1995)");
    }

    #[test]
    fn quoted_fields_split_as_rfc_4180_and_timestamps_span_i64() {
        let mut out = Vec::new();
        split_quoted(br#""a,b",2,"say ""hi""",,x"y"#, b",", &mut out).unwrap();
        assert_eq!(out, [&b"a,b"[..], b"2", b"say \"hi\"", b"", b"x\"y"]);
        split_quoted(br#""a"::"b""#, b"::", &mut out).unwrap();
        assert_eq!(out, [&b"a"[..], b"b"]);
        let e = split_quoted(br#""a"b,1"#, b",", &mut out).unwrap_err();
        assert!(
            e.contains("field 1 has text after its closing quote"),
            "{e}"
        );
        let e = split_quoted(br#"1,"open"#, b",", &mut out).unwrap_err();
        assert!(e.contains("field 2 opens a quote"), "{e}");
        let o = opts();
        let r = parse("\"user\",\"item\"\n\"1\",\"2\"\n3,4\n", Format::Csv, &o).unwrap();
        assert_eq!(r.user_ids, RawIds::Int(vec![1, 3]));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"-9223372036854775809"), None);
        assert_eq!(budget::lines(b"a\nb"), 2);
        assert_eq!(budget::lines(&b"1,2\n".repeat(300)), 300);
    }

    #[test]
    fn merge_int_sparse_and_dense_agree() {
        let (c, u) = merge_int(vec![vec![5, 1, 5], vec![u64::MAX - 1, 1]]);
        assert_eq!(u, vec![1, 5, u64::MAX - 1]);
        assert_eq!(c, vec![1, 0, 1, 2, 0]);
        let (c, u) = merge_int(vec![vec![5, 1, 5], vec![9, 1]]);
        assert_eq!(u, vec![1, 5, 9]);
        assert_eq!(c, vec![1, 0, 1, 2, 0]);
    }

    /// Inputs the fuzzer found (fuzz/regressions/ratings_text: byte 0 picks the parser, byte 1
    /// the options): each is an error naming the input, without allocating what it declares.
    #[test]
    fn fuzz_regressions_are_errors() {
        let zip_oom: &[u8] = include_bytes!(
            "../../../../../fuzz/regressions/ratings_text/oom-1118241c298dec5642e47419e41493df039f18fa"
        );
        assert_eq!(zip_oom[0] % 8, 5, "a zip input");
        let r = parse_text(&zip_oom[2..], Format::Zip, "oom.zip", &opts());
        let e = r.map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("oom.zip"), "{e}");
    }
}
