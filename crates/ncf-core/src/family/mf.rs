//! Matrix factorisation with biases, trained by per-example SGD — the model and training of
//! Rendle, Krichene, Zhang & Anderson, "Neural Collaborative Filtering vs. Matrix Factorization
//! Revisited" (RecSys 2020), which beat NeuMF on the NCF paper's own ml-1m split:
//!
//! `score(u, i) = b + b_u + b_i + ⟨p_u, q_i⟩`, logistic loss, one SGD update per sample (no
//! batching), L2 `reg` applied to the rows each sample touches:
//!
//! ```text
//! g    = label − σ(score)
//! p_u += lr·(g·q_i − reg·p_u)      q_i += lr·(g·p_u − reg·q_i)     (old p_u, q_i on the right)
//! b_u += lr·(g − reg·b_u)          b_i += lr·(g − reg·b_i)          b += lr·(g − reg·b)
//! ```
//!
//! The model is stored as the equivalent GMF ([`ModelKind::Gmf`] with `factors = dim + 2`), so
//! every tool scores it without knowing about MF: user rows are `[p_u ‖ b_u ‖ 1]`, item rows
//! `[q_i ‖ 1 ‖ b_i]`, `final.weight` is all ones and `final.bias` is `b`. GMF's score
//! `Σ_k u_k·i_k·h_k + bias` is then exactly the MF score. The two constant columns and `h` are
//! never trained.
//!
//! Samples come from [`EpochSamples`] in the epoch's shuffled order, the same as every other
//! trainer's; the updates are sequential (one thread), so a run is deterministic and the batch
//! size only sets how often the training loop reports and checkpoints.

use super::{
    gmf_config, positives_for, require_model_memory, Capabilities, Choices, FamilySpec, Fitted,
    Flag, MomentFree, Plan, MOMENT_FREE_COPIES,
};
use crate::data::dataset::Dataset;
use crate::dist::Group;
use crate::model::{Model, ModelKind};
use crate::neumf_cpu::tile::dot;
use crate::sampling::rng::Rng;
use crate::sampling::sampler::{EpochSamples, NegativeMode, UserItems};
use crate::train::backend::check_ids;
use crate::train::config::{Optimizer, Shape, TrainConfig};
use crate::train::{StepStats, Trainer};
use crate::{Error, Result};

/// `--model mf`.
pub struct Mf;

impl FamilySpec for Mf {
    fn name(&self) -> &'static str {
        "mf"
    }

    /// The CPU and one rank: its per-example SGD is sequential.
    fn capabilities(&self) -> Capabilities {
        let sequential = "its per-example SGD is sequential";
        Capabilities {
            cpu_only: Some(sequential.into()),
            one_rank: Some(sequential.into()),
            takes: &[Flag::InitStd],
            refuses: vec![(&[Flag::Dropout], "has no MLP to drop units from".into())],
            ..Capabilities::default()
        }
    }

    fn defaults(&self, cfg: &mut TrainConfig, _shape: &mut Shape, _c: &Choices) {
        // Rendle et al.'s ml-1m recipe; explicit flags still win.
        cfg.optimizer = Optimizer::Sgd;
        cfg.lr = 0.002;
        cfg.l2 = 0.005;
        cfg.negatives = 8;
    }

    fn init(&self, plan: &Plan, n_users: u32, n_items: u32) -> Result<Model> {
        let std = plan.init_std.unwrap_or(DEFAULT_INIT_STD);
        init(n_users, n_items, plan.shape.factors, std, plan.cfg.seed)
    }

    fn cpu_trainer(
        &self,
        model: Model,
        cfg: &TrainConfig,
        data: &Dataset,
        threads: usize,
        _group: Option<Group>,
    ) -> Result<Box<dyn Trainer>> {
        let positives = positives_for(cfg, data);
        let users = data.train_users.rows().into_owned();
        let items = data.train_items.to_vec();
        Ok(Box::new(MfTrainer::new(
            model, cfg, users, items, positives, threads,
        )?))
    }
}

/// Standard deviation of the latent factors at initialisation (Rendle et al.'s `--stddev`).
pub const DEFAULT_INIT_STD: f32 = 0.1;

/// A new MF model with `dim` latent factors: `p_u`, `q_i` drawn from N(0, `std`²) (the same
/// draws as [`Model::init`], rescaled), biases 0.
pub fn init(n_users: u32, n_items: u32, dim: usize, std: f32, seed: u64) -> Result<Model> {
    if dim == 0 {
        return Err(Error::usage("--factors must be at least 1"));
    }
    if !(std.is_finite() && std >= 0.0) {
        return Err(Error::usage("--init-std must be finite and not negative"));
    }
    // Two more columns: the user's and the item's bias, each met by a constant 1.
    let width = dim.saturating_add(2); // too wide either way: refused as overflowing below
    let config = gmf_config(n_users, n_items, width);
    let flags = format!("--model mf --factors {dim}");
    require_model_memory(&flags, &config, MOMENT_FREE_COPIES, "")?;
    let mut model = Model::init(config, seed)?;
    // Model::init draws embeddings as 0.01·N(0, 1).
    let scale = std / 0.01;
    let w = dim + 2;
    for (name, bias_col, one_col) in [
        ("mf_user_embed.weight", dim, dim + 1),
        ("mf_item_embed.weight", dim + 1, dim),
    ] {
        for row in model.tensor_mut(name).chunks_exact_mut(w) {
            for x in &mut row[..dim] {
                *x *= scale;
            }
            row[bias_col] = 0.0;
            row[one_col] = 1.0;
        }
    }
    model.tensor_mut("final.weight").fill(1.0);
    model.tensor_mut("final.bias")[0] = 0.0;
    Ok(model)
}

/// `Some(dim)` when `model` is an MF model in the GMF form of [`init`] (constant columns and
/// `h` all exactly one), else `None`.
pub fn dim_of(model: &Model) -> Option<usize> {
    let c = &model.config;
    if c.kind != ModelKind::Gmf || c.factors < 3 {
        return None;
    }
    let (w, dim) = (c.factors, c.factors - 2);
    let ones = |name: &str, col: usize| {
        model
            .tensor(name)
            .chunks_exact(w)
            .all(|row| row[col] == 1.0)
    };
    let h_ones = model.tensor("final.weight").iter().all(|&h| h == 1.0);
    (h_ones && ones("mf_user_embed.weight", dim + 1) && ones("mf_item_embed.weight", dim))
        .then_some(dim)
}

/// The per-example SGD trainer of MF (see the module documentation).
pub struct MfTrainer {
    fit: Fitted,
    cfg: TrainConfig,
    users: Vec<u32>,
    items: Vec<u32>,
    positives: Option<UserItems>,
    dim: usize,
}

impl MfTrainer {
    /// A trainer for `model` (from [`init`]) on the training positives; `positives` is needed
    /// for exact negatives. Needs `cfg.optimizer` SGD; `cfg.l2` is the per-example `reg`.
    pub fn new(
        model: Model,
        cfg: &TrainConfig,
        train_users: Vec<u32>,
        train_items: Vec<u32>,
        positives: Option<UserItems>,
        threads: usize,
    ) -> Result<Self> {
        let dim = dim_of(&model).ok_or_else(|| {
            Error::invalid(
                "not an MF model (a GMF whose final weights and constant columns are one)",
            )
        })?;
        if cfg.optimizer != Optimizer::Sgd {
            return Err(Error::usage(
                "--model mf trains by per-example SGD: use --optimizer sgd",
            ));
        }
        if !(cfg.l2.is_finite() && cfg.l2 >= 0.0) {
            return Err(Error::usage("--l2 must be finite and not negative"));
        }
        if cfg.negative_mode == NegativeMode::Exact && positives.is_none() {
            return Err(Error::invalid("exact negatives need the users' positives"));
        }
        check_ids(&model.config, &train_users, &train_items)
            .map_err(|e| Error::invalid(format!("training data: {e}")))?;
        Ok(MfTrainer {
            fit: Fitted::new(model, threads),
            cfg: cfg.clone(),
            users: train_users,
            items: train_items,
            positives,
            dim,
        })
    }

    pub fn params(&self) -> &[f32] {
        &self.fit.model.params
    }
}

/// Samples drawn per chunk (by the drawing threads, see [`MfTrainer::step`]).
const CHUNK: u64 = 8192;

/// The samples at `positions` of the shuffled epoch, in order, into `out`.
fn draw(
    samples: &EpochSamples,
    positions: std::ops::Range<u64>,
    out: &mut Vec<(u32, u32, f32)>,
) -> Result<()> {
    out.clear();
    for p in positions {
        out.push(samples.at(p)?);
    }
    Ok(())
}

/// One sample's update of the user row `u`, item row `it` (both `[dim + 2]`, GMF form) and the
/// global bias `b`; returns the sample's logistic loss.
#[inline]
pub fn update(u: &mut [f32], it: &mut [f32], b: &mut f32, label: f32, lr: f32, reg: f32) -> f64 {
    let dim = u.len() - 2;
    let score = *b + dot(u, it);
    let sig = 1.0 / (1.0 + (-score).exp());
    let g = label - sig;
    for (x, y) in u[..dim].iter_mut().zip(&mut it[..dim]) {
        let (p, q) = (*x, *y);
        *x = p + lr * (g * q - reg * p);
        *y = q + lr * (g * p - reg * q);
    }
    u[dim] += lr * (g - reg * u[dim]);
    it[dim + 1] += lr * (g - reg * it[dim + 1]);
    *b += lr * (g - reg * *b);
    // softplus(score) − label·score, stably.
    let s = score as f64;
    s.max(0.0) + (-s.abs()).exp().ln_1p() - label as f64 * s
}

impl MomentFree for MfTrainer {
    fn backend_name(&self) -> String {
        format!(
            "cpu (mf, per-example sgd; samples drawn on {} thread{})",
            self.fit.threads.saturating_sub(1).max(1),
            if self.fit.threads > 2 { "s" } else { "" }
        )
    }

    fn fit_step(&mut self, epoch: u32, positions: std::ops::Range<u64>) -> Result<StepStats> {
        let samples = EpochSamples::new(
            Rng::new(self.cfg.seed),
            epoch,
            self.cfg.negatives,
            self.fit.model.config.n_items,
            self.cfg.negative_mode,
            &self.users,
            &self.items,
            self.positives.as_ref(),
        );
        samples.check_positions(&positions)?;
        let w = self.dim + 2;
        let (lr, reg) = (self.cfg.lr, self.cfg.l2);
        let layout = &self.fit.model.layout;
        let (ur, ir) = (
            layout.range("mf_user_embed.weight"),
            layout.range("mf_item_embed.weight"),
        );
        let bi = layout.range("final.bias").start;
        let n = positions.end - positions.start;
        let params = &mut self.fit.model.params;
        let mut bias = params[bi];
        let mut loss = 0f64;
        // The two tables do not overlap (user table first).
        debug_assert!(ur.end <= ir.start);
        let (head, tail) = params.split_at_mut(ir.start);
        let utab = &mut head[ur];
        let itab = &mut tail[..ir.end - ir.start];
        let mut train = |chunk: &[(u32, u32, f32)]| {
            for &(user, item, label) in chunk {
                let (uo, io) = (user as usize * w, item as usize * w);
                loss += update(
                    &mut utab[uo..uo + w],
                    &mut itab[io..io + w],
                    &mut bias,
                    label,
                    lr,
                    reg,
                );
            }
        };
        let producers = self.fit.threads.saturating_sub(1);
        if producers == 0 || n < 2 * CHUNK {
            let mut chunk = Vec::with_capacity(CHUNK as usize);
            for start in positions.clone().step_by(CHUNK as usize) {
                draw(
                    &samples,
                    start..(start + CHUNK).min(positions.end),
                    &mut chunk,
                )?;
                train(&chunk);
            }
        } else {
            // Drawing a sample (shuffle and negative) costs about as much as its update: other
            // threads draw the chunks ahead, in order, while this one trains.
            let chunks: Vec<u64> = positions.clone().step_by(CHUNK as usize).collect();
            std::thread::scope(|sc| -> Result<()> {
                let receivers: Vec<_> = (0..producers)
                    .map(|t| {
                        let (tx, rx) = std::sync::mpsc::sync_channel(2);
                        let (samples, chunks, end) = (&samples, &chunks, positions.end);
                        sc.spawn(move || {
                            for &start in chunks.iter().skip(t).step_by(producers) {
                                let mut chunk = Vec::with_capacity(CHUNK as usize);
                                let r = draw(samples, start..(start + CHUNK).min(end), &mut chunk);
                                let failed = r.is_err();
                                if tx.send(r.map(|_| chunk)).is_err() || failed {
                                    return;
                                }
                            }
                        });
                        rx
                    })
                    .collect();
                for k in 0..chunks.len() {
                    let chunk = receivers[k % producers]
                        .recv()
                        .map_err(|_| Error::invalid("a sample-drawing thread ended early"))??;
                    train(&chunk);
                }
                Ok(())
            })?;
        }
        params[bi] = bias;
        self.fit.steps += n;
        let loss = (loss / n as f64) as f32;
        if !loss.is_finite() {
            return Err(Error::invalid(format!(
                "training diverged: loss is {loss} at epoch {epoch}, samples {}..{} (try a lower \
                 --lr)",
                positions.start, positions.end
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

    fn accept(&self, params: &[f32]) -> Result<()> {
        let mut model = self.fit.model.clone();
        model.params.copy_from_slice(params);
        if dim_of(&model) != Some(self.dim) {
            return Err(Error::invalid(
                "the checkpoint's parameters are not this MF model's (constant columns changed)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelConfig;
    use crate::neumf_cpu::score;
    use crate::train::config::BatchSize;

    fn cfg(seed: u64, lr: f32, l2: f32) -> TrainConfig {
        TrainConfig {
            epochs: 2,
            batch_size: BatchSize::Samples(1),
            negatives: 3,
            negative_mode: NegativeMode::Exact,
            optimizer: Optimizer::Sgd,
            lr,
            l2,
            ..TrainConfig::nvidia(seed)
        }
    }

    fn data() -> (Vec<u32>, Vec<u32>) {
        // 5 users, 9 items, a few positives each.
        let users = vec![0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4, 4];
        let items = vec![0, 3, 5, 1, 2, 0, 4, 7, 8, 6, 2, 8];
        (users, items)
    }

    fn trainer(dim: usize, cfg: &TrainConfig) -> MfTrainer {
        let (u, i) = data();
        let pos = UserItems::new(5, &u, &i);
        let model = init(5, 9, dim, 0.1, cfg.seed).unwrap();
        MfTrainer::new(model, cfg, u, i, Some(pos), 1).unwrap()
    }

    #[test]
    fn gmf_form_scores_as_biased_dot_product() {
        let mut m = init(5, 9, 3, 0.1, 7).unwrap();
        // Give the biases values so the check covers them.
        for (u, row) in m
            .tensor_mut("mf_user_embed.weight")
            .chunks_exact_mut(5)
            .enumerate()
        {
            row[3] = 0.1 * u as f32;
        }
        for (i, row) in m
            .tensor_mut("mf_item_embed.weight")
            .chunks_exact_mut(5)
            .enumerate()
        {
            row[4] = -0.05 * i as f32;
        }
        m.tensor_mut("final.bias")[0] = 0.25;
        assert_eq!(dim_of(&m), Some(3));
        let (users, items): (Vec<u32>, Vec<u32>) = (0..45).map(|k| (k / 9, k % 9)).unzip();
        let mut out = vec![0f32; 45];
        score(&m, &users, &items, &mut out);
        let (ut, it) = (
            m.tensor("mf_user_embed.weight"),
            m.tensor("mf_item_embed.weight"),
        );
        for k in 0..45 {
            let (u, i) = (users[k] as usize, items[k] as usize);
            let p = &ut[u * 5..u * 5 + 3];
            let q = &it[i * 5..i * 5 + 3];
            let want = 0.25
                + 0.1 * u as f32
                + -0.05 * i as f32
                + p.iter().zip(q).map(|(a, b)| a * b).sum::<f32>();
            assert!(
                (out[k] - want).abs() < 1e-5,
                "pair {k}: {} vs {want}",
                out[k]
            );
        }
        // Any trained constant column or h is not MF any more.
        let mut g = m.clone();
        g.tensor_mut("final.weight")[1] = 0.9;
        assert_eq!(dim_of(&g), None);
        let mut g = m.clone();
        g.tensor_mut("mf_item_embed.weight")[3] = 0.5;
        assert_eq!(dim_of(&g), None);
    }

    /// The update written out per scalar, in f64, for comparison.
    fn reference_epoch(model: &mut Model, cfg: &TrainConfig, epoch: u32) {
        let (u, i) = data();
        let pos = UserItems::new(5, &u, &i);
        let s = EpochSamples::new(
            Rng::new(cfg.seed),
            epoch,
            cfg.negatives,
            9,
            cfg.negative_mode,
            &u,
            &i,
            Some(&pos),
        );
        let w = dim_of(model).unwrap() + 2;
        let (lr, reg) = (cfg.lr as f64, cfg.l2 as f64);
        for p in 0..s.len() {
            let (user, item, label) = s.at(p).unwrap();
            let ur = model.layout.range("mf_user_embed.weight").start + user as usize * w;
            let ir = model.layout.range("mf_item_embed.weight").start + item as usize * w;
            let bi = model.layout.range("final.bias").start;
            let x = &mut model.params;
            let mut score = x[bi] as f64;
            for k in 0..w {
                score += x[ur + k] as f64 * x[ir + k] as f64;
            }
            let g = label as f64 - 1.0 / (1.0 + (-score).exp());
            for k in 0..w - 2 {
                let (a, b) = (x[ur + k] as f64, x[ir + k] as f64);
                x[ur + k] = (a + lr * (g * b - reg * a)) as f32;
                x[ir + k] = (b + lr * (g * a - reg * b)) as f32;
            }
            let d = w - 2;
            x[ur + d] = (x[ur + d] as f64 + lr * (g - reg * x[ur + d] as f64)) as f32;
            x[ir + d + 1] = (x[ir + d + 1] as f64 + lr * (g - reg * x[ir + d + 1] as f64)) as f32;
            x[bi] = (x[bi] as f64 + lr * (g - reg * x[bi] as f64)) as f32;
        }
    }

    #[test]
    fn per_example_updates_match_the_scalar_definition() {
        for dim in [1, 4, 11, 19] {
            let c = cfg(3, 0.05, 0.01);
            let mut t = trainer(dim, &c);
            let mut want = t.model().unwrap();
            for epoch in 0..2 {
                let n = 12 * 4;
                t.step(epoch, 0..n).unwrap();
                reference_epoch(&mut want, &c, epoch);
            }
            let got = t.model().unwrap();
            let worst = got
                .params
                .iter()
                .zip(&want.params)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "dim {dim}: max difference {worst}");
            // Training moved the biases and left the MF form intact.
            assert_eq!(dim_of(&got), Some(dim));
            assert_ne!(got.tensor("final.bias")[0], 0.0);
        }
    }

    #[test]
    fn the_batch_size_does_not_change_the_result() {
        let c = cfg(5, 0.1, 0.005);
        let mut one = trainer(6, &c);
        let mut seven = trainer(6, &c);
        let n = 12 * 4;
        for epoch in 0..3 {
            let mut l1 = 0.0;
            for p in 0..n {
                l1 += one.step(epoch, p..p + 1).unwrap().loss as f64;
            }
            let mut l7 = 0.0;
            for s in (0..n).step_by(7) {
                let r = s..(s + 7).min(n);
                l7 += seven.step(epoch, r.clone()).unwrap().loss as f64 * (r.end - r.start) as f64;
            }
            assert!((l1 - l7).abs() < 1e-4 * l1.abs().max(1.0), "{l1} vs {l7}");
        }
        assert_eq!(one.params(), seven.params());
    }

    #[test]
    fn drawing_threads_do_not_change_the_result() {
        // Enough samples per step for the drawing threads to start (several chunks).
        let (nu, ni) = (1500u32, 400u32);
        let (users, items): (Vec<u32>, Vec<u32>) = (0..nu * 12)
            .map(|k| (k / 12, (k * 37 + k / 12) % ni))
            .unzip();
        let c = cfg(2, 0.05, 0.005);
        let run = |threads: usize| {
            let pos = UserItems::new(nu, &users, &items);
            let m = init(nu, ni, 10, 0.1, 2).unwrap();
            let mut t =
                MfTrainer::new(m, &c, users.clone(), items.clone(), Some(pos), threads).unwrap();
            let n = users.len() as u64 * 4;
            assert!(n > 4 * CHUNK);
            let loss = t.step(0, 0..n).unwrap().loss;
            (loss, t.model().unwrap().params)
        };
        let (l1, p1) = run(1);
        for threads in [2, 4] {
            let (l, p) = run(threads);
            assert_eq!(l, l1, "{threads} threads");
            assert!(p == p1, "{threads} threads changed the parameters");
        }
    }

    #[test]
    fn training_lowers_the_loss_and_resumes_exactly() {
        let c = cfg(9, 0.2, 0.001);
        let mut t = trainer(8, &c);
        let n = 12 * 4;
        let first = t.step(0, 0..n).unwrap().loss;
        let mut last = first;
        for epoch in 1..30 {
            last = t.step(epoch, 0..n).unwrap().loss;
        }
        assert!(last < 0.7 * first, "loss {first} -> {last}");
        // Save, continue, and compare with a trainer restored from the state.
        let state = t.save_state().unwrap();
        t.step(30, 0..n).unwrap();
        let mut r = trainer(8, &c);
        r.load_state(&state).unwrap();
        r.step(30, 0..n).unwrap();
        assert_eq!(t.params(), r.params());
    }

    #[test]
    fn refuses_adam_and_non_mf_models() {
        let (u, i) = data();
        let adam = TrainConfig {
            optimizer: Optimizer::Adam,
            ..cfg(1, 0.1, 0.0)
        };
        let m = init(5, 9, 4, 0.1, 1).unwrap();
        let pos = || Some(UserItems::new(5, &u, &i));
        let e = MfTrainer::new(m.clone(), &adam, u.clone(), i.clone(), pos(), 1)
            .err()
            .unwrap();
        assert!(e.to_string().contains("--optimizer sgd"), "{e}");
        let gmf = Model::init(
            ModelConfig {
                kind: ModelKind::Gmf,
                n_users: 5,
                n_items: 9,
                factors: 6,
                layers: vec![],
                dropout: 0.0,
            },
            1,
        )
        .unwrap();
        let e = MfTrainer::new(gmf, &cfg(1, 0.1, 0.0), u.clone(), i.clone(), pos(), 1)
            .err()
            .unwrap();
        assert!(e.to_string().contains("not an MF model"), "{e}");
        let mut bad = u.clone();
        bad[0] = 5;
        assert!(MfTrainer::new(m, &cfg(1, 0.1, 0.0), bad, i.clone(), pos(), 1).is_err());
    }
}
