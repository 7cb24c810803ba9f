//! What a text input really is before it is parsed: a UTF-8 byte-order mark is dropped (Windows
//! editors write one), gzip is decompressed, and anything binary is named by its kind and the
//! offset of its first binary byte instead of being shown as a "header".

use super::budget::{read_checked, Held};
use crate::{Error, Result};

/// The first bytes of a gzip stream.
pub(super) const GZIP_MAGIC: &[u8] = b"\x1f\x8b";
const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";
/// How far into a file binary bytes are looked for (a text ratings file has none anywhere).
const LOOK: usize = 64 << 10;

/// Formats known by their first bytes, and what to say about each.
const MAGIC: [(&[u8], &str); 11] = [
    (b"\x7fELF", "an ELF executable"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"BZh", "bzip2-compressed (decompress it first: bunzip2)"),
    (b"\xfd7zXZ\x00", "xz-compressed (decompress it first: unxz)"),
    (
        b"\x28\xb5\x2f\xfd",
        "zstd-compressed (decompress it first: unzstd)",
    ),
    (
        b"7z\xbc\xaf\x27\x1c",
        "a 7-Zip archive (extract the ratings file first)",
    ),
    (b"SQLite format 3\x00", "an SQLite database"),
    (
        b"ARROW1",
        "an Arrow IPC file (ncf-prep reads ratings; a dataset stream goes to the other tools)",
    ),
    (
        b"\xff\xff\xff\xff",
        "an Arrow IPC stream (ncf-prep reads ratings; a dataset stream goes to the other tools)",
    ),
];

/// `buf` without a leading UTF-8 byte-order mark, or an error naming what `buf` is when it is
/// not a text `what` file ("ratings", "movies"): a known binary kind, UTF-16, or a NUL / other
/// control byte (by its offset).
pub(super) fn text_of<'a>(buf: &'a [u8], name: &str, what: &str) -> Result<&'a [u8]> {
    if let Some((_, kind)) = MAGIC.iter().find(|(m, _)| buf.starts_with(m)) {
        return Err(not_text(name, &format!("{kind}, not a text {what} file")));
    }
    if buf.starts_with(b"\xff\xfe") || buf.starts_with(b"\xfe\xff") {
        return Err(not_text(
            name,
            "UTF-16 text (Windows \"Unicode\"): save it as UTF-8 (or CSV UTF-8) and try again",
        ));
    }
    let text = buf.strip_prefix(UTF8_BOM).unwrap_or(buf);
    let head = &text[..text.len().min(LOOK)];
    // Tab, newline and carriage return are text; any other control byte (NUL above all) is not.
    let binary = head
        .iter()
        .position(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c));
    if let Some(at) = binary {
        let offset = at + (buf.len() - text.len());
        return Err(not_text(
            name,
            &format!(
                "binary data (byte 0x{:02x} at offset {offset}), not a text {what} file",
                head[at]
            ),
        ));
    }
    Ok(text)
}

fn not_text(name: &str, what: &str) -> Error {
    Error::parse(name, format!("this is {what}"))
}

/// The decompressed bytes of gzip file `bytes` (all members, as `zcat` gives them), checked
/// against the memory available as they arrive, with `held` bytes of input already in memory
/// and ratings read when `rating` ([`super::budget::read_checked`]).
pub(super) fn gunzip(bytes: &[u8], name: &str, held: Held, rating: bool) -> Result<Vec<u8>> {
    read_checked(
        flate2::read::MultiGzDecoder::new(bytes),
        name,
        held,
        rating,
        |e| {
            Error::parse(
                name,
                format!("gzip: cannot decompress it ({e}); check the file with `gzip -t`"),
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bom_is_dropped_and_binary_is_named() {
        let r = "ratings";
        assert_eq!(text_of(b"\xef\xbb\xbfa,b\r\n", "f", r).unwrap(), b"a,b\r\n");
        assert_eq!(text_of(b"a\tb\n", "f", r).unwrap(), b"a\tb\n");
        let e = text_of(b"\x7fELF\x02\x01", "f", r).unwrap_err().to_string();
        assert!(e.contains("f: this is an ELF executable"), "{e}");
        let e = text_of(b"\x7fELF\x02\x01", "f", "movies")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a text movies file"), "{e}");
        let e = text_of(b"u,i\n1,2\n\x00\x00", "f", r)
            .unwrap_err()
            .to_string();
        assert!(e.contains("binary data (byte 0x00 at offset 8)"), "{e}");
        let e = text_of(b"\xef\xbb\xbfu\x01", "f", r)
            .unwrap_err()
            .to_string();
        assert!(e.contains("offset 4"), "{e}");
        let e = text_of(b"\xff\xfeu\0s\0", "f", r).unwrap_err().to_string();
        assert!(e.contains("UTF-16"), "{e}");
    }

    #[test]
    fn gzip_members_are_concatenated() {
        use std::io::Write;
        let mut all = Vec::new();
        for part in [&b"u,i\n"[..], b"1,2\n"] {
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(part).unwrap();
            all.extend(z.finish().unwrap());
        }
        assert!(all.starts_with(GZIP_MAGIC));
        let held = Held::default();
        assert_eq!(gunzip(&all, "f", held, false).unwrap(), b"u,i\n1,2\n");
        let e = gunzip(&all[..12], "f", held, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("f: gzip: cannot decompress"), "{e}");
    }
}
