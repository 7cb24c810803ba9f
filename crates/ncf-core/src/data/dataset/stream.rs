//! A dataset directory written as its rows stream in ([`StreamWriter`]): train rows pushed in
//! their final order (by dense user, then time) go to `train.parquet` row group by row group,
//! and into the fingerprint, as they come; only what grows with users and items (test rows,
//! raw ids, titles) is held until [`StreamWriter::finish`]. The same schema, compression and
//! row-group size as [`Dataset::write`], so a dataset that fits in memory gives the same bytes
//! either way; [`finish`](super::finish) writes meta.json and SHA256SUMS last.

use super::schema::table_schema;
use super::{fingerprint::hash_pairs, finish, Dataset, Meta, CHUNK, ITEMS, TEST, TRAIN, USERS};
use super::{fingerprint::hex, FORMAT_VERSION};
use crate::arrow::array::{ArrayRef, Int64Array, RecordBatch, UInt32Array};
use crate::io::AtomicDir;
use crate::{Error, Result};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::BufWriter;
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
    writer: ArrowWriter<BufWriter<File>>,
    with_time: bool,
    /// Train rows announced by [`StreamWriter::new`] (the fingerprint hashes the count first).
    n_train: u64,
    pushed: u64,
    users: Vec<u32>,
    items: Vec<u32>,
    times: Vec<i64>,
    hash: Sha256,
    pairs: Vec<u8>,
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
        let writer = ArrowWriter::try_new(
            BufWriter::new(file),
            table_schema(TRAIN, with_time),
            Some(props),
        )
        .map_err(|e| Error::io(&path, std::io::Error::other(e.to_string())))?;
        let mut hash = Sha256::new();
        hash.update(b"ncf-dataset-v1\n");
        hash.update(n_train.to_le_bytes());
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
            hash,
            pairs: Vec::with_capacity(8 * CHUNK),
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

    /// Write the buffered train rows as one record batch and hash them.
    fn flush(&mut self) -> Result<()> {
        if self.users.is_empty() {
            return Ok(());
        }
        self.pairs.clear();
        for (u, i) in self.users.iter().zip(&self.items) {
            self.pairs.extend_from_slice(&u.to_le_bytes());
            self.pairs.extend_from_slice(&i.to_le_bytes());
        }
        self.hash.update(&self.pairs);
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from(std::mem::take(&mut self.users))),
            Arc::new(UInt32Array::from(std::mem::take(&mut self.items))),
        ];
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
        self.writer
            .close()
            .map_err(|e| Error::io(&path, std::io::Error::other(e.to_string())))?;
        let mut ds = self.test;
        ds.n_users = user_raw.len() as u32;
        ds.n_items = item_raw.len() as u32;
        ds.user_raw = user_raw;
        ds.item_raw = item_raw;
        ds.item_titles = titles;
        // The train columns stay empty here: everything but their length is checked.
        ds.validate("dataset to write")?;
        hash_pairs(&mut self.hash, &ds.test_users, &ds.test_items);
        self.hash.update(0u64.to_le_bytes());
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
            fingerprint: hex(&self.hash.finalize()),
        };
        finish(self.dir, &meta)?;
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::OUTPUT;

    #[test]
    fn streaming_gives_the_in_memory_bytes_and_fingerprint() {
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
        for f in ["train", "test", "users", "items"] {
            let p = format!("{f}.parquet");
            assert_eq!(
                std::fs::read(a.join(&p)).unwrap(),
                std::fs::read(b.join(&p)).unwrap(),
                "{p}"
            );
        }
        assert_eq!(std::fs::read(a.join("meta.json")).unwrap(), {
            std::fs::read(b.join("meta.json")).unwrap()
        });
        let back = Dataset::load(&b).unwrap();
        assert_eq!(back.train_items, ds.train_items);
        // Rows past the announced count, or out of order, are refused.
        let c = AtomicDir::new(&tmp.join("c"), &OUTPUT, false).unwrap();
        let mut w = StreamWriter::new(&c, 2, false).unwrap();
        w.push_train(1, 0, None).unwrap();
        assert!(w.push_train(0, 0, None).is_err());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
