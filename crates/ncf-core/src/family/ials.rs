//! Matrix factorisation by implicit alternating least squares (iALS; Hu, Koren & Volinsky,
//! ICDM 2008) with the frequency-scaled regularisation of Rendle, Krichene, Zhang & Koren,
//! "Revisiting the Performance of iALS on Item Recommendation Benchmarks" (RecSys 2022), who
//! tuned it on the NCF paper's ml-1m split.
//!
//! `score(u, i) = ⟨w_u, h_i⟩`; the loss over every (user, item) pair, observed or not:
//!
//! ```text
//! L = Σ_{(u,i) observed} (1 − ⟨w_u, h_i⟩)²  +  α₀ Σ_{all (u,i)} ⟨w_u, h_i⟩²
//!     + λ Σ_u (n_u + α₀·|I|)·‖w_u‖²  +  λ Σ_i (n_i + α₀·|U|)·‖h_i‖²
//! ```
//!
//! (`α₀` the unobserved weight, `λ` = `--l2`, `n_u`/`n_i` the row's observed count). One epoch
//! solves every user row exactly with the items fixed, then every item row with the users
//! fixed: `w_u = (Σ_{i∈I_u} h_i h_iᵀ + α₀·HᵀH + λ(n_u + α₀|I|)·1)⁻¹ Σ_{i∈I_u} h_i`, by a
//! Cholesky factorisation in f64. The all-pairs term costs one Gramian `HᵀH` per side, so an
//! epoch is `O(nnz·d² + (|U| + |I|)·d³)` and needs no negative samples.
//!
//! The tables stay in f32 between the half-epochs (the model file's form), so a run resumed from
//! a checkpoint computes the same bits as one that was not stopped; rows are independent, so
//! the thread count never changes a result. The model is stored as a GMF (`factors = d`, final
//! weights one, bias zero) whose score is exactly the dot product: every tool scores it, and
//! `ncf-eval` can ensemble it with the other models.

use super::{
    check_whole_epoch, gmf_config, require_model_memory, whole_epoch_defaults, Capabilities,
    Choices, FamilySpec, Fitted, Flag, MomentFree, Plan, MOMENT_FREE_COPIES,
};
use crate::data::csr::Csr;
use crate::data::dataset::Dataset;
use crate::dist::Group;
use crate::model::{Model, ModelKind};
use crate::train::backend::check_ids;
use crate::train::config::{Shape, TrainConfig};
use crate::train::{StepStats, Trainer};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// λ of Rendle et al.'s ml-1m setting (192 factors, 12 epochs).
pub const DEFAULT_REG: f32 = 0.007;
/// α₀ of their ml-1m setting.
pub const DEFAULT_UNOBSERVED_WEIGHT: f32 = 0.3;
/// Epochs when `--epochs` is not given (their starting point for tuning).
pub const DEFAULT_EPOCHS: u32 = 16;

/// `--model ials`.
pub struct Ials;

/// iALS's own parameters ([`super::FamilyParams`]), set by its spec alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// `--unobserved-weight` α₀: the weight of every unobserved pair. Recorded in every model
    /// file and checkpoint since iALS came (0 in the other families'); absent in older ones, 0.
    #[serde(default)]
    pub unobserved_weight: f32,
}

impl FamilySpec for Ials {
    fn name(&self) -> &'static str {
        "ials"
    }

    /// The CPU and one rank; its own α₀ (`--unobserved-weight`) and no SGD flags.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            cpu_only: Some("ncf-cuda has no least-squares solver".into()),
            one_rank: Some("its threads share the machine's cores".into()),
            takes: &[Flag::InitStd, Flag::UnobservedWeight],
            refuses: vec![(
                Flag::SGD_RECIPE,
                "solves each epoch exactly by least squares over every pair (no optimiser, \
                 batches, sampled negatives or MLP)"
                    .into(),
            )],
            ..Capabilities::default()
        }
    }

    fn defaults(&self, cfg: &mut TrainConfig, _shape: &mut Shape, c: &Choices) {
        whole_epoch_defaults(cfg);
        // Rendle et al.'s ml-1m setting; --l2, --epochs and --unobserved-weight still win.
        cfg.l2 = DEFAULT_REG;
        cfg.epochs = DEFAULT_EPOCHS;
        cfg.family.ials = Params {
            unobserved_weight: c.unobserved_weight.unwrap_or(DEFAULT_UNOBSERVED_WEIGHT),
        };
    }

    fn init(&self, plan: &Plan, n_users: u32, n_items: u32) -> Result<Model> {
        let f = plan.shape.factors;
        let std = plan.init_std.unwrap_or(default_init_std(f));
        init(n_users, n_items, f, std, plan.cfg.seed)
    }

    fn cpu_trainer(
        &self,
        model: Model,
        cfg: &TrainConfig,
        data: &Dataset,
        threads: usize,
        _group: Option<Group>,
    ) -> Result<Box<dyn Trainer>> {
        let (users, items) = (&data.train_users, &data.train_items);
        Ok(Box::new(IalsTrainer::new(
            model, cfg, users, items, threads,
        )?))
    }
}

/// The initial standard deviation of the factors unless given: `0.1/√dim`, as their code.
pub fn default_init_std(dim: usize) -> f32 {
    0.1 / (dim.max(1) as f32).sqrt()
}

/// A new iALS model with `dim` factors drawn from N(0, `std`²) (the draws of [`Model::init`],
/// rescaled), in the GMF form: final weights one, bias zero.
pub fn init(n_users: u32, n_items: u32, dim: usize, std: f32, seed: u64) -> Result<Model> {
    if dim == 0 {
        return Err(Error::usage("--factors must be at least 1"));
    }
    if !(std.is_finite() && std >= 0.0) {
        return Err(Error::usage("--init-std must be finite and not negative"));
    }
    let config = gmf_config(n_users, n_items, dim);
    let flags = format!("--model ials --factors {dim}");
    require_model_memory(&flags, &config, MOMENT_FREE_COPIES, "")?;
    let mut model = Model::init(config, seed)?;
    // Model::init draws embeddings as 0.01·N(0, 1).
    let scale = std / 0.01;
    for name in ["mf_user_embed.weight", "mf_item_embed.weight"] {
        for x in model.tensor_mut(name) {
            *x *= scale;
        }
    }
    model.tensor_mut("final.weight").fill(1.0);
    model.tensor_mut("final.bias")[0] = 0.0;
    Ok(model)
}

/// `⟨a, b⟩` in f64 with four partial sums (vectorises; fixed order, so fixed results).
#[inline]
fn dot64(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s = (acc[0] + acc[2]) + (acc[1] + acc[3]);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Solve `A x = b` for a symmetric positive-definite `A` (`n × n`, row-major; only the lower
/// triangle is read and it is overwritten by the Cholesky factor). `x` replaces `b`. `Err` with
/// the failing pivot when `A` is not positive definite.
pub fn cholesky_solve(a: &mut [f64], b: &mut [f64], n: usize) -> std::result::Result<(), usize> {
    debug_assert!(a.len() == n * n && b.len() == n);
    for j in 0..n {
        let (done, rest) = a.split_at_mut(j * n);
        let rj = &mut rest[..n];
        // Row j of L left of the diagonal: L[j][k] = (A[j][k] − Σ_{m<k} L[j][m]·L[k][m]) / L[k][k].
        for k in 0..j {
            let rk = &done[k * n..k * n + n];
            rj[k] = (rj[k] - dot64(&rj[..k], &rk[..k])) / rk[k];
        }
        let d = rj[j] - dot64(&rj[..j], &rj[..j]);
        // Relative to the pivot's diagonal: rounding leaves a singular matrix a tiny pivot.
        if !(d.is_finite() && d > 0.0 && d > 1e-12 * rj[j]) {
            return Err(j);
        }
        rj[j] = d.sqrt();
    }
    // L y = b, then Lᵀ x = y.
    for i in 0..n {
        let ri = &a[i * n..i * n + n];
        b[i] = (b[i] - dot64(&ri[..i], &b[..i])) / ri[i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= a[k * n + i] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    Ok(())
}

/// `Σ_r x_r x_rᵀ` of the `d`-wide rows of `table` (lower triangle only, f64).
fn gramian(table: &[f32], d: usize) -> Vec<f64> {
    let mut g = vec![0f64; d * d];
    let mut x = vec![0f64; d];
    for row in table.chunks_exact(d) {
        for (a, &b) in x.iter_mut().zip(row) {
            *a = b as f64;
        }
        add_outer_lower(&mut g, &x, d);
    }
    g
}

/// `a += x xᵀ` on the lower triangle of the `d × d` row-major `a`.
#[inline]
fn add_outer_lower(a: &mut [f64], x: &[f64], d: usize) {
    for j in 0..d {
        let xj = x[j];
        for (y, &xk) in a[j * d..j * d + j + 1].iter_mut().zip(&x[..j + 1]) {
            *y += xj * xk;
        }
    }
}

/// One half-epoch: every row of `out` (`rows.n_rows()` rows, `d` wide) solved with `other` fixed.
/// `Err` names the first row whose system is not positive definite.
fn solve_side(
    rows: &Csr,
    other: &[f32],
    out: &mut [f32],
    d: usize,
    reg: f64,
    alpha: f64,
    threads: usize,
) -> Result<()> {
    let n_other = other.len() / d;
    let mut base = gramian(other, d);
    for g in &mut base {
        *g *= alpha;
    }
    let base = &base;
    let per = rows.n_rows().div_ceil(threads.max(1)).max(1);
    let results: Vec<std::result::Result<(), usize>> = std::thread::scope(|sc| {
        let handles: Vec<_> = out
            .chunks_mut(per * d)
            .enumerate()
            .map(|(t, chunk)| {
                sc.spawn(move || -> std::result::Result<(), usize> {
                    let mut a = vec![0f64; d * d];
                    let (mut b, mut x) = (vec![0f64; d], vec![0f64; d]);
                    for (k, dst) in chunk.chunks_exact_mut(d).enumerate() {
                        let r = t * per + k;
                        let cols = rows.row(r);
                        if cols.is_empty() {
                            // No observations: the minimiser is zero.
                            dst.fill(0.0);
                            continue;
                        }
                        a.copy_from_slice(base);
                        b.fill(0.0);
                        for &c in cols {
                            let src = &other[c as usize * d..c as usize * d + d];
                            for ((xv, bv), &s) in x.iter_mut().zip(b.iter_mut()).zip(src) {
                                *xv = s as f64;
                                *bv += s as f64;
                            }
                            add_outer_lower(&mut a, &x, d);
                        }
                        let shift = reg * (cols.len() as f64 + alpha * n_other as f64);
                        for j in 0..d {
                            a[j * d + j] += shift;
                        }
                        cholesky_solve(&mut a, &mut b, d).map_err(|_| r)?;
                        for (y, &v) in dst.iter_mut().zip(&b) {
                            *y = v as f32;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("an iALS solver thread panicked"))
            .collect()
    });
    for r in results {
        if let Err(row) = r {
            return Err(Error::invalid(format!(
                "iALS: the system of row {row} is not positive definite (raise --l2 above 0 or \
                 --unobserved-weight)"
            )));
        }
    }
    Ok(())
}

/// The iALS objective `L` (module documentation) of the user table `w` and item table `h`
/// (`by_user`: the observed items of each user).
fn objective(by_user: &Csr, w: &[f32], h: &[f32], d: usize, reg: f64, alpha: f64) -> f64 {
    let (nu, ni) = (w.len() / d, h.len() / d);
    let sq = |t: &[f32], r: usize| -> f64 {
        t[r * d..r * d + d]
            .iter()
            .map(|&x| x as f64 * x as f64)
            .sum()
    };
    let mut item_count = vec![0usize; ni];
    let mut observed = 0f64;
    let (mut wu, mut hi) = (vec![0f64; d], vec![0f64; d]);
    let mut penalty = 0f64;
    for u in 0..by_user.n_rows() {
        for (a, &b) in wu.iter_mut().zip(&w[u * d..u * d + d]) {
            *a = b as f64;
        }
        let items = by_user.row(u);
        for &i in items {
            item_count[i as usize] += 1;
            for (a, &b) in hi.iter_mut().zip(&h[i as usize * d..i as usize * d + d]) {
                *a = b as f64;
            }
            let y = dot64(&wu, &hi);
            observed += (1.0 - y) * (1.0 - y);
        }
        penalty += (items.len() as f64 + alpha * ni as f64) * sq(w, u);
    }
    for (i, &n) in item_count.iter().enumerate() {
        penalty += (n as f64 + alpha * nu as f64) * sq(h, i);
    }
    // Σ_all ⟨w_u, h_i⟩² = Σ_jk (WᵀW)_jk (HᵀH)_jk, from the lower triangles.
    let (gw, gh) = (gramian(w, d), gramian(h, d));
    let mut all = 0f64;
    for j in 0..d {
        for k in 0..=j {
            let t = gw[j * d + k] * gh[j * d + k];
            all += if j == k { t } else { 2.0 * t };
        }
    }
    observed + alpha * all + reg * penalty
}

/// The iALS trainer (see the module documentation). One [`Trainer::step`] is one epoch: the
/// training loop must run it with a batch covering the whole epoch (`--negatives 0`).
pub struct IalsTrainer {
    fit: Fitted,
    by_user: Csr,
    by_item: Csr,
    dim: usize,
    reg: f64,
    alpha: f64,
}

impl IalsTrainer {
    /// A trainer for `model` (a GMF from [`init`]) on the training positives; `cfg.l2` is λ,
    /// `cfg.family.ials` holds α₀; `cfg.negatives` must be 0 (iALS weighs every unobserved pair
    /// instead of sampling).
    pub fn new(
        model: Model,
        cfg: &TrainConfig,
        train_users: &[u32],
        train_items: &[u32],
        threads: usize,
    ) -> Result<Self> {
        let c = &model.config;
        if c.kind != ModelKind::Gmf || model.tensor("final.weight").iter().any(|&h| h != 1.0) {
            return Err(Error::invalid(
                "not an iALS model (a GMF whose final weights are one)",
            ));
        }
        if cfg.negatives != 0 {
            return Err(Error::usage(
                "--model ials weighs every unobserved pair: it takes no --negatives",
            ));
        }
        let (reg, alpha) = (cfg.l2 as f64, cfg.family.ials.unobserved_weight as f64);
        if !(reg.is_finite() && reg >= 0.0) {
            return Err(Error::usage("--l2 must be finite and not negative"));
        }
        if !(alpha.is_finite() && alpha >= 0.0) {
            return Err(Error::usage(
                "--unobserved-weight must be finite and not negative",
            ));
        }
        check_ids(&model.config, train_users, train_items)
            .map_err(|e| Error::invalid(format!("training data: {e}")))?;
        let by_user = Csr::by_row(c.n_users as usize, train_users, train_items);
        let by_item = Csr::by_row(c.n_items as usize, train_items, train_users);
        Ok(IalsTrainer {
            dim: c.factors,
            fit: Fitted::new(model, threads),
            by_user,
            by_item,
            reg,
            alpha,
        })
    }

    pub fn params(&self) -> &[f32] {
        &self.fit.model.params
    }

    /// The objective `L` of the current tables.
    pub fn objective(&self) -> f64 {
        objective(
            &self.by_user,
            self.fit.model.tensor("mf_user_embed.weight"),
            self.fit.model.tensor("mf_item_embed.weight"),
            self.dim,
            self.reg,
            self.alpha,
        )
    }
}

impl MomentFree for IalsTrainer {
    fn backend_name(&self) -> String {
        format!(
            "cpu (ials, alternating least squares; {} thread{})",
            self.fit.threads,
            if self.fit.threads > 1 { "s" } else { "" }
        )
    }

    fn fit_step(&mut self, epoch: u32, positions: std::ops::Range<u64>) -> Result<StepStats> {
        let n = self.by_user.nnz() as u64;
        check_whole_epoch(&positions, n, "iALS solves a whole epoch")?;
        let d = self.dim;
        let layout = &self.fit.model.layout;
        let (ur, ir) = (
            layout.range("mf_user_embed.weight"),
            layout.range("mf_item_embed.weight"),
        );
        debug_assert!(ur.end <= ir.start);
        let (head, tail) = self.fit.model.params.split_at_mut(ir.start);
        let (utab, itab) = (&mut head[ur], &mut tail[..ir.end - ir.start]);
        let (reg, alpha, t) = (self.reg, self.alpha, self.fit.threads);
        solve_side(&self.by_user, itab, utab, d, reg, alpha, t)?;
        solve_side(&self.by_item, utab, itab, d, reg, alpha, t)?;
        self.fit.steps += 1;
        // Reported "loss": the objective per observed pair.
        let loss = (self.objective() / n as f64) as f32;
        if !loss.is_finite() {
            return Err(Error::invalid(format!(
                "iALS diverged: objective is {loss} after epoch {epoch}"
            )));
        }
        Ok(StepStats {
            loss,
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
    use crate::model::ModelConfig;
    use crate::neumf_cpu::score;

    fn data() -> (Vec<u32>, Vec<u32>) {
        // 6 users, 9 items (item 8 never observed, user 5 has one item).
        let users = vec![0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4, 5];
        let items = vec![0, 3, 5, 1, 2, 0, 4, 7, 3, 6, 5, 2, 7, 1];
        (users, items)
    }

    fn cfg(l2: f32, alpha: f32) -> TrainConfig {
        let mut c = TrainConfig {
            epochs: 3,
            negatives: 0,
            l2,
            ..TrainConfig::nvidia(5)
        };
        c.family.ials.unobserved_weight = alpha;
        c
    }

    fn trainer(dim: usize, c: &TrainConfig, threads: usize) -> IalsTrainer {
        let (u, i) = data();
        let model = init(6, 9, dim, 0.3, c.seed).unwrap();
        IalsTrainer::new(model, c, &u, &i, threads).unwrap()
    }

    fn epoch(t: &mut IalsTrainer, e: u32) -> f32 {
        t.step(e, 0..14).unwrap().loss
    }

    #[test]
    fn cholesky_solves_a_known_system() {
        // A = [[4, 2, 0], [2, 5, 1], [0, 1, 3]], x = [1, −2, 3] → b = A x.
        let mut a = vec![4.0, 0.0, 0.0, 2.0, 5.0, 0.0, 0.0, 1.0, 3.0];
        let mut b = vec![0.0, -5.0, 7.0];
        cholesky_solve(&mut a, &mut b, 3).unwrap();
        for (x, want) in b.iter().zip([1.0, -2.0, 3.0]) {
            assert!((x - want).abs() < 1e-12, "{b:?}");
        }
        let mut singular = vec![1.0, 0.0, 1.0, 1.0];
        assert_eq!(cholesky_solve(&mut singular, &mut [1.0, 1.0], 2), Err(1));
    }

    /// ∂L/∂w_u by brute force over every item (no Gramian): the scalar definition of the loss.
    fn user_gradient(t: &IalsTrainer, u: usize) -> Vec<f64> {
        let d = t.dim;
        let (w, h) = (
            t.fit.model.tensor("mf_user_embed.weight"),
            t.fit.model.tensor("mf_item_embed.weight"),
        );
        let wu: Vec<f64> = w[u * d..u * d + d].iter().map(|&x| x as f64).collect();
        let ni = h.len() / d;
        let observed = t.by_user.row(u);
        let mut g: Vec<f64> = wu
            .iter()
            .map(|x| 2.0 * t.reg * (observed.len() as f64 + t.alpha * ni as f64) * x)
            .collect();
        for i in 0..ni {
            let hi: Vec<f64> = h[i * d..i * d + d].iter().map(|&x| x as f64).collect();
            let y: f64 = wu.iter().zip(&hi).map(|(a, b)| a * b).sum();
            let mut coef = 2.0 * t.alpha * y;
            if observed.contains(&(i as u32)) {
                coef -= 2.0 * (1.0 - y);
            }
            for (gk, hk) in g.iter_mut().zip(&hi) {
                *gk += coef * hk;
            }
        }
        g
    }

    #[test]
    fn user_rows_are_the_exact_minimisers() {
        let c = cfg(0.05, 0.4);
        let mut t = trainer(4, &c, 1);
        // Solve the user side only (items fixed at their initial values).
        let d = t.dim;
        let ir = t.fit.model.layout.range("mf_item_embed.weight");
        let ur = t.fit.model.layout.range("mf_user_embed.weight");
        let items = t.fit.model.params[ir].to_vec();
        let mut users = t.fit.model.params[ur.clone()].to_vec();
        solve_side(&t.by_user, &items, &mut users, d, t.reg, t.alpha, 1).unwrap();
        t.fit.model.params[ur].copy_from_slice(&users);
        for u in 0..6 {
            let g = user_gradient(&t, u);
            let norm: f64 = g.iter().map(|x| x * x).sum::<f64>().sqrt();
            // Zero up to the f32 rounding of the stored row.
            assert!(norm < 1e-5, "user {u}: gradient {g:?}");
        }
    }

    #[test]
    fn the_objective_never_rises_and_matches_its_definition() {
        let c = cfg(0.02, 0.3);
        let mut t = trainer(5, &c, 2);
        let mut last = t.objective();
        for e in 0..6 {
            let loss = epoch(&mut t, e) as f64 * 14.0;
            let now = t.objective();
            assert!((loss - now).abs() <= 1e-5 * now.abs(), "{loss} vs {now}");
            assert!(now <= last * (1.0 + 1e-6), "epoch {e}: {now} > {last}");
            last = now;
        }
        // Brute-force objective: every pair, no Gramian.
        let d = t.dim;
        let (w, h) = (
            t.fit.model.tensor("mf_user_embed.weight"),
            t.fit.model.tensor("mf_item_embed.weight"),
        );
        let (u, i) = data();
        let mut want = 0f64;
        for a in 0..6usize {
            for b in 0..9usize {
                let y: f64 = (0..d)
                    .map(|k| w[a * d + k] as f64 * h[b * d + k] as f64)
                    .sum();
                let obs = u
                    .iter()
                    .zip(&i)
                    .any(|(&x, &z)| x as usize == a && z as usize == b);
                want += c.family.ials.unobserved_weight as f64 * y * y;
                if obs {
                    want += (1.0 - y) * (1.0 - y);
                }
            }
        }
        for a in 0..6usize {
            let n = u.iter().filter(|&&x| x as usize == a).count() as f64;
            let s: f64 = (0..d).map(|k| (w[a * d + k] as f64).powi(2)).sum();
            want += c.l2 as f64 * (n + c.family.ials.unobserved_weight as f64 * 9.0) * s;
        }
        for b in 0..9usize {
            let n = i.iter().filter(|&&x| x as usize == b).count() as f64;
            let s: f64 = (0..d).map(|k| (h[b * d + k] as f64).powi(2)).sum();
            want += c.l2 as f64 * (n + c.family.ials.unobserved_weight as f64 * 6.0) * s;
        }
        assert!((want - last).abs() <= 1e-9 * want, "{want} vs {last}");
        // The unobserved item has a zero row; observed pairs now outscore most others.
        assert!(h[8 * d..9 * d].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn threads_do_not_change_the_bits_and_resume_is_exact() {
        let c = cfg(0.01, 0.3);
        let mut one = trainer(7, &c, 1);
        let mut three = trainer(7, &c, 3);
        for e in 0..3 {
            assert_eq!(epoch(&mut one, e), epoch(&mut three, e));
        }
        assert!(one.params() == three.params());
        // Stop after two epochs, resume in a new trainer: the third epoch is the same.
        let mut a = trainer(7, &c, 2);
        epoch(&mut a, 0);
        epoch(&mut a, 1);
        let state = a.save_state().unwrap();
        let mut b = trainer(7, &c, 2);
        b.load_state(&state).unwrap();
        epoch(&mut b, 2);
        assert!(b.params() == one.params());
        assert_eq!(b.save_state().unwrap().steps, 3);
    }

    #[test]
    fn scores_are_the_dot_products_and_bad_input_is_refused() {
        let c = cfg(0.01, 0.3);
        let mut t = trainer(3, &c, 1);
        epoch(&mut t, 0);
        let m = t.model().unwrap();
        let (users, items): (Vec<u32>, Vec<u32>) = (0..54).map(|k| (k / 9, k % 9)).unzip();
        let mut out = vec![0f32; 54];
        score(&m, &users, &items, &mut out);
        let (w, h) = (
            m.tensor("mf_user_embed.weight"),
            m.tensor("mf_item_embed.weight"),
        );
        for k in 0..54 {
            let (u, i) = (users[k] as usize, items[k] as usize);
            let want: f32 = (0..3).map(|j| w[u * 3 + j] * h[i * 3 + j]).sum();
            assert!((out[k] - want).abs() < 1e-6, "{k}: {} vs {want}", out[k]);
        }
        // A partial epoch, negatives, a NeuMF model and λ = α₀ = 0 on a rank-deficient system.
        let e = t.step(1, 0..7).unwrap_err().to_string();
        assert!(e.contains("whole epoch"), "{e}");
        let (u, i) = data();
        let model = init(6, 9, 3, 0.3, 1).unwrap();
        let e = IalsTrainer::new(
            model.clone(),
            &TrainConfig {
                negatives: 4,
                ..c.clone()
            },
            &u,
            &i,
            1,
        );
        assert!(e.err().unwrap().to_string().contains("--negatives"));
        let neumf = Model::init(
            ModelConfig {
                kind: ModelKind::Neumf,
                n_users: 6,
                n_items: 9,
                factors: 3,
                layers: vec![8, 4],
                dropout: 0.0,
            },
            1,
        )
        .unwrap();
        assert!(IalsTrainer::new(neumf, &c, &u, &i, 1).is_err());
        let mut z = IalsTrainer::new(model, &cfg(0.0, 0.0), &u, &i, 1).unwrap();
        let e = z.step(0, 0..14).unwrap_err().to_string();
        assert!(e.contains("not positive definite"), "{e}");
    }
}
