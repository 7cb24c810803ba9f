//! Reading rating files into [`Interactions`]: MovieLens `::` .dat, MovieLens CSV, ml-100k
//! `u.data`, any CSV/TSV, Parquet, GroupLens .zip archives, and the NCF authors' pre-split files.
//! Text is parsed as bytes (no per-line allocation), in parallel over newline-aligned chunks.

use crate::dataset::{hex, Dataset};
use crate::{Error, Result};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Cursor, Read};
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

// ---------------------------------------------------------------------------------------------
// Bytes in memory

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

fn open_bytes(path: &Path) -> Result<Bytes> {
    if crate::io::is_stdio(path) {
        return Ok(Bytes::Vec(crate::io::read_all(path)?));
    }
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    if len == 0 || !f.metadata().map(|m| m.is_file()).unwrap_or(false) {
        let mut v = Vec::new();
        (&f).read_to_end(&mut v).map_err(|e| Error::io(path, e))?;
        return Ok(Bytes::Vec(v));
    }
    // SAFETY: the file is only read; a concurrent truncation by another process could fault,
    // which is the usual caveat of mmap-based readers (ripgrep, xsv).
    let m = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| Error::io(path, e))?;
    Ok(Bytes::Map(m))
}

/// Memory parsing and preparing a text ratings file takes, per byte of input: a MovieLens row
/// is ~20 bytes of text and ~60 bytes in memory (ids as u64 then u32 codes, timestamps,
/// ratings, the sort permutation), so about 3 bytes per input byte.
const MEMORY_PER_INPUT_BYTE: u64 = 3;

/// Refuse an input whose preparation would not fit in memory, before parsing it.
fn check_input_memory(name: &str, len: u64) -> Result<()> {
    let need = len.saturating_mul(MEMORY_PER_INPUT_BYTE);
    if let Some((avail, source)) = crate::dataset::memory_available() {
        if need > avail {
            return Err(Error::invalid(format!(
                "{name}: preparing this {} input needs about {} of memory, but only {} is \
                 available ({source})",
                crate::dataset::human_bytes(len),
                crate::dataset::human_bytes(need),
                crate::dataset::human_bytes(avail)
            )));
        }
    }
    Ok(())
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

// ---------------------------------------------------------------------------------------------
// Delimited text

/// Where the columns are in a delimited file.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub sep: Vec<u8>,
    pub header: bool,
    pub n_fields: usize,
    pub user: usize,
    pub item: usize,
    pub time: Option<usize>,
    pub rating: Option<usize>,
}

const USER_NAMES: [&str; 5] = ["userid", "user_id", "user", "uid", "userId"];
const ITEM_NAMES: [&str; 8] = [
    "movieid", "movie_id", "itemid", "item_id", "item", "movie", "iid", "itemId",
];
const TIME_NAMES: [&str; 3] = ["timestamp", "time", "ts"];
const RATING_NAMES: [&str; 3] = ["rating", "score", "value"];

/// Split one line (without its newline) into fields; returns how many there were (fields past
/// `out.len()` are counted but not stored).
#[inline]
fn split_fields<'a>(line: &'a [u8], sep: &[u8], out: &mut [&'a [u8]; 16]) -> usize {
    let mut n = 0;
    let mut start = 0;
    if sep.len() == 1 {
        let s = sep[0];
        for (i, &b) in line.iter().enumerate() {
            if b == s {
                if n < 16 {
                    out[n] = &line[start..i];
                }
                n += 1;
                start = i + 1;
            }
        }
    } else {
        let mut i = 0;
        while i + sep.len() <= line.len() {
            if &line[i..i + sep.len()] == sep {
                if n < 16 {
                    out[n] = &line[start..i];
                }
                n += 1;
                i += sep.len();
                start = i;
            } else {
                i += 1;
            }
        }
    }
    if n < 16 {
        out[n] = &line[start..];
    }
    n + 1
}

fn strip_cr(line: &[u8]) -> &[u8] {
    match line.last() {
        Some(b'\r') => &line[..line.len() - 1],
        _ => line,
    }
}

fn shown(field: &[u8]) -> String {
    let s = String::from_utf8_lossy(field);
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s.into_owned()
    }
}

/// Parse a canonical non-negative integer (no sign, no leading zeros, at most u64).
#[inline]
fn parse_id(f: &[u8]) -> Option<u64> {
    if f.is_empty() || f.len() > 20 || (f.len() > 1 && f[0] == b'0') {
        return None;
    }
    let mut v: u64 = 0;
    for &b in f {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(d as u64)?;
    }
    Some(v)
}

#[inline]
fn parse_i64(f: &[u8]) -> Option<i64> {
    let (neg, digits) = match f.first() {
        Some(b'-') => (true, &f[1..]),
        _ => (false, f),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: i64 = 0;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(d as i64)?;
    }
    Some(if neg { -v } else { v })
}

fn parse_f32(f: &[u8]) -> Option<f32> {
    std::str::from_utf8(f)
        .ok()?
        .trim()
        .parse::<f32>()
        .ok()
        .filter(|x| x.is_finite())
}

/// A column of ids being collected by one chunk.
enum IdSink<'a> {
    Int(Vec<u64>),
    Text {
        map: HashMap<&'a [u8], u32>,
        keys: Vec<&'a [u8]>,
        codes: Vec<u32>,
    },
}

impl<'a> IdSink<'a> {
    fn new(text: bool, cap: usize) -> Self {
        if text {
            IdSink::Text {
                map: HashMap::new(),
                keys: Vec::new(),
                codes: Vec::with_capacity(cap),
            }
        } else {
            IdSink::Int(Vec::with_capacity(cap))
        }
    }
    #[inline]
    fn push(&mut self, f: &'a [u8]) -> bool {
        match self {
            IdSink::Int(v) => match parse_id(f) {
                Some(x) => {
                    v.push(x);
                    true
                }
                None => false,
            },
            IdSink::Text { map, keys, codes } => {
                let f = unquote(f);
                if f.is_empty() {
                    return false;
                }
                let next = keys.len() as u32;
                let c = *map.entry(f).or_insert_with(|| {
                    keys.push(f);
                    next
                });
                codes.push(c);
                true
            }
        }
    }
}

fn unquote(f: &[u8]) -> &[u8] {
    if f.len() >= 2 && f[0] == b'"' && f[f.len() - 1] == b'"' {
        &f[1..f.len() - 1]
    } else {
        f
    }
}

struct Chunk<'a> {
    users: IdSink<'a>,
    items: IdSink<'a>,
    times: Vec<i64>,
    ratings: Vec<f32>,
}

/// An error in a chunk: line number within the chunk (1-based) and message.
struct ChunkError(usize, String);

fn parse_chunk<'a>(
    buf: &'a [u8],
    layout: &Layout,
    text_ids: bool,
    need_rating: bool,
) -> std::result::Result<Chunk<'a>, ChunkError> {
    let est = buf.len() / 24 + 16;
    let mut c = Chunk {
        users: IdSink::new(text_ids, est),
        items: IdSink::new(text_ids, est),
        times: Vec::with_capacity(if layout.time.is_some() { est } else { 0 }),
        ratings: Vec::with_capacity(if need_rating { est } else { 0 }),
    };
    let mut fields: [&[u8]; 16] = [&[]; 16];
    let mut pos = 0;
    let mut line_no = 0;
    let sep_name = String::from_utf8_lossy(&layout.sep).replace('\t', "\\t");
    while pos < buf.len() {
        let end = buf[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |k| pos + k);
        let line = strip_cr(&buf[pos..end]);
        pos = end + 1;
        line_no += 1;
        if line.is_empty() {
            continue;
        }
        let n = split_fields(line, &layout.sep, &mut fields);
        if n != layout.n_fields {
            return Err(ChunkError(
                line_no,
                format!(
                    "expected {} fields separated by `{sep_name}`, found {n}: `{}`",
                    layout.n_fields,
                    shown(line)
                ),
            ));
        }
        let what = if text_ids {
            "a non-empty"
        } else {
            "an integer"
        };
        if !c.users.push(fields[layout.user]) {
            return Err(ChunkError(
                line_no,
                format!(
                    "expected {what} user id in field {}, found `{}`{}",
                    layout.user + 1,
                    shown(fields[layout.user]),
                    hint(line_no, layout, text_ids)
                ),
            ));
        }
        if !c.items.push(fields[layout.item]) {
            return Err(ChunkError(
                line_no,
                format!(
                    "expected {what} item id in field {}, found `{}`{}",
                    layout.item + 1,
                    shown(fields[layout.item]),
                    hint(line_no, layout, text_ids)
                ),
            ));
        }
        if let Some(t) = layout.time {
            match parse_i64(unquote(fields[t])) {
                Some(x) => c.times.push(x),
                None => {
                    return Err(ChunkError(
                        line_no,
                        format!(
                            "expected an integer timestamp in field {}, found `{}`",
                            t + 1,
                            shown(fields[t])
                        ),
                    ))
                }
            }
        }
        if need_rating {
            let r = layout.rating.expect("checked when resolving columns");
            match parse_f32(unquote(fields[r])) {
                Some(x) => c.ratings.push(x),
                None => {
                    return Err(ChunkError(
                        line_no,
                        format!(
                            "expected a number (rating) in field {}, found `{}`",
                            r + 1,
                            shown(fields[r])
                        ),
                    ))
                }
            }
        }
    }
    Ok(c)
}

fn hint(line_no: usize, layout: &Layout, text_ids: bool) -> String {
    if line_no == 1 && !layout.header {
        " (a header line? this input is read without one; pass --header if it has one)".into()
    } else if !text_ids {
        " (pass --text-ids for non-numeric ids)".into()
    } else {
        String::new()
    }
}

/// Find a column by name (case-insensitive) or 1-based number; `names` are the defaults.
fn resolve_col(
    header: Option<&[String]>,
    given: Option<&str>,
    names: &[&str],
    n_fields: usize,
    what: &str,
    loc: &str,
) -> Result<Option<usize>> {
    if let Some(g) = given {
        if let Some(h) = header {
            if let Some(k) = h.iter().position(|c| c.eq_ignore_ascii_case(g)) {
                return Ok(Some(k));
            }
        }
        return match g.parse::<usize>() {
            Ok(k) if k >= 1 && k <= n_fields => Ok(Some(k - 1)),
            _ => Err(Error::parse(
                loc,
                format!(
                    "no {what} column `{g}` (the input has {n_fields} columns{})",
                    header
                        .map(|h| format!(": {}", h.join(", ")))
                        .unwrap_or_default()
                ),
            )),
        };
    }
    Ok(header.and_then(|h| {
        h.iter()
            .position(|c| names.iter().any(|n| c.eq_ignore_ascii_case(n)))
    }))
}

/// Work out separator, header and columns from the first line.
pub fn layout_for(
    format: Format,
    first_line: &[u8],
    opts: &ReadOptions,
    loc: &str,
) -> Result<Layout> {
    let sep: Vec<u8> = match opts.sep.as_deref() {
        Some("\\t") | Some("tab") | Some("\t") => b"\t".to_vec(),
        Some("") => return Err(Error::usage("--sep must not be empty")),
        Some(s) => s.as_bytes().to_vec(),
        None => match format {
            Format::MlDat => b"::".to_vec(),
            Format::Ml100k | Format::Tsv => b"\t".to_vec(),
            _ => b",".to_vec(),
        },
    };
    let line = strip_cr(first_line);
    let mut f: [&[u8]; 16] = [&[]; 16];
    let n_fields = split_fields(line, &sep, &mut f);
    if n_fields > 16 {
        return Err(Error::parse(
            format!("{loc}:1"),
            format!("{n_fields} fields: at most 16 are supported"),
        ));
    }
    let header = match opts.header {
        Some(h) => h,
        None => match format {
            Format::MlDat | Format::Ml100k => false,
            Format::MlCsv => true,
            // A header when the first field is not a number; with text ids, when the first
            // line names a known or given column.
            _ => {
                let known = |c: &[u8]| {
                    let c = String::from_utf8_lossy(unquote(c));
                    let c = c.trim();
                    USER_NAMES
                        .iter()
                        .chain(&ITEM_NAMES)
                        .any(|n| c.eq_ignore_ascii_case(n))
                        || [&opts.user_col, &opts.item_col]
                            .iter()
                            .any(|g| g.as_deref() == Some(c))
                };
                parse_i64(unquote(f[0])).is_none()
                    && (!opts.text_ids || f[..n_fields.min(16)].iter().any(|c| known(c)))
            }
        },
    };
    let names: Option<Vec<String>> = header.then(|| {
        f[..n_fields]
            .iter()
            .map(|c| String::from_utf8_lossy(unquote(c)).trim().to_string())
            .collect()
    });
    let loc1 = format!("{loc}:1");
    let h = names.as_deref();
    let positional = |k: usize| (k < n_fields).then_some(k);
    let pick = |given: Option<&String>,
                defaults: &[&str],
                pos: usize,
                what: &str|
     -> Result<Option<usize>> {
        match (given, h) {
            (None, None) => Ok(positional(pos)),
            _ => resolve_col(
                h,
                given.map(|s| s.as_str()),
                defaults,
                n_fields,
                what,
                &loc1,
            ),
        }
    };
    let user = pick(opts.user_col.as_ref(), &USER_NAMES, 0, "user")?;
    let item = pick(opts.item_col.as_ref(), &ITEM_NAMES, 1, "item")?;
    let rating = pick(opts.rating_col.as_ref(), &RATING_NAMES, 2, "rating")?;
    let time = pick(opts.time_col.as_ref(), &TIME_NAMES, 3, "timestamp")?;
    let missing = |what: &str, names: &[&str], flag: &str| {
        Error::parse(
            &loc1,
            match h {
                Some(h) => format!(
                    "header [{}] has no {what} column (looked for {}; name it with {flag})",
                    h.join(", "),
                    names.join(", ")
                ),
                None => format!(
                    "expected at least 2 fields separated by `{}`, found {n_fields}: `{}`",
                    String::from_utf8_lossy(&sep).replace('\t', "\\t"),
                    shown(line)
                ),
            },
        )
    };
    let user = user.ok_or_else(|| missing("user", &USER_NAMES, "--user-col"))?;
    let item = item.ok_or_else(|| missing("item", &ITEM_NAMES, "--item-col"))?;
    if user == item {
        return Err(Error::usage("the user and item columns must differ"));
    }
    if opts.need_rating && rating.is_none() {
        return Err(missing("rating", &RATING_NAMES, "--rating-col"));
    }
    Ok(Layout {
        sep,
        header,
        n_fields,
        user,
        item,
        time,
        rating,
    })
}

/// Merge per-chunk integer ids into sorted unique ids and codes.
fn merge_int(chunks: Vec<Vec<u64>>) -> (Vec<u32>, Vec<u64>) {
    let total: usize = chunks.iter().map(Vec::len).sum();
    let max = chunks
        .iter()
        .flat_map(|c| c.iter().copied().max())
        .max()
        .unwrap_or(0);
    let mut codes = Vec::with_capacity(total);
    if (max as u128) < 2 * total as u128 + (1 << 20) {
        // Direct table: one slot per possible id.
        let mut table = vec![u32::MAX; max as usize + 1];
        for c in &chunks {
            for &v in c {
                table[v as usize] = 0;
            }
        }
        let mut uniq = Vec::new();
        for (v, slot) in table.iter_mut().enumerate() {
            if *slot == 0 {
                *slot = uniq.len() as u32;
                uniq.push(v as u64);
            }
        }
        for c in chunks {
            codes.extend(c.iter().map(|&v| table[v as usize]));
        }
        (codes, uniq)
    } else {
        let mut uniq: Vec<u64> = chunks.iter().flatten().copied().collect();
        uniq.sort_unstable();
        uniq.dedup();
        for c in chunks {
            codes.extend(
                c.iter()
                    .map(|v| uniq.binary_search(v).expect("present") as u32),
            );
        }
        (codes, uniq)
    }
}

/// Order of text ids: canonical integers numerically when all are, else bytes.
fn text_order(keys: &mut [&[u8]]) {
    if keys.iter().all(|k| parse_id(k).is_some()) {
        keys.sort_unstable_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    } else {
        keys.sort_unstable();
    }
}

fn merge_text(
    chunks: Vec<(Vec<&[u8]>, Vec<u32>)>,
    what: &str,
    loc: &str,
) -> Result<(Vec<u32>, Vec<String>)> {
    let mut all: Vec<&[u8]> = chunks.iter().flat_map(|(k, _)| k.iter().copied()).collect();
    text_order(&mut all);
    all.dedup();
    let index: HashMap<&[u8], u32> = all
        .iter()
        .enumerate()
        .map(|(i, k)| (*k, i as u32))
        .collect();
    let mut codes = Vec::new();
    for (keys, local) in &chunks {
        let remap: Vec<u32> = keys.iter().map(|k| index[k]).collect();
        codes.extend(local.iter().map(|&c| remap[c as usize]));
    }
    let mut names = Vec::with_capacity(all.len());
    for k in all {
        names.push(String::from_utf8(k.to_vec()).map_err(|_| {
            Error::parse(
                loc,
                format!("a {what} id is not valid UTF-8: `{}`", shown(k)),
            )
        })?);
    }
    Ok((codes, names))
}

/// Parse delimited text (already in memory) with `layout`; `loc` names the file in errors.
pub fn parse_delimited(
    buf: &[u8],
    layout: &Layout,
    opts: &ReadOptions,
    loc: &str,
) -> Result<Interactions> {
    let body_start = if layout.header {
        buf.iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |k| k + 1)
    } else {
        0
    };
    let first_line = if layout.header { 2 } else { 1 };
    let body = &buf[body_start..];
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let parts = if body.len() < (4 << 20) { 1 } else { threads };
    let mut bounds = vec![0];
    for k in 1..parts {
        let at = (body.len() * k / parts).max(*bounds.last().unwrap());
        let cut = body[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |p| at + p + 1);
        bounds.push(cut);
    }
    bounds.push(body.len());
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = bounds
            .windows(2)
            .map(|w| {
                let part = &body[w[0]..w[1]];
                s.spawn(move || parse_chunk(part, layout, opts.text_ids, opts.need_rating))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("parser thread"))
            .collect()
    });
    let mut chunks = Vec::with_capacity(results.len());
    for (k, r) in results.into_iter().enumerate() {
        match r {
            Ok(c) => chunks.push(c),
            Err(ChunkError(line, msg)) => {
                let before = body[..bounds[k]].iter().filter(|&&b| b == b'\n').count();
                return Err(Error::parse(
                    format!("{loc}:{}", first_line + before + line - 1),
                    msg,
                ));
            }
        }
    }
    let rows: usize = chunks
        .iter()
        .map(|c| c.times.len().max(c.ratings.len()).max(sink_len(&c.users)))
        .sum();
    if rows == 0 {
        return Err(Error::parse(
            loc,
            "no rating rows (expected lines of user, item, rating, timestamp)",
        ));
    }
    let timestamps = layout
        .time
        .map(|_| concat(chunks.iter_mut().map(|c| std::mem::take(&mut c.times))));
    let ratings = opts
        .need_rating
        .then(|| concat(chunks.iter_mut().map(|c| std::mem::take(&mut c.ratings))));
    let (mut us, mut is) = (Vec::new(), Vec::new());
    for c in chunks {
        us.push(c.users);
        is.push(c.items);
    }
    let (users, user_ids) = merge_sinks(us, "user", loc)?;
    let (items, item_ids) = merge_sinks(is, "item", loc)?;
    Ok(Interactions {
        users,
        items,
        user_ids,
        item_ids,
        timestamps,
        ratings,
    })
}

fn sink_len(s: &IdSink) -> usize {
    match s {
        IdSink::Int(v) => v.len(),
        IdSink::Text { codes, .. } => codes.len(),
    }
}

fn concat<T: Copy>(parts: impl Iterator<Item = Vec<T>>) -> Vec<T> {
    let parts: Vec<Vec<T>> = parts.collect();
    if parts.len() == 1 {
        return parts.into_iter().next().unwrap();
    }
    let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for p in parts {
        out.extend_from_slice(&p);
    }
    out
}

fn merge_sinks(sinks: Vec<IdSink>, what: &str, loc: &str) -> Result<(Vec<u32>, RawIds)> {
    if matches!(sinks.first(), Some(IdSink::Int(_))) {
        let ints = sinks
            .into_iter()
            .map(|s| {
                if let IdSink::Int(v) = s {
                    v
                } else {
                    unreachable!()
                }
            })
            .collect();
        let (codes, uniq) = merge_int(ints);
        Ok((codes, RawIds::Int(uniq)))
    } else {
        let texts = sinks
            .into_iter()
            .map(|s| {
                if let IdSink::Text { keys, codes, .. } = s {
                    (keys, codes)
                } else {
                    unreachable!()
                }
            })
            .collect();
        let (codes, names) = merge_text(texts, what, loc)?;
        Ok((codes, RawIds::Text(names)))
    }
}

// ---------------------------------------------------------------------------------------------
// Format detection

fn first_line(buf: &[u8]) -> &[u8] {
    let end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    &buf[..end]
}

/// Guess a text format from the file name and its first line.
pub fn sniff_text(name: &str, buf: &[u8]) -> Format {
    let line = first_line(buf);
    let lower = name.to_ascii_lowercase();
    let has = |pat: &[u8]| line.windows(pat.len()).any(|w| w == pat);
    if has(b"::") {
        Format::MlDat
    } else if lower.ends_with("u.data") || lower.ends_with(".data") {
        Format::Ml100k
    } else if lower.ends_with(".tsv") || (line.contains(&b'\t') && !line.contains(&b',')) {
        Format::Tsv
    } else if line.to_ascii_lowercase().starts_with(b"userid,movieid") {
        Format::MlCsv
    } else {
        Format::Csv
    }
}

/// The prefix of the authors' split files when `path` names one (`x.train.rating`, prefix `x`, or
/// a directory holding exactly one `*.train.rating`).
fn ncf_prefix(path: &Path) -> Option<PathBuf> {
    let s = path.to_string_lossy();
    for suffix in [".train.rating", ".test.rating", ".test.negative"] {
        if let Some(p) = s.strip_suffix(suffix) {
            return Some(PathBuf::from(p));
        }
    }
    if path.is_dir() {
        let mut found = Vec::new();
        for e in std::fs::read_dir(path).ok()?.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(p) = n.strip_suffix(".train.rating") {
                found.push(path.join(p));
            }
        }
        return (found.len() == 1).then(|| found.pop().unwrap());
    }
    let train = PathBuf::from(format!("{s}.train.rating"));
    train.is_file().then(|| path.to_path_buf())
}

const PARQUET_HINT: &str =
    "looks like Parquet, which needs random access: give a .parquet file or --format parquet";
const RATINGS_FILES: [&str; 3] = ["ratings.csv", "ratings.dat", "u.data"];
const MOVIES_FILES: [&str; 3] = ["movies.csv", "movies.dat", "u.item"];

/// Read any supported input.
pub fn load(path: &Path, opts: &ReadOptions) -> Result<Loaded> {
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
            } else if ncf_prefix(path).is_some() {
                Some(Format::NcfSplit)
            } else {
                None
            }
        }
    };
    if format == Some(Format::NcfSplit) {
        let prefix = ncf_prefix(path).unwrap_or_else(|| path.to_path_buf());
        return read_ncf_split(&prefix);
    }
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
    let bytes = open_bytes(path)?;
    check_input_memory(&name, bytes.len() as u64)?;
    let hash = std::thread::scope(|s| {
        let h = s.spawn(|| sha256_hex(&bytes));
        let format = match format {
            Some(f) => f,
            None if bytes.starts_with(b"PK\x03\x04") => Format::Zip,
            None if bytes.starts_with(b"PAR1") => {
                return Err(Error::usage(format!("{name}: {PARQUET_HINT}")))
            }
            None => sniff_text(&name, &bytes),
        };
        let input = if format == Format::Zip {
            read_zip(&bytes, &name, opts)
        } else {
            read_text(&bytes, format, &name, opts).map(|(rows, f)| (rows, f, None))
        };
        Ok((input, h.join().expect("hash thread"), format))
    })?;
    let (input, sha, _) = hash;
    let (rows, format, entries) = input?;
    let mut files = vec![json!({"path": name, "sha256": sha, "bytes": bytes.len()})];
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

/// Parse a ratings file already in memory as `format` (`name` labels errors): the delimited-text
/// path of [`load`] (ml-1m `::`, MovieLens CSV, u.data, any CSV/TSV) and the fuzzer's entry point.
pub fn parse_text(
    buf: &[u8],
    format: Format,
    name: &str,
    opts: &ReadOptions,
) -> Result<Interactions> {
    match format {
        Format::Parquet | Format::NcfSplit => Err(Error::usage(format!(
            "{name}: {} is not a text format",
            format.name()
        ))),
        Format::Zip => read_zip(buf, name, opts).map(|(rows, _, _)| rows),
        _ => read_text(buf, format, name, opts).map(|(rows, _)| rows),
    }
}

fn read_text(
    buf: &[u8],
    format: Format,
    name: &str,
    opts: &ReadOptions,
) -> Result<(Interactions, Format)> {
    let start = buf.iter().position(|b| !b.is_ascii_whitespace());
    if start.is_none() {
        return Err(Error::parse(
            name,
            "empty input (expected rating rows: user, item, rating, timestamp)",
        ));
    }
    let format = if matches!(format, Format::Csv | Format::Tsv) && opts.format.is_none() {
        sniff_text(name, buf)
    } else {
        format
    };
    let layout = layout_for(format, first_line(buf), opts, name)?;
    Ok((parse_delimited(buf, &layout, opts, name)?, format))
}

type ZipRead = (
    Interactions,
    Format,
    Option<(Option<HashMap<String, String>>, serde_json::Value)>,
);

fn read_zip(bytes: &[u8], name: &str, opts: &ReadOptions) -> Result<ZipRead> {
    let bad =
        |e: &dyn std::fmt::Display| Error::parse(name, format!("not a readable zip archive ({e})"));
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| bad(&e))?;
    let names: Vec<String> = zip
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(&e))?;
    let find = |wanted: &[&str]| {
        wanted.iter().find_map(|w| {
            names
                .iter()
                .position(|n| n == w || n.ends_with(&format!("/{w}")))
        })
    };
    let Some(ri) = find(&RATINGS_FILES) else {
        return Err(Error::invalid(format!(
            "{name}: no ratings file inside the zip (looked for {}; it holds {})",
            RATINGS_FILES.join(", "),
            if names.is_empty() {
                "nothing".to_string()
            } else {
                names.join(", ")
            }
        )));
    };
    let entry = |zip: &mut zip::ZipArchive<Cursor<&[u8]>>, i: usize| -> Result<Vec<u8>> {
        let mut f = zip.by_index(i).map_err(|e| bad(&e))?;
        // The declared size is untrusted (found by fuzzing: it allocated 4 GB up front): check
        // it against the memory available, and let the buffer grow with what really arrives.
        check_input_memory(&format!("{name}!{}", names[i]), f.size())?;
        let mut v = Vec::with_capacity(f.size().min(1 << 26) as usize);
        f.read_to_end(&mut v)
            .map_err(|e| Error::parse(format!("{name}!{}", names[i]), e.to_string()))?;
        Ok(v)
    };
    let data = entry(&mut zip, ri)?;
    let rloc = format!("{name}!{}", names[ri]);
    let format = sniff_text(&names[ri], &data);
    let (rows, format) = read_text(
        &data,
        format,
        &rloc,
        &ReadOptions {
            format: Some(format),
            ..opts.clone()
        },
    )?;
    let mut entries = vec![json!({"path": names[ri], "sha256": sha256_hex(&data)})];
    let mut titles = None;
    if opts.movies.is_none() {
        if let Some(mi) = find(&MOVIES_FILES) {
            let m = entry(&mut zip, mi)?;
            titles = Some(parse_movies(
                &m,
                &names[mi],
                &format!("{name}!{}", names[mi]),
            )?);
            entries.push(json!({"path": names[mi], "sha256": sha256_hex(&m)}));
        }
    }
    Ok((rows, format, Some((titles, json!(entries)))))
}

// ---------------------------------------------------------------------------------------------
// Movies (titles)

fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| c as char).collect()
}

/// One CSV record with RFC 4180 quotes; returns fields and the rest of the buffer.
fn csv_record(buf: &[u8]) -> (Vec<Vec<u8>>, &[u8]) {
    let mut fields = Vec::new();
    let mut cur = Vec::new();
    let mut i = 0;
    let mut quoted = false;
    while i < buf.len() {
        let b = buf[i];
        if quoted {
            if b == b'"' {
                if buf.get(i + 1) == Some(&b'"') {
                    cur.push(b'"');
                    i += 1;
                } else {
                    quoted = false;
                }
            } else {
                cur.push(b);
            }
        } else if b == b'"' {
            quoted = true;
        } else if b == b',' {
            fields.push(std::mem::take(&mut cur));
        } else if b == b'\n' {
            if cur.last() == Some(&b'\r') {
                cur.pop();
            }
            fields.push(cur);
            return (fields, &buf[i + 1..]);
        } else {
            cur.push(b);
        }
        i += 1;
    }
    if cur.last() == Some(&b'\r') {
        cur.pop();
    }
    fields.push(cur);
    (fields, &[])
}

/// Titles by raw movie id from `movies.csv` (UTF-8, quoted), `movies.dat` (`::`, latin-1) or
/// `u.item` (`|`, latin-1); the kind is chosen by `file_name`.
pub fn parse_movies(buf: &[u8], file_name: &str, loc: &str) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    let lower = file_name.to_ascii_lowercase();
    if lower.ends_with(".csv") {
        let (_header, mut rest) = csv_record(buf);
        let mut line = 1;
        while !rest.is_empty() {
            let (f, r) = csv_record(rest);
            rest = r;
            line += 1;
            if f.len() == 1 && f[0].is_empty() {
                continue;
            }
            if f.len() < 2 {
                return Err(Error::parse(
                    format!("{loc}:{line}"),
                    "expected movieId,title,...",
                ));
            }
            let title = String::from_utf8(f[1].clone())
                .map_err(|_| Error::parse(format!("{loc}:{line}"), "title is not valid UTF-8"))?;
            out.insert(String::from_utf8_lossy(&f[0]).trim().to_string(), title);
        }
    } else {
        let sep: &[u8] = if lower.ends_with(".dat") { b"::" } else { b"|" };
        let mut fields: [&[u8]; 16] = [&[]; 16];
        for (k, raw) in buf.split(|&b| b == b'\n').enumerate() {
            let line = strip_cr(raw);
            if line.is_empty() {
                continue;
            }
            if split_fields(line, sep, &mut fields) < 2 {
                return Err(Error::parse(
                    format!("{loc}:{}", k + 1),
                    format!("expected id{0}title{0}...", String::from_utf8_lossy(sep)),
                ));
            }
            out.insert(latin1(fields[0]).trim().to_string(), latin1(fields[1]));
        }
    }
    Ok(out)
}

fn read_movies_file(path: &Path) -> Result<(HashMap<String, String>, serde_json::Value)> {
    let buf = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let name = path.display().to_string();
    let t = parse_movies(&buf, &name, &name)?;
    Ok((
        t,
        json!({"path": name, "sha256": sha256_hex(&buf), "bytes": buf.len(), "role": "movies"}),
    ))
}

// ---------------------------------------------------------------------------------------------
// Parquet

fn read_parquet(path: &Path, opts: &ReadOptions) -> Result<Loaded> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Float32Type, Int64Type};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let name = path.display().to_string();
    let sha = sha256_hex(&open_bytes(path)?);
    let bad = |e: &dyn std::fmt::Display| {
        Error::parse(&name, format!("not a readable Parquet file ({e})"))
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(&e))?;
    crate::dataset::check_parquet_chunks(builder.metadata(), file_len, &name)?;
    let again = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    crate::dataset::check_parquet_pages(again, &name)?;
    let schema = builder.schema().clone();
    let cols: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let n = cols.len();
    let user = resolve_col(
        Some(&cols),
        opts.user_col.as_deref(),
        &USER_NAMES,
        n,
        "user",
        &name,
    )?;
    let item = resolve_col(
        Some(&cols),
        opts.item_col.as_deref(),
        &ITEM_NAMES,
        n,
        "item",
        &name,
    )?;
    let time = resolve_col(
        Some(&cols),
        opts.time_col.as_deref(),
        &TIME_NAMES,
        n,
        "timestamp",
        &name,
    )?;
    let rating = resolve_col(
        Some(&cols),
        opts.rating_col.as_deref(),
        &RATING_NAMES,
        n,
        "rating",
        &name,
    )?;
    let missing = |what: &str, flag: &str| {
        Error::parse(
            &name,
            format!(
                "columns [{}] include no {what} column (name it with {flag})",
                cols.join(", ")
            ),
        )
    };
    let user = user.ok_or_else(|| missing("user", "--user-col"))?;
    let item = item.ok_or_else(|| missing("item", "--item-col"))?;
    if opts.need_rating && rating.is_none() {
        return Err(missing("rating", "--rating-col"));
    }
    let reader = builder.build().map_err(|e| bad(&e))?;
    let mut u_int = Vec::new();
    let mut i_int = Vec::new();
    let mut texts: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let mut times = Vec::new();
    let mut ratings = Vec::new();
    let is_text = |c: usize| {
        matches!(
            schema.field(c).data_type(),
            DataType::Utf8 | DataType::LargeUtf8
        )
    };
    let text_ids = opts.text_ids || is_text(user) || is_text(item);
    let cast = |a: &arrow::array::ArrayRef, to: &DataType, col: usize| {
        arrow::compute::cast(a, to).map_err(|e| {
            Error::parse(
                &name,
                format!(
                    "column `{}` ({}) cannot be read as {to}: {e}",
                    cols[col],
                    a.data_type()
                ),
            )
        })
    };
    for b in reader {
        let b = b.map_err(|e| bad(&e))?;
        for (k, (col, out)) in [(user, &mut u_int), (item, &mut i_int)]
            .into_iter()
            .enumerate()
        {
            let a = b.column(col);
            if a.null_count() > 0 {
                return Err(Error::parse(
                    &name,
                    format!("column `{}` has nulls", cols[col]),
                ));
            }
            if text_ids {
                let s = cast(a, &DataType::Utf8, col)?;
                texts[k].extend(
                    s.as_string::<i32>()
                        .iter()
                        .map(|v| v.unwrap_or_default().to_string()),
                );
            } else {
                let s = cast(a, &DataType::Int64, col)?;
                for v in s.as_primitive::<Int64Type>().values() {
                    if *v < 0 {
                        return Err(Error::parse(
                            &name,
                            format!("column `{}`: negative id {v}", cols[col]),
                        ));
                    }
                    out.push(*v as u64);
                }
            }
        }
        if let Some(t) = time {
            let a = b.column(t);
            let s = if matches!(a.data_type(), DataType::Timestamp(..)) {
                cast(
                    &cast(
                        a,
                        &DataType::Timestamp(arrow::datatypes::TimeUnit::Second, None),
                        t,
                    )?,
                    &DataType::Int64,
                    t,
                )?
            } else {
                cast(a, &DataType::Int64, t)?
            };
            if s.null_count() > 0 {
                return Err(Error::parse(
                    &name,
                    format!("column `{}` has nulls", cols[t]),
                ));
            }
            times.extend_from_slice(s.as_primitive::<Int64Type>().values());
        }
        if opts.need_rating {
            let r = rating.expect("checked");
            let s = cast(b.column(r), &DataType::Float32, r)?;
            ratings.extend_from_slice(s.as_primitive::<Float32Type>().values());
        }
    }
    let rows_n = if text_ids {
        texts[0].len()
    } else {
        u_int.len()
    };
    if rows_n == 0 {
        return Err(Error::parse(&name, "no rating rows"));
    }
    let (users, user_ids, items, item_ids) = if text_ids {
        let [tu, ti] = texts;
        let (u, un) = intern_strings(&tu);
        let (i, inames) = intern_strings(&ti);
        (u, RawIds::Text(un), i, RawIds::Text(inames))
    } else {
        let (u, un) = merge_int(vec![u_int]);
        let (i, inames) = merge_int(vec![i_int]);
        (u, RawIds::Int(un), i, RawIds::Int(inames))
    };
    let rows = Interactions {
        users,
        items,
        user_ids,
        item_ids,
        timestamps: time.map(|_| times),
        ratings: opts.need_rating.then_some(ratings),
    };
    let mut files = vec![json!({"path": name, "sha256": sha})];
    let mut titles = None;
    if let Some(m) = &opts.movies {
        let (t, f) = read_movies_file(m)?;
        titles = Some(t);
        files.push(f);
    }
    Ok(Loaded {
        input: Input::Rows { rows, titles },
        source: json!({"path": name, "format": "parquet", "files": files}),
    })
}

fn intern_strings(v: &[String]) -> (Vec<u32>, Vec<String>) {
    let mut keys: Vec<&[u8]> = v.iter().map(|s| s.as_bytes()).collect();
    text_order(&mut keys);
    keys.dedup();
    let index: HashMap<&[u8], u32> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (*k, i as u32))
        .collect();
    let codes = v.iter().map(|s| index[s.as_bytes()]).collect();
    (
        codes,
        keys.iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// The NCF authors' pre-split files

/// Rows `user\titem\t...` of a `.rating` file: ids are the authors' dense ids.
/// Users, items, timestamps (0 when absent) and the file's sha256.
type RatingRows = (Vec<u32>, Vec<u32>, Vec<i64>, String);

fn parse_rating_file(buf: &[u8], loc: &str) -> Result<RatingRows> {
    let loc = loc.to_string();
    if buf.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::parse(
            &loc,
            "empty file (expected user\\titem\\trating\\ttimestamp lines)",
        ));
    }
    let (mut u, mut i, mut t) = (Vec::new(), Vec::new(), Vec::new());
    let mut f: [&[u8]; 16] = [&[]; 16];
    for (k, raw) in buf.split(|&b| b == b'\n').enumerate() {
        let line = strip_cr(raw);
        if line.is_empty() {
            continue;
        }
        let n = split_fields(line, b"\t", &mut f);
        let at = || format!("{loc}:{}", k + 1);
        if n < 2 {
            return Err(Error::parse(
                at(),
                format!(
                    "expected user\\titem\\trating\\ttimestamp, found `{}`",
                    shown(line)
                ),
            ));
        }
        let id = |x: &[u8], what: &str| {
            parse_id(x)
                .filter(|&v| v < u32::MAX as u64)
                .map(|v| v as u32)
                .ok_or_else(|| {
                    Error::parse(
                        at(),
                        format!("expected an integer {what} id, found `{}`", shown(x)),
                    )
                })
        };
        u.push(id(f[0], "user")?);
        i.push(id(f[1], "item")?);
        let ts = if n >= 4 {
            parse_i64(f[3]).ok_or_else(|| {
                Error::parse(
                    at(),
                    format!(
                        "expected an integer timestamp in field 4, found `{}`",
                        shown(f[3])
                    ),
                )
            })?
        } else {
            0
        };
        t.push(ts);
    }
    Ok((u, i, t, sha256_hex(buf)))
}

/// Read the authors' `PREFIX.train.rating`, `PREFIX.test.rating`, `PREFIX.test.negative`,
/// keeping their split, ids and negatives exactly.
pub fn read_ncf_split(prefix: &Path) -> Result<Loaded> {
    let p = |s: &str| PathBuf::from(format!("{}{s}", prefix.display()));
    let paths = [p(".train.rating"), p(".test.rating"), p(".test.negative")];
    let mut bufs = Vec::with_capacity(3);
    for path in &paths {
        bufs.push(std::fs::read(path).map_err(|e| Error::io(path, e))?);
    }
    let names = paths.map(|p| p.display().to_string());
    ncf_split_from_bytes(
        [&bufs[0], &bufs[1], &bufs[2]],
        [&names[0], &names[1], &names[2]],
        &prefix.display().to_string(),
    )
}

/// The authors' three files already in memory (train, test, negatives; `names` label errors):
/// what [`read_ncf_split`] does after reading them, and the fuzzer's entry point.
pub fn ncf_split_from_bytes(bufs: [&[u8]; 3], names: [&str; 3], prefix: &str) -> Result<Loaded> {
    let [train_name, test_name, nloc] = names;
    let (tu, ti, tt, train_sha) = parse_rating_file(bufs[0], train_name)?;
    let (su, si, st, test_sha) = parse_rating_file(bufs[1], test_name)?;
    let neg_buf = bufs[2];
    // Test rows in user order (the authors' file already is).
    let mut order: Vec<usize> = (0..su.len()).collect();
    order.sort_by_key(|&k| su[k]);
    if let Some(w) = order.windows(2).find(|w| su[w[0]] == su[w[1]]) {
        return Err(Error::parse(
            test_name,
            format!(
                "user {} has more than one test row (lines {} and {})",
                su[w[0]],
                w[0] + 1,
                w[1] + 1
            ),
        ));
    }
    let row_of: HashMap<u32, usize> = su.iter().enumerate().map(|(k, &u)| (u, k)).collect();
    let mut negs: Vec<Option<Vec<u32>>> = vec![None; su.len()];
    let mut per_user = None;
    let mut f: Vec<&[u8]> = Vec::new();
    for (k, raw) in neg_buf.split(|&b| b == b'\n').enumerate() {
        let line = strip_cr(raw);
        if line.is_empty() {
            continue;
        }
        let at = || format!("{nloc}:{}", k + 1);
        f.clear();
        f.extend(line.split(|&b| b == b'\t'));
        let head = f[0];
        let pair = head.strip_prefix(b"(").and_then(|h| h.strip_suffix(b")"));
        let parsed = pair.and_then(|p| {
            let c = p.iter().position(|&b| b == b',')?;
            Some((parse_id(&p[..c])?, parse_id(&p[c + 1..])?))
        });
        let Some((u, i)) = parsed else {
            return Err(Error::parse(
                at(),
                format!(
                    "expected `(user,item)` then tab-separated negatives, found `{}`",
                    shown(head)
                ),
            ));
        };
        let Some(&row) = row_of.get(&(u as u32)) else {
            return Err(Error::parse(
                at(),
                format!("user {u} has no row in {test_name}"),
            ));
        };
        if si[row] as u64 != i {
            return Err(Error::parse(
                at(),
                format!(
                    "pair ({u},{i}) but the test item of user {u} is {}",
                    si[row]
                ),
            ));
        }
        let items: Vec<u32> = f[1..]
            .iter()
            .map(|x| {
                parse_id(x)
                    .filter(|&v| v < u32::MAX as u64)
                    .map(|v| v as u32)
            })
            .collect::<Option<_>>()
            .ok_or_else(|| Error::parse(at(), "expected integer negative item ids"))?;
        match per_user {
            None => per_user = Some(items.len()),
            Some(n) if n != items.len() => {
                return Err(Error::parse(
                    at(),
                    format!("{} negatives, earlier lines have {n}", items.len()),
                ))
            }
            _ => {}
        }
        if negs[row].replace(items).is_some() {
            return Err(Error::parse(
                at(),
                format!("user {u} has a second negatives line"),
            ));
        }
    }
    if let Some(row) = negs.iter().position(Option::is_none) {
        return Err(Error::parse(
            nloc,
            format!("no negatives line for test user {}", su[row]),
        ));
    }
    let n_users = tu.iter().chain(&su).max().map_or(0, |m| m + 1);
    let n_items = ti
        .iter()
        .chain(&si)
        .chain(negs.iter().flatten().flatten())
        .max()
        .map_or(0, |m| m + 1);
    // The authors' ids are dense (every user has rows, nearly every item a row or a negative):
    // an id far beyond the number of rows is corruption, and would allocate billions of raw ids.
    let rows = tu.len() + su.len();
    let negs_n: usize = negs.iter().flatten().map(Vec::len).sum();
    let slack = |n: usize| 2 * n + (1 << 20);
    if n_users as usize > slack(rows) {
        return Err(Error::parse(
            train_name,
            format!(
                "user id {} but only {rows} rows in the train and test files: these are not the \
                 authors' dense ids",
                n_users - 1
            ),
        ));
    }
    if n_items as usize > slack(rows + negs_n) {
        return Err(Error::parse(
            train_name,
            format!(
                "item id {} but only {} rows and negatives: these are not the authors' dense ids",
                n_items - 1,
                rows + negs_n
            ),
        ));
    }
    // Train sorted by user then time; stable, so ties keep file order.
    let mut t_order: Vec<usize> = (0..tu.len()).collect();
    t_order.sort_by_key(|&k| (tu[k], tt[k]));
    let per_user = per_user.unwrap_or(0);
    let ds = Dataset {
        meta: None,
        n_users,
        n_items,
        train_users: t_order.iter().map(|&k| tu[k]).collect(),
        train_items: t_order.iter().map(|&k| ti[k]).collect(),
        train_timestamps: Some(t_order.iter().map(|&k| tt[k]).collect()),
        test_users: order.iter().map(|&k| su[k]).collect(),
        test_items: order.iter().map(|&k| si[k]).collect(),
        test_timestamps: Some(order.iter().map(|&k| st[k]).collect()),
        test_negatives: order
            .iter()
            .flat_map(|&k| negs[k].clone().unwrap())
            .collect(),
        test_negatives_per_user: per_user,
        user_raw: (0..n_users).map(|u| u.to_string()).collect(),
        item_raw: (0..n_items).map(|i| i.to_string()).collect(),
        item_titles: None,
    };
    let files = json!([
        {"path": train_name, "sha256": train_sha},
        {"path": test_name, "sha256": test_sha},
        {"path": nloc, "sha256": sha256_hex(neg_buf)},
    ]);
    Ok(Loaded {
        input: Input::Split(Box::new(ds)),
        source: json!({"path": prefix, "format": "ncf", "files": files}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ReadOptions {
        ReadOptions::default()
    }

    fn parse(text: &str, format: Format, o: &ReadOptions) -> Result<Interactions> {
        read_text(text.as_bytes(), format, "f", o).map(|(r, _)| r)
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
            "../../../fuzz/regressions/ratings_text/oom-1118241c298dec5642e47419e41493df039f18fa"
        );
        assert_eq!(zip_oom[0] % 8, 5, "a zip input");
        let r = parse_text(&zip_oom[2..], Format::Zip, "oom.zip", &opts());
        let e = r.map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("oom.zip"), "{e}");
    }
}
