//! The dataset directory written by `ncf-prep` and read by every other tool (docs/FORMATS.md):
//! `meta.json`, `train.parquet`, `test.parquet`, `users.parquet`, `items.parquet` and, once
//! `ncf-negsample` has run, `test_negatives.parquet`. Dense ids are `u32`.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Version of the on-disk format; readers refuse other versions.
pub const FORMAT_VERSION: u32 = 1;

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

impl Dataset {
    /// Read a dataset directory, validating it against its `meta.json`.
    pub fn load(dir: &Path) -> Result<Dataset> {
        Err(Error::invalid(format!("{}: Dataset::load not implemented yet", dir.display())))
    }
}
