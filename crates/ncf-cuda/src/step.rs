//! The phases of one training step of [`CudaTrainer`]: the samples drawn on the device, the
//! forward pass ([`crate::model`]), the final layer with the loss, the backward pass, the NCCL
//! all-reduce, FP16's overflow check and the optimiser.

use crate::device::{dropout_threshold, ActElem, DeviceExt, GemmCall, Ptr};
use crate::kdef::{Adam, BiasReluDropoutBwd, CheckFinite, MakeBatch, Scatter};
use crate::model::{Dropout, FinalGrads, ROW_BLOCK};
use crate::nccl::ffi::Op;
use crate::trainer::{CudaTrainer, SCALE_GROWTH_INTERVAL, STATS_EVERY};
use crate::CudaError;
use ncf_core::sampling::sampler::NegativeMode;
use ncf_core::train::{Optimizer, Precision, StepStats};

impl CudaTrainer {
    /// Generate the samples at `positions` of `epoch` into the batch buffers (device only; the
    /// fused step's arguments get the batch's epoch and positions first, which the forward and
    /// backward kernels then read).
    pub fn make_batch(
        &mut self,
        epoch: u32,
        positions: std::ops::Range<u64>,
    ) -> Result<usize, CudaError> {
        self.write_batch_args(epoch, &positions)?;
        self.launch_make_batch(epoch, positions)
    }

    /// [`Self::make_batch`] with the step's arguments already written (inside a step).
    pub(crate) fn launch_make_batch(
        &mut self,
        epoch: u32,
        positions: std::ops::Range<u64>,
    ) -> Result<usize, CudaError> {
        let total = self.samples_per_epoch();
        let n = positions.end.saturating_sub(positions.start);
        let cap = self.model.batch.cap;
        if n == 0 || positions.end > total || n as usize > cap {
            return Err(CudaError::Invalid(format!(
                "positions {}..{} of an epoch of {total} samples (batch capacity {cap})",
                positions.start, positions.end
            )));
        }
        self.sorted.set(false);
        let perm = self.permutation(epoch);
        let keys = perm.keys();
        let seed = self.rng.seed();
        let b = &self.model.batch;
        let k = MakeBatch {
            k0: seed as u32,
            k1: (seed >> 32) as u32,
            epoch,
            n_items: self.model.cfg.n_items,
            exact: (self.cfg.negative_mode == NegativeMode::Exact) as i32,
            n_pos: self.n_pos,
            users: self.users.ptr(),
            items: self.items.ptr(),
            offsets: self.offsets.ptr(),
            pos_items: self.pos_items.ptr(),
            n: total,
            half_bits: perm.half_bits(),
            pk0: keys[0],
            pk1: keys[1],
            pk2: keys[2],
            pk3: keys[3],
            p0: positions.start,
            count: n as u32,
            out_users: b.users.ptr(),
            out_items: b.items.ptr(),
            out_labels: b.labels.ptr(),
            out_sample: b.sample.ptr(),
            err: self.sample_err.ptr(),
            step: self.model.step_args,
        };
        let sizes = format!(
            "epoch {epoch}, positions {}..{}",
            positions.start, positions.end
        );
        let d = self.device();
        d.launch(&k, d.grid_for(n), 0, &sizes)?;
        Ok(n as usize)
    }

    /// Backward pass of the MLP tower from dx_last (in scratch) to the embedding gradients,
    /// with the step's kernels ([`crate::fused`]).
    pub fn mlp_backward(&self, n: usize, epoch: u32) -> Result<(), CudaError> {
        match self.fused {
            Some(_) => self.mlp_backward_fused(n, epoch),
            None => self.mlp_backward_split(n, epoch),
        }
    }

    /// The split step's backward pass: per layer ncf_bias_relu_dropout_bwd and two cuBLAS GEMMs.
    pub(crate) fn mlp_backward_split(&self, n: usize, epoch: u32) -> Result<(), CudaError> {
        let md = &self.model;
        let mc = &md.cfg;
        if !mc.kind.has_mlp() {
            return Ok(());
        }
        let d = md.dev.as_ref();
        let scratch = md.batch.scratch.ptr();
        let dz = md.batch.dz.ptr();
        for k in (0..mc.n_linear()).rev() {
            let (fin, fout) = (mc.layers[k], mc.layers[k + 1]);
            self.relu_dropout_backward(k, n, epoch, dz)?;
            if k == 0 && md.factored.is_some() {
                // Layer 0's weight gradient and the embedding gradients, per distinct row.
                self.sort_batch(n)?;
                return self.factored_backward(n);
            }
            let x = if k == 0 {
                md.batch.x0.ptr()
            } else {
                md.batch.acts[k - 1].ptr()
            };
            self.weight_gradient(k, n, x, dz)?;
            let what = format!("input gradient mlp.{k}");
            d.gemm(&GemmCall {
                what: &what,
                ta: false,
                tb: false,
                m: fin,
                n,
                k: fout,
                a: md.wp(k).addr(),
                lda: fin,
                b: dz.addr(),
                ldb: fout,
                c: scratch.addr(),
                ldc: fin,
                beta: 0.0,
            })?;
        }
        self.mlp_embedding_grads(n)
    }

    /// The MLP embeddings' gradients from dx0 (in the scratch), the end of either step's
    /// backward pass: sorted segment sums, or `ncf_scatter`'s atomics.
    pub(crate) fn mlp_embedding_grads(&self, n: usize) -> Result<(), CudaError> {
        if self.det.is_some() {
            return self.reduce_mlp_embeddings(n);
        }
        let md = &self.model;
        let d = md.dev.as_ref();
        let e = md.cfg.mlp_embed();
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

    /// MLP layer `k`'s pre-activation gradient `dz` from its activation gradient (in the
    /// scratch) through dropout and ReLU (`ncf_bias_relu_dropout_bwd`), and its bias gradient.
    pub(crate) fn relu_dropout_backward(
        &self,
        k: usize,
        n: usize,
        epoch: u32,
        dz: Ptr<ActElem>,
    ) -> Result<(), CudaError> {
        let md = &self.model;
        let fout = md.cfg.layers[k + 1];
        let (thr, scale) = dropout_threshold(md.cfg.dropout);
        let seed = self.rng.seed();
        let partials = self.bias_partials();
        let kern = BiasReluDropoutBwd {
            da: md.batch.scratch.ptr(),
            a: md.batch.acts[k].ptr(),
            dz,
            dbias: self.gp(&format!("mlp.{k}.bias")),
            sample: md.batch.sample.ptr(),
            batch: n as u32,
            width: fout as u32,
            layer: k as u32,
            epoch,
            k0: seed as u32,
            k1: (seed >> 32) as u32,
            thr,
            scale,
            partials,
            step: md.step_args,
        };
        // Shared memory: one float per unit (atomics), or 16 per thread of the block's
        // rows (deterministic).
        let groups = fout.div_ceil(16);
        let smem = match partials.addr() {
            0 => fout * 4,
            _ => (ROW_BLOCK as usize / groups) * groups * 16 * 4,
        };
        let sizes = format!("mlp.{k}: batch {n}, width {fout}");
        md.row_launch(&kern, n, fout, smem as u32, &sizes)?;
        self.reduce_bias(k, n, fout)
    }

    /// MLP layer `k`'s weight gradient dW = dz^T x, straight into the FP32 gradient buffer.
    pub(crate) fn weight_gradient(
        &self,
        k: usize,
        n: usize,
        x: Ptr<ActElem>,
        dz: Ptr<ActElem>,
    ) -> Result<(), CudaError> {
        let (fin, fout) = (self.model.cfg.layers[k], self.model.cfg.layers[k + 1]);
        let what = format!("weight gradient mlp.{k}");
        self.device().gemm(&GemmCall {
            what: &what,
            ta: false,
            tb: true,
            m: fin,
            n: fout,
            k: n,
            a: x.addr(),
            lda: fin,
            b: dz.addr(),
            ldb: fout,
            c: self.gp(&format!("mlp.{k}.weight")).addr(),
            ldc: fin,
            beta: 0.0,
        })
    }

    /// One optimiser step over the whole flat vector (zeroes the gradients it reads).
    pub fn optimizer_step(&self, t: u64, inv_scale: f32, check_inf: bool) -> Result<(), CudaError> {
        self.optimizer_step_with(t, inv_scale, check_inf, self.fused.is_some(), true)
    }

    /// Adam's step size lr / (1 - beta1^t) and sqrt(1 - beta2^t) for its count `t`.
    pub(crate) fn adam_scalars(&self, t: u64) -> (f32, f32) {
        let c = &self.cfg;
        let bc1 = 1.0 - (c.beta1 as f64).powi(t as i32);
        let bc2 = 1.0 - (c.beta2 as f64).powi(t as i32);
        ((c.lr as f64 / bc1) as f32, bc2.sqrt() as f32)
    }

    /// [`Self::optimizer_step`] with `ncf_adam_wide` (`wide`, the fused step's; it needs the
    /// fused step's buffers; `upload`: write its scalars, else the step's arguments hold them)
    /// or `ncf_adam`.
    pub(crate) fn optimizer_step_with(
        &self,
        t: u64,
        inv_scale: f32,
        check_inf: bool,
        wide: bool,
        upload: bool,
    ) -> Result<(), CudaError> {
        let c = &self.cfg;
        let n = self.model.layout.total as u64;
        let g = match &self.reduced {
            Some(r) => r.grads.ptr(),
            None => self.grads.ptr(),
        };
        let found_inf = if check_inf {
            self.found_inf.ptr()
        } else {
            crate::device::Ptr::null()
        };
        let (step_size, bc2_sqrt) = self.adam_scalars(t);
        if wide
            && self
                .adam_wide([step_size, bc2_sqrt, inv_scale], upload, g, found_inf)?
                .is_some()
        {
            return Ok(());
        }
        let k = Adam {
            p: self.model.params.ptr(),
            g,
            m: self.m.ptr(),
            v: self.v.ptr(),
            n,
            lr: c.lr,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            l2: c.l2,
            step_size,
            bc2_sqrt,
            inv_scale,
            found_inf,
            sgd: (c.optimizer == Optimizer::Sgd) as i32,
        };
        let d = self.device();
        d.launch(&k, d.grid_for(n), 0, &format!("{n} parameters, step {t}"))
    }

    /// With NCCL ranks: wait for the queued step (collectives included) with the group's
    /// deadline instead of blocking in the driver; past it, abort ([`Self::abort_ranks`]).
    fn wait_for_ranks(&mut self, what: &str) -> Result<(), CudaError> {
        let Some(r) = &self.ranks else {
            return Ok(());
        };
        match r.wait(self.model.dev.as_ref(), what) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.abort_ranks(e)),
        }
    }

    /// The step after the local forward/backward: all-reduce over the ranks (if any), FP16's
    /// finite check, the optimiser. With the debug modes that synchronise after every launch
    /// (NCF_CUDA_SYNC, profiling) the collectives are first waited for with the deadline, so
    /// those synchronisations cannot block on a collective a dead peer left spinning.
    fn reduce_and_update(&self, fp16: bool, scale: f32, t: u64) -> Result<(), CudaError> {
        let d = self.model.dev.as_ref();
        if let (Some(r), Some(red)) = (&self.ranks, &self.reduced) {
            r.all_reduce(d, &self.grads, &red.grads, Op::Sum, "the gradients")?;
            r.all_reduce(d, &self.loss_sum, &red.loss, Op::Sum, "the loss")?;
            r.all_reduce(
                d,
                &self.sample_err,
                &red.sample_err,
                Op::Max,
                "the sampler flag",
            )?;
            // The local sums start from zero next step (after the all-reduce read them: same
            // stream); Adam zeroes the reduced gradients it reads.
            d.zero(&self.grads, "gradients")?;
            if d.profile().sync_each.get() || d.profile().enabled() {
                r.wait(d, "the step's all-reduces")?;
            }
        }
        if fp16 {
            let len = self.model.layout.total as u64;
            let g = match &self.reduced {
                Some(r) => r.grads.ptr(),
                None => self.grads.ptr(),
            };
            let k = CheckFinite {
                g,
                n: len,
                found: self.found_inf.ptr(),
            };
            d.launch(&k, d.grid_for(len), 0, &format!("{len} gradients"))?;
        }
        // The fused step wrote Adam's scalars with the step's arguments (before any capture).
        let fused = self.fused.is_some();
        self.optimizer_step_with(t, 1.0 / scale, fp16, fused, !fused)
    }

    /// Whether a step's stats may wait on the device ([`Self::queue_step`]): not with FP16,
    /// whose loss scaling decides on the host after each step whether it was applied, nor with
    /// NCCL ranks, which wait for every step with the group's deadline.
    fn queues_stats(&self) -> bool {
        self.cfg.precision != Precision::Fp16 && self.ranks.is_none()
    }

    /// One step without reading anything back when [`Self::queues_stats`]: its loss is copied
    /// to the next of [`STATS_EVERY`] slots and the sampler's flag keeps the first failure; the
    /// stats come back when the slots are full (returned here) or on [`Self::read_queued`].
    /// Otherwise the step of [`Self::train_step`], reported at once.
    pub(crate) fn queue_step(
        &mut self,
        epoch: u32,
        positions: std::ops::Range<u64>,
    ) -> Result<Vec<StepStats>, CudaError> {
        if !self.queues_stats() {
            return Ok(vec![self.train_step(epoch, positions)?]);
        }
        let global = positions.end - positions.start;
        let slot = self.queued.len();
        let t = self.launch_step(epoch, positions, false, Some(slot))?;
        // Without FP16 no step is skipped: Adam's count moves on as the launches queue.
        self.adam_steps = t;
        self.queued.push(global);
        if self.queued.len() == STATS_EVERY {
            self.read_queued()
        } else {
            Ok(Vec::new())
        }
    }

    /// Wait for the queued steps and return their stats, oldest first: one read of their
    /// losses and one of the sampler's flag (then cleared).
    pub(crate) fn read_queued(&mut self) -> Result<Vec<StepStats>, CudaError> {
        if self.queued.is_empty() {
            return Ok(Vec::new());
        }
        let globals = std::mem::take(&mut self.queued);
        let d = self.device();
        let losses = d.download(&self.queued_loss, globals.len(), "the queued steps' losses")?;
        let err = d.download(&self.sample_err, 1, "sampler flag")?[0];
        d.zero(&self.sample_err, "sampler flag")?;
        sampler_failure(err)?;
        Ok(losses
            .iter()
            .zip(globals)
            .map(|(&loss, global)| StepStats {
                loss: (loss / global as f64) as f32,
                skipped: false,
            })
            .collect())
    }

    /// An error unless every queued step has been reported ([`Self::read_queued`]): `what`
    /// needs the steps' effects and their stats accounted for.
    pub(crate) fn refuse_queued(&self, what: &str) -> Result<(), CudaError> {
        match self.queued.len() {
            0 => Ok(()),
            n => Err(CudaError::Invalid(format!(
                "{what} with {n} steps queued whose stats were not read back (drain first)"
            ))),
        }
    }

    /// The launches of one step: samples, forward, loss, backward, all-reduces, the optimiser
    /// with Adam's count `t` = the applied steps + 1, which it returns. `clear_err`: start the
    /// sampler's flag from zero; `slot`: a queued step's loss slot. The fused step first uploads
    /// the step's arguments; its queued steps are captured once as a graph
    /// ([`CudaTrainer::may_capture`]) and replayed for every later step of the same size.
    fn launch_step(
        &mut self,
        epoch: u32,
        positions: std::ops::Range<u64>,
        clear_err: bool,
        slot: Option<usize>,
    ) -> Result<u64, CudaError> {
        let t = self.adam_steps + 1;
        let fp16 = self.cfg.precision == Precision::Fp16;
        // Data-parallel: this rank's share of the global batch; gradients are scaled by the
        // global batch size and summed over the ranks below.
        let global = (positions.end - positions.start) as usize;
        let local = match &self.ranks {
            Some(r) => crate::nccl::local_positions(positions, r.rank(), r.world()),
            None => positions,
        };
        let scale = if fp16 { self.loss_scale } else { 1.0 };
        self.write_args(epoch, &local, t, 1.0 / scale, slot.unwrap_or(0))?;
        let n = local.end - local.start;
        let body = StepBody {
            epoch,
            local,
            clear_err,
            t,
            scale,
            global,
            slot,
        };
        if slot.is_none() || !self.may_capture() {
            self.launch_body(&body)?;
            return Ok(t);
        }
        let what = "the fused step";
        let id = match self.graph {
            Some(g) if g.n == n => g.id,
            Some(_) => {
                // Another batch size (an epoch's last step): not captured.
                self.launch_body(&body)?;
                return Ok(t);
            }
            None => {
                self.device().begin_capture(what)?;
                let ran = self.launch_body(&body);
                let ended = self.device().end_capture(what);
                ran?;
                let id = ended?;
                self.graph = Some(crate::fused::StepGraph { n, id });
                id
            }
        };
        self.device().replay(id, what)?;
        self.replays += 1;
        Ok(t)
    }

    /// The work of one step after its arguments were uploaded (what a graph captures).
    fn launch_body(&mut self, b: &StepBody) -> Result<(), CudaError> {
        let fp16 = self.cfg.precision == Precision::Fp16;
        {
            let d = self.device();
            d.zero(&self.loss_sum, "loss")?;
            d.zero(&self.found_inf, "inf flag")?;
            if b.clear_err {
                d.zero(&self.sample_err, "sampler flag")?;
            }
        }
        if b.local.end > b.local.start {
            let n = self.launch_make_batch(b.epoch, b.local.clone())?;
            let dropout = Dropout {
                epoch: b.epoch,
                seed: self.rng.seed(),
            };
            self.model.mlp_forward(n, Some(dropout))?;
            self.train_final(n, b.scale / b.global as f32)?;
            self.mlp_backward(n, b.epoch)?;
        }
        // From the first collective on, an error may leave NCCL work queued: abort then.
        if let Err(e) = self.reduce_and_update(fp16, b.scale, b.t) {
            return Err(self.abort_ranks(e));
        }
        match (b.slot, &self.fused) {
            (None, _) => Ok(()),
            (Some(_), Some(_)) => self.stash_loss(),
            (Some(slot), None) => {
                let to = self.queued_loss.at(slot);
                let d = self.device();
                d.copy_raw(self.loss_sum.addr(), to.addr(), 8, "the step's loss")
            }
        }
    }

    /// One step, its stats read back at once (the loss, the sampler's flag and FP16's inf
    /// flag: three blocking reads).
    pub(crate) fn train_step(
        &mut self,
        epoch: u32,
        positions: std::ops::Range<u64>,
    ) -> Result<StepStats, CudaError> {
        self.refuse_queued("a step read back at once")?;
        let fp16 = self.cfg.precision == Precision::Fp16;
        let global = (positions.end - positions.start) as usize;
        let t = self.launch_step(epoch, positions, true, None)?;
        self.wait_for_ranks(&format!("epoch {epoch} step {t}"))?;
        let d = self.device();
        let (loss_buf, err_buf) = match &self.reduced {
            Some(r) => (&r.loss, &r.sample_err),
            None => (&self.loss_sum, &self.sample_err),
        };
        let loss = d.download(loss_buf, 1, "loss")?[0];
        let err = d.download(err_buf, 1, "sampler flag")?[0];
        sampler_failure(err)?;
        let skipped = fp16 && d.download(&self.found_inf, 1, "inf flag")?[0] != 0;
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
            loss: (loss / global as f64) as f32,
            skipped,
        })
    }

    /// The final layer of a training step on the first `n` batch rows: the loss into
    /// `loss_sum`, its gradients (scaled by `gscale`) into the gradient buffer, and the gradient
    /// into the last MLP layer into the scratch.
    pub(crate) fn train_final(&self, n: usize, gscale: f32) -> Result<(), CudaError> {
        let grads = FinalGrads {
            scale: gscale,
            loss_sum: self.loss_sum.ptr(),
            mf_user: self.gp_or_null("mf_user_embed.weight"),
            mf_item: self.gp_or_null("mf_item_embed.weight"),
            fw: self.gp("final.weight"),
            fb: self.gp("final.bias"),
            dz_last: self.fused_dz_last(),
            mask_scale: dropout_threshold(self.model.cfg.dropout).1,
            ..FinalGrads::default()
        };
        self.model.final_layer(n, Some(self.final_targets(grads)))?;
        self.reduce_final(n)
    }

    /// The gradient of `name`, or null when the model has no such tensor (GMF tables of an MLP).
    fn gp_or_null(&self, name: &str) -> crate::device::Ptr<f32> {
        match self.model.layout.get(name) {
            Some(_) => self.gp(name),
            None => crate::device::Ptr::null(),
        }
    }
}

/// The error of a sampler flag `err` (1 + the first sample that found no negative; 0: none).
fn sampler_failure(err: u64) -> Result<(), CudaError> {
    match err {
        0 => Ok(()),
        _ => Err(CudaError::Invalid(format!(
            "sample {}: no negative found in {} draws (the user has nearly every item)",
            err - 1,
            ncf_core::sampling::sampler::MAX_ATTEMPTS
        ))),
    }
}

/// One step's values for [`CudaTrainer::launch_body`].
struct StepBody {
    epoch: u32,
    local: std::ops::Range<u64>,
    clear_err: bool,
    t: u64,
    scale: f32,
    global: usize,
    slot: Option<usize>,
}
