//! The optimiser step of the CPU backend: per-thread gradient vectors summed (in thread order)
//! and Adam or SGD applied to every parameter.
//!
//! Every parameter is updated every step (Adam moves a row whose gradient is zero too: its
//! moments decay and the parameter keeps moving), but a step of a small batch touches few
//! embedding rows: with batch 256 on ml-1m about 250 of 6,040 users and 240 of 3,706 items. The
//! rows no thread touched have a zero gradient in every thread's vector, so the pass skips
//! reading (and re-zeroing) those gradients and applies the zero-gradient update from `p`, `m`,
//! `v` alone: 6 memory streams per parameter instead of 4 + 4 per thread. The bits are those of
//! the dense per-element update ([`Kernel::dense`] vs [`Kernel::idle`]): gradient vectors only
//! ever hold +0 where nothing was added (they start at +0, are zeroed with +0, and adding onto
//! +0 never gives −0), so the dense pass computes `+0 + l2·p` for an untouched element exactly
//! as `idle` does. With several ranks the gradients are all-reduced densely, so every row counts
//! as touched.
//!
//! Small batches go further ([`Deferred`]): a step leaves the rows it did not touch alone, and
//! a row catches up on the idle updates it missed ([`replay`], the same `idle` per step in step
//! order) just before a step touches it or anything reads the model. The idle update of a row
//! depends only on its own `p`, `m`, `v` and the step's scalars, so the bits are those of
//! updating every row every step; the work is the same, but a row's catch-up runs in cache
//! instead of streaming every table through memory each step.

use super::reference::AdamScalars;
use crate::model::Layout;
use crate::train::Optimizer;

/// The scalars of one optimiser step.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    pub opt: Optimizer,
    pub adam: AdamScalars,
    pub lr: f32,
    pub l2: f32,
}

/// Which id indexes the rows of an embedding table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    User,
    Item,
}

/// A contiguous part of the flat parameter vector: an embedding table (rows of `width` floats
/// from `offset`, indexed by `side`) or anything else (dense: updated element by element).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub range: std::ops::Range<usize>,
    pub rows: Option<(Side, usize)>,
}

/// The segments of `layout`, covering `0..layout.total` in order (padding is dense). Tables must
/// have `n_users` / `n_items` rows ([`Touched`] is sized by them): checked by [`check_rows`].
pub fn segments(layout: &Layout) -> Vec<Segment> {
    let mut tensors: Vec<_> = layout.tensors.iter().collect();
    tensors.sort_by_key(|t| t.offset);
    let mut out: Vec<Segment> = vec![];
    let mut push = |range: std::ops::Range<usize>, rows: Option<(Side, usize)>| {
        if range.is_empty() {
            return;
        }
        match out.last_mut() {
            Some(last)
                if last.rows.is_none() && rows.is_none() && last.range.end == range.start =>
            {
                last.range.end = range.end;
            }
            _ => out.push(Segment { range, rows }),
        }
    };
    let mut at = 0;
    for t in tensors {
        push(at..t.offset, None);
        let side = match t.name.as_str() {
            "mf_user_embed.weight" | "mlp_user_embed.weight" => Some(Side::User),
            "mf_item_embed.weight" | "mlp_item_embed.weight" => Some(Side::Item),
            _ => None,
        };
        let width = t.shape.get(1).copied().unwrap_or(0);
        let rows = side
            .filter(|_| t.shape.len() == 2 && width > 0)
            .map(|s| (s, width));
        push(t.range(), rows);
        at = t.range().end;
    }
    push(at..layout.total, None);
    out
}

/// Whether every table segment has `n_users` (user side) or `n_items` rows; the error names the
/// first that does not.
pub fn check_rows(segments: &[Segment], n_users: u32, n_items: u32) -> Result<(), String> {
    for s in segments {
        if let Some((side, width)) = s.rows {
            let want = match side {
                Side::User => n_users,
                Side::Item => n_items,
            } as usize;
            let rows = s.range.len() / width;
            if rows != want || s.range.len() % width != 0 {
                return Err(format!(
                    "embedding table at {}..{} has {rows} rows of {width}, the model {want} {side:?} ids",
                    s.range.start, s.range.end
                ));
            }
        }
    }
    Ok(())
}

/// The users and items some thread touched this step (flags, and the ids set, to clear them).
#[derive(Debug, Default)]
pub struct Touched {
    user: Vec<bool>,
    item: Vec<bool>,
    set_user: Vec<u32>,
    set_item: Vec<u32>,
}

impl Touched {
    pub fn new(n_users: u32, n_items: u32) -> Touched {
        Touched {
            user: vec![false; n_users as usize],
            item: vec![false; n_items as usize],
            ..Touched::default()
        }
    }

    /// Mark `ids` of `side` (repeats allowed).
    pub fn mark(&mut self, side: Side, ids: &[u32]) {
        let (flags, set) = match side {
            Side::User => (&mut self.user, &mut self.set_user),
            Side::Item => (&mut self.item, &mut self.set_item),
        };
        for &id in ids {
            let f = &mut flags[id as usize];
            if !*f {
                *f = true;
                set.push(id);
            }
        }
    }

    pub fn clear(&mut self) {
        for &u in &self.set_user {
            self.user[u as usize] = false;
        }
        for &i in &self.set_item {
            self.item[i as usize] = false;
        }
        self.set_user.clear();
        self.set_item.clear();
    }

    fn flags(&self, side: Side) -> &[bool] {
        match side {
            Side::User => &self.user,
            Side::Item => &self.item,
        }
    }
}

impl Kernel {
    /// Sum `gs[..][a..b]` into `gs[0]` (zeroing the others), update `p`, `m`, `v` (the same
    /// `a..b` of the chunk) and zero the sum. Returns non-zero when a gradient is not finite.
    #[inline(always)]
    fn dense(
        &self,
        p: &mut [f32],
        m: &mut [f32],
        v: &mut [f32],
        gs: &mut [&mut [f32]],
        a: usize,
        b: usize,
    ) -> u32 {
        let Some((first, rest)) = gs.split_first_mut() else {
            return 0;
        };
        let g = &mut first[a..b];
        for t in rest.iter_mut() {
            for (x, y) in g.iter_mut().zip(t[a..b].iter_mut()) {
                *x += *y;
                *y = 0.0;
            }
        }
        // Non-finite gradients are caught by their exponent bits: an integer OR vectorises where
        // a boolean AND of is_finite() does not.
        let mut bad = 0u32;
        let (l2, lr) = (self.l2, self.lr);
        let iter = p[a..b]
            .iter_mut()
            .zip(m[a..b].iter_mut())
            .zip(v[a..b].iter_mut())
            .zip(g.iter_mut());
        match self.opt {
            Optimizer::Adam => {
                for (((p, m), v), g) in iter {
                    bad |= ((g.to_bits() & 0x7f80_0000) == 0x7f80_0000) as u32;
                    let gl = *g + l2 * *p;
                    *g = 0.0;
                    self.adam.update(p, m, v, gl);
                }
            }
            Optimizer::Sgd => {
                for (((p, _), _), g) in iter {
                    bad |= ((g.to_bits() & 0x7f80_0000) == 0x7f80_0000) as u32;
                    let gl = *g + l2 * *p;
                    *g = 0.0;
                    *p -= lr * gl;
                }
            }
        }
        bad
    }

    /// The update of `a..b` when every thread's gradient there is zero.
    #[inline(always)]
    fn idle(&self, p: &mut [f32], m: &mut [f32], v: &mut [f32], a: usize, b: usize) {
        let (l2, lr) = (self.l2, self.lr);
        let iter = p[a..b]
            .iter_mut()
            .zip(m[a..b].iter_mut())
            .zip(v[a..b].iter_mut());
        match self.opt {
            Optimizer::Adam => {
                for ((p, m), v) in iter {
                    // 0 + x, not x: the dense pass adds to a zero gradient (same bits).
                    let gl = 0.0 + l2 * *p;
                    self.adam.update(p, m, v, gl);
                }
            }
            Optimizer::Sgd => {
                for ((p, _), _) in iter {
                    let gl = 0.0 + l2 * *p;
                    *p -= lr * gl;
                }
            }
        }
    }
}

/// One chunk of the step: parameters `base..base + p.len()` of the flat vector, their moments
/// and every thread's gradients there. `touched` None: every row counts as touched. Rows not
/// touched get the idle update, or none when `defer` (their step is kept by [`Deferred`]).
/// Returns false when a gradient is not finite.
#[allow(clippy::too_many_arguments)]
pub fn pass(
    k: &Kernel,
    segments: &[Segment],
    touched: Option<&Touched>,
    defer: bool,
    base: usize,
    p: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    gs: &mut [&mut [f32]],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if super::tile::has_avx2_fma() {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { pass_avx2(k, segments, touched, defer, base, p, m, v, gs) };
    }
    pass_body(k, segments, touched, defer, base, p, m, v, gs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn pass_avx2(
    k: &Kernel,
    segments: &[Segment],
    touched: Option<&Touched>,
    defer: bool,
    base: usize,
    p: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    gs: &mut [&mut [f32]],
) -> bool {
    pass_body(k, segments, touched, defer, base, p, m, v, gs)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pass_body(
    k: &Kernel,
    segments: &[Segment],
    touched: Option<&Touched>,
    defer: bool,
    base: usize,
    p: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    gs: &mut [&mut [f32]],
) -> bool {
    let end = base + p.len();
    let mut bad = 0u32;
    for seg in segments {
        let (lo, hi) = (seg.range.start.max(base), seg.range.end.min(end));
        if lo >= hi {
            continue;
        }
        let (Some((side, width)), Some(t)) = (seg.rows, touched) else {
            bad |= k.dense(p, m, v, gs, lo - base, hi - base);
            continue;
        };
        // Runs of rows with the same flag: touched rows read the gradients, the others not.
        let flags = t.flags(side);
        let row = |x: usize| (x - seg.range.start) / width;
        let row_end = |r: usize| (seg.range.start + (r + 1) * width).min(hi);
        let mut x = lo;
        while x < hi {
            let mut r = row(x);
            let on = flags[r];
            let mut y = row_end(r);
            while y < hi && flags[r + 1] == on {
                r += 1;
                y = row_end(r);
            }
            if on {
                bad |= k.dense(p, m, v, gs, x - base, y - base);
            } else if !defer {
                k.idle(p, m, v, x - base, y - base);
            }
            x = y;
        }
    }
    bad == 0
}

/// Elements of the packed rows replayed together through every kernel (three arrays of this
/// many floats stay in L1).
const REPLAY_BLOCK: usize = 2048;

/// Replay packed rows: row `r` occupies `starts[r].0..starts[r + 1].0` of the packed arrays
/// (the last ends at the arrays' end) and misses `kernels[starts[r].1..]`; rows are ordered by
/// that first kernel, so at kernel `j` the rows that miss it are a prefix. `lo` is the packed
/// offset of `p[0]` (a thread's share starts anywhere). Each kernel runs over a contiguous
/// stretch of a block: vectorised, and no element waits on its own previous step.
fn replay_packed(
    kernels: &[Kernel],
    starts: &[(usize, usize)],
    end: usize,
    lo: usize,
    p: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if super::tile::has_avx2_fma() {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { replay_packed_avx2(kernels, starts, end, lo, p, m, v) };
    }
    replay_packed_body(kernels, starts, end, lo, p, m, v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn replay_packed_avx2(
    kernels: &[Kernel],
    starts: &[(usize, usize)],
    end: usize,
    lo: usize,
    p: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    replay_packed_body(kernels, starts, end, lo, p, m, v)
}

#[inline(always)]
fn replay_packed_body(
    kernels: &[Kernel],
    starts: &[(usize, usize)],
    end: usize,
    lo: usize,
    p: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    let row_end = |r: usize| starts.get(r + 1).map_or(end, |s| s.0);
    let hi = lo + p.len();
    // The row holding packed offset `lo`.
    let mut first = starts.partition_point(|s| s.0 <= lo).saturating_sub(1);
    let mut b0 = lo;
    while b0 < hi {
        let b1 = (b0 + REPLAY_BLOCK).min(hi);
        while row_end(first) <= b0 {
            first += 1;
        }
        // Rows first..active miss kernel j; the block's part of them is b0..stop.
        let mut active = first;
        let mut stop = b0;
        for (j, k) in kernels.iter().enumerate().skip(starts[first].1) {
            while active < starts.len() && starts[active].0 < b1 && starts[active].1 <= j {
                stop = row_end(active).min(b1);
                active += 1;
            }
            k.idle(p, m, v, b0 - lo, stop - lo);
        }
        b0 = b1;
    }
}

/// Deferred idle updates for one rank at small batches (see the module doc). Each table row
/// (by side and id) records the step it is current with; the kernels of the steps since
/// `base` are kept for the rows that are behind. Invariant: `kernels.len() == step - base`,
/// where `step` is the trainer's step count.
#[derive(Debug)]
pub struct Deferred {
    done_user: Vec<u64>,
    done_item: Vec<u64>,
    base: u64,
    kernels: Vec<Kernel>,
    /// Scratch of [`catch_up`]: packed rows (p, m, v) and where each starts.
    scratch: Vec<f32>,
    starts: Vec<(usize, usize)>,
}

/// A row that is behind: `range` of the flat vector, current with step `from`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Behind {
    pub range: std::ops::Range<usize>,
    pub from: u64,
}

impl Deferred {
    /// Every row current with `step`.
    pub fn new(n_users: u32, n_items: u32, step: u64) -> Deferred {
        Deferred {
            done_user: vec![step; n_users as usize],
            done_item: vec![step; n_items as usize],
            base: step,
            kernels: vec![],
            scratch: vec![],
            starts: vec![],
        }
    }

    /// The step count every row will be current with after a catch-up.
    pub fn step(&self) -> u64 {
        self.base + self.kernels.len() as u64
    }

    /// Steps kept (a catch-up of every row and [`Deferred::restart`] clear them).
    pub fn pending(&self) -> usize {
        self.kernels.len()
    }

    /// Record the kernel of the next step, whose pass skipped the untouched rows; the rows it
    /// touched are current with it.
    pub fn push(&mut self, k: Kernel, touched: &Touched) {
        self.kernels.push(k);
        let step = self.step();
        for &u in &touched.set_user {
            self.done_user[u as usize] = step;
        }
        for &i in &touched.set_item {
            self.done_item[i as usize] = step;
        }
    }

    /// Append to `out` the rows of `ids` (repeats allowed) of every table of `side` that are
    /// behind, and count them as current: the caller must [`catch_up`] them.
    pub fn behind(&mut self, segments: &[Segment], side: Side, ids: &[u32], out: &mut Vec<Behind>) {
        let step = self.step();
        let done = match side {
            Side::User => &mut self.done_user,
            Side::Item => &mut self.done_item,
        };
        for &id in ids {
            let d = &mut done[id as usize];
            if *d == step {
                continue;
            }
            for seg in segments {
                if let Some((s, width)) = seg.rows {
                    if s == side {
                        let a = seg.range.start + id as usize * width;
                        out.push(Behind {
                            range: a..a + width,
                            from: *d,
                        });
                    }
                }
            }
            *d = step;
        }
    }

    /// Every row that is behind ([`Deferred::behind`] over all ids of both sides).
    pub fn all_behind(&mut self, segments: &[Segment], out: &mut Vec<Behind>) {
        let users: Vec<u32> = (0..self.done_user.len() as u32).collect();
        let items: Vec<u32> = (0..self.done_item.len() as u32).collect();
        self.behind(segments, Side::User, &users, out);
        self.behind(segments, Side::Item, &items, out);
    }

    /// Forget the kept steps once every row is current (after catching up [`all_behind`]).
    ///
    /// [`all_behind`]: Deferred::all_behind
    pub fn restart(&mut self) {
        debug_assert!(self
            .done_user
            .iter()
            .chain(&self.done_item)
            .all(|&d| d == self.step()));
        self.base = self.step();
        self.kernels.clear();
    }
}

/// Replay the missed idle updates of the rows in `rows` (from [`Deferred::behind`]; disjoint)
/// on `threads` threads. Every row ends current with `deferred.step()`. The rows are packed
/// into scratch arrays ordered by the step they are current with, so that each kernel runs over
/// long contiguous stretches ([`replay_packed`]), and copied back.
pub fn catch_up(
    deferred: &mut Deferred,
    rows: &mut [Behind],
    p: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    threads: usize,
) {
    if rows.is_empty() {
        return;
    }
    rows.sort_unstable_by_key(|r| (r.from, r.range.start));
    let base = deferred.base;
    let mut starts = std::mem::take(&mut deferred.starts);
    starts.clear();
    let mut total = 0;
    for r in rows.iter() {
        starts.push((total, (r.from - base) as usize));
        total += r.range.len();
    }
    let mut scratch = std::mem::take(&mut deferred.scratch);
    scratch.clear();
    scratch.resize(3 * total, 0.0);
    let (sp, rest) = scratch.split_at_mut(total);
    let (sm, sv) = rest.split_at_mut(total);
    for (r, &(at, _)) in rows.iter().zip(&starts) {
        let n = r.range.len();
        sp[at..at + n].copy_from_slice(&p[r.range.clone()]);
        sm[at..at + n].copy_from_slice(&m[r.range.clone()]);
        sv[at..at + n].copy_from_slice(&v[r.range.clone()]);
    }
    let kernels = &deferred.kernels[..];
    let work: usize = rows
        .iter()
        .zip(&starts)
        .map(|(r, s)| r.range.len() * (kernels.len() - s.1))
        .sum();
    let threads = if work < 1 << 16 { 1 } else { threads.max(1) };
    if threads == 1 {
        replay_packed(kernels, &starts, total, 0, sp, sm, sv);
    } else {
        // Each element is independent: equal shares of the packed arrays, whole blocks.
        let share = total.div_ceil(threads).next_multiple_of(REPLAY_BLOCK);
        let starts = &starts[..];
        std::thread::scope(|sc| {
            for (k, ((p, m), v)) in sp
                .chunks_mut(share)
                .zip(sm.chunks_mut(share))
                .zip(sv.chunks_mut(share))
                .enumerate()
            {
                sc.spawn(move || replay_packed(kernels, starts, total, k * share, p, m, v));
            }
        });
    }
    for (r, &(at, _)) in rows.iter().zip(&starts) {
        let n = r.range.len();
        p[r.range.clone()].copy_from_slice(&sp[at..at + n]);
        m[r.range.clone()].copy_from_slice(&sm[at..at + n]);
        v[r.range.clone()].copy_from_slice(&sv[at..at + n]);
    }
    deferred.scratch = scratch;
    deferred.starts = starts;
}
