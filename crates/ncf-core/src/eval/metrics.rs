//! The one metrics module: HR@K and NDCG@K of a held-out item ranked among candidates, for the
//! sampled protocol (item vs. its test negatives) and for full ranking (item vs. every unseen item).
//!
//! Rank of the held-out item = the number of candidates NOT scoring strictly below it, so ties
//! count against it: a number never better than the model earns. NVIDIA's `ncf.py` and the
//! PyTorch peer count only strictly higher scores (`(s[:,1:] > s[:,:1])`, ties in its favour); the
//! NCF authors' `evaluate.py` breaks ties by Python dict order (`heapq.nlargest` over a dict keyed
//! by item id). All agree when the held-out item ties with none of its candidates. Ties do occur
//! (an MLP whose ReLUs are all off scores several items alike: up to 0.0008 HR@10 on the paper's
//! ml-1m models, benchmarks/results/2026-11-27-tied-scores), and a model that scores every item
//! alike (collapsed, e.g. by too much L2) would reach HR 1.0 in NVIDIA's way; here it gets 0.
//! A NaN score counts as higher than anything: a NaN held-out item ranks last, a NaN candidate
//! above it. Hit iff rank < K; NDCG = 1 / log2(rank + 2) on a hit, 0 otherwise. A negative equal
//! to the held-out item (the NCF paper's ml-1m file has 156 such rows) is skipped, not counted
//! against it. Sums are accumulated in f64; means are reported.

use crate::data::dataset::{as_bytes, Col};
use crate::data::ids::{self, IdIndex};
use crate::sampling::sampler::UserItems;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Does a candidate scoring `s` rank above a held-out item scoring `pos`? Unless it scores
/// strictly below: ties and NaNs (either side) count against the held-out item.
#[inline]
fn outranks(s: f32, pos: f32) -> bool {
    s.partial_cmp(&pos) != Some(std::cmp::Ordering::Less)
}

/// Rank of the held-out item: how many candidates do not score strictly below `pos_score`
/// (ties count against it). Candidates equal to `pos_item` are skipped. A NaN `pos_score` ranks
/// last (every candidate), a NaN candidate above it.
pub fn rank_of(pos_item: u32, pos_score: f32, candidates: &[u32], scores: &[f32]) -> usize {
    debug_assert_eq!(candidates.len(), scores.len());
    candidates
        .iter()
        .zip(scores)
        .filter(|&(&c, &s)| c != pos_item && outranks(s, pos_score))
        .count()
}

/// (hit, ndcg) of one held-out item at `rank` with cut-off `k`.
#[inline]
pub fn hit_ndcg(rank: usize, k: usize) -> (bool, f64) {
    if rank < k {
        (true, 1.0 / ((rank + 2) as f64).log2())
    } else {
        (false, 0.0)
    }
}

/// Running counts over users: how many users' held-out item ranked at each rank below K, and
/// how many users in all. Counts are integers, so merging accumulators (threads, ranks, chunks)
/// gives exactly the same HR and NDCG in any order or split.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Accumulator {
    pub k: usize,
    /// `at_rank[r]`: users whose held-out item ranked `r` (`r < k`).
    pub at_rank: Vec<u64>,
    pub users: u64,
}

impl Accumulator {
    pub fn new(k: usize) -> Self {
        Accumulator {
            k,
            at_rank: vec![0; k],
            users: 0,
        }
    }

    pub fn add_rank(&mut self, rank: usize) {
        if rank < self.k {
            self.at_rank[rank] += 1;
        }
        self.users += 1;
    }

    pub fn merge(&mut self, other: &Accumulator) {
        assert_eq!(self.k, other.k, "merging accumulators of different K");
        for (a, b) in self.at_rank.iter_mut().zip(&other.at_rank) {
            *a += b;
        }
        self.users += other.users;
    }

    /// Users with a hit.
    pub fn hits(&self) -> u64 {
        self.at_rank.iter().sum()
    }

    pub fn hr(&self) -> f64 {
        if self.users == 0 {
            0.0
        } else {
            self.hits() as f64 / self.users as f64
        }
    }

    pub fn ndcg(&self) -> f64 {
        if self.users == 0 {
            return 0.0;
        }
        let sum: f64 = (self.at_rank.iter().enumerate())
            .map(|(r, &n)| n as f64 * hit_ndcg(r, self.k).1)
            .sum();
        sum / self.users as f64
    }

    /// The counts as f64 (`[users, at_rank…]`, exact below 2^53) for a sum across ranks.
    pub fn to_f64s(&self) -> Vec<f64> {
        std::iter::once(self.users as f64)
            .chain(self.at_rank.iter().map(|&n| n as f64))
            .collect()
    }

    /// Inverse of [`Accumulator::to_f64s`].
    pub fn from_f64s(k: usize, x: &[f64]) -> Accumulator {
        assert_eq!(
            x.len(),
            k + 1,
            "accumulator of K {k} from {} numbers",
            x.len()
        );
        Accumulator {
            k,
            users: x[0] as u64,
            at_rank: x[1..].iter().map(|&n| n as u64).collect(),
        }
    }
}

/// Result of an evaluation, as `ncf-eval` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub hr: f64,
    pub ndcg: f64,
    pub k: usize,
    pub users: u64,
    /// Candidates per user (held-out item included); for full ranking the number of items.
    pub candidates: usize,
    /// "sampled" (held-out item vs. its negatives), "full" (vs. every unseen item) or "ranked".
    pub protocol: String,
}

impl Metrics {
    pub fn from_acc(acc: &Accumulator, candidates: usize, protocol: &str) -> Self {
        Metrics {
            hr: acc.hr(),
            ndcg: acc.ndcg(),
            k: acc.k,
            users: acc.users,
            candidates,
            protocol: protocol.to_string(),
        }
    }
}

/// What is ranked: one held-out item per row with `per_user` negatives each (row-major).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EvalSet {
    pub users: Col<u32>,
    pub items: Col<u32>,
    /// Mapped from `test_negatives.cols` for a dataset's test set: scored block by block, each
    /// block's pages released after it ([`Col::release`]).
    pub negatives: Col<u32>,
    pub per_user: usize,
}

impl EvalSet {
    /// SHA-256 (hex) of the set's users, items and negatives: tells two sets apart (checkpoints
    /// refuse to resume against another one).
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update((self.per_user as u64).to_le_bytes());
        for part in [&self.users, &self.items, &self.negatives] {
            h.update((part.len() as u64).to_le_bytes());
            let _ = part.scan(|_, block| {
                h.update(as_bytes(block));
                Ok::<(), ()>(())
            });
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Candidates per row, the held-out item included.
    pub fn candidates(&self) -> usize {
        self.per_user + 1
    }

    /// The dataset's test rows and test negatives; an error saying what to run when it has none.
    pub fn from_test(data: &crate::data::dataset::Dataset) -> Result<EvalSet> {
        if data.test_negatives_per_user == 0 || data.test_negatives.is_empty() {
            return Err(Error::invalid(
                "the dataset has no test negatives: run `ncf-negsample DATASET --test-negatives 100` first",
            ));
        }
        let set = EvalSet {
            users: data.test_users.clone(),
            items: data.test_items.clone(),
            negatives: data.test_negatives.clone(),
            per_user: data.test_negatives_per_user,
        };
        set.check()?;
        Ok(set)
    }

    /// At most `n` of the set's rows, spread evenly (row `⌊k·len/n⌋` for `k < n`): a
    /// deterministic sample of users to evaluate quickly (`ncf-eval --users N`); the whole set
    /// when `n` is not smaller.
    pub fn spread_sample(&self, n: usize) -> EvalSet {
        if n >= self.len() {
            return self.clone();
        }
        let rows = spread_rows(self.len(), n);
        let k = self.per_user;
        let mut set = EvalSet {
            per_user: k,
            ..Default::default()
        };
        let (users, items, negs) = (
            set.users.to_mut(),
            set.items.to_mut(),
            set.negatives.to_mut(),
        );
        // Released in large spans: a fault maps the pages around it too (fault-around), so
        // releasing each row's few bytes would leave most of what was touched resident.
        let mut released = 0;
        for r in rows {
            users.push(self.users[r]);
            items.push(self.items[r]);
            negs.extend_from_slice(&self.negatives[r * k..(r + 1) * k]);
            if (r + 1) * k - released >= crate::data::dataset::SCAN_BLOCK {
                self.negatives.release(released..(r + 1) * k);
                released = (r + 1) * k;
            }
        }
        self.negatives.release(released..self.negatives.len());
        set
    }

    fn check(&self) -> Result<()> {
        if self.users.len() != self.items.len()
            || self.negatives.len() != self.users.len() * self.per_user
        {
            return Err(Error::invalid(format!(
                "evaluation set: {} users, {} items and {} negatives do not fit {} negatives per user",
                self.users.len(),
                self.items.len(),
                self.negatives.len(),
                self.per_user
            )));
        }
        Ok(())
    }

    /// Reject a cut-off that every held-out item would trivially meet or that makes no sense.
    pub fn check_k(&self, k: usize) -> Result<()> {
        check_k(k, self.candidates())
    }
}

/// `n` of `len` rows spread evenly: row `⌊k·len/n⌋` for `k < min(n, len)`.
pub fn spread_rows(len: usize, n: usize) -> impl Iterator<Item = usize> {
    let n = n.min(len);
    (0..n).map(move |k| (k as u128 * len as u128 / n as u128) as usize)
}

/// K must be in 1..=candidates.
pub fn check_k(k: usize, candidates: usize) -> Result<()> {
    if k == 0 {
        return Err(Error::usage("K must be at least 1"));
    }
    if k > candidates {
        return Err(Error::usage(format!(
            "K = {k} is larger than the {candidates} candidates per user"
        )));
    }
    Ok(())
}

/// Pairs scored per call of the scorer (bounds the memory of an evaluation).
pub const SCORE_CHUNK: usize = 1 << 20;

/// HR@K / NDCG@K of `set` (sampled protocol). `score(users, items, out)` writes the logits of the
/// pairs; it is called with at most about [`SCORE_CHUNK`] pairs at a time, whole rows only.
pub fn evaluate<F>(set: &EvalSet, k: usize, score: F) -> Result<Metrics>
where
    F: FnMut(&[u32], &[u32], &mut [f32]) -> Result<()>,
{
    let acc = evaluate_rows(set, k, 0..set.len(), score)?;
    Ok(Metrics::from_acc(&acc, set.candidates(), "sampled"))
}

/// Rows `len · rank / world .. len · (rank + 1) / world`: rank `rank`'s share of `len` rows.
pub fn shard(len: usize, rank: usize, world: usize) -> std::ops::Range<usize> {
    assert!(rank < world, "rank {rank} of {world}");
    let at = |r: usize| (len as u128 * r as u128 / world as u128) as usize;
    at(rank)..at(rank + 1)
}

/// The counts of [`evaluate`] over rows `rows` of `set` only (one rank's shard: merge the
/// shards' accumulators for the whole set's metrics, exactly).
pub fn evaluate_rows<F>(
    set: &EvalSet,
    k: usize,
    rows: std::ops::Range<usize>,
    mut score: F,
) -> Result<Accumulator>
where
    F: FnMut(&[u32], &[u32], &mut [f32]) -> Result<()>,
{
    set.check()?;
    set.check_k(k)?;
    if rows.start > rows.end || rows.end > set.len() {
        return Err(Error::invalid(format!(
            "evaluation rows {rows:?} outside the {} rows of the set",
            set.len()
        )));
    }
    let m = set.candidates();
    let rows_per_chunk = (SCORE_CHUNK / m).max(1);
    let mut users = Vec::with_capacity(rows_per_chunk * m);
    let mut items = Vec::with_capacity(rows_per_chunk * m);
    let mut scores = Vec::new();
    let mut acc = Accumulator::new(k);
    for start in rows.clone().step_by(rows_per_chunk) {
        let end = (start + rows_per_chunk).min(rows.end);
        users.clear();
        items.clear();
        for r in start..end {
            users.extend(std::iter::repeat_n(set.users[r], m));
            items.push(set.items[r]);
            items.extend_from_slice(&set.negatives[r * set.per_user..(r + 1) * set.per_user]);
        }
        scores.clear();
        scores.resize(users.len(), 0.0);
        score(&users, &items, &mut scores)?;
        for (row, r) in (start..end).enumerate() {
            let s = &scores[row * m..(row + 1) * m];
            let c = &items[row * m..(row + 1) * m];
            acc.add_rank(rank_of(set.items[r], s[0], &c[1..], &s[1..]));
        }
        set.negatives
            .release(start * set.per_user..end * set.per_user);
    }
    Ok(acc)
}

/// HR@K / NDCG@K with full ranking: each held-out item (`users[r]`, `items[r]`) is ranked among
/// every item the user has not seen in training (`train`), the held-out item itself excepted.
/// `score` is called with every item of several users at a time (about [`SCORE_CHUNK`] pairs).
pub fn evaluate_full<F>(
    users: &[u32],
    held_out: &[u32],
    n_items: u32,
    train: &UserItems,
    k: usize,
    mut score: F,
) -> Result<Metrics>
where
    F: FnMut(&[u32], &[u32], &mut [f32]) -> Result<()>,
{
    if users.len() != held_out.len() {
        return Err(Error::invalid(
            "full ranking: users and held-out items differ in length",
        ));
    }
    check_k(k, n_items as usize)?;
    let n = n_items as usize;
    for (&user, &item) in users.iter().zip(held_out) {
        if item >= n_items || user as usize >= train.n_users() {
            return Err(Error::invalid(format!(
                "full ranking: user {user} / item {item} out of range"
            )));
        }
    }
    // Several users per call (about SCORE_CHUNK pairs), so the scorer can use its threads.
    let per_call = (SCORE_CHUNK / n).max(1);
    let mut u = Vec::with_capacity(per_call * n);
    let mut items = Vec::with_capacity(per_call * n);
    let mut scores = Vec::new();
    let mut acc = Accumulator::new(k);
    for (block, held) in users.chunks(per_call).zip(held_out.chunks(per_call)) {
        u.clear();
        items.clear();
        for &user in block {
            u.extend(std::iter::repeat_n(user, n));
            items.extend(0..n_items);
        }
        scores.clear();
        scores.resize(u.len(), 0.0);
        score(&u, &items, &mut scores)?;
        for ((&user, &item), scores) in block.iter().zip(held).zip(scores.chunks(n)) {
            let pos = scores[item as usize];
            let seen = train.of(user);
            // Every item that outranks it, less itself (a score always ties with itself) and
            // the training items among them.
            let above = scores.iter().filter(|&&s| outranks(s, pos)).count() - 1;
            let rank = above
                - seen
                    .iter()
                    .filter(|&&s| s != item && outranks(scores[s as usize], pos))
                    .count();
            acc.add_rank(rank);
        }
    }
    Ok(Metrics::from_acc(&acc, n, "full"))
}

/// HR@K / NDCG@K of an external ranking: `ranks[r]` is the 0-based rank a recommender gave the
/// held-out item of test row `r` (`None` when it was not in the list: a miss). `listed` is the
/// longest list seen (reported as `candidates`).
pub fn evaluate_ranked(ranks: &[Option<usize>], k: usize, listed: usize) -> Result<Metrics> {
    if k == 0 {
        return Err(Error::usage("K must be at least 1"));
    }
    let mut acc = Accumulator::new(k);
    for r in ranks {
        acc.add_rank(r.unwrap_or(usize::MAX));
    }
    Ok(Metrics::from_acc(&acc, listed, "ranked"))
}

/// Ranked lists read by [`parse_ranked`].
#[derive(Debug, PartialEq)]
pub struct Ranked {
    /// The 0-based rank of each test row's held-out item, `None` when its list lacks it.
    pub ranks: Vec<Option<usize>>,
    /// The longest list.
    pub longest: usize,
    /// Test users with at least one line.
    pub test_users_listed: usize,
}

/// Read a ranked list as TSV `user<TAB>rank<TAB>item[<TAB>anything]` (ranks 1-based, the format
/// `ncf-topk` prints; lines starting with `#` and a `user` header are skipped) and return the
/// 0-based rank of every test row's held-out item (`None` when absent), the longest list and how
/// many test users have a list. Ids are raw (looked up by [`IdIndex`]: integer ids trimmed, text
/// ids exactly) unless `dense`.
/// An input without a single list line is an error: it is what a failed command before a pipe
/// leaves, and scoring it would report HR 0 as a result. So is a user with one rank twice or one
/// item twice: ties and repeats would rank the held-out item better than the list does.
pub fn parse_ranked<R: std::io::BufRead>(
    r: R,
    what: &str,
    data: &crate::data::dataset::Dataset,
    dense: bool,
) -> Result<Ranked> {
    let users = IdIndex::users(data);
    let items = IdIndex::items(data);
    let mut listed: Vec<Listed> = Vec::new();
    for (n, line) in r.lines().enumerate() {
        let loc = || format!("{what}:{}", n + 1);
        let line = line.map_err(|e| Error::io(what, e))?;
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') || (n == 0 && line.starts_with("user")) {
            continue;
        }
        let mut f = line.split('\t');
        let (Some(u), Some(rank), Some(i)) = (f.next(), f.next(), f.next()) else {
            return Err(Error::parse(loc(), "expected `user<TAB>rank<TAB>item`"));
        };
        let lookup = |ix: &IdIndex, s: &str, n: u32| -> Result<u32> {
            if !dense {
                return ix.find_or_error(s, &loc());
            }
            s.trim()
                .parse::<u32>()
                .ok()
                .filter(|&x| x < n)
                .ok_or_else(|| {
                    Error::parse(
                        loc(),
                        format!("unknown {} id {} (dense)", ix.kind, ids::show(s)),
                    )
                })
        };
        let user = lookup(&users, u, data.n_users)?;
        let item = lookup(&items, i, data.n_items)?;
        let parsed = rank.trim().parse::<u32>().ok().filter(|&r| r >= 1);
        let rank = parsed.ok_or_else(|| {
            Error::parse(
                loc(),
                format!("rank {} is not a number in 1..2^32", ids::show(rank)),
            )
        })?;
        let line = u32::try_from(n + 1).unwrap_or(u32::MAX);
        listed.push(Listed {
            user,
            rank,
            item,
            line,
        });
    }
    if listed.is_empty() {
        return Err(ids::empty_input(
            what,
            "ranked lines (`user<TAB>rank<TAB>item`, as ncf-topk prints them)",
        ));
    }
    check_distinct(&mut listed, what, &users, &items)?;
    // test row of each user (one held-out item per user)
    let mut row_of = vec![usize::MAX; data.n_users as usize];
    for (r, &u) in data.test_users.iter().enumerate() {
        row_of[u as usize] = r;
    }
    let mut ranks = vec![None; data.test_users.len()];
    let mut count = vec![0usize; data.n_users as usize];
    for l in &listed {
        count[l.user as usize] += 1;
        let row = row_of[l.user as usize];
        if row != usize::MAX && data.test_items[row] == l.item {
            ranks[row] = Some(l.rank as usize - 1);
        }
    }
    let test_users_listed = data
        .test_users
        .iter()
        .filter(|&&u| count[u as usize] > 0)
        .count();
    Ok(Ranked {
        ranks,
        longest: count.into_iter().max().unwrap_or(0),
        test_users_listed,
    })
}

/// One line of a ranked list (dense ids, 1-based rank, 1-based line number).
#[derive(Clone, Copy, Debug)]
struct Listed {
    user: u32,
    rank: u32,
    item: u32,
    line: u32,
}

/// `Err` naming the first line (in input order) that gives one of its user's ranks again, or
/// one of its user's items again. Sorted in place (by user, then item).
fn check_distinct(
    listed: &mut [Listed],
    what: &str,
    users: &IdIndex,
    items: &IdIndex,
) -> Result<()> {
    // (the later line, the message) of the earliest repeat seen so far
    let mut first: Option<(u32, String)> = None;
    let mut keep = |line: u32, msg: &dyn Fn() -> String| {
        if first.as_ref().is_none_or(|(l, _)| line < *l) {
            first = Some((line, msg()));
        }
    };
    listed.sort_unstable_by_key(|l| (l.user, l.rank, l.line));
    for w in listed.windows(2) {
        let (a, b) = (w[0], w[1]);
        if (a.user, a.rank) == (b.user, b.rank) && a.item != b.item {
            keep(b.line, &|| {
                format!(
                    "user {}: rank {} again (line {} gives it to item {}, this line to item {}): \
                     each rank once per user, as a tie would give the held-out item the best of \
                     the tied places (list tied items at consecutive ranks)",
                    users.show_dense(b.user),
                    b.rank,
                    a.line,
                    items.show_dense(a.item),
                    items.show_dense(b.item)
                )
            });
        }
    }
    listed.sort_unstable_by_key(|l| (l.user, l.item, l.line));
    for w in listed.windows(2) {
        let (a, b) = (w[0], w[1]);
        if (a.user, a.item) == (b.user, b.item) {
            keep(b.line, &|| {
                format!(
                    "user {}: item {} listed again (line {} ranks it {}, this line {}): each \
                     item once per user, as a repeat would give the held-out item the better of \
                     its ranks",
                    users.show_dense(b.user),
                    items.show_dense(b.item),
                    a.line,
                    a.rank,
                    b.rank
                )
            });
        }
    }
    match first {
        Some((line, msg)) => Err(Error::parse(format!("{what}:{line}"), msg)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn ties_count_against_the_positive() {
        // positive scores 0.5; two negatives tie, one is higher
        assert_eq!(rank_of(7, 0.5, &[1, 2, 3, 4], &[0.5, 0.9, 0.5, 0.1]), 3);
        assert_eq!(rank_of(7, 0.5, &[1, 2], &[0.5, 0.5]), 2);
        assert_eq!(rank_of(7, 0.5, &[1, 2], &[0.4, 0.1]), 0);
    }

    #[test]
    fn a_nan_candidate_ranks_above_the_positive() {
        assert_eq!(rank_of(7, 0.5, &[1, 2, 3], &[f32::NAN, 0.1, 0.2]), 1);
    }

    #[test]
    fn a_model_that_scores_every_item_alike_hits_nothing() {
        // a collapsed model (every score equal) must not look perfect: sampled and full HR 0
        let set = toy_set();
        let m = evaluate(&set, 2, |_, _, out: &mut [f32]| {
            out.fill(0.25);
            Ok(())
        })
        .unwrap();
        assert_eq!((m.hr, m.ndcg), (0.0, 0.0));
        let train = UserItems::new(2, &[0, 1], &[0, 1]);
        let m = evaluate_full(&[0, 1], &[2, 3], 6, &train, 2, |_, _, out: &mut [f32]| {
            out.fill(-3.0);
            Ok(())
        })
        .unwrap();
        assert_eq!((m.hr, m.ndcg), (0.0, 0.0));
    }

    #[test]
    fn a_negative_equal_to_the_positive_is_skipped() {
        // item 7 appears among its own negatives with a (different) higher score: not counted
        assert_eq!(rank_of(7, 0.5, &[7, 2, 3], &[0.9, 0.8, 0.1]), 1);
    }

    #[test]
    fn nan_positive_ranks_last() {
        assert_eq!(rank_of(7, f32::NAN, &[1, 2, 7], &[0.0, 0.0, 0.0]), 2);
    }

    #[test]
    fn hit_and_ndcg_by_hand() {
        assert_eq!(hit_ndcg(0, 1), (true, 1.0));
        assert_eq!(hit_ndcg(1, 1), (false, 0.0));
        let (h, n) = hit_ndcg(2, 10);
        assert!(h && close(n, 0.5)); // 1/log2(4)
        let (h, n) = hit_ndcg(9, 10);
        assert!(h && close(n, 1.0 / 11f64.log2()));
        assert_eq!(hit_ndcg(10, 10), (false, 0.0));
    }

    #[test]
    fn shards_merge_to_exactly_the_whole() {
        // 97 users, 5 candidates each, scores from a hash: any split into shards, merged in any
        // order, gives the same bits as one pass.
        let n = 97u32;
        let set = EvalSet {
            users: (0..n).collect(),
            items: (0..n).map(|u| 100 + u).collect(),
            negatives: (0..n * 4).map(|x| 1000 + x).collect(),
            per_user: 4,
        };
        let score = |u: &[u32], i: &[u32], o: &mut [f32]| -> Result<()> {
            for ((o, &u), &i) in o.iter_mut().zip(u).zip(i) {
                let h = (u.wrapping_mul(2654435761) ^ i.wrapping_mul(40503)) % 1000;
                *o = h as f32 / 1000.0;
            }
            Ok(())
        };
        let whole = evaluate(&set, 3, score).unwrap();
        assert!(whole.hr > 0.0 && whole.hr < 1.0, "{whole:?}");
        for world in [2usize, 3, 7] {
            let mut acc = Accumulator::new(3);
            for rank in (0..world).rev() {
                let rows = shard(set.len(), rank, world);
                acc.merge(&evaluate_rows(&set, 3, rows, score).unwrap());
            }
            let back = Accumulator::from_f64s(3, &acc.to_f64s());
            assert_eq!(back, acc);
            let merged = Metrics::from_acc(&acc, set.candidates(), "sampled");
            assert_eq!(merged, whole, "{world} shards");
        }
        let covered: usize = (0..5).map(|r| shard(13, r, 5).len()).sum();
        assert_eq!(covered, 13);
        assert!(evaluate_rows(&set, 3, 90..98, score).is_err());
    }

    #[test]
    fn a_spread_sample_is_every_row_at_even_steps() {
        assert_eq!(spread_rows(10, 3).collect::<Vec<_>>(), [0, 3, 6]);
        assert_eq!(spread_rows(3, 5).collect::<Vec<_>>(), [0, 1, 2]);
        let n = 7u32;
        let set = EvalSet {
            users: (0..n).collect(),
            items: (0..n).map(|u| 100 + u).collect(),
            negatives: (0..n * 2).map(|x| 1000 + x).collect(),
            per_user: 2,
        };
        let s = set.spread_sample(3);
        assert_eq!(s.users, [0, 2, 4]);
        assert_eq!(s.items, [100, 102, 104]);
        assert_eq!(s.negatives, [1000, 1001, 1004, 1005, 1008, 1009]);
        assert_eq!(set.spread_sample(9), set);
    }

    fn toy_set() -> EvalSet {
        // two users, 3 negatives each
        EvalSet {
            users: vec![0, 1].into(),
            items: vec![10, 11].into(),
            negatives: vec![1, 2, 3, 4, 5, 6].into(),
            per_user: 3,
        }
    }

    /// score = item id for user 0 (positive 10 is best), minus item id for user 1 (11 is worst).
    fn toy_score(u: &[u32], i: &[u32], out: &mut [f32]) -> Result<()> {
        for k in 0..u.len() {
            out[k] = if u[k] == 0 {
                i[k] as f32
            } else {
                -(i[k] as f32)
            };
        }
        Ok(())
    }

    #[test]
    fn evaluate_at_the_edges_of_k() {
        let set = toy_set();
        // K = 1: user 0 hits at rank 0, user 1 misses at rank 3
        let m = evaluate(&set, 1, toy_score).unwrap();
        assert!(close(m.hr, 0.5) && close(m.ndcg, 0.5), "{m:?}");
        assert_eq!(
            (m.users, m.candidates, m.protocol.as_str()),
            (2, 4, "sampled")
        );
        // K = candidates: every rank < 4 hits
        let m = evaluate(&set, 4, toy_score).unwrap();
        assert!(close(m.hr, 1.0));
        assert!(close(m.ndcg, (1.0 + 1.0 / 5f64.log2()) / 2.0), "{m:?}");
        // K > candidates and K = 0 are errors
        assert!(evaluate(&set, 5, toy_score).is_err());
        assert!(evaluate(&set, 0, toy_score).is_err());
    }

    #[test]
    fn evaluate_chunks_whole_rows() {
        // many rows so that several chunks are needed
        let rows = SCORE_CHUNK / 4 + 3;
        let set = EvalSet {
            users: vec![0; rows].into(),
            items: vec![10; rows].into(),
            negatives: (0..rows * 3)
                .map(|x| (x % 3) as u32 + if x % 6 == 0 { 20 } else { 0 })
                .collect(),
            per_user: 3,
        };
        let mut calls = 0;
        let m = evaluate(&set, 1, |u, i, o| {
            calls += 1;
            assert_eq!(u.len() % 4, 0);
            toy_score(u, i, o)
        })
        .unwrap();
        assert!(calls >= 2);
        // rows with an even index have negative 20 > 10: misses at K=1
        assert!(close(m.hr, (rows / 2) as f64 / rows as f64), "{m:?}");
    }

    #[test]
    fn full_ranking_excludes_train_items() {
        // 6 items, score = item id; user 0 held out item 3, trained on items 4 and 1
        let train = UserItems::new(1, &[0, 0], &[4, 1]);
        let score = |_: &[u32], i: &[u32], o: &mut [f32]| {
            for (o, &i) in o.iter_mut().zip(i) {
                *o = i as f32;
            }
            Ok(())
        };
        // unseen items beating 3: only 5 (4 is a train item) → rank 1
        let m = evaluate_full(&[0], &[3], 6, &train, 1, score).unwrap();
        assert_eq!(m.hr, 0.0);
        let m = evaluate_full(&[0], &[3], 6, &train, 2, score).unwrap();
        assert!(close(m.hr, 1.0) && close(m.ndcg, 1.0 / 3f64.log2()) && m.protocol == "full");
        assert!(evaluate_full(&[0], &[3], 6, &train, 7, score).is_err());
        // HR@k of the held-out 3 when each item scores f(item)
        let hr = |k: usize, f: fn(u32) -> f32| {
            let by_item = |_: &[u32], i: &[u32], o: &mut [f32]| {
                for (o, &i) in o.iter_mut().zip(i) {
                    *o = f(i);
                }
                Ok(())
            };
            evaluate_full(&[0], &[3], 6, &train, k, by_item).unwrap().hr
        };
        // item 5 ties with the held-out 3 (counts against it), train item 4 ties too (skipped)
        let tied = |i| if i >= 3 { 3.0 } else { 0.0 };
        assert_eq!(hr(1, tied), 0.0);
        assert_eq!(hr(2, tied), 1.0);
        // a NaN held-out score ranks last among the 3 unseen items: rank 3
        let nan = |i| if i == 3 { f32::NAN } else { 0.0 };
        assert_eq!(hr(3, nan), 0.0);
        assert_eq!(hr(4, nan), 1.0);
    }

    #[test]
    fn ranked_lists() {
        let m = evaluate_ranked(&[Some(0), Some(2), None], 3, 3).unwrap();
        assert!(close(m.hr, 2.0 / 3.0));
        assert!(close(m.ndcg, (1.0 + 0.5) / 3.0));
        assert_eq!(m.candidates, 3);
        assert!(close(evaluate_ranked(&[Some(2)], 2, 3).unwrap().hr, 0.0));
    }

    #[test]
    fn parse_ranked_raw_and_dense() {
        let data = crate::data::dataset::Dataset {
            n_users: 2,
            n_items: 3,
            test_users: vec![0, 1].into(),
            test_items: vec![2, 0].into(),
            user_raw: vec!["u1".into(), "u2".into()],
            item_raw: vec!["a".into(), "b".into(), "c".into()],
            ..Default::default()
        };
        let text = "user\trank\titem\nu1\t1\ta\t0.9\nu1\t2\tc\nu2\t1\tb\n";
        let r = parse_ranked(text.as_bytes(), "x", &data, false).unwrap();
        assert_eq!((r.ranks, r.longest), (vec![Some(1), None], 2));
        assert_eq!(r.test_users_listed, 2);
        let r = parse_ranked("1\t3\t0\n".as_bytes(), "x", &data, true).unwrap();
        assert_eq!(r.ranks, vec![None, Some(2)]);
        assert_eq!(r.test_users_listed, 1);
        for empty in ["", "\n", "user\trank\titem\n", "# nothing\n"] {
            let err = parse_ranked(empty.as_bytes(), "x", &data, false).unwrap_err();
            assert!(err.to_string().contains("x: no ranked lines"), "{err}");
        }
        let err = parse_ranked("zz\t1\ta\n".as_bytes(), "x", &data, false).unwrap_err();
        assert!(err.to_string().contains("x:1: unknown user id zz"), "{err}");
        assert!(parse_ranked("u1\t0\ta\n".as_bytes(), "x", &data, false).is_err());
        assert!(parse_ranked("u1 1 a\n".as_bytes(), "x", &data, false).is_err());
    }

    #[test]
    fn parse_ranked_refuses_tied_ranks_and_repeated_items() {
        let data = crate::data::dataset::Dataset {
            n_users: 2,
            n_items: 3,
            test_users: vec![0, 1].into(),
            test_items: vec![2, 0].into(),
            user_raw: vec!["u1".into(), "u 2".into()],
            item_raw: vec!["a".into(), "b".into(), "c".into()],
            ..Default::default()
        };
        let parse = |t: &str| parse_ranked(t.as_bytes(), "x", &data, false);
        // every item "rank 1": the held-out item c would hit at K = 1
        let err = parse("u1\t1\ta\nu1\t1\tc\n").unwrap_err().to_string();
        assert!(
            err.contains("x:2: user u1: rank 1 again (line 1 gives it to item a"),
            "{err}"
        );
        // the same item twice: its best rank must not be taken
        let err = parse("u 2\t1\tb\nu 2\t3\tc\nu 2\t2\tb\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("x:3: user \"u 2\": item b listed again (line 1 ranks it 1"),
            "{err}"
        );
        // the earliest repeat in the input is named, whatever the users' order
        let err = parse("u 2\t1\ta\nu1\t1\ta\nu1\t1\tb\nu 2\t1\tb\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("x:3: user u1: rank 1 again"), "{err}");
        // distinct ranks with gaps and users interleaved are fine
        let r = parse("u1\t2\ta\nu 2\t1\ta\nu1\t5\tc\n").unwrap();
        assert_eq!(r.ranks, vec![Some(4), Some(0)]);
    }
}
