//! From raw interactions to a [`Dataset`]: rating filter, per-user time order, duplicate removal,
//! the `--min-interactions` user filter, dense ids and the leave-one-out split (docs/FORMATS.md).

pub mod external;

use crate::data::csr::Csr;
use crate::data::dataset::Dataset;
use crate::data::ingest::Interactions;
use crate::sampling::rng::{below, stream, Rng};
use crate::{Error, Result};
use serde::Serialize;
use std::collections::HashMap;

/// Options of the preparation (the rest of `ncf-prep`'s flags only concern reading).
#[derive(Clone, Debug)]
pub struct PrepOptions {
    /// Users with fewer distinct (kept) interactions are dropped.
    pub min_interactions: usize,
    /// Rows rated below this are not positives.
    pub min_rating: Option<f32>,
    /// Seed of the random leave-one-out when there are no timestamps (Rng stream SPLIT).
    pub seed: u64,
}

impl Default for PrepOptions {
    fn default() -> Self {
        PrepOptions {
            min_interactions: 20,
            min_rating: None,
            seed: 42,
        }
    }
}

/// What the preparation did, for the summary and meta.json `stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PrepStats {
    pub rows_read: u64,
    pub rows_below_min_rating: u64,
    pub duplicates_dropped: u64,
    /// Distinct users / items in the input (before any filter).
    pub users_in_input: u64,
    pub items_in_input: u64,
    /// Users with fewer than `min_interactions` interactions left (including none at all).
    pub users_dropped: u64,
    /// Interactions of the dropped users.
    pub rows_of_dropped_users: u64,
    pub users: u64,
    pub items: u64,
    pub train: u64,
    pub test: u64,
    /// "latest" (timestamps) or "random" (seeded, no timestamps).
    pub split: String,
    /// Sorted runs spilled to disk ([`external`]; absent when prepared in memory).
    #[serde(skip_serializing_if = "is_zero")]
    pub spilled_runs: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Prepare `rows` (titles keyed by raw item id) into a dataset with a leave-one-out split.
pub fn prepare(
    rows: &Interactions,
    titles: Option<&HashMap<String, String>>,
    opts: &PrepOptions,
) -> Result<(Dataset, PrepStats)> {
    let n = rows.users.len();
    if rows.items.len() != n {
        return Err(Error::invalid("user and item columns differ in length"));
    }
    let n_user_codes = rows.user_ids.len();
    let n_item_codes = rows.item_ids.len();
    let ts = rows.timestamps.as_deref();
    let mut stats = PrepStats {
        rows_read: n as u64,
        users_in_input: n_user_codes as u64,
        items_in_input: n_item_codes as u64,
        split: if ts.is_some() { "latest" } else { "random" }.into(),
        ..Default::default()
    };
    if opts.min_rating.is_some() && rows.ratings.is_none() {
        return Err(Error::usage("--min-rating needs a rating column"));
    }

    let mut by_user = group_by_user(rows, opts, &mut stats);
    if let Some(ts) = ts {
        sort_by_time(&mut by_user, ts);
    }
    drop_duplicates(rows, &mut by_user, &mut stats);
    let dense = dense_ids(rows, &by_user, opts, &mut stats)?;
    let mut ds = leave_one_out(rows, &by_user, &dense, opts.seed);
    ds.user_raw = dense
        .user_codes
        .iter()
        .map(|&c| rows.user_ids.text(c))
        .collect();
    ds.item_raw = dense
        .item_codes
        .iter()
        .map(|&c| rows.item_ids.text(c))
        .collect();
    ds.item_titles = titles.map(|t| ds.item_raw.iter().map(|raw| t.get(raw).cloned()).collect());
    stats.users = ds.n_users as u64;
    stats.items = ds.n_items as u64;
    stats.train = ds.train_users.len() as u64;
    stats.test = ds.test_users.len() as u64;
    Ok((ds, stats))
}

/// The kept users and items of a preparation and their dense ids.
struct DenseIds {
    /// User code of each dense user id, in raw-id order.
    user_codes: Vec<u32>,
    /// Dense item id of each item code (`u32::MAX`: unused).
    item_dense: Vec<u32>,
    /// Item code of each dense item id.
    item_codes: Vec<u32>,
}

/// Group the rows that pass the rating filter by user code, input order within a user: row
/// `u` of the result holds the row numbers of user code `u`.
pub(crate) fn group_by_user(rows: &Interactions, opts: &PrepOptions, stats: &mut PrepStats) -> Csr {
    let n = rows.users.len();
    let keep = |r: &usize| match (opts.min_rating, &rows.ratings) {
        (Some(m), Some(rt)) => rt[*r] >= m,
        _ => true,
    };
    let kept = (0..n).filter(keep).map(|r| (rows.users[r], r as u32));
    let by_user = Csr::grouped(rows.user_ids.len(), kept);
    stats.rows_below_min_rating += (n - by_user.nnz()) as u64;
    by_user
}

/// Sort each user's rows oldest first; equal times keep input order. Two halves at a user
/// boundary in parallel.
pub(crate) fn sort_by_time(by_user: &mut Csr, ts: &[i64]) {
    let n_user_codes = by_user.n_rows();
    let offsets = &by_user.offsets;
    let sort_users = |perm: &mut [u32], users: std::ops::Range<usize>, base: usize| {
        for u in users {
            let s = &mut perm[offsets[u] as usize - base..offsets[u + 1] as usize - base];
            if s.len() > 1 {
                s.sort_unstable_by_key(|&r| (ts[r as usize], r));
            }
        }
    };
    let mid_user = n_user_codes / 2;
    let mid = offsets[mid_user] as usize;
    let (a, b) = by_user.items.split_at_mut(mid);
    std::thread::scope(|s| {
        s.spawn(|| sort_users(a, 0..mid_user, 0));
        sort_users(b, mid_user..n_user_codes, mid);
    });
}

/// Drop repeated (user, item) pairs, keeping the earliest.
pub(crate) fn drop_duplicates(rows: &Interactions, by_user: &mut Csr, stats: &mut PrepStats) {
    let mut last_user = vec![u32::MAX; rows.item_ids.len()];
    by_user.retain(|u, r| {
        let item = rows.items[r as usize] as usize;
        if last_user[item] == u as u32 {
            stats.duplicates_dropped += 1;
            false
        } else {
            last_user[item] = u as u32;
            true
        }
    });
}

/// Users with enough interactions get dense ids in raw-id order; then the items they use.
fn dense_ids(
    rows: &Interactions,
    by_user: &Csr,
    opts: &PrepOptions,
    stats: &mut PrepStats,
) -> Result<DenseIds> {
    let n_user_codes = rows.user_ids.len();
    let min = opts.min_interactions.max(1);
    let mut user_codes = Vec::new();
    for u in 0..n_user_codes {
        let len = by_user.row(u).len();
        if len >= min {
            user_codes.push(u as u32);
        } else {
            stats.users_dropped += 1;
            stats.rows_of_dropped_users += len as u64;
        }
    }
    if user_codes.is_empty() {
        return Err(Error::invalid(format!(
            "no user has at least {min} interactions ({} users in the input, {} rows): \
             lower --min-interactions",
            n_user_codes,
            rows.users.len()
        )));
    }
    let mut item_dense = vec![u32::MAX; rows.item_ids.len()];
    for &u in &user_codes {
        for &r in by_user.row(u as usize) {
            item_dense[rows.items[r as usize] as usize] = 0;
        }
    }
    let mut item_codes = Vec::new();
    for (code, d) in item_dense.iter_mut().enumerate() {
        if *d == 0 {
            *d = item_codes.len() as u32;
            item_codes.push(code as u32);
        }
    }
    Ok(DenseIds {
        user_codes,
        item_dense,
        item_codes,
    })
}

/// The leave-one-out split of the kept users' rows: the latest (last in input among equal
/// latest times), or a pick seeded by `seed` without timestamps, is the test interaction.
fn leave_one_out(rows: &Interactions, by_user: &Csr, dense: &DenseIds, seed: u64) -> Dataset {
    let DenseIds {
        user_codes,
        item_dense,
        item_codes,
    } = dense;
    let ts = rows.timestamps.as_deref();
    let rng = Rng::new(seed);
    let kept_rows: usize = user_codes
        .iter()
        .map(|&u| by_user.row(u as usize).len())
        .sum();
    let n_test = user_codes.len();
    let n_train = kept_rows - n_test;
    let mut ds = Dataset {
        n_users: user_codes.len() as u32,
        n_items: item_codes.len() as u32,
        train_users: Vec::with_capacity(n_train).into(),
        train_items: Vec::with_capacity(n_train).into(),
        train_timestamps: ts.map(|_| Vec::with_capacity(n_train)),
        test_users: Vec::with_capacity(n_test).into(),
        test_items: Vec::with_capacity(n_test).into(),
        test_timestamps: ts.map(|_| Vec::with_capacity(n_test)),
        ..Default::default()
    };
    for (dense, &u) in user_codes.iter().enumerate() {
        let list = by_user.row(u as usize);
        let held = match ts {
            Some(_) => list.len() - 1,
            None => below(
                rng.word(stream::SPLIT, dense as u32, 0, 0),
                list.len() as u32,
            ) as usize,
        };
        for (k, &r) in list.iter().enumerate() {
            let r = r as usize;
            let item = item_dense[rows.items[r] as usize];
            if k == held {
                ds.test_users.push(dense as u32);
                ds.test_items.push(item);
                if let (Some(t), Some(ts)) = (ds.test_timestamps.as_mut(), ts) {
                    t.push(ts[r]);
                }
            } else {
                ds.train_users.push(dense as u32);
                ds.train_items.push(item);
                if let (Some(t), Some(ts)) = (ds.train_timestamps.as_mut(), ts) {
                    t.push(ts[r]);
                }
            }
        }
    }
    ds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ingest::RawIds;

    fn rows(triples: &[(u64, u64, Option<i64>)]) -> Interactions {
        let mut users: Vec<u64> = triples.iter().map(|t| t.0).collect();
        let mut items: Vec<u64> = triples.iter().map(|t| t.1).collect();
        users.sort();
        users.dedup();
        items.sort();
        items.dedup();
        Interactions {
            users: triples
                .iter()
                .map(|t| users.binary_search(&t.0).unwrap() as u32)
                .collect(),
            items: triples
                .iter()
                .map(|t| items.binary_search(&t.1).unwrap() as u32)
                .collect(),
            user_ids: RawIds::Int(users),
            item_ids: RawIds::Int(items),
            timestamps: triples[0]
                .2
                .is_some()
                .then(|| triples.iter().map(|t| t.2.unwrap()).collect()),
            ratings: None,
        }
    }

    fn opts(min: usize) -> PrepOptions {
        PrepOptions {
            min_interactions: min,
            ..Default::default()
        }
    }

    #[test]
    fn latest_goes_to_test_and_train_is_time_ordered() {
        let r = rows(&[
            (7, 1, Some(30)),
            (7, 2, Some(10)),
            (7, 3, Some(20)),
            (9, 1, Some(5)),
            (9, 4, Some(6)),
        ]);
        let (ds, st) = prepare(&r, None, &opts(2)).unwrap();
        assert_eq!(ds.user_raw, vec!["7", "9"]);
        assert_eq!(ds.item_raw, vec!["1", "2", "3", "4"]);
        assert_eq!(ds.train_users, vec![0, 0, 1]);
        assert_eq!(ds.train_items, vec![1, 2, 0]); // items 2 (t10), 3 (t20); then user 9's item 1
        assert_eq!(ds.train_timestamps, Some(vec![10, 20, 5]));
        assert_eq!(ds.test_items, vec![0, 3]);
        assert_eq!(st.split, "latest");
    }

    #[test]
    fn ties_on_latest_time_pick_the_last_in_input() {
        let r = rows(&[
            (1, 5, Some(9)),
            (1, 6, Some(9)),
            (1, 7, Some(1)),
            (1, 8, Some(9)),
        ]);
        let (ds, _) = prepare(&r, None, &opts(1)).unwrap();
        assert_eq!(ds.item_raw[ds.test_items[0] as usize], "8");
        // Train keeps input order among equal times.
        let train: Vec<&str> = ds
            .train_items
            .iter()
            .map(|&i| ds.item_raw[i as usize].as_str())
            .collect();
        assert_eq!(train, vec!["7", "5", "6"]);
    }

    #[test]
    fn duplicates_keep_the_earliest() {
        let r = rows(&[
            (1, 5, Some(9)),
            (1, 5, Some(3)),
            (1, 6, Some(4)),
            (1, 5, Some(3)),
        ]);
        let (ds, st) = prepare(&r, None, &opts(1)).unwrap();
        assert_eq!(st.duplicates_dropped, 2);
        assert_eq!(ds.train_timestamps, Some(vec![3]));
        assert_eq!(ds.test_timestamps, Some(vec![4]));
    }

    #[test]
    fn small_users_are_dropped_and_counted_and_ids_stay_dense() {
        let r = rows(&[
            (1, 5, Some(1)),
            (2, 6, Some(1)),
            (2, 7, Some(2)),
            (3, 8, Some(1)),
            (3, 9, Some(2)),
        ]);
        let (ds, st) = prepare(&r, None, &opts(2)).unwrap();
        assert_eq!(st.users_dropped, 1);
        assert_eq!(st.rows_of_dropped_users, 1);
        assert_eq!(ds.user_raw, vec!["2", "3"]);
        assert_eq!(
            ds.item_raw,
            vec!["6", "7", "8", "9"],
            "item 5 only belonged to a dropped user"
        );
        assert!(
            prepare(&r, None, &opts(3)).is_err(),
            "nobody left is an error"
        );
    }

    #[test]
    fn min_rating_filters_and_an_emptied_user_is_counted() {
        let mut r = rows(&[
            (1, 5, Some(1)),
            (1, 6, Some(2)),
            (2, 5, Some(1)),
            (2, 6, Some(2)),
        ]);
        r.ratings = Some(vec![4.0, 5.0, 1.0, 2.0]);
        let o = PrepOptions {
            min_rating: Some(3.0),
            ..opts(1)
        };
        let (ds, st) = prepare(&r, None, &o).unwrap();
        assert_eq!(st.rows_below_min_rating, 2);
        assert_eq!(st.users_dropped, 1);
        assert_eq!(st.rows_of_dropped_users, 0);
        assert_eq!(ds.user_raw, vec!["1"]);
    }

    #[test]
    fn random_split_is_seeded() {
        let t: Vec<(u64, u64, Option<i64>)> = (0..50)
            .flat_map(|u| (0..30).map(move |i| (u, i, None)))
            .collect();
        let r = rows(&t);
        let (a, st) = prepare(&r, None, &opts(20)).unwrap();
        let (b, _) = prepare(&r, None, &opts(20)).unwrap();
        let (c, _) = prepare(
            &r,
            None,
            &PrepOptions {
                seed: 7,
                ..opts(20)
            },
        )
        .unwrap();
        assert_eq!(st.split, "random");
        assert_eq!(a.test_items, b.test_items);
        assert_ne!(a.test_items, c.test_items);
        assert!(
            a.test_items
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len()
                > 10
        );
        assert_eq!(a.train_users.len(), 50 * 29);
    }

    #[test]
    fn titles_follow_raw_ids() {
        let r = rows(&[(1, 5, Some(1)), (1, 6, Some(2))]);
        let titles: HashMap<String, String> = [("6".to_string(), "Six".to_string())].into();
        let (ds, _) = prepare(&r, Some(&titles), &opts(1)).unwrap();
        assert_eq!(ds.item_titles, Some(vec![None, Some("Six".into())]));
    }
}
