//! Synthetic rating data shaped like MovieLens (`ncf-prep --synthetic`): every user has at least
//! 20 distinct items, item popularity follows a power law, and each user's ratings carry
//! increasing timestamps. A pure function of (shape, seed) via Rng stream SYNTH.

use crate::data::dataset::{Meta, Provenance, StreamWriter};
use crate::data::ingest::{Interactions, RawIds};
use crate::data::prep::PrepStats;
use crate::sampling::rng::{below, stream, Rng};
use crate::{Error, Result};
use std::io::Write;

/// ml-20m's shape: users, items, interactions.
pub const ML20M_SHAPE: (u32, u32, u64) = (138_493, 26_744, 20_000_263);
/// Every synthetic user has at least this many interactions.
pub const MIN_PER_USER: u64 = 20;
/// Zipf exponent of item popularity.
const ZIPF: f64 = 0.9;
/// First timestamp (2000-01-01) and the spread of users' first ratings (10 years).
const T0: i64 = 946_684_800;
const T_SPREAD: u32 = 10 * 365 * 86_400;

/// Parse `USERS,ITEMS,INTERACTIONS`.
pub fn parse_shape(s: &str) -> Result<(u32, u32, u64)> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let bad = || {
        Error::usage(format!(
            "--synthetic `{s}`: expected USERS,ITEMS,INTERACTIONS"
        ))
    };
    if parts.len() != 3 {
        return Err(bad());
    }
    Ok((
        parts[0].parse().map_err(|_| bad())?,
        parts[1].parse().map_err(|_| bad())?,
        parts[2].parse().map_err(|_| bad())?,
    ))
}

/// How many interactions each user gets: 20 each, the rest in proportion to heavy-tailed
/// weights, capped at `cap` (distinct items), summing exactly to `total`.
fn user_counts(rng: &Rng, users: u32, cap: u64, total: u64) -> Vec<u64> {
    let weights: Vec<f64> = (0..users)
        .map(|u| {
            let x = rng.uniform_f64(stream::SYNTH, u, u32::MAX, 0);
            1.0 / (0.02 + x)
        })
        .collect();
    let mut counts = vec![MIN_PER_USER; users as usize];
    let mut left = total - MIN_PER_USER * users as u64;
    for _ in 0..64 {
        let open: Vec<usize> = (0..users as usize).filter(|&u| counts[u] < cap).collect();
        if left == 0 || open.is_empty() {
            break;
        }
        if left < open.len() as u64 {
            for &u in open.iter().take(left as usize) {
                counts[u] += 1;
            }
            left = 0;
            break;
        }
        let w: f64 = open.iter().map(|&u| weights[u]).sum();
        let share = left as f64;
        let mut given = 0;
        for &u in &open {
            let add = ((share * weights[u] / w).floor() as u64).min(cap - counts[u]);
            counts[u] += add;
            given += add;
        }
        left -= given;
    }
    // Whatever rounding left over goes one by one to users with room.
    let mut u = 0;
    while left > 0 {
        if counts[u] < cap {
            counts[u] += 1;
            left -= 1;
        }
        u = (u + 1) % users as usize;
    }
    counts
}

/// Refuse a shape no generation can meet.
fn check_shape(users: u32, items: u32, interactions: u64) -> Result<()> {
    // Each user rates MIN_PER_USER distinct items and at most half of them: fewer items leave
    // no number of interactions to ask for.
    if users == 0 || (items as u64) < 2 * MIN_PER_USER {
        return Err(Error::usage(format!(
            "--synthetic {users},{items},{interactions}: needs users >= 1 and items >= {} (each \
             user rates at least {MIN_PER_USER} distinct items, at most half of them)",
            2 * MIN_PER_USER
        )));
    }
    if interactions < MIN_PER_USER * users as u64 || interactions > users as u64 * items as u64 / 2
    {
        return Err(Error::usage(format!(
            "--synthetic {users},{items},{interactions}: interactions must be between {} (20 per \
             user) and {} (half of users x items)",
            MIN_PER_USER * users as u64,
            users as u64 * items as u64 / 2
        )));
    }
    if interactions > u32::MAX as u64 {
        return Err(Error::usage(
            "--synthetic: at most 4,294,967,295 interactions",
        ));
    }
    Ok(())
}

/// Users, items, timestamps, ratings of one thread's users.
type Columns = (Vec<u32>, Vec<u32>, Vec<i64>, Vec<f32>);

/// Generate `interactions` rows for `users` users over `items` items. Rows are sorted by user,
/// then item (like ml-20m's ratings.csv); raw ids are 1-based; ratings are half stars.
pub fn generate(users: u32, items: u32, interactions: u64, seed: u64) -> Result<Interactions> {
    let g = Generator::new(users, items, interactions, seed)?;
    let counts = &g.counts;
    let threads = threads();
    let bounds: Vec<u32> = (0..=threads)
        .map(|t| (users as u64 * t as u64 / threads as u64) as u32)
        .collect();
    let parts: Vec<Columns> = std::thread::scope(|s| {
        let hs: Vec<_> = bounds
            .windows(2)
            .map(|w| {
                let (lo, hi) = (w[0], w[1]);
                let g = &g;
                s.spawn(move || {
                    let n: u64 = counts[lo as usize..hi as usize].iter().sum();
                    let mut out = (
                        Vec::with_capacity(n as usize),
                        Vec::with_capacity(n as usize),
                        Vec::with_capacity(n as usize),
                        Vec::with_capacity(n as usize),
                    );
                    let mut taken = vec![u32::MAX; items as usize];
                    let mut mine: Vec<(u32, i64, f32)> = Vec::new();
                    for u in lo..hi {
                        g.user(u, &mut taken, &mut mine);
                        mine.sort_unstable_by_key(|m| m.0);
                        for &(item, t, r) in &mine {
                            out.0.push(u);
                            out.1.push(item);
                            out.2.push(t);
                            out.3.push(r);
                        }
                    }
                    out
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("synth thread"))
            .collect()
    });
    let mut rows = Interactions {
        users: Vec::with_capacity(interactions as usize),
        items: Vec::with_capacity(interactions as usize),
        user_ids: RawIds::Int((1..=users as u64).collect()),
        item_ids: RawIds::Int((1..=items as u64).collect()),
        timestamps: Some(Vec::with_capacity(interactions as usize)),
        ratings: Some(Vec::with_capacity(interactions as usize)),
    };
    for (u, i, t, r) in parts {
        rows.users.extend(u);
        rows.items.extend(i);
        rows.timestamps.as_mut().unwrap().extend(t);
        rows.ratings.as_mut().unwrap().extend(r);
    }
    Ok(rows)
}

/// Threads generating users.
fn threads() -> u32 {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8) as u32
}

/// Everything a user's rows are drawn from: a pure function of (shape, seed).
struct Generator {
    rng: Rng,
    items: u32,
    /// Interactions of each user.
    counts: Vec<u64>,
    /// Cumulative power-law weights of popularity ranks.
    cdf: Vec<f64>,
    /// Where the search of `cdf` for a draw `x` starts, `guide[b]`, and ends, `guide[b + 1]`,
    /// with `b = x * scale` (buckets of equal width over `cdf`'s range; see [`Generator::rank`]).
    guide: Vec<u32>,
    scale: f64,
    /// Popularity rank to item (popular != small id): the shuffle, tabulated.
    rank_item: Vec<u32>,
    /// Item to popularity rank (its inverse).
    item_rank: Vec<u32>,
}

/// Buckets of [`Generator::guide`] per popularity rank: the guide and the ranks in a bucket
/// stay a few cache lines.
const GUIDE_PER_RANK: f64 = 0.25;

impl Generator {
    fn new(users: u32, items: u32, interactions: u64, seed: u64) -> Result<Generator> {
        check_shape(users, items, interactions)?;
        let rng = Rng::new(seed);
        let cap = (items as u64 / 2).max(MIN_PER_USER);
        let counts = user_counts(&rng, users, cap, interactions);
        let mut cdf = Vec::with_capacity(items as usize);
        let mut acc = 0.0;
        for r in 0..items {
            acc += 1.0 / ((r + 1) as f64).powf(ZIPF);
            cdf.push(acc);
        }
        let shuffle =
            crate::sampling::rng::Permutation::new(&rng, stream::SYNTH, u32::MAX, 0, items as u64);
        let rank_item: Vec<u32> = (0..items as u64).map(|r| shuffle.apply(r) as u32).collect();
        let mut item_rank = vec![0u32; items as usize];
        for (r, &i) in rank_item.iter().enumerate() {
            item_rank[i as usize] = r as u32;
        }
        let buckets = ((items as f64 * GUIDE_PER_RANK) as usize).max(1);
        let scale = buckets as f64 / acc;
        // A draw x in bucket b is at least b / scale and below (b + 1) / scale, up to rounding
        // (which `rank` checks).
        let guide = (0..=buckets)
            .map(|b| match b {
                0 => 0,
                b if b == buckets => items,
                b => cdf.partition_point(|&v| v <= b as f64 / scale) as u32,
            })
            .collect();
        Ok(Generator {
            rng,
            items,
            counts,
            cdf,
            guide,
            scale,
            rank_item,
            item_rank,
        })
    }

    /// The popularity rank of a draw `x` in `[0, total)`: the first rank whose cumulative weight
    /// is above `x`, `cdf.partition_point(|&v| v <= x)` (the last rank past the end). Searched
    /// within its bucket of `guide`, and checked: the same rank whatever the rounding.
    #[inline]
    fn rank(&self, x: f64) -> usize {
        let cdf = &self.cdf[..];
        let b = ((x * self.scale) as usize).min(self.guide.len() - 2);
        let (lo, hi) = (self.guide[b] as usize, self.guide[b + 1] as usize);
        let r = lo + cdf[lo..hi.max(lo)].partition_point(|&v| v <= x);
        let exact = (r == 0 || cdf[r - 1] <= x) && (r == cdf.len() || cdf[r] > x);
        let r = if exact {
            r
        } else {
            cdf.partition_point(|&v| v <= x)
        };
        r.min(cdf.len() - 1)
    }

    /// User `u`'s rows (item, timestamp, rating) in the order drawn, which is time order
    /// (timestamps strictly increase). `taken[rank] == u` marks the popularity ranks of the items
    /// drawn for `u` (by rank, not item: the popular ones, most draws, share cache lines).
    fn user(&self, u: u32, taken: &mut [u32], mine: &mut Vec<(u32, i64, f32)>) {
        let (rng, items) = (&self.rng, self.items);
        let c = self.counts[u as usize] as usize;
        let total = *self.cdf.last().unwrap();
        mine.clear();
        let head = rng.block(stream::SYNTH, u, u32::MAX - 1, 0);
        let mut t = T0 + below(head[0], T_SPREAD) as i64;
        let mut attempt = 0u32;
        while mine.len() < c {
            let rank = if attempt < 64 * c as u32 {
                let x = rng.uniform_f64(stream::SYNTH, u, attempt, 0) * total;
                self.rank(x)
            } else {
                // Rejection is taking long: the first free item.
                let item = (0..items)
                    .find(|&i| taken[self.item_rank[i as usize] as usize] != u)
                    .expect("cap < items");
                self.item_rank[item as usize] as usize
            };
            attempt += 1;
            if taken[rank] == u {
                continue;
            }
            taken[rank] = u;
            let item = self.rank_item[rank];
            let w = rng.block(stream::SYNTH, u, mine.len() as u32, 1);
            t += 1 + below(w[0], 3 * 86_400) as i64;
            let rating = (1 + below(w[1], 10)) as f32 * 0.5;
            mine.push((item, t, rating));
        }
    }
}

/// Users generated per block of the streaming writer (each block's rows are held once).
const BLOCK_ROWS: u64 = 1 << 21;

/// Generate the dataset `ncf-prep --synthetic` would prepare from [`generate`]'s rows (the same
/// rows, filter, ids, split and fingerprint) straight into `dir`, in memory bounded by users and
/// items, not interactions: a first pass finds the items kept users draw, a second draws the
/// rows again and streams them to a [`StreamWriter`]. `prov` makes meta.json's options, source
/// and stats from the preparation's counts; `progress` gets (rows written, rows in all).
pub fn write_dataset(
    shape: (u32, u32, u64),
    seed: u64,
    min_interactions: usize,
    dir: &crate::io::AtomicDir,
    prov: impl FnOnce(&PrepStats) -> Provenance,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Meta, PrepStats)> {
    let (users, items, interactions) = shape;
    let g = Generator::new(users, items, interactions, seed)?;
    let min = min_interactions.max(1) as u64;
    let kept: Vec<u32> = (0..users)
        .filter(|&u| g.counts[u as usize] >= min)
        .collect();
    if kept.is_empty() {
        return Err(Error::invalid(format!(
            "no user has at least {min} interactions ({users} users in the input, \
             {interactions} rows): lower --min-interactions"
        )));
    }
    let kept_rows: u64 = kept.iter().map(|&u| g.counts[u as usize]).sum();
    // Pass 1: which items the kept users draw, block by block of users until every item is
    // drawn (with a power law, long before the last user at scale).
    let threads = threads() as usize;
    let mut used = vec![false; items as usize];
    let mut n_used = 0usize;
    let block = (BLOCK_ROWS * 8 / (kept_rows / kept.len() as u64).max(1)).max(1) as usize;
    for lo in (0..kept.len()).step_by(block) {
        let hi = (lo + block).min(kept.len());
        let marks: Vec<Vec<bool>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|t| {
                    let (g, kept) = (&g, &kept);
                    s.spawn(move || {
                        let mut used = vec![false; items as usize];
                        let mut taken = vec![u32::MAX; items as usize];
                        let mut mine = Vec::new();
                        let part =
                            &kept[lo + (hi - lo) * t / threads..lo + (hi - lo) * (t + 1) / threads];
                        for &u in part {
                            g.user(u, &mut taken, &mut mine);
                            mine.iter().for_each(|m| used[m.0 as usize] = true);
                        }
                        used
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("synth thread"))
                .collect()
        });
        for m in &marks {
            for (i, &x) in m.iter().enumerate() {
                if x && !used[i] {
                    used[i] = true;
                    n_used += 1;
                }
            }
        }
        if n_used == items as usize {
            break;
        }
    }
    let mut item_dense = vec![u32::MAX; items as usize];
    let mut item_raw = Vec::new();
    for i in 0..items as usize {
        if used[i] {
            item_dense[i] = item_raw.len() as u32;
            item_raw.push((i + 1).to_string());
        }
    }
    drop(used);
    let stats = PrepStats {
        rows_read: interactions,
        users_in_input: users as u64,
        items_in_input: items as u64,
        users_dropped: (users as usize - kept.len()) as u64,
        rows_of_dropped_users: interactions - kept_rows,
        users: kept.len() as u64,
        items: item_raw.len() as u64,
        train: kept_rows - kept.len() as u64,
        test: kept.len() as u64,
        split: "latest".into(),
        ..Default::default()
    };
    let provenance = prov(&stats);
    // Pass 2: blocks of users drawn in parallel, written in order.
    let mut w = StreamWriter::new(dir, stats.train, true)?;
    let mut blocks = vec![0usize];
    let mut rows = 0;
    for (k, &u) in kept.iter().enumerate() {
        rows += g.counts[u as usize];
        if rows >= BLOCK_ROWS {
            blocks.push(k + 1);
            rows = 0;
        }
    }
    if *blocks.last().unwrap() != kept.len() {
        blocks.push(kept.len());
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Vec<Vec<(u32, i64)>>)>(2);
    std::thread::scope(|s| -> Result<()> {
        let (g, kept, blocks) = (&g, &kept, &blocks);
        s.spawn(move || {
            for b in blocks.windows(2) {
                let (lo, hi) = (b[0], b[1]);
                let parts: Vec<Vec<(u32, i64)>> = std::thread::scope(|s| {
                    let hs: Vec<_> = (0..threads)
                        .map(|t| {
                            s.spawn(move || {
                                let a = lo + (hi - lo) * t / threads;
                                let z = lo + (hi - lo) * (t + 1) / threads;
                                let mut taken = vec![u32::MAX; items as usize];
                                let mut mine = Vec::new();
                                let mut out = Vec::new();
                                for &u in &kept[a..z] {
                                    g.user(u, &mut taken, &mut mine);
                                    out.extend(mine.iter().map(|m| (m.0, m.1)));
                                }
                                out
                            })
                        })
                        .collect();
                    hs.into_iter()
                        .map(|h| h.join().expect("synth thread"))
                        .collect()
                });
                if tx.send((lo, parts)).is_err() {
                    return;
                }
            }
        });
        let mut written = 0u64;
        for (lo, parts) in rx {
            let rows = parts.iter().flatten();
            let mut k = lo;
            let mut left = 0u64;
            for &(item, t) in rows {
                if left == 0 {
                    left = g.counts[kept[k] as usize];
                    k += 1;
                }
                left -= 1;
                let (dense, item) = ((k - 1) as u32, item_dense[item as usize]);
                if left == 0 {
                    w.push_test(dense, item, Some(t));
                } else {
                    w.push_train(dense, item, Some(t))?;
                }
            }
            written = w.pushed();
            progress(written, stats.train);
        }
        let _ = written;
        Ok(())
    })?;
    let user_raw = kept.iter().map(|&u| (u + 1).to_string()).collect();
    let meta = w.finish(user_raw, item_raw, None, provenance)?;
    Ok((meta, stats))
}

/// Write `rows` as an ml-20m style `ratings.csv` (`userId,movieId,rating,timestamp`, LF).
pub fn write_csv<W: Write>(rows: &Interactions, mut w: W) -> std::io::Result<()> {
    w.write_all(b"userId,movieId,rating,timestamp\n")?;
    let ts = rows.timestamps.as_deref();
    let rt = rows.ratings.as_deref();
    let mut line = String::with_capacity(64);
    for r in 0..rows.users.len() {
        use std::fmt::Write as _;
        line.clear();
        let rating = rt.map_or(5.0, |v| v[r]);
        let _ = writeln!(
            line,
            "{},{},{:.1},{}",
            rows.user_ids.text(rows.users[r]),
            rows.item_ids.text(rows.items[r]),
            rating,
            ts.map_or(0, |t| t[r])
        );
        w.write_all(line.as_bytes())?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_is_exact_and_users_have_twenty_distinct_items() {
        let r = generate(300, 500, 20_000, 1).unwrap();
        assert_eq!(r.users.len(), 20_000);
        let mut per_user = vec![std::collections::HashSet::new(); 300];
        for (&u, &i) in r.users.iter().zip(&r.items) {
            assert!(
                per_user[u as usize].insert(i),
                "user {u} has item {i} twice"
            );
        }
        assert!(per_user.iter().all(|s| s.len() >= 20));
        assert!(r.users.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn deterministic_and_power_law() {
        let a = generate(200, 1000, 10_000, 5).unwrap();
        let b = generate(200, 1000, 10_000, 5).unwrap();
        let c = generate(200, 1000, 10_000, 6).unwrap();
        assert_eq!(a.items, b.items);
        assert_eq!(a.timestamps, b.timestamps);
        assert_ne!(a.items, c.items);
        let mut counts = vec![0u32; 1000];
        a.items.iter().for_each(|&i| counts[i as usize] += 1);
        counts.sort_unstable_by(|x, y| y.cmp(x));
        assert!(
            counts[0] > 10 * counts[500].max(1),
            "top {} median {}",
            counts[0],
            counts[500]
        );
    }

    #[test]
    fn rows_are_those_generated_before() {
        // The rows are a pure function of (shape, seed): SHA-256 of every column, as generated
        // before the rank search and the shuffle were tabulated (main 28b14b0), for a loose
        // shape and for tight caps (the first-free-item fallback).
        use sha2::{Digest, Sha256};
        for (shape, want) in [
            (
                (300, 5000, 40_000),
                "d7ce033c66e57a69a390511a84fd46b10205052130ac1b105f40ee8c6925299e",
            ),
            (
                (10, 40, 200),
                "59e85697bd266318415c57c8605135202f9980cdd4a4e44854befc7cb0833670",
            ),
            (
                (50, 60, 1500),
                "407583cec6d24bfa90b83e1fc9c37d52baeaa0cbca5e8f28316b08ea5b252f22",
            ),
        ] {
            let r = generate(shape.0, shape.1, shape.2, 11).unwrap();
            let mut h = Sha256::new();
            for k in 0..r.users.len() {
                h.update(r.users[k].to_le_bytes());
                h.update(r.items[k].to_le_bytes());
                h.update(r.timestamps.as_ref().unwrap()[k].to_le_bytes());
                h.update(r.ratings.as_ref().unwrap()[k].to_le_bytes());
            }
            let got = crate::data::dataset::hex(&h.finalize());
            assert_eq!(got, want, "{shape:?}");
        }
    }

    #[test]
    fn counts_fill_tight_caps() {
        let r = generate(10, 40, 200, 3).unwrap();
        assert_eq!(r.users.len(), 200);
        assert!(generate(10, 40, 199, 3).is_err() && generate(10, 40, 201, 3).is_err());
    }

    #[test]
    fn csv_parses_back_to_the_same_rows() {
        let r = generate(30, 100, 700, 9).unwrap();
        let mut buf = Vec::new();
        write_csv(&r, &mut buf).unwrap();
        let o = crate::data::ingest::ReadOptions::default();
        let layout = crate::data::ingest::layout_for(
            crate::data::ingest::Format::MlCsv,
            &buf[..32],
            &o,
            "x",
        )
        .unwrap();
        let back = crate::data::ingest::parse_delimited(&buf, &layout, &o, "x").unwrap();
        let raw =
            |ids: &RawIds, codes: &[u32]| codes.iter().map(|&c| ids.text(c)).collect::<Vec<_>>();
        assert_eq!(raw(&back.user_ids, &back.users), raw(&r.user_ids, &r.users));
        assert_eq!(raw(&back.item_ids, &back.items), raw(&r.item_ids, &r.items));
        assert_eq!(back.timestamps, r.timestamps);
    }
}
