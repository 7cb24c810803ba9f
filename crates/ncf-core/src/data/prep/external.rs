//! The preparation of [`super::prepare`] out of core, for inputs larger than the memory: the
//! input is parsed in parts ([`Chunked`]) whose rows are sorted by (user, time, input row) and
//! spilled as runs beside the output; two k-way merges of the runs then stream every user's
//! rows in the order the in-memory path gives them. The first merge drops duplicates, applies
//! the `--min-interactions` filter and finds the items the kept users use (the dense item ids
//! need all of them); the second writes the leave-one-out split through a [`StreamWriter`].
//! Same rules, same dataset, same fingerprint; memory follows the budget (parts, merge buffers)
//! plus what grows with the users and items (their sorted raw ids), not with the rows.

use super::{PrepOptions, PrepStats};
use crate::data::dataset::{Meta, Provenance, StreamWriter};
use crate::data::ingest::{Chunked, RawIds};
use crate::io::AtomicDir;
use crate::sampling::rng::{below, stream, Rng};
use crate::{Error, Result};
use std::collections::BinaryHeap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

/// One spilled row: sorted by (user, time, row); `time` is 0 without timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rec {
    user: u64,
    time: i64,
    row: u64,
    item: u64,
}

const REC: usize = 32;

impl Rec {
    fn to_bytes(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.user.to_le_bytes());
        out.extend_from_slice(&self.time.to_le_bytes());
        out.extend_from_slice(&self.row.to_le_bytes());
        out.extend_from_slice(&self.item.to_le_bytes());
    }

    fn from_bytes(b: &[u8]) -> Rec {
        let w = |k: usize| u64::from_le_bytes(b[8 * k..8 * k + 8].try_into().expect("8 bytes"));
        Rec {
            user: w(0),
            time: w(1) as i64,
            row: w(2),
            item: w(3),
        }
    }
}

/// Bytes of memory per byte of a part of the input while it is parsed, sorted and spilled (the
/// text, its parsed columns, the records): measured about 4 on MovieLens CSV; 6 leaves room.
const PER_PART_BYTE: u64 = 6;

/// What the run did beyond [`PrepStats`]: the runs spilled and the part size.
#[derive(Clone, Debug, Default)]
pub struct Spill {
    pub runs: u64,
    pub part_bytes: u64,
    /// Items with a title (when a movies file was read).
    pub titled_items: u64,
}

/// Prepare the rows of `input` into the dataset directory `dir` in about `budget` bytes of
/// memory. `prov` makes meta.json's options, source and stats from the counts (with the input's
/// source once it is read whole); `progress` gets a line's worth of news now and then.
pub fn prepare_external(
    mut input: Chunked,
    opts: &PrepOptions,
    budget: u64,
    dir: &AtomicDir,
    prov: impl FnOnce(&PrepStats, serde_json::Value) -> Provenance,
    progress: &mut dyn FnMut(&str),
) -> Result<(Meta, PrepStats, Spill)> {
    let part_bytes = (budget / PER_PART_BYTE).max(1 << 16);
    // The runs go inside the output's temp directory, removed with it on any error or signal.
    let spill_dir = dir.path(".spill");
    std::fs::create_dir_all(&spill_dir).map_err(|e| Error::io(&spill_dir, e))?;
    let with_time = input.has_time();
    let mut stats = PrepStats {
        split: if with_time { "latest" } else { "random" }.into(),
        ..Default::default()
    };
    if opts.min_rating.is_some() && !input.needs_rating() {
        return Err(Error::usage("--min-rating needs a rating column"));
    }
    // Runs: parts sorted by (user, time, row), their ids still raw.
    let (mut users_all, mut items_all) = (Vec::new(), Vec::new());
    let mut runs = Vec::new();
    let mut buf = Vec::new();
    while let Some(part) = input.next_part(part_bytes as usize)? {
        let (RawIds::Int(uids), RawIds::Int(iids)) = (&part.user_ids, &part.item_ids) else {
            return Err(Error::invalid("out-of-core preparation needs integer ids"));
        };
        union(&mut users_all, uids);
        union(&mut items_all, iids);
        let base = stats.rows_read;
        let mut recs = Vec::with_capacity(part.users.len());
        for r in 0..part.users.len() {
            if let (Some(m), Some(rt)) = (opts.min_rating, &part.ratings) {
                if rt[r] < m {
                    stats.rows_below_min_rating += 1;
                    continue;
                }
            }
            recs.push(Rec {
                user: uids[part.users[r] as usize],
                time: part.timestamps.as_ref().map_or(0, |t| t[r]),
                row: base + r as u64,
                item: iids[part.items[r] as usize],
            });
        }
        stats.rows_read += part.users.len() as u64;
        drop(part);
        recs.sort_unstable();
        let path = spill_dir.join(format!("run-{}", runs.len()));
        let f = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        for c in recs.chunks(1 << 14) {
            buf.clear();
            c.iter().for_each(|r| r.to_bytes(&mut buf));
            w.write_all(&buf).map_err(|e| Error::io(&path, e))?;
        }
        w.flush().map_err(|e| Error::io(&path, e))?;
        runs.push(path);
        progress(&format!(
            "sorted and spilled run {} ({} of {} bytes read)",
            runs.len(),
            input.bytes_read(),
            input.file_bytes()
        ));
    }
    if stats.rows_read == 0 {
        return Err(Error::invalid("no rating rows in the input"));
    }
    let (source, titles) = input.finish()?;
    stats.users_in_input = users_all.len() as u64;
    stats.spilled_runs = runs.len() as u64;
    stats.items_in_input = items_all.len() as u64;
    let merge_buf = ((budget / 4) / runs.len() as u64).clamp(1 << 12, 1 << 20) as usize;

    // Merge 1: duplicates, the filter, the items of kept users.
    let min = opts.min_interactions.max(1);
    let mut last_user = vec![u32::MAX; items_all.len()];
    let mut used = vec![false; items_all.len()];
    let mut kept_users = 0u64;
    let mut kept_rows = 0u64;
    let mut group = Vec::new();
    let mut merge = Merge::open(&runs, merge_buf)?;
    let mut u_code = 0u32;
    while merge.next_user(&mut group)?.is_some() {
        u_code += 1;
        dedup(&mut group, &items_all, &mut last_user, u_code, &mut stats);
        if group.len() >= min {
            kept_users += 1;
            kept_rows += group.len() as u64;
            group.iter().for_each(|g| used[g.0 as usize] = true);
        } else {
            stats.rows_of_dropped_users += group.len() as u64;
        }
    }
    stats.users_dropped = stats.users_in_input - kept_users;
    if kept_users == 0 {
        return Err(Error::invalid(format!(
            "no user has at least {min} interactions ({} users in the input, {} rows): \
             lower --min-interactions",
            stats.users_in_input, stats.rows_read
        )));
    }
    let mut item_dense = vec![u32::MAX; items_all.len()];
    let mut item_raw = Vec::new();
    for (k, &u) in used.iter().enumerate() {
        if u {
            item_dense[k] = item_raw.len() as u32;
            item_raw.push(items_all[k].to_string());
        }
    }
    drop(used);
    stats.users = kept_users;
    stats.items = item_raw.len() as u64;
    stats.train = kept_rows - kept_users;
    stats.test = kept_users;
    progress("merged the runs once (duplicates, filter, items)");

    // Merge 2: the split, streamed to the dataset.
    let provenance = prov(&stats, source);
    let mut w = StreamWriter::new(dir, stats.train, with_time)?;
    let rng = Rng::new(opts.seed);
    let mut merge = Merge::open(&runs, merge_buf)?;
    let mut user_raw = Vec::with_capacity(kept_users as usize);
    let mut scratch = PrepStats::default();
    last_user.iter_mut().for_each(|v| *v = u32::MAX);
    let mut u_code = 0u32;
    while let Some(user) = merge.next_user(&mut group)? {
        u_code += 1;
        dedup(&mut group, &items_all, &mut last_user, u_code, &mut scratch);
        if group.len() < min {
            continue;
        }
        let dense = user_raw.len() as u32;
        user_raw.push(user.to_string());
        let held = match with_time {
            true => group.len() - 1,
            false => below(rng.word(stream::SPLIT, dense, 0, 0), group.len() as u32) as usize,
        };
        let t = |x: i64| with_time.then_some(x);
        for (k, &(item, time)) in group.iter().enumerate() {
            let item = item_dense[item as usize];
            if k == held {
                w.push_test(dense, item, t(time));
            } else {
                w.push_train(dense, item, t(time))?;
            }
        }
        if dense.is_multiple_of(1 << 16) {
            progress(&format!(
                "writing: {} of {} train rows",
                w.pushed(),
                stats.train
            ));
        }
    }
    drop(merge);
    std::fs::remove_dir_all(&spill_dir).map_err(|e| Error::io(&spill_dir, e))?;
    let titles: Option<Vec<Option<String>>> =
        titles.map(|t| item_raw.iter().map(|raw| t.get(raw).cloned()).collect());
    let titled_items = titles
        .as_ref()
        .map_or(0, |t| t.iter().flatten().count() as u64);
    let meta = w.finish(user_raw, item_raw, titles, provenance)?;
    Ok((
        meta,
        stats,
        Spill {
            runs: runs.len() as u64,
            part_bytes,
            titled_items,
        },
    ))
}

/// Add the sorted distinct ids `new` to the sorted distinct ids `all`.
fn union(all: &mut Vec<u64>, new: &[u64]) {
    if all.is_empty() {
        all.extend_from_slice(new);
        return;
    }
    let mut out = Vec::with_capacity(all.len() + new.len());
    let (mut a, mut b) = (0, 0);
    while a < all.len() && b < new.len() {
        match all[a].cmp(&new[b]) {
            std::cmp::Ordering::Less => {
                out.push(all[a]);
                a += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(new[b]);
                b += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(all[a]);
                a += 1;
                b += 1;
            }
        }
    }
    out.extend_from_slice(&all[a..]);
    out.extend_from_slice(&new[b..]);
    *all = out;
}

/// Keep the first of each item in `group` (one user's rows in time order, items as raw ids on
/// entry, as indexes into `items` on return), counting the dropped ones.
fn dedup(
    group: &mut Vec<(u64, i64)>,
    items: &[u64],
    last_user: &mut [u32],
    user: u32,
    stats: &mut PrepStats,
) {
    let before = group.len();
    group.retain_mut(|g| {
        let k = items
            .binary_search(&g.0)
            .expect("every item is in the union");
        g.0 = k as u64;
        if last_user[k] == user {
            false
        } else {
            last_user[k] = user;
            true
        }
    });
    stats.duplicates_dropped += (before - group.len()) as u64;
}

/// A k-way merge of sorted runs, yielding one user's rows at a time.
struct Merge {
    readers: Vec<(BufReader<std::fs::File>, PathBuf)>,
    heap: BinaryHeap<std::cmp::Reverse<(Rec, usize)>>,
}

impl Merge {
    fn open(runs: &[PathBuf], buf: usize) -> Result<Merge> {
        let mut m = Merge {
            readers: Vec::with_capacity(runs.len()),
            heap: BinaryHeap::with_capacity(runs.len()),
        };
        for (k, p) in runs.iter().enumerate() {
            let f = std::fs::File::open(p).map_err(|e| Error::io(p, e))?;
            m.readers
                .push((BufReader::with_capacity(buf, f), p.to_path_buf()));
            m.refill(k)?;
        }
        Ok(m)
    }

    fn refill(&mut self, k: usize) -> Result<()> {
        let mut b = [0u8; REC];
        let (r, p) = &mut self.readers[k];
        match r.read_exact(&mut b) {
            Ok(()) => {
                self.heap.push(std::cmp::Reverse((Rec::from_bytes(&b), k)));
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(()),
            Err(e) => Err(Error::io(p.as_path(), e)),
        }
    }

    /// The next user's rows (item raw id, time) in (time, row) order into `group`; its raw id.
    fn next_user(&mut self, group: &mut Vec<(u64, i64)>) -> Result<Option<u64>> {
        group.clear();
        let Some(std::cmp::Reverse((first, _))) = self.heap.peek().copied() else {
            return Ok(None);
        };
        while let Some(std::cmp::Reverse((rec, k))) = self.heap.peek().copied() {
            if rec.user != first.user {
                break;
            }
            self.heap.pop();
            group.push((rec.item, rec.time));
            self.refill(k)?;
        }
        Ok(Some(first.user))
    }
}
