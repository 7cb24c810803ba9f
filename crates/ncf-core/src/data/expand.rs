//! A real dataset expanded to K times its users and M times its items (`ncf-prep INPUT --expand
//! KxM`), in the spirit of Belletti et al. 2019, "Scalable realistic recommendation datasets
//! through fractal expansions" (the method behind MLPerf's ml-20mx16x32): the expanded
//! interaction matrix is, in expectation, the Kronecker product `P ⊗ R` of a small random K×M
//! matrix `P` of keep probabilities with the real user×item matrix `R`.
//!
//! Expanded user `(u, a)` (a < K) and expanded item `(i, b)` (b < M) interact at the time of the
//! real interaction `(u, i, t)` when a seeded draw keeps copy `(a, b)` of it, with probability
//! `p_ab = x_a · y_b / 8` where `x_a`, `y_b` are drawn uniformly in [0.5, 1.5) (mean 1): so every
//! block of the product is a thinned copy of `R` with its own intensity, and on average one copy
//! in 8 is kept (16x32 multiplies the interactions by 64, users' counts by 4 and items' by 2,
//! close to MLPerf's 61, 3.8 and 1.9). Expanded raw ids are `u·K + a` and `i·M + b` (integer
//! raw ids only), so the expansion reads as a ratings file whose preparation (the `--min-
//! interactions` filter, dense ids, leave-one-out) is the usual one; its rows are drawn twice
//! (items used, then the rows) and streamed into the dataset, in memory bounded by the real
//! data, not by K·M.

use crate::data::dataset::{Meta, Provenance, StreamWriter};
use crate::data::ingest::{Interactions, RawIds};
use crate::data::prep::{drop_duplicates, group_by_user, sort_by_time, PrepOptions, PrepStats};
use crate::io::AtomicDir;
use crate::sampling::rng::{below, stream, Rng};
use crate::{Error, Result};

/// The counter word of the keep draws (stream SYNTH; synthetic data uses 0 and 1).
const KEEP_WORD: u32 = 7;
/// Mean keep probability of a copy.
const DENSITY: f64 = 1.0 / 8.0;

/// Parse `KxM` (users times, items times).
pub fn parse_factors(s: &str) -> Result<(u32, u32)> {
    let bad = || {
        Error::usage(format!(
            "--expand `{s}`: expected KxM, e.g. 16x32 (K, M >= 1)"
        ))
    };
    let (k, m) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let k: u32 = k.trim().parse().map_err(|_| bad())?;
    let m: u32 = m.trim().parse().map_err(|_| bad())?;
    if k == 0 || m == 0 || k as u64 * m as u64 > 1 << 16 {
        return Err(bad());
    }
    Ok((k, m))
}

/// The keep probabilities `p[a * M + b]` of the K×M matrix.
fn keep_matrix(rng: &Rng, k: u32, m: u32) -> Vec<f64> {
    let x: Vec<f64> = (0..k)
        .map(|a| 0.5 + rng.uniform_f64(stream::SYNTH, a, u32::MAX, KEEP_WORD))
        .collect();
    let y: Vec<f64> = (0..m)
        .map(|b| 0.5 + rng.uniform_f64(stream::SYNTH, u32::MAX, b, KEEP_WORD))
        .collect();
    let mut p = Vec::with_capacity((k * m) as usize);
    for xa in &x {
        for yb in &y {
            p.push((xa * yb * DENSITY).min(1.0));
        }
    }
    p
}

/// The real rows of one user (input row numbers, in prepared order) and the expansion.
struct Expander<'a> {
    rows: &'a Interactions,
    rng: Rng,
    m: u32,
    p: Vec<f64>,
}

impl Expander<'_> {
    /// The rows of expanded user `(.., a)` from the real user's `list`: (item code · M + b,
    /// time), in time, input row, b order.
    fn user(&self, list: &[u32], a: u32, out: &mut Vec<(u64, i64)>) {
        out.clear();
        let ts = self.rows.timestamps.as_deref();
        for &r in list {
            let item = self.rows.items[r as usize] as u64;
            let t = ts.map_or(0, |t| t[r as usize]);
            for b in 0..self.m {
                let p = self.p[(a * self.m + b) as usize];
                let x = self
                    .rng
                    .uniform_f64(stream::SYNTH, r, a * self.m + b, KEEP_WORD);
                if x < p {
                    out.push((item * self.m as u64 + b as u64, t));
                }
            }
        }
    }
}

/// Counts of a distribution for the docs' chart: sorted descending, at ranks 1, 2, 3, ... up to
/// 10 then about 20 per decade.
fn curve(mut counts: Vec<u64>) -> serde_json::Value {
    counts.retain(|&c| c > 0);
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let mut pts = Vec::new();
    let mut r = 1usize;
    while r <= counts.len() {
        pts.push(serde_json::json!([r, counts[r - 1]]));
        let step = ((r as f64) * 0.12).ceil() as usize;
        r += step.max(1);
    }
    if let Some(&last) = counts.last() {
        pts.push(serde_json::json!([counts.len(), last]));
    }
    let n = counts.len().max(1) as f64;
    let mean = counts.iter().sum::<u64>() as f64 / n;
    serde_json::json!({"n": counts.len(), "mean": mean, "max": counts.first(),
        "median": counts.get(counts.len() / 2), "ranked": pts})
}

/// Expand `rows` by `factors` (K, M) and prepare the expansion into `dir` with `opts` (the
/// `--min-rating` filter and duplicates apply to the real rows, the rest to the expanded ones).
/// `prov` makes meta.json's parts from the counts and the distributions before and after (for
/// the docs); `progress` gets (train rows written, in all).
pub fn expand_dataset(
    rows: &Interactions,
    factors: (u32, u32),
    opts: &PrepOptions,
    dir: &AtomicDir,
    prov: impl FnOnce(&PrepStats, serde_json::Value) -> Provenance,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Meta, PrepStats)> {
    let (k, m) = factors;
    let (RawIds::Int(user_ids), RawIds::Int(item_ids)) = (&rows.user_ids, &rows.item_ids) else {
        return Err(Error::usage("--expand needs integer user and item ids"));
    };
    let too_big = |ids: &[u64], f: u32| {
        ids.last()
            .is_some_and(|&v| v.checked_mul(f as u64).is_none())
    };
    if too_big(user_ids, k) || too_big(item_ids, m) {
        return Err(Error::usage(
            "--expand: raw ids times the factor overflow 64 bits",
        ));
    }
    if opts.min_rating.is_some() && rows.ratings.is_none() {
        return Err(Error::usage("--min-rating needs a rating column"));
    }
    let mut real = PrepStats::default();
    let mut by_user = group_by_user(rows, opts, &mut real);
    if let Some(ts) = rows.timestamps.as_deref() {
        sort_by_time(&mut by_user, ts);
    }
    drop_duplicates(rows, &mut by_user, &mut real);
    let rng = Rng::new(opts.seed);
    let ex = Expander {
        rows,
        rng,
        m,
        p: keep_matrix(&rng, k, m),
    };
    let n_codes = rows.user_ids.len();
    let min = opts.min_interactions.max(1);
    // Pass 1: counts of every expanded user, the items kept users use.
    let n_items = item_ids.len() * m as usize;
    let mut used = vec![false; n_items];
    let mut kept = Vec::new();
    let mut expanded_rows = 0u64;
    let mut stats = PrepStats {
        users_in_input: n_codes as u64 * k as u64,
        items_in_input: n_items as u64,
        split: if rows.timestamps.is_some() {
            "latest"
        } else {
            "random"
        }
        .into(),
        ..Default::default()
    };
    let mut real_user_counts = Vec::new();
    let mut expanded_user_counts = Vec::new();
    let mut list = Vec::new();
    for u in 0..n_codes {
        let real_rows = by_user.row(u);
        if !real_rows.is_empty() {
            real_user_counts.push(real_rows.len() as u64);
        }
        for a in 0..k {
            ex.user(real_rows, a, &mut list);
            expanded_rows += list.len() as u64;
            if list.len() >= min {
                kept.push((u as u32, a));
                list.iter().for_each(|r| used[r.0 as usize] = true);
                expanded_user_counts.push(list.len() as u64);
                stats.train += list.len() as u64 - 1;
            } else {
                stats.users_dropped += 1;
                stats.rows_of_dropped_users += list.len() as u64;
            }
        }
    }
    stats.rows_read = expanded_rows;
    if kept.is_empty() {
        return Err(Error::invalid(format!(
            "--expand {k}x{m}: no expanded user has at least {min} interactions: lower \
             --min-interactions"
        )));
    }
    let mut item_dense = vec![u32::MAX; n_items];
    let mut item_raw = Vec::new();
    for (x, &u) in used.iter().enumerate() {
        if u {
            item_dense[x] = item_raw.len() as u32;
            let (i, b) = (x / m as usize, x % m as usize);
            item_raw.push((item_ids[i] * m as u64 + b as u64).to_string());
        }
    }
    drop(used);
    stats.users = kept.len() as u64;
    stats.items = item_raw.len() as u64;
    stats.test = kept.len() as u64;
    // The distributions before and after, for the docs.
    let mut real_items = vec![0u64; item_ids.len()];
    let mut exp_items = vec![0u64; item_raw.len()];
    for u in 0..n_codes {
        for &r in by_user.row(u) {
            real_items[rows.items[r as usize] as usize] += 1;
        }
    }
    let with_time = rows.timestamps.is_some();
    let mut w = StreamWriter::new(dir, stats.train, with_time)?;
    // Pass 2: the rows again, split and written.
    let mut user_raw = Vec::with_capacity(kept.len());
    for (dense, &(u, a)) in kept.iter().enumerate() {
        let dense = dense as u32;
        ex.user(by_user.row(u as usize), a, &mut list);
        user_raw.push((user_ids[u as usize] * k as u64 + a as u64).to_string());
        let held = match with_time {
            true => list.len() - 1,
            false => below(rng.word(stream::SPLIT, dense, 0, 0), list.len() as u32) as usize,
        };
        for (j, &(x, t)) in list.iter().enumerate() {
            let item = item_dense[x as usize];
            exp_items[item as usize] += 1;
            let t = with_time.then_some(t);
            if j == held {
                w.push_test(dense, item, t);
            } else {
                w.push_train(dense, item, t)?;
            }
        }
        if dense.is_multiple_of(1 << 14) {
            progress(w.pushed(), stats.train);
        }
    }
    let dist = serde_json::json!({
        "before": {"user_counts": curve(real_user_counts), "item_counts": curve(real_items),
            "rows": by_user.nnz()},
        "after": {"user_counts": curve(expanded_user_counts), "item_counts": curve(exp_items),
            "rows": stats.train + stats.test},
        "real": real,
    });
    let provenance = prov(&stats, dist);
    let meta = w.finish(user_raw, item_raw, None, provenance)?;
    Ok((meta, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_parse_and_the_keep_matrix_has_mean_one_eighth() {
        assert_eq!(parse_factors("16x32").unwrap(), (16, 32));
        assert!(parse_factors("0x3").is_err() && parse_factors("16").is_err());
        let p = keep_matrix(&Rng::new(1), 64, 64);
        let mean = p.iter().sum::<f64>() / p.len() as f64;
        assert!((mean - 0.125).abs() < 0.01, "{mean}");
        assert!(p.iter().all(|&x| (1.0 / 32.0..=9.0 / 32.0).contains(&x)));
    }
}
