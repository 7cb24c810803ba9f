//! The dataset directory written by `ncf-prep` and read by every other tool (docs/FORMATS.md):
//! `meta.json`, `train.parquet`, `test.parquet`, `users.parquet`, `items.parquet` and, once
//! `ncf-negsample` has run, `test_negatives.parquet`. Dense ids are `u32`.
//! The same tables travel through pipes as consecutive Arrow IPC streams ([`Dataset::write_ipc`]).
//!
//! One concern per file: [`meta`] (meta.json), [`fingerprint`] (what models are tied to),
//! [`schema`] (each table's columns), [`tables`] (columns as Arrow batches and back),
//! [`parquet`] and [`ipc`] (the two encodings, with the checks their decoders do not make),
//! [`sums`] (SHA256SUMS), [`memory`] (refusing what would not fit) and [`dir`] (the directory:
//! what may be replaced, atomic writes, loading). This file holds the names and constants they
//! share, the in-memory [`Dataset`] and its invariants.

mod cols;
mod column;
mod dir;
mod fingerprint;
mod ipc;
mod memory;
mod meta;
mod parquet;
mod schema;
mod stream;
mod sums;
mod tables;
#[cfg(test)]
mod tests;

pub use cols::{NEGATIVES_COLS, TRAIN_COLS};
pub use column::{as_bytes, Col, TrainUsers, UserOffsets, UsersView, SCAN_BLOCK};
pub use dir::{
    finish, looks_like_dataset, write_test_negatives, write_test_negatives_in_blocks,
    written_by_ncf, OUTPUT,
};
pub use fingerprint::{fingerprint, hex, split_fingerprint};
pub use memory::memory_needed;
pub use meta::Meta;
pub(crate) use parquet::{check_parquet_chunks, check_parquet_pages};
pub use stream::{Provenance, StreamWriter};

use crate::{Error, Result};

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
const DATASET_FILES: [&str; 9] = [
    "meta.json",
    SUMS,
    "train.parquet",
    "test.parquet",
    "users.parquet",
    "items.parquet",
    "test_negatives.parquet",
    cols::TRAIN_COLS,
    cols::NEGATIVES_COLS,
];

/// A dataset in memory. Train rows are sorted by user, then by time (oldest first). Read from a
/// directory with column files, the id columns are mapped pages of those files ([`Col`]) and
/// the train users are per-user offsets ([`TrainUsers`]); timestamps are then not loaded.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    pub meta: Option<Meta>,
    pub n_users: u32,
    pub n_items: u32,
    pub train_users: TrainUsers,
    pub train_items: Col<u32>,
    /// Seconds since the epoch, when the input had timestamps.
    pub train_timestamps: Option<Vec<i64>>,
    /// One held-out interaction per user, sorted by user.
    pub test_users: Col<u32>,
    pub test_items: Col<u32>,
    pub test_timestamps: Option<Vec<i64>>,
    /// `test_negatives_per_user` items per test row, row-major in test order.
    pub test_negatives: Col<u32>,
    pub test_negatives_per_user: usize,
    /// The dataset directory whose Parquet tables hold timestamps that were not loaded (read
    /// through its column files, trainers need none): [`Dataset::with_timestamps`] reads them.
    pub timestamps_in: Option<std::path::PathBuf>,
    /// The split fingerprint `train.cols` records, valid while the train and test columns are
    /// still that file's (all mapped): spares hashing every train row on each start.
    pub mapped_split: Option<String>,
    /// Raw id of each dense user / item id, as text.
    pub user_raw: Vec<String>,
    pub item_raw: Vec<String>,
    /// Title of each item, when a movies file was given.
    pub item_titles: Option<Vec<Option<String>>>,
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
        self.test_negatives = negatives.into();
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
        // Mapped columns were range-checked block by block when their file was opened.
        if let TrainUsers::Rows(users) = &self.train_users {
            if let Some(r) = users.iter().position(|&u| u >= self.n_users) {
                return bad(format!("train row {r}: user {} >= n_users", users[r]));
            }
            if let Some(r) = users.windows(2).position(|w| w[0] > w[1]) {
                return bad(format!("train rows {r}..{} are not sorted by user", r + 1));
            }
        }
        if !self.train_items.is_mapped() {
            if let Some(r) = self.train_items.iter().position(|&i| i >= self.n_items) {
                return bad(format!(
                    "train row {r}: item {} >= n_items",
                    self.train_items[r]
                ));
            }
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
        if self.test_negatives.is_mapped() {
            return Ok(());
        }
        if let Some(r) = self.test_negatives.iter().position(|&i| i >= self.n_items) {
            return bad(format!(
                "test negative {r}: item {} >= n_items",
                self.test_negatives[r]
            ));
        }
        Ok(())
    }
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
