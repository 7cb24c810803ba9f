//! The plain NeuMF math, one sample at a time: the definition the fast CPU path and the CUDA
//! kernels are checked against. Written to be read, not to be fast.
//!
//! Forward of sample (u, i): `g = mf_user[u] ⊙ mf_item[i]`; `x0 = [mlp_user[u] ‖ mlp_item[i]]`;
//! for each linear layer k: `x(k+1) = dropout(relu(W_k x_k + b_k))`; `c = [g ‖ x_n]`;
//! `logit = final.weight · c + final.bias`. Loss is BCE-with-logits, averaged over the batch.

use super::{dropout_scale, dropout_threshold, sample_dropout_mask, DropoutKey};
use crate::model::Model;
use crate::rng::Rng;
use crate::train::{Optimizer, TrainConfig};

/// One training sample: `index` is its unshuffled index in the epoch (it addresses dropout).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub user: u32,
    pub item: u32,
    pub label: f32,
    pub index: u32,
}

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

/// Forward pass of one sample. `dropout` is `Some((rng, epoch, sample index))` in training.
pub fn forward(
    model: &Model,
    user: u32,
    item: u32,
    dropout: Option<(&Rng, u32, u32)>,
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
    let mut xs = vec![];
    let mut masks = vec![];
    if c.kind.has_mlp() {
        let e = c.mlp_embed();
        let mut x0 = model.tensor("mlp_user_embed.weight")[u * e..(u + 1) * e].to_vec();
        x0.extend_from_slice(&model.tensor("mlp_item_embed.weight")[i * e..(i + 1) * e]);
        xs.push(x0);
        let t = dropout_threshold(c.dropout);
        for k in 0..c.n_linear() {
            let (n_in, n_out) = (c.layers[k], c.layers[k + 1]);
            let w = model.tensor(&format!("mlp.{k}.weight"));
            let b = model.tensor(&format!("mlp.{k}.bias"));
            let x = &xs[k];
            let mut mask = vec![1.0f32; n_out];
            if let (Some((rng, epoch, s)), true) = (dropout, t > 0) {
                let key = DropoutKey {
                    rng: *rng,
                    epoch,
                    threshold: t,
                };
                let mut keep = vec![false; n_out];
                sample_dropout_mask(&key, s, k as u32, &mut keep);
                for (m, kept) in mask.iter_mut().zip(keep) {
                    *m = if kept { dropout_scale(t) } else { 0.0 };
                }
            }
            let y: Vec<f32> = (0..n_out)
                .map(|o| {
                    let z = b[o] + (0..n_in).map(|j| w[o * n_in + j] * x[j]).sum::<f32>();
                    // ReLU that lets NaN through, as PyTorch.
                    (if z < 0.0 { 0.0 } else { z }) * mask[o]
                })
                .collect();
            xs.push(y);
            masks.push(mask);
        }
        concat.extend_from_slice(xs.last().unwrap());
    }
    let fw = model.tensor("final.weight");
    let logit =
        model.tensor("final.bias")[0] + fw.iter().zip(&concat).map(|(a, b)| a * b).sum::<f32>();
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
/// `model.params`), given `dlogit = d loss / d logit`.
pub fn backward(model: &Model, a: &Activations, dlogit: f32, grad: &mut [f32]) {
    let c = &model.config;
    let l = &model.layout;
    let (u, i) = (a.user as usize, a.item as usize);
    let fw = model.tensor("final.weight");
    let fw_off = l.range("final.weight").start;
    for (j, x) in a.concat.iter().enumerate() {
        grad[fw_off + j] += dlogit * x;
    }
    grad[l.range("final.bias").start] += dlogit;
    let g = c.gmf_factors();
    if g > 0 {
        let mu = &model.tensor("mf_user_embed.weight")[u * g..(u + 1) * g];
        let mi = &model.tensor("mf_item_embed.weight")[i * g..(i + 1) * g];
        let gu = l.range("mf_user_embed.weight").start + u * g;
        let gi = l.range("mf_item_embed.weight").start + i * g;
        for j in 0..g {
            let dgmf = dlogit * fw[j];
            grad[gu + j] += dgmf * mi[j];
            grad[gi + j] += dgmf * mu[j];
        }
    }
    if c.kind.has_mlp() {
        // dx: gradient w.r.t. the output of the current layer (after dropout).
        let mut dx: Vec<f32> = fw[g..].iter().map(|w| dlogit * w).collect();
        for k in (0..c.n_linear()).rev() {
            let (n_in, n_out) = (c.layers[k], c.layers[k + 1]);
            let w = model.tensor(&format!("mlp.{k}.weight"));
            let w_off = l.range(&format!("mlp.{k}.weight")).start;
            let b_off = l.range(&format!("mlp.{k}.bias")).start;
            let (x_in, y) = (&a.xs[k], &a.xs[k + 1]);
            // relu'(z) is 1 exactly where the kept output is positive.
            let dz: Vec<f32> = (0..n_out)
                .map(|o| {
                    if y[o] > 0.0 {
                        dx[o] * a.masks[k][o]
                    } else {
                        0.0
                    }
                })
                .collect();
            let mut dx_in = vec![0f32; n_in];
            for o in 0..n_out {
                grad[b_off + o] += dz[o];
                for j in 0..n_in {
                    grad[w_off + o * n_in + j] += dz[o] * x_in[j];
                    dx_in[j] += dz[o] * w[o * n_in + j];
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

/// Mean BCE loss of `samples` and its gradient, added to `grad` (dropout from `rng`, `epoch`).
pub fn loss_and_grad(
    model: &Model,
    samples: &[Sample],
    rng: &Rng,
    epoch: u32,
    grad: &mut [f32],
) -> f64 {
    let n = samples.len() as f32;
    let mut loss = 0f64;
    for s in samples {
        let a = forward(model, s.user, s.item, Some((rng, epoch, s.index)));
        loss += bce_with_logits(a.logit, s.label) as f64;
        backward(model, &a, (sigmoid(a.logit) - s.label) / n, grad);
    }
    loss / samples.len() as f64
}

/// Adam and SGD state of the reference optimiser.
#[derive(Clone, Debug)]
pub struct OptimizerState {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    /// Steps taken so far.
    pub step: u64,
}

impl OptimizerState {
    pub fn new(n: usize) -> Self {
        OptimizerState {
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
pub fn optimizer_step(
    cfg: &TrainConfig,
    params: &mut [f32],
    grad: &[f32],
    st: &mut OptimizerState,
) {
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
