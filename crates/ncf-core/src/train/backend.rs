//! The two interfaces a backend implements: [`Scorer`] (logits of (user, item) pairs, what
//! ncf-eval, ncf-topk and evaluation during training need) and [`Trainer`] (optimiser steps on
//! an epoch's samples, state for checkpoints). CPU implementations live in
//! [`crate::neumf_cpu`] and [`crate::family`], the CUDA ones in `ncf-cuda`.

use super::checkpoint::OptimizerState;
use crate::data::dataset::{Col, TrainUsers};
use crate::model::{Model, ModelConfig};
use crate::{Error, Result};

/// Where a tool computes: the CPU, a CUDA GPU, or CUDA when one is usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Device {
    Cpu,
    Cuda,
    /// CUDA when a GPU is usable, else CPU (with a note on stderr).
    Auto,
    /// The CUDA backend on the host device: the same kernels compiled for the CPU, host memory,
    /// every call checked (ncf-cuda's `device::HostDevice`; needs g++). For tests and debugging
    /// without a GPU: slow, and not in `--help`.
    #[cfg_attr(feature = "clap", value(hide = true))]
    CudaHost,
}

/// How the CUDA backend sums a step's contributions of many samples to one value (embedding,
/// GMF and bias gradients, the final layer's weights, the loss).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Reductions {
    /// In a fixed order (samples sorted by user and item, per-block partials added in block
    /// order): the same bits every run. The default.
    #[default]
    Deterministic,
    /// Float atomics, in whatever order the GPU runs them (the kernels before the deterministic
    /// step; the order, so the last bits, vary run to run).
    Atomic,
}

/// Which kernels the CUDA backend's step runs (docs/CUDA.md, "The fused step").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum StepKernels {
    /// The GEMM epilogues fused (bias, ReLU and dropout in the forward GEMM; the mask and the
    /// bias gradient in the input-gradient GEMM) and Adam at its bandwidth floor. The default on
    /// the host device; on a GPU once a device round has confirmed it.
    Fused,
    /// cuBLAS GEMMs with separate bias/ReLU/dropout kernels and the grid-stride Adam: the
    /// kernels the H200 runs confirmed (the default on a GPU until then).
    Split,
}

/// Scores (logits) of (user, item) pairs of one model with dropout off.
pub trait Scorer {
    /// `out[k] = model(users[k], items[k])`; ids out of range or lengths that differ are an
    /// error naming the first offender.
    fn score(&mut self, users: &[u32], items: &[u32], out: &mut [f32]) -> Result<()>;
}

/// What one optimiser step reports.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepStats {
    /// Mean BCE loss over the batch.
    pub loss: f32,
    /// The step was skipped (FP16 loss-scale overflow).
    pub skipped: bool,
}

/// A backend that trains a model on the samples of [`crate::sampling::sampler::EpochSamples`];
/// as a [`Scorer`] it scores with the current parameters.
///
/// The backend owns the data it needs (train positives, per-user positives for exact negatives)
/// and the model parameters with the optimiser state. Positions are indices into the shuffled
/// epoch: the batch of step `s` is positions `s*B .. min((s+1)*B, len)`
/// ([`super::config::BatchSize`]).
pub trait Trainer: Scorer {
    /// Human-readable backend name ("cpu (2 threads)", "cuda:0 NVIDIA H100 ...").
    fn name(&self) -> String;
    /// One optimiser step on the samples at `positions` of `epoch` (Adam step count is kept
    /// inside; `step` is the global step number, 1-based, for bias correction and dropout).
    fn step(&mut self, epoch: u32, positions: std::ops::Range<u64>) -> Result<StepStats>;
    /// The same step, for a backend that queues work on a device and reads its results back
    /// only now and then (CUDA: no blocking device-to-host read per step): it may return before
    /// the step is done, with the stats of the steps that finished since the last call, oldest
    /// first — possibly none, possibly several. [`Trainer::drain`] waits for the rest. The
    /// training loop drains before it checkpoints, stops or ends an epoch. The default runs the
    /// step at once.
    fn step_queued(
        &mut self,
        epoch: u32,
        positions: std::ops::Range<u64>,
    ) -> Result<Vec<StepStats>> {
        Ok(vec![self.step(epoch, positions)?])
    }
    /// Wait for every step [`Trainer::step_queued`] has not reported yet; their stats, oldest
    /// first (an error a queued step met, such as a sampler failure, is returned here).
    fn drain(&mut self) -> Result<Vec<StepStats>> {
        Ok(Vec::new())
    }
    /// A copy of the current parameters.
    fn model(&mut self) -> Result<Model>;
    /// Call `f` with the current parameters: a borrow where the backend holds them in host
    /// memory (a model is gigabytes at MLPerf's scale), else a copy from [`Trainer::model`].
    fn with_model(&mut self, f: &mut dyn FnMut(&Model) -> Result<()>) -> Result<()> {
        let m = self.model()?;
        f(&m)
    }
    /// The model's configuration (by [`Trainer::with_model`]).
    fn model_config(&mut self) -> Result<ModelConfig> {
        let mut c = None;
        self.with_model(&mut |m| {
            c = Some(m.config.clone());
            Ok(())
        })?;
        Ok(c.expect("with_model calls f"))
    }
    /// The optimiser state (parameters, moments, step count, loss scale) for a checkpoint.
    fn save_state(&mut self) -> Result<OptimizerState>;
    /// Continue from a state of [`Trainer::save_state`] (same model layout).
    fn load_state(&mut self, state: &OptimizerState) -> Result<()>;
    /// This process's rank and the number of ranks of a data-parallel run: evaluation is
    /// sharded by rows across ranks (every rank holds the same parameters).
    fn rank_world(&self) -> (usize, usize) {
        (0, 1)
    }
    /// Sum `x` element-wise across the ranks, in place (nothing to do on one rank).
    fn allreduce_f64(&mut self, _x: &mut [f64]) -> Result<()> {
        Ok(())
    }
    /// A normal end of training: release what the ranks share, in order (CUDA: finalize the
    /// NCCL communicator; an error path that never calls this aborts it instead). Nothing to do
    /// on the CPU.
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Threads used when none are asked for: the available parallelism.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// An error naming the first user or item id that is out of range of the model `c`.
pub fn check_ids(c: &ModelConfig, users: &[u32], items: &[u32]) -> Result<()> {
    if users.len() != items.len() {
        return Err(Error::invalid(format!(
            "{} users but {} items to score",
            users.len(),
            items.len()
        )));
    }
    if let Some(k) = users.iter().position(|&u| u >= c.n_users) {
        return Err(Error::invalid(format!(
            "user id {} (pair {k}) is out of range: the model has {} users",
            users[k], c.n_users
        )));
    }
    if let Some(k) = items.iter().position(|&i| i >= c.n_items) {
        return Err(Error::invalid(format!(
            "item id {} (pair {k}) is out of range: the model has {} items",
            items[k], c.n_items
        )));
    }
    Ok(())
}

/// [`check_ids`] on a dataset's train columns as stored: per-user offsets name their users by
/// position, and mapped items are walked in blocks (their pages released after each).
pub fn check_train_ids(c: &ModelConfig, users: &TrainUsers, items: &Col<u32>) -> Result<()> {
    let offsets = match users {
        TrainUsers::Rows(u) => return check_ids(c, u, items),
        TrainUsers::Offsets(o) => &o.offsets,
    };
    if users.len() != items.len() {
        return Err(Error::invalid(format!(
            "{} users but {} items to score",
            users.len(),
            items.len()
        )));
    }
    // The last user with rows.
    if let Some(u) = offsets.windows(2).rposition(|w| w[1] > w[0]) {
        if u as u32 >= c.n_users {
            return Err(Error::invalid(format!(
                "user id {u} (pair {}) is out of range: the model has {} users",
                offsets[u], c.n_users
            )));
        }
    }
    check_items(c, items)
}

fn check_items(c: &ModelConfig, items: &Col<u32>) -> Result<()> {
    items.scan(|at, b| match b.iter().position(|&i| i >= c.n_items) {
        Some(k) => Err(Error::invalid(format!(
            "item id {} (pair {}) is out of range: the model has {} items",
            b[k],
            at + k,
            c.n_items
        ))),
        None => Ok(()),
    })
}

/// `Err` unless `out` has one slot per pair.
pub fn check_out_len(pairs: usize, out: &[f32]) -> Result<()> {
    if out.len() != pairs {
        return Err(Error::invalid(format!(
            "score: {pairs} pairs but room for {} scores",
            out.len()
        )));
    }
    Ok(())
}
