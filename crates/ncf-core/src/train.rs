//! The training loop shared by every backend: epochs of shuffled samples in batches, evaluation
//! after each epoch, best model kept, early stop at a target HR, NVIDIA-style JSON reports.
//! A backend implements [`Trainer`]; the CPU one is [`crate::cpu`], the CUDA one is `ncf-cuda`.

use crate::model::Model;
use crate::sampler::NegativeMode;
use crate::Result;
use serde::{Deserialize, Serialize};

/// Numeric precision of a backend's compute (the CPU backend is always FP32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Tf32,
    Fp16,
    Bf16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    Adam,
    Sgd,
}

/// Everything that decides what a training run computes (backend-independent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub seed: u64,
    pub epochs: u32,
    /// Samples per optimiser step (global, across ranks).
    pub batch_size: u64,
    /// Negatives per positive, re-drawn every epoch.
    pub negatives: u32,
    pub negative_mode: NegativeMode,
    pub optimizer: Optimizer,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// L2 penalty on all parameters (added to the gradient), 0 as NVIDIA.
    pub l2: f32,
    pub precision: Precision,
    /// Evaluation cut-off K of HR@K / NDCG@K.
    pub topk: usize,
    /// Stop after the first epoch whose HR@K reaches this.
    pub target_hr: Option<f64>,
}

/// What one optimiser step reports.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepStats {
    /// Mean BCE loss over the batch.
    pub loss: f32,
    /// The step was skipped (FP16 loss-scale overflow).
    pub skipped: bool,
}

/// A backend that trains a model on the samples of [`crate::sampler::EpochSamples`].
///
/// The backend owns the data it needs (train positives, per-user positives for exact negatives)
/// and the model parameters with the optimiser state. Positions are indices into the shuffled
/// epoch: the batch of step `s` is positions `s*B .. min((s+1)*B, len)`.
pub trait Trainer {
    /// Human-readable backend name ("cpu (2 threads)", "cuda:0 NVIDIA H100 ...").
    fn name(&self) -> String;
    /// One optimiser step on the samples at `positions` of `epoch` (Adam step count is kept
    /// inside; `step` is the global step number, 1-based, for bias correction and dropout).
    fn step(&mut self, epoch: u32, positions: std::ops::Range<u64>) -> Result<StepStats>;
    /// Scores (logits) of (user, item) pairs with dropout off.
    fn score(&mut self, users: &[u32], items: &[u32], out: &mut [f32]) -> Result<()>;
    /// A copy of the current parameters.
    fn model(&mut self) -> Result<Model>;
}
