//! The validation split of `ncf-train --validation` and `ncf-eval --validation`: one training
//! interaction per user held out and ranked among sampled negatives, to tune without the test set.

use crate::data::dataset::Dataset;
use crate::eval::metrics::EvalSet;
use crate::sampling::rng::{below, stream, Rng};
use crate::sampling::sampler::UserItems;
use crate::{Error, Result};

/// Which training interaction of a user [`validation_split`] holds out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Holdout {
    /// The latest by timestamp (the last such row on ties), as the test split holds out the
    /// latest interaction: validation then measures what the test measures.
    Latest,
    /// A random one (stream VALIDATION): easier than the latest, usable without timestamps.
    Random,
}

/// Whether the training rows have timestamps that order them (not all equal).
pub fn has_time_order(data: &Dataset) -> bool {
    data.train_timestamps
        .as_ref()
        .is_some_and(|t| t.iter().any(|&x| x != t[0]))
}

/// The validation split of `ncf-train --validation` (and `ncf-eval --validation`, which must
/// rank the same held-out items): as many negatives per user as the dataset's test set has (100
/// without one), the latest interaction held out when the training rows carry a time order, else
/// a random one, unless `holdout` says which.
pub fn default_validation(
    data: &Dataset,
    seed: u64,
    holdout: Option<Holdout>,
) -> Result<(Dataset, EvalSet)> {
    // The held-out row depends on the timestamps: read them when they were left on disk.
    let data = &*data.with_timestamps()?;
    let per_user = if data.test_negatives_per_user > 0 {
        data.test_negatives_per_user
    } else {
        100
    };
    let holdout = holdout.unwrap_or(if has_time_order(data) {
        Holdout::Latest
    } else {
        Holdout::Random
    });
    validation_split(data, seed, per_user, holdout)
}

/// A validation split for tuning without looking at the test set: one training interaction of
/// every user with at least two is held out (`holdout`; random draws use stream VALIDATION,
/// independent of the training seed), with `negatives` distinct sampled items the user has not
/// interacted with (train or test). Returns the dataset without the held-out rows and the
/// validation set.
pub fn validation_split(
    data: &Dataset,
    seed: u64,
    negatives: usize,
    holdout: Holdout,
) -> Result<(Dataset, EvalSet)> {
    let times =
        match (holdout, &data.train_timestamps) {
            (Holdout::Latest, Some(t)) if has_time_order(data) => Some(t),
            (Holdout::Latest, _) => return Err(Error::invalid(
                "validation: the training rows carry no time order (no timestamps, or all equal \
                 as in the NCF authors' files) to hold out the latest interaction; pass \
                 --validation-holdout random",
            )),
            (Holdout::Random, _) => None,
        };
    let rng = Rng::new(seed);
    let n_users = data.n_users;
    let positives = UserItems::new(n_users, &data.train_users.rows(), &data.train_items);
    let test = UserItems::new(n_users, &data.test_users, &data.test_items);
    // Rows of each user in the training arrays (rows are grouped by user, but do not rely on it).
    let mut rows_of: Vec<Vec<usize>> = vec![Vec::new(); n_users as usize];
    for (r, u) in data.train_users.iter().enumerate() {
        if u >= n_users {
            return Err(Error::invalid(format!(
                "train row {r}: user {u} out of range"
            )));
        }
        rows_of[u as usize].push(r);
    }
    let mut held = vec![false; data.train_users.len()];
    let mut set = EvalSet {
        per_user: negatives,
        ..Default::default()
    };
    let mut exclude = Vec::new();
    for (u, rows) in rows_of.iter().enumerate() {
        if rows.len() < 2 {
            continue;
        }
        let u32_ = u as u32;
        let r = match times {
            // max_by_key keeps the last of equal maxima.
            Some(t) => *rows.iter().max_by_key(|&&r| t[r]).unwrap_or(&rows[0]),
            None => {
                rows[below(rng.word(stream::VALIDATION, u32_, 0, 0), rows.len() as u32) as usize]
            }
        };
        held[r] = true;
        let item = data.train_items[r];
        exclude.clear();
        exclude.extend_from_slice(positives.of(u32_));
        exclude.extend_from_slice(test.of(u32_));
        exclude.sort_unstable();
        exclude.dedup();
        let available = data.n_items as usize - exclude.len().min(data.n_items as usize);
        if available < negatives {
            return Err(Error::invalid(format!(
                "validation: user {u} has only {available} items to draw {negatives} negatives from"
            )));
        }
        let start = set.negatives.len();
        let mut attempt = 0u32;
        while set.negatives.len() - start < negatives {
            let cand = below(rng.word(stream::VALIDATION, u32_, 1, attempt), data.n_items);
            attempt = attempt
                .checked_add(1)
                .ok_or_else(|| Error::invalid("validation draw overflow"))?;
            if exclude.binary_search(&cand).is_err() && !set.negatives[start..].contains(&cand) {
                set.negatives.push(cand);
            }
        }
        set.users.push(u32_);
        set.items.push(item);
    }
    if set.is_empty() {
        return Err(Error::invalid(
            "validation: no user has two training interactions",
        ));
    }
    let keep = |v: &[u32]| -> Vec<u32> {
        v.iter()
            .zip(&held)
            .filter(|p| !*p.1)
            .map(|p| *p.0)
            .collect()
    };
    let mut train = data.clone();
    train.train_users = keep(&data.train_users.rows()).into();
    train.train_items = keep(&data.train_items).into();
    train.timestamps_in = None;
    train.train_timestamps = data.train_timestamps.as_ref().map(|t| {
        t.iter()
            .zip(&held)
            .filter(|p| !*p.1)
            .map(|p| *p.0)
            .collect()
    });
    Ok((train, set))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::four_users as data;

    #[test]
    fn validation_split_holds_out_one_train_row_per_user() {
        let mut d = data();
        d.train_users.push(3); // user 3 now has 4 rows
        d.train_items.push(0);
        let (train, v) = validation_split(&d, 7, 5, Holdout::Random).unwrap();
        assert_eq!(v.users, vec![0, 1, 2, 3]);
        assert_eq!(train.train_users.len(), d.train_users.len() - 4);
        let pos = UserItems::new(4, &d.train_users.rows(), &d.train_items);
        let kept = UserItems::new(4, &train.train_users.rows(), &train.train_items);
        for r in 0..v.len() {
            let (u, item) = (v.users[r], v.items[r]);
            assert!(pos.contains(u, item) && !kept.contains(u, item));
            let negs = &v.negatives[r * 5..(r + 1) * 5];
            let mut sorted = negs.to_vec();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 5, "negatives not distinct");
            assert!(negs
                .iter()
                .all(|&n| !pos.contains(u, n) && n != d.test_items[u as usize]));
        }
        let (_, again) = validation_split(&d, 7, 5, Holdout::Random).unwrap();
        assert_eq!(again, v);
        let (_, other) = validation_split(&d, 8, 5, Holdout::Random).unwrap();
        assert_ne!(other, v);
        assert!(validation_split(&d, 7, 17, Holdout::Random).is_err()); // 20 items − 3 train − 1 test < 17
                                                                        // Latest: needs timestamps that order the rows, takes each user's latest row (the
                                                                        // last of ties).
        assert!(validation_split(&d, 7, 5, Holdout::Latest).is_err());
        d.train_timestamps = Some(vec![0; d.train_users.len()]); // as the NCF authors' files
        let e = validation_split(&d, 7, 5, Holdout::Latest).unwrap_err();
        assert!(e.to_string().contains("no time order"), "{e}");
        let rows = d.train_users.len();
        let mut t: Vec<i64> = (0..rows as i64).map(|r| 100 - r).collect();
        let last_of_3 = rows - 1; // the row pushed above
        t[last_of_3] = 1000;
        let first_of_0 = d.train_users.iter().position(|u| u == 0).unwrap();
        t[first_of_0] = 500;
        let second_of_0 = first_of_0
            + 1
            + d.train_users.rows()[first_of_0 + 1..]
                .iter()
                .position(|&u| u == 0)
                .unwrap();
        t[second_of_0] = 500; // a tie with the first: the later row wins
        d.train_timestamps = Some(t);
        let (_, latest) = validation_split(&d, 7, 5, Holdout::Latest).unwrap();
        assert_eq!(latest.items[3], 0, "user 3's latest item");
        assert_eq!(latest.items[0], d.train_items[second_of_0]);
        let (_, again) = validation_split(&d, 99, 5, Holdout::Latest).unwrap();
        assert_eq!(
            again.items, latest.items,
            "the latest does not depend on the seed"
        );
    }
}
