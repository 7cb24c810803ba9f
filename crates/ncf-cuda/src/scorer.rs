//! [`CudaScorer`]: the [`Scorer`] of the CUDA backend, for `ncf-eval --device cuda` and
//! `ncf-topk --device cuda`. It scores with the trainer's own forward pass (the MLP GEMMs and
//! fused kernels, then the final layer with dropout off) on batches of [`SCORE_BATCH`] pairs.

use crate::trainer::CudaTrainer;
use crate::CudaError;
use ncf_core::model::Model;
use ncf_core::train::{BatchSize, Precision, Scorer, TrainConfig};

/// Pairs scored per forward pass (the batch buffers' capacity).
pub const SCORE_BATCH: u64 = 1 << 16;

/// Scores of one model on one GPU (dropout off).
pub struct CudaScorer {
    trainer: CudaTrainer,
}

impl CudaScorer {
    /// `model` on GPU `ordinal`, computing in `precision` (FP32: the scores of the CPU backend
    /// up to rounding).
    pub fn new(ordinal: usize, model: Model, precision: Precision) -> Result<Self, CudaError> {
        // The trainer's buffers are sized by a training configuration; scoring uses none of its
        // optimiser settings and no training rows (one placeholder positive is uploaded).
        let cfg = TrainConfig {
            batch_size: BatchSize::Samples(SCORE_BATCH),
            precision,
            ..TrainConfig::nvidia(0)
        };
        let trainer = CudaTrainer::new(ordinal, model, &cfg, &[0], &[0], None)?;
        Ok(CudaScorer { trainer })
    }

    /// A description of the device and precision ("cuda:0 NVIDIA H200 (sm_90, fp32)").
    pub fn name(&self) -> String {
        ncf_core::train::Trainer::name(&self.trainer)
    }
}

impl Scorer for CudaScorer {
    fn score(&mut self, users: &[u32], items: &[u32], out: &mut [f32]) -> ncf_core::Result<()> {
        Ok(self.trainer.score_chunks(users, items, out)?)
    }
}
