//! The column files of a dataset directory (docs/FORMATS.md, "column files"): `train.cols`
//! (train items, per-user row offsets, test rows) and `test_negatives.cols`, uncompressed and
//! page-aligned so every tool maps them zero-copy ([`Col`]) instead of decoding Parquet; ranks
//! on one machine share their pages. Written beside the Parquet tables by the writers that have
//! the rows ([`start_train_cols`], [`StreamedTrainCols`]), else derived from the tables by
//! [`super::finish`] (the same bytes); a directory without them is read from Parquet as before.
//!
//! Checks: opening one checks its header (magic, version, its own SHA-256, the file length it
//! records, section bounds, counts and fingerprints against meta.json), so a truncated file is
//! refused before any column is used; then each section is hashed and range-checked in blocks
//! through the map, each block released from the resident set after it.

use super::column::{as_bytes, Col, Word};
use super::fingerprint::{hash_pairs, hex};
use super::{Meta, CHUNK, TEST, TRAIN};
use crate::arrow::array::{Array, UInt32Array};
use crate::{Error, Result};
use memmap2::Mmap;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The train and test columns.
pub const TRAIN_COLS: &str = "train.cols";
/// The test negatives, written by ncf-negsample beside `test_negatives.parquet`.
pub const NEGATIVES_COLS: &str = "test_negatives.cols";
const MAGIC: &[u8; 8] = b"NCF-COLS";
const VERSION: u32 = 1;
/// Sections start at multiples of this (a page), the first one here: the header lies before.
const ALIGN: u64 = 4096;

/// What a column file says about itself, encoded with bincode (legacy config: little-endian,
/// fixed-width integers, strings and vectors prefixed by a u64 length).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(super) struct Header {
    pub version: u32,
    /// "train" or "test_negatives".
    pub kind: String,
    pub n_users: u32,
    pub n_items: u32,
    pub n_train: u64,
    pub n_test: u64,
    pub negatives_per_user: u32,
    /// The split fingerprint of the train and test rows (both files carry it: it ties the
    /// negatives to the train file).
    pub split_fingerprint: String,
    /// The dataset fingerprint of meta.json when the file was written: without negatives for
    /// `train.cols`, with them for `test_negatives.cols`.
    pub fingerprint: String,
    /// The Parquet tables it was made from, with their SHA-256 (hex) as SHA256SUMS lists them:
    /// ties the file to the tables (a stale one is refused).
    pub sources: Vec<(String, String)>,
    /// The whole file's length in bytes.
    pub file_len: u64,
    pub sections: Vec<Section>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(super) struct Section {
    pub name: String,
    /// Bytes per value: 4 (u32) or 8 (u64).
    pub width: u32,
    /// Byte offset from the start of the file, a multiple of 4096.
    pub offset: u64,
    pub count: u64,
    /// SHA-256 of the section's `count * width` bytes.
    pub sha256: [u8; 32],
}

/// Writes one column file: sections one after another, then the header at the front.
struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
    pos: u64,
    sections: Vec<Section>,
    open: Option<(Section, Sha256)>,
}

impl Writer {
    fn create(path: &Path) -> Result<Writer> {
        let f = File::create(path).map_err(|e| Error::io(path, e))?;
        let mut w = Writer {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, f),
            pos: 0,
            sections: vec![],
            open: None,
        };
        w.pad()?;
        Ok(w)
    }

    fn pad(&mut self) -> Result<()> {
        let to = self.pos.div_ceil(ALIGN).max(1) * ALIGN;
        let zeros = vec![0u8; (to - self.pos) as usize];
        self.bytes(&zeros)
    }

    fn bytes(&mut self, b: &[u8]) -> Result<()> {
        self.out
            .write_all(b)
            .map_err(|e| Error::io(&self.path, e))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn begin(&mut self, name: &str, width: u32) -> Result<()> {
        self.end()?;
        self.pad()?;
        let s = Section {
            name: name.into(),
            width,
            offset: self.pos,
            count: 0,
            sha256: [0; 32],
        };
        self.open = Some((s, Sha256::new()));
        Ok(())
    }

    fn put<T: Word>(&mut self, v: &[T]) -> Result<()> {
        let b = as_bytes(v);
        let (s, h) = self.open.as_mut().expect("a section is open");
        assert_eq!(s.width as usize, T::WIDTH);
        s.count += v.len() as u64;
        h.update(b);
        self.bytes(b)
    }

    fn end(&mut self) -> Result<()> {
        if let Some((mut s, h)) = self.open.take() {
            s.sha256 = h.finalize().into();
            self.sections.push(s);
        }
        Ok(())
    }

    fn finish(mut self, mut header: Header) -> Result<()> {
        self.end()?;
        header.file_len = self.pos;
        header.sections = std::mem::take(&mut self.sections);
        let enc = bincode::serde::encode_to_vec(&header, bincode::config::legacy())
            .expect("header encodes");
        let mut front = MAGIC.to_vec();
        front.extend_from_slice(&(enc.len() as u32).to_le_bytes());
        front.extend_from_slice(&enc);
        front.extend_from_slice(&Sha256::digest(&enc));
        assert!(front.len() as u64 <= ALIGN, "column file header too long");
        let ioe = |e| Error::io(&self.path, e);
        self.out.flush().map_err(ioe)?;
        let f = self.out.get_mut();
        f.seek(SeekFrom::Start(0)).map_err(ioe)?;
        f.write_all(&front).map_err(ioe)?;
        f.flush().map_err(ioe)
    }
}

/// The u32 columns `cols` of a Parquet table in `dir`, batch by batch (only those columns are
/// decoded: the train timestamps are not).
fn parquet_u32s(
    path: &Path,
    cols: &[usize],
    mut f: impl FnMut(&[&[u32]]) -> Result<()>,
) -> Result<()> {
    let loc = path.display().to_string();
    let bad = |e: &dyn std::fmt::Display| Error::parse(&loc, format!("reading it back: {e}"));
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(&e))?;
    let mask = ProjectionMask::roots(b.parquet_schema(), cols.iter().copied());
    let reader = b
        .with_projection(mask)
        .with_batch_size(CHUNK)
        .build()
        .map_err(|e| bad(&e))?;
    for batch in reader {
        let batch = batch.map_err(|e| bad(&e))?;
        let arrays: Vec<&UInt32Array> = (0..cols.len())
            .map(|c| batch.column(c).as_any().downcast_ref::<UInt32Array>())
            .collect::<Option<_>>()
            .ok_or_else(|| bad(&"a column is not u32"))?;
        let slices: Vec<&[u32]> = arrays.iter().map(|a| &a.values()[..]).collect();
        f(&slices)?;
    }
    Ok(())
}

/// Write `train.cols` in `dir` from its just-written `train.parquet` and `test.parquet` (read
/// back batch by batch: memory follows the users, not the rows).
pub(super) fn write_train_cols(dir: &Path, meta: &Meta, sums: &Sums) -> Result<()> {
    let path = dir.join(TRAIN_COLS);
    let mut w = Writer::create(&path)?;
    let mut counts = vec![0u64; meta.n_users as usize + 1];
    let mut split = Sha256::new();
    split.update(b"ncf-split-v1\n");
    let mut full = Sha256::new();
    full.update(b"ncf-dataset-v1\n");
    for h in [&mut split, &mut full] {
        h.update(meta.n_train.to_le_bytes());
    }
    let (mut rows, mut last) = (0u64, 0u32);
    let mut pairs = Vec::with_capacity(8 * CHUNK);
    let loc = dir.join(format!("{TRAIN}.parquet"));
    w.begin("train_items", 4)?;
    parquet_u32s(&loc, &[0, 1], |c| {
        let (us, is) = (c[0], c[1]);
        pairs.clear();
        for (&u, &i) in us.iter().zip(is) {
            if u < last || u >= meta.n_users {
                return Err(Error::invalid(format!(
                    "{}: train row {rows}: user {u} out of order or range",
                    loc.display()
                )));
            }
            last = u;
            counts[u as usize + 1] += 1;
            pairs.extend_from_slice(&u.to_le_bytes());
            pairs.extend_from_slice(&i.to_le_bytes());
            rows += 1;
        }
        split.update(&pairs);
        full.update(&pairs);
        w.put(is)
    })?;
    if rows != meta.n_train {
        return Err(Error::invalid(format!(
            "{}: {rows} rows, meta.json says {}",
            loc.display(),
            meta.n_train
        )));
    }
    for k in 0..meta.n_users as usize {
        counts[k + 1] += counts[k];
    }
    w.begin("user_offsets", 8)?;
    w.put(&counts)?;
    let (mut tu, mut ti) = (vec![], vec![]);
    parquet_u32s(&dir.join(format!("{TEST}.parquet")), &[0, 1], |c| {
        tu.extend_from_slice(c[0]);
        ti.extend_from_slice(c[1]);
        Ok(())
    })?;
    hash_pairs(&mut split, &tu, &ti);
    hash_pairs(&mut full, &tu, &ti);
    full.update(0u64.to_le_bytes());
    w.begin("test_users", 4)?;
    w.put(&tu)?;
    w.begin("test_items", 4)?;
    w.put(&ti)?;
    let header = Header {
        version: VERSION,
        kind: "train".into(),
        n_users: meta.n_users,
        n_items: meta.n_items,
        n_train: meta.n_train,
        n_test: tu.len() as u64,
        negatives_per_user: 0,
        split_fingerprint: hex(&split.finalize()),
        fingerprint: hex(&full.finalize()),
        sources: sources(sums, &["train.parquet", "test.parquet"])?,
        file_len: 0,
        sections: vec![],
    };
    if meta.test_negatives_per_user == 0 && header.fingerprint != meta.fingerprint {
        return Err(Error::invalid(format!(
            "{}: the tables written do not match meta.json's fingerprint (a bug in the writer)",
            dir.display()
        )));
    }
    w.finish(header)
}

/// `train.cols` written from a dataset in memory (the in-memory writers): its sections are
/// written on a thread of their own while the Parquet tables are written, and its header, which
/// names the hashes of those tables, once SHA256SUMS has them ([`PendingTrainCols::finish`]).
/// The same bytes as [`write_train_cols`] makes from the tables, without reading them back.
pub(super) struct PendingTrainCols {
    w: Writer,
    header: Header,
}

/// Start `train.cols` in `dir` from `ds`; `None` when its train rows are not sorted by user (the
/// writer's validation refuses those anyway).
pub(super) fn start_train_cols(
    dir: &Path,
    ds: &super::Dataset,
) -> Result<Option<PendingTrainCols>> {
    let Some(offsets) = ds.train_users.offsets(ds.n_users) else {
        return Ok(None);
    };
    let mut w = Writer::create(&dir.join(TRAIN_COLS))?;
    w.begin("train_items", 4)?;
    w.put(&ds.train_items[..])?;
    w.begin("user_offsets", 8)?;
    w.put(&offsets[..])?;
    w.begin("test_users", 4)?;
    w.put(&ds.test_users[..])?;
    w.begin("test_items", 4)?;
    w.put(&ds.test_items[..])?;
    // Flush the sections to disk now, on this thread: the directory's commit syncs every file,
    // and then has only the header page of this one left to write.
    let ioe = |e| Error::io(&w.path, e);
    w.out.flush().map_err(ioe)?;
    w.out.get_ref().sync_data().map_err(ioe)?;
    // Its fingerprint is the dataset's without test negatives: meta.json's when it has none
    // (filled in by `finish`).
    let fingerprint = match ds.test_negatives.is_empty() {
        true => String::new(),
        false => super::fingerprint(
            (&ds.train_users.rows(), &ds.train_items),
            (&ds.test_users, &ds.test_items),
            &[],
        ),
    };
    let header = Header {
        version: VERSION,
        kind: "train".into(),
        n_users: ds.n_users,
        n_items: ds.n_items,
        n_train: ds.train_items.len() as u64,
        n_test: ds.test_users.len() as u64,
        negatives_per_user: 0,
        split_fingerprint: ds.split_fingerprint(),
        fingerprint,
        sources: vec![],
        file_len: 0,
        sections: vec![],
    };
    Ok(Some(PendingTrainCols { w, header }))
}

impl PendingTrainCols {
    /// Write the header, naming the tables' hashes in `sums` (SHA256SUMS') and, without test
    /// negatives, `meta`'s fingerprint.
    pub(super) fn finish(self, meta: &Meta, sums: &Sums) -> Result<()> {
        let mut header = self.header;
        if header.fingerprint.is_empty() {
            header.fingerprint = meta.fingerprint.clone();
        }
        header.sources = sources(sums, &["train.parquet", "test.parquet"])?;
        self.w.finish(header)
    }
}

/// `train.cols` built as a streaming writer's train rows come, in their final order, on a thread
/// of its own beside the Parquet encoding ([`super::StreamWriter`]): the train items section
/// written chunk by chunk, the per-user offsets counted, and the split and dataset fingerprints
/// hashed over the (user, item) pairs (the dataset's is meta.json's: no other pass hashes the
/// rows). The same bytes as [`write_train_cols`] derives from the tables (tested), without
/// reading `train.parquet` back.
pub(super) struct StreamedTrainCols {
    tx: Option<SyncSender<(UInt32Array, UInt32Array)>>,
    thread: Option<JoinHandle<Result<Streamed>>>,
}

/// The thread's state: what it has written and counted of the rows sent so far.
struct Streamed {
    w: Writer,
    /// The first row of each user up to the last one seen (users come in order).
    offsets: Vec<u64>,
    split: Sha256,
    full: Sha256,
    rows: u64,
    /// One past the largest train item seen.
    items_end: u64,
}

impl StreamedTrainCols {
    /// Start `train.cols` in `dir` for `n_train` train rows, its thread waiting for them.
    pub(super) fn start(dir: &Path, n_train: u64) -> Result<StreamedTrainCols> {
        let mut w = Writer::create(&dir.join(TRAIN_COLS))?;
        w.begin("train_items", 4)?;
        let mut split = Sha256::new();
        split.update(b"ncf-split-v1\n");
        let mut full = Sha256::new();
        full.update(b"ncf-dataset-v1\n");
        for h in [&mut split, &mut full] {
            h.update(n_train.to_le_bytes());
        }
        let s = Streamed {
            w,
            offsets: vec![],
            split,
            full,
            rows: 0,
            items_end: 0,
        };
        // Two chunks in flight at most: memory stays a few chunks, whatever the rows.
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        let thread = std::thread::Builder::new()
            .name("train.cols".into())
            .spawn(move || s.run(rx))
            .map_err(|e| Error::io(dir, e))?;
        Ok(StreamedTrainCols {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// The next chunk of train rows (users not decreasing, continuing the last chunk's).
    pub(super) fn push(&mut self, users: UInt32Array, items: UInt32Array) -> Result<()> {
        let tx = self.tx.as_ref().expect("pushed after finish");
        if tx.send((users, items)).is_ok() {
            return Ok(());
        }
        // The thread stopped on an error: report that one.
        self.tx = None;
        match self.join() {
            Err(e) => Err(e),
            Ok(_) => Err(Error::invalid(format!(
                "{TRAIN_COLS}: its writer stopped before the last train row"
            ))),
        }
    }

    fn join(&mut self) -> Result<Streamed> {
        let t = self.thread.take().expect("joined once");
        t.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Once every train row is pushed: the offsets of `ds.n_users` users and `ds`'s test rows
    /// (its train columns are not read), and the header but for the tables' hashes. Returns it
    /// with the dataset fingerprint (meta.json's).
    pub(super) fn finish(mut self, ds: &super::Dataset) -> Result<(PendingTrainCols, String)> {
        self.tx = None;
        let mut s = self.join()?;
        let loc = s.w.path.display().to_string();
        // The rows were checked in order by the writer; their ids against the counts only now.
        if s.offsets.len() > ds.n_users as usize {
            return Err(Error::invalid(format!(
                "{loc}: a train row names user {}, past the {} users written (a bug in the \
                 writer)",
                s.offsets.len() - 1,
                ds.n_users
            )));
        }
        if s.items_end > ds.n_items as u64 {
            return Err(Error::invalid(format!(
                "{loc}: a train row names item {}, past the {} items written (a bug in the \
                 writer)",
                s.items_end - 1,
                ds.n_items
            )));
        }
        s.offsets.resize(ds.n_users as usize + 1, s.rows);
        s.w.begin("user_offsets", 8)?;
        s.w.put(&s.offsets)?;
        hash_pairs(&mut s.split, &ds.test_users[..], &ds.test_items[..]);
        hash_pairs(&mut s.full, &ds.test_users[..], &ds.test_items[..]);
        s.full.update(0u64.to_le_bytes());
        s.w.begin("test_users", 4)?;
        s.w.put(&ds.test_users[..])?;
        s.w.begin("test_items", 4)?;
        s.w.put(&ds.test_items[..])?;
        let fingerprint = hex(&s.full.finalize());
        let header = Header {
            version: VERSION,
            kind: "train".into(),
            n_users: ds.n_users,
            n_items: ds.n_items,
            n_train: s.rows,
            n_test: ds.test_users.len() as u64,
            negatives_per_user: 0,
            split_fingerprint: hex(&s.split.finalize()),
            fingerprint: fingerprint.clone(),
            sources: vec![],
            file_len: 0,
            sections: vec![],
        };
        Ok((PendingTrainCols { w: s.w, header }, fingerprint))
    }
}

impl Drop for StreamedTrainCols {
    /// A writer given up on (an error elsewhere) stops its thread before the directory goes.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Streamed {
    fn run(mut self, rx: Receiver<(UInt32Array, UInt32Array)>) -> Result<Streamed> {
        let mut pairs = Vec::with_capacity(8 * CHUNK);
        for (users, items) in rx {
            let (us, is) = (users.values(), items.values());
            pairs.clear();
            let mut end = self.items_end;
            for (&u, &i) in us.iter().zip(is.iter()) {
                while self.offsets.len() <= u as usize {
                    self.offsets.push(self.rows);
                }
                end = end.max(i as u64 + 1);
                pairs.extend_from_slice(&u.to_le_bytes());
                pairs.extend_from_slice(&i.to_le_bytes());
                self.rows += 1;
            }
            self.items_end = end;
            self.split.update(&pairs);
            self.full.update(&pairs);
            self.w.put(&is[..])?;
        }
        // The items go to disk now, beside the last Parquet writes: the directory's commit
        // then syncs only the little written after them.
        let ioe = |e| Error::io(&self.w.path, e);
        self.w.out.flush().map_err(ioe)?;
        self.w.out.get_ref().sync_data().map_err(ioe)?;
        Ok(self)
    }
}

/// Write `test_negatives.cols` in `dir` from its `test_negatives.parquet`, block by block;
/// `train.cols` must be there already (written or copied).
pub(super) fn write_negatives_cols(dir: &Path, meta: &Meta, sums: &Sums) -> Result<()> {
    let train = ColsFile::open(&dir.join(TRAIN_COLS), "train", meta)?;
    let path = dir.join(NEGATIVES_COLS);
    let mut w = Writer::create(&path)?;
    w.begin("test_negatives", 4)?;
    let mut n = 0u64;
    parquet_u32s(&dir.join("test_negatives.parquet"), &[1], |c| {
        n += c[0].len() as u64;
        w.put(c[0])
    })?;
    let want = meta.n_test * meta.test_negatives_per_user as u64;
    if n != want {
        return Err(Error::invalid(format!(
            "{}: {n} test negatives, meta.json implies {want}",
            dir.display()
        )));
    }
    let header = Header {
        version: VERSION,
        kind: "test_negatives".into(),
        n_users: meta.n_users,
        n_items: meta.n_items,
        n_train: meta.n_train,
        n_test: meta.n_test,
        negatives_per_user: meta.test_negatives_per_user,
        split_fingerprint: train.header.split_fingerprint.clone(),
        fingerprint: meta.fingerprint.clone(),
        sources: sources(sums, &["test_negatives.parquet"])?,
        file_len: 0,
        sections: vec![],
    };
    w.finish(header)
}

type Sums = std::collections::BTreeMap<String, String>;

fn sources(sums: &Sums, names: &[&str]) -> Result<Vec<(String, String)>> {
    names
        .iter()
        .map(|n| match sums.get(*n) {
            Some(h) => Ok((n.to_string(), h.clone())),
            None => Err(Error::invalid(format!(
                "column file: no {n} to make it from"
            ))),
        })
        .collect()
}

/// An opened column file: its checked header and its map.
pub(super) struct ColsFile {
    pub header: Header,
    map: Arc<Mmap>,
    loc: String,
    /// The way out of a damaged file.
    fix: String,
}

impl ColsFile {
    /// Open and check the header of the column file `path` of `kind` against `meta`.
    pub fn open(path: &Path, kind: &str, meta: &Meta) -> Result<ColsFile> {
        let loc = path.display().to_string();
        let name = path
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned());
        let fix =
            format!(
            "delete {name} (the tools then read the Parquet tables, slower and in more memory) \
             or write the dataset again ({})",
            if kind == "train" { "ncf-prep" } else { "ncf-negsample --force" }
        );
        let bad = |what: String| Error::parse(&loc, format!("{what}: {fix}"));
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len < 12 {
            return Err(bad(format!(
                "truncated column file ({len} bytes, shorter than its header)"
            )));
        }
        // SAFETY: the map is read-only; ncf writes a dataset's files once (to a temp directory
        // renamed into place) and never changes them in place.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        if &map[..8] != MAGIC {
            return Err(bad("not an ncf column file (bad magic bytes)".into()));
        }
        let h_len = u32::from_le_bytes(map[8..12].try_into().expect("4 bytes")) as u64;
        if 12 + h_len + 32 > ALIGN {
            return Err(bad(format!(
                "damaged header (it claims {h_len} bytes, at most {} fit)",
                ALIGN - 44
            )));
        }
        if len < 12 + h_len + 32 {
            return Err(bad(format!(
                "truncated column file ({len} bytes, shorter than its header)"
            )));
        }
        let enc = &map[12..12 + h_len as usize];
        let sum = &map[12 + h_len as usize..12 + h_len as usize + 32];
        if Sha256::digest(enc).as_slice() != sum {
            return Err(bad(
                "its header does not match its checksum (the file was altered or damaged)".into(),
            ));
        }
        let (header, _): (Header, usize) =
            bincode::serde::decode_from_slice(enc, bincode::config::legacy())
                .map_err(|e| bad(format!("unreadable header ({e})")))?;
        if header.version != VERSION {
            return Err(bad(format!(
                "column file version {}, this ncf reads version {VERSION}",
                header.version
            )));
        }
        if header.kind != kind {
            return Err(bad(format!(
                "holds `{}` columns, expected `{kind}`",
                header.kind
            )));
        }
        if len != header.file_len {
            return Err(bad(format!(
                "{} ({len} bytes, its header says {})",
                if len < header.file_len {
                    "truncated column file"
                } else {
                    "column file longer than written"
                },
                header.file_len
            )));
        }
        for s in &header.sections {
            let end = s
                .count
                .checked_mul(s.width as u64)
                .and_then(|b| b.checked_add(s.offset));
            if !matches!(s.width, 4 | 8) || s.offset % ALIGN != 0 || end.is_none_or(|e| e > len) {
                return Err(bad(format!("section {} lies outside the file", s.name)));
            }
        }
        let counts = [
            ("n_users", header.n_users as u64, meta.n_users as u64),
            ("n_items", header.n_items as u64, meta.n_items as u64),
            ("n_train", header.n_train, meta.n_train),
            ("n_test", header.n_test, meta.n_test),
        ];
        if let Some((field, ours, theirs)) = counts.iter().find(|c| c.1 != c.2) {
            return Err(bad(format!(
                "made for another dataset (it holds {field} = {ours}, meta.json says {theirs})"
            )));
        }
        Ok(ColsFile {
            header,
            map: Arc::new(map),
            loc,
            fix,
        })
    }

    /// Refuse unless the tables it was made from are those SHA256SUMS lists (`sums`).
    pub fn check_sources(&self, sums: &std::collections::HashMap<String, String>) -> Result<()> {
        for (name, h) in &self.header.sources {
            if sums.get(name) != Some(h) {
                return Err(Error::parse(
                    &self.loc,
                    format!(
                        "made from another {name} than SHA256SUMS lists (stale, or copied from \
                         elsewhere): {}",
                        self.fix
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Refuse unless the file was made for a dataset of fingerprint `want` (meta.json's).
    pub fn check_fingerprint(&self, want: &str) -> Result<()> {
        if self.header.fingerprint != want {
            return Err(Error::parse(
                &self.loc,
                format!(
                    "made for another version of this dataset (fingerprint {}, meta.json says \
                     {want}; stale, or copied from elsewhere): {}",
                    self.header.fingerprint, self.fix
                ),
            ));
        }
        Ok(())
    }

    /// Section `name` as a mapped column of `count` values, after hashing it against its
    /// checksum and calling `check(first index, block)` on each block (released after it).
    pub fn column<T: Word>(
        &self,
        name: &str,
        count: u64,
        mut check: impl FnMut(usize, &[T]) -> std::result::Result<(), String>,
    ) -> Result<Col<T>> {
        let s = self
            .header
            .sections
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::parse(&self.loc, format!("has no section {name}")))?;
        if s.width as usize != T::WIDTH || s.count != count {
            return Err(Error::parse(
                &self.loc,
                format!(
                    "section {name} holds {} values of {} bytes, expected {count} of {}",
                    s.count,
                    s.width,
                    T::WIDTH
                ),
            ));
        }
        let col = Col::<T>::mapped(self.map.clone(), s.offset as usize, s.count as usize);
        let mut h = Sha256::new();
        let mut bad = None;
        let _ = col.scan(|at, block| {
            h.update(as_bytes(block));
            if bad.is_none() {
                bad = check(at, block).err();
            }
            Ok::<(), ()>(())
        });
        let end = s.offset + s.count * s.width as u64;
        if h.finalize().as_slice() != s.sha256 {
            return Err(Error::parse(
                &self.loc,
                format!(
                    "section {name} (bytes {}..{end}) does not match its checksum (the file \
                     was altered or damaged): {}",
                    s.offset, self.fix
                ),
            ));
        }
        if let Some(m) = bad {
            return Err(Error::parse(&self.loc, format!("section {name}: {m}")));
        }
        Ok(col)
    }
}
