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
//! solves every user row with the items fixed, then every item row with the users fixed:
//! `w_u = (Σ_{i∈I_u} h_i h_iᵀ + α₀·HᵀH + λ(n_u + α₀|I|)·1)⁻¹ Σ_{i∈I_u} h_i`. The all-pairs
//! term costs one Gramian `HᵀH` per half-epoch, so no negative samples are needed. Two solvers
//! ([`Solver`], `--ials-solver`; [`solve`]): `exact`, a Cholesky factorisation in f64
//! (`O(nnz·d² + (|U| + |I|)·d³)` an epoch), and `cg`, [`CG_STEPS`] conjugate-gradient steps in
//! f32 warm-started from the row's previous value (`O(CG_STEPS·(nnz·d + (|U| + |I|)·d²))`).
//!
//! The tables stay in f32 between the half-epochs (the model file's form), so a run resumed from
//! a checkpoint computes the same bits as one that was not stopped (the warm start is the
//! stored row); rows are independent and each one's arithmetic has a fixed order, so the thread
//! count never changes a result. The model is stored as a GMF (`factors = d`, final
//! weights one, bias zero) whose score is exactly the dot product: every tool scores it, and
//! `ncf-eval` can ensemble it with the other models.

mod kernels;
mod solve;

pub use solve::{cholesky_solve, Solver, CG_STEPS};

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
/// `--ials-solver` when not given (chosen by speed and accuracy: docs/RESULTS.md).
pub const DEFAULT_SOLVER: Solver = Solver::Cg;

/// `--model ials`.
pub struct Ials;

/// iALS's own parameters ([`super::FamilyParams`]), set by its spec alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// `--unobserved-weight` α₀: the weight of every unobserved pair. Recorded in every model
    /// file and checkpoint since iALS came (0 in the other families'); absent in older ones, 0.
    #[serde(default)]
    pub unobserved_weight: f32,
    /// `--ials-solver`. Recorded as `ials_solver` unless exact: files written before the flag,
    /// and the other families', name none, and theirs is exact.
    #[serde(
        default,
        rename = "ials_solver",
        skip_serializing_if = "Solver::is_exact"
    )]
    pub solver: Solver,
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
            takes: &[Flag::InitStd, Flag::UnobservedWeight, Flag::IalsSolver],
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
            solver: c.ials_solver.unwrap_or(DEFAULT_SOLVER),
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
        let (users, items) = (&*data.train_users.rows(), &data.train_items);
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

/// One half-epoch: every row of `out` (`rows.n_rows()` rows, `d` wide) solved by `solver` with
/// `other` fixed, `gram` being `other`'s Gramian ([`solve::gramian`]). `Err` names the first
/// row whose system is not positive definite.
#[allow(clippy::too_many_arguments)]
fn solve_side(
    rows: &Csr,
    other: &[f32],
    gram: &[f64],
    out: &mut [f32],
    d: usize,
    (reg, alpha): (f64, f64),
    solver: Solver,
    threads: usize,
) -> Result<()> {
    let n_other = (other.len() / d.max(1)) as f64;
    let shift = |n: usize| reg * (n as f64 + alpha * n_other);
    let n = rows.n_rows();
    let done = match solver {
        Solver::Exact => {
            let base: Vec<f64> = gram.iter().map(|g| g * alpha).collect();
            let init = || solve::ExactState::new(d);
            solve::for_each_block(n, out, d, threads, init, |s, first, block| {
                solve::exact_block(&base, other, rows, (first, block), &shift, s)
            })
        }
        Solver::Cg => {
            let g: Vec<f32> = gram.iter().map(|g| (g * alpha) as f32).collect();
            let shift = |n: usize| shift(n) as f32;
            let init = || solve::CgState::new(d);
            solve::for_each_block(n, out, d, threads, init, |s, first, block| {
                solve::cg_block(&g, other, rows, (first, block), &shift, CG_STEPS, s);
                Ok(())
            })
        }
    };
    done.map_err(|row| {
        Error::invalid(format!(
            "iALS: the system of row {row} is not positive definite (raise --l2 above 0 or \
             --unobserved-weight)"
        ))
    })
}

/// The iALS objective `L` (module documentation) of the user table `w` and item table `h`
/// (`by_user`: the observed items of each user), given their Gramians `gw` and `gh`
/// ([`solve::gramian`]); the observed pairs are summed per user on `threads` threads, then over
/// users in order.
#[allow(clippy::too_many_arguments)]
fn objective(
    by_user: &Csr,
    w: &[f32],
    h: &[f32],
    d: usize,
    (reg, alpha): (f64, f64),
    (gw, gh): (&[f64], &[f64]),
    threads: usize,
) -> f64 {
    let (nu, ni) = (w.len() / d, h.len() / d);
    let sq = |t: &[f32], r: usize| -> f64 {
        t[r * d..r * d + d]
            .iter()
            .map(|&x| x as f64 * x as f64)
            .sum()
    };
    // Σ_{i∈I_u} (1 − ⟨w_u, h_i⟩)², per user, on the threads; then summed in user order.
    let mut per_user = vec![0f64; nu];
    let block = nu.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|sc| {
        for (t, (part, rows)) in per_user
            .chunks_mut(block)
            .zip(w.chunks(block * d))
            .enumerate()
        {
            sc.spawn(move || solve::squared_errors(rows, h, by_user, t * block, part));
        }
    });
    let observed: f64 = per_user.iter().sum();
    let mut item_count = vec![0usize; ni];
    let mut penalty = 0f64;
    for u in 0..nu {
        let items = by_user.row(u);
        for &i in items {
            item_count[i as usize] += 1;
        }
        penalty += (items.len() as f64 + alpha * ni as f64) * sq(w, u);
    }
    for (i, &n) in item_count.iter().enumerate() {
        penalty += (n as f64 + alpha * nu as f64) * sq(h, i);
    }
    // Σ_all ⟨w_u, h_i⟩² = Σ_jk (WᵀW)_jk (HᵀH)_jk, from the lower triangles.
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
    solver: Solver,
    /// The item table's Gramian, computed for the last epoch's objective and kept for the next
    /// epoch's user half (dropped when a checkpoint replaces the tables).
    item_gram: Option<Vec<f64>>,
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
            solver: cfg.family.ials.solver,
            item_gram: None,
        })
    }

    pub fn params(&self) -> &[f32] {
        &self.fit.model.params
    }

    /// The objective `L` of the current tables.
    pub fn objective(&self) -> f64 {
        let (w, h) = (
            self.fit.model.tensor("mf_user_embed.weight"),
            self.fit.model.tensor("mf_item_embed.weight"),
        );
        let (d, t) = (self.dim, self.fit.threads);
        let (gw, gh) = (solve::gramian(w, d, t), solve::gramian(h, d, t));
        objective(
            &self.by_user,
            w,
            h,
            d,
            (self.reg, self.alpha),
            (&gw, &gh),
            t,
        )
    }
}

impl MomentFree for IalsTrainer {
    fn backend_name(&self) -> String {
        // The exact solver keeps the name it had before there was a choice (same log bytes).
        let solver = match self.solver {
            Solver::Exact => String::new(),
            other => format!(", {} solver", other.name()),
        };
        format!(
            "cpu (ials, alternating least squares{solver}; {} thread{})",
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
        let (lambdas, solver, t) = ((self.reg, self.alpha), self.solver, self.fit.threads);
        // One Gramian per half-epoch; the items' is kept from the last epoch's objective.
        let gh = match self.item_gram.take() {
            Some(g) => g,
            None => solve::gramian(itab, d, t),
        };
        solve_side(&self.by_user, itab, &gh, utab, d, lambdas, solver, t)?;
        let gw = solve::gramian(utab, d, t);
        solve_side(&self.by_item, utab, &gw, itab, d, lambdas, solver, t)?;
        self.fit.steps += 1;
        let gh = solve::gramian(itab, d, t);
        // Reported "loss": the objective per observed pair.
        let l = objective(&self.by_user, utab, itab, d, lambdas, (&gw, &gh), t);
        self.item_gram = Some(gh);
        let loss = (l / n as f64) as f32;
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

    fn state_loaded(&mut self) {
        self.item_gram = None;
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
        let g = solve::gramian(&items, d, 1);
        let lambdas = (t.reg, t.alpha);
        solve_side(
            &t.by_user,
            &items,
            &g,
            &mut users,
            d,
            lambdas,
            Solver::Exact,
            1,
        )
        .unwrap();
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

    fn with_solver(mut c: TrainConfig, solver: Solver) -> TrainConfig {
        c.family.ials.solver = solver;
        c
    }

    /// 80 users × 50 items, 3 to 17 items each.
    fn bigger() -> (Vec<u32>, Vec<u32>) {
        let mut pairs = Vec::new();
        for u in 0..80u32 {
            for k in 0..3 + u % 15 {
                pairs.push((u, (u * 7 + k * 13 + k * k) % 50));
            }
        }
        pairs.sort_unstable();
        pairs.dedup();
        pairs.into_iter().unzip()
    }

    #[test]
    fn cg_threads_do_not_change_the_bits_and_resume_is_exact() {
        // 70 factors: every path of the kernels (32 lanes, 64- and 8-column blocks, tails).
        let c = with_solver(cfg(0.01, 0.3), Solver::Cg);
        let (u, i) = bigger();
        let n = u.len() as u64;
        let make = |threads| {
            let model = init(80, 50, 70, 0.05, c.seed).unwrap();
            IalsTrainer::new(model, &c, &u, &i, threads).unwrap()
        };
        let (mut one, mut three) = (make(1), make(3));
        for e in 0..3 {
            let (a, b) = (one.step(e, 0..n).unwrap(), three.step(e, 0..n).unwrap());
            assert_eq!(a.loss.to_bits(), b.loss.to_bits());
        }
        let bits = |t: &IalsTrainer| t.params().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&one), bits(&three));
        // Stopped after two epochs, resumed in a new trainer: the third epoch is the same.
        let mut a = make(2);
        a.step(0, 0..n).unwrap();
        a.step(1, 0..n).unwrap();
        let state = a.save_state().unwrap();
        let mut b = make(1);
        b.load_state(&state).unwrap();
        b.step(2, 0..n).unwrap();
        assert_eq!(bits(&b), bits(&one));
        // A trainer that has run an epoch (and keeps its items' Gramian) forgets it on loading.
        let mut again = make(2);
        again.step(0, 0..n).unwrap();
        again.load_state(&state).unwrap();
        again.step(2, 0..n).unwrap();
        assert_eq!(bits(&again), bits(&one));
    }

    #[test]
    fn cg_never_raises_the_objective_and_reaches_the_exact_one() {
        let (exact, cg) = (cfg(0.02, 0.3), with_solver(cfg(0.02, 0.3), Solver::Cg));
        let mut e = trainer(5, &exact, 1);
        let mut c = trainer(5, &cg, 2);
        let mut last = c.objective();
        for k in 0..40 {
            epoch(&mut e, k);
            epoch(&mut c, k);
            let now = c.objective();
            // Each step minimises the row's quadratic along a new direction from the row's
            // current value: no row's loss rises (up to f32 rounding).
            assert!(now <= last * (1.0 + 1e-6), "epoch {k}: {now} > {last}");
            last = now;
        }
        let (oe, oc) = (e.objective(), c.objective());
        assert!((oc - oe).abs() <= 1e-5 * oe, "{oc} vs {oe}");
        assert!(c.name().contains("cg solver"), "{}", c.name());
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
