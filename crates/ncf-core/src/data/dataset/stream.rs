//! A dataset directory written as its rows stream in ([`StreamWriter`]): train rows pushed in
//! their final order (by dense user, then time) go to `train.parquet` row group by row group
//! (its SHA-256 taken as the bytes go out), and to `train.cols` and the fingerprints on a second
//! thread ([`StreamedTrainCols`]), as they come: no pass reads the rows back. Only what grows
//! with users and items (test rows, raw ids, titles) is held until [`StreamWriter::finish`]. The
//! same schema, compression and row-group size as [`Dataset::write`], so a dataset that fits in
//! memory gives the same bytes either way; [`finish_with`] writes meta.json and SHA256SUMS last.

use super::cols::StreamedTrainCols;
use super::dir::finish_with;
use super::fingerprint::hex;
use super::schema::table_schema;
use super::{Dataset, Meta, CHUNK, FORMAT_VERSION, ITEMS, TEST, TRAIN, USERS};
use crate::arrow::array::{ArrayRef, Int64Array, RecordBatch, UInt32Array};
use crate::io::AtomicDir;
use crate::{Error, Result};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// The parts of meta.json a streaming writer cannot count itself.
#[derive(Clone, Debug, Default)]
pub struct Provenance {
    pub options: serde_json::Value,
    pub source: serde_json::Value,
    pub stats: serde_json::Value,
}

/// Writes one dataset directory (without test negatives) from rows pushed in final order.
pub struct StreamWriter<'a> {
    dir: &'a AtomicDir,
    path: PathBuf,
    writer: ArrowWriter<Hashing<BufWriter<File>>>,
    with_time: bool,
    /// Train rows announced by [`StreamWriter::new`] (the fingerprint hashes the count first).
    n_train: u64,
    pushed: u64,
    users: Vec<u32>,
    items: Vec<u32>,
    times: Vec<i64>,
    /// `train.cols` and the fingerprints, on their own thread.
    cols: StreamedTrainCols,
    test: Dataset,
    last_user: Option<u32>,
}

impl<'a> StreamWriter<'a> {
    /// Start `train.parquet` in `dir` for exactly `n_train` train rows (with a timestamp
    /// column when `with_time`).
    pub fn new(dir: &'a AtomicDir, n_train: u64, with_time: bool) -> Result<Self> {
        let path = dir.path(&format!("{TRAIN}.parquet"));
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let out = Hashing {
            inner: BufWriter::new(file),
            hash: Sha256::new(),
        };
        let writer = ArrowWriter::try_new(out, table_schema(TRAIN, with_time), Some(props))
            .map_err(|e| Error::io(&path, std::io::Error::other(e.to_string())))?;
        let cols = StreamedTrainCols::start(&dir.path(""), n_train)?;
        Ok(StreamWriter {
            dir,
            path,
            writer,
            with_time,
            n_train,
            pushed: 0,
            users: Vec::with_capacity(CHUNK),
            items: Vec::with_capacity(CHUNK),
            times: Vec::with_capacity(if with_time { CHUNK } else { 0 }),
            cols,
            test: Dataset {
                test_timestamps: with_time.then(Vec::new),
                ..Default::default()
            },
            last_user: None,
        })
    }

    /// Train rows pushed so far.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// One train row; users must not decrease, `time` is given exactly when the writer was
    /// made `with_time`.
    #[inline]
    pub fn push_train(&mut self, user: u32, item: u32, time: Option<i64>) -> Result<()> {
        if self.last_user.is_some_and(|u| user < u) || self.pushed >= self.n_train {
            return Err(Error::invalid(format!(
                "streaming dataset writer: train row {} (user {user}) is out of order or past \
                 the {} rows announced",
                self.pushed, self.n_train
            )));
        }
        self.last_user = Some(user);
        self.users.push(user);
        self.items.push(item);
        if self.with_time {
            self.times.push(time.unwrap_or_default());
        }
        self.pushed += 1;
        if self.users.len() == CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    /// The test row of `user` (users strictly increasing).
    pub fn push_test(&mut self, user: u32, item: u32, time: Option<i64>) {
        self.test.test_users.push(user);
        self.test.test_items.push(item);
        if let Some(t) = self.test.test_timestamps.as_mut() {
            t.push(time.unwrap_or_default());
        }
    }

    /// Write the buffered train rows as one record batch, and hand them (shared, not copied) to
    /// the `train.cols` thread.
    fn flush(&mut self) -> Result<()> {
        if self.users.is_empty() {
            return Ok(());
        }
        let users = UInt32Array::from(std::mem::take(&mut self.users));
        let items = UInt32Array::from(std::mem::take(&mut self.items));
        self.cols.push(users.clone(), items.clone())?;
        let mut cols: Vec<ArrayRef> = vec![Arc::new(users), Arc::new(items)];
        if self.with_time {
            cols.push(Arc::new(Int64Array::from(std::mem::take(&mut self.times))));
        }
        let batch = RecordBatch::try_new(table_schema(TRAIN, self.with_time), cols)
            .map_err(|e| Error::invalid(format!("building the {TRAIN} table: {e}")))?;
        self.writer
            .write(&batch)
            .map_err(|e| Error::io(&self.path, std::io::Error::other(e.to_string())))?;
        self.users = Vec::with_capacity(CHUNK);
        self.items = Vec::with_capacity(CHUNK);
        if self.with_time {
            self.times = Vec::with_capacity(CHUNK);
        }
        Ok(())
    }

    /// Close `train.parquet`, write the test, users and items tables (`user_raw`, `item_raw`:
    /// the raw id of each dense id; `titles`: each item's title) and then meta.json and
    /// SHA256SUMS. Returns the meta written.
    pub fn finish(
        mut self,
        user_raw: Vec<String>,
        item_raw: Vec<String>,
        titles: Option<Vec<Option<String>>>,
        prov: Provenance,
    ) -> Result<Meta> {
        if self.pushed != self.n_train {
            return Err(Error::invalid(format!(
                "streaming dataset writer: {} train rows pushed, {} announced",
                self.pushed, self.n_train
            )));
        }
        self.flush()?;
        let path = self.path.clone();
        let mut out = self
            .writer
            .into_inner()
            .map_err(|e| Error::io(&path, std::io::Error::other(e.to_string())))?;
        out.flush().map_err(|e| Error::io(&path, e))?;
        // SHA256SUMS's line for train.parquet, from the bytes written (not read back).
        let Hashing { inner, hash } = out;
        drop(inner);
        let known = [(format!("{TRAIN}.parquet"), hex(&hash.finalize()))].into();
        let mut ds = self.test;
        ds.n_users = user_raw.len() as u32;
        ds.n_items = item_raw.len() as u32;
        ds.user_raw = user_raw;
        ds.item_raw = item_raw;
        ds.item_titles = titles;
        // The train columns stay empty here: everything but their length is checked.
        ds.validate("dataset to write")?;
        let (pending, fingerprint) = self.cols.finish(&ds)?;
        for t in [TEST, USERS, ITEMS] {
            ds.write_parquet(t, &self.dir.path(&format!("{t}.parquet")))?;
        }
        let meta = Meta {
            format_version: FORMAT_VERSION,
            n_users: ds.n_users,
            n_items: ds.n_items,
            n_train: self.pushed,
            n_test: ds.test_users.len() as u64,
            test_negatives_per_user: 0,
            test_negatives_source: None,
            test_negatives_seed: None,
            options: prov.options,
            source: prov.source,
            stats: prov.stats,
            fingerprint,
        };
        finish_with(self.dir, &meta, Some(pending), known)?;
        Ok(meta)
    }
}

/// A writer that takes the SHA-256 of the bytes it passes on.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::OUTPUT;

    #[test]
    fn streaming_gives_the_in_memory_bytes_and_fingerprint() {
        // Every file, train.cols (built as the rows stream) and SHA256SUMS (train.parquet's line
        // hashed as written) included: the in-memory writer's train.cols is tested to be the
        // bytes derived from the tables (dataset::tests), and so this one too; derived here
        // again from the streamed tables.
        let tmp = std::env::temp_dir().join(format!("ncf-stream-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        let mut ds = Dataset {
            n_users: 3,
            n_items: 5,
            train_timestamps: Some(vec![]),
            test_timestamps: Some(vec![]),
            user_raw: vec!["1".into(), "7".into(), "9".into()],
            item_raw: (0..5).map(|i| format!("{}", 10 + i)).collect(),
            item_titles: Some(vec![Some("a".into()), None, None, None, None]),
            ..Default::default()
        };
        // More rows than one record batch, so row groups are cut the same way.
        let n = CHUNK + 1000;
        for r in 0..n {
            let u = (r * 3 / n) as u32;
            ds.train_users.push(u);
            ds.train_items.push((r % 5) as u32);
            ds.train_timestamps.as_mut().unwrap().push(r as i64);
        }
        for u in 0..3 {
            ds.test_users.push(u);
            ds.test_items.push(4 - u);
            ds.test_timestamps.as_mut().unwrap().push(99);
        }
        let a = tmp.join("a");
        ds.meta = Some(ds.current_meta());
        ds.write(&a, false).unwrap();
        let b = tmp.join("b");
        let out = AtomicDir::new(&b, &OUTPUT, false).unwrap();
        let mut w = StreamWriter::new(&out, n as u64, true).unwrap();
        for r in 0..n {
            let t = ds.train_timestamps.as_ref().unwrap()[r];
            w.push_train(ds.train_users.get(r), ds.train_items[r], Some(t))
                .unwrap();
        }
        for u in 0..3 {
            w.push_test(u, 4 - u, Some(99));
        }
        let meta = w
            .finish(
                ds.user_raw.clone(),
                ds.item_raw.clone(),
                ds.item_titles.clone(),
                Provenance::default(),
            )
            .unwrap();
        out.commit().unwrap();
        assert_eq!(meta.fingerprint, ds.fingerprint());
        let files = [
            "train.parquet",
            "test.parquet",
            "users.parquet",
            "items.parquet",
            "meta.json",
            "SHA256SUMS",
            "train.cols",
        ];
        for p in files {
            let (x, y) = (
                std::fs::read(a.join(p)).unwrap(),
                std::fs::read(b.join(p)).unwrap(),
            );
            assert!(x == y, "{p} differs between the two writers");
        }
        let derived = AtomicDir::new(&tmp.join("derived"), &OUTPUT, false).unwrap();
        for p in &files[..5] {
            std::fs::copy(b.join(p), derived.path(p)).unwrap();
        }
        crate::data::dataset::finish(&derived, &meta).unwrap();
        assert!(
            std::fs::read(derived.path("train.cols")).unwrap()
                == std::fs::read(b.join("train.cols")).unwrap(),
            "train.cols streamed differs from the one derived from the tables"
        );
        assert!(
            std::fs::read(derived.path("SHA256SUMS")).unwrap()
                == std::fs::read(b.join("SHA256SUMS")).unwrap(),
            "SHA256SUMS with train.parquet hashed as written differs from the one read back"
        );
        let back = Dataset::load(&b).unwrap();
        assert_eq!(back.train_items, ds.train_items);
        // Rows past the announced count, or out of order, are refused.
        let c = AtomicDir::new(&tmp.join("c"), &OUTPUT, false).unwrap();
        let mut w = StreamWriter::new(&c, 2, false).unwrap();
        w.push_train(1, 0, None).unwrap();
        assert!(w.push_train(0, 0, None).is_err());
        // Ids past the users or items written are refused at the end (train.cols counts them).
        let raw = |n: usize| (0..n).map(|k| k.to_string()).collect::<Vec<_>>();
        for (user, item, want) in [(2, 0, "names user 2, past the 2 users"), (1, 3, "item 3")] {
            let d = AtomicDir::new(&tmp.join("d"), &OUTPUT, false).unwrap();
            let mut w = StreamWriter::new(&d, 2, false).unwrap();
            w.push_train(0, 0, None).unwrap();
            w.push_train(user, item, None).unwrap();
            w.push_test(0, 1, None);
            w.push_test(1, 1, None);
            let e = w
                .finish(raw(2), raw(3), None, Provenance::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e}");
        }
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
