//! The model families `ncf-train --model` trains, each in one place: its defaults, its own
//! parameters, what it can do, how its model starts and how it builds its trainer. Binaries ask
//! the family ([`Family::spec`]) instead of branching on kinds.
//!
//! - [`neumf`]: NeuMF, GMF and MLP (the NCF paper's models; CPU and CUDA, any number of ranks);
//! - [`mf`]: Rendle et al.'s biased MF by per-example SGD; [`ials`]: implicit ALS; [`ease`]:
//!   Steck's closed-form EASE. All three run on the CPU, on one rank, and are saved as GMF
//!   files, so every tool scores them.
//!
//! A family declares once what it can do ([`Capabilities`]: devices, ranks, CPU precisions,
//! checkpoints, the flags it takes and refuses); one check turns that into every refusal
//! ([`capabilities`]). Its own parameters ([`FamilyParams`]: iALS's α₀) are set by its spec
//! alone, from the flags only it takes, and ride in the run's [`TrainConfig`] so that model
//! files and checkpoints record them.
//!
//! A family builds its trainer for any device (`<dyn FamilySpec>::trainer`): on the CPU from
//! ncf-core, elsewhere through a [`DeviceBackend`] the tool passes in as [`Backend::Device`].
//! ncf-core cannot depend on ncf-cuda, so ncf-cli implements that trait over ncf-cuda's
//! trainer; the family decides what to build on it (NeuMF: each user's positives for exact
//! negatives, then the device's NeuMF trainer), and the run is checked against the family's
//! capabilities first, so a CPU-only family never reaches a device.

pub mod capabilities;
pub mod ease;
pub mod ials;
pub mod mf;
pub mod neumf;

pub use capabilities::{Capabilities, Flag};

use crate::data::dataset::Dataset;
use crate::dist::Group;
use crate::model::{Model, ModelConfig, ModelKind, Side};
use crate::neumf_cpu::{score_checked, FirstLayer};
use crate::sampling::sampler::{NegativeMode, UserItems};
use crate::train::checkpoint::OptimizerState;
use crate::train::config::{
    check_config, BatchSize, Moments, Optimizer, Precision, Preset, Shape, TrainConfig,
};
use crate::train::{Scorer, StepStats, Trainer};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// `ncf-train --model`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Family {
    Neumf,
    Gmf,
    Mlp,
    /// Matrix factorisation with biases by per-example SGD (Rendle et al. 2020), CPU only;
    /// saved as the equivalent GMF.
    Mf,
    /// Matrix factorisation by implicit alternating least squares (Rendle et al. 2022), CPU
    /// only; saved as a GMF.
    Ials,
    /// The item-item linear model EASE (Steck 2019), fitted in closed form on the CPU; saved
    /// as a GMF with one factor per item.
    Ease,
    /// EASE on the transposed matrix: user-user weights, closed form on the CPU; saved as a
    /// GMF with one factor per user.
    EaseUsers,
}

/// The parameters a family owns beyond the shared recipe: each set by its family's spec alone,
/// from the flags only it takes ([`Capabilities::takes`]), and read by its trainer; the other
/// families leave them at their defaults. [`TrainConfig::family`] carries them flattened, so
/// model files and checkpoints record them beside the shared keys, as they always have.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FamilyParams {
    /// iALS's ([`ials::Params`]: α₀).
    #[serde(flatten)]
    pub ials: ials::Params,
}

/// What the user set explicitly on the command line (`None` / `false`: not given, so the
/// preset's or the family's default applies).
#[derive(Clone, Debug, Default)]
pub struct Choices {
    pub epochs: Option<u32>,
    pub batch_size: Option<u64>,
    pub lr: Option<f32>,
    pub beta1: Option<f32>,
    pub beta2: Option<f32>,
    pub eps: Option<f32>,
    pub l2: Option<f32>,
    pub negatives: Option<u32>,
    pub negative_mode: Option<NegativeMode>,
    pub optimizer: Option<Optimizer>,
    pub adam_moments: Option<Moments>,
    pub precision: Option<Precision>,
    pub target_hr: Option<f64>,
    pub factors: Option<usize>,
    pub layers: Option<Vec<usize>>,
    pub dropout: Option<f32>,
    pub init_std: Option<f32>,
    pub unobserved_weight: Option<f32>,
    pub ials_solver: Option<ials::Solver>,
    /// `--checkpoint DIR` given.
    pub checkpoint: bool,
    /// `--checkpoint-every N` with N > 0.
    pub checkpoint_every: bool,
    /// `--resume DIR` given.
    pub resume: bool,
    /// `--pretrain-gmf` and `--pretrain-mlp` given.
    pub pretrained: bool,
}

/// A run's settled configuration: the preset, then the family's defaults, then the explicit
/// choices, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub cfg: TrainConfig,
    pub shape: Shape,
    /// `--init-std` where the family takes it.
    pub init_std: Option<f32>,
}

/// Where a family's trainer runs: the CPU with `threads` threads, or a device backend.
#[derive(Clone, Copy)]
pub enum Backend<'a> {
    /// `first_layer`: how the MLP's first layer is computed (`--first-layer`; None: the
    /// trainer's default, factored). Only families with an MLP take it.
    Cpu {
        threads: usize,
        first_layer: Option<FirstLayer>,
    },
    Device(&'a dyn DeviceBackend),
}

/// A backend beyond the CPU, passed in by the tool that has one: ncf-core cannot depend on
/// ncf-cuda, so ncf-cli implements this over ncf-cuda's trainer (crates/ncf-cli/src/backend.rs),
/// and a family whose capabilities name devices builds its trainer through it
/// ([`FamilySpec::device_trainer`]). One method per such family.
pub trait DeviceBackend {
    /// Its trainer of the NeuMF, GMF or MLP `model` on `data`'s training rows (`positives`:
    /// each user's, for exact negatives), joined to `group` when several ranks train.
    fn neumf_trainer(
        &self,
        model: Model,
        cfg: &TrainConfig,
        data: &Dataset,
        positives: Option<&UserItems>,
        group: Option<Group>,
    ) -> Result<Box<dyn Trainer>>;
}

/// What a family is; one implementation per family, in this module's files.
pub trait FamilySpec: Sync {
    /// Its `--model` name.
    fn name(&self) -> &'static str;
    /// The kind of model file it writes (MF, iALS and EASE are stored as GMF files).
    fn kind(&self) -> ModelKind {
        ModelKind::Gmf
    }
    /// What it can do, declared once: every refusal of its flags, devices, ranks, precisions
    /// and checkpoints comes from this.
    fn capabilities(&self) -> Capabilities;
    /// The family's defaults on top of the preset's `cfg` and `shape`, and its own parameters
    /// ([`FamilyParams`]) from the flags only it takes. Runs after `c` is checked against its
    /// capabilities and before the explicit choices are applied.
    fn defaults(&self, cfg: &mut TrainConfig, shape: &mut Shape, c: &Choices);
    /// The starting model of `n_users × n_items` (pre-training is [`neumf::from_pretrained`]).
    fn init(&self, plan: &Plan, n_users: u32, n_items: u32) -> Result<Model>;
    /// Its CPU trainer on `data`'s training rows, with `threads` threads, joined to `group`
    /// when several ranks train (the run already checked: `<dyn FamilySpec>::trainer`).
    fn cpu_trainer(
        &self,
        model: Model,
        cfg: &TrainConfig,
        data: &Dataset,
        threads: usize,
        group: Option<Group>,
    ) -> Result<Box<dyn Trainer>>;
    /// [`FamilySpec::cpu_trainer`] computing the MLP's first layer as asked (`--first-layer`):
    /// only the NeuMF, GMF and MLP families take it.
    fn cpu_trainer_first_layer(
        &self,
        _model: Model,
        _cfg: &TrainConfig,
        _data: &Dataset,
        _threads: usize,
        _first: FirstLayer,
        _group: Option<Group>,
    ) -> Result<Box<dyn Trainer>> {
        Err(Error::usage(format!(
            "--first-layer is how NeuMF, GMF and MLP compute their MLP's first layer: --model {} \
             has none",
            self.name()
        )))
    }
    /// Its trainer on `device` (the run already checked). Only a family whose capabilities
    /// name devices gets here, and it must override this; the default refuses.
    fn device_trainer(
        &self,
        _model: Model,
        _cfg: &TrainConfig,
        _data: &Dataset,
        _device: &dyn DeviceBackend,
        _group: Option<Group>,
    ) -> Result<Box<dyn Trainer>> {
        Err(Error::usage(format!(
            "--model {} has no trainer on a device backend",
            self.name()
        )))
    }
}

/// What every family gets from its capabilities.
impl<'a> dyn FamilySpec + 'a {
    /// Why it cannot train on a GPU (`None`: it can).
    pub fn cpu_only(&self) -> Option<String> {
        self.capabilities().cpu_only_refusal(self.name())
    }

    /// Whether a run writes checkpoints (a closed-form fit has nothing to resume).
    pub fn checkpoints(&self) -> bool {
        self.capabilities().no_checkpoints.is_none()
    }

    /// Its trainer of `model` on `data`'s training rows on `backend`, joined to `group` when
    /// several ranks train: the run checked against its capabilities (ranks, device, the CPU's
    /// precisions), then built by the family.
    pub fn trainer(
        &self,
        model: Model,
        cfg: &TrainConfig,
        data: &Dataset,
        backend: Backend<'_>,
        group: Option<Group>,
    ) -> Result<Box<dyn Trainer>> {
        let cpu = matches!(backend, Backend::Cpu { .. });
        self.capabilities()
            .check_run(self.name(), cfg, cpu, group.is_some())?;
        match backend {
            Backend::Cpu {
                threads,
                first_layer: None,
            } => self.cpu_trainer(model, cfg, data, threads, group),
            Backend::Cpu {
                threads,
                first_layer: Some(f),
            } => self.cpu_trainer_first_layer(model, cfg, data, threads, f, group),
            Backend::Device(device) => self.device_trainer(model, cfg, data, device, group),
        }
    }
}

impl Family {
    pub const ALL: [Family; 7] = [
        Family::Neumf,
        Family::Gmf,
        Family::Mlp,
        Family::Mf,
        Family::Ials,
        Family::Ease,
        Family::EaseUsers,
    ];

    pub fn spec(self) -> &'static dyn FamilySpec {
        match self {
            Family::Neumf => &neumf::Neumf(ModelKind::Neumf),
            Family::Gmf => &neumf::Neumf(ModelKind::Gmf),
            Family::Mlp => &neumf::Neumf(ModelKind::Mlp),
            Family::Mf => &mf::Mf,
            Family::Ials => &ials::Ials,
            Family::Ease => &ease::Ease(Side::Item),
            Family::EaseUsers => &ease::Ease(Side::User),
        }
    }

    /// The configuration of a run of this family: the flags checked against its capabilities,
    /// `preset`'s recipe, the family's defaults, then every explicit choice, checked
    /// ([`check_config`]).
    pub fn plan(self, preset: Preset, seed: u64, topk: usize, c: &Choices) -> Result<Plan> {
        let spec = self.spec();
        spec.capabilities().check_flags(spec.name(), c)?;
        let recipe = preset.recipe(seed, topk);
        let (mut cfg, mut shape) = (recipe.cfg, recipe.shape);
        spec.defaults(&mut cfg, &mut shape, c);
        cfg.epochs = c.epochs.unwrap_or(cfg.epochs);
        if let Some(b) = c.batch_size {
            cfg.batch_size = BatchSize::Samples(b);
        }
        cfg.lr = c.lr.unwrap_or(cfg.lr);
        cfg.beta1 = c.beta1.unwrap_or(cfg.beta1);
        cfg.beta2 = c.beta2.unwrap_or(cfg.beta2);
        cfg.eps = c.eps.unwrap_or(cfg.eps);
        cfg.l2 = c.l2.unwrap_or(cfg.l2);
        cfg.negatives = c.negatives.unwrap_or(cfg.negatives);
        // Every backend keeps 1 + negatives (the samples per positive) in 32 bits.
        if cfg.negatives == u32::MAX {
            return Err(Error::usage(format!(
                "--negatives {}: an epoch has positives × (1 + negatives) samples and 1 + \
                 negatives must fit in 32 bits, so at most 4294967294 (NVIDIA's recipe: 4)",
                cfg.negatives
            )));
        }
        cfg.target_hr = c.target_hr.or(cfg.target_hr);
        cfg.negative_mode = c.negative_mode.unwrap_or(cfg.negative_mode);
        cfg.optimizer = c.optimizer.unwrap_or(cfg.optimizer);
        cfg.adam_moments = c.adam_moments.unwrap_or(cfg.adam_moments);
        cfg.precision = c.precision.unwrap_or(cfg.precision);
        check_config(&cfg)?;
        if let Some(f) = c.factors {
            shape.factors = f;
        }
        if let Some(l) = &c.layers {
            shape.layers = l.clone();
        }
        if let Some(d) = c.dropout {
            shape.dropout = d;
        }
        Ok(Plan {
            cfg,
            shape,
            init_std: c.init_std,
        })
    }
}

/// Each user's training items, when exact negatives need them.
pub fn positives_for(cfg: &TrainConfig, data: &Dataset) -> Option<UserItems> {
    (cfg.negative_mode == NegativeMode::Exact)
        .then(|| UserItems::of_train(data.n_users, &data.train_users, &data.train_items))
}

/// The defaults of a family fitted exactly per epoch (iALS, EASE): no optimiser, batches or
/// sampled negatives (it refuses [`Flag::SGD_RECIPE`]).
fn whole_epoch_defaults(cfg: &mut TrainConfig) {
    cfg.negatives = 0;
    cfg.batch_size = BatchSize::WholeEpoch;
    cfg.optimizer = Optimizer::Sgd;
}

/// Refuse a model of `config` when `copies` floats per parameter (`held`: what they are) do not
/// fit in memory ([`crate::memory::require`]), before any is allocated; the size is computed
/// with overflow checks. `flags` is how the user asked for it (`--model mf --factors 64`),
/// `advice` a way out besides smaller widths. Every family's `init` calls it with
/// [`TRAINING_COPIES`]; a CPU trainer again with its per-thread buffers.
pub fn require_model_memory(
    flags: &str,
    config: &ModelConfig,
    (copies, held): (u64, &str),
    advice: &str,
) -> Result<()> {
    require_model_memory_plus(flags, config, (copies, 0, held), advice)
}

/// [`require_model_memory`] with `extra` bytes beside the copies (a trainer's buffers that
/// follow the batch, not the model).
pub fn require_model_memory_plus(
    flags: &str,
    config: &ModelConfig,
    (copies, extra, held): (u64, u64, &str),
    advice: &str,
) -> Result<()> {
    let model = format!(
        "{flags} for {} users × {} items",
        config.n_users, config.n_items
    );
    let floats = config.checked_total().ok_or_else(|| {
        Error::usage(format!(
            "{model}: the model's size overflows 64 bits; give smaller widths"
        ))
    })?;
    let bytes = floats
        .checked_mul(4)
        .and_then(|b| b.checked_mul(copies))
        .and_then(|b| b.checked_add(extra))
        .unwrap_or(u64::MAX);
    crate::memory::require(
        bytes,
        &format!("this model ({model}: {floats} parameters, {held})"),
        &format!(
            "give smaller widths (each embedding table is users × width and items × width \
             floats){advice}"
        ),
    )
}

/// Floats per parameter a NeuMF/GMF/MLP run holds at least, on any backend, and what they are:
/// the parameters, their gradients and the two Adam moments (on a GPU: the host's copy of the
/// parameters and, when a checkpoint is written, of all three).
pub const ADAM_COPIES: (u64, &str) = (4, "each with a gradient and two Adam moments");
/// The same for the families without moments (MF, iALS): the parameters, and a checkpoint's
/// copy of them and of the two moment slots its format keeps.
pub const MOMENT_FREE_COPIES: (u64, &str) = (4, "with a checkpoint's copy and two moment slots");

/// The shape of the model of a family stored as a GMF: `factors` wide, no MLP.
fn gmf_config(n_users: u32, n_items: u32, factors: usize) -> ModelConfig {
    ModelConfig {
        kind: ModelKind::Gmf,
        n_users,
        n_items,
        factors,
        layers: vec![],
        dropout: 0.0,
    }
}

/// The state of a CPU trainer that keeps no optimiser moments: its model, the threads it scores
/// (and fits) with, and the steps (updates, sweeps, fits) taken, the checkpoint's step count.
pub(crate) struct Fitted {
    pub model: Model,
    pub threads: usize,
    pub steps: u64,
}

impl Fitted {
    pub fn new(model: Model, threads: usize) -> Self {
        Fitted {
            model,
            threads: threads.max(1),
            steps: 0,
        }
    }
}

/// A CPU trainer that keeps no optimiser moments (per-example SGD, ALS, closed form): its
/// [`Fitted`] state is all there is, scored as a GMF on the CPU. Implementing this gives
/// [`Trainer`] and [`Scorer`].
pub(crate) trait MomentFree {
    /// [`Trainer::name`].
    fn backend_name(&self) -> String;
    /// [`Trainer::step`].
    fn fit_step(&mut self, epoch: u32, positions: std::ops::Range<u64>) -> Result<StepStats>;
    fn fitted(&self) -> &Fitted;
    fn fitted_mut(&mut self) -> &mut Fitted;
    /// `Err` when `params` (from a checkpoint) cannot be this trainer's model.
    fn accept(&self, _params: &[f32]) -> Result<()> {
        Ok(())
    }
    /// Called when a checkpoint has replaced the parameters: drop what was computed from them.
    fn state_loaded(&mut self) {}
}

impl<T: MomentFree> Scorer for T {
    fn score(&mut self, users: &[u32], items: &[u32], out: &mut [f32]) -> Result<()> {
        let f = self.fitted();
        score_checked(&f.model, users, items, out, f.threads)
    }
}

impl<T: MomentFree> Trainer for T {
    fn name(&self) -> String {
        self.backend_name()
    }

    fn step(&mut self, epoch: u32, positions: std::ops::Range<u64>) -> Result<StepStats> {
        self.fit_step(epoch, positions)
    }

    fn model(&mut self) -> Result<Model> {
        Ok(self.fitted().model.clone())
    }

    /// The parameters, zero moment slots (the format keeps them) and the steps.
    fn save_state(&mut self) -> Result<OptimizerState> {
        let f = self.fitted();
        let params = &f.model.params;
        Ok(OptimizerState {
            params: params.clone(),
            m: vec![0.0; params.len()],
            v: vec![0.0; params.len()],
            steps: f.steps,
            loss_scale: 1.0,
            clean_steps: 0,
        })
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<()> {
        let n = self.fitted().model.params.len();
        if state.params.len() != n {
            return Err(Error::invalid(format!(
                "optimiser state has {} parameters, the model {n}",
                state.params.len()
            )));
        }
        self.accept(&state.params)?;
        let f = self.fitted_mut();
        f.model.params.copy_from_slice(&state.params);
        f.steps = state.steps;
        self.state_loaded();
        Ok(())
    }
}

/// For trainers that take a whole epoch in one step (iALS, EASE): `Err` unless `positions` is
/// the epoch's `0..n` (`what`: how the trainer works, the start of the message).
pub(crate) fn check_whole_epoch(
    positions: &std::ops::Range<u64>,
    n: u64,
    what: &str,
) -> Result<()> {
    if *positions != (0..n) {
        return Err(Error::invalid(format!(
            "{what} at once: positions {}..{} of {n} (one step per epoch)",
            positions.start, positions.end
        )));
    }
    Ok(())
}
