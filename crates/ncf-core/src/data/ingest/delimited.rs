//! Delimited text: MovieLens `::` .dat, MovieLens CSV, ml-100k `u.data`, any CSV/TSV. Parsed as
//! bytes (no per-line allocation), in parallel over newline-aligned chunks; the format is
//! sniffed from the name and first line ([`sniff_text`]) and the columns found by [`layout_for`].

use super::*;
use std::borrow::Cow;

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

impl Layout {
    /// How many fields of a line are read: up to the last column used (a wide export's other
    /// columns are counted, never stored).
    pub fn columns_used(&self) -> usize {
        [Some(self.user), Some(self.item), self.time, self.rating]
            .into_iter()
            .flatten()
            .max()
            .map_or(0, |k| k + 1)
    }
}

pub(super) const USER_NAMES: [&str; 5] = ["userid", "user_id", "user", "uid", "userId"];
pub(super) const ITEM_NAMES: [&str; 8] = [
    "movieid", "movie_id", "itemid", "item_id", "item", "movie", "iid", "itemId",
];
pub(super) const TIME_NAMES: [&str; 3] = ["timestamp", "time", "ts"];
pub(super) const RATING_NAMES: [&str; 3] = ["rating", "score", "value"];

/// Split one line (without its newline) into fields: the first `out.len()` are stored, the rest
/// only counted; returns how many there were. The fast path of every line: quotes are data here,
/// [`split_quoted`] is for the lines of a chunk that holds a `"`.
#[inline]
pub(super) fn split_fields<'a>(line: &'a [u8], sep: &[u8], out: &mut [&'a [u8]]) -> usize {
    let keep = out.len();
    let mut n = 0;
    let mut start = 0;
    if sep.len() == 1 {
        let s = sep[0];
        for (i, &b) in line.iter().enumerate() {
            if b == s {
                if n < keep {
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
                if n < keep {
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
    if n < keep {
        out[n] = &line[start..];
    }
    n + 1
}

/// Split a line that holds a `"` as RFC 4180 does (and movies.csv is read): a field that starts
/// with a quote runs to its closing quote, separators inside it are data and `""` is one quote;
/// the closing quote must end the field. A quote anywhere else is data. The fields replace
/// `out`'s (borrowed from `line` unless they held a doubled quote). A quoted field cannot span
/// lines: ratings are split into lines before they are parsed.
pub(super) fn split_quoted<'a>(
    line: &'a [u8],
    sep: &[u8],
    out: &mut Vec<Cow<'a, [u8]>>,
) -> std::result::Result<(), String> {
    out.clear();
    let find = |from: usize| {
        line[from..]
            .windows(sep.len())
            .position(|w| w == sep)
            .map_or(line.len(), |k| from + k)
    };
    let mut pos = 0;
    loop {
        let (field, after) = if line.get(pos) == Some(&b'"') {
            let mut owned: Option<Vec<u8>> = None;
            let mut k = pos + 1;
            let close = loop {
                match line[k..].iter().position(|&b| b == b'"') {
                    None => {
                        return Err(format!(
                            "field {} opens a quote that the line does not close (a quoted field \
                             cannot span lines)",
                            out.len() + 1
                        ))
                    }
                    Some(q) if line.get(k + q + 1) == Some(&b'"') => {
                        let o = owned.get_or_insert_with(Vec::new);
                        o.extend_from_slice(&line[k..k + q + 1]);
                        k += q + 2;
                    }
                    Some(q) => break k + q,
                }
            };
            let field = match owned {
                Some(mut o) => {
                    o.extend_from_slice(&line[k..close]);
                    Cow::Owned(o)
                }
                None => Cow::Borrowed(&line[pos + 1..close]),
            };
            (field, close + 1)
        } else {
            let end = find(pos);
            (Cow::Borrowed(&line[pos..end]), end)
        };
        out.push(field);
        if after >= line.len() {
            return Ok(());
        }
        if !line[after..].starts_with(sep) {
            return Err(format!(
                "field {} has text after its closing quote: `{}`",
                out.len(),
                shown(&line[pos..])
            ));
        }
        pos = after + sep.len();
    }
}

/// A line without the carriage returns before its newline (Windows CRLF, and `\r\r\n` from a
/// file converted twice).
pub(super) fn strip_cr(line: &[u8]) -> &[u8] {
    let end = line.iter().rposition(|&b| b != b'\r').map_or(0, |k| k + 1);
    &line[..end]
}

/// A field as messages show it: at most 40 characters, control characters escaped (`\r`, `\0`)
/// so that what looks valid on the terminal is seen to hold more.
pub(super) fn shown(field: &[u8]) -> String {
    let s = String::from_utf8_lossy(field);
    let mut out: String = s
        .chars()
        .take(40)
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect();
    if s.chars().count() > 40 {
        out.push_str("...");
    }
    out
}

/// Parse a canonical non-negative integer (no sign, no leading zeros, at most u64).
#[inline]
pub(super) fn parse_id(f: &[u8]) -> Option<u64> {
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
pub(super) fn parse_i64(f: &[u8]) -> Option<i64> {
    let (neg, digits) = match f.first() {
        Some(b'-') => (true, &f[1..]),
        _ => (false, f),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    // Accumulated as u64 (19 digits fit), so that i64::MIN, whose magnitude is no i64, parses.
    let mut v: u64 = 0;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.wrapping_mul(10).wrapping_add(d as u64); // at most 19 digits: no overflow
    }
    if neg {
        0i64.checked_sub_unsigned(v)
    } else {
        i64::try_from(v).ok()
    }
}

/// Whether `f` is written as an integer (an optional `-`, then digits): a field that is one but
/// does not parse is out of range, which is what its message must say.
fn integer_like(f: &[u8]) -> bool {
    let digits = f.strip_prefix(b"-").unwrap_or(f);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

pub(super) fn parse_f32(f: &[u8]) -> Option<f32> {
    std::str::from_utf8(f)
        .ok()?
        .trim()
        .parse::<f32>()
        .ok()
        .filter(|x| x.is_finite())
}

/// A column of ids being collected by one chunk (text ids borrowed from the input, unless a
/// quoted field held a doubled quote).
pub(super) enum IdSink<'a> {
    Int(Vec<u64>),
    Text {
        map: HashMap<Cow<'a, [u8]>, u32>,
        keys: Vec<Cow<'a, [u8]>>,
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
    /// Add one id; false for one that is none (not an integer; empty text).
    #[inline]
    fn push(&mut self, f: Id<'a, '_>) -> bool {
        match self {
            IdSink::Int(v) => match parse_id(f.bytes()) {
                Some(x) => {
                    v.push(x);
                    true
                }
                None => false,
            },
            IdSink::Text { map, keys, codes } => {
                if f.bytes().is_empty() {
                    return false;
                }
                let c = match map.get(f.bytes()) {
                    Some(&c) => c,
                    None => {
                        let c = keys.len() as u32;
                        let key = match f {
                            Id::Line(b) => Cow::Borrowed(b),
                            Id::Unquoted(c) => c.clone(),
                        };
                        keys.push(key.clone());
                        map.insert(key, c);
                        c
                    }
                };
                codes.push(c);
                true
            }
        }
    }
}

/// An id field: a slice of the line (the fast path), or a field [`split_quoted`] unquoted.
#[derive(Clone, Copy)]
enum Id<'a, 'b> {
    Line(&'a [u8]),
    Unquoted(&'b Cow<'a, [u8]>),
}

impl Id<'_, '_> {
    #[inline]
    fn bytes(&self) -> &[u8] {
        match self {
            Id::Line(b) => b,
            Id::Unquoted(c) => c,
        }
    }
}

pub(super) struct Chunk<'a> {
    users: IdSink<'a>,
    items: IdSink<'a>,
    times: Vec<i64>,
    ratings: Vec<f32>,
}

/// An error in a chunk: line number within the chunk (1-based) and message.
pub(super) struct ChunkError(usize, String);

/// One line's fields of a chunk: the id fields (owned only when unquoting changed them), the
/// timestamp and rating fields.
struct Row<'a, 'b> {
    user: Id<'a, 'b>,
    item: Id<'a, 'b>,
    time: Option<&'b [u8]>,
    rating: Option<&'b [u8]>,
}

impl<'a> Chunk<'a> {
    /// Parse one line's fields into the columns. The error names the field, and says whether
    /// the header and --text-ids hints may help (an id that is no id).
    #[inline]
    fn push(
        &mut self,
        row: Row<'a, '_>,
        layout: &Layout,
        text_ids: bool,
    ) -> std::result::Result<(), (String, bool)> {
        let bad_id = |f: Id, what: &str, col: usize| match text_ids {
            true => (
                format!(
                    "expected a non-empty {what} id in field {}, found ``",
                    col + 1
                ),
                true,
            ),
            false => bad_int_id(f.bytes(), what, col),
        };
        if !self.users.push(row.user) {
            return Err(bad_id(row.user, "user", layout.user));
        }
        if !self.items.push(row.item) {
            return Err(bad_id(row.item, "item", layout.item));
        }
        if let (Some(t), Some(f)) = (layout.time, row.time) {
            match parse_i64(f) {
                Some(x) => self.times.push(x),
                None if integer_like(f) => {
                    return Err((
                        format!(
                            "expected an integer timestamp in field {}, found `{}`, which is \
                             out of range (timestamps are 64-bit: {} to {})",
                            t + 1,
                            shown(f),
                            i64::MIN,
                            i64::MAX
                        ),
                        false,
                    ))
                }
                None => {
                    return Err((
                        format!(
                            "expected an integer timestamp in field {}, found `{}`",
                            t + 1,
                            shown(f)
                        ),
                        false,
                    ))
                }
            }
        }
        if let Some(f) = row.rating {
            let r = layout.rating.expect("checked when resolving columns");
            match parse_f32(f) {
                Some(x) => self.ratings.push(x),
                None => {
                    return Err((
                        format!(
                            "expected a number (rating) in field {}, found `{}`",
                            r + 1,
                            shown(f)
                        ),
                        false,
                    ))
                }
            }
        }
        Ok(())
    }
}

/// The message for an integer id field `f` that does not parse: out of range when it is a
/// canonical integer (no sign, no leading zero), otherwise no integer (the hints then apply).
fn bad_int_id(f: &[u8], what: &str, col: usize) -> (String, bool) {
    if integer_like(f) && f[0] != b'-' && f[0] != b'0' {
        let msg = format!(
            "{what} id {} in field {} is out of range (integer ids are at most {}; pass \
             --text-ids to read ids as text)",
            shown(f),
            col + 1,
            u64::MAX
        );
        (msg, false)
    } else {
        let msg = format!(
            "expected an integer {what} id in field {}, found `{}`",
            col + 1,
            shown(f)
        );
        (msg, true)
    }
}

pub(super) fn parse_chunk<'a>(
    buf: &'a [u8],
    layout: &Layout,
    text_ids: bool,
    need_rating: bool,
) -> std::result::Result<Chunk<'a>, ChunkError> {
    // Exact capacities: the rows are the lines (one cheap pass), so no vector doubles past them.
    let est = budget::lines(buf) as usize;
    // Quotes need the slower split; a chunk without any (one fast pass) never looks for them.
    let quotes = buf.contains(&b'"');
    let mut c = Chunk {
        users: IdSink::new(text_ids, est),
        items: IdSink::new(text_ids, est),
        times: Vec::with_capacity(if layout.time.is_some() { est } else { 0 }),
        ratings: Vec::with_capacity(if need_rating { est } else { 0 }),
    };
    // Only the fields up to the last column used are kept.
    let mut fields: Vec<&[u8]> = vec![&[]; layout.columns_used()];
    let mut quoted: Vec<Cow<[u8]>> = Vec::new();
    let mut pos = 0;
    let mut line_no = 0;
    let sep_name = String::from_utf8_lossy(&layout.sep).replace('\t', "\\t");
    let rating_col = if need_rating { layout.rating } else { None };
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
        let wrong_count = |n: usize| {
            ChunkError(
                line_no,
                format!(
                    "expected {} fields separated by `{sep_name}`, found {n}: `{}`",
                    layout.n_fields,
                    shown(line)
                ),
            )
        };
        let pushed = if !quotes || !line.contains(&b'"') {
            let n = split_fields(line, &layout.sep, &mut fields);
            if n != layout.n_fields {
                return Err(wrong_count(n));
            }
            let row = Row {
                user: Id::Line(fields[layout.user]),
                item: Id::Line(fields[layout.item]),
                time: layout.time.map(|t| fields[t]),
                rating: rating_col.map(|r| fields[r]),
            };
            c.push(row, layout, text_ids)
        } else {
            split_quoted(line, &layout.sep, &mut quoted).map_err(|e| ChunkError(line_no, e))?;
            if quoted.len() != layout.n_fields {
                return Err(wrong_count(quoted.len()));
            }
            let row = Row {
                user: Id::Unquoted(&quoted[layout.user]),
                item: Id::Unquoted(&quoted[layout.item]),
                time: layout.time.map(|t| &*quoted[t]),
                rating: rating_col.map(|r| &*quoted[r]),
            };
            c.push(row, layout, text_ids)
        };
        if let Err((msg, id_error)) = pushed {
            let hint = match id_error {
                true => hint(line_no, layout, text_ids),
                false => String::new(),
            };
            return Err(ChunkError(line_no, format!("{msg}{hint}")));
        }
    }
    Ok(c)
}

pub(super) fn hint(line_no: usize, layout: &Layout, text_ids: bool) -> String {
    if line_no == 1 && !layout.header {
        " (a header line? this input is read without one; pass --header if it has one)".into()
    } else if !text_ids {
        " (pass --text-ids for non-numeric ids)".into()
    } else {
        String::new()
    }
}

/// Find a column by name (case-insensitive) or 1-based number; `names` are the defaults.
pub(super) fn resolve_col(
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
    let mut f: Vec<Cow<[u8]>> = Vec::new();
    split_quoted(line, &sep, &mut f).map_err(|e| Error::parse(format!("{loc}:1"), e))?;
    let n_fields = f.len();
    let header = match opts.header {
        Some(h) => h,
        None => match format {
            Format::MlDat | Format::Ml100k => false,
            Format::MlCsv => true,
            // A header when the first field is not a number; with text ids, when the first
            // line names a known or given column.
            _ => {
                let known = |c: &[u8]| {
                    let c = String::from_utf8_lossy(c);
                    let c = c.trim();
                    USER_NAMES
                        .iter()
                        .chain(&ITEM_NAMES)
                        .any(|n| c.eq_ignore_ascii_case(n))
                        || [&opts.user_col, &opts.item_col]
                            .iter()
                            .any(|g| g.as_deref() == Some(c))
                };
                parse_i64(&f[0]).is_none() && (!opts.text_ids || f.iter().any(|c| known(c)))
            }
        },
    };
    let names: Option<Vec<String>> = header.then(|| {
        f.iter()
            .map(|c| String::from_utf8_lossy(c).trim().to_string())
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
                    h.iter()
                        .map(|f| shown(f.as_bytes()))
                        .collect::<Vec<_>>()
                        .join(", "),
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
pub(super) fn merge_int(chunks: Vec<Vec<u64>>) -> (Vec<u32>, Vec<u64>) {
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
pub(super) fn text_order(keys: &mut [&[u8]]) {
    if keys.iter().all(|k| parse_id(k).is_some()) {
        keys.sort_unstable_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    } else {
        keys.sort_unstable();
    }
}

/// One chunk's distinct text ids (in first-seen order) and the code of each of its rows.
pub(super) type ChunkIds<'a> = (Vec<Cow<'a, [u8]>>, Vec<u32>);

pub(super) fn merge_text(
    chunks: Vec<ChunkIds>,
    what: &str,
    loc: &str,
) -> Result<(Vec<u32>, Vec<String>)> {
    let mut all: Vec<&[u8]> = chunks
        .iter()
        .flat_map(|(k, _)| k.iter().map(|k| &**k))
        .collect();
    text_order(&mut all);
    all.dedup();
    let index: HashMap<&[u8], u32> = all
        .iter()
        .enumerate()
        .map(|(i, k)| (*k, i as u32))
        .collect();
    let mut codes = Vec::new();
    for (keys, local) in &chunks {
        let remap: Vec<u32> = keys.iter().map(|k| index[&**k]).collect();
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
    parse_checked(buf, layout, opts, loc, None, 0)
}

/// [`parse_delimited`] of a part of a file that starts after `lines_before` lines (errors name
/// the file's line).
pub(super) fn parse_part(
    buf: &[u8],
    layout: &Layout,
    opts: &ReadOptions,
    loc: &str,
    lines_before: usize,
) -> Result<Interactions> {
    parse_checked(buf, layout, opts, loc, None, lines_before)
}

/// [`parse_delimited`], checking with text ids that their number still fits what `checked`
/// says (before they are merged, sorted and named: most of what they cost).
fn parse_checked(
    buf: &[u8],
    layout: &Layout,
    opts: &ReadOptions,
    loc: &str,
    checked: Option<Checked>,
    lines_before: usize,
) -> Result<Interactions> {
    let body_start = if layout.header {
        buf.iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |k| k + 1)
    } else {
        0
    };
    let first_line = lines_before + if layout.header { 2 } else { 1 };
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
    if let (Some(c), true) = (checked, opts.text_ids) {
        let (mut distinct, mut bytes) = (0u64, 0u64);
        for sink in chunks.iter().flat_map(|c| [&c.users, &c.items]) {
            if let IdSink::Text { keys, .. } = sink {
                distinct += keys.len() as u64;
                bytes += keys.iter().map(|k| k.len() as u64).sum::<u64>();
            }
        }
        let need = c.need.saturating_add(budget::text_ids(distinct, bytes));
        budget::require(loc, need, c.held.resident, c.rows, buf.len() as u64)?;
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

pub(super) fn sink_len(s: &IdSink) -> usize {
    match s {
        IdSink::Int(v) => v.len(),
        IdSink::Text { codes, .. } => codes.len(),
    }
}

pub(super) fn concat<T: Copy>(parts: impl Iterator<Item = Vec<T>>) -> Vec<T> {
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

pub(super) fn merge_sinks(sinks: Vec<IdSink>, what: &str, loc: &str) -> Result<(Vec<u32>, RawIds)> {
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

pub(super) fn first_line(buf: &[u8]) -> &[u8] {
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

/// Parse a ratings file already in memory as `format` (`name` labels errors): the delimited-text
/// path of [`load`] (ml-1m `::`, MovieLens CSV, u.data, any CSV/TSV) and the fuzzer's entry point.
pub fn parse_text(
    buf: &[u8],
    format: Format,
    name: &str,
    opts: &ReadOptions,
) -> Result<Interactions> {
    let held = Held {
        bytes: buf.len() as u64,
        resident: 0,
    };
    match format {
        Format::Parquet | Format::NcfSplit => Err(Error::usage(format!(
            "{name}: {} is not a text format",
            format.name()
        ))),
        Format::Zip => read_zip(buf, name, opts, held).map(|(rows, _, _)| rows),
        _ => read_text(buf, format, name, opts, held).map(|(rows, _)| rows),
    }
}

/// Parse text ratings `buf` (in memory with the rest of `held`, which includes it): its layout,
/// then the memory its rows need checked, then its rows.
pub(super) fn read_text(
    buf: &[u8],
    format: Format,
    name: &str,
    opts: &ReadOptions,
    held: Held,
) -> Result<(Interactions, Format)> {
    let buf = super::sniff::text_of(buf, name, "ratings")?;
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
    let rows = budget::lines(buf);
    let columns = budget::Columns {
        time: layout.time.is_some(),
        rating: opts.need_rating,
    };
    let need = budget::text(held.bytes, rows, columns);
    budget::require(name, need, held.resident, rows, buf.len() as u64)?;
    let checked = Checked { held, need, rows };
    Ok((
        parse_checked(buf, &layout, opts, name, Some(checked), 0)?,
        format,
    ))
}

/// What [`read_text`] checked before parsing: the memory `need` of `rows` rows with `held`
/// bytes of input; distinct text ids are checked on top once the chunks have counted them.
#[derive(Clone, Copy)]
struct Checked {
    held: Held,
    need: u64,
    rows: u64,
}
