//! The dataset directory: what ncf may replace, writing it atomically, reading it whole.

use super::fingerprint::hex;
use super::memory::check_memory;
use super::meta::meta_from_json;
use super::sums::{check_listed, parse_sums, write_sums};
use super::{Dataset, Meta, DATASET_FILES, ITEMS, NEGATIVES, SUMS, TEST, TRAIN, USERS};
use crate::io::{is_stdio, AtomicDir, Output};
use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// A dataset directory as an output: `--force` replaces only one ncf wrote ([`written_by_ncf`]).
pub const OUTPUT: Output = Output {
    what: "dataset directory",
    example: "ml-small",
    dir: true,
    reused: false,
    ours: written_by_ncf,
};

/// The output an ncf side file (`.NAME.lock`, `.NAME.tmp-PID`, `.NAME.old-PID`) belongs to.
pub(super) fn ncf_side_file(entry: &str) -> Option<&str> {
    let rest = entry.strip_prefix('.')?;
    if let Some(of) = rest.strip_suffix(".lock") {
        return Some(of);
    }
    let (of, pid) = rest.rsplit_once('-')?;
    let of = of
        .strip_suffix(".tmp")
        .or_else(|| of.strip_suffix(".old"))?;
    pid.parse::<u32>().ok().map(|_| of)
}

/// True when `dir` looks like an ncf dataset directory (a meta.json beside train.parquet or a
/// SHA256SUMS), even a damaged one: outputs must not be written inside one
/// ([`crate::io::claim_output`]).
pub fn looks_like_dataset(dir: &Path) -> bool {
    dir.join("meta.json").is_file()
        && (dir.join("train.parquet").is_file() || dir.join(SUMS).is_file())
}

/// `Ok` when `dir` is a dataset directory ncf wrote: a meta.json with a `format_version`, and
/// nothing but the files ncf writes there (so replacing it deletes nothing of the user's);
/// else what it holds instead.
pub fn written_by_ncf(dir: &Path) -> std::result::Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot be read ({e})"))?;
    let mut foreign = Vec::new();
    for e in entries {
        let e = e.map_err(|e| format!("cannot be read ({e})"))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let link = e.file_type().is_ok_and(|t| t.is_symlink());
        if link && DATASET_FILES.contains(&name.as_str()) {
            let to = std::fs::canonicalize(e.path())
                .or_else(|_| std::fs::read_link(e.path()))
                .unwrap_or_default();
            return Err(format!(
                "holds {name} as a symbolic link (to {}), and ncf writes a dataset's files as \
                 plain files: replacing the directory would replace the link, not what it points \
                 to; make it a plain file (cp --remove-destination {} {}) or write a new dataset \
                 with -o DIR",
                to.display(),
                to.display(),
                e.path().display()
            ));
        }
        let file = e.file_type().is_ok_and(|t| t.is_file());
        if !file || !DATASET_FILES.contains(&name.as_str()) {
            foreign.push(name);
        }
    }
    if !foreign.is_empty() {
        foreign.sort();
        let more = match foreign.len() {
            n if n > 3 => format!(" and {} more", n - 3),
            _ => String::new(),
        };
        let shown: Vec<String> = foreign.iter().take(3).map(|n| format!("`{n}`")).collect();
        return Err(format!(
            "not an ncf dataset (it holds {}{more}, which ncf does not write)",
            shown.join(", ")
        ));
    }
    let meta = std::fs::read(dir.join("meta.json"))
        .map_err(|_| "not an ncf dataset (no meta.json)".to_string())?;
    let ncf = serde_json::from_slice::<serde_json::Value>(&meta)
        .ok()
        .is_some_and(|v| v.get("format_version").is_some());
    if !ncf {
        return Err("not an ncf dataset (its meta.json is not ncf's)".into());
    }
    Ok(())
}

impl Dataset {
    pub(super) fn write_into(&self, dir: &AtomicDir, tables: &[&str]) -> Result<()> {
        self.validate("dataset to write")?;
        for &t in tables {
            self.write_parquet(t, &dir.path(&format!("{t}.parquet")))?;
        }
        finish(dir, &self.current_meta())
    }

    /// Write the dataset directory atomically (temp dir + rename). Refuses an existing `dir`
    /// unless `force`.
    pub fn write(&self, dir: &Path, force: bool) -> Result<()> {
        let out = AtomicDir::new(dir, &OUTPUT, force)?;
        self.write_into(&out, &self.tables())
            .map_err(|e| crate::io::explain_disk_full(e, dir))?;
        out.commit()
    }

    /// Read a dataset directory, validating it against its `meta.json`.
    pub fn load(dir: &Path) -> Result<Dataset> {
        if !dir.is_dir() {
            return Err(Error::invalid(format!(
                "{}: not a dataset directory (make one with ncf-prep)",
                dir.display()
            )));
        }
        let meta_path = dir.join("meta.json");
        let text = std::fs::read(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
        let sums_path = dir.join(SUMS);
        let sums = match std::fs::read(&sums_path) {
            Ok(b) => Some(parse_sums(&b, &sums_path.display().to_string())?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&sums_path, e)),
        };
        if let Some(sums) = &sums {
            check_listed(dir, sums)?;
        }
        let mut sizes = 0u64;
        for t in [TRAIN, TEST, USERS, ITEMS, NEGATIVES] {
            let p = dir.join(format!("{t}.parquet"));
            sizes += std::fs::metadata(&p).map_or(0, |m| m.len());
        }
        // Parquet files are read whole into memory (they are the compressed form, far smaller
        // than the tables) so the decoder never seeks past what the file really holds.
        Dataset::load_with(&text, &dir.display().to_string(), sums, sizes, |t| {
            let path = dir.join(format!("{t}.parquet"));
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            Ok((bytes, path.display().to_string()))
        })
    }

    /// Read a dataset from its files in memory: `files` maps file names (`meta.json`,
    /// `train.parquet`, ...) to their contents. The same checks as [`Dataset::load`]; the entry
    /// point of the fuzzer.
    pub fn from_bytes(files: &[(&str, &[u8])]) -> Result<Dataset> {
        let get = |name: &str| {
            files
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, b)| b.to_vec())
                .ok_or_else(|| Error::invalid(format!("<memory>/{name}: missing")))
        };
        let meta = get("meta.json")?;
        let sums = match files.iter().find(|(n, _)| *n == SUMS) {
            Some((_, b)) => Some(parse_sums(b, &format!("<memory>/{SUMS}"))?),
            None => None,
        };
        let sizes = files.iter().map(|(_, b)| b.len() as u64).sum();
        Dataset::load_with(&meta, "<memory>", sums, sizes, |t| {
            let name = format!("{t}.parquet");
            Ok((get(&name)?, format!("<memory>/{name}")))
        })
    }

    /// The load path shared by files and memory: meta.json text, then each table's Parquet
    /// bytes from `open` (with the name errors use).
    pub(super) fn load_with(
        meta_text: &[u8],
        dir_name: &str,
        sums: Option<HashMap<String, String>>,
        file_bytes: u64,
        mut open: impl FnMut(&str) -> Result<(Vec<u8>, String)>,
    ) -> Result<Dataset> {
        let meta_loc = format!("{dir_name}/meta.json");
        // Every byte is checked against SHA256SUMS before it is parsed.
        let verify = |name: &str, bytes: &[u8], loc: &str| -> Result<()> {
            let Some(sums) = &sums else { return Ok(()) };
            match sums.get(name) {
                None => Err(Error::parse(loc, format!("not listed in {SUMS}"))),
                Some(want) if *want != hex(&Sha256::digest(bytes)) => Err(Error::parse(
                    loc,
                    format!("checksum mismatch with {SUMS} (the file is corrupt or was edited)"),
                )),
                Some(_) => Ok(()),
            }
        };
        verify("meta.json", meta_text, &meta_loc)?;
        let text = std::str::from_utf8(meta_text)
            .map_err(|_| Error::parse(&meta_loc, "not UTF-8 text (expected JSON)"))?;
        let meta = meta_from_json(text, &meta_loc)?;
        check_memory(&meta, file_bytes, dir_name)?;
        let mut ds = Dataset {
            n_users: meta.n_users,
            n_items: meta.n_items,
            test_negatives_per_user: meta.test_negatives_per_user as usize,
            ..Default::default()
        };
        let mut tables = vec![TRAIN, TEST, USERS, ITEMS];
        if meta.test_negatives_per_user > 0 {
            tables.push(NEGATIVES);
        }
        for t in tables {
            let (bytes, loc) = open(t)?;
            verify(&format!("{t}.parquet"), &bytes, &loc)?;
            ds.absorb_parquet(t, bytes::Bytes::from(bytes), &loc)?;
        }
        ds.check_meta(&meta, dir_name)?;
        ds.validate(dir_name)?;
        if meta.fingerprint != ds.fingerprint() {
            return Err(Error::invalid(format!(
                "{dir_name}: content does not match the fingerprint in meta.json (edited or corrupt)"
            )));
        }
        ds.meta = Some(meta);
        Ok(ds)
    }

    /// Read a dataset from a directory, or from an Arrow IPC stream on stdin for `-`.
    pub fn load_any(path: &Path) -> Result<Dataset> {
        if is_stdio(path) {
            let stdin = std::io::stdin();
            Dataset::read_ipc(BufReader::with_capacity(1 << 20, stdin.lock()), "<stdin>")
        } else if path.is_file() {
            let f = File::open(path).map_err(|e| Error::io(path, e))?;
            Dataset::read_ipc(
                BufReader::with_capacity(1 << 20, f),
                &path.display().to_string(),
            )
        } else {
            Dataset::load(path)
        }
    }
}

/// The last step of every writer of a dataset directory (the in-memory [`Dataset`] and any
/// streaming writer), once its tables are in `dir`: meta.json, then SHA256SUMS over every file.
pub fn finish(dir: &AtomicDir, meta: &Meta) -> Result<()> {
    let json = serde_json::to_string_pretty(meta).expect("meta serialises");
    let p = dir.path("meta.json");
    std::fs::write(&p, json + "\n").map_err(|e| Error::io(&p, e))?;
    write_sums(dir)
}

/// Replace the test negatives of the dataset directory `dir` (ncf-negsample): rewrites
/// `test_negatives.parquet` and `meta.json` atomically, keeping the other tables byte for byte.
/// Refuses a dataset that already has test negatives unless `force`. Returns the new meta.
pub fn write_test_negatives(
    dir: &Path,
    per_user: usize,
    negatives: Vec<u32>,
    source: &str,
    seed: Option<u64>,
    force: bool,
) -> Result<Meta> {
    let mut ds = Dataset::load(dir)?;
    if ds.test_negatives_per_user > 0 && !force {
        return Err(Error::usage(format!(
            "{}: already has test negatives (use --force to replace them)",
            dir.display()
        )));
    }
    ds.set_test_negatives(per_user, negatives, source, seed)?;
    let out = AtomicDir::new(dir, &OUTPUT, true)?;
    let tables: &[&str] = if per_user > 0 { &[NEGATIVES] } else { &[] };
    out.copy_from(dir, &["meta.json", "test_negatives.parquet", SUMS])
        .and_then(|()| ds.write_into(&out, tables))
        .map_err(|e| crate::io::explain_disk_full(e, dir))?;
    out.commit()?;
    Ok(ds.meta.expect("set_test_negatives sets meta"))
}
