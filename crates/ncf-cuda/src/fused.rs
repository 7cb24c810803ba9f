//! The fused step ([`StepKernels::Fused`], docs/CUDA.md "The fused step"): each MLP layer's
//! GEMM with its epilogue in one kernel (`kernels/fused.cuh`: bias, ReLU and dropout in the
//! forward; the `a > 0` mask and the bias gradient's fixed-order partials in the input-gradient
//! GEMM of the layer above), and Adam at its bandwidth floor (`ncf_adam_wide`: several float4
//! quads per thread, a grid of whole waves, its per-step scalars in a device buffer). The FP32
//! pre-activations and activation gradients of the split step never go to memory. The top
//! layer's backward (from the final layer's FP32 dx) and the weight gradients stay as in the
//! split step ([`StepKernels::Split`], the previous kernels).

use crate::device::{dropout_threshold, ActElem, Buf, DeviceExt, GemmCall, Ptr};
use crate::kdef::{AdamWide, LinearBwd, LinearFwd, Scatter, SumBlocks};
use crate::model::{DeviceModel, Dropout};
use crate::trainer::CudaTrainer;
use crate::CudaError;
use ncf_core::train::Optimizer;
pub use ncf_core::train::StepKernels;

/// Rows and units of a tile of `ncf_linear_fwd` / `ncf_linear_bwd` (`NCF_TM`, `NCF_TN`).
pub const TILE_ROWS: usize = 64;
pub const TILE_UNITS: usize = 64;
/// Float4 quads per thread of `ncf_adam_wide` (`NCF_ADAM_QUADS`).
pub const ADAM_QUADS: u64 = 4;
/// Resident blocks of 256 threads per SM of `ncf_adam_wide` (its `__launch_bounds__(256, 2)`:
/// ~95 registers keep its 16 float4 loads per thread in flight): its grid is one such wave.
pub const ADAM_BLOCKS_PER_SM: u32 = 2;

/// The fused step's buffers.
pub(crate) struct FusedBuffers {
    /// The second pre-activation gradient buffer: layer k's dz is written while layer k+1's is
    /// read (the model's `dz` holds the even layers, this one the odd).
    dz_odd: Buf<ActElem>,
    /// The bias gradient's partial sums [row blocks, widest layer].
    partials: Buf<f32>,
    /// Adam's per-step scalars: step_size, bc2_sqrt, inv_scale.
    hyper: Buf<f32>,
}

impl DeviceModel {
    /// The launch of a fused layer kernel over `n` rows and `width` units: (blocks, row blocks);
    /// blocks = unit tiles x row blocks, at most [`Self::max_row_grid`] row blocks.
    pub(crate) fn linear_grid(&self, n: usize, width: usize) -> (u32, u32) {
        let ut = width.div_ceil(TILE_UNITS).max(1) as u32;
        let rows = (n.div_ceil(TILE_ROWS) as u64).clamp(1, self.max_row_grid() as u64) as u32;
        (ut * rows, rows)
    }

    /// MLP layer `k` of the fused forward pass: `x` [n, fin] to its activations.
    pub(crate) fn linear_forward(
        &self,
        k: usize,
        n: usize,
        x: Ptr<ActElem>,
        dropout: Option<Dropout>,
    ) -> Result<(), CudaError> {
        let mc = &self.cfg;
        let (fin, fout) = (mc.layers[k], mc.layers[k + 1]);
        let (thr, scale) = match dropout {
            Some(_) => dropout_threshold(mc.dropout),
            None => (0, 1.0),
        };
        let seed = dropout.map_or(0, |d| d.seed);
        let kern = LinearFwd {
            x,
            w: self.wp(k),
            bias: self.pp(&format!("mlp.{k}.bias")),
            a: self.batch.acts[k].ptr(),
            sample: self.batch.sample.ptr(),
            batch: n as u32,
            fin: fin as u32,
            fout: fout as u32,
            layer: k as u32,
            epoch: dropout.map_or(0, |d| d.epoch),
            k0: seed as u32,
            k1: (seed >> 32) as u32,
            thr,
            scale,
        };
        let (grid, _) = self.linear_grid(n, fout);
        let sizes = format!("mlp.{k}: batch {n}, {fin} -> {fout}");
        self.dev.launch(&kern, grid, 0, &sizes)
    }
}

impl CudaTrainer {
    /// Run steps with these kernels (allocates the fused step's buffers, or frees them).
    pub fn with_step(mut self, s: StepKernels) -> Result<Self, CudaError> {
        self.fused = match s {
            StepKernels::Split => None,
            StepKernels::Fused => {
                let md = &self.model;
                let (d, mc, cap) = (md.dev.as_ref(), &md.cfg, md.batch.cap);
                let widest = mc.layers.iter().skip(1).copied().max().unwrap_or(1);
                let mlp = mc.kind.has_mlp();
                Some(FusedBuffers {
                    dz_odd: d.alloc_act(
                        if mlp { cap * widest } else { 0 },
                        "pre-activation gradients (odd layers)",
                    )?,
                    partials: d.alloc(
                        if mlp {
                            md.max_row_grid() as usize * widest
                        } else {
                            0
                        },
                        "fused bias gradient partials",
                    )?,
                    hyper: d.alloc(3, "Adam's per-step scalars")?,
                })
            }
        };
        self.model.fused = self.fused.is_some();
        Ok(self)
    }

    /// The step's kernels.
    pub fn step_kernels(&self) -> StepKernels {
        match self.fused {
            Some(_) => StepKernels::Fused,
            None => StepKernels::Split,
        }
    }

    /// The fused backward pass of the MLP tower, from dx_last (in the scratch) to the embedding
    /// gradients: layer L through ncf_bias_relu_dropout_bwd (its input is the final layer's
    /// FP32 dx), then per layer k the weight gradient (cuBLAS) and `ncf_linear_bwd` into layer
    /// k-1's dz with its bias gradient; layer 0's input gradient as the split step's.
    pub(crate) fn mlp_backward_fused(&self, n: usize, epoch: u32) -> Result<(), CudaError> {
        let (md, fb) = match &self.fused {
            Some(fb) => (&self.model, fb),
            None => return self.mlp_backward_split(n, epoch),
        };
        let mc = &md.cfg;
        if !mc.kind.has_mlp() {
            return Ok(());
        }
        let d = md.dev.as_ref();
        let (_, scale) = dropout_threshold(mc.dropout);
        let dz = |k: usize| match k % 2 {
            0 => md.batch.dz.ptr(),
            _ => fb.dz_odd.ptr(),
        };
        let top = mc.n_linear() - 1;
        self.relu_dropout_backward(top, n, epoch, dz(top))?;
        for k in (0..=top).rev() {
            if k == 0 && md.factored.is_some() {
                // Layer 0's weight gradient and the embedding gradients, per distinct row
                // (from the model's dz: layer 0 is even).
                self.sort_batch(n)?;
                return self.factored_backward(n);
            }
            let (fin, fout) = (mc.layers[k], mc.layers[k + 1]);
            let x = match k {
                0 => md.batch.x0.ptr(),
                _ => md.batch.acts[k - 1].ptr(),
            };
            self.weight_gradient(k, n, x, dz(k))?;
            if k == 0 {
                let what = "input gradient mlp.0";
                d.gemm(&GemmCall {
                    what,
                    ta: false,
                    tb: false,
                    m: fin,
                    n,
                    k: fout,
                    a: md.wp(0).addr(),
                    lda: fin,
                    b: dz(0).addr(),
                    ldb: fout,
                    c: md.batch.scratch.addr(),
                    ldc: fin,
                    beta: 0.0,
                })?;
                break;
            }
            let (grid, rows) = md.linear_grid(n, fin);
            let kern = LinearBwd {
                dzn: dz(k),
                wn: md.wp(k),
                a: md.batch.acts[k - 1].ptr(),
                dz: dz(k - 1),
                batch: n as u32,
                width: fin as u32,
                fnext: fout as u32,
                scale,
                partials: fb.partials.ptr(),
            };
            let sizes = format!("mlp.{}: batch {n}, {fout} -> {fin}", k - 1);
            d.launch(&kern, grid, 0, &sizes)?;
            let sum = SumBlocks {
                partials: fb.partials.ptr(),
                blocks: rows,
                width: fin as u32,
                out: self.gp(&format!("mlp.{}.bias", k - 1)),
            };
            d.launch(
                &sum,
                d.grid_for(fin as u64),
                0,
                &format!("mlp.{}: bias, width {fin}", k - 1),
            )?;
        }
        if self.det.is_some() {
            return self.reduce_mlp_embeddings(n);
        }
        let e = mc.mlp_embed();
        let k = Scatter {
            users: md.batch.users.ptr(),
            items: md.batch.items.ptr(),
            batch: n as u32,
            e: e as u32,
            dx0: md.batch.scratch.ptr(),
            g_user: self.gp("mlp_user_embed.weight"),
            g_item: self.gp("mlp_item_embed.weight"),
        };
        let tot = (n * 2 * e) as u64;
        d.launch(&k, d.grid_for(tot), 0, &format!("batch {n}, embed {e}"))
    }

    /// The fused step's optimiser: `ncf_adam_wide` with the per-step scalars uploaded to its
    /// buffer; None when the flat vector does not suit it (not a multiple of 4 floats), so the
    /// caller runs `ncf_adam`.
    pub(crate) fn adam_wide(
        &self,
        step_size: f32,
        bc2_sqrt: f32,
        inv_scale: f32,
        g: Ptr<f32>,
        found_inf: Ptr<i32>,
    ) -> Result<Option<()>, CudaError> {
        let Some(fb) = &self.fused else {
            return Ok(None);
        };
        let n = self.model.layout.total as u64;
        if !n.is_multiple_of(4) {
            return Ok(None);
        }
        let d = self.device();
        d.upload_into(
            &[step_size, bc2_sqrt, inv_scale],
            &fb.hyper,
            "Adam's per-step scalars",
        )?;
        let c = &self.cfg;
        let n4 = n / 4;
        let k = AdamWide {
            p: self.model.params.ptr(),
            g,
            m: self.m.ptr(),
            v: self.v.ptr(),
            n4,
            lr: c.lr,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            l2: c.l2,
            hyper: fb.hyper.ptr(),
            found_inf,
            sgd: (c.optimizer == Optimizer::Sgd) as i32,
        };
        let grid = adam_grid(n4, d.sm_count());
        d.launch(&k, grid, 0, &format!("{n} parameters (wide)"))?;
        Ok(Some(()))
    }
}

/// Blocks of `ncf_adam_wide` for `n4` quads on `sms` multiprocessors: whole waves of
/// [`ADAM_BLOCKS_PER_SM`] per SM, fewer only when the vector needs less than one wave.
pub fn adam_grid(n4: u64, sms: u32) -> u32 {
    let wave = sms.max(1) as u64 * ADAM_BLOCKS_PER_SM as u64;
    let needed = n4.div_ceil(256 * ADAM_QUADS).max(1);
    needed.min(wave) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adams_grid_is_whole_waves_unless_the_vector_is_smaller() {
        // NVIDIA's ml-20m model: 31.7M parameters on an H200 (132 SMs): one wave of 264 blocks.
        assert_eq!(adam_grid(31_700_000 / 4, 132), 132 * 2);
        assert_eq!(adam_grid(1, 132), 1);
        assert_eq!(adam_grid(1025, 132), 2);
        assert_eq!(adam_grid(1024 * 5000, 0), 2);
    }
}
