//! EASE, the item-item linear model of Steck, "Embarrassingly Shallow Autoencoders for Sparse
//! Data" (WWW 2019): `score(u, i) = Σ_j X_uj B_ji` for the 0/1 training matrix `X` and the item
//! weights `B` that minimise
//!
//! ```text
//! L = ‖X − X B‖²_F + λ ‖B‖²_F    subject to diag(B) = 0
//! ```
//!
//! (`λ` = `--l2`). The minimiser is closed-form: with `P = (XᵀX + λI)⁻¹`,
//! `B_ij = −P_ij / P_jj` off the diagonal, and the minimum is `L = Σ_j (1/P_jj − λ)`.
//! One "epoch" builds the Gramian `XᵀX` (exact counts, f64), inverts it by blocked Gauss–Jordan
//! elimination ([`spd_inverse`], f64, rows in parallel) and writes `B`: `O(Σ_u n_u² + |I|³)`,
//! independent of any seed.
//!
//! It is an item-item model, a different family from the factorisations (its errors differ
//! from theirs, which is what an ensemble wants). The model is stored as a GMF whose factors
//! are the items (`factors = |I|`): user `u`'s embedding is `X_u` (ones at its training items),
//! item `i`'s is column `i` of `B`, final weights one, bias zero, so the GMF score is exactly
//! EASE's and every tool scores it. The file is `(|U| + |I|)·|I|` floats (145 MB for ml-1m).
//!
//! [`Side::User`] fits the same model on `Xᵀ`: user-user weights `C` (`|U| × |U|`, diag 0)
//! minimising `‖Xᵀ − XᵀC‖² + λ‖C‖²`, `score(u, i) = Σ_v C_vu X_vi`, stored with the roles of
//! the tables swapped (`factors = |U|`: user `u`'s embedding is column `u` of `C`, item `i`'s
//! its column of `X`). A different neighbourhood, so again different errors.

use super::{
    check_whole_epoch, gmf_config, whole_epoch_defaults, Capabilities, Choices, FamilySpec, Fitted,
    Flag, MomentFree, Plan,
};
use crate::data::csr::Csr;
use crate::data::dataset::Dataset;
use crate::dist::Group;
use crate::model::{Model, ModelKind, Side};
use crate::train::backend::check_ids;
use crate::train::config::{Shape, TrainConfig};
use crate::train::{StepStats, Trainer};
use crate::{Error, Result};

/// λ unless `--l2` is given: chosen on the validation split of the paper's ml-1m data
/// (docs/RESULTS.md).
pub const DEFAULT_REG: f32 = 1000.0;

/// Pivots per pass of [`spd_inverse`]: each row is streamed once per block instead of once
/// per pivot.
const BLOCK: usize = 32;

/// `--model ease` (item-item, [`Side::Item`]) and `--model ease-users` (user-user).
pub struct Ease(pub Side);

impl FamilySpec for Ease {
    fn name(&self) -> &'static str {
        model_name(self.0)
    }

    /// The CPU and one rank, no checkpoint, no SGD flags, and nothing but `--l2` sets it.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            cpu_only: Some("ncf-cuda has no closed-form solver".into()),
            one_rank: Some("its threads share the machine's cores".into()),
            // A closed-form fit has nothing to resume, and its checkpoint would hold three
            // copies of a model of (users + items) × width floats.
            no_checkpoints: Some(
                "is fitted in closed form in one step; it writes no checkpoint (rerun it instead \
                 of resuming: same bits)"
                    .into(),
            ),
            refuses: vec![
                (
                    Flag::SGD_RECIPE,
                    "is fitted in closed form over every pair (no optimiser, batches, sampled \
                     negatives or MLP)"
                        .into(),
                ),
                (
                    &[Flag::Factors, Flag::InitStd, Flag::Epochs],
                    format!(
                        "has one factor per {} and is fitted exactly in one epoch from nothing \
                         (only --l2 sets it)",
                        unit(self.0)
                    ),
                ),
            ],
            ..Capabilities::default()
        }
    }

    fn defaults(&self, cfg: &mut TrainConfig, _shape: &mut Shape, _c: &Choices) {
        whole_epoch_defaults(cfg);
        cfg.l2 = DEFAULT_REG;
        cfg.epochs = 1;
    }

    fn init(&self, _plan: &Plan, n_users: u32, n_items: u32) -> Result<Model> {
        init(n_users, n_items, self.0)
    }

    fn cpu_trainer(
        &self,
        model: Model,
        cfg: &TrainConfig,
        data: &Dataset,
        threads: usize,
        _group: Option<Group>,
    ) -> Result<Box<dyn Trainer>> {
        let (users, items) = (&*data.train_users.rows(), &data.train_items);
        Ok(Box::new(EaseTrainer::new(
            model, cfg, users, items, self.0, threads,
        )?))
    }
}

/// Its `ncf-train --model` name: EASE learns item-item weights on [`Side::Item`] (Steck's, one
/// factor per item) or user-user weights on [`Side::User`] (EASE on `Xᵀ`, one factor per user).
pub fn model_name(side: Side) -> &'static str {
    match side {
        Side::Item => "ease",
        Side::User => "ease-users",
    }
}

/// What one factor (one row and column of the Gramian) stands for.
pub fn unit(side: Side) -> &'static str {
    match side {
        Side::Item => "item",
        Side::User => "user",
    }
}

/// The number of factors: the items or the users.
pub fn width(side: Side, n_users: u32, n_items: u32) -> u32 {
    match side {
        Side::Item => n_items,
        Side::User => n_users,
    }
}

/// Bytes a fit needs, about: the model (`(|U| + |I|) × width` floats) three times (the
/// trainer's, the copy handed out to be saved, the file's bytes) and the f64 Gramian
/// (`width²`), `width` the items or the users. `ncf-train` writes no checkpoint for EASE (that
/// would be three more copies).
pub fn memory_needed(n_users: u32, n_items: u32, side: Side) -> u64 {
    let width = width(side, n_users, n_items) as u64;
    let params = (n_users as u64 + n_items as u64).saturating_mul(width);
    params
        .saturating_mul(12)
        .saturating_add(width.saturating_mul(width).saturating_mul(8))
}

/// An empty EASE model (all zeros until fitted) for `n_users × n_items`, in the GMF form.
/// Refused before anything is allocated when [`memory_needed`] exceeds the memory available
/// ([`crate::memory::require`]): EASE is dense in the items (users) it models.
pub fn init(n_users: u32, n_items: u32, side: Side) -> Result<Model> {
    let need = memory_needed(n_users, n_items, side);
    let (flag, width_n, unit) = (model_name(side), width(side, n_users, n_items), unit(side));
    crate::memory::require(
        need,
        &format!(
            "--model {flag}: fitting {n_users} users × {n_items} items (a dense {width_n} × \
             {width_n} Gramian and a model with one factor per {unit})"
        ),
        &format!("EASE suits up to tens of thousands of {unit}s"),
    )?;
    let config = gmf_config(n_users, n_items, width(side, n_users, n_items) as usize);
    config.validate()?;
    let layout = config.layout();
    let mut model = Model {
        params: vec![0f32; layout.total],
        layout,
        config,
    };
    model.tensor_mut("final.weight").fill(1.0);
    Ok(model)
}

/// `row -= row[k] · pivot` for the pivot row `pivot` of column `k` (already scaled, with
/// `pivot[k] = r = 1/p`), leaving `−row[k]·r` in column `k`: one Gauss–Jordan update.
#[inline]
fn eliminate(row: &mut [f64], pivot: &[f64], k: usize, r: f64) {
    let f = row[k];
    if f == 0.0 {
        return;
    }
    for (x, &p) in row.iter_mut().zip(pivot) {
        *x -= f * p;
    }
    row[k] = -f * r;
}

/// Invert the symmetric positive-definite `n × n` row-major `a` in place by Gauss–Jordan
/// elimination without pivoting (a positive-definite matrix needs none), in blocks of
/// [`BLOCK`] pivots: the block's own rows are eliminated in order, keeping a copy of each
/// pivot row as it was at its own step; every other row then takes the block's updates in the
/// same order, on `threads` threads. The same operations in the same order as the plain
/// algorithm, so the result does not depend on the thread count. `Err` names the first pivot
/// that is not positive (relative to its diagonal entry), i.e. a matrix that is not positive
/// definite.
pub fn spd_inverse(a: &mut [f64], n: usize, threads: usize) -> std::result::Result<(), usize> {
    assert_eq!(a.len(), n * n, "spd_inverse: not an n × n matrix");
    let diag: Vec<f64> = (0..n).map(|k| a[k * n + k]).collect();
    let mut snap = vec![0f64; BLOCK * n];
    let mut inv = [0f64; BLOCK];
    for k0 in (0..n).step_by(BLOCK) {
        let kb = BLOCK.min(n - k0);
        for t in 0..kb {
            let k = k0 + t;
            let p = a[k * n + k];
            if !(p.is_finite() && p > 1e-12 * diag[k]) {
                return Err(k);
            }
            let r = 1.0 / p;
            let row = &mut a[k * n..k * n + n];
            for x in row.iter_mut() {
                *x *= r;
            }
            row[k] = r;
            snap[t * n..t * n + n].copy_from_slice(row);
            inv[t] = r;
            for s in (0..kb).filter(|&s| s != t) {
                let i = k0 + s;
                eliminate(&mut a[i * n..i * n + n], &snap[t * n..t * n + n], k, r);
            }
        }
        let (snap, inv) = (&snap[..kb * n], &inv[..kb]);
        let update = |rows: &mut [f64]| {
            for row in rows.chunks_exact_mut(n) {
                for (t, pivot) in snap.chunks_exact(n).enumerate() {
                    eliminate(row, pivot, k0 + t, inv[t]);
                }
            }
        };
        let (before, rest) = a.split_at_mut(k0 * n);
        let after = &mut rest[kb * n..];
        let threads = threads.max(1);
        if threads == 1 {
            update(before);
            update(after);
            continue;
        }
        // Rows outside the block in runs of about equal length: `threads` runs, one more when
        // the block splits a run in two.
        let per = (n - kb).div_ceil(threads).max(1);
        std::thread::scope(|sc| {
            let mut chunks: Vec<&mut [f64]> = Vec::new();
            for part in [before, after] {
                chunks.extend(part.chunks_mut(per * n));
            }
            for c in chunks {
                sc.spawn(|| update(c));
            }
        });
    }
    Ok(())
}

/// The Gramian `XᵀX` (`n_items × n_items`, f64 counts) from each item's users (`by_item`) and
/// each user's items (`by_user`): row `a` gets one for every item of every user of item `a`;
/// rows in parallel. With the arguments swapped, `XXᵀ`.
fn gramian(by_item: &Csr, by_user: &Csr, threads: usize) -> Vec<f64> {
    let n = by_item.n_rows();
    let mut g = vec![0f64; n * n];
    let per = n.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|sc| {
        for (t, chunk) in g.chunks_mut(per * n).enumerate() {
            sc.spawn(move || {
                for (k, row) in chunk.chunks_exact_mut(n).enumerate() {
                    for &u in by_item.row(t * per + k) {
                        for &b in by_user.row(u as usize) {
                            row[b as usize] += 1.0;
                        }
                    }
                }
            });
        }
    });
    g
}

/// The EASE trainer (see the module documentation). Its one [`Trainer::step`] fits the model
/// exactly; a further step refits the same data to the same bits.
pub struct EaseTrainer {
    fit: Fitted,
    by_user: Csr,
    by_item: Csr,
    side: Side,
    reg: f64,
    /// `Σ_j (1/P_jj − λ)` of the last fit.
    objective: f64,
}

impl EaseTrainer {
    /// A trainer for `model` (from [`init`] with the same `side`) on the training positives;
    /// `cfg.l2` is λ (> 0), `cfg.negatives` must be 0.
    pub fn new(
        model: Model,
        cfg: &TrainConfig,
        train_users: &[u32],
        train_items: &[u32],
        side: Side,
        threads: usize,
    ) -> Result<Self> {
        let c = &model.config;
        if c.kind != ModelKind::Gmf || c.factors != width(side, c.n_users, c.n_items) as usize {
            return Err(Error::invalid(format!(
                "not an EASE model of this side (a GMF with one factor per {})",
                unit(side)
            )));
        }
        let flag = model_name(side);
        if cfg.negatives != 0 {
            return Err(Error::usage(format!(
                "--model {flag} is fitted in closed form over every pair: it takes no --negatives"
            )));
        }
        let reg = cfg.l2 as f64;
        if !(reg.is_finite() && reg > 0.0) {
            return Err(Error::usage(format!(
                "--l2 must be finite and above 0 for --model {flag} (the Gramian alone is singular)"
            )));
        }
        check_ids(&model.config, train_users, train_items)
            .map_err(|e| Error::invalid(format!("training data: {e}")))?;
        let by_user = Csr::by_row(c.n_users as usize, train_users, train_items);
        let by_item = Csr::by_row(c.n_items as usize, train_items, train_users);
        Ok(EaseTrainer {
            fit: Fitted::new(model, threads),
            by_user,
            by_item,
            side,
            reg,
            objective: f64::NAN,
        })
    }

    pub fn params(&self) -> &[f32] {
        &self.fit.model.params
    }

    /// The minimum `L` found by the last fit (NaN before the first).
    pub fn objective(&self) -> f64 {
        self.objective
    }

    fn fit(&mut self) -> Result<()> {
        // `rows`: the rows of the matrix whose columns are modelled (X for items, Xᵀ for
        // users), `cols` its columns; `weights` the table that takes B, `ones` the one of X.
        let (rows, cols, weights, ones, what) = match self.side {
            Side::Item => (
                &self.by_user,
                &self.by_item,
                "mf_item_embed.weight",
                "mf_user_embed.weight",
                "item",
            ),
            Side::User => (
                &self.by_item,
                &self.by_user,
                "mf_user_embed.weight",
                "mf_item_embed.weight",
                "user",
            ),
        };
        let n = cols.n_rows();
        let mut p = gramian(cols, rows, self.fit.threads);
        for k in 0..n {
            p[k * n + k] += self.reg;
        }
        spd_inverse(&mut p, n, self.fit.threads).map_err(|k| {
            Error::invalid(format!(
                "EASE: the Gramian + λI is not positive definite at {what} {k} (raise --l2)"
            ))
        })?;
        let mut objective = 0.0;
        let table = self.fit.model.tensor_mut(weights);
        for (i, (dst, src)) in table.chunks_exact_mut(n).zip(p.chunks_exact(n)).enumerate() {
            // Column i's embedding is column i of B: B_ji = −P_ji / P_ii = −P_ij / P_ii (P is
            // symmetric; row i of the computed inverse is used).
            let s = -1.0 / src[i];
            for (y, &x) in dst.iter_mut().zip(src) {
                *y = (x * s) as f32;
            }
            dst[i] = 0.0;
            objective += 1.0 / src[i] - self.reg;
        }
        let table = self.fit.model.tensor_mut(ones);
        table.fill(0.0);
        for (r, dst) in table.chunks_exact_mut(n).enumerate() {
            for &c in rows.row(r) {
                dst[c as usize] = 1.0;
            }
        }
        self.objective = objective;
        Ok(())
    }
}

impl MomentFree for EaseTrainer {
    fn backend_name(&self) -> String {
        format!(
            "cpu (ease, {}, closed form; {} thread{})",
            match self.side {
                Side::Item => "item-item",
                Side::User => "user-user",
            },
            self.fit.threads,
            if self.fit.threads > 1 { "s" } else { "" }
        )
    }

    fn fit_step(&mut self, _epoch: u32, positions: std::ops::Range<u64>) -> Result<StepStats> {
        let n = self.by_user.nnz() as u64;
        check_whole_epoch(&positions, n, "EASE is fitted on the whole training set")?;
        self.fit()?;
        self.fit.steps += 1;
        // Reported "loss": the minimum per observed pair.
        Ok(StepStats {
            loss: (self.objective / n.max(1) as f64) as f32,
            skipped: false,
        })
    }

    fn fitted(&self) -> &Fitted {
        &self.fit
    }

    fn fitted_mut(&mut self) -> &mut Fitted {
        &mut self.fit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neumf_cpu::score;
    use crate::train::Scorer;

    fn data() -> (Vec<u32>, Vec<u32>) {
        // 6 users, 9 items (item 8 never observed, user 5 has one item).
        let users = vec![0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4, 5];
        let items = vec![0, 3, 5, 1, 2, 0, 4, 7, 3, 6, 5, 2, 7, 1];
        (users, items)
    }

    fn cfg(l2: f32) -> TrainConfig {
        TrainConfig {
            epochs: 1,
            negatives: 0,
            l2,
            ..TrainConfig::nvidia(5)
        }
    }

    fn fitted(l2: f32, threads: usize) -> EaseTrainer {
        let (u, i) = data();
        let model = init(6, 9, Side::Item).unwrap();
        let mut t = EaseTrainer::new(model, &cfg(l2), &u, &i, Side::Item, threads).unwrap();
        t.step(0, 0..14).unwrap();
        t
    }

    /// A symmetric positive-definite `n × n` test matrix: `MᵀM + n·I` with a fixed `M`.
    fn spd(n: usize) -> Vec<f64> {
        let m: Vec<f64> = (0..n * n)
            .map(|k| ((k * 7919 % 23) as f64 - 11.0) / 5.0)
            .collect();
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|r| m[r * n + i] * m[r * n + j]).sum::<f64>();
            }
            a[i * n + i] += n as f64;
        }
        a
    }

    #[test]
    fn the_inverse_times_the_matrix_is_the_identity_for_any_threads() {
        // Sizes below, at and across blocks.
        for n in [1, 5, BLOCK, BLOCK + 1, 2 * BLOCK + 7] {
            let a = spd(n);
            let mut p = a.clone();
            spd_inverse(&mut p, n, 1).unwrap();
            for i in 0..n {
                for j in 0..n {
                    let v: f64 = (0..n).map(|k| p[i * n + k] * a[k * n + j]).sum();
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((v - want).abs() < 1e-9, "n {n}: (P A)[{i}][{j}] = {v}");
                }
            }
            for threads in [2, 3, 8] {
                let mut q = a.clone();
                spd_inverse(&mut q, n, threads).unwrap();
                assert!(
                    p.iter().zip(&q).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "n {n}: {threads} threads changed the bits"
                );
            }
        }
        // Not positive definite: the failing pivot is named.
        let mut s = vec![1.0, 2.0, 2.0, 4.0];
        assert_eq!(spd_inverse(&mut s, 2, 1), Err(1));
        let mut neg = vec![-1.0];
        assert_eq!(spd_inverse(&mut neg, 1, 1), Err(0));
    }

    /// The dense 0/1 training matrix.
    fn x_dense() -> Vec<f64> {
        let (u, i) = data();
        let mut x = vec![0f64; 6 * 9];
        for (&u, &i) in u.iter().zip(&i) {
            x[u as usize * 9 + i as usize] = 1.0;
        }
        x
    }

    /// `B` from the model: `B[j][i]` = item i's embedding at j.
    fn b_of(t: &EaseTrainer) -> Vec<f64> {
        let q = t.fit.model.tensor("mf_item_embed.weight");
        let mut b = vec![0f64; 81];
        for i in 0..9 {
            for j in 0..9 {
                b[j * 9 + i] = q[i * 9 + j] as f64;
            }
        }
        b
    }

    fn loss(b: &[f64], l2: f64) -> f64 {
        let x = x_dense();
        let mut l = 0.0;
        for u in 0..6 {
            for i in 0..9 {
                let xb: f64 = (0..9).map(|j| x[u * 9 + j] * b[j * 9 + i]).sum();
                l += (x[u * 9 + i] - xb).powi(2);
            }
        }
        l + l2 * b.iter().map(|v| v * v).sum::<f64>()
    }

    #[test]
    fn b_is_the_constrained_minimiser_and_the_objective_its_loss() {
        let l2 = 0.7;
        let t = fitted(l2 as f32, 2);
        let b = b_of(&t);
        for k in 0..9 {
            assert_eq!(b[k * 9 + k], 0.0, "diag(B) must be zero");
        }
        let l0 = loss(&b, l2);
        assert!(
            (t.objective() - l0).abs() < 1e-4 * l0,
            "closed-form minimum {} against the loss {l0}",
            t.objective()
        );
        // Every off-diagonal step, either way, raises the loss (f32 storage: a step of 1e-2).
        for j in 0..9 {
            for i in 0..9 {
                if i == j {
                    continue;
                }
                for h in [-1e-2, 1e-2] {
                    let mut c = b.clone();
                    c[j * 9 + i] += h;
                    assert!(loss(&c, l2) > l0, "B[{j}][{i}] + {h} lowers the loss");
                }
            }
        }
        // Stationarity off the diagonal: ((G + λI) B − G)_ji = 0 for j ≠ i.
        let x = x_dense();
        let g = |a: usize, c: usize| (0..6).map(|u| x[u * 9 + a] * x[u * 9 + c]).sum::<f64>();
        for j in 0..9 {
            for i in 0..9 {
                if i != j {
                    let v: f64 =
                        (0..9).map(|k| g(j, k) * b[k * 9 + i]).sum::<f64>() + l2 * b[j * 9 + i];
                    assert!((v - g(j, i)).abs() < 1e-5, "gradient at B[{j}][{i}]: {v}");
                }
            }
        }
    }

    #[test]
    fn scores_are_x_times_b_and_do_not_depend_on_threads() {
        let mut t = fitted(0.5, 1);
        let b = b_of(&t);
        let x = x_dense();
        let (users, items): (Vec<u32>, Vec<u32>) = (0..6u32)
            .flat_map(|u| (0..9u32).map(move |i| (u, i)))
            .unzip();
        let mut out = vec![0f32; users.len()];
        t.score(&users, &items, &mut out).unwrap();
        for (k, (&u, &i)) in users.iter().zip(&items).enumerate() {
            let want: f64 = (0..9)
                .map(|j| x[u as usize * 9 + j] * b[j * 9 + i as usize])
                .sum();
            assert!((out[k] as f64 - want).abs() < 1e-5, "score({u}, {i})");
        }
        let m = t.model().unwrap();
        let mut again = vec![0f32; users.len()];
        score(&m, &users, &items, &mut again);
        assert_eq!(out, again);
        let t3 = fitted(0.5, 3);
        assert!(t
            .params()
            .iter()
            .zip(t3.params())
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        // A second fit and a state round trip keep the bits.
        let mut t2 = fitted(0.5, 2);
        t2.step(1, 0..14).unwrap();
        assert_eq!(t2.params(), t.params());
        let s = t2.save_state().unwrap();
        let (u, i) = data();
        let model = init(6, 9, Side::Item).unwrap();
        let mut r = EaseTrainer::new(model, &cfg(0.5), &u, &i, Side::Item, 1).unwrap();
        r.load_state(&s).unwrap();
        assert_eq!(r.params(), t.params());
    }

    #[test]
    fn the_user_side_is_the_item_side_of_the_transpose() {
        let (u, i) = data();
        let mut users = EaseTrainer::new(
            init(6, 9, Side::User).unwrap(),
            &cfg(0.5),
            &u,
            &i,
            Side::User,
            2,
        )
        .unwrap();
        users.step(0, 0..14).unwrap();
        // Items as users and users as items.
        let mut tr = EaseTrainer::new(
            init(9, 6, Side::Item).unwrap(),
            &cfg(0.5),
            &i,
            &u,
            Side::Item,
            1,
        )
        .unwrap();
        tr.step(0, 0..14).unwrap();
        let (a, b) = (&users.fit.model, &tr.fit.model);
        assert_eq!(a.config.factors, 6);
        assert_eq!(
            a.tensor("mf_user_embed.weight"),
            b.tensor("mf_item_embed.weight")
        );
        assert_eq!(
            a.tensor("mf_item_embed.weight"),
            b.tensor("mf_user_embed.weight")
        );
        assert_eq!(users.objective(), tr.objective());
        // Not the item side's scores: a different model.
        let mut items = fitted(0.5, 1);
        let (us, is): (Vec<u32>, Vec<u32>) = (0..6u32)
            .flat_map(|u| (0..9u32).map(move |i| (u, i)))
            .unzip();
        let (mut x, mut y) = (vec![0f32; us.len()], vec![0f32; us.len()]);
        users.score(&us, &is, &mut x).unwrap();
        items.score(&us, &is, &mut y).unwrap();
        assert_ne!(x, y);
    }

    #[test]
    fn bad_input_is_refused() {
        let (u, i) = data();
        let new = |m: Model, c: TrainConfig| {
            let side = if m.config.factors == 6 {
                Side::User
            } else {
                Side::Item
            };
            EaseTrainer::new(m, &c, &u, &i, side, 1).err().unwrap()
        };
        assert!(new(init(6, 9, Side::Item).unwrap(), cfg(0.0))
            .to_string()
            .contains("--l2"));
        assert!(new(init(6, 9, Side::Item).unwrap(), cfg(f32::NAN))
            .to_string()
            .contains("--l2"));
        let with_negatives = TrainConfig {
            negatives: 4,
            ..cfg(1.0)
        };
        assert!(new(init(6, 9, Side::Item).unwrap(), with_negatives)
            .to_string()
            .contains("--negatives"));
        let gmf8 = crate::family::ials::init(6, 9, 8, 0.1, 1).unwrap();
        assert!(new(gmf8, cfg(1.0))
            .to_string()
            .contains("not an EASE model"));
        // An item-side model given to the user side.
        let (u2, i2) = data();
        let wrong = EaseTrainer::new(
            init(6, 9, Side::Item).unwrap(),
            &cfg(1.0),
            &u2,
            &i2,
            Side::User,
            1,
        );
        assert!(wrong
            .err()
            .unwrap()
            .to_string()
            .contains("one factor per user"));
        assert!(new(init(6, 9, Side::User).unwrap(), cfg(0.0))
            .to_string()
            .contains("--l2"));
        let small = init(5, 9, Side::Item).unwrap();
        assert!(new(small, cfg(1.0)).to_string().contains("training data"));
        let mut t = fitted(1.0, 1);
        assert!(t.step(1, 0..7).is_err());
    }
}
