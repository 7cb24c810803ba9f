//! How much memory preparing an input takes, estimated before the allocations it is made of and
//! checked with [`crate::memory::require`]: per row of input (counted from its newlines, or
//! from a Parquet footer) and per byte held, from peak RSS measured with `/usr/bin/time -f %M`
//! (docs/RELIABILITY.md, Resource limits). Compressed input is checked as it is decompressed.

use crate::memory::human_bytes;
use crate::Result;
use std::io::Read;

/// The process itself at its peak on a tiny input (code, thread stacks, the Parquet writer's
/// buffers): 15 MiB measured, 25 MiB on ml-latest-small.
const BASE: u64 = 32 << 20;
/// Per text row with integer ids, all stages together (ids as u64 then u32 codes, the sort
/// permutation, the split's columns, the writer's copies): 19 bytes measured on 4-byte lines.
const ROW: u64 = 24;
/// Per row with a timestamp column (28.3 bytes measured with one, so 9.3 more than without).
const TIME: u64 = 12;
/// Per row with a rating column read (--min-rating: 3.9 bytes measured).
const RATING: u64 = 6;
/// Per distinct text id (--text-ids): its hash-map entry while parsing, its place in the sorted
/// id list, the id map and its name (113 bytes measured when every id is distinct), plus
/// [`TEXT_COPIES`] copies of its bytes.
const TEXT_ID: u64 = 128;
const TEXT_COPIES: u64 = 3;
/// Per Parquet row, whose ids are read as 64-bit integers and then as codes (40 bytes
/// measured with a timestamp column), or as one `String` each when they are text (145 bytes
/// measured, 286 when every id is distinct).
const PARQUET_ROW: u64 = 48;
const PARQUET_TEXT_ROW: u64 = 320;
/// How much is decompressed between two checks.
const STEP: u64 = 16 << 20;

/// The input bytes in memory while an input is prepared: all of them (mapped files count, as
/// their pages become resident), and how many of those are `resident` already (read from stdin,
/// decompressed), which the machine's available memory no longer includes.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Held {
    pub bytes: u64,
    pub resident: u64,
}

impl Held {
    /// These and `n` more bytes, resident.
    pub fn plus_resident(self, n: u64) -> Held {
        Held {
            bytes: self.bytes + n,
            resident: self.resident + n,
        }
    }
}

/// What a text input's rows hold beyond the ids.
#[derive(Clone, Copy, Debug)]
pub(super) struct Columns {
    pub time: bool,
    pub rating: bool,
}

/// The peak memory of preparing `rows` text rows while `held` bytes of input are in memory
/// (mapped or decompressed), before counting distinct text ids ([`text_ids`]).
pub(super) fn text(held: u64, rows: u64, c: Columns) -> u64 {
    let per_row = ROW + if c.time { TIME } else { 0 } + if c.rating { RATING } else { 0 };
    BASE.saturating_add(held)
        .saturating_add(rows.saturating_mul(per_row))
}

/// What `distinct` text ids of `bytes` bytes in all add to [`text`].
pub(super) fn text_ids(distinct: u64, bytes: u64) -> u64 {
    distinct
        .saturating_mul(TEXT_ID)
        .saturating_add(bytes.saturating_mul(TEXT_COPIES))
}

/// The peak memory of preparing `rows` Parquet rows (text ids or integers).
pub(super) fn parquet(rows: u64, text_ids: bool, c: Columns) -> u64 {
    let per_row = if text_ids {
        PARQUET_TEXT_ROW
    } else {
        PARQUET_ROW
    } + if c.time { TIME } else { 0 }
        + if c.rating { RATING } else { 0 };
    BASE.saturating_add(rows.saturating_mul(per_row))
}

/// Refuse `need` bytes for preparing `name` (`rows` rows, `bytes` bytes of input) when more than
/// is available. `resident` of them are already allocated (decompressed input): what the
/// machine reports available excludes them, so only the rest is compared with it; a limit set
/// with `NCF_MEMORY_LIMIT` is for the whole run, and compared with all of `need`.
pub(super) fn require(name: &str, need: u64, resident: u64, rows: u64, bytes: u64) -> Result<()> {
    let from_machine = crate::memory::available()?
        .is_some_and(|(_, source)| !source.starts_with(crate::memory::LIMIT_VAR));
    let need = match from_machine {
        true => need.saturating_sub(resident),
        false => need,
    };
    crate::memory::require(
        need,
        &format!(
            "{name}: preparing this input ({rows} rows in {})",
            human_bytes(bytes)
        ),
        "prepare a part of it, or run where more memory is free",
    )
}

/// The number of rows of text `buf` (its lines; a last line without a newline counts).
pub(super) fn lines(buf: &[u8]) -> u64 {
    newlines(buf) + u64::from(buf.last().is_some_and(|&b| b != b'\n'))
}

/// The newlines in `buf`, counted in u8 over 255-byte blocks (which the compiler turns into wide
/// compares).
fn newlines(buf: &[u8]) -> u64 {
    buf.chunks(255)
        .map(|c| {
            c.iter()
                .fold(0u8, |n, &b| n.wrapping_add(u8::from(b == b'\n'))) as u64
        })
        .sum()
}

/// All of `r` (stdin, a gzip stream, a zip entry) in memory, checking every [`STEP`] bytes that
/// the text so far, its rows (with a timestamp column, and a rating column when `rating`) and
/// the input bytes `before` it still fit: a bomb is refused once what it has produced implies
/// more than is available, long before it fills the memory. `bad` names a read error.
pub(super) fn read_checked(
    mut r: impl Read,
    name: &str,
    before: Held,
    rating: bool,
    bad: impl Fn(std::io::Error) -> crate::Error,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut rows = 0;
    let c = Columns { time: true, rating };
    loop {
        let start = out.len();
        let got = (&mut r).take(STEP).read_to_end(&mut out).map_err(&bad)?;
        rows += newlines(&out[start..]);
        let held = before.plus_resident(out.len() as u64);
        require(
            name,
            text(held.bytes, rows, c),
            held.resident,
            rows,
            out.len() as u64,
        )?;
        if got == 0 {
            return Ok(out);
        }
    }
}
