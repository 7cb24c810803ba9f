//! meta.json: what a dataset holds and how it was made.

use super::{Dataset, FORMAT_VERSION};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

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

pub(super) fn meta_from_json(text: &str, location: &str) -> Result<Meta> {
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

impl Dataset {
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

    pub(super) fn check_meta(&self, meta: &Meta, what: &str) -> Result<()> {
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
}
