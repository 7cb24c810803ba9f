//! The plain NeuMF math, one sample at a time: THE definition that the fast CPU path
//! ([`super::CpuTrainer`]) and every CUDA kernel (`ncf_cuda::check`) are checked against. Written
//! to be read, not to be fast; dot products and gradients are accumulated in f64 so that its own
//! rounding is far below any backend's.
//!
//! Forward of sample (u, i): `g = mf_user[u] ⊙ mf_item[i]`; `x0 = [mlp_user[u] ‖ mlp_item[i]]`;
//! for each linear layer k: `x(k+1) = dropout(relu(W_k x_k + b_k))` (dropout of
//! [`crate::model::dropout`]); `c = [g ‖ x_n]`; `logit = final.weight · c + final.bias`.
//! Loss is BCE-with-logits, averaged over the batch. The optimiser is [`optimizer_step`]
//! (PyTorch's Adam or SGD, dense). [`RefTrainer`] trains with all of it.

use crate::model::dropout::{dropout_scale, dropout_threshold, sample_dropout_mask, DropoutKey};
use crate::model::{Model, ModelConfig, ModelKind};
use crate::sampling::rng::{stream, Rng};
use crate::sampling::sampler::{EpochSamples, NegativeMode, UserItems};
use crate::train::backend::{check_ids, check_out_len, Scorer, StepStats, Trainer};
use crate::train::checkpoint::OptimizerState as CheckpointState;
use crate::train::config::{BatchSize, Optimizer, Precision, TrainConfig};
use crate::{Error, Result};

/// One training sample: `index` is its unshuffled index in the epoch (it addresses dropout).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub user: u32,
    pub item: u32,
    pub label: f32,
    pub index: u64,
}

/// Dropout of a training forward pass: the seed's RNG, the epoch and the sample's index.
pub type Dropout<'a> = Option<(&'a Rng, u32, u64)>;

/// What the forward pass of one sample keeps for the backward pass.
#[derive(Clone, Debug, Default)]
pub struct Activations {
    pub user: u32,
    pub item: u32,
    /// `xs[0]` is the MLP input, `xs[k + 1]` the output of layer k after ReLU and dropout.
    pub xs: Vec<Vec<f32>>,
    /// Dropout factor of each unit of each layer: 0 (dropped) or the keep scale.
    pub masks: Vec<Vec<f32>>,
    /// The final layer's input `[GMF ‖ MLP output]`.
    pub concat: Vec<f32>,
    pub logit: f32,
}

/// Numerically stable BCE-with-logits of one sample (as `nn.BCEWithLogitsLoss`).
pub fn bce_with_logits(logit: f32, label: f32) -> f32 {
    logit.max(0.0) - logit * label + (-logit.abs()).exp().ln_1p()
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// [`bce_with_logits`] in f64.
fn bce64(z: f64, y: f64) -> f64 {
    z.max(0.0) - z * y + (-z.abs()).exp().ln_1p()
}

/// [`sigmoid`] in f64.
fn sigmoid64(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// The dropout factors (0 or the keep scale) of layer `layer`'s `n_out` units.
pub fn dropout_mask(c: &ModelConfig, layer: usize, n_out: usize, dropout: Dropout) -> Vec<f32> {
    let mut mask = vec![1.0f32; n_out];
    let t = dropout_threshold(c.dropout);
    if let (Some((rng, epoch, s)), true) = (dropout, t > 0) {
        let key = DropoutKey {
            rng: *rng,
            epoch,
            threshold: t,
        };
        let mut keep = vec![false; n_out];
        sample_dropout_mask(&key, s, layer as u32, &mut keep);
        for (m, kept) in mask.iter_mut().zip(keep) {
            *m = if kept { dropout_scale(t) } else { 0.0 };
        }
    }
    mask
}

/// The MLP input `[E_u ‖ E_i]` of (user, item) (empty without an MLP).
pub fn mlp_input(model: &Model, user: u32, item: u32) -> Vec<f32> {
    let c = &model.config;
    if !c.kind.has_mlp() {
        return vec![];
    }
    let (u, i, e) = (user as usize, item as usize, c.mlp_embed());
    let mut x0 = model.tensor("mlp_user_embed.weight")[u * e..(u + 1) * e].to_vec();
    x0.extend_from_slice(&model.tensor("mlp_item_embed.weight")[i * e..(i + 1) * e]);
    x0
}

/// Layer `k` of the MLP on input `x`: `mask ⊙ relu(W_k x + b_k)`, the sum in f64.
pub fn mlp_layer(model: &Model, k: usize, x: &[f32], mask: &[f32]) -> Vec<f32> {
    let c = &model.config;
    let (n_in, n_out) = (c.layers[k], c.layers[k + 1]);
    let w = model.tensor(&format!("mlp.{k}.weight"));
    let b = model.tensor(&format!("mlp.{k}.bias"));
    (0..n_out)
        .map(|o| {
            let z = b[o] as f64
                + (0..n_in)
                    .map(|j| w[o * n_in + j] as f64 * x[j] as f64)
                    .sum::<f64>();
            let z = z as f32;
            // ReLU that lets NaN through, as PyTorch.
            (if z < 0.0 { 0.0 } else { z }) * mask[o]
        })
        .collect()
}

/// Forward pass of one sample. `dropout` is `Some((rng, epoch, sample index))` in training.
pub fn forward(model: &Model, user: u32, item: u32, dropout: Dropout) -> Activations {
    let c = &model.config;
    let mut xs = vec![];
    if c.kind.has_mlp() {
        xs.push(mlp_input(model, user, item));
        for k in 0..c.n_linear() {
            let mask = dropout_mask(c, k, c.layers[k + 1], dropout);
            let y = mlp_layer(model, k, &xs[k], &mask);
            xs.push(y);
        }
    }
    activations_from(model, user, item, dropout, xs)
}

/// The activations of one sample whose MLP input and layer outputs are `xs` (as [`forward`]
/// computes them, or as a device computed them: its backward pass is then checked on its own
/// inputs, so errors do not compound): adds the masks, the final layer's input and the logit.
pub fn activations_from(
    model: &Model,
    user: u32,
    item: u32,
    dropout: Dropout,
    xs: Vec<Vec<f32>>,
) -> Activations {
    let c = &model.config;
    let (u, i) = (user as usize, item as usize);
    let mut concat = Vec::with_capacity(c.final_in());
    if c.kind.has_gmf() {
        let f = c.factors;
        let mu = &model.tensor("mf_user_embed.weight")[u * f..(u + 1) * f];
        let mi = &model.tensor("mf_item_embed.weight")[i * f..(i + 1) * f];
        concat.extend(mu.iter().zip(mi).map(|(a, b)| a * b));
    }
    let masks: Vec<Vec<f32>> = (0..xs.len().saturating_sub(1))
        .map(|k| dropout_mask(c, k, c.layers[k + 1], dropout))
        .collect();
    if let Some(last) = xs.last().filter(|_| c.kind.has_mlp()) {
        concat.extend_from_slice(last);
    }
    let fw = model.tensor("final.weight");
    let logit = (model.tensor("final.bias")[0] as f64
        + fw.iter()
            .zip(&concat)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum::<f64>()) as f32;
    Activations {
        user,
        item,
        xs,
        masks,
        concat,
        logit,
    }
}

/// The logit of (user, item) with dropout off.
pub fn logit(model: &Model, user: u32, item: u32) -> f32 {
    forward(model, user, item, None).logit
}

/// Backward pass of one sample: adds `d loss / d param` to `grad` (the flat layout of
/// `model.params`, f64), given `dlogit = d loss / d logit`.
pub fn backward(model: &Model, a: &Activations, dlogit: f64, grad: &mut [f64]) {
    let c = &model.config;
    let l = &model.layout;
    let (u, i) = (a.user as usize, a.item as usize);
    let fw = model.tensor("final.weight");
    let fw_off = l.range("final.weight").start;
    for (j, x) in a.concat.iter().enumerate() {
        grad[fw_off + j] += dlogit * *x as f64;
    }
    grad[l.range("final.bias").start] += dlogit;
    let g = c.gmf_factors();
    if g > 0 {
        let mu = &model.tensor("mf_user_embed.weight")[u * g..(u + 1) * g];
        let mi = &model.tensor("mf_item_embed.weight")[i * g..(i + 1) * g];
        let gu = l.range("mf_user_embed.weight").start + u * g;
        let gi = l.range("mf_item_embed.weight").start + i * g;
        for j in 0..g {
            let dgmf = dlogit * fw[j] as f64;
            grad[gu + j] += dgmf * mi[j] as f64;
            grad[gi + j] += dgmf * mu[j] as f64;
        }
    }
    if c.kind.has_mlp() {
        // dx: gradient w.r.t. the output of the current layer (after dropout).
        let mut dx: Vec<f64> = fw[g..].iter().map(|w| dlogit * *w as f64).collect();
        for k in (0..c.n_linear()).rev() {
            let (n_in, n_out) = (c.layers[k], c.layers[k + 1]);
            let w = model.tensor(&format!("mlp.{k}.weight"));
            let w_off = l.range(&format!("mlp.{k}.weight")).start;
            let b_off = l.range(&format!("mlp.{k}.bias")).start;
            let (x_in, y) = (&a.xs[k], &a.xs[k + 1]);
            let mut dx_in = vec![0f64; n_in];
            // relu'(z) is 1 exactly where the kept output is positive.
            for o in (0..n_out).filter(|&o| y[o] > 0.0) {
                let dz = dx[o] * a.masks[k][o] as f64;
                grad[b_off + o] += dz;
                for j in 0..n_in {
                    grad[w_off + o * n_in + j] += dz * x_in[j] as f64;
                    dx_in[j] += dz * w[o * n_in + j] as f64;
                }
            }
            dx = dx_in;
        }
        let e = c.mlp_embed();
        let gu = l.range("mlp_user_embed.weight").start + u * e;
        let gi = l.range("mlp_item_embed.weight").start + i * e;
        for j in 0..e {
            grad[gu + j] += dx[j];
            grad[gi + j] += dx[e + j];
        }
    }
}

/// Mean BCE loss of samples whose activations are `acts` (labels `labels`) and its gradient
/// (f64, the flat layout): the backward pass the kernel checks compare with.
pub fn batch_loss_and_grad(model: &Model, acts: &[Activations], labels: &[f32]) -> (f64, Vec<f64>) {
    let n = acts.len() as f64;
    let mut grad = vec![0f64; model.params.len()];
    let mut loss = 0f64;
    for (a, &y) in acts.iter().zip(labels) {
        let (z, y) = (a.logit as f64, y as f64);
        loss += bce64(z, y);
        backward(model, a, (sigmoid64(z) - y) / n, &mut grad);
    }
    (loss / n.max(1.0), grad)
}

/// Mean BCE loss of `samples` and its gradient, added to `grad` (dropout from `rng`, `epoch`).
pub fn loss_and_grad(
    model: &Model,
    samples: &[Sample],
    rng: &Rng,
    epoch: u32,
    grad: &mut [f32],
) -> f64 {
    let acts: Vec<Activations> = samples
        .iter()
        .map(|s| forward(model, s.user, s.item, Some((rng, epoch, s.index))))
        .collect();
    let labels: Vec<f32> = samples.iter().map(|s| s.label).collect();
    let (loss, g) = batch_loss_and_grad(model, &acts, &labels);
    for (o, x) in grad.iter_mut().zip(g) {
        *o += x as f32;
    }
    loss
}

/// Adam's moments and step count in the reference optimiser (a checkpoint's
/// [`CheckpointState`] holds them with the parameters and the loss scale).
#[derive(Clone, Debug)]
pub struct Moments {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    /// Steps taken so far.
    pub step: u64,
}

impl Moments {
    pub fn new(n: usize) -> Self {
        Moments {
            m: vec![0.0; n],
            v: vec![0.0; n],
            step: 0,
        }
    }
}

/// One optimiser step over every parameter (dense, as `torch.optim.Adam` / `SGD`).
/// Adam follows PyTorch's non-fused single-tensor code: `m.lerp_(g, 1 - b1)`,
/// `v = b2 v + (1 - b2) g²`, `p -= (lr / bc1) · m / (sqrt(v) / sqrt(bc2) + eps)` with the bias
/// corrections `bc = 1 - b^t` computed in f64. `l2` is added to the gradient first.
pub fn optimizer_step(cfg: &TrainConfig, params: &mut [f32], grad: &[f32], st: &mut Moments) {
    st.step += 1;
    let h = AdamScalars::new(cfg, st.step);
    for k in 0..params.len() {
        let g = grad[k] + cfg.l2 * params[k];
        match cfg.optimizer {
            Optimizer::Sgd => params[k] -= cfg.lr * g,
            Optimizer::Adam => h.update(&mut params[k], &mut st.m[k], &mut st.v[k], g),
        }
    }
}

/// Per-step constants of Adam.
#[derive(Clone, Copy, Debug)]
pub struct AdamScalars {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub step_size: f32,
    pub bc2_sqrt: f32,
}

impl AdamScalars {
    pub fn new(cfg: &TrainConfig, step: u64) -> Self {
        let t = step as i32;
        let bc1 = 1.0 - (cfg.beta1 as f64).powi(t);
        let bc2 = 1.0 - (cfg.beta2 as f64).powi(t);
        AdamScalars {
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            step_size: (cfg.lr as f64 / bc1) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
        }
    }

    #[inline(always)]
    pub fn update(&self, p: &mut f32, m: &mut f32, v: &mut f32, g: f32) {
        *m += (1.0 - self.beta1) * (g - *m);
        *v = self.beta2 * *v + (1.0 - self.beta2) * g * g;
        *p -= self.step_size * *m / (v.sqrt() / self.bc2_sqrt + self.eps);
    }
}

/// The reference as a [`Trainer`]: the golden run's CPU side (one step = the reference forward
/// and backward of the batch's samples, then [`optimizer_step`]).
pub struct RefTrainer<'a> {
    pub model: Model,
    pub state: Moments,
    pub cfg: TrainConfig,
    pub users: &'a [u32],
    pub items: &'a [u32],
    pub positives: Option<&'a UserItems>,
}

impl<'a> RefTrainer<'a> {
    pub fn new(
        model: Model,
        cfg: &TrainConfig,
        users: &'a [u32],
        items: &'a [u32],
        positives: Option<&'a UserItems>,
    ) -> Self {
        RefTrainer {
            state: Moments::new(model.params.len()),
            model,
            cfg: cfg.clone(),
            users,
            items,
            positives,
        }
    }
}

impl Scorer for RefTrainer<'_> {
    fn score(&mut self, users: &[u32], items: &[u32], out: &mut [f32]) -> Result<()> {
        check_ids(&self.model.config, users, items)?;
        check_out_len(users.len(), out)?;
        for ((o, &u), &i) in out.iter_mut().zip(users).zip(items) {
            *o = logit(&self.model, u, i);
        }
        Ok(())
    }
}

impl Trainer for RefTrainer<'_> {
    fn name(&self) -> String {
        "cpu reference".into()
    }

    fn step(&mut self, epoch: u32, positions: std::ops::Range<u64>) -> Result<StepStats> {
        let rng = Rng::new(self.cfg.seed);
        let es = EpochSamples::new(
            rng,
            epoch,
            self.cfg.negatives,
            self.model.config.n_items,
            self.cfg.negative_mode,
            self.users,
            self.items,
            self.positives,
        );
        es.check_positions(&positions)?;
        let mut samples = Vec::with_capacity((positions.end - positions.start) as usize);
        for p in positions {
            let index = es.order.apply(p);
            let (user, item, label) = es.sample(index)?;
            samples.push(Sample {
                user,
                item,
                label,
                index,
            });
        }
        let mut grad = vec![0f32; self.model.params.len()];
        let loss = loss_and_grad(&self.model, &samples, &rng, epoch, &mut grad);
        optimizer_step(&self.cfg, &mut self.model.params, &grad, &mut self.state);
        Ok(StepStats {
            loss: loss as f32,
            skipped: false,
        })
    }

    fn model(&mut self) -> Result<Model> {
        Ok(self.model.clone())
    }

    fn save_state(&mut self) -> Result<CheckpointState> {
        Ok(CheckpointState {
            params: self.model.params.clone(),
            m: self.state.m.clone(),
            v: self.state.v.clone(),
            steps: self.state.step,
            loss_scale: 1.0,
            clean_steps: 0,
        })
    }

    fn load_state(&mut self, st: &CheckpointState) -> Result<()> {
        let n = self.model.params.len();
        if [&st.params, &st.m, &st.v].iter().any(|x| x.len() != n) {
            return Err(Error::invalid("optimiser state of another model"));
        }
        self.model.params.clone_from(&st.params);
        self.state.m.clone_from(&st.m);
        self.state.v.clone_from(&st.v);
        self.state.step = st.steps;
        Ok(())
    }
}

/// Small problems the parity checks, the golden run and the tests share.
pub mod toy {
    use super::*;

    /// `n_users` users with a few positives each over `n_items` items.
    pub fn data(n_users: u32, n_items: u32, per_user: u32, seed: u64) -> (Vec<u32>, Vec<u32>) {
        let rng = Rng::new(seed);
        let (mut us, mut is) = (vec![], vec![]);
        for u in 0..n_users {
            let k = 1 + per_user.min(n_items - 1) * (1 + u % 3) / 3;
            let mut items: Vec<u32> = (0..k)
                .map(|j| crate::sampling::rng::below(rng.word(stream::SYNTH, u, j, 0), n_items))
                .collect();
            items.sort();
            items.dedup();
            for i in items {
                us.push(u);
                is.push(i);
            }
        }
        (us, is)
    }

    /// A model of `kind`: factors 8, MLP 32-48-16-8, NVIDIA's initialisation.
    pub fn model(kind: ModelKind, n_users: u32, n_items: u32, dropout: f32, seed: u64) -> Model {
        let cfg = ModelConfig {
            kind,
            n_users,
            n_items,
            factors: 8,
            layers: vec![32, 48, 16, 8],
            dropout,
        };
        Model::init(cfg, seed).expect("valid toy model")
    }

    /// Adam 0.01, 4 approximate negatives, batches of `batch`, precision `p`.
    pub fn train_config(p: Precision, batch: u64) -> TrainConfig {
        TrainConfig {
            adam_moments: Default::default(),
            seed: 11,
            epochs: 1,
            batch_size: BatchSize::Samples(batch),
            negatives: 4,
            negative_mode: NegativeMode::Approximate,
            optimizer: Optimizer::Adam,
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            l2: 0.0,
            family: Default::default(),
            precision: p,
            topk: 10,
            target_hr: None,
        }
    }
}
