//! [`CudaScorer`]: the [`Scorer`] of the CUDA backend, for `ncf-eval --device cuda` and
//! `ncf-topk --device cuda`: the model on a device ([`DeviceModel`]) scored with the trainer's
//! own forward pass (the MLP GEMMs and fused kernels, then the final layer with dropout off) on
//! batches of [`SCORE_BATCH`] pairs. It holds no gradients, moments or training rows.

use crate::device::Device;
use crate::model::DeviceModel;
use crate::CudaError;
use ncf_core::model::Model;
use ncf_core::train::Scorer;

/// Pairs scored per forward pass (the batch buffers' capacity).
pub const SCORE_BATCH: usize = 1 << 16;

/// Scores of one model on one device (dropout off).
pub struct CudaScorer {
    model: DeviceModel,
}

impl CudaScorer {
    /// `model` on `dev`, computing in the device's precision (FP32: the scores of the CPU
    /// backend up to rounding).
    pub fn new(dev: Box<dyn Device>, model: &Model) -> Result<Self, CudaError> {
        Ok(CudaScorer {
            model: DeviceModel::new(dev, model, SCORE_BATCH)?,
        })
    }

    /// A description of the device and precision ("cuda:0 NVIDIA H200 (sm_90) (fp32)").
    pub fn name(&self) -> String {
        let d = self.model.device();
        format!(
            "cuda:{} {} ({})",
            d.info().ordinal,
            d.describe(),
            d.precision().name()
        )
    }
}

impl Scorer for CudaScorer {
    fn score(&mut self, users: &[u32], items: &[u32], out: &mut [f32]) -> ncf_core::Result<()> {
        Ok(self.model.score(users, items, out)?)
    }
}
