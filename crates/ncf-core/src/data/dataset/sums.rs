//! SHA256SUMS: every file of a dataset directory checked before it is parsed.

use super::cols::{NEGATIVES_COLS, TRAIN_COLS};
use super::dir::ncf_side_file;
use super::{fingerprint::hex, SUMS};
use crate::io::AtomicDir;
use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// Refuse an entry of dataset directory `dir` that its SHA256SUMS (`sums`) does not list: the
/// sums cover everything ncf wrote there, so anything else was added by hand or by another
/// tool (docs/RELIABILITY.md).
pub(super) fn check_listed(dir: &Path, sums: &HashMap<String, String>) -> Result<()> {
    let mut extra = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let name = e.map_err(|e| Error::io(dir, e))?.file_name();
        let name = name.to_string_lossy();
        let cols = name == TRAIN_COLS || name == NEGATIVES_COLS;
        if name != SUMS && !cols && !sums.contains_key(name.as_ref()) {
            extra.push(name.into_owned());
        }
    }
    extra.sort();
    if sums.is_empty() && !extra.is_empty() {
        return Err(Error::invalid(format!(
            "{}: is empty, so none of the dataset's files can be checked (it should list \
             meta.json and every table): prepare the dataset again, or delete the empty \
             SHA256SUMS to read the tables checked only against meta.json's fingerprint",
            dir.join(SUMS).display()
        )));
    }
    if let Some((name, of)) = extra.iter().find_map(|n| Some((n, ncf_side_file(n)?))) {
        return Err(Error::invalid(format!(
            "{}: left by an ncf run that wrote {of} inside the dataset directory (outputs do not \
             belong there, and a dataset holds only the files listed in SHA256SUMS): remove it \
             (it is not part of the dataset)",
            dir.join(name).display()
        )));
    }
    match extra.first() {
        None => Ok(()),
        Some(first) => {
            Err(Error::invalid(format!(
            "{}: not listed in SHA256SUMS{} (a dataset holds only the files ncf wrote, all listed \
             there): move it out of {}, or prepare the dataset again",
            dir.join(first).display(),
            match extra.len() {
                1 => String::new(),
                n => format!(", nor {} other entr{}", n - 1, if n == 2 { "y" } else { "ies" }),
            },
            dir.display()
        )))
        }
    }
}

/// SHA-256 (hex) of the file `p`, hashed as it is read (a train table may be larger than the
/// memory; read, not mapped, so its pages do not count in the process's resident set).
pub(super) fn sha256_file(p: &Path) -> Result<String> {
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(p).map_err(|e| Error::io(p, e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        use std::io::Read;
        match f.read(&mut buf).map_err(|e| Error::io(p, e))? {
            0 => break,
            k => h.update(&buf[..k]),
        }
    }
    Ok(hex(&h.finalize()))
}

/// The hashes SHA256SUMS lists for the directory being written: every file but SHA256SUMS and
/// the column files (which check themselves), by name; those in `known` (hashed by their writer
/// as it wrote them) are not read again.
pub(super) fn hash_files(
    dir: &AtomicDir,
    known: std::collections::BTreeMap<String, String>,
) -> Result<std::collections::BTreeMap<String, String>> {
    let tmp = dir.path("");
    let mut out = known;
    for e in std::fs::read_dir(&tmp).map_err(|e| Error::io(&tmp, e))? {
        let name = e.map_err(|e| Error::io(&tmp, e))?.file_name();
        let name = name.to_string_lossy().into_owned();
        if name != SUMS && name != TRAIN_COLS && name != NEGATIVES_COLS && !out.contains_key(&name)
        {
            let h = sha256_file(&dir.path(&name))?;
            out.insert(name, h);
        }
    }
    Ok(out)
}

/// Write SHA256SUMS from [`hash_files`]'s hashes.
pub(super) fn write_sums(
    dir: &AtomicDir,
    sums: &std::collections::BTreeMap<String, String>,
) -> Result<()> {
    let mut text = String::new();
    for (n, h) in sums {
        text.push_str(&format!("{h}  {n}\n"));
    }
    let p = dir.path(SUMS);
    std::fs::write(&p, text).map_err(|e| Error::io(&p, e))
}

/// Parse SHA256SUMS (`<64 hex>  <name>` lines) into name -> hash.
pub(super) fn parse_sums(bytes: &[u8], loc: &str) -> Result<HashMap<String, String>> {
    let text = std::str::from_utf8(bytes).map_err(|_| Error::parse(loc, "not UTF-8 text"))?;
    let mut out = HashMap::new();
    for (k, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || {
            Error::parse(
                format!("{loc}:{}", k + 1),
                "expected `<64 hex digits>  <file name>` (sha256sum format)",
            )
        };
        let (hash, name) = line.split_once("  ").ok_or_else(bad)?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) || name.is_empty() {
            return Err(bad());
        }
        out.insert(name.to_string(), hash.to_ascii_lowercase());
    }
    Ok(out)
}
