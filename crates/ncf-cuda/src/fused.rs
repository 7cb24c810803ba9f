//! The fused step ([`StepKernels::Fused`], docs/CUDA.md "The fused step"): each MLP layer's
//! GEMM with its epilogue in one kernel (`kernels/fused.cuh`: bias, ReLU and dropout in the
//! forward; the `a > 0` mask and the bias gradient's fixed-order partials in the input-gradient
//! GEMM of the layer above), and Adam at its bandwidth floor (`ncf_adam_wide`: several float4
//! quads per thread, a grid of whole waves, its per-step scalars in a device buffer). The FP32
//! pre-activations and activation gradients of the split step never go to memory: `ncf_final`
//! writes the top layer's masked dz in the activation type (its bias gradient: `ncf_col_sums`).
//! The weight gradients and layer 0's input gradient stay cuBLAS GEMMs as in the split step
//! ([`StepKernels::Split`], the previous kernels). The step's per-step values are in a
//! device buffer ([`STEP_ARGS`]), so queued steps are captured once as a graph and replayed
//! (`crate::step`).

use crate::device::{dropout_threshold, ActElem, Buf, DeviceExt, GemmCall, Ptr};
use crate::kdef::{AdamWide, ColSums, LinearBwd, LinearFwd, StashLoss, SumBlocks};
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
    /// The per-step arguments the kernels read ([`STEP_ARGS`] words, `NCF_STEP_*` in ncf.cu):
    /// uploaded before each step, so that a captured step replays with the next step's values.
    args: Buf<u32>,
}

/// Words of the per-step arguments: epoch, first position (lo, hi), count, the permutation's
/// keys and half_bits, the loss slot, Adam's step_size, bc2_sqrt and inv_scale (float bits).
pub const STEP_ARGS: usize = 16;
const ARG_EPOCH: usize = 0;
const ARG_P0: usize = 1;
const ARG_COUNT: usize = 3;
const ARG_KEYS: usize = 4;
const ARG_HALF_BITS: usize = 8;
const ARG_SLOT: usize = 9;
const ARG_ADAM: usize = 12;

/// A step captured as a graph (`CudaTrainer`'s): its batch size and the device's graph number.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StepGraph {
    pub(crate) n: u64,
    pub(crate) id: usize,
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
            step: self.step_args,
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
                    args: d.alloc(STEP_ARGS, "per-step arguments")?,
                })
            }
        };
        self.model.fused = self.fused.is_some();
        self.model.step_args = match &self.fused {
            Some(fb) => fb.args.ptr(),
            None => Ptr::null(),
        };
        self.graph = None;
        Ok(self)
    }

    /// The batch's words of the per-step arguments: epoch, positions, the permutation.
    fn batch_words(&mut self, epoch: u32, positions: &std::ops::Range<u64>) -> [u32; STEP_ARGS] {
        let perm = self.permutation(epoch);
        let mut w = [0u32; STEP_ARGS];
        w[ARG_EPOCH] = epoch;
        w[ARG_P0] = positions.start as u32;
        w[ARG_P0 + 1] = (positions.start >> 32) as u32;
        w[ARG_COUNT] = positions.end.saturating_sub(positions.start) as u32;
        w[ARG_KEYS..ARG_KEYS + 4].copy_from_slice(&perm.keys());
        w[ARG_HALF_BITS] = perm.half_bits();
        w
    }

    /// Upload the per-step arguments of a step at `positions` of `epoch` (this rank's share)
    /// with Adam's count `t`, its gradient unscaling and the loss slot of a queued step.
    pub(crate) fn write_args(
        &mut self,
        epoch: u32,
        positions: &std::ops::Range<u64>,
        t: u64,
        inv_scale: f32,
        slot: usize,
    ) -> Result<(), CudaError> {
        if self.fused.is_none() {
            return Ok(());
        }
        let mut w = self.batch_words(epoch, positions);
        let (step_size, bc2_sqrt) = self.adam_scalars(t);
        w[ARG_SLOT] = slot as u32;
        w[ARG_ADAM] = step_size.to_bits();
        w[ARG_ADAM + 1] = bc2_sqrt.to_bits();
        w[ARG_ADAM + 2] = inv_scale.to_bits();
        if let Some(fb) = &self.fused {
            self.device()
                .upload_into(&w, &fb.args, "the step's arguments")?;
        }
        Ok(())
    }

    /// Upload only the batch's words of the arguments (a batch made outside a step).
    pub(crate) fn write_batch_args(
        &mut self,
        epoch: u32,
        positions: &std::ops::Range<u64>,
    ) -> Result<(), CudaError> {
        if self.fused.is_none() {
            return Ok(());
        }
        let w = self.batch_words(epoch, positions);
        if let Some(fb) = &self.fused {
            let bytes: Vec<u8> = w[..ARG_SLOT].iter().flat_map(|x| x.to_le_bytes()).collect();
            self.device()
                .upload_raw(fb.args.addr(), &bytes, "the batch's arguments")?;
        }
        Ok(())
    }

    /// The step's graph to replay, if it may be captured and is: queued steps of the fused
    /// step on one device without FP16's host decisions, profiling or per-launch
    /// synchronisation (and not turned off by `NCF_CUDA_GRAPH=0`).
    pub(crate) fn may_capture(&self) -> bool {
        let d = self.device();
        self.fused.is_some()
            && self.ranks.is_none()
            && self.cfg.precision != ncf_core::train::Precision::Fp16
            && !d.profile().enabled()
            && !d.profile().sync_each.get()
            && std::env::var("NCF_CUDA_GRAPH").map_or(true, |v| v != "0")
    }

    /// The steps replayed from a captured graph so far.
    pub fn graph_replays(&self) -> u64 {
        self.replays
    }

    /// The step's kernels.
    pub fn step_kernels(&self) -> StepKernels {
        match self.fused {
            Some(_) => StepKernels::Fused,
            None => StepKernels::Split,
        }
    }

    /// The fused step's buffer of MLP layer `k`'s dz (the model's for even layers).
    pub(crate) fn dz_buf(&self, k: usize) -> &Buf<ActElem> {
        match (&self.fused, k % 2) {
            (Some(fb), 1) => &fb.dz_odd,
            _ => &self.model.batch.dz,
        }
    }

    fn dz_of(&self, k: usize) -> Ptr<ActElem> {
        self.dz_buf(k).ptr()
    }

    /// Where `ncf_final` writes the top MLP layer's masked dz (the fused step), else null (it
    /// writes the FP32 dx into the scratch).
    pub(crate) fn fused_dz_last(&self) -> Ptr<ActElem> {
        let mc = &self.model.cfg;
        match (&self.fused, mc.kind.has_mlp()) {
            (Some(_), true) => self.dz_of(mc.n_linear() - 1),
            _ => Ptr::null(),
        }
    }

    /// The fused backward pass of the MLP tower, from the top layer's dz (written by
    /// `ncf_final`; its bias gradient by `ncf_col_sums`) to the embedding gradients: per layer
    /// k the weight gradient (cuBLAS) and `ncf_linear_bwd` into layer k-1's dz with its bias
    /// gradient; layer 0's input gradient as the split step's.
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
        let _ = epoch; // the masks are the stored activations' signs: no Philox here
        let (_, scale) = dropout_threshold(mc.dropout);
        let dz = |k: usize| self.dz_of(k);
        let top = mc.n_linear() - 1;
        let width = mc.layers[top + 1];
        let rows = md.row_grid(n, width);
        let sums = ColSums {
            x: dz(top),
            batch: n as u32,
            width: width as u32,
            partials: fb.partials.ptr(),
        };
        d.launch(
            &sums,
            rows,
            0,
            &format!("mlp.{top}: bias, batch {n}, width {width}"),
        )?;
        let sum = SumBlocks {
            partials: fb.partials.ptr(),
            blocks: rows,
            width: width as u32,
            out: self.gp(&format!("mlp.{top}.bias")),
        };
        d.launch(
            &sum,
            d.grid_for(width as u64),
            0,
            &format!("mlp.{top}: bias, width {width}"),
        )?;
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
        self.mlp_embedding_grads(n)
    }

    /// The fused step's optimiser: `ncf_adam_wide` with the per-step scalars in the step's
    /// arguments (written here when `upload`, else already by [`Self::write_args`]); None when
    /// the flat vector does not suit it (not a multiple of 4 floats), so the caller runs
    /// `ncf_adam`.
    pub(crate) fn adam_wide(
        &self,
        scalars: [f32; 3],
        upload: bool,
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
        let hyper: Ptr<f32> = fb.args.ptr().byte_add(ARG_ADAM * 4);
        if upload {
            let bytes: Vec<u8> = scalars.iter().flat_map(|x| x.to_le_bytes()).collect();
            d.upload_raw(hyper.addr(), &bytes, "Adam's per-step scalars")?;
        }
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
            hyper,
            found_inf,
            sgd: (c.optimizer == Optimizer::Sgd) as i32,
        };
        let grid = adam_grid(n4, d.sm_count());
        d.launch(&k, grid, 0, &format!("{n} parameters (wide)"))?;
        Ok(Some(()))
    }

    /// A queued step's loss into its slot (read from the step's arguments).
    pub(crate) fn stash_loss(&self) -> Result<(), CudaError> {
        let Some(fb) = &self.fused else {
            return Err(CudaError::Invalid(
                "stash_loss needs the fused step's arguments".into(),
            ));
        };
        let k = StashLoss {
            loss: self.loss_sum.ptr(),
            slots: self.queued_loss.ptr(),
            n_slots: self.queued_loss.len() as u32,
            step: fb.args.ptr(),
        };
        self.device().launch(&k, 1, 0, "the step's loss")
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

    /// The argument words' positions are the kernels' (`#define NCF_STEP_* N` in ncf.cu).
    #[test]
    fn the_argument_words_match_the_kernels_defines() {
        let src = crate::kernels::SOURCES
            .iter()
            .find(|(n, _)| *n == "ncf.cu")
            .map(|(_, s)| *s)
            .unwrap();
        let define = |name: &str| -> usize {
            let line = src
                .lines()
                .find(|l| l.starts_with(&format!("#define {name} ")))
                .unwrap_or_else(|| panic!("no #define {name} in ncf.cu"));
            line.split_whitespace().nth(2).unwrap().parse().unwrap()
        };
        assert_eq!(define("NCF_STEP_EPOCH"), ARG_EPOCH);
        assert_eq!(define("NCF_STEP_P0"), ARG_P0);
        assert_eq!(define("NCF_STEP_KEYS"), ARG_KEYS);
        assert_eq!(define("NCF_STEP_HALF_BITS"), ARG_HALF_BITS);
        assert_eq!(define("NCF_STEP_SLOT"), ARG_SLOT);
        assert_eq!(define("NCF_STEP_ADAM"), ARG_ADAM);
        const { assert!(ARG_ADAM + 3 <= STEP_ARGS && ARG_COUNT < ARG_KEYS) };
    }

    #[test]
    fn adams_grid_is_whole_waves_unless_the_vector_is_smaller() {
        // NVIDIA's ml-20m model: 31.7M parameters on an H200 (132 SMs): one wave of 264 blocks.
        assert_eq!(adam_grid(31_700_000 / 4, 132), 132 * 2);
        assert_eq!(adam_grid(1, 132), 1);
        assert_eq!(adam_grid(1025, 132), 2);
        assert_eq!(adam_grid(1024 * 5000, 0), 2);
    }
}
