//! [`CudaTrainer`]: NeuMF training and scoring on one GPU. Parameters, gradients and Adam moments
//! are single device buffers in the flat [`Layout`]; each step generates its samples on the device
//! from (epoch, positions), runs the MLP with cuBLAS and the fused kernels of `kernels/ncf.cu`, and
//! reads back only the loss and two flags.
//!
//! One file: the struct, its constructor and every phase of a step (sampling, forward, final
//! layer + BCE, backward, optimiser, NCCL all-reduce) with the [`Trainer`] impl that sequences
//! them share its private rank and permutation state (`ranks`, `reduced`, `perm`); the factored
//! first layer is in [`crate::first_layer`]. 1055 lines, no tests.

use crate::device::{dptr, dropout_threshold, Gpu, KArg};
use crate::kernels::Act;
use crate::nccl::ffi::Op;
use crate::CudaError;
use cudarc::driver::CudaSlice;
use ncf_core::model::{Layout, Model, ModelConfig};
use ncf_core::sampling::rng::{stream, Permutation, Rng};
use ncf_core::sampling::sampler::{NegativeMode, UserItems};
use ncf_core::train::checkpoint::OptimizerState;
use ncf_core::train::{Optimizer, Precision, Scorer, StepStats, TrainConfig, Trainer};

/// FP16 dynamic loss scaling, as torch.cuda.amp.GradScaler's defaults.
pub const SCALE_INIT: f32 = 65536.0;
pub const SCALE_GROWTH_INTERVAL: u32 = 2000;

/// Largest input width of the final layer (`NCF_FINAL_MAX` in ncf.cu).
const FINAL_MAX: usize = 512;
/// Threads per block of the row kernels; a row of an MLP layer must fit one block (16 units each).
const ROW_BLOCK: u32 = 256;

/// Per-batch device buffers, sized for `cap` samples.
pub struct Batch {
    pub cap: usize,
    pub users: CudaSlice<u32>,
    pub items: CudaSlice<u32>,
    /// Labels when training, logits when scoring.
    pub labels: CudaSlice<f32>,
    pub sample: CudaSlice<u32>,
    /// MLP input [cap, layers[0]] of the activation type.
    pub x0: CudaSlice<u8>,
    /// Output of each MLP layer [cap, layers[k+1]].
    pub acts: Vec<CudaSlice<u8>>,
    /// FP32 pre-activations (forward) and activation gradients (backward) [cap, max width].
    pub scratch: CudaSlice<f32>,
    /// Pre-activation gradients of the activation type [cap, max layer width].
    pub dz: CudaSlice<u8>,
}

impl Batch {
    pub fn new(gpu: &Gpu, cfg: &ModelConfig, cap: usize) -> Result<Batch, CudaError> {
        let ab = gpu.act.bytes();
        let mlp = cfg.kind.has_mlp();
        let widths: &[usize] = if mlp { &cfg.layers } else { &[] };
        let max_w = widths.iter().copied().max().unwrap_or(1);
        let max_out = widths.iter().skip(1).copied().max().unwrap_or(1);
        let mut acts = vec![];
        for (k, w) in widths.iter().skip(1).enumerate() {
            acts.push(gpu.alloc::<u8>(
                cap * w * ab,
                &format!("activations of mlp.{k} [{cap} x {w}]"),
            )?);
        }
        Ok(Batch {
            cap,
            users: gpu.alloc(cap, "batch users")?,
            items: gpu.alloc(cap, "batch items")?,
            labels: gpu.alloc(cap, "batch labels")?,
            sample: gpu.alloc(cap, "batch sample indices")?,
            x0: gpu.alloc(if mlp { cap * cfg.layers[0] * ab } else { 1 }, "MLP input")?,
            acts,
            scratch: gpu.alloc(if mlp { cap * max_w } else { 1 }, "FP32 scratch")?,
            dz: gpu.alloc(
                if mlp { cap * max_out * ab } else { 1 },
                "pre-activation gradients",
            )?,
        })
    }
}

/// With NCCL ranks: where the step's all-reduces land (out of place: the local gradients,
/// loss and sampler flag stay in their buffers), and where the initial broadcast lands before it
/// is copied to the parameters. Adam reads the gradients from here.
pub struct Reduced {
    pub grads: CudaSlice<f32>,
    pub loss: CudaSlice<f64>,
    pub sample_err: CudaSlice<u64>,
}

/// NeuMF on one GPU: the [`Trainer`] of the CUDA backend.
pub struct CudaTrainer {
    /// The other ranks of a data-parallel run (NCCL); None on one GPU without `--nccl`. First,
    /// so it is dropped first: a communicator dropped live (an error path) is aborted, ending
    /// collectives that a dead peer would leave spinning, before the GPU's handles are destroyed
    /// (which synchronise). A normal end finalizes it first ([`Trainer::finish`]).
    ranks: Option<crate::nccl::Ranks>,
    /// The all-reduced buffers (with ranks only).
    reduced: Option<Reduced>,
    pub gpu: Gpu,
    pub cfg: TrainConfig,
    pub model_cfg: ModelConfig,
    pub layout: Layout,
    pub params: CudaSlice<f32>,
    pub grads: CudaSlice<f32>,
    pub m: CudaSlice<f32>,
    pub v: CudaSlice<f32>,
    /// Low-precision copy of the MLP weights (FP16/BF16), covering `mlp_region` of the layout.
    pub wlow: CudaSlice<u8>,
    pub mlp_region: std::ops::Range<usize>,
    pub batch: Batch,
    pub users: CudaSlice<u32>,
    pub items: CudaSlice<u32>,
    pub offsets: CudaSlice<u64>,
    pub pos_items: CudaSlice<u32>,
    pub loss_sum: CudaSlice<f64>,
    pub found_inf: CudaSlice<i32>,
    pub sample_err: CudaSlice<u64>,
    pub n_pos: u64,
    pub rng: Rng,
    pub adam_steps: u64,
    pub loss_scale: f32,
    pub clean_steps: u32,
    perm: Option<(u32, Permutation)>,
    /// The factored first layer's buffers ([`crate::first_layer`]); None: per sample.
    pub factored: Option<crate::first_layer::FactoredBuffers>,
}

impl CudaTrainer {
    /// Upload `model` and the train positives to device `ordinal`. `positives` is needed for exact
    /// negatives. The batch buffers are sized for `cfg.batch_size` samples.
    pub fn new(
        ordinal: usize,
        model: Model,
        cfg: &TrainConfig,
        train_users: &[u32],
        train_items: &[u32],
        positives: Option<&UserItems>,
    ) -> Result<Self, CudaError> {
        let mc = model.config.clone();
        mc.validate()
            .map_err(|e| CudaError::Invalid(e.to_string()))?;
        let cap = check_inputs(&model, &mc, cfg, train_users, train_items, positives)?;
        let gpu = Gpu::new(ordinal, cfg.precision)?;
        let layout = model.layout.clone();
        let p = layout.total;
        let params = gpu.upload(&model.params, "parameters")?;
        let grads = gpu.alloc::<f32>(p, "gradients")?;
        let m = gpu.alloc::<f32>(p, "Adam m")?;
        let v = gpu.alloc::<f32>(p, "Adam v")?;
        let mlp_region = mlp_region(&layout, &mc);
        let wlow = gpu.alloc::<u8>(
            if gpu.act == Act::F32 {
                1
            } else {
                mlp_region.len() * gpu.act.bytes()
            },
            "low-precision MLP weights",
        )?;
        let batch = Batch::new(&gpu, &mc, cap)?;
        let users = gpu.upload(train_users, "train users")?;
        let items = gpu.upload(train_items, "train items")?;
        let (offsets, pos_items) = upload_positives(&gpu, positives, &mc)?;
        let loss_sum = gpu.alloc::<f64>(1, "loss")?;
        let found_inf = gpu.alloc::<i32>(1, "inf flag")?;
        let sample_err = gpu.alloc::<u64>(1, "sampler flag")?;
        gpu.sync("uploading the model and data")?;
        Ok(CudaTrainer {
            gpu,
            cfg: cfg.clone(),
            model_cfg: mc,
            layout,
            params,
            grads,
            m,
            v,
            wlow,
            mlp_region,
            batch,
            users,
            items,
            offsets,
            pos_items,
            loss_sum,
            found_inf,
            sample_err,
            n_pos: train_users.len() as u64,
            rng: Rng::new(cfg.seed),
            adam_steps: 0,
            loss_scale: if cfg.precision == Precision::Fp16 {
                SCALE_INIT
            } else {
                1.0
            },
            clean_steps: 0,
            perm: None,
            factored: None,
            ranks: None,
            reduced: None,
        })
    }

    /// Train data-parallel with the ranks of `group` through NCCL (also with a group of one:
    /// the NCCL path forced). Rank 0's parameters are broadcast to every rank.
    /// The broadcast is out of place (into the all-reduce buffer, then copied), so that it shows
    /// on one rank too.
    pub fn with_ranks(mut self, group: ncf_core::dist::Group) -> Result<Self, CudaError> {
        let p = self.layout.total;
        self.reduced = Some(Reduced {
            grads: self.gpu.alloc::<f32>(p, "all-reduced gradients")?,
            loss: self.gpu.alloc::<f64>(1, "all-reduced loss")?,
            sample_err: self.gpu.alloc::<u64>(1, "all-reduced sampler flag")?,
        });
        let ranks = crate::nccl::Ranks::new(group, self.gpu.stream.clone())?;
        self.ranks = Some(ranks);
        let sent = match (&self.ranks, &mut self.reduced) {
            (Some(r), Some(red)) => r
                .broadcast(&self.params, &mut red.grads, "the initial parameters")
                .and_then(|_| r.wait(&self.gpu.stream, "broadcasting the initial parameters"))
                .and_then(|_| {
                    self.gpu
                        .stream
                        .memcpy_dtod(&red.grads, &mut self.params)
                        .map_err(|e| CudaError::call("copying the broadcast parameters", e))
                }),
            _ => Ok(()),
        };
        if let Err(e) = sent {
            return Err(self.abort_ranks(e));
        }
        Ok(self)
    }

    /// The gradient buffer the optimiser reads: the all-reduced one with ranks.
    fn update_grads(&self) -> u64 {
        match &self.reduced {
            Some(r) => dptr(&r.grads, &self.gpu.stream),
            None => dptr(&self.grads, &self.gpu.stream),
        }
    }

    pub(crate) fn pp(&self, name: &str) -> u64 {
        dptr(&self.params, &self.gpu.stream) + 4 * self.layout.range(name).start as u64
    }
    pub(crate) fn gp(&self, name: &str) -> u64 {
        dptr(&self.grads, &self.gpu.stream) + 4 * self.layout.range(name).start as u64
    }
    /// Weight of mlp.k as a GEMM operand: the FP32 master or its low-precision copy.
    pub(crate) fn wp(&self, k: usize) -> u64 {
        let name = format!("mlp.{k}.weight");
        if self.gpu.act == Act::F32 {
            self.pp(&name)
        } else {
            let rel = self.layout.range(&name).start - self.mlp_region.start;
            dptr(&self.wlow, &self.gpu.stream) + (rel * self.gpu.act.bytes()) as u64
        }
    }

    pub fn samples_per_epoch(&self) -> u64 {
        self.n_pos * (1 + self.cfg.negatives as u64)
    }

    fn permutation(&mut self, epoch: u32) -> Permutation {
        match self.perm {
            Some((e, p)) if e == epoch => p,
            _ => {
                let p = Permutation::new(
                    &self.rng,
                    stream::SHUFFLE,
                    epoch,
                    0,
                    self.samples_per_epoch(),
                );
                self.perm = Some((epoch, p));
                p
            }
        }
    }

    /// Generate the samples at `positions` of `epoch` into the batch buffers (device only).
    pub fn make_batch(
        &mut self,
        epoch: u32,
        positions: std::ops::Range<u64>,
    ) -> Result<usize, CudaError> {
        let total = self.samples_per_epoch();
        let n = positions.end.saturating_sub(positions.start);
        if n == 0 || positions.end > total || n as usize > self.batch.cap {
            return Err(CudaError::Invalid(format!(
                "positions {}..{} of an epoch of {total} samples (batch capacity {})",
                positions.start, positions.end, self.batch.cap
            )));
        }
        let perm = self.permutation(epoch);
        let keys = perm.keys();
        let s = &self.gpu.stream;
        let seed = self.rng.seed();
        let args: Vec<KArg> = vec![
            (seed as u32).into(),
            ((seed >> 32) as u32).into(),
            epoch.into(),
            self.model_cfg.n_items.into(),
            ((self.cfg.negative_mode == NegativeMode::Exact) as i32).into(),
            self.n_pos.into(),
            dptr(&self.users, s).into(),
            dptr(&self.items, s).into(),
            dptr(&self.offsets, s).into(),
            dptr(&self.pos_items, s).into(),
            total.into(),
            perm.half_bits().into(),
            keys[0].into(),
            keys[1].into(),
            keys[2].into(),
            keys[3].into(),
            positions.start.into(),
            (n as u32).into(),
            dptr(&self.batch.users, s).into(),
            dptr(&self.batch.items, s).into(),
            dptr(&self.batch.labels, s).into(),
            dptr(&self.batch.sample, s).into(),
            dptr(&self.sample_err, s).into(),
        ];
        let sizes = format!(
            "epoch {epoch}, positions {}..{}",
            positions.start, positions.end
        );
        self.gpu.launch(
            "ncf_make_batch",
            self.gpu.grid_for(n),
            256,
            0,
            &args,
            &sizes,
        )?;
        Ok(n as usize)
    }

    /// Forward pass of the MLP tower on the first `n` batch rows (users/items already there).
    /// `dropout` = Some(epoch) in training, None when scoring.
    pub fn mlp_forward(&mut self, n: usize, dropout: Option<u32>) -> Result<(), CudaError> {
        let mc = self.model_cfg.clone();
        if !mc.kind.has_mlp() {
            return Ok(());
        }
        let s = self.gpu.stream.clone();
        if self.gpu.act != Act::F32 {
            let len = self.mlp_region.len() as u64;
            let src = dptr(&self.params, &s) + 4 * self.mlp_region.start as u64;
            let args = [src.into(), dptr(&self.wlow, &s).into(), len.into()];
            self.gpu.launch(
                "ncf_cast",
                self.gpu.grid_for(len),
                256,
                0,
                &args,
                &format!("{len} MLP weights"),
            )?;
        }
        if self.factored.is_none() {
            let e = mc.mlp_embed();
            let args = [
                dptr(&self.batch.users, &s).into(),
                dptr(&self.batch.items, &s).into(),
                (n as u32).into(),
                (e as u32).into(),
                self.pp("mlp_user_embed.weight").into(),
                self.pp("mlp_item_embed.weight").into(),
                dptr(&self.batch.x0, &s).into(),
            ];
            let tot = (n * 2 * e) as u64;
            self.gpu.launch(
                "ncf_gather",
                self.gpu.grid_for(tot),
                256,
                0,
                &args,
                &format!("batch {n}, embed {e}"),
            )?;
        }
        let (thr, scale) = match dropout {
            Some(_) => dropout_threshold(mc.dropout),
            None => (0, 1.0),
        };
        let seed = self.rng.seed();
        for k in 0..mc.n_linear() {
            let (fin, fout) = (mc.layers[k], mc.layers[k + 1]);
            let x = if k == 0 {
                dptr(&self.batch.x0, &s)
            } else {
                dptr(&self.batch.acts[k - 1], &s)
            };
            let z = dptr(&self.batch.scratch, &s);
            if k == 0 && self.factored.is_some() {
                self.factored_forward(n)?;
            } else {
                self.gpu.gemm(
                    &format!("forward mlp.{k}"),
                    true,
                    false,
                    (fout, n, fin),
                    self.wp(k),
                    fin,
                    x,
                    fin,
                    z,
                    fout,
                    0.0,
                )?;
            }
            let args = [
                z.into(),
                self.pp(&format!("mlp.{k}.bias")).into(),
                dptr(&self.batch.acts[k], &s).into(),
                dptr(&self.batch.sample, &s).into(),
                (n as u32).into(),
                (fout as u32).into(),
                (k as u32).into(),
                dropout.unwrap_or(0).into(),
                (seed as u32).into(),
                ((seed >> 32) as u32).into(),
                thr.into(),
                scale.into(),
            ];
            self.row_launch(
                "ncf_bias_relu_dropout_fwd",
                n,
                fout,
                0,
                &args,
                &format!("mlp.{k}: batch {n}, width {fout}"),
            )?;
        }
        Ok(())
    }

    fn row_launch(
        &self,
        name: &str,
        n: usize,
        width: usize,
        smem: u32,
        args: &[KArg],
        sizes: &str,
    ) -> Result<(), CudaError> {
        let groups = width.div_ceil(16).max(1);
        let rows_per_block = (ROW_BLOCK as usize / groups).max(1);
        // 12 blocks per SM: whole waves at 2, 3, 4 or 6 resident blocks (the kernels' register
        // bounds), so grid-stride loops end together.
        let grid =
            (n.div_ceil(rows_per_block) as u64).clamp(1, self.gpu.sm_count as u64 * 12) as u32;
        self.gpu.launch(name, grid, ROW_BLOCK, smem, args, sizes)
    }

    /// The final-layer kernel: logits into `batch.labels` when scoring (`train` = false), else loss
    /// and gradients (dx_last into the scratch buffer) with the gradient scale `gscale`.
    pub fn final_layer(&mut self, n: usize, train: bool, gscale: f32) -> Result<(), CudaError> {
        let mc = &self.model_cfg;
        let s = &self.gpu.stream;
        let f = mc.gmf_factors();
        let lout = mc.mlp_out();
        let (mfu, mfi, gmfu, gmfi) = if f > 0 {
            (
                self.pp("mf_user_embed.weight"),
                self.pp("mf_item_embed.weight"),
                self.gp("mf_user_embed.weight"),
                self.gp("mf_item_embed.weight"),
            )
        } else {
            (0, 0, 0, 0)
        };
        let x_last = if lout > 0 {
            dptr(self.batch.acts.last().expect("mlp has layers"), s)
        } else {
            0
        };
        let args = [
            dptr(&self.batch.users, s).into(),
            dptr(&self.batch.items, s).into(),
            dptr(&self.batch.labels, s).into(),
            (n as u32).into(),
            (f as u32).into(),
            mfu.into(),
            mfi.into(),
            x_last.into(),
            (lout as u32).into(),
            self.pp("final.weight").into(),
            self.pp("final.bias").into(),
            (train as i32).into(),
            gscale.into(),
            dptr(&self.batch.labels, s).into(),
            dptr(&self.loss_sum, s).into(),
            gmfu.into(),
            gmfi.into(),
            self.gp("final.weight").into(),
            self.gp("final.bias").into(),
            dptr(&self.batch.scratch, s).into(),
        ];
        let grid = (n.div_ceil(8) as u64).clamp(1, self.gpu.sm_count as u64 * 16) as u32;
        self.gpu.launch(
            "ncf_final",
            grid,
            256,
            0,
            &args,
            &format!("batch {n}, gmf {f}, mlp out {lout}, train {train}"),
        )
    }

    /// Backward pass of the MLP tower from dx_last (in scratch) to the embedding gradients.
    pub fn mlp_backward(&mut self, n: usize, epoch: u32) -> Result<(), CudaError> {
        let mc = self.model_cfg.clone();
        if !mc.kind.has_mlp() {
            return Ok(());
        }
        let s = self.gpu.stream.clone();
        let (thr, scale) = dropout_threshold(mc.dropout);
        let seed = self.rng.seed();
        let scratch = dptr(&self.batch.scratch, &s);
        let dz = dptr(&self.batch.dz, &s);
        for k in (0..mc.n_linear()).rev() {
            let (fin, fout) = (mc.layers[k], mc.layers[k + 1]);
            let args = [
                scratch.into(),
                dptr(&self.batch.acts[k], &s).into(),
                dz.into(),
                self.gp(&format!("mlp.{k}.bias")).into(),
                dptr(&self.batch.sample, &s).into(),
                (n as u32).into(),
                (fout as u32).into(),
                (k as u32).into(),
                epoch.into(),
                (seed as u32).into(),
                ((seed >> 32) as u32).into(),
                thr.into(),
                scale.into(),
            ];
            self.row_launch(
                "ncf_bias_relu_dropout_bwd",
                n,
                fout,
                (fout * 4) as u32,
                &args,
                &format!("mlp.{k}: batch {n}, width {fout}"),
            )?;
            if k == 0 && self.factored.is_some() {
                // Layer 0's weight gradient and the embedding gradients, per distinct row.
                return self.factored_backward(n);
            }
            let x = if k == 0 {
                dptr(&self.batch.x0, &s)
            } else {
                dptr(&self.batch.acts[k - 1], &s)
            };
            let gw = self.gp(&format!("mlp.{k}.weight"));
            self.gpu.gemm(
                &format!("weight gradient mlp.{k}"),
                false,
                true,
                (fin, fout, n),
                x,
                fin,
                dz,
                fout,
                gw,
                fin,
                0.0,
            )?;
            self.gpu.gemm(
                &format!("input gradient mlp.{k}"),
                false,
                false,
                (fin, n, fout),
                self.wp(k),
                fin,
                dz,
                fout,
                scratch,
                fin,
                0.0,
            )?;
        }
        let e = mc.mlp_embed();
        let args = [
            dptr(&self.batch.users, &s).into(),
            dptr(&self.batch.items, &s).into(),
            (n as u32).into(),
            (e as u32).into(),
            scratch.into(),
            self.gp("mlp_user_embed.weight").into(),
            self.gp("mlp_item_embed.weight").into(),
        ];
        let tot = (n * 2 * e) as u64;
        self.gpu.launch(
            "ncf_scatter",
            self.gpu.grid_for(tot),
            256,
            0,
            &args,
            &format!("batch {n}, embed {e}"),
        )
    }

    /// One optimiser step over the whole flat vector (zeroes the gradients).
    pub fn optimizer_step(
        &mut self,
        t: u64,
        inv_scale: f32,
        check_inf: bool,
    ) -> Result<(), CudaError> {
        let s = &self.gpu.stream;
        let c = &self.cfg;
        let bc1 = 1.0 - (c.beta1 as f64).powi(t as i32);
        let bc2 = 1.0 - (c.beta2 as f64).powi(t as i32);
        let step_size = (c.lr as f64 / bc1) as f32;
        let n = self.layout.total as u64;
        let args = [
            dptr(&self.params, s).into(),
            self.update_grads().into(),
            dptr(&self.m, s).into(),
            dptr(&self.v, s).into(),
            n.into(),
            c.lr.into(),
            c.beta1.into(),
            c.beta2.into(),
            c.eps.into(),
            c.l2.into(),
            step_size.into(),
            (bc2.sqrt() as f32).into(),
            inv_scale.into(),
            if check_inf {
                dptr(&self.found_inf, s)
            } else {
                0u64
            }
            .into(),
            ((c.optimizer == Optimizer::Sgd) as i32).into(),
        ];
        self.gpu.launch(
            "ncf_adam",
            self.gpu.grid_for(n),
            256,
            0,
            &args,
            &format!("{n} parameters, step {t}"),
        )
    }

    /// With NCCL ranks: wait for the queued step (collectives included) with the group's
    /// deadline instead of blocking in the driver; past it, abort ([`Self::abort_ranks`]).
    fn wait_for_ranks(&mut self, what: &str) -> Result<(), CudaError> {
        let Some(r) = &self.ranks else {
            return Ok(());
        };
        match r.wait(&self.gpu.stream, what) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.abort_ranks(e)),
        }
    }

    /// After an error with NCCL work possibly queued: abort the communicator (ncclCommAbort
    /// ends collectives a dead peer left spinning; bounded, since NCCL's abort can itself hang:
    /// [`crate::nccl::comm::Comm::abort_within`]) so that nothing waits on the stream forever,
    /// and say so in the error.
    fn abort_ranks(&mut self, e: CudaError) -> CudaError {
        // Without ranks the optimiser reads the local gradients again.
        self.reduced = None;
        match self.ranks.take() {
            Some(ranks) => CudaError::Invalid(format!("{e}; {}", ranks.abort())),
            None => e,
        }
    }

    /// The step after the local forward/backward: all-reduce over the ranks (if any), FP16's
    /// finite check, the optimiser. With the debug modes that synchronise after every launch
    /// (NCF_CUDA_SYNC, profiling) the collectives are first waited for with the deadline, so
    /// those synchronisations cannot block on a collective a dead peer left spinning.
    fn reduce_and_update(&mut self, fp16: bool, scale: f32, t: u64) -> Result<(), CudaError> {
        if let (Some(r), Some(red)) = (&self.ranks, &mut self.reduced) {
            r.all_reduce(&self.grads, &mut red.grads, Op::Sum, "the gradients")?;
            r.all_reduce(&self.loss_sum, &mut red.loss, Op::Sum, "the loss")?;
            r.all_reduce(
                &self.sample_err,
                &mut red.sample_err,
                Op::Max,
                "the sampler flag",
            )?;
            // The local sums start from zero next step (after the all-reduce read them: same
            // stream); Adam zeroes the reduced gradients it reads.
            self.gpu.zero(&mut self.grads, "gradients")?;
            if self.gpu.sync_each || self.gpu.profile.is_some() {
                r.wait(&self.gpu.stream, "the step's all-reduces")?;
            }
        }
        if fp16 {
            let s = &self.gpu.stream;
            let len = self.layout.total as u64;
            let args = [
                self.update_grads().into(),
                len.into(),
                dptr(&self.found_inf, s).into(),
            ];
            self.gpu.launch(
                "ncf_check_finite",
                self.gpu.grid_for(len),
                256,
                0,
                &args,
                &format!("{len} gradients"),
            )?;
        }
        self.optimizer_step(t, 1.0 / scale, fp16)
    }

    fn train_step(
        &mut self,
        epoch: u32,
        positions: std::ops::Range<u64>,
    ) -> Result<StepStats, CudaError> {
        let fp16 = self.cfg.precision == Precision::Fp16;
        {
            let g = &self.gpu;
            g.zero(&mut self.loss_sum, "loss")?;
            g.zero(&mut self.found_inf, "inf flag")?;
            g.zero(&mut self.sample_err, "sampler flag")?;
        }
        // Data-parallel: this rank's share of the global batch; gradients are scaled by the
        // global batch size and summed over the ranks below.
        let global = (positions.end - positions.start) as usize;
        let local = match &self.ranks {
            Some(r) => crate::nccl::local_positions(positions, r.rank(), r.world()),
            None => positions,
        };
        let scale = if fp16 { self.loss_scale } else { 1.0 };
        if local.end > local.start {
            let n = self.make_batch(epoch, local)?;
            self.mlp_forward(n, Some(epoch))?;
            self.final_layer(n, true, scale / global as f32)?;
            self.mlp_backward(n, epoch)?;
        }
        let n = global;
        let t = self.adam_steps + 1;
        // From the first collective on, an error may leave NCCL work queued: abort then.
        if let Err(e) = self.reduce_and_update(fp16, scale, t) {
            return Err(self.abort_ranks(e));
        }
        self.wait_for_ranks(&format!("epoch {epoch} step {t}"))?;
        let (loss_buf, err_buf) = match &self.reduced {
            Some(r) => (&r.loss, &r.sample_err),
            None => (&self.loss_sum, &self.sample_err),
        };
        let loss = self.gpu.download(loss_buf, 1, "loss")?[0];
        let err = self.gpu.download(err_buf, 1, "sampler flag")?[0];
        if err != 0 {
            return Err(CudaError::Invalid(format!(
                "sample {}: no negative found in {} draws (the user has nearly every item)",
                err - 1,
                ncf_core::sampling::sampler::MAX_ATTEMPTS
            )));
        }
        let skipped = fp16 && self.gpu.download(&self.found_inf, 1, "inf flag")?[0] != 0;
        if skipped {
            self.loss_scale *= 0.5;
            self.clean_steps = 0;
        } else {
            self.adam_steps = t;
            if fp16 {
                self.clean_steps += 1;
                if self.clean_steps == SCALE_GROWTH_INTERVAL {
                    self.loss_scale *= 2.0;
                    self.clean_steps = 0;
                }
            }
        }
        Ok(StepStats {
            loss: (loss / n as f64) as f32,
            skipped,
        })
    }

    pub(crate) fn score_chunks(
        &mut self,
        users: &[u32],
        items: &[u32],
        out: &mut [f32],
    ) -> Result<(), CudaError> {
        let mc = &self.model_cfg;
        if users.len() != items.len() || users.len() != out.len() {
            return Err(CudaError::Invalid(format!(
                "score: {} users, {} items, {} outputs (must be equal)",
                users.len(),
                items.len(),
                out.len()
            )));
        }
        if let Some(k) = users.iter().position(|&u| u >= mc.n_users) {
            return Err(CudaError::Invalid(format!(
                "score: user {} >= n_users {}",
                users[k], mc.n_users
            )));
        }
        if let Some(k) = items.iter().position(|&i| i >= mc.n_items) {
            return Err(CudaError::Invalid(format!(
                "score: item {} >= n_items {}",
                items[k], mc.n_items
            )));
        }
        let cap = self.batch.cap;
        let mut start = 0;
        while start < users.len() {
            let n = (users.len() - start).min(cap);
            let (u, i) = (&users[start..start + n], &items[start..start + n]);
            {
                let g = &self.gpu;
                g.upload_into(u, &mut self.batch.users, "score users")?;
                g.upload_into(i, &mut self.batch.items, "score items")?;
            }
            self.mlp_forward(n, None)?;
            self.final_layer(n, false, 0.0)?;
            let logits = self.gpu.download(&self.batch.labels, n, "scores")?;
            out[start..start + n].copy_from_slice(&logits);
            start += n;
        }
        Ok(())
    }

    /// The current parameters.
    pub fn params_host(&self) -> Result<Vec<f32>, CudaError> {
        self.gpu
            .download(&self.params, self.layout.total, "parameters")
    }

    /// The current gradient buffer (zero between steps).
    pub fn grads_host(&self) -> Result<Vec<f32>, CudaError> {
        self.gpu
            .download(&self.grads, self.layout.total, "gradients")
    }
}

/// Refuse a model, train positives or configuration the CUDA backend cannot train; returns the
/// batch capacity (samples per step).
fn check_inputs(
    model: &Model,
    mc: &ModelConfig,
    cfg: &TrainConfig,
    train_users: &[u32],
    train_items: &[u32],
    positives: Option<&UserItems>,
) -> Result<usize, CudaError> {
    if model.params.len() != model.layout.total || model.layout != mc.layout() {
        return Err(CudaError::Invalid(format!(
            "model has {} parameters, its configuration's layout needs {}",
            model.params.len(),
            mc.layout().total
        )));
    }
    if train_users.len() != train_items.len() || train_users.is_empty() {
        return Err(CudaError::Invalid(format!(
            "train positives: {} users and {} items (need the same, at least one)",
            train_users.len(),
            train_items.len()
        )));
    }
    if let Some((k, _)) = train_users
        .iter()
        .enumerate()
        .find(|(_, &u)| u >= mc.n_users)
    {
        return Err(CudaError::Invalid(format!(
            "train row {k}: user {} >= n_users {}",
            train_users[k], mc.n_users
        )));
    }
    if let Some((k, _)) = train_items
        .iter()
        .enumerate()
        .find(|(_, &i)| i >= mc.n_items)
    {
        return Err(CudaError::Invalid(format!(
            "train row {k}: item {} >= n_items {}",
            train_items[k], mc.n_items
        )));
    }
    if cfg.negative_mode == NegativeMode::Exact && positives.is_none() {
        return Err(CudaError::Invalid(
            "exact negatives need the users' positives".into(),
        ));
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
    let cap = match cfg.batch_size.samples() {
        Some(b) if (1..=1 << 30).contains(&b) => b as usize,
        Some(b) => {
            return Err(CudaError::Invalid(format!(
                "batch size {b} out of 1..=2^30"
            )))
        }
        None => {
            return Err(CudaError::Invalid(
                "the CUDA backend trains in batches, not a whole epoch per step".into(),
            ))
        }
    };
    let per_epoch = train_users.len() as u64 * (1 + cfg.negatives as u64);
    if per_epoch >= 1 << 32 {
        return Err(CudaError::Invalid(format!(
            "an epoch must have fewer than 2^32 samples, not {per_epoch}"
        )));
    }
    Ok(cap)
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

/// Upload the users' positives (offsets, items) for exact negatives, or one-element
/// placeholders without them; refused when they cover fewer users than the model has.
fn upload_positives(
    gpu: &Gpu,
    positives: Option<&UserItems>,
    mc: &ModelConfig,
) -> Result<(CudaSlice<u64>, CudaSlice<u32>), CudaError> {
    let (offsets, pos_items) = match positives {
        Some(ui) => (
            gpu.upload(&ui.offsets, "positive offsets")?,
            gpu.upload(&ui.items, "positive items")?,
        ),
        None => (
            gpu.alloc::<u64>(1, "positive offsets")?,
            gpu.alloc::<u32>(1, "positive items")?,
        ),
    };
    if let Some(ui) = positives {
        if ui.n_users() < mc.n_users as usize {
            return Err(CudaError::Invalid(format!(
                "positives cover {} users, the model has {}",
                ui.n_users(),
                mc.n_users
            )));
        }
    }
    Ok((offsets, pos_items))
}

impl Scorer for CudaTrainer {
    fn score(&mut self, users: &[u32], items: &[u32], out: &mut [f32]) -> ncf_core::Result<()> {
        Ok(self.score_chunks(users, items, out)?)
    }
}

impl Trainer for CudaTrainer {
    fn name(&self) -> String {
        let p = self.cfg.precision.name();
        let first = match self.first_layer() {
            crate::first_layer::FirstLayer::Factored => ", first layer factored",
            crate::first_layer::FirstLayer::PerSample => "",
        };
        format!(
            "cuda:{} {} ({}, {p}{first})",
            self.gpu.info.ordinal,
            self.gpu.info.name,
            self.gpu.info.arch()
        )
    }

    fn step(&mut self, epoch: u32, positions: std::ops::Range<u64>) -> ncf_core::Result<StepStats> {
        Ok(self.train_step(epoch, positions)?)
    }

    fn model(&mut self) -> ncf_core::Result<Model> {
        let params = self.params_host()?;
        Ok(Model {
            config: self.model_cfg.clone(),
            layout: self.layout.clone(),
            params,
        })
    }

    fn save_state(&mut self) -> ncf_core::Result<OptimizerState> {
        let n = self.layout.total;
        Ok(OptimizerState {
            params: self.params_host()?,
            m: self.gpu.download(&self.m, n, "Adam first moments")?,
            v: self.gpu.download(&self.v, n, "Adam second moments")?,
            steps: self.adam_steps,
            loss_scale: self.loss_scale,
            clean_steps: self.clean_steps,
        })
    }

    fn load_state(&mut self, state: &OptimizerState) -> ncf_core::Result<()> {
        let n = self.layout.total;
        if [&state.params, &state.m, &state.v]
            .iter()
            .any(|x| x.len() != n)
        {
            return Err(ncf_core::Error::invalid(format!(
                "optimiser state has {} parameters, the model {n}",
                state.params.len()
            )));
        }
        self.gpu
            .upload_into(&state.params, &mut self.params, "parameters")?;
        self.gpu
            .upload_into(&state.m, &mut self.m, "Adam first moments")?;
        self.gpu
            .upload_into(&state.v, &mut self.v, "Adam second moments")?;
        self.adam_steps = state.steps;
        self.loss_scale = state.loss_scale;
        self.clean_steps = state.clean_steps;
        Ok(())
    }

    fn rank_world(&self) -> (usize, usize) {
        self.ranks
            .as_ref()
            .map_or((0, 1), |r| (r.rank(), r.world()))
    }

    fn allreduce_f64(&mut self, x: &mut [f64]) -> ncf_core::Result<()> {
        match &mut self.ranks {
            Some(r) => r.group.allreduce_f64(x),
            None => Ok(()),
        }
    }

    /// Finalize the NCCL communicator (a normal end; the error paths abort it).
    fn finish(&mut self) -> ncf_core::Result<()> {
        self.reduced = None;
        match self.ranks.take() {
            Some(r) => Ok(r.finish()?),
            None => Ok(()),
        }
    }
}
