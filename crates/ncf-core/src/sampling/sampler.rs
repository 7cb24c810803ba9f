//! Training samples of an epoch and test negatives: the one sampler every tool and backend uses.
//!
//! An epoch has `n_pos * (1 + negatives)` samples. Sample `i < n_pos` is positive `i`; sample
//! `i >= n_pos` pairs the user of positive `(i - n_pos) % n_pos` with a drawn item (NVIDIA's
//! layout: positives, then the positives' users repeated `negatives` times). The order of an epoch
//! is a [`Permutation`]: position `p` holds sample `perm.apply(p)`. Every number comes from
//! [`Rng`] addressed by (stream, sample index, epoch, attempt), so CPU, CUDA and any rank count
//! agree bit for bit. `kernels/sampler.cuh` is the CUDA twin.

use crate::data::csr::Csr;
use crate::data::dataset::{TrainUsers, UsersView};
use crate::sampling::rng::{below, stream, Permutation, Rng, MAX_INDEX};
use crate::{Error, Result};

/// How training negatives are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum NegativeMode {
    /// NVIDIA's fast mode: uniform over all items, a positive may be drawn as a negative.
    Approximate,
    /// Rejects the user's training positives.
    Exact,
}

/// Epochs have fewer samples than this (2^48): a sample's index addresses its numbers
/// ([`Rng::block_at`]). Below 2^32 they are the numbers of the 32-bit indices ncf always used;
/// the CUDA trainer's kernels keep 32-bit indices and refuse longer epochs.
pub const MAX_EPOCH_SAMPLES: u64 = MAX_INDEX;

/// Give up drawing after this many rejected attempts (a user who has nearly every item).
pub const MAX_ATTEMPTS: u32 = 4096;

/// Each user's positives, sorted and each once: a [`Csr`] over users ([`Csr::sets`]), with
/// the sampler's names for its rows.
#[derive(Clone, Debug, Default)]
pub struct UserItems(Csr);

impl UserItems {
    /// Build from (user, item) pairs; duplicates are kept once.
    pub fn new(n_users: u32, users: &[u32], items: &[u32]) -> Self {
        UserItems(Csr::sets(n_users as usize, users, items))
    }

    /// Build from a dataset's train rows: from per-user offsets when it has them (no user per
    /// row is expanded), else as [`UserItems::new`].
    pub fn of_train(n_users: u32, users: &TrainUsers, items: &[u32]) -> Self {
        match users {
            TrainUsers::Rows(u) => UserItems::new(n_users, u, items),
            TrainUsers::Offsets(o) => {
                let mut m = Csr {
                    offsets: o.offsets.to_vec(),
                    items: items.to_vec(),
                };
                for r in 0..m.n_rows() {
                    let span = m.span(r);
                    m.items[span].sort_unstable();
                }
                let mut last = None;
                m.retain(|r, id| {
                    let new = last != Some((r, id));
                    last = Some((r, id));
                    new
                });
                UserItems(m)
            }
        }
    }

    pub fn n_users(&self) -> usize {
        self.0.n_rows()
    }

    #[inline]
    pub fn of(&self, user: u32) -> &[u32] {
        self.0.row(user as usize)
    }

    #[inline]
    pub fn contains(&self, user: u32, item: u32) -> bool {
        self.0.contains(user as usize, item)
    }
}

/// The matrix itself (`offsets` and `items`, as ncf-cuda uploads them).
impl std::ops::Deref for UserItems {
    type Target = Csr;
    fn deref(&self) -> &Csr {
        &self.0
    }
}

/// The samples of one epoch, addressable one at a time.
#[derive(Clone, Copy, Debug)]
pub struct EpochSamples<'a> {
    pub rng: Rng,
    pub epoch: u32,
    pub negatives: u32,
    pub n_items: u32,
    pub mode: NegativeMode,
    pub users: UsersView<'a>,
    pub items: &'a [u32],
    /// Needed for [`NegativeMode::Exact`].
    pub positives: Option<&'a UserItems>,
    pub order: Permutation,
}

impl<'a> EpochSamples<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rng: Rng,
        epoch: u32,
        negatives: u32,
        n_items: u32,
        mode: NegativeMode,
        users: &'a [u32],
        items: &'a [u32],
        positives: Option<&'a UserItems>,
    ) -> Self {
        let users = UsersView::Rows(users);
        Self::over(
            rng, epoch, negatives, n_items, mode, users, items, positives,
        )
    }

    /// [`EpochSamples::new`] over a dataset's train users as they are stored (per-user offsets
    /// or a user per row): the same samples either way.
    #[allow(clippy::too_many_arguments)]
    pub fn over(
        rng: Rng,
        epoch: u32,
        negatives: u32,
        n_items: u32,
        mode: NegativeMode,
        users: UsersView<'a>,
        items: &'a [u32],
        positives: Option<&'a UserItems>,
    ) -> Self {
        assert_eq!(users.len(), items.len());
        assert!(
            mode == NegativeMode::Approximate || positives.is_some(),
            "exact mode needs positives"
        );
        let n = users.len() as u64 * (1 + negatives as u64);
        assert!(
            n < MAX_EPOCH_SAMPLES,
            "an epoch must have fewer than 2^48 samples"
        );
        let order = Permutation::new(&rng, stream::SHUFFLE, epoch, 0, n);
        EpochSamples {
            rng,
            epoch,
            negatives,
            n_items,
            mode,
            users,
            items,
            positives,
            order,
        }
    }

    /// Number of samples in the epoch.
    pub fn len(&self) -> u64 {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// (user, item, label) of sample `i` (unshuffled index).
    #[inline]
    pub fn sample(&self, i: u64) -> Result<(u32, u32, f32)> {
        let n_pos = self.items.len() as u64;
        if i < n_pos {
            return Ok((self.users.get(i), self.items[i as usize], 1.0));
        }
        let user = self.users.get((i - n_pos) % n_pos);
        Ok((user, self.negative(user, i)?, 0.0))
    }

    /// The drawn item of negative sample `i`.
    #[inline]
    pub fn negative(&self, user: u32, i: u64) -> Result<u32> {
        match self.mode {
            NegativeMode::Approximate => Ok(below(
                self.rng.word_at(stream::TRAIN_NEGATIVE, i, self.epoch, 0),
                self.n_items,
            )),
            NegativeMode::Exact => {
                let pos = self.positives.expect("checked in new");
                for k in 0..MAX_ATTEMPTS {
                    let item = below(
                        self.rng.word_at(stream::TRAIN_NEGATIVE, i, self.epoch, k),
                        self.n_items,
                    );
                    if !pos.contains(user, item) {
                        return Ok(item);
                    }
                }
                Err(Error::invalid(format!(
                    "user {user}: no negative found in {MAX_ATTEMPTS} draws (the user has {} of {} items)",
                    pos.of(user).len(),
                    self.n_items
                )))
            }
        }
    }

    /// An error unless `positions` is a non-empty range of the epoch's samples (a step's batch).
    pub fn check_positions(&self, positions: &std::ops::Range<u64>) -> Result<()> {
        if positions.end > self.len() || positions.start >= positions.end {
            return Err(Error::invalid(format!(
                "step positions {}..{} are not a non-empty range of the epoch's {} samples",
                positions.start,
                positions.end,
                self.len()
            )));
        }
        Ok(())
    }

    /// (user, item, label) at shuffled position `p`.
    #[inline]
    pub fn at(&self, p: u64) -> Result<(u32, u32, f32)> {
        self.sample(self.order.apply(p))
    }

    /// Fill `users`, `items`, `labels` with the samples at positions `range` of the shuffled epoch.
    pub fn fill(
        &self,
        range: std::ops::Range<u64>,
        users: &mut Vec<u32>,
        items: &mut Vec<u32>,
        labels: &mut Vec<f32>,
    ) -> Result<()> {
        users.clear();
        items.clear();
        labels.clear();
        for p in range {
            let (u, i, l) = self.at(p)?;
            users.push(u);
            items.push(i);
            labels.push(l);
        }
        Ok(())
    }
}

/// `k` distinct test negatives for `user`: items not in `exclude` (the user's train and test
/// positives), drawn in order of the RNG and kept in that order.
pub fn test_negatives(
    rng: &Rng,
    user: u32,
    k: usize,
    n_items: u32,
    exclude: &[u32],
    out: &mut Vec<u32>,
) -> Result<()> {
    let available = n_items as usize - exclude.len().min(n_items as usize);
    if available < k {
        return Err(Error::invalid(format!(
            "user {user}: {k} test negatives asked for, but only {available} items are not positives"
        )));
    }
    let start = out.len();
    let mut attempt = 0u32;
    while out.len() - start < k {
        let item = below(rng.word(stream::TEST_NEGATIVE, user, 0, attempt), n_items);
        attempt = attempt
            .checked_add(1)
            .ok_or_else(|| Error::invalid("test negative draw overflow"))?;
        if exclude.binary_search(&item).is_err() && !out[start..].contains(&item) {
            out.push(item);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> (Vec<u32>, Vec<u32>) {
        // 3 users, 10 items; user 2 has 8 of them.
        let users = vec![0, 0, 1, 2, 2, 2, 2, 2, 2, 2, 2];
        let items = vec![1, 3, 5, 0, 1, 2, 3, 4, 5, 6, 7];
        (users, items)
    }

    #[test]
    fn exact_never_returns_a_positive() {
        let (u, i) = toy();
        let pos = UserItems::new(3, &u, &i);
        for epoch in 0..5 {
            let s = EpochSamples::new(
                Rng::new(9),
                epoch,
                4,
                10,
                NegativeMode::Exact,
                &u,
                &i,
                Some(&pos),
            );
            for p in 0..s.len() {
                let (user, item, label) = s.at(p).unwrap();
                if label == 0.0 {
                    assert!(
                        !pos.contains(user, item),
                        "epoch {epoch}: negative {item} of user {user} is a positive"
                    );
                }
            }
        }
    }

    #[test]
    fn epoch_has_the_nvidia_layout() {
        let (u, i) = toy();
        let s = EpochSamples::new(
            Rng::new(1),
            0,
            4,
            10,
            NegativeMode::Approximate,
            &u,
            &i,
            None,
        );
        assert_eq!(s.len(), 55);
        let mut pos = 0;
        let mut per_user = [0; 3];
        for p in 0..s.len() {
            let (user, _, label) = s.at(p).unwrap();
            pos += (label == 1.0) as usize;
            per_user[user as usize] += 1;
        }
        assert_eq!(pos, 11);
        assert_eq!(per_user, [10, 5, 40]);
    }

    #[test]
    fn test_negatives_are_distinct_and_exact() {
        let rng = Rng::new(5);
        let exclude = vec![0, 2, 4, 6, 8];
        let mut out = vec![];
        test_negatives(&rng, 3, 5, 10, &exclude, &mut out).unwrap();
        let mut sorted = out.clone();
        sorted.sort();
        assert_eq!(sorted, vec![1, 3, 5, 7, 9]);
        assert!(test_negatives(&rng, 3, 6, 10, &exclude, &mut vec![]).is_err());
    }

    #[test]
    fn user_items_sorts_and_dedups() {
        let ui = UserItems::new(2, &[1, 0, 1, 1], &[5, 2, 3, 5]);
        assert_eq!(ui.of(0), &[2]);
        assert_eq!(ui.of(1), &[3, 5]);
    }
}
