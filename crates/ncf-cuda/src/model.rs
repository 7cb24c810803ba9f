//! [`DeviceModel`]: a NeuMF model on a device and everything scoring needs: the FP32
//! parameters in the flat [`Layout`], their low-precision copy (FP16/BF16), the per-batch
//! buffers of the forward pass, the forward pass itself (per sample or with the first layer
//! factored) and the final layer's logits. Training state (gradients, Adam moments, the sampler's
//! buffers) is the trainer's ([`crate::trainer`]); [`crate::CudaScorer`] is this alone.

use crate::device::{dropout_threshold, ActElem, Buf, Device, DeviceExt, GemmCall, Ptr};
use crate::first_layer::FactoredBuffers;
use crate::kdef::{BiasReluDropoutFwd, Cast, Final, Gather};
use crate::kernels::Act;
use crate::CudaError;
use ncf_core::model::{Layout, Model, ModelConfig};

/// Largest input width of the final layer (`NCF_FINAL_MAX` in ncf.cu).
pub const FINAL_MAX: usize = 512;
/// Threads per block of the row kernels; a row of an MLP layer must fit one block (16 units each).
pub const ROW_BLOCK: u32 = 256;

/// Per-batch device buffers, sized for `cap` samples.
pub struct Batch {
    pub(crate) cap: usize,
    pub(crate) users: Buf<u32>,
    pub(crate) items: Buf<u32>,
    /// Labels when training, logits when scoring.
    pub(crate) labels: Buf<f32>,
    pub(crate) sample: Buf<u32>,
    /// MLP input [cap, layers[0]] of the activation type.
    pub(crate) x0: Buf<ActElem>,
    /// Output of each MLP layer [cap, layers[k+1]].
    pub(crate) acts: Vec<Buf<ActElem>>,
    /// FP32 pre-activations (forward) and activation gradients (backward) [cap, max width].
    pub(crate) scratch: Buf<f32>,
    /// Pre-activation gradients of the activation type [cap, max layer width].
    pub(crate) dz: Buf<ActElem>,
}

impl Batch {
    fn new(dev: &dyn Device, cfg: &ModelConfig, cap: usize) -> Result<Batch, CudaError> {
        let mlp = cfg.kind.has_mlp();
        let widths: &[usize] = if mlp { &cfg.layers } else { &[] };
        let max_w = widths.iter().copied().max().unwrap_or(1);
        let max_out = widths.iter().skip(1).copied().max().unwrap_or(1);
        let mut acts = vec![];
        for (k, w) in widths.iter().skip(1).enumerate() {
            acts.push(dev.alloc_act(cap * w, &format!("activations of mlp.{k} [{cap} x {w}]"))?);
        }
        Ok(Batch {
            cap,
            users: dev.alloc(cap, "batch users")?,
            items: dev.alloc(cap, "batch items")?,
            labels: dev.alloc(cap, "batch labels")?,
            sample: dev.alloc(cap, "batch sample indices")?,
            x0: dev.alloc_act(if mlp { cap * cfg.layers[0] } else { 0 }, "MLP input")?,
            acts,
            scratch: dev.alloc(if mlp { cap * max_w } else { 0 }, "FP32 scratch")?,
            dz: dev.alloc_act(
                if mlp { cap * max_out } else { 0 },
                "pre-activation gradients",
            )?,
        })
    }
}

/// Dropout of a training forward pass: the epoch and the seed its masks are drawn from.
#[derive(Clone, Copy, Debug)]
pub struct Dropout {
    pub epoch: u32,
    pub seed: u64,
}

/// A model on a device, with the buffers of batches of up to `batch.cap` samples.
pub struct DeviceModel {
    pub(crate) dev: Box<dyn Device>,
    pub(crate) cfg: ModelConfig,
    pub(crate) layout: Layout,
    pub(crate) params: Buf<f32>,
    /// Low-precision copy of the MLP weights (FP16/BF16), covering `mlp_region` of the layout.
    wlow: Buf<ActElem>,
    mlp_region: std::ops::Range<usize>,
    pub(crate) batch: Batch,
    /// The factored first layer's buffers ([`crate::first_layer`]); None: per sample.
    pub(crate) factored: Option<FactoredBuffers>,
    /// The MLP layers' forward as the fused step's kernels ([`crate::fused`]).
    pub(crate) fused: bool,
    /// The fused step's per-step arguments in device memory (the trainer's; null: the
    /// kernels' scalar arguments hold them).
    pub(crate) step_args: Ptr<u32>,
}

impl DeviceModel {
    /// Upload `model` to `dev`, with batch buffers for `cap` samples.
    pub fn new(dev: Box<dyn Device>, model: &Model, cap: usize) -> Result<Self, CudaError> {
        let mc = model.config.clone();
        mc.validate()
            .map_err(|e| CudaError::Invalid(e.to_string()))?;
        check_model(model, &mc)?;
        let layout = model.layout.clone();
        let params = dev.upload(&model.params, "parameters")?;
        let mlp_region = mlp_region(&layout, &mc);
        let wlow = dev.alloc_act(
            if dev.act() == Act::F32 {
                0
            } else {
                mlp_region.len()
            },
            "low-precision MLP weights",
        )?;
        let batch = Batch::new(dev.as_ref(), &mc, cap)?;
        Ok(DeviceModel {
            dev,
            cfg: mc,
            layout,
            params,
            wlow,
            mlp_region,
            batch,
            factored: None,
            fused: false,
            step_args: Ptr::null(),
        })
    }

    /// The device it is on.
    pub fn device(&self) -> &dyn Device {
        self.dev.as_ref()
    }

    /// Pointer to the FP32 tensor `name`.
    pub(crate) fn pp(&self, name: &str) -> Ptr<f32> {
        self.params.at(self.layout.range(name).start)
    }

    /// Weight of mlp.k as a GEMM operand: the FP32 master or its low-precision copy.
    pub(crate) fn wp(&self, k: usize) -> Ptr<ActElem> {
        let name = format!("mlp.{k}.weight");
        if self.dev.act() == Act::F32 {
            self.pp(&name).byte_add(0)
        } else {
            let rel = self.layout.range(&name).start - self.mlp_region.start;
            self.wlow.ptr().byte_add(rel * self.dev.act().bytes())
        }
    }

    /// The current parameters.
    pub fn params_host(&self) -> Result<Vec<f32>, CudaError> {
        self.dev
            .download(&self.params, self.layout.total, "parameters")
    }

    /// The model as a host [`Model`].
    pub fn to_model(&self) -> Result<Model, CudaError> {
        Ok(Model {
            config: self.cfg.clone(),
            layout: self.layout.clone(),
            params: self.params_host()?,
        })
    }

    /// Forward pass of the MLP tower on the first `n` batch rows (users and items already
    /// there); dropout when training.
    pub fn mlp_forward(&self, n: usize, dropout: Option<Dropout>) -> Result<(), CudaError> {
        let mc = &self.cfg;
        if !mc.kind.has_mlp() {
            return Ok(());
        }
        let d = self.dev.as_ref();
        if d.act() != Act::F32 {
            let len = self.mlp_region.len() as u64;
            let k = Cast {
                src: self.params.at(self.mlp_region.start),
                dst: self.wlow.ptr(),
                n: len,
            };
            d.launch(&k, d.grid_for(len), 0, &format!("{len} MLP weights"))?;
        }
        if self.factored.is_none() {
            let e = mc.mlp_embed();
            let k = Gather {
                users: self.batch.users.ptr(),
                items: self.batch.items.ptr(),
                batch: n as u32,
                e: e as u32,
                emb_user: self.pp("mlp_user_embed.weight"),
                emb_item: self.pp("mlp_item_embed.weight"),
                x0: self.batch.x0.ptr(),
            };
            let tot = (n * 2 * e) as u64;
            d.launch(&k, d.grid_for(tot), 0, &format!("batch {n}, embed {e}"))?;
        }
        let (thr, scale) = match dropout {
            Some(_) => dropout_threshold(mc.dropout),
            None => (0, 1.0),
        };
        let seed = dropout.map_or(0, |d| d.seed);
        for k in 0..mc.n_linear() {
            let (fin, fout) = (mc.layers[k], mc.layers[k + 1]);
            let x = if k == 0 {
                self.batch.x0.ptr()
            } else {
                self.batch.acts[k - 1].ptr()
            };
            let z = self.batch.scratch.ptr();
            if self.fused && !(k == 0 && self.factored.is_some()) {
                self.linear_forward(k, n, x, dropout)?;
                continue;
            }
            if k == 0 && self.factored.is_some() {
                self.factored_forward(n)?;
            } else {
                let what = format!("forward mlp.{k}");
                d.gemm(&GemmCall {
                    what: &what,
                    ta: true,
                    tb: false,
                    m: fout,
                    n,
                    k: fin,
                    a: self.wp(k).addr(),
                    lda: fin,
                    b: x.addr(),
                    ldb: fin,
                    c: z.addr(),
                    ldc: fout,
                    beta: 0.0,
                })?;
            }
            let kern = BiasReluDropoutFwd {
                z,
                bias: self.pp(&format!("mlp.{k}.bias")),
                a: self.batch.acts[k].ptr(),
                sample: self.batch.sample.ptr(),
                batch: n as u32,
                width: fout as u32,
                layer: k as u32,
                epoch: dropout.map_or(0, |d| d.epoch),
                k0: seed as u32,
                k1: (seed >> 32) as u32,
                thr,
                scale,
                step: self.step_args,
            };
            self.row_launch(
                &kern,
                n,
                fout,
                0,
                &format!("mlp.{k}: batch {n}, width {fout}"),
            )?;
        }
        Ok(())
    }

    /// Launch a row kernel (one block row per sample, 16 units per thread group).
    pub(crate) fn row_launch<K: crate::kdef::Kernel>(
        &self,
        k: &K,
        n: usize,
        width: usize,
        smem: u32,
        sizes: &str,
    ) -> Result<(), CudaError> {
        self.dev.launch(k, self.row_grid(n, width), smem, sizes)
    }

    /// The blocks a row kernel of `n` rows of `width` units is launched on: 12 per SM at most
    /// (whole waves at 2, 3, 4 or 6 resident blocks, the kernels' register bounds, so grid-stride
    /// loops end together).
    pub(crate) fn row_grid(&self, n: usize, width: usize) -> u32 {
        let rows_per_block = (ROW_BLOCK as usize / width.div_ceil(16).max(1)).max(1);
        (n.div_ceil(rows_per_block) as u64).clamp(1, self.max_row_grid() as u64) as u32
    }

    /// The most blocks [`Self::row_grid`] gives.
    pub(crate) fn max_row_grid(&self) -> u32 {
        self.dev.sm_count() * 12
    }

    /// The blocks the final layer's kernel runs on for `n` samples (8 per block, 16 per SM at
    /// most).
    pub(crate) fn final_grid(&self, n: usize) -> u32 {
        (n.div_ceil(8) as u64).clamp(1, self.max_final_grid() as u64) as u32
    }

    /// The most blocks [`Self::final_grid`] gives.
    pub(crate) fn max_final_grid(&self) -> u32 {
        self.dev.sm_count() * 16
    }

    /// The final-layer kernel on the first `n` rows; `train` = Some(gradient pointers, gradient
    /// scale) computes the loss and gradients (dx_last into the scratch), None the logits into
    /// `batch.labels`.
    pub(crate) fn final_layer(&self, n: usize, train: Option<FinalGrads>) -> Result<(), CudaError> {
        let mc = &self.cfg;
        let f = mc.gmf_factors();
        let lout = mc.mlp_out();
        let (mfu, mfi) = if f > 0 {
            (
                self.pp("mf_user_embed.weight"),
                self.pp("mf_item_embed.weight"),
            )
        } else {
            (Ptr::null(), Ptr::null())
        };
        let x_last = match self.batch.acts.last() {
            Some(a) if lout > 0 => a.ptr(),
            _ => Ptr::null(),
        };
        let g = train.unwrap_or_default();
        let k = Final {
            users: self.batch.users.ptr(),
            items: self.batch.items.ptr(),
            labels: self.batch.labels.ptr(),
            batch: n as u32,
            f: f as u32,
            mf_user: mfu,
            mf_item: mfi,
            x_last,
            lout: lout as u32,
            fw: self.pp("final.weight"),
            fb: self.pp("final.bias"),
            train: train.is_some() as i32,
            gscale: g.scale,
            logits: self.batch.labels.ptr(),
            loss_sum: g.loss_sum,
            g_mf_user: if f > 0 { g.mf_user } else { Ptr::null() },
            g_mf_item: if f > 0 { g.mf_item } else { Ptr::null() },
            g_fw: g.fw,
            g_fb: g.fb,
            dx_last: if lout > 0 && train.is_some() && g.dz_last.addr() == 0 {
                self.batch.scratch.ptr()
            } else {
                Ptr::null()
            },
            partials: g.partials,
            gu_rows: if f > 0 { g.gu_rows } else { Ptr::null() },
            gi_rows: if f > 0 { g.gi_rows } else { Ptr::null() },
            dz_last: if lout > 0 { g.dz_last } else { Ptr::null() },
            mask_scale: g.mask_scale,
        };
        let grid = self.final_grid(n);
        let sizes = format!(
            "batch {n}, gmf {f}, mlp out {lout}, train {}",
            train.is_some()
        );
        // Deterministic: each of the block's 8 warps sums into its own row of shared memory.
        let smem = match g.partials.addr() {
            0 => 0,
            _ => 8 * (f + lout + 2) as u32 * 4,
        };
        self.dev.launch(&k, grid, smem, &sizes)
    }

    /// `out[k]` = the model's logit of (users[k], items[k]), in batches of the buffers' size.
    pub fn score(&self, users: &[u32], items: &[u32], out: &mut [f32]) -> Result<(), CudaError> {
        ncf_core::train::backend::check_ids(&self.cfg, users, items)
            .and_then(|_| ncf_core::train::backend::check_out_len(users.len(), out))
            .map_err(|e| CudaError::Invalid(format!("score: {e}")))?;
        let cap = self.batch.cap;
        let mut start = 0;
        while start < users.len() {
            let n = (users.len() - start).min(cap);
            let (u, i) = (&users[start..start + n], &items[start..start + n]);
            self.dev.upload_into(u, &self.batch.users, "score users")?;
            self.dev.upload_into(i, &self.batch.items, "score items")?;
            self.mlp_forward(n, None)?;
            self.final_layer(n, None)?;
            let logits = self.dev.download(&self.batch.labels, n, "scores")?;
            out[start..start + n].copy_from_slice(&logits);
            start += n;
        }
        Ok(())
    }
}

/// Where the training final layer adds its gradients and loss, and the gradient scale.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FinalGrads {
    pub scale: f32,
    pub loss_sum: Ptr<f64>,
    pub mf_user: Ptr<f32>,
    pub mf_item: Ptr<f32>,
    pub fw: Ptr<f32>,
    pub fb: Ptr<f32>,
    /// Deterministic reductions: the blocks' partial sums and the per-sample GMF gradient rows
    /// (null: float atomics).
    pub partials: Ptr<f32>,
    pub gu_rows: Ptr<f32>,
    pub gi_rows: Ptr<f32>,
    /// The fused step: the top MLP layer's dz (masked by its activation > 0, times
    /// `mask_scale`) instead of the FP32 dx in the scratch (null: the dx).
    pub dz_last: Ptr<ActElem>,
    pub mask_scale: f32,
}

impl Default for FinalGrads {
    fn default() -> Self {
        FinalGrads {
            scale: 0.0,
            loss_sum: Ptr::null(),
            mf_user: Ptr::null(),
            mf_item: Ptr::null(),
            fw: Ptr::null(),
            fb: Ptr::null(),
            partials: Ptr::null(),
            gu_rows: Ptr::null(),
            gi_rows: Ptr::null(),
            dz_last: Ptr::null(),
            mask_scale: 1.0,
        }
    }
}

/// Refuse a model the CUDA kernels cannot compute.
fn check_model(model: &Model, mc: &ModelConfig) -> Result<(), CudaError> {
    if model.params.len() != model.layout.total || model.layout != mc.layout() {
        return Err(CudaError::Invalid(format!(
            "model has {} parameters, its configuration's layout needs {}",
            model.params.len(),
            mc.layout().total
        )));
    }
    if mc.final_in() > FINAL_MAX {
        return Err(CudaError::Invalid(format!(
            "the final layer has {} inputs; the CUDA backend supports at most {FINAL_MAX}",
            mc.final_in()
        )));
    }
    if mc.kind.has_mlp()
        && mc
            .layers
            .iter()
            .any(|&w| w.div_ceil(16) > ROW_BLOCK as usize)
    {
        return Err(CudaError::Invalid(format!(
            "MLP layers wider than {} are not supported",
            ROW_BLOCK * 16
        )));
    }
    Ok(())
}

/// The span of the layout holding the MLP layers' weights and biases (empty without an MLP).
fn mlp_region(layout: &Layout, mc: &ModelConfig) -> std::ops::Range<usize> {
    if mc.kind.has_mlp() {
        let first = layout.range("mlp.0.weight").start;
        let last = layout.range(&format!("mlp.{}.bias", mc.n_linear() - 1)).end;
        first..last
    } else {
        0..0
    }
}
