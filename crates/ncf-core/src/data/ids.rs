//! Raw user and item ids as people type them (ncf-topk's arguments and stdin, ncf-eval's ranked
//! lists): the one lookup of such an id in a dataset, and the one way messages show an id.
//!
//! An id is looked up as ncf-prep stored it. Integer ids (every raw id of the kind a canonical
//! decimal, as ncf-prep writes them without `--text-ids`) are trimmed first: whitespace cannot be
//! part of an integer, and `"1 "` from a script means user 1. Text ids (`--text-ids`, or text
//! columns of a Parquet file) are kept exactly, spaces included, because ncf-prep keeps them so:
//! `" a"`, `"a"` and `"a "` are three users. When an exact text lookup fails but the trimmed id
//! exists, the error says so.

use crate::data::dataset::Dataset;
use crate::Error;
use std::collections::HashMap;

/// Characters of an id shown before it is cut (the byte count follows).
const SHOWN_CHARS: usize = 40;

/// `id` as a message shows it: as is when it is plain; in double quotes with `\t`, `\n`, `\"`,
/// `\\` and `\u{…}` escapes when it is empty or holds whitespace, control characters, quotes or
/// backslashes (so `" a"` is told from `a`); cut after 40 characters with the length in bytes
/// (`…` then ` (N bytes)`) when longer.
pub fn show(id: &str) -> String {
    let plain = !id.is_empty()
        && !id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\' | '`'));
    let long = id.chars().nth(SHOWN_CHARS).is_some();
    let mut out = String::new();
    if !plain {
        out.push('"');
    }
    for c in id.chars().take(SHOWN_CHARS) {
        match c {
            _ if plain => out.push(c),
            ' ' => out.push(' '),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_whitespace() || c.is_control() => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    if long {
        out.push('…');
    }
    if !plain {
        out.push('"');
    }
    if long {
        out.push_str(&format!(" ({} bytes)", id.len()));
    }
    out
}

/// A list of ids as a message shows it: the first `max` by [`show`], comma-separated, then
/// `and N more`.
pub fn show_list<S: AsRef<str>>(ids: &[S], max: usize) -> String {
    let s: Vec<String> = ids.iter().take(max).map(|x| show(x.as_ref())).collect();
    match ids.len().checked_sub(max).filter(|&n| n > 0) {
        Some(more) => format!("{} and {more} more", s.join(", ")),
        None => s.join(", "),
    }
}

/// The raw id of dense id `dense` (`raw`: the raw id of each dense id) as a message shows it;
/// `(dense id N)` when there is none (a dataset built in memory without raw ids).
pub fn show_dense(raw: &[String], dense: u32) -> String {
    raw.get(dense as usize)
        .map_or_else(|| format!("(dense id {dense})"), |s| show(s))
}

/// Is `s` an id as ncf-prep writes integer ids: decimal digits, no sign, no leading zero?
fn canonical_integer(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && b.iter().all(u8::is_ascii_digit) && (b.len() == 1 || b[0] != b'0')
}

/// Why an exact text lookup can fail where a trimmed one would not: said once per message.
pub const TEXT_IDS_ARE_EXACT: &str =
    "text ids (ncf-prep --text-ids) are matched exactly, spaces included";

/// An id that names nothing in the dataset, and the stored ids it would match but for spaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unknown {
    pub given: String,
    /// Text ids equal to `given` once both are trimmed (at most 3).
    pub trimmed_matches: Vec<String>,
}

impl Unknown {
    /// `"a "`, or `"a " (differs only in spaces from the user id a)`.
    pub fn describe(&self, kind: &str) -> String {
        match self.trimmed_matches.as_slice() {
            [] => show(&self.given),
            m => format!(
                "{} (differs only in spaces from the {kind} id{} {})",
                show(&self.given),
                if m.len() > 1 { "s" } else { "" },
                show_list(m, 3)
            ),
        }
    }
}

/// The raw ids of one kind (users or items) of a dataset, for looking ids up.
#[derive(Debug)]
pub struct IdIndex<'a> {
    /// `user` or `item`.
    pub kind: &'static str,
    raw: &'a [String],
    dense: HashMap<&'a str, u32>,
    /// Every raw id is a canonical integer: ids given are trimmed.
    integer: bool,
}

impl<'a> IdIndex<'a> {
    /// The index of `raw` (raw id of each dense id) for ids of `kind` (`user`, `item`).
    pub fn new(kind: &'static str, raw: &'a [String]) -> Self {
        IdIndex {
            kind,
            raw,
            dense: (raw.iter().enumerate())
                .map(|(k, s)| (s.as_str(), k as u32))
                .collect(),
            integer: raw.iter().all(|s| canonical_integer(s)),
        }
    }

    /// The dataset's users.
    pub fn users(data: &'a Dataset) -> Self {
        IdIndex::new("user", &data.user_raw)
    }

    /// The dataset's items.
    pub fn items(data: &'a Dataset) -> Self {
        IdIndex::new("item", &data.item_raw)
    }

    /// True when the ids are integers (given ids are trimmed), false for text ids (exact).
    pub fn integer(&self) -> bool {
        self.integer
    }

    /// `given` as it is looked up: trimmed for integer ids, as is for text ids.
    pub fn normalise<'g>(&self, given: &'g str) -> &'g str {
        if self.integer {
            given.trim()
        } else {
            given
        }
    }

    /// Is `given` (a line of a list of ids) blank: nothing but whitespace, and no id?
    pub fn is_blank(&self, given: &str) -> bool {
        given.trim().is_empty() && !self.dense.contains_key(given)
    }

    /// The dense id of `given`, or what the message about it needs.
    pub fn find(&self, given: &str) -> std::result::Result<u32, Unknown> {
        if let Some(&d) = self.dense.get(self.normalise(given)) {
            return Ok(d);
        }
        let t = given.trim();
        let trimmed_matches = match self.integer || t.is_empty() {
            true => vec![],
            // Only on a miss: one pass over the ids, no second index kept.
            false => (self.raw.iter())
                .filter(|r| r.trim() == t)
                .take(3)
                .cloned()
                .collect(),
        };
        Err(Unknown {
            given: given.to_string(),
            trimmed_matches,
        })
    }

    /// The dense ids of `given` in order, and the ids among them that name nothing (in order).
    pub fn find_all<S: AsRef<str>>(&self, given: &[S]) -> (Vec<u32>, Vec<Unknown>) {
        let mut dense = Vec::with_capacity(given.len());
        let mut unknown = Vec::new();
        for g in given {
            match self.find(g.as_ref()) {
                Ok(d) => dense.push(d),
                Err(u) => unknown.push(u),
            }
        }
        (dense, unknown)
    }

    /// [`IdIndex::find`] as an error: `unknown user id "a "`, the location first.
    pub fn find_or_error(&self, given: &str, location: &str) -> crate::Result<u32> {
        self.find(given).map_err(|u| {
            let why = match u.trimmed_matches.is_empty() {
                true => String::new(),
                false => format!(": {TEXT_IDS_ARE_EXACT}"),
            };
            Error::parse(
                location,
                format!("unknown {} id {}{why}", self.kind, u.describe(self.kind)),
            )
        })
    }

    /// The raw id of dense id `dense` as a message shows it.
    pub fn show_dense(&self, dense: u32) -> String {
        show_dense(self.raw, dense)
    }
}

/// Ids shown in [`unknown_ids`] before the rest are counted.
const UNKNOWN_SHOWN: usize = 10;

/// The message about ids of `kind` (`user`, `item`) that name nothing: `unknown user id(s): 7,
/// "a " (differs only in spaces from the user id a) and 3 more`, then why an exact text lookup
/// failed when that is the reason ([`TEXT_IDS_ARE_EXACT`]).
pub fn unknown_ids(unknown: &[Unknown], kind: &str) -> String {
    let shown: Vec<String> = (unknown.iter().take(UNKNOWN_SHOWN))
        .map(|u| u.describe(kind))
        .collect();
    let mut msg = format!("unknown {kind} id(s): {}", shown.join(", "));
    if unknown.len() > UNKNOWN_SHOWN {
        msg += &format!(" and {} more", unknown.len() - UNKNOWN_SHOWN);
    }
    if unknown.iter().any(|u| !u.trimmed_matches.is_empty()) {
        msg += &format!("; {TEXT_IDS_ARE_EXACT}");
    }
    msg
}

/// The lines of a list read from `r` (`what` names it in errors), without their line ends
/// (`\n`, and every `\r` before it, as ncf-prep strips them) and a UTF-8 byte-order mark on the
/// first line; nothing else is removed (the ids' [`IdIndex`] decides about spaces).
pub fn read_lines<R: std::io::BufRead>(r: R, what: &str) -> crate::Result<Vec<String>> {
    let mut out = Vec::new();
    for (n, line) in r.lines().enumerate() {
        let line = line.map_err(|e| Error::io(format!("{what}:{}", n + 1), e))?;
        let mut line = line.trim_end_matches('\r');
        if n == 0 {
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        out.push(line.to_string());
    }
    Ok(out)
}

/// The error for a list (`expected`: what its lines hold) that has no line: what a failed
/// command before a pipe leaves, which must not pass for a result.
pub fn empty_input(what: &str, expected: &str) -> Error {
    Error::parse(
        what,
        format!(
            "no {expected}: the input is empty; if it came through a pipe, the command before \
             it may have failed (in bash, `set -o pipefail` makes the pipeline fail with it)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn integer_ids_are_trimmed() {
        let r = raw(&["1", "20", "300"]);
        let ix = IdIndex::new("user", &r);
        assert!(ix.integer());
        assert_eq!(ix.find(" 20 "), Ok(1));
        assert_eq!(ix.find("300\r"), Ok(2));
        assert_eq!(ix.find("020").unwrap_err().given, "020");
        assert!(ix.is_blank("  "));
    }

    #[test]
    fn text_ids_are_exact_and_a_trimmed_match_is_named() {
        let r = raw(&[" a", "a", "a ", "b"]);
        let ix = IdIndex::new("user", &r);
        assert!(!ix.integer());
        assert_eq!(ix.find(" a"), Ok(0));
        assert_eq!(ix.find("a"), Ok(1));
        assert_eq!(ix.find("a "), Ok(2));
        let u = ix.find(" b ").unwrap_err();
        assert_eq!(u.trimmed_matches, vec!["b"]);
        let d = u.describe("user");
        assert_eq!(d, "\" b \" (differs only in spaces from the user id b)");
        let d = ix.find("a  ").unwrap_err().describe("user");
        assert!(d.ends_with("user ids \" a\", a, \"a \")"), "{d}");
        let e = ix.find_or_error(" b", "<stdin>:2").unwrap_err().to_string();
        assert!(
            e.starts_with("<stdin>:2: unknown user id \" b\" (differs"),
            "{e}"
        );
        assert!(e.ends_with(TEXT_IDS_ARE_EXACT), "{e}");
        assert_eq!(
            ix.find("c").unwrap_err().trimmed_matches,
            Vec::<String>::new()
        );
        // A dataset of integers given --text-ids that are not canonical (leading zeros) is text.
        let r = raw(&["007", "1"]);
        assert!(!IdIndex::new("item", &r).integer());
    }

    #[test]
    fn a_list_of_ids_is_looked_up_in_order_and_the_unknown_ones_named_together() {
        let r = raw(&["1", "20", "300"]);
        let ix = IdIndex::new("user", &r);
        let (dense, unknown) = ix.find_all(&["300", " 1", "4", "20", "5"]);
        assert_eq!(dense, [2, 0, 1]);
        assert_eq!(unknown_ids(&unknown, "user"), "unknown user id(s): 4, 5");
        let many: Vec<String> = (100..112).map(|k| k.to_string()).collect();
        let (dense, unknown) = ix.find_all(&many);
        assert!(dense.is_empty());
        assert_eq!(
            unknown_ids(&unknown, "user"),
            "unknown user id(s): 100, 101, 102, 103, 104, 105, 106, 107, 108, 109 and 2 more"
        );
        let r = raw(&["a", "b"]);
        let (_, unknown) = IdIndex::new("user", &r).find_all(&["c", "a "]);
        assert_eq!(
            unknown_ids(&unknown, "user"),
            format!(
                "unknown user id(s): c, \"a \" (differs only in spaces from the user id a); \
                 {TEXT_IDS_ARE_EXACT}"
            )
        );
    }

    #[test]
    fn ids_are_shown_quoted_escaped_and_cut() {
        assert_eq!(show("42"), "42");
        assert_eq!(show("é"), "é");
        assert_eq!(show(" a"), "\" a\"");
        assert_eq!(show(""), "\"\"");
        assert_eq!(show("a\tb\u{0}"), "\"a\\tb\\u{0}\"");
        assert_eq!(show("say \"hi\""), "\"say \\\"hi\\\"\"");
        let long = "x".repeat(100_000);
        assert_eq!(show(&long), format!("{}… (100000 bytes)", "x".repeat(40)));
        let long = format!(" {}", "y".repeat(50));
        assert_eq!(show(&long), format!("\" {}…\" (51 bytes)", "y".repeat(39)));
        assert_eq!(show_list(&["1", " 2", "3"], 2), "1, \" 2\" and 1 more");
    }

    #[test]
    fn lines_lose_their_ends_and_a_bom_only() {
        let l = read_lines("\u{feff} a\r\nb \r\r\n\nc".as_bytes(), "x").unwrap();
        assert_eq!(l, vec![" a", "b ", "", "c"]);
    }
}
