//! The first MLP layer of a training step, factored over users and items.
//!
//! The MLP input of a sample is `[E_u ‖ E_i]` (its user's and item's MLP embeddings), so with
//! `W_0 = [W_u | W_i]`:
//!
//! - forward: `Z_0 = E_u · W_uᵀ + E_i · W_iᵀ + b_0`: the two products depend on the user or the
//!   item alone. A thread computes them once per distinct user and item of its share of the
//!   batch ([`Factored::begin`]) and each sample adds two rows ([`super::tile::forward_with`]);
//! - backward: `dW_u = Σ_s dZ_0(s)ᵀ E_u(s) = Σ_u (Σ_{s of u} dZ_0(s))ᵀ E_u` and
//!   `dE_u = Σ_{s of u} dZ_0(s) · W_u = (Σ_{s of u} dZ_0(s)) · W_u`: the samples' `dZ_0` rows are
//!   summed per user and per item ([`super::tile::backward_with`]) and the two GEMMs run once
//!   per distinct user and item ([`Factored::finish`]).
//!
//! With NVIDIA's ml-20m config (batch 2^20, 165 k users + items) this replaces 61 % of a step's
//! GEMM work (the first layer is 256 × 256 of the 256-256-128-64 tower) by GEMMs over the
//! ~165 k distinct rows instead of 2^20 samples. It is the same math; only the order of float
//! additions differs (tested against [`super::reference`]).

use super::optim::SparseRows;
use super::tile::{sgemm, Aggregates, Net, Projections, SlotGrads, Work};
use crate::model::Side;

/// No slot yet.
pub const NONE: u32 = u32::MAX;

/// One thread's tables for the factored first layer of one step. Slots are handed out in the
/// order users and items first appear in the thread's samples, so the result is deterministic.
#[derive(Debug, Default)]
pub struct Factored {
    slot_user: Vec<u32>,
    slot_item: Vec<u32>,
    /// Distinct users / items of the step, by slot.
    users: Vec<u32>,
    items: Vec<u32>,
    /// Gathered MLP embeddings `[slots, e]`.
    emb_user: Vec<f32>,
    emb_item: Vec<f32>,
    /// `E · Wᵀ` per slot `[slots, width]`; reused for `dE` (`[slots, e]`) in [`Factored::finish`].
    proj_user: Vec<f32>,
    proj_item: Vec<f32>,
    /// Summed `dZ_0` per slot `[slots, width]`.
    agg_user: Vec<f32>,
    agg_item: Vec<f32>,
    /// With sparse gradients ([`Factored::begin`]): the GMF embedding gradients per slot
    /// `[slots, factors]`; the MLP embedding gradients stay in `proj_*` after
    /// [`Factored::finish`] ([`Factored::sparse_rows`]).
    sparse: bool,
    gmf_user: Vec<f32>,
    gmf_item: Vec<f32>,
    /// Without the factored first layer ([`Factored::begin_rows`]): the MLP embedding
    /// gradients per slot `[slots, e]`.
    per_sample: bool,
    mlp_user: Vec<f32>,
    mlp_item: Vec<f32>,
    /// The thread's samples of the step and their slots.
    pub user: Vec<u32>,
    pub item: Vec<u32>,
    pub label: Vec<f32>,
    pub index: Vec<u64>,
    su: Vec<u32>,
    si: Vec<u32>,
    /// Scratch of [`Factored::order_by_user`], kept to avoid page faults every step.
    perm: Vec<u32>,
    scratch: Vec<u32>,
    scratch_f: Vec<f32>,
    scratch_i: Vec<u64>,
}

impl Factored {
    pub fn new(n_users: u32, n_items: u32) -> Factored {
        Factored {
            slot_user: vec![NONE; n_users as usize],
            slot_item: vec![NONE; n_items as usize],
            ..Factored::default()
        }
    }

    /// Forget the previous step's samples (call before pushing this step's).
    pub fn clear(&mut self) {
        for &u in &self.users {
            self.slot_user[u as usize] = NONE;
        }
        for &i in &self.items {
            self.slot_item[i as usize] = NONE;
        }
        self.users.clear();
        self.items.clear();
        self.user.clear();
        self.item.clear();
        self.label.clear();
        self.index.clear();
        self.su.clear();
        self.si.clear();
    }

    /// Add one sample of the step (ids must be in range).
    #[inline]
    pub fn push(&mut self, user: u32, item: u32, label: f32, index: u64) {
        let s = &mut self.slot_user[user as usize];
        if *s == NONE {
            *s = self.users.len() as u32;
            self.users.push(user);
        }
        self.su.push(*s);
        let s = &mut self.slot_item[item as usize];
        if *s == NONE {
            *s = self.items.len() as u32;
            self.items.push(item);
        }
        self.si.push(*s);
        self.user.push(user);
        self.item.push(item);
        self.label.push(label);
        self.index.push(index);
    }

    /// After the step's samples are pushed: order them by user slot (stable), gather the
    /// distinct rows' MLP embeddings, compute their first-layer products and zero the
    /// aggregates. `sparse`: the step's embedding gradients stay here by slot (GMF's added by
    /// [`super::tile::backward_with`], the MLP's left by [`Factored::finish`]) instead of going
    /// into the dense gradient vector: memory follows the distinct rows, not the model.
    ///
    /// Ordering by user turns the random reads of user projection rows (and the adds into the
    /// user aggregates) into a sequential sweep; only the order of float additions changes.
    pub fn begin(&mut self, net: &Net, p: &[f32], sparse: bool) {
        self.size_slot_grads(net, sparse, false);
        self.order_by_user();
        let (e, width) = (net.e, net.layers[1]);
        let (nu, ni) = (self.users.len(), self.items.len());
        gather(&mut self.emb_user, &self.users, &p[net.mlp_user..], e);
        gather(&mut self.emb_item, &self.items, &p[net.mlp_item..], e);
        for (emb, proj, rows, side) in [
            (&self.emb_user, &mut self.proj_user, nu, Side::User),
            (&self.emb_item, &mut self.proj_item, ni, Side::Item),
        ] {
            proj.clear();
            proj.resize(rows * width, 0.0);
            project(net, p, side, emb, rows, proj);
        }
        for (agg, rows) in [(&mut self.agg_user, nu), (&mut self.agg_item, ni)] {
            agg.clear();
            agg.resize(rows * width, 0.0);
        }
    }

    /// Without the factored first layer, after the step's samples are pushed: zeroed slot rows
    /// for the embedding gradients of every table ([`Factored::slot_grads`]); the samples keep
    /// the order they were pushed in.
    pub fn begin_rows(&mut self, net: &Net) {
        self.size_slot_grads(net, true, true);
    }

    fn size_slot_grads(&mut self, net: &Net, sparse: bool, per_sample: bool) {
        (self.sparse, self.per_sample) = (sparse, per_sample);
        let (nu, ni) = (self.users.len(), self.items.len());
        let (f, e) = (net.f, if per_sample { net.e } else { 0 });
        for (buf, width, rows) in [
            (&mut self.gmf_user, f, nu),
            (&mut self.gmf_item, f, ni),
            (&mut self.mlp_user, e, nu),
            (&mut self.mlp_item, e, ni),
        ] {
            buf.clear();
            if sparse && width > 0 {
                buf.resize(rows * width, 0.0);
            } else {
                buf.shrink_to_fit();
            }
        }
    }

    /// Counting sort of the samples by user slot, keeping their order within a user.
    fn order_by_user(&mut self) {
        let next = &mut self.scratch;
        next.clear();
        next.resize(self.users.len() + 1, 0);
        for &s in &self.su {
            next[s as usize + 1] += 1;
        }
        for k in 1..next.len() {
            next[k] += next[k - 1];
        }
        self.perm.resize(self.su.len(), 0);
        for (k, &s) in self.su.iter().enumerate() {
            self.perm[next[s as usize] as usize] = k as u32;
            next[s as usize] += 1;
        }
        let perm = &self.perm;
        let tmp = &mut self.scratch;
        let mut apply = |v: &mut Vec<u32>| {
            tmp.clear();
            tmp.extend(perm.iter().map(|&k| v[k as usize]));
            std::mem::swap(v, tmp);
        };
        apply(&mut self.user);
        apply(&mut self.item);
        apply(&mut self.su);
        apply(&mut self.si);
        let tmp = &mut self.scratch_i;
        tmp.clear();
        tmp.extend(perm.iter().map(|&k| self.index[k as usize]));
        std::mem::swap(&mut self.index, tmp);
        let tmp = &mut self.scratch_f;
        tmp.clear();
        tmp.extend(perm.iter().map(|&k| self.label[k as usize]));
        std::mem::swap(&mut self.label, tmp);
    }

    /// Fill `work` with samples `range` of the step (their ids, labels, indices and slots).
    pub fn load_tile(&self, work: &mut Work, range: std::ops::Range<usize>) {
        work.clear();
        work.user.extend_from_slice(&self.user[range.clone()]);
        work.item.extend_from_slice(&self.item[range.clone()]);
        work.label.extend_from_slice(&self.label[range.clone()]);
        work.index.extend_from_slice(&self.index[range.clone()]);
        work.su.extend_from_slice(&self.su[range.clone()]);
        work.si.extend_from_slice(&self.si[range]);
    }

    /// The distinct users and items of the step (in slot order).
    pub fn distinct(&self) -> (&[u32], &[u32]) {
        (&self.users, &self.items)
    }

    pub fn projections(&self) -> Projections<'_> {
        Projections {
            user: &self.proj_user,
            item: &self.proj_item,
        }
    }

    /// Where [`super::tile::backward_with`] leaves the factored first layer's `dZ_0` sums and,
    /// with sparse gradients, the embedding gradients by slot.
    pub fn targets(&mut self) -> (Aggregates<'_>, Option<SlotGrads<'_>>) {
        let slots = self.sparse.then_some(SlotGrads {
            gmf_user: &mut self.gmf_user,
            gmf_item: &mut self.gmf_item,
            mlp_user: &mut self.mlp_user,
            mlp_item: &mut self.mlp_item,
        });
        let agg = Aggregates {
            user: &mut self.agg_user,
            item: &mut self.agg_item,
        };
        (agg, slots)
    }

    /// With sparse gradients: where [`super::tile::backward_with`] adds the embedding
    /// gradients by slot ([`Factored::targets`] without the factored sums).
    pub fn slot_grads(&mut self) -> Option<SlotGrads<'_>> {
        self.targets().1
    }

    /// After every tile's backward: add `dW_0 += Aggᵀ · E` (both halves) and the embedding
    /// gradients `Agg · W` of every distinct row into `g` (the flat layout), or keep them by
    /// slot with sparse gradients.
    pub fn finish(&mut self, net: &Net, p: &[f32], g: &mut [f32]) {
        let (e, width) = (net.e, net.layers[1]);
        let w0 = &p[net.w[0]..net.w[0] + width * 2 * e];
        for (agg, emb, grad, rows, col) in [
            (
                &self.agg_user,
                &self.emb_user,
                &mut self.proj_user,
                self.users.len(),
                0,
            ),
            (
                &self.agg_item,
                &self.emb_item,
                &mut self.proj_item,
                self.items.len(),
                e,
            ),
        ] {
            // dW_0[:, col..col + e] += Aggᵀ · E: [width, rows] · [rows, e].
            let gw = &mut g[net.w[0]..net.w[0] + width * 2 * e];
            sgemm(
                (width, rows, e),
                agg,
                (1, width),
                emb,
                (e, 1),
                1.0,
                &mut gw[col..],
                (2 * e, 1),
            );
            // dE = Agg · W_0[:, col..col + e]: [rows, width] · [width, e], into `grad`.
            grad.clear();
            grad.resize(rows * e, 0.0);
            sgemm(
                (rows, width, e),
                agg,
                (width, 1),
                &w0[col..],
                (2 * e, 1),
                0.0,
                grad,
                (e, 1),
            );
        }
        if !self.sparse {
            scatter_add(g, net.mlp_user, &self.users, &self.proj_user, e);
            scatter_add(g, net.mlp_item, &self.items, &self.proj_item, e);
        }
    }

    /// With sparse gradients, after [`Factored::finish`]: this thread's embedding gradients
    /// by slot, for the optimiser pass.
    pub fn sparse_rows<'a>(&'a self, net: &Net) -> SparseRows<'a> {
        debug_assert!(self.sparse);
        let mut tables = Vec::with_capacity(4);
        if net.f > 0 {
            tables.push((net.mf_user, &self.gmf_user[..]));
            tables.push((net.mf_item, &self.gmf_item[..]));
        }
        if net.e > 0 {
            let (mu, mi) = match self.per_sample {
                true => (&self.mlp_user, &self.mlp_item),
                false => (&self.proj_user, &self.proj_item),
            };
            tables.push((net.mlp_user, &mu[..]));
            tables.push((net.mlp_item, &mi[..]));
        }
        SparseRows {
            slot_user: &self.slot_user,
            slot_item: &self.slot_item,
            tables,
        }
    }
}

/// `out = rows ids[k] of the [*, e] table starting at `table[0]`.
fn gather(out: &mut Vec<f32>, ids: &[u32], table: &[f32], e: usize) {
    out.clear();
    out.reserve(ids.len() * e);
    for &id in ids {
        let o = id as usize * e;
        out.extend_from_slice(&table[o..o + e]);
    }
}

/// `g[base + ids[k] · e ..][..e] += rows[k]`.
fn scatter_add(g: &mut [f32], base: usize, ids: &[u32], rows: &[f32], e: usize) {
    for (&id, row) in ids.iter().zip(rows.chunks_exact(e)) {
        let o = base + id as usize * e;
        for (x, d) in g[o..o + e].iter_mut().zip(row) {
            *x += d;
        }
    }
}

/// `out[rows, width] = E[rows, e] · W_sideᵀ`: the first layer's product of `rows` embedding rows
/// of one side (`emb` row-major, `e` wide).
pub(super) fn project(net: &Net, p: &[f32], side: Side, emb: &[f32], rows: usize, out: &mut [f32]) {
    let (e, width) = (net.e, net.layers[1]);
    let w0 = &p[net.w[0]..net.w[0] + width * 2 * e];
    let col = match side {
        Side::User => 0,
        Side::Item => e,
    };
    sgemm(
        (rows, e, width),
        emb,
        (e, 1),
        &w0[col..],
        (1, 2 * e),
        0.0,
        out,
        (width, 1),
    );
}
