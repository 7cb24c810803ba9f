//! The fingerprints that tie models and checkpoints to a dataset's content.

use super::{Col, Dataset, TrainUsers};
use sha2::{Digest, Sha256};

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
pub(super) fn hash_pairs(h: &mut Sha256, users: &[u32], items: &[u32]) {
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

/// [`hash_pairs`] over a dataset's train rows, walked in blocks (a mapped column's pages are
/// released after each: hashing 1e9 rows does not keep them resident).
pub(super) fn hash_train(h: &mut Sha256, users: &TrainUsers, items: &Col<u32>) {
    h.update((items.len() as u64).to_le_bytes());
    let mut us = users.iter();
    let mut buf = Vec::with_capacity(8 * 4096);
    let _ = items.scan(|_, block| {
        for c in block.chunks(4096) {
            buf.clear();
            // The block first: zip stops on it without taking a user too many.
            for (i, u) in c.iter().zip(us.by_ref()) {
                buf.extend_from_slice(&u.to_le_bytes());
                buf.extend_from_slice(&i.to_le_bytes());
            }
            h.update(&buf);
        }
        Ok::<(), ()>(())
    });
}

impl Dataset {
    /// Hex sha256 over train pairs and test pairs only ([`split_fingerprint`]).
    pub fn split_fingerprint(&self) -> String {
        let mapped = matches!(self.train_users, TrainUsers::Offsets(_))
            && [&self.train_items, &self.test_users, &self.test_items]
                .iter()
                .all(|c| c.is_mapped());
        if let (true, Some(known)) = (mapped, &self.mapped_split) {
            return known.clone();
        }
        let mut h = Sha256::new();
        h.update(b"ncf-split-v1\n");
        hash_train(&mut h, &self.train_users, &self.train_items);
        hash_pairs(&mut h, &self.test_users, &self.test_items);
        hex(&h.finalize())
    }

    /// Hex sha256 over train pairs, test pairs and negatives ([`fingerprint`]).
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"ncf-dataset-v1\n");
        hash_train(&mut h, &self.train_users, &self.train_items);
        hash_pairs(&mut h, &self.test_users, &self.test_items);
        h.update((self.test_negatives.len() as u64).to_le_bytes());
        let _ = self.test_negatives.scan(|_, block| {
            h.update(super::column::as_bytes(block));
            Ok::<(), ()>(())
        });
        hex(&h.finalize())
    }
}
