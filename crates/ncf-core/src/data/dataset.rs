//! The dataset directory written by `ncf-prep` and read by every other tool (docs/FORMATS.md):
//! `meta.json`, `train.parquet`, `test.parquet`, `users.parquet`, `items.parquet` and, once
//! `ncf-negsample` has run, `test_negatives.parquet`. Dense ids are `u32`.
//! The same tables travel through pipes as consecutive Arrow IPC streams ([`Dataset::write_ipc`]).
//! One file: the format's writers (Parquet directory, Arrow IPC) and every reader check (schemas,
//! `SHA256SUMS`, Parquet chunks and pages, IPC messages, memory) share its table names, schemas
//! and constants.

use crate::arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, UInt32Array};
use crate::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use crate::io::{is_stdio, AtomicDir, Output};
use crate::{Error, Result};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

/// Version of the on-disk format; readers refuse other versions.
pub const FORMAT_VERSION: u32 = 1;

/// Schema metadata key naming the table a Parquet file or IPC stream holds.
pub const TABLE_KEY: &str = "ncf.table";
/// Schema metadata key holding meta.json (first IPC stream only).
pub const META_KEY: &str = "ncf.meta";

const TRAIN: &str = "train";
const TEST: &str = "test";
const USERS: &str = "users";
const ITEMS: &str = "items";
const NEGATIVES: &str = "test_negatives";
/// Checksums of every other file of a dataset directory, in `sha256sum` format (so
/// `sha256sum -c SHA256SUMS` checks a dataset by hand). Optional when reading: directories
/// written before it existed are still read (meta.json's fingerprint covers their content).
pub const SUMS: &str = "SHA256SUMS";
/// Rows per record batch / row-group chunk when writing.
const CHUNK: usize = 1 << 20;
/// Every file ncf writes into a dataset directory.
const DATASET_FILES: [&str; 7] = [
    "meta.json",
    SUMS,
    "train.parquet",
    "test.parquet",
    "users.parquet",
    "items.parquet",
    "test_negatives.parquet",
];

/// A dataset directory as an output: `--force` replaces only one ncf wrote ([`written_by_ncf`]).
pub const OUTPUT: Output = Output {
    what: "dataset directory",
    example: "ml-small",
    dir: true,
    reused: false,
    ours: written_by_ncf,
};

/// The output an ncf side file (`.NAME.lock`, `.NAME.tmp-PID`, `.NAME.old-PID`) belongs to.
fn ncf_side_file(entry: &str) -> Option<&str> {
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub format_version: u32,
    pub n_users: u32,
    pub n_items: u32,
    pub n_train: u64,
    pub n_test: u64,
    /// Test negatives per user (0 when none were written yet).
    pub test_negatives_per_user: u32,
    /// How the test negatives were made: "sampled" (seed in `test_negatives_seed`) or "given".
    pub test_negatives_source: Option<String>,
    pub test_negatives_seed: Option<u64>,
    /// Options `ncf-prep` ran with (format, min-interactions, min-rating, seed, ...).
    pub options: serde_json::Value,
    /// Where the data came from: path(s), detected format, sha256 of each input file.
    pub source: serde_json::Value,
    /// Counts of the preparation: rows read, duplicates dropped, users dropped, ...
    pub stats: serde_json::Value,
    /// Hex sha256 over the train and test (user, item) pairs and the negatives: what models and
    /// checkpoints are tied to.
    pub fingerprint: String,
}

/// A dataset in memory. Train rows are sorted by user, then by time (oldest first).
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    pub meta: Option<Meta>,
    pub n_users: u32,
    pub n_items: u32,
    pub train_users: Vec<u32>,
    pub train_items: Vec<u32>,
    /// Seconds since the epoch, when the input had timestamps.
    pub train_timestamps: Option<Vec<i64>>,
    /// One held-out interaction per user, sorted by user.
    pub test_users: Vec<u32>,
    pub test_items: Vec<u32>,
    pub test_timestamps: Option<Vec<i64>>,
    /// `test_negatives_per_user` items per test row, row-major in test order.
    pub test_negatives: Vec<u32>,
    pub test_negatives_per_user: usize,
    /// Raw id of each dense user / item id, as text.
    pub user_raw: Vec<String>,
    pub item_raw: Vec<String>,
    /// Title of each item, when a movies file was given.
    pub item_titles: Option<Vec<Option<String>>>,
}

/// The fingerprint of a dataset's content (docs/FORMATS.md, "fingerprint"): sha256 over
/// `"ncf-dataset-v1\n"`, then for train, test and negatives a u64 LE count followed by the
/// values as u32 LE (pairs as user, item; negatives as items only, in test order).
pub fn fingerprint(train: (&[u32], &[u32]), test: (&[u32], &[u32]), negatives: &[u32]) -> String {
    let mut h = Sha256::new();
    h.update(b"ncf-dataset-v1\n");
    hash_pairs(&mut h, train.0, train.1);
    hash_pairs(&mut h, test.0, test.1);
    h.update((negatives.len() as u64).to_le_bytes());
    let mut buf = Vec::with_capacity(4 * 4096);
    for c in negatives.chunks(4096) {
        buf.clear();
        c.iter()
            .for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
        h.update(&buf);
    }
    hex(&h.finalize())
}

/// A u64 LE count, then each (user, item) pair as two u32 LE.
fn hash_pairs(h: &mut Sha256, users: &[u32], items: &[u32]) {
    h.update((users.len() as u64).to_le_bytes());
    let mut buf = Vec::with_capacity(8 * 4096);
    for (us, is) in users.chunks(4096).zip(items.chunks(4096)) {
        buf.clear();
        for (u, i) in us.iter().zip(is) {
            buf.extend_from_slice(&u.to_le_bytes());
            buf.extend_from_slice(&i.to_le_bytes());
        }
        h.update(&buf);
    }
}

/// The fingerprint of a dataset's split alone (docs/FORMATS.md, "split fingerprint"): sha256
/// over `"ncf-split-v1\n"` and the train and test pairs as in [`fingerprint`], without the test
/// negatives. Training never reads the test negatives, so a model fits every dataset with the
/// same split: the same test users and items ranked among other negatives (1 + 100 as NVIDIA,
/// 1 + 999 as MLPerf) are evaluated without retraining.
pub fn split_fingerprint(train: (&[u32], &[u32]), test: (&[u32], &[u32])) -> String {
    let mut h = Sha256::new();
    h.update(b"ncf-split-v1\n");
    hash_pairs(&mut h, train.0, train.1);
    hash_pairs(&mut h, test.0, test.1);
    hex(&h.finalize())
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn meta_from_json(text: &str, location: &str) -> Result<Meta> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::parse(location, format!("not valid JSON: {e}")))?;
    match v.get("format_version").and_then(|f| f.as_u64()) {
        Some(f) if f == FORMAT_VERSION as u64 => {}
        Some(f) => {
            return Err(Error::parse(
                location,
                format!("format_version {f}, this build reads version {FORMAT_VERSION}"),
            ))
        }
        None => {
            return Err(Error::parse(
                location,
                "no format_version: not an ncf dataset",
            ))
        }
    }
    serde_json::from_value(v).map_err(|e| {
        Error::parse(
            location,
            format!("meta.json does not match the format: {e}"),
        )
    })
}

fn u32_field(name: &str) -> Field {
    Field::new(name, DataType::UInt32, false)
}

fn table_schema(table: &str, with_time: bool) -> SchemaRef {
    let mut fields = match table {
        TRAIN | TEST => vec![u32_field("user"), u32_field("item")],
        USERS => vec![
            u32_field("user"),
            Field::new("raw_id", DataType::Utf8, false),
        ],
        ITEMS => vec![
            u32_field("item"),
            Field::new("raw_id", DataType::Utf8, false),
            Field::new("title", DataType::Utf8, true),
        ],
        _ => vec![u32_field("user"), u32_field("item")],
    };
    if with_time && (table == TRAIN || table == TEST) {
        fields.push(Field::new("timestamp", DataType::Int64, false));
    }
    Arc::new(Schema::new_with_metadata(fields, [(TABLE_KEY, table)]))
}

impl Dataset {
    /// The table names present in this dataset, in IPC stream order.
    fn tables(&self) -> Vec<&'static str> {
        let mut t = vec![TRAIN, TEST, USERS, ITEMS];
        if self.test_negatives_per_user > 0 {
            t.push(NEGATIVES);
        }
        t
    }

    /// Hex sha256 over train pairs and test pairs only ([`split_fingerprint`]).
    pub fn split_fingerprint(&self) -> String {
        split_fingerprint(
            (&self.train_users, &self.train_items),
            (&self.test_users, &self.test_items),
        )
    }

    /// Hex sha256 over train pairs, test pairs and negatives ([`fingerprint`]).
    pub fn fingerprint(&self) -> String {
        fingerprint(
            (&self.train_users, &self.train_items),
            (&self.test_users, &self.test_items),
            &self.test_negatives,
        )
    }

    /// meta.json for this dataset as it is now: counts and fingerprint recomputed, the
    /// options / source / stats of `self.meta` kept.
    pub fn current_meta(&self) -> Meta {
        let old = self.meta.clone();
        let (options, source, stats, neg_source, neg_seed) = match old {
            Some(m) => (
                m.options,
                m.source,
                m.stats,
                m.test_negatives_source,
                m.test_negatives_seed,
            ),
            None => (
                serde_json::Value::Null,
                serde_json::Value::Null,
                serde_json::Value::Null,
                None,
                None,
            ),
        };
        let has_neg = self.test_negatives_per_user > 0;
        Meta {
            format_version: FORMAT_VERSION,
            n_users: self.n_users,
            n_items: self.n_items,
            n_train: self.train_users.len() as u64,
            n_test: self.test_users.len() as u64,
            test_negatives_per_user: self.test_negatives_per_user as u32,
            test_negatives_source: if has_neg { neg_source } else { None },
            test_negatives_seed: if has_neg { neg_seed } else { None },
            options,
            source,
            stats,
            fingerprint: self.fingerprint(),
        }
    }

    /// Replace the test negatives (`per_user` items per test row, in test order) and record how
    /// they were made (`source` "sampled" with its seed, or "given").
    pub fn set_test_negatives(
        &mut self,
        per_user: usize,
        negatives: Vec<u32>,
        source: &str,
        seed: Option<u64>,
    ) -> Result<()> {
        if negatives.len() != per_user * self.test_users.len() {
            return Err(Error::invalid(format!(
                "{} test negatives for {} test users at {per_user} each: expected {}",
                negatives.len(),
                self.test_users.len(),
                per_user * self.test_users.len()
            )));
        }
        if let Some(bad) = negatives.iter().find(|&&i| i >= self.n_items) {
            return Err(Error::invalid(format!(
                "test negative item {bad} is out of range (n_items {})",
                self.n_items
            )));
        }
        self.test_negatives = negatives;
        self.test_negatives_per_user = per_user;
        let mut meta = self.current_meta();
        meta.test_negatives_source = (per_user > 0).then(|| source.to_string());
        meta.test_negatives_seed = if per_user > 0 { seed } else { None };
        self.meta = Some(meta);
        self.meta = Some(self.current_meta());
        Ok(())
    }

    /// Check the invariants every reader relies on; `what` names the source in errors.
    pub fn validate(&self, what: &str) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(format!("{what}: {m}")));
        if self.train_users.len() != self.train_items.len() {
            return bad("train user and item columns differ in length".into());
        }
        if self.test_users.len() != self.test_items.len() {
            return bad("test user and item columns differ in length".into());
        }
        if let Some(t) = &self.train_timestamps {
            if t.len() != self.train_users.len() {
                return bad("train timestamp column differs in length".into());
            }
        }
        if let Some(t) = &self.test_timestamps {
            if t.len() != self.test_users.len() {
                return bad("test timestamp column differs in length".into());
            }
        }
        if self.user_raw.len() != self.n_users as usize {
            return bad(format!(
                "{} user raw ids for {} users",
                self.user_raw.len(),
                self.n_users
            ));
        }
        if self.item_raw.len() != self.n_items as usize {
            return bad(format!(
                "{} item raw ids for {} items",
                self.item_raw.len(),
                self.n_items
            ));
        }
        if let Some(t) = &self.item_titles {
            if t.len() != self.n_items as usize {
                return bad(format!("{} titles for {} items", t.len(), self.n_items));
            }
        }
        if let Some(r) = self.train_users.iter().position(|&u| u >= self.n_users) {
            return bad(format!(
                "train row {r}: user {} >= n_users",
                self.train_users[r]
            ));
        }
        if let Some(r) = self.train_items.iter().position(|&i| i >= self.n_items) {
            return bad(format!(
                "train row {r}: item {} >= n_items",
                self.train_items[r]
            ));
        }
        if let Some(r) = self.train_users.windows(2).position(|w| w[0] > w[1]) {
            return bad(format!("train rows {r}..{} are not sorted by user", r + 1));
        }
        if let Some(r) = self.test_users.iter().position(|&u| u >= self.n_users) {
            return bad(format!(
                "test row {r}: user {} >= n_users",
                self.test_users[r]
            ));
        }
        if let Some(r) = self.test_items.iter().position(|&i| i >= self.n_items) {
            return bad(format!(
                "test row {r}: item {} >= n_items",
                self.test_items[r]
            ));
        }
        if let Some(r) = self.test_users.windows(2).position(|w| w[0] >= w[1]) {
            return bad(format!(
                "test rows {r}..{}: users not strictly increasing",
                r + 1
            ));
        }
        let n_neg = self.test_negatives_per_user * self.test_users.len();
        if self.test_negatives.len() != n_neg {
            return bad(format!(
                "{} test negatives, expected {} ({} per test user)",
                self.test_negatives.len(),
                n_neg,
                self.test_negatives_per_user
            ));
        }
        if let Some(r) = self.test_negatives.iter().position(|&i| i >= self.n_items) {
            return bad(format!(
                "test negative {r}: item {} >= n_items",
                self.test_negatives[r]
            ));
        }
        Ok(())
    }

    fn check_meta(&self, meta: &Meta, what: &str) -> Result<()> {
        let mismatch = |field: &str, m: u64, actual: u64| {
            Err(Error::invalid(format!(
                "{what}: meta.json says {field} = {m} but the tables hold {actual}"
            )))
        };
        if meta.n_train != self.train_users.len() as u64 {
            return mismatch("n_train", meta.n_train, self.train_users.len() as u64);
        }
        if meta.n_test != self.test_users.len() as u64 {
            return mismatch("n_test", meta.n_test, self.test_users.len() as u64);
        }
        if meta.n_users as usize != self.user_raw.len() {
            return mismatch("n_users", meta.n_users as u64, self.user_raw.len() as u64);
        }
        if meta.n_items as usize != self.item_raw.len() {
            return mismatch("n_items", meta.n_items as u64, self.item_raw.len() as u64);
        }
        Ok(())
    }

    /// One table as record batches of at most [`CHUNK`] rows.
    fn batches(&self, table: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let with_time = match table {
            TRAIN => self.train_timestamps.is_some(),
            TEST => self.test_timestamps.is_some(),
            _ => false,
        };
        let schema = table_schema(table, with_time);
        let n = match table {
            TRAIN => self.train_users.len(),
            TEST => self.test_users.len(),
            USERS => self.n_users as usize,
            ITEMS => self.n_items as usize,
            _ => self.test_negatives.len(),
        };
        let mut out = Vec::new();
        let mut start = 0;
        while start < n || (n == 0 && out.is_empty()) {
            let end = (start + CHUNK).min(n);
            let r = start..end;
            let u32s = |v: &[u32]| Arc::new(UInt32Array::from(v[r.clone()].to_vec())) as ArrayRef;
            let cols: Vec<ArrayRef> = match table {
                TRAIN | TEST => {
                    let (u, i, t) = if table == TRAIN {
                        (&self.train_users, &self.train_items, &self.train_timestamps)
                    } else {
                        (&self.test_users, &self.test_items, &self.test_timestamps)
                    };
                    let mut c = vec![u32s(u), u32s(i)];
                    if let Some(t) = t {
                        c.push(Arc::new(Int64Array::from(t[r.clone()].to_vec())));
                    }
                    c
                }
                USERS => vec![
                    Arc::new(UInt32Array::from_iter_values(r.clone().map(|x| x as u32))),
                    Arc::new(StringArray::from_iter_values(
                        self.user_raw[r.clone()].iter(),
                    )),
                ],
                ITEMS => {
                    let titles: StringArray = match &self.item_titles {
                        Some(t) => t[r.clone()].iter().map(|s| s.as_deref()).collect(),
                        None => r.clone().map(|_| None::<&str>).collect(),
                    };
                    vec![
                        Arc::new(UInt32Array::from_iter_values(r.clone().map(|x| x as u32))),
                        Arc::new(StringArray::from_iter_values(
                            self.item_raw[r.clone()].iter(),
                        )),
                        Arc::new(titles),
                    ]
                }
                _ => {
                    let k = self.test_negatives_per_user.max(1);
                    let users =
                        UInt32Array::from_iter_values(r.clone().map(|x| self.test_users[x / k]));
                    vec![Arc::new(users), u32s(&self.test_negatives)]
                }
            };
            let batch = RecordBatch::try_new(schema.clone(), cols)
                .map_err(|e| Error::invalid(format!("building the {table} table: {e}")))?;
            out.push(batch);
            start = end;
            if n == 0 {
                break;
            }
        }
        Ok((schema, out))
    }

    fn write_parquet(&self, table: &str, path: &Path) -> Result<()> {
        let (schema, batches) = self.batches(table)?;
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let perr = |e: parquet::errors::ParquetError| {
            Error::io(path, std::io::Error::other(e.to_string()))
        };
        let mut w =
            ArrowWriter::try_new(BufWriter::new(file), schema, Some(props)).map_err(perr)?;
        for b in &batches {
            w.write(b).map_err(perr)?;
        }
        w.close().map_err(perr)?;
        Ok(())
    }

    fn write_into(&self, dir: &AtomicDir, tables: &[&str]) -> Result<()> {
        self.validate("dataset to write")?;
        for &t in tables {
            self.write_parquet(t, &dir.path(&format!("{t}.parquet")))?;
        }
        let meta = self.current_meta();
        let json = serde_json::to_string_pretty(&meta).expect("meta serialises");
        let p = dir.path("meta.json");
        std::fs::write(&p, json + "\n").map_err(|e| Error::io(&p, e))?;
        write_sums(dir)
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
    fn load_with(
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

    /// Decode one table's Parquet file, check its schema and append its columns to `self`.
    fn absorb_parquet(&mut self, table: &str, bytes: bytes::Bytes, loc: &str) -> Result<()> {
        let bad = |e: &dyn std::fmt::Display| {
            Error::parse(loc, format!("not a readable Parquet file ({e})"))
        };
        let file_len = bytes.len() as u64;
        let bytes_for_pages = bytes.clone();
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| bad(&e))?;
        check_parquet_chunks(builder.metadata(), file_len, loc)?;
        check_parquet_pages(bytes_for_pages, loc)?;
        let schema = builder.schema().clone();
        // Check the columns before decoding a single page.
        check_schema(table, &schema, loc)?;
        let reader = builder
            .with_batch_size(CHUNK)
            .build()
            .map_err(|e| bad(&e))?;
        let mut batches = Vec::new();
        for b in reader {
            let b = b.map_err(|e| bad(&e))?;
            if b.schema().fields() != schema.fields() {
                return Err(Error::parse(
                    loc,
                    "a record batch does not match the file's schema",
                ));
            }
            batches.push(b);
        }
        self.absorb(table, &schema, &batches, loc)
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

    /// Write the dataset as consecutive Arrow IPC streams (train, test, users, items, then
    /// test_negatives when present), each schema tagged with `ncf.table`; the first also carries
    /// meta.json under `ncf.meta`. See docs/FORMATS.md.
    pub fn write_ipc<W: Write>(&self, mut w: W) -> Result<()> {
        self.validate("dataset to write")?;
        let meta = self.current_meta();
        let json = serde_json::to_string(&meta).expect("meta serialises");
        let ioerr = |e: crate::arrow::error::ArrowError| match e {
            crate::arrow::error::ArrowError::IoError(_, e) => Error::io("<output>", e),
            e => Error::io("<output>", std::io::Error::other(e.to_string())),
        };
        for (k, t) in self.tables().into_iter().enumerate() {
            let (schema, batches) = self.batches(t)?;
            let schema = if k == 0 {
                let mut s = (*schema).clone();
                s.metadata.insert(META_KEY, json.clone());
                Arc::new(s)
            } else {
                schema
            };
            let mut sw =
                crate::arrow::ipc::writer::StreamWriter::try_new(&mut w, &schema).map_err(ioerr)?;
            for b in batches {
                let b = b.with_schema(schema.clone()).map_err(ioerr)?;
                sw.write(&b).map_err(ioerr)?;
            }
            sw.finish().map_err(ioerr)?;
        }
        w.flush().map_err(|e| Error::io("<output>", e))
    }

    /// Read what [`Dataset::write_ipc`] wrote; `name` labels errors.
    pub fn read_ipc<R: Read>(r: R, name: &str) -> Result<Dataset> {
        let mut r = CheckedIpc::new(r);
        let mut ds = Dataset::default();
        let mut meta: Option<Meta> = None;
        let mut expected = vec![TRAIN, TEST, USERS, ITEMS];
        let mut k = 0;
        while k < expected.len() {
            let t = expected[k];
            let loc = format!("{name}: IPC stream {} ({t})", k + 1);
            let bad = |e: &dyn std::fmt::Display| {
                Error::parse(&loc, format!("not a readable ncf Arrow IPC stream ({e})"))
            };
            let reader = match crate::arrow::ipc::reader::StreamReader::try_new(&mut r, None) {
                Ok(reader) => reader,
                Err(e) => {
                    return Err(match (k, r.parquet) {
                        (0, true) => Error::parse(
                            name,
                            "this is a Parquet file, not an ncf Arrow IPC stream: give the \
                             dataset's directory (not one of its tables), or the stream \
                             `ncf-prep -o -` writes",
                        ),
                        (0, false) => Error::parse(
                            name,
                            format!("not an ncf Arrow IPC stream (expected the output of `ncf-prep -o -`): {e}"),
                        ),
                        _ => bad(&e),
                    })
                }
            };
            let schema = reader.schema();
            if k == 0 {
                let json = schema.metadata.get(META_KEY).ok_or_else(|| {
                    Error::parse(
                        name,
                        format!("first IPC stream has no `{META_KEY}` metadata"),
                    )
                })?;
                let m = meta_from_json(json, name)?;
                check_memory(&m, 0, name)?;
                ds.n_users = m.n_users;
                ds.n_items = m.n_items;
                ds.test_negatives_per_user = m.test_negatives_per_user as usize;
                if m.test_negatives_per_user > 0 {
                    expected.push(NEGATIVES);
                }
                meta = Some(m);
            }
            let mut batches = Vec::new();
            for b in reader {
                batches.push(b.map_err(|e| bad(&e))?);
            }
            ds.absorb(t, &schema, &batches, &loc)?;
            k += 1;
        }
        let meta = meta.expect("first stream read");
        ds.check_meta(&meta, name)?;
        ds.validate(name)?;
        if meta.fingerprint != ds.fingerprint() {
            return Err(Error::invalid(format!(
                "{name}: content does not match the fingerprint in its meta"
            )));
        }
        ds.meta = Some(meta);
        Ok(ds)
    }

    /// Check one table's schema and append its columns to `self`.
    fn absorb(
        &mut self,
        table: &str,
        schema: &SchemaRef,
        batches: &[RecordBatch],
        loc: &str,
    ) -> Result<()> {
        let has_time = check_schema(table, schema, loc)?;
        let expect = table_schema(table, has_time);
        let col_u32 = |b: &RecordBatch, c: usize| -> Result<Vec<u32>> {
            let a = b
                .column(c)
                .as_any()
                .downcast_ref::<UInt32Array>()
                .expect("schema checked");
            if a.null_count() > 0 {
                return Err(Error::parse(
                    loc,
                    format!("column {} has nulls", expect.field(c).name()),
                ));
            }
            Ok(a.values().to_vec())
        };
        let col_str = |b: &RecordBatch, c: usize| -> Result<Vec<Option<String>>> {
            let a = b
                .column(c)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("schema checked");
            Ok(a.iter().map(|s| s.map(str::to_string)).collect())
        };
        let mut times: Vec<i64> = Vec::new();
        for b in batches {
            match table {
                TRAIN | TEST => {
                    let (u, i) = (col_u32(b, 0)?, col_u32(b, 1)?);
                    if has_time {
                        let a = b
                            .column(2)
                            .as_any()
                            .downcast_ref::<Int64Array>()
                            .expect("checked");
                        if a.null_count() > 0 {
                            return Err(Error::parse(loc, "column timestamp has nulls"));
                        }
                        times.extend_from_slice(a.values());
                    }
                    let (us, is) = if table == TRAIN {
                        (&mut self.train_users, &mut self.train_items)
                    } else {
                        (&mut self.test_users, &mut self.test_items)
                    };
                    us.extend(u);
                    is.extend(i);
                }
                USERS | ITEMS => {
                    let ids = col_u32(b, 0)?;
                    let start = if table == USERS {
                        self.user_raw.len()
                    } else {
                        self.item_raw.len()
                    };
                    if let Some(p) = ids
                        .iter()
                        .enumerate()
                        .position(|(k, &id)| id as usize != start + k)
                    {
                        return Err(Error::parse(
                            loc,
                            format!(
                                "row {}: id {}, expected dense ids 0, 1, 2, ...",
                                start + p,
                                ids[p]
                            ),
                        ));
                    }
                    let raw = col_str(b, 1)?;
                    if raw.iter().any(Option::is_none) {
                        return Err(Error::parse(loc, "column raw_id has nulls"));
                    }
                    let raw = raw.into_iter().map(Option::unwrap_or_default);
                    if table == USERS {
                        self.user_raw.extend(raw);
                    } else {
                        self.item_raw.extend(raw);
                        let titles = col_str(b, 2)?;
                        self.item_titles.get_or_insert_with(Vec::new).extend(titles);
                    }
                }
                _ => {
                    let users = col_u32(b, 0)?;
                    let k = self.test_negatives_per_user;
                    let base = self.test_negatives.len();
                    for (j, &u) in users.iter().enumerate() {
                        let row = (base + j) / k;
                        if self.test_users.get(row) != Some(&u) {
                            return Err(Error::parse(
                                loc,
                                format!(
                                    "row {}: user {u}, expected {k} rows per test user in test order",
                                    base + j
                                ),
                            ));
                        }
                    }
                    self.test_negatives.extend(col_u32(b, 1)?);
                }
            }
        }
        match table {
            TRAIN if has_time => self.train_timestamps = Some(times),
            TEST if has_time => self.test_timestamps = Some(times),
            ITEMS
                if self
                    .item_titles
                    .as_ref()
                    .is_some_and(|t| t.iter().all(Option::is_none)) =>
            {
                self.item_titles = None;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Check a table's schema (names and types of its columns, its `ncf.table` tag); returns whether
/// it has a timestamp column.
fn check_schema(table: &str, schema: &Schema, loc: &str) -> Result<bool> {
    if let Some(tag) = schema.metadata.get(TABLE_KEY) {
        if tag != table {
            return Err(Error::parse(
                loc,
                format!("holds table `{tag}`, expected `{table}`"),
            ));
        }
    }
    let has_time = schema.fields().iter().any(|f| f.name() == "timestamp");
    let expect = table_schema(table, has_time);
    let names = |s: &Schema| {
        s.fields()
            .iter()
            .map(|f| format!("{}: {}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
    };
    if names(schema) != names(&expect) {
        return Err(Error::parse(
            loc,
            format!(
                "columns [{}], expected [{}]",
                names(schema).join(", "),
                names(&expect).join(", ")
            ),
        ));
    }
    Ok(has_time)
}

/// An Arrow IPC stream passed through one message at a time, after checking what the arrow
/// decoder trusts without checking (found by fuzzing: a buffer reaching past the message body
/// panics inside arrow-ipc): every buffer of a record or dictionary batch lies in its body.
struct CheckedIpc<R> {
    inner: R,
    /// The current message (prefix, metadata and body), checked, and how much was passed on.
    pending: Vec<u8>,
    pos: usize,
    /// The input starts with Parquet's magic `PAR1` (a table piped where a stream is expected).
    parquet: bool,
    started: bool,
}

impl<R: Read> CheckedIpc<R> {
    fn new(inner: R) -> Self {
        CheckedIpc {
            inner,
            pending: Vec::new(),
            pos: 0,
            parquet: false,
            started: false,
        }
    }

    /// Append exactly `n` bytes of the input to `pending` (growing as they arrive, so a bogus
    /// length cannot allocate); false at a clean end of input before the first byte.
    fn take(&mut self, n: u64, what: &str) -> std::io::Result<bool> {
        let before = self.pending.len();
        let got = (&mut self.inner).take(n).read_to_end(&mut self.pending)? as u64;
        if got == n {
            Ok(true)
        } else if got == 0 && before == 0 {
            Ok(false)
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("truncated {what}: {got} of {n} bytes"),
            ))
        }
    }

    fn next_message(&mut self) -> std::io::Result<()> {
        let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
        self.pending.clear();
        self.pos = 0;
        if !self.take(4, "message length")? {
            return Ok(());
        }
        if !std::mem::replace(&mut self.started, true) && self.pending == b"PAR1" {
            self.parquet = true;
            return Err(bad("a Parquet file".into()));
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&self.pending[..4]);
        if len == [0xff; 4] {
            self.take(4, "message length")?;
            len.copy_from_slice(&self.pending[4..8]);
        }
        let len = i32::from_le_bytes(len);
        if len == 0 {
            return Ok(()); // end of stream: passed on as is
        }
        if len < 0 {
            return Err(bad(format!("negative message length {len}")));
        }
        let start = self.pending.len();
        self.take(len as u64, "message header")?;
        let msg = crate::arrow::ipc::root_as_message(&self.pending[start..])
            .map_err(|e| bad(format!("message header is not valid: {e}")))?;
        let body = msg.bodyLength();
        if body < 0 {
            return Err(bad(format!("negative message body length {body}")));
        }
        let batch = msg
            .header_as_record_batch()
            .or_else(|| msg.header_as_dictionary_batch().and_then(|d| d.data()));
        if let Some(b) = batch {
            if b.length() < 0 {
                return Err(bad(format!("negative row count {}", b.length())));
            }
            for (k, buf) in b.buffers().iter().flatten().enumerate() {
                let end = buf.offset().checked_add(buf.length());
                if buf.offset() < 0 || buf.length() < 0 || end.is_none_or(|e| e > body) {
                    return Err(bad(format!(
                        "buffer {k} at offset {} of length {} lies outside the {body}-byte \
                         message body",
                        buf.offset(),
                        buf.length()
                    )));
                }
            }
            for node in b.nodes().iter().flatten() {
                if node.length() < 0 || node.null_count() < 0 {
                    return Err(bad("negative array length or null count".into()));
                }
            }
        }
        self.take(body as u64, "message body")?;
        Ok(())
    }
}

impl<R: Read> Read for CheckedIpc<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.pending.len() {
            if let Err(e) = self.next_message() {
                self.pending.clear();
                self.pos = 0;
                return Err(e);
            }
        }
        let n = out.len().min(self.pending.len() - self.pos);
        out[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Check that every column chunk the footer describes lies inside the file (found by fuzzing:
/// parquet panics on a negative offset or size instead of returning an error).
pub(crate) fn check_parquet_chunks(
    meta: &parquet::file::metadata::ParquetMetaData,
    file_len: u64,
    loc: &str,
) -> Result<()> {
    for (g, rg) in meta.row_groups().iter().enumerate() {
        for c in rg.columns() {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let len = c.compressed_size();
            let end = start.checked_add(len);
            if start < 0 || len < 0 || end.is_none_or(|e| e as u64 > file_len) {
                return Err(Error::parse(
                    loc,
                    format!(
                        "not a readable Parquet file (row group {g}, column {}: chunk at byte \
                         {start} of {len} bytes lies outside the {file_len}-byte file)",
                        c.column_path()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Walk every page header of every column chunk before the arrow reader decodes them: a data
/// page in dictionary encoding must follow a dictionary page (found by fuzzing: parquet panics
/// with "Decoder for dict should have been set" otherwise).
pub(crate) fn check_parquet_pages<R: parquet::file::reader::ChunkReader + 'static>(
    reader: R,
    loc: &str,
) -> Result<()> {
    use parquet::basic::Encoding;
    use parquet::column::page::Page;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let bad =
        |e: &dyn std::fmt::Display| Error::parse(loc, format!("not a readable Parquet file ({e})"));
    let file = SerializedFileReader::new(reader).map_err(|e| bad(&e))?;
    for g in 0..file.num_row_groups() {
        let rg = file.get_row_group(g).map_err(|e| bad(&e))?;
        for c in 0..rg.num_columns() {
            let mut pages = rg.get_column_page_reader(c).map_err(|e| bad(&e))?;
            let mut dictionary = false;
            while let Some(page) = pages.get_next_page().map_err(|e| bad(&e))? {
                let encoding = match page {
                    Page::DictionaryPage { .. } => {
                        dictionary = true;
                        continue;
                    }
                    Page::DataPage { encoding, .. } | Page::DataPageV2 { encoding, .. } => encoding,
                };
                let needs_dict = matches!(
                    encoding,
                    Encoding::PLAIN_DICTIONARY | Encoding::RLE_DICTIONARY
                );
                if needs_dict && !dictionary {
                    return Err(bad(&format!(
                        "row group {g}, column {c}: a dictionary-encoded page without a \
                         dictionary page"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Refuse an entry of dataset directory `dir` that its SHA256SUMS (`sums`) does not list: the
/// sums cover everything ncf wrote there, so anything else was added by hand or by another
/// tool (docs/RELIABILITY.md).
fn check_listed(dir: &Path, sums: &HashMap<String, String>) -> Result<()> {
    let mut extra = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let name = e.map_err(|e| Error::io(dir, e))?.file_name();
        let name = name.to_string_lossy();
        if name != SUMS && !sums.contains_key(name.as_ref()) {
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

/// Write SHA256SUMS over every other file of the directory being written.
fn write_sums(dir: &AtomicDir) -> Result<()> {
    let tmp = dir.path("");
    let mut names = Vec::new();
    for e in std::fs::read_dir(&tmp).map_err(|e| Error::io(&tmp, e))? {
        let name = e.map_err(|e| Error::io(&tmp, e))?.file_name();
        let name = name.to_string_lossy().into_owned();
        if name != SUMS {
            names.push(name);
        }
    }
    names.sort();
    let mut text = String::new();
    for n in names {
        let p = dir.path(&n);
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        text.push_str(&format!("{}  {n}\n", hex(&Sha256::digest(&bytes))));
    }
    let p = dir.path(SUMS);
    std::fs::write(&p, text).map_err(|e| Error::io(&p, e))
}

/// Parse SHA256SUMS (`<64 hex>  <name>` lines) into name -> hash.
fn parse_sums(bytes: &[u8], loc: &str) -> Result<HashMap<String, String>> {
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

/// Refuse a dataset whose tables would not fit in memory, before reading them: `meta` gives the
/// row counts, `file_bytes` the size of its files (read whole).
fn check_memory(meta: &Meta, file_bytes: u64, what: &str) -> Result<()> {
    let need = memory_needed(meta).saturating_add(file_bytes);
    crate::memory::require(
        need,
        &format!(
            "{what}: loading this dataset ({} train rows, {} test rows, {} users, {} items)",
            meta.n_train, meta.n_test, meta.n_users, meta.n_items
        ),
        "",
    )
}

/// Bytes the in-memory tables of a dataset take (columns, raw ids, negatives), with room for the
/// decoder's copy of the largest column.
pub fn memory_needed(meta: &Meta) -> u64 {
    let rows = |n: u64| n.saturating_mul(4 + 4 + 8);
    let ids = |n: u32| n as u64 * 48;
    let neg = meta
        .n_test
        .saturating_mul(meta.test_negatives_per_user as u64)
        .saturating_mul(4 * 2);
    rows(meta.n_train)
        .saturating_mul(2)
        .saturating_add(rows(meta.n_test))
        .saturating_add(ids(meta.n_users))
        .saturating_add(ids(meta.n_items))
        .saturating_add(neg)
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

/// A dataset of 4 users and 20 items, 3 train items each, one test item each with 3 test
/// negatives: the fixture of the unit tests of the training loop, validation and negatives.
#[cfg(test)]
pub(crate) fn four_users() -> Dataset {
    // 4 users, 20 items, 3 train items each, one test item each
    let mut d = Dataset {
        n_users: 4,
        n_items: 20,
        ..Default::default()
    };
    for u in 0..4u32 {
        for k in 0..3 {
            d.train_users.push(u);
            d.train_items.push(u * 3 + k);
        }
        d.test_users.push(u);
        d.test_items.push(19 - u);
        d.test_negatives.extend([12, 13, 14]);
    }
    d.test_negatives_per_user = 3;
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn tiny() -> Dataset {
        Dataset {
            meta: None,
            n_users: 3,
            n_items: 4,
            train_users: vec![0, 0, 1, 2, 2],
            train_items: vec![1, 2, 0, 3, 1],
            train_timestamps: Some(vec![1, 2, 3, 4, 5]),
            test_users: vec![0, 1, 2],
            test_items: vec![3, 2, 0],
            test_timestamps: Some(vec![9, 9, 9]),
            test_negatives: vec![],
            test_negatives_per_user: 0,
            user_raw: vec!["10".into(), "20".into(), "30".into()],
            item_raw: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            item_titles: Some(vec![Some("A".into()), None, Some("C".into()), None]),
        }
    }

    fn same(a: &Dataset, b: &Dataset) {
        assert_eq!(a.train_users, b.train_users);
        assert_eq!(a.train_items, b.train_items);
        assert_eq!(a.train_timestamps, b.train_timestamps);
        assert_eq!(a.test_users, b.test_users);
        assert_eq!(a.test_items, b.test_items);
        assert_eq!(a.test_timestamps, b.test_timestamps);
        assert_eq!(a.test_negatives, b.test_negatives);
        assert_eq!(a.user_raw, b.user_raw);
        assert_eq!(a.item_raw, b.item_raw);
        assert_eq!(a.item_titles, b.item_titles);
    }

    #[test]
    fn parquet_round_trip_and_negatives() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ds");
        let ds = tiny();
        ds.write(&p, false).unwrap();
        let back = Dataset::load(&p).unwrap();
        same(&ds, &back);
        assert_eq!(back.meta.as_ref().unwrap().fingerprint, ds.fingerprint());
        assert!(ds.write(&p, false).is_err(), "existing dir must be refused");

        let m =
            write_test_negatives(&p, 2, vec![0, 1, 0, 1, 2, 3], "sampled", Some(7), false).unwrap();
        assert_eq!(m.test_negatives_per_user, 2);
        let back = Dataset::load(&p).unwrap();
        assert_eq!(back.test_negatives, vec![0, 1, 0, 1, 2, 3]);
        assert_ne!(back.fingerprint(), ds.fingerprint());
        assert_eq!(back.meta.unwrap().test_negatives_seed, Some(7));
        assert!(write_test_negatives(&p, 1, vec![0, 1, 2], "sampled", None, false).is_err());
        write_test_negatives(&p, 1, vec![0, 1, 2], "sampled", None, true).unwrap();
        assert_eq!(Dataset::load(&p).unwrap().test_negatives, vec![0, 1, 2]);
        // Wrong count: refused, old content kept.
        assert!(write_test_negatives(&p, 1, vec![0], "sampled", None, true).is_err());
        assert_eq!(Dataset::load(&p).unwrap().test_negatives, vec![0, 1, 2]);
    }

    #[test]
    fn ipc_round_trip() {
        let mut ds = tiny();
        ds.set_test_negatives(1, vec![1, 1, 2], "given", None)
            .unwrap();
        let mut buf = Vec::new();
        ds.write_ipc(&mut buf).unwrap();
        let back = Dataset::read_ipc(&buf[..], "buf").unwrap();
        same(&ds, &back);
        assert_eq!(
            back.meta.unwrap().test_negatives_source.as_deref(),
            Some("given")
        );
        // No timestamps, no titles.
        let mut ds = tiny();
        ds.train_timestamps = None;
        ds.test_timestamps = None;
        ds.item_titles = None;
        let mut buf = Vec::new();
        ds.write_ipc(&mut buf).unwrap();
        same(&ds, &Dataset::read_ipc(&buf[..], "buf").unwrap());
        // Truncated: an error, not a panic.
        for cut in [0, 10, buf.len() / 2, buf.len() - 9] {
            assert!(Dataset::read_ipc(&buf[..cut], "buf").is_err(), "cut {cut}");
        }
    }

    #[test]
    fn corrupt_files_are_errors_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ds");
        tiny().write(&p, false).unwrap();
        let train = p.join("train.parquet");
        let bytes = std::fs::read(&train).unwrap();
        std::fs::write(&train, &bytes[..bytes.len() / 2]).unwrap();
        let e = Dataset::load(&p).unwrap_err().to_string();
        assert!(e.contains("train.parquet"), "{e}");
        std::fs::write(&train, &bytes).unwrap();
        Dataset::load(&p).unwrap();
        // SHA256SUMS catches any edit, before parsing
        let mp = p.join("meta.json");
        let meta = std::fs::read_to_string(&mp).unwrap();
        std::fs::write(&mp, meta.replace("\"n_train\": 5", "\"n_train\": 6")).unwrap();
        let e = Dataset::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("meta.json: checksum mismatch with SHA256SUMS"),
            "{e}"
        );
        std::fs::write(&mp, &meta).unwrap();
        let sums = std::fs::read_to_string(p.join(SUMS)).unwrap();
        std::fs::write(p.join(SUMS), sums.replace("  items.parquet", "  other")).unwrap();
        let e = Dataset::load(&p).unwrap_err().to_string();
        assert!(e.contains("items.parquet: not listed in SHA256SUMS"), "{e}");
        std::fs::write(p.join(SUMS), "abc  meta.json\n").unwrap();
        let e = Dataset::load(&p).unwrap_err().to_string();
        assert!(e.contains("SHA256SUMS:1: expected"), "{e}");
        // without SHA256SUMS (older datasets) the other checks still hold
        std::fs::remove_file(p.join(SUMS)).unwrap();
        // meta disagreeing with the tables
        std::fs::write(&mp, meta.replace("\"n_train\": 5", "\"n_train\": 6")).unwrap();
        let e = Dataset::load(&p).unwrap_err().to_string();
        assert!(e.contains("n_train"), "{e}");
        std::fs::write(
            &mp,
            meta.replace("\"format_version\": 1", "\"format_version\": 9"),
        )
        .unwrap();
        let e = Dataset::load(&p).unwrap_err().to_string();
        assert!(e.contains("format_version 9"), "{e}");
        std::fs::remove_file(p.join("users.parquet")).unwrap();
        std::fs::write(&mp, meta).unwrap();
        let e = Dataset::load(&p).unwrap_err().to_string();
        assert!(e.contains("users.parquet"), "{e}");
    }

    /// Inputs the fuzzer found (fuzz/regressions): each is an error, not a panic.
    #[test]
    fn fuzz_regressions_are_errors() {
        let ipc: &[&[u8]] = &[include_bytes!(
            "../../../../fuzz/regressions/dataset_ipc/crash-fcaa6d681a9382244402ed9b4f43620975a3a8d8"
        )];
        for (k, bytes) in ipc.iter().enumerate() {
            let e = Dataset::read_ipc(*bytes, "crash").unwrap_err().to_string();
            assert!(e.contains("crash"), "ipc {k}: {e}");
        }
        // dataset_parquet inputs: six sections, each a u32 LE length and a file
        let dir: &[&[u8]] = &[include_bytes!(
            "../../../../fuzz/regressions/dataset_parquet/crash-6ee6c6e9dc5aec4c4e450188a7000f8022758b17"
        ), include_bytes!(
            "../../../../fuzz/regressions/dataset_parquet/crash-16b88e1072c0ea5239338e1243fb815184ef59c1"
        )];
        let wants = ["lies outside", "dictionary page"];
        let names = [
            "meta.json",
            "train.parquet",
            "test.parquet",
            "users.parquet",
            "items.parquet",
            "test_negatives.parquet",
        ];
        for (k, bytes) in dir.iter().enumerate() {
            let mut rest = *bytes;
            let mut files = Vec::new();
            for name in names {
                let n = if rest.len() >= 4 {
                    u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize
                } else {
                    0
                };
                let n = n.min(rest.len().saturating_sub(4));
                let body = if rest.len() >= 4 {
                    &rest[4..4 + n]
                } else {
                    &[][..]
                };
                rest = if rest.len() >= 4 { &rest[4 + n..] } else { &[] };
                files.push((name, body));
            }
            let e = Dataset::from_bytes(&files).unwrap_err().to_string();
            assert!(e.contains(wants[k]), "parquet {k}: {e}");
        }
    }

    #[test]
    fn an_ipc_buffer_outside_its_body_is_refused() {
        let mut buf = Vec::new();
        tiny().write_ipc(&mut buf).unwrap();
        // The first record batch: find its message and stretch one buffer's length.
        let mut at = 0;
        let mut done = false;
        while at + 8 <= buf.len() && !done {
            let len = i32::from_le_bytes(buf[at + 4..at + 8].try_into().unwrap()) as usize;
            let meta = &buf[at + 8..at + 8 + len];
            let msg = crate::arrow::ipc::root_as_message(meta).unwrap();
            let body = msg.bodyLength() as usize;
            if let Some(rb) = msg.header_as_record_batch() {
                let b = rb.buffers().unwrap().get(1);
                let want = b.length().to_le_bytes();
                let pos = meta.windows(8).position(|w| w == want).unwrap();
                buf[at + 8 + pos..at + 16 + pos].copy_from_slice(&(1i64 << 40).to_le_bytes());
                done = true;
            }
            at += 8 + len + body;
        }
        assert!(done);
        let e = Dataset::read_ipc(&buf[..], "stretched")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lies outside"), "{e}");
    }

    #[test]
    fn fingerprint_depends_on_order_and_sections() {
        let a = fingerprint((&[0, 1], &[1, 0]), (&[0], &[2]), &[]);
        let b = fingerprint((&[1, 0], &[0, 1]), (&[0], &[2]), &[]);
        let c = fingerprint((&[0], &[1]), (&[1, 0], &[0, 2]), &[]);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 64);
    }
}
