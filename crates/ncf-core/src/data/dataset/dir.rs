//! The dataset directory: what ncf may replace, writing it atomically, reading it whole.

use super::cols::{
    start_train_cols, write_negatives_cols, write_train_cols, ColsFile, PendingTrainCols,
    NEGATIVES_COLS, TRAIN_COLS,
};
use super::fingerprint::hex;
use super::memory::{check_memory, check_memory_mapped};
use super::meta::meta_from_json;
use super::sums::{check_listed, hash_files, parse_sums, sha256_file, write_sums};
use super::{Dataset, Meta, TrainUsers, DATASET_FILES, ITEMS, NEGATIVES, SUMS, TEST, TRAIN, USERS};
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
        // Timestamps left on disk by a mapped load are written back, not dropped.
        let this = self.with_timestamps()?;
        this.validate("dataset to write")?;
        let meta = this.current_meta();
        // train.cols from the columns in memory, on the second core while the tables are
        // written (its header waits for their hashes: `finish_with`).
        let pending = std::thread::scope(|sc| {
            let cols = tables
                .contains(&TRAIN)
                .then(|| sc.spawn(|| start_train_cols(&dir.path(""), &this)));
            let written = tables
                .iter()
                .try_for_each(|&t| this.write_parquet(t, &dir.path(&format!("{t}.parquet"))));
            let cols = cols.map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
            written?;
            Ok::<_, Error>(cols.transpose()?.flatten())
        })?;
        finish_with(dir, &meta, pending, Default::default())
    }

    /// Write the dataset directory atomically (temp dir + rename). Refuses an existing `dir`
    /// unless `force`.
    pub fn write(&self, dir: &Path, force: bool) -> Result<()> {
        let out = AtomicDir::new(dir, &OUTPUT, force)?;
        self.write_into(&out, &self.tables())
            .map_err(|e| crate::io::explain_disk_full(e, dir))?;
        out.commit()
    }

    /// Read a dataset directory whole, validating it against its `meta.json`: [`Dataset::open`]
    /// with the timestamps read too.
    pub fn load(dir: &Path) -> Result<Dataset> {
        let ds = Dataset::open(dir)?;
        Ok(ds.with_timestamps()?.into_owned())
    }

    /// Read a dataset directory as the tools do, validating it against its `meta.json`: through
    /// its column files when it has them (id columns mapped, timestamps left on disk:
    /// [`Dataset::with_timestamps`]), else decoded from Parquet.
    pub fn open(dir: &Path) -> Result<Dataset> {
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
        // The column files are read only where SHA256SUMS vouches for the tables they were
        // made from (every directory ncf writes has it).
        if let (true, Some(sums)) = (dir.join(TRAIN_COLS).is_file(), &sums) {
            return Dataset::load_mapped(dir, &text, sums);
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

    /// Read a dataset directory through its column files ([`super::cols`]): train and test
    /// columns (and test negatives, when `test_negatives.cols` is there) mapped, the users' and
    /// items' raw ids decoded from Parquet, timestamps not read.
    fn load_mapped(
        dir: &Path,
        meta_text: &[u8],
        sums: &HashMap<String, String>,
    ) -> Result<Dataset> {
        let name = dir.display().to_string();
        let check = |file: &str, got: String| -> Result<()> {
            let loc = dir.join(file).display().to_string();
            match sums.get(file) {
                None => Err(Error::parse(loc, format!("not listed in {SUMS}"))),
                Some(want) if *want != got => Err(Error::parse(
                    loc,
                    format!("checksum mismatch with {SUMS} (the file is corrupt or was edited)"),
                )),
                Some(_) => Ok(()),
            }
        };
        let verify = |file: &str, bytes: &[u8]| check(file, hex(&Sha256::digest(bytes)));
        // Tables the tools do not decode here are still checked, streamed (not kept).
        let verify_file = |file: &str| check(file, sha256_file(&dir.join(file))?);
        verify("meta.json", meta_text)?;
        let meta_loc = format!("{name}/meta.json");
        let text = std::str::from_utf8(meta_text)
            .map_err(|_| Error::parse(&meta_loc, "not UTF-8 text (expected JSON)"))?;
        let meta = meta_from_json(text, &meta_loc)?;
        let mut raw_bytes = 0u64;
        for t in [USERS, ITEMS] {
            let p = dir.join(format!("{t}.parquet"));
            raw_bytes += std::fs::metadata(&p).map_or(0, |m| m.len());
        }
        check_memory_mapped(&meta, raw_bytes, &name)?;
        let (nu, ni) = (meta.n_users, meta.n_items);
        for t in [TRAIN, TEST] {
            verify_file(&format!("{t}.parquet"))?;
        }
        let train = ColsFile::open(&dir.join(TRAIN_COLS), "train", &meta)?;
        train.check_sources(sums)?;
        if meta.test_negatives_per_user == 0 {
            train.check_fingerprint(&meta.fingerprint)?;
        }
        let items = train.column::<u32>("train_items", meta.n_train, |at, b| {
            match b.iter().position(|&i| i >= ni) {
                Some(k) => Err(format!("train row {}: item {} >= n_items", at + k, b[k])),
                None => Ok(()),
            }
        })?;
        let mut last = 0u64;
        let offsets = train.column::<u64>("user_offsets", nu as u64 + 1, |at, b| {
            for (k, &o) in b.iter().enumerate() {
                if (at + k == 0 && o != 0) || o < last || o > meta.n_train {
                    return Err(format!("offset {}: {o} out of order", at + k));
                }
                last = o;
            }
            Ok(())
        })?;
        if last != meta.n_train {
            return Err(Error::parse(
                dir.join(TRAIN_COLS).display().to_string(),
                format!(
                    "user offsets end at {last}, not at the {} train rows",
                    meta.n_train
                ),
            ));
        }
        let in_range = |n: u32, what: &'static str| {
            move |at: usize, b: &[u32]| match b.iter().position(|&x| x >= n) {
                Some(k) => Err(format!("row {}: {what} {} out of range", at + k, b[k])),
                None => Ok(()),
            }
        };
        let test_users = train.column::<u32>("test_users", meta.n_test, in_range(nu, "user"))?;
        let test_items = train.column::<u32>("test_items", meta.n_test, in_range(ni, "item"))?;
        let mut ds = Dataset {
            n_users: nu,
            n_items: ni,
            train_users: TrainUsers::from_offsets(offsets),
            train_items: items,
            test_users,
            test_items,
            test_negatives_per_user: meta.test_negatives_per_user as usize,
            timestamps_in: Some(dir.to_path_buf()),
            mapped_split: Some(train.header.split_fingerprint.clone()),
            ..Default::default()
        };
        if meta.test_negatives_per_user > 0 {
            let k = meta.test_negatives_per_user as u64;
            let neg_path = dir.join(NEGATIVES_COLS);
            if neg_path.is_file() {
                verify_file("test_negatives.parquet")?;
                let negs = ColsFile::open(&neg_path, "test_negatives", &meta)?;
                negs.check_sources(sums)?;
                negs.check_fingerprint(&meta.fingerprint)?;
                if negs.header.split_fingerprint != train.header.split_fingerprint {
                    return Err(Error::parse(
                        neg_path.display().to_string(),
                        format!(
                            "made for other train and test rows than {TRAIN_COLS}: delete it \
                             (the tools then read test_negatives.parquet) or run ncf-negsample \
                             --force again"
                        ),
                    ));
                }
                ds.test_negatives =
                    negs.column::<u32>("test_negatives", meta.n_test * k, in_range(ni, "item"))?;
            } else {
                let p = dir.join("test_negatives.parquet");
                let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
                verify("test_negatives.parquet", &bytes)?;
                ds.absorb_parquet(
                    NEGATIVES,
                    bytes::Bytes::from(bytes),
                    &p.display().to_string(),
                )?;
            }
        }
        for t in [USERS, ITEMS] {
            let p = dir.join(format!("{t}.parquet"));
            let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
            verify(&format!("{t}.parquet"), &bytes)?;
            ds.absorb_parquet(t, bytes::Bytes::from(bytes), &p.display().to_string())?;
        }
        ds.check_meta(&meta, &name)?;
        ds.validate(&name)?;
        ds.meta = Some(meta);
        Ok(ds)
    }

    /// This dataset with its train and test timestamps, read from the Parquet tables when the
    /// column files were read instead (see [`Dataset::timestamps_in`]); else itself.
    pub fn with_timestamps(&self) -> Result<std::borrow::Cow<'_, Dataset>> {
        let Some(dir) = &self.timestamps_in else {
            return Ok(std::borrow::Cow::Borrowed(self));
        };
        let mut d = self.clone();
        d.timestamps_in = None;
        d.train_timestamps = read_timestamps(&dir.join(format!("{TRAIN}.parquet")))?;
        d.test_timestamps = read_timestamps(&dir.join(format!("{TEST}.parquet")))?;
        Ok(std::borrow::Cow::Owned(d))
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
            Dataset::open(path)
        }
    }
}

/// The timestamp column of a train or test Parquet table, `None` when it has none.
fn read_timestamps(path: &Path) -> Result<Option<Vec<i64>>> {
    use crate::arrow::array::{Array, Int64Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let loc = path.display().to_string();
    let bad = |e: &dyn std::fmt::Display| {
        Error::parse(&loc, format!("not a readable Parquet file ({e})"))
    };
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(&e))?;
    if b.schema().fields().len() < 3 {
        return Ok(None);
    }
    let mask = parquet::arrow::ProjectionMask::roots(b.parquet_schema(), [2]);
    let mut out = Vec::new();
    for batch in b.with_projection(mask).build().map_err(|e| bad(&e))? {
        let batch = batch.map_err(|e| bad(&e))?;
        let a = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| bad(&"column timestamp is not int64"))?;
        if a.null_count() > 0 {
            return Err(Error::parse(&loc, "column timestamp has nulls"));
        }
        out.extend_from_slice(a.values());
    }
    Ok(Some(out))
}

/// The last step of every writer of a dataset directory (the in-memory [`Dataset`] and any
/// streaming writer), once its tables are in `dir`: meta.json, then SHA256SUMS over every file.
pub fn finish(dir: &AtomicDir, meta: &Meta) -> Result<()> {
    finish_with(dir, meta, None, Default::default())
}

/// [`finish`], with `train.cols` already written but for its header (`pending`: the writer had
/// the rows), and the SHA-256 of the files in `known` taken as they were written (not read back).
pub(super) fn finish_with(
    dir: &AtomicDir,
    meta: &Meta,
    pending: Option<PendingTrainCols>,
    known: std::collections::BTreeMap<String, String>,
) -> Result<()> {
    let json = serde_json::to_string_pretty(meta).expect("meta serialises");
    let p = dir.path("meta.json");
    std::fs::write(&p, json + "\n").map_err(|e| Error::io(&p, e))?;
    // The column files: train.cols's header now (the writer had the rows), else derived from
    // the tables just written (or copied, when only the negatives changed); SHA256SUMS does not
    // list them (they check themselves).
    let sums = hash_files(dir, known)?;
    let tmp = dir.path("");
    if let Some(p) = pending {
        p.finish(meta, &sums)?;
    } else if dir.path(&format!("{TRAIN}.parquet")).is_file() && !dir.path(TRAIN_COLS).is_file() {
        write_train_cols(&tmp, meta, &sums)?;
    }
    if meta.test_negatives_per_user > 0 && !dir.path(NEGATIVES_COLS).is_file() {
        write_negatives_cols(&tmp, meta, &sums)?;
    }
    write_sums(dir, &sums)
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
    let ds = Dataset::open(dir)?;
    let want = per_user * ds.test_users.len();
    if negatives.len() != want {
        return Err(Error::invalid(format!(
            "{} test negatives for {} test users at {per_user} each: expected {want}",
            negatives.len(),
            ds.test_users.len(),
        )));
    }
    write_test_negatives_in_blocks(dir, &ds, per_user, source, seed, force, |rows, out| {
        out.extend_from_slice(&negatives[rows.start * per_user..rows.end * per_user]);
        Ok(())
    })
}

/// [`write_test_negatives`] with the negatives made block by block: `fill(rows, out)` appends
/// the `per_user` negatives of each test row in `rows` to `out`. They are range-checked, hashed
/// into the new fingerprint and written to `test_negatives.parquet` as each block comes, never
/// all in memory; `finish` then writes `test_negatives.cols` from that table, block by block.
/// `data` is `dir` as loaded.
pub fn write_test_negatives_in_blocks(
    dir: &Path,
    data: &Dataset,
    per_user: usize,
    source: &str,
    seed: Option<u64>,
    force: bool,
    mut fill: impl FnMut(std::ops::Range<usize>, &mut Vec<u32>) -> Result<()>,
) -> Result<Meta> {
    if data.test_negatives_per_user > 0 && !force {
        return Err(Error::usage(format!(
            "{}: already has test negatives (use --force to replace them)",
            dir.display()
        )));
    }
    let out = AtomicDir::new(dir, &OUTPUT, true)?;
    let meta = out
        .copy_from(
            dir,
            &["meta.json", "test_negatives.parquet", NEGATIVES_COLS, SUMS],
        )
        .and_then(|()| {
            let meta = stream_negatives(&out, data, per_user, source, seed, &mut fill)?;
            finish(&out, &meta)?;
            Ok(meta)
        })
        .map_err(|e| crate::io::explain_disk_full(e, dir))?;
    out.commit()?;
    Ok(meta)
}

/// Test rows per block of [`write_test_negatives_in_blocks`]: about a million negatives.
fn rows_per_block(per_user: usize) -> usize {
    (super::CHUNK / per_user.max(1)).max(1)
}

fn stream_negatives(
    out: &AtomicDir,
    data: &Dataset,
    per_user: usize,
    source: &str,
    seed: Option<u64>,
    fill: &mut impl FnMut(std::ops::Range<usize>, &mut Vec<u32>) -> Result<()>,
) -> Result<Meta> {
    use crate::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
    use parquet::arrow::ArrowWriter;
    use parquet::basic::Compression;
    use parquet::file::properties::WriterProperties;
    use std::sync::Arc;
    let n_test = data.test_users.len();
    let total = per_user * n_test;
    let mut h = Sha256::new();
    h.update(b"ncf-dataset-v1\n");
    super::fingerprint::hash_train(&mut h, &data.train_users, &data.train_items);
    super::fingerprint::hash_pairs(&mut h, &data.test_users, &data.test_items);
    h.update((total as u64).to_le_bytes());
    if per_user > 0 {
        let path = out.path("test_negatives.parquet");
        let schema = super::schema::table_schema(NEGATIVES, false);
        let perr = |e: parquet::errors::ParquetError| {
            Error::io(&path, std::io::Error::other(e.to_string()))
        };
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let mut w =
            ArrowWriter::try_new(std::io::BufWriter::new(file), schema.clone(), Some(props))
                .map_err(perr)?;
        // Batches of exactly CHUNK rows, as Dataset::write cuts them: the same bytes.
        let (mut us, mut is) = (
            Vec::with_capacity(super::CHUNK),
            Vec::with_capacity(super::CHUNK),
        );
        let write = |us: &mut Vec<u32>, is: &mut Vec<u32>, w: &mut ArrowWriter<_>| {
            let cols: Vec<ArrayRef> = vec![
                Arc::new(UInt32Array::from(std::mem::take(us))),
                Arc::new(UInt32Array::from(std::mem::take(is))),
            ];
            let b = RecordBatch::try_new(schema.clone(), cols)
                .map_err(|e| Error::invalid(format!("building the {NEGATIVES} table: {e}")))?;
            w.write(&b).map_err(perr)
        };
        let mut block = Vec::new();
        let step = rows_per_block(per_user);
        let mut written = 0usize;
        for start in (0..n_test).step_by(step) {
            let rows = start..(start + step).min(n_test);
            block.clear();
            fill(rows.clone(), &mut block)?;
            if block.len() != rows.len() * per_user {
                return Err(Error::invalid(format!(
                    "{} test negatives for test rows {rows:?} at {per_user} each",
                    block.len()
                )));
            }
            if let Some(bad) = block.iter().find(|&&i| i >= data.n_items) {
                return Err(Error::invalid(format!(
                    "test negative item {bad} is out of range (n_items {})",
                    data.n_items
                )));
            }
            h.update(super::column::as_bytes(&block));
            for (k, &item) in block.iter().enumerate() {
                us.push(data.test_users[rows.start + k / per_user]);
                is.push(item);
                if us.len() == super::CHUNK {
                    write(&mut us, &mut is, &mut w)?;
                    written += 1;
                }
            }
        }
        if !us.is_empty() || written == 0 {
            write(&mut us, &mut is, &mut w)?;
        }
        w.close().map_err(perr)?;
    }
    let mut meta = data.meta.clone().unwrap_or_else(|| data.current_meta());
    meta.format_version = super::FORMAT_VERSION;
    meta.test_negatives_per_user = per_user as u32;
    meta.test_negatives_source = (per_user > 0).then(|| source.to_string());
    meta.test_negatives_seed = if per_user > 0 { seed } else { None };
    meta.fingerprint = hex(&h.finalize());
    Ok(meta)
}
