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
//! as touched. With sparse gradients ([`SparseRows`]) a thread's embedding rows come from its
//! slot rows instead of its vector: `+0 + row` where it has the row, `+0` where not, summed in
//! thread order — the values the dense vectors would hold, so again the same bits.

use super::reference::AdamScalars;
use crate::model::{Layout, Side};
use crate::train::Optimizer;

/// An Adam moment as stored: FP32, or BF16 ([`crate::train::config::Moments`]), rounded to
/// nearest even when stored; the update computes in FP32 either way (FP32 storage gives the
/// bits it always gave).
pub trait Moment: Copy + Send + Sync + 'static {
    fn get(self) -> f32;
    fn put(x: f32) -> Self;
}

impl Moment for f32 {
    #[inline(always)]
    fn get(self) -> f32 {
        self
    }
    #[inline(always)]
    fn put(x: f32) -> f32 {
        x
    }
}

impl Moment for half::bf16 {
    #[inline(always)]
    fn get(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn put(x: f32) -> half::bf16 {
        half::bf16::from_f32(x)
    }
}

impl Kernel {
    /// Adam's update of one parameter with stored moments `m`, `v`.
    #[inline(always)]
    fn adam<M: Moment>(&self, p: &mut f32, m: &mut M, v: &mut M, g: f32) {
        let (mut mf, mut vf) = (m.get(), v.get());
        self.adam.update(p, &mut mf, &mut vf, g);
        (*m, *v) = (M::put(mf), M::put(vf));
    }
}

/// The scalars of one optimiser step.
#[derive(Clone, Copy)]
pub struct Kernel {
    pub opt: Optimizer,
    pub adam: AdamScalars,
    pub lr: f32,
    pub l2: f32,
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

/// One thread's embedding gradients kept by slot instead of in its dense vector (sparse
/// gradients, [`super::factored::Factored::sparse_rows`]): the slot of each user and item
/// ([`super::factored::NONE`]: the thread did not touch it) and, per embedding table (by the
/// offset where it starts in the flat vector), its rows by slot.
pub struct SparseRows<'a> {
    pub slot_user: &'a [u32],
    pub slot_item: &'a [u32],
    pub tables: Vec<(usize, &'a [f32])>,
}

impl Kernel {
    /// Sum `gs[..][a..b]` into `gs[0]` (zeroing the others), update `p`, `m`, `v` (the same
    /// `a..b` of the chunk) and zero the sum. Returns non-zero when a gradient is not finite.
    #[inline(always)]
    fn dense<M: Moment>(
        &self,
        p: &mut [f32],
        m: &mut [M],
        v: &mut [M],
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
        self.given(p, m, v, g, a, b)
    }

    /// The update of `a..b` with the summed gradient `g` (`b − a` values), zeroing `g` as it
    /// goes. Returns non-zero when a gradient is not finite.
    #[inline(always)]
    fn given<M: Moment>(
        &self,
        p: &mut [f32],
        m: &mut [M],
        v: &mut [M],
        g: &mut [f32],
        a: usize,
        b: usize,
    ) -> u32 {
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
                    self.adam(p, m, v, gl);
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
    fn idle<M: Moment>(&self, p: &mut [f32], m: &mut [M], v: &mut [M], a: usize, b: usize) {
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
                    self.adam(p, m, v, gl);
                }
            }
            // Without L2 the idle SGD update is p − lr·(0 + 0·p) = p for every finite p (a
            // non-finite one stays non-finite either way): nothing to write.
            Optimizer::Sgd if l2 == 0.0 => {}
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
/// and every thread's gradients there. `touched` None: every row counts as touched. Returns false
/// when a gradient is not finite.
#[allow(clippy::too_many_arguments)]
pub fn pass<M: Moment>(
    k: &Kernel,
    segments: &[Segment],
    touched: Option<&Touched>,
    base: usize,
    p: &mut [f32],
    m: &mut [M],
    v: &mut [M],
    gs: &mut [&mut [f32]],
    sparse: &[SparseRows],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if super::tile::has_avx2_fma() {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { pass_avx2(k, segments, touched, base, p, m, v, gs, sparse) };
    }
    pass_body(k, segments, touched, base, p, m, v, gs, sparse)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn pass_avx2<M: Moment>(
    k: &Kernel,
    segments: &[Segment],
    touched: Option<&Touched>,
    base: usize,
    p: &mut [f32],
    m: &mut [M],
    v: &mut [M],
    gs: &mut [&mut [f32]],
    sparse: &[SparseRows],
) -> bool {
    pass_body(k, segments, touched, base, p, m, v, gs, sparse)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pass_body<M: Moment>(
    k: &Kernel,
    segments: &[Segment],
    touched: Option<&Touched>,
    base: usize,
    p: &mut [f32],
    m: &mut [M],
    v: &mut [M],
    gs: &mut [&mut [f32]],
    sparse: &[SparseRows],
) -> bool {
    let end = base + p.len();
    let mut bad = 0u32;
    let mut sum = Vec::new();
    for seg in segments {
        let (lo, hi) = (seg.range.start.max(base), seg.range.end.min(end));
        if lo >= hi {
            continue;
        }
        let (Some((side, width)), Some(t)) = (seg.rows, touched) else {
            bad |= k.dense(p, m, v, gs, lo - base, hi - base);
            continue;
        };
        // With sparse gradients, each thread's rows of this table by slot.
        let by_slot: Vec<(&[u32], &[f32])> = sparse
            .iter()
            .filter_map(|s| {
                let table = s.tables.iter().find(|(at, _)| *at == seg.range.start)?.1;
                let slots = match side {
                    Side::User => s.slot_user,
                    Side::Item => s.slot_item,
                };
                Some((slots, table))
            })
            .collect();
        debug_assert!(by_slot.is_empty() || by_slot.len() == sparse.len());
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
            if on && !by_slot.is_empty() {
                // Row by row: the threads' gradients summed in thread order as the dense pass
                // sums their vectors (a thread's dense value is +0 + its slot row, or +0).
                let mut a = x;
                while a < y {
                    let r = row(a);
                    let b = row_end(r).min(y);
                    let col = a - (seg.range.start + r * width);
                    sum.clear();
                    for (t, (slots, table)) in by_slot.iter().enumerate() {
                        let slot = slots[r];
                        let at = slot as usize * width + col;
                        let part =
                            (slot != super::factored::NONE).then(|| &table[at..at + (b - a)]);
                        if t == 0 {
                            match part {
                                Some(g) => sum.extend(g.iter().map(|g| 0.0 + g)),
                                None => sum.resize(b - a, 0.0),
                            }
                        } else if let Some(g) = part {
                            // (Adding a +0 where a thread has no row changes nothing: the sum
                            // is never −0.)
                            for (s, g) in sum.iter_mut().zip(g) {
                                *s += 0.0 + g;
                            }
                        }
                    }
                    bad |= k.given(p, m, v, &mut sum, a - base, b - base);
                    a = b;
                }
            } else if on {
                bad |= k.dense(p, m, v, gs, x - base, y - base);
            } else {
                k.idle(p, m, v, x - base, y - base);
            }
            x = y;
        }
    }
    bad == 0
}
