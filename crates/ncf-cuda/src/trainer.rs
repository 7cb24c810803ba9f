//! [`CudaTrainer`]: NeuMF training on one device (a GPU, or the host device in CI): the model
//! on the device ([`DeviceModel`]) plus the training state — gradients and Adam moments in the
//! flat [`Layout`], the train positives the sampler draws from, the step's loss and flags, the
//! FP16 loss scale, the NCCL ranks. Each step generates its samples on the device from (epoch,
//! positions). It reads back only the loss and two flags: after every step with FP16's loss
//! scaling or NCCL ranks, else once per [`STATS_EVERY`] steps (the losses queue on the device,
//! the sampler's flag holds the first failure). The phases of a step are in [`crate::step`], the
//! factored first layer in [`crate::first_layer`].

use crate::device::{Buf, Device, DeviceExt, Ptr};
use crate::model::DeviceModel;
use crate::nccl::Ranks;
use crate::CudaError;
use ncf_core::model::{Model, ModelConfig};
use ncf_core::neumf_cpu::FirstLayer;
use ncf_core::sampling::rng::{stream, Permutation, Rng};
use ncf_core::sampling::sampler::{NegativeMode, UserItems};
use ncf_core::train::checkpoint::OptimizerState;
use ncf_core::train::{Precision, Scorer, StepStats, TrainConfig, Trainer};

/// Steps whose losses queue on the device before one read brings them back
/// ([`Trainer::step_queued`]): one blocking device-to-host read per this many steps, not three
/// per step.
pub const STATS_EVERY: usize = 32;

/// FP16 dynamic loss scaling, as torch.cuda.amp.GradScaler's defaults.
pub const SCALE_INIT: f32 = 65536.0;
pub const SCALE_GROWTH_INTERVAL: u32 = 2000;

/// With NCCL ranks: where the step's all-reduces land (out of place: the local gradients,
/// loss and sampler flag stay in their buffers), and where the initial broadcast lands before it
/// is copied to the parameters. Adam reads the gradients from here.
pub(crate) struct Reduced {
    pub(crate) grads: Buf<f32>,
    pub(crate) loss: Buf<f64>,
    pub(crate) sample_err: Buf<u64>,
}

/// NeuMF training on one device: the [`Trainer`] of the CUDA backend.
pub struct CudaTrainer {
    /// The other ranks of a data-parallel run (NCCL); None on one device without `--nccl`.
    /// First, so it is dropped first: a communicator dropped live (an error path) is aborted,
    /// ending collectives that a dead peer would leave spinning, before the device's handles
    /// are destroyed (which synchronise). A normal end finalizes it first ([`Trainer::finish`]).
    pub(crate) ranks: Option<Ranks>,
    /// The all-reduced buffers (with ranks only).
    pub(crate) reduced: Option<Reduced>,
    pub(crate) model: DeviceModel,
    pub(crate) cfg: TrainConfig,
    pub(crate) grads: Buf<f32>,
    pub(crate) m: Buf<f32>,
    pub(crate) v: Buf<f32>,
    /// The train positives, and each user's positives for exact negatives.
    pub(crate) users: Buf<u32>,
    pub(crate) items: Buf<u32>,
    pub(crate) offsets: Buf<u64>,
    pub(crate) pos_items: Buf<u32>,
    pub(crate) loss_sum: Buf<f64>,
    pub(crate) found_inf: Buf<i32>,
    pub(crate) sample_err: Buf<u64>,
    /// The losses of the queued steps ([`STATS_EVERY`] slots), and each one's global batch.
    pub(crate) queued_loss: Buf<f64>,
    pub(crate) queued: Vec<u64>,
    pub(crate) n_pos: u64,
    pub(crate) rng: Rng,
    pub(crate) adam_steps: u64,
    pub(crate) loss_scale: f32,
    pub(crate) clean_steps: u32,
    perm: Option<(u32, Permutation)>,
    /// The deterministic reductions' buffers ([`crate::reduce`]); None: float atomics.
    pub(crate) det: Option<crate::reduce::DetBuffers>,
    /// This batch's samples are sorted by user and item ([`CudaTrainer::sort_batch`]).
    pub(crate) sorted: std::cell::Cell<bool>,
    /// The fused step's buffers ([`crate::fused`]); None: the split step.
    pub(crate) fused: Option<crate::fused::FusedBuffers>,
    /// The fused step's queued steps captured as a graph, and how many steps replayed it.
    pub(crate) graph: Option<crate::fused::StepGraph>,
    pub(crate) replays: u64,
}

impl CudaTrainer {
    /// Upload `model` and the train positives to `dev`. `positives` is needed for exact
    /// negatives. The batch buffers are sized for `cfg.batch_size` samples.
    pub fn new(
        dev: Box<dyn Device>,
        model: &Model,
        cfg: &TrainConfig,
        train_users: &[u32],
        train_items: &[u32],
        positives: Option<&UserItems>,
    ) -> Result<Self, CudaError> {
        let cap = check_inputs(&model.config, cfg, train_users, train_items, positives)?;
        if dev.precision() != cfg.precision {
            return Err(CudaError::Invalid(format!(
                "the device computes in {}, the run in {}",
                dev.precision().name(),
                cfg.precision.name()
            )));
        }
        let model = DeviceModel::new(dev, model, cap)?;
        let d = model.dev.as_ref();
        let p = model.layout.total;
        let grads = d.alloc::<f32>(p, "gradients")?;
        let m = d.alloc::<f32>(p, "Adam m")?;
        let v = d.alloc::<f32>(p, "Adam v")?;
        let users = d.upload(train_users, "train users")?;
        let items = d.upload(train_items, "train items")?;
        let (offsets, pos_items) = upload_positives(d, positives, &model.cfg)?;
        let loss_sum = d.alloc::<f64>(1, "loss")?;
        let found_inf = d.alloc::<i32>(1, "inf flag")?;
        let sample_err = d.alloc::<u64>(1, "sampler flag")?;
        let queued_loss = d.alloc::<f64>(STATS_EVERY, "queued steps' losses")?;
        d.sync("uploading the model and data")?;
        CudaTrainer {
            model,
            cfg: cfg.clone(),
            grads,
            m,
            v,
            users,
            items,
            offsets,
            pos_items,
            loss_sum,
            found_inf,
            sample_err,
            queued_loss,
            queued: Vec::new(),
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
            ranks: None,
            reduced: None,
            det: None,
            sorted: Default::default(),
            fused: None,
            graph: None,
            replays: 0,
        }
        .with_reductions(ncf_core::train::Reductions::default())
    }

    /// Compute MLP layer 0 this way (models without an MLP ignore it).
    pub fn with_first_layer(mut self, first: FirstLayer) -> Result<Self, CudaError> {
        self.model.set_first_layer(first)?;
        // The deterministic reductions use the factored path's sort when there is one.
        let r = self.reductions();
        self.with_reductions(r)
    }

    /// The first-layer path in use.
    pub fn first_layer(&self) -> FirstLayer {
        self.model.first_layer()
    }

    /// Train data-parallel with the ranks of `group` through NCCL (also with a group of one:
    /// the NCCL path forced). Rank 0's parameters are broadcast to every rank, out of place
    /// (into the all-reduce buffer, then copied), so that it shows on one rank too.
    pub fn with_ranks(mut self, group: ncf_core::dist::Group) -> Result<Self, CudaError> {
        let p = self.model.layout.total;
        let d = self.model.dev.as_ref();
        self.reduced = Some(Reduced {
            grads: d.alloc::<f32>(p, "all-reduced gradients")?,
            loss: d.alloc::<f64>(1, "all-reduced loss")?,
            sample_err: d.alloc::<u64>(1, "all-reduced sampler flag")?,
        });
        let ranks = Ranks::new(group, d)?;
        self.ranks = Some(ranks);
        let sent = match (&self.ranks, &self.reduced) {
            (Some(r), Some(red)) => r
                .broadcast(d, &self.model.params, &red.grads, "the initial parameters")
                .and_then(|_| r.wait(d, "broadcasting the initial parameters"))
                .and_then(|_| d.copy(&red.grads, &self.model.params, "the broadcast parameters")),
            _ => Ok(()),
        };
        if let Err(e) = sent {
            return Err(self.abort_ranks(e));
        }
        Ok(self)
    }

    /// The device it trains on.
    pub fn device(&self) -> &dyn Device {
        self.model.dev.as_ref()
    }

    /// The model on the device.
    pub fn device_model(&self) -> &DeviceModel {
        &self.model
    }

    /// Pointer to the gradient of tensor `name`.
    pub(crate) fn gp(&self, name: &str) -> Ptr<f32> {
        self.grads.at(self.model.layout.range(name).start)
    }

    pub(crate) fn samples_per_epoch(&self) -> u64 {
        self.n_pos * (1 + self.cfg.negatives as u64)
    }

    pub(crate) fn permutation(&mut self, epoch: u32) -> Permutation {
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

    /// The current parameters.
    pub fn params_host(&self) -> Result<Vec<f32>, CudaError> {
        self.model.params_host()
    }

    /// The current gradient buffer (zero between steps).
    pub fn grads_host(&self) -> Result<Vec<f32>, CudaError> {
        self.device()
            .download(&self.grads, self.model.layout.total, "gradients")
    }

    /// After an error with NCCL work possibly queued: abort the communicator (bounded,
    /// [`crate::nccl::comm::Comm::abort_within`]) so that nothing waits on the stream forever,
    /// and say so in the error.
    pub(crate) fn abort_ranks(&mut self, e: CudaError) -> CudaError {
        // Without ranks the optimiser reads the local gradients again.
        self.reduced = None;
        match self.ranks.take() {
            Some(ranks) => CudaError::Invalid(format!("{e}; {}", ranks.abort())),
            None => e,
        }
    }
}

/// Refuse train positives or a configuration the CUDA backend cannot train; returns the batch
/// capacity (samples per step).
fn check_inputs(
    mc: &ModelConfig,
    cfg: &TrainConfig,
    train_users: &[u32],
    train_items: &[u32],
    positives: Option<&UserItems>,
) -> Result<usize, CudaError> {
    if train_users.is_empty() {
        return Err(CudaError::Invalid(
            "train positives: none (need at least one)".into(),
        ));
    }
    ncf_core::train::backend::check_ids(mc, train_users, train_items)
        .map_err(|e| CudaError::Invalid(format!("train positives: {e}")))?;
    if cfg.negative_mode == NegativeMode::Exact && positives.is_none() {
        return Err(CudaError::Invalid(
            "exact negatives need the users' positives".into(),
        ));
    }
    if !cfg.adam_moments.is_f32() {
        return Err(CudaError::Invalid(
            "--adam-moments bf16: the CUDA trainer keeps Adam's moments in f32 (bf16 moments \
             are the CPU trainer's, --device cpu)"
                .into(),
        ));
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
            "an epoch of {per_epoch} samples: the CUDA kernels index an epoch's samples in 32 \
             bits, so it must have fewer than 2^32 (the CPU backend, --device cpu, trains \
             epochs of up to 2^48)"
        )));
    }
    Ok(cap)
}

/// Upload the users' positives (offsets, items) for exact negatives, or one-element
/// placeholders without them; refused when they cover fewer users than the model has.
fn upload_positives(
    d: &dyn Device,
    positives: Option<&UserItems>,
    mc: &ModelConfig,
) -> Result<(Buf<u64>, Buf<u32>), CudaError> {
    if let Some(ui) = positives {
        if ui.n_users() < mc.n_users as usize {
            return Err(CudaError::Invalid(format!(
                "positives cover {} users, the model has {}",
                ui.n_users(),
                mc.n_users
            )));
        }
        return Ok((
            d.upload(&ui.offsets, "positive offsets")?,
            d.upload(&ui.items, "positive items")?,
        ));
    }
    Ok((
        d.alloc::<u64>(1, "positive offsets")?,
        d.alloc::<u32>(1, "positive items")?,
    ))
}

impl Scorer for CudaTrainer {
    fn score(&mut self, users: &[u32], items: &[u32], out: &mut [f32]) -> ncf_core::Result<()> {
        Ok(self.model.score(users, items, out)?)
    }
}

impl Trainer for CudaTrainer {
    fn name(&self) -> String {
        let p = self.cfg.precision.name();
        let first = match self.first_layer() {
            FirstLayer::Factored => ", first layer factored",
            FirstLayer::PerSample => "",
        };
        let first = match self.reductions() {
            ncf_core::train::Reductions::Atomic => format!("{first}, float atomics"),
            ncf_core::train::Reductions::Deterministic => first.to_string(),
        };
        let first = match self.step_kernels() {
            crate::fused::StepKernels::Fused => format!("{first}, fused step"),
            crate::fused::StepKernels::Split => first,
        };
        let d = self.device();
        format!("cuda:{} {} ({p}{first})", d.info().ordinal, d.describe())
    }

    fn step(&mut self, epoch: u32, positions: std::ops::Range<u64>) -> ncf_core::Result<StepStats> {
        Ok(self.train_step(epoch, positions)?)
    }

    fn step_queued(
        &mut self,
        epoch: u32,
        positions: std::ops::Range<u64>,
    ) -> ncf_core::Result<Vec<StepStats>> {
        Ok(self.queue_step(epoch, positions)?)
    }

    fn drain(&mut self) -> ncf_core::Result<Vec<StepStats>> {
        Ok(self.read_queued()?)
    }

    fn model(&mut self) -> ncf_core::Result<Model> {
        Ok(self.model.to_model()?)
    }

    fn save_state(&mut self) -> ncf_core::Result<OptimizerState> {
        self.refuse_queued("saving the optimiser state")?;
        let n = self.model.layout.total;
        let d = self.device();
        Ok(OptimizerState {
            params: self.params_host()?,
            m: d.download(&self.m, n, "Adam first moments")?,
            v: d.download(&self.v, n, "Adam second moments")?,
            steps: self.adam_steps,
            loss_scale: self.loss_scale,
            clean_steps: self.clean_steps,
        })
    }

    fn load_state(&mut self, state: &OptimizerState) -> ncf_core::Result<()> {
        let n = self.model.layout.total;
        if [&state.params, &state.m, &state.v]
            .iter()
            .any(|x| x.len() != n)
        {
            return Err(ncf_core::Error::invalid(format!(
                "optimiser state has {} parameters, the model {n}",
                state.params.len()
            )));
        }
        let d = self.device();
        d.upload_into(&state.params, &self.model.params, "parameters")?;
        d.upload_into(&state.m, &self.m, "Adam first moments")?;
        d.upload_into(&state.v, &self.v, "Adam second moments")?;
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
