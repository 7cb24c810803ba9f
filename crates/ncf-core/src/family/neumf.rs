//! The NCF paper's models: NeuMF (GMF + MLP joined by the final layer, NVIDIA's model), GMF
//! alone and the MLP alone. NVIDIA's initialisation, Adam or SGD in mini-batches, dropout in
//! the MLP; they train on the CPU ([`crate::neumf_cpu`]) and on GPUs (`ncf-cuda`, through the
//! [`DeviceBackend`] the tool passes in), on any number of ranks, and NeuMF can start from a
//! trained GMF and MLP ([`from_pretrained`]).

use super::{
    positives_for, require_model_memory, require_model_memory_plus, Capabilities, Choices,
    DeviceBackend, FamilySpec, Flag, Plan, ADAM_COPIES,
};
use crate::data::dataset::Dataset;
use crate::dist::Group;
use crate::model::{Model, ModelConfig, ModelKind};
use crate::neumf_cpu::{CpuTrainer, FirstLayer};
use crate::train::config::{Moments, Shape, TrainConfig};
use crate::train::Trainer;
use crate::{Error, Result};

/// NeuMF, GMF or MLP, by the kind of model it trains.
pub struct Neumf(pub ModelKind);

impl FamilySpec for Neumf {
    fn name(&self) -> &'static str {
        match self.0 {
            ModelKind::Neumf => "neumf",
            ModelKind::Gmf => "gmf",
            ModelKind::Mlp => "mlp",
        }
    }

    fn kind(&self) -> ModelKind {
        self.0
    }

    /// Any device and number of ranks; NeuMF alone starts from pre-trained models.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            takes: match self.0 {
                ModelKind::Neumf => &[Flag::Pretrained, Flag::AdamMoments],
                _ => &[Flag::AdamMoments],
            },
            refuses: vec![(&[Flag::InitStd], "uses NVIDIA's initialisation".into())],
            ..Capabilities::default()
        }
    }

    fn defaults(&self, _cfg: &mut TrainConfig, _shape: &mut Shape, _c: &Choices) {}

    fn init(&self, plan: &Plan, n_users: u32, n_items: u32) -> Result<Model> {
        let config = model_config(self.0, &plan.shape, n_users, n_items);
        config.validate()?;
        let flags = format!("--model {} {}", self.name(), config.shape_flags());
        require_model_memory(&flags, &config, ADAM_COPIES, "")?;
        Model::init(config, plan.cfg.seed)
    }

    fn cpu_trainer(
        &self,
        model: Model,
        cfg: &TrainConfig,
        data: &Dataset,
        threads: usize,
        group: Option<Group>,
    ) -> Result<Box<dyn Trainer>> {
        self.cpu_trainer_first_layer(model, cfg, data, threads, FirstLayer::Factored, group)
    }

    fn cpu_trainer_first_layer(
        &self,
        model: Model,
        cfg: &TrainConfig,
        data: &Dataset,
        threads: usize,
        first: FirstLayer,
        group: Option<Group>,
    ) -> Result<Box<dyn Trainer>> {
        // The CPU trainer keeps the parameters, two Adam moments (FP32: two copies, BF16:
        // one) and a checkpoint's three FP32 copies; gradients: on one rank by slot of each
        // thread's distinct rows (bounded by its share of the batch), across ranks a dense
        // vector per thread.
        let (c, threads) = (&model.config, threads.max(1));
        let moments = match cfg.adam_moments {
            Moments::F32 => 2,
            Moments::Bf16 => 1,
        };
        let ranks = group.as_ref().map_or(1, |g| g.world());
        let (copies, extra, grads) = if ranks == 1 {
            let share = cfg.batch_size.samples().unwrap_or(u64::MAX) / threads as u64 + 1;
            let rows = (c.n_users as u64 + c.n_items as u64).min(share.saturating_mul(2));
            // Per slot: GMF and MLP embedding gradients, and the factored first layer's
            // gathered embedding, projection and aggregate.
            let width = c.layers.get(1).copied().unwrap_or(0) as u64;
            let factored = match first {
                FirstLayer::Factored => c.mlp_embed() as u64 + 2 * width,
                FirstLayer::PerSample => 0,
            };
            let per_slot = c.factors as u64 + c.mlp_embed() as u64 + factored;
            let bytes = rows
                .saturating_mul(per_slot * 4)
                .saturating_mul(threads as u64);
            (
                1 + moments + 3,
                bytes,
                format!("{threads} threads' gradients by row"),
            )
        } else {
            (
                1 + moments + 3 + threads as u64,
                0,
                format!("a gradient per thread ({threads})"),
            )
        };
        let held = format!(
            "with {grads}, Adam's moments ({}) and a checkpoint's copies",
            match cfg.adam_moments {
                Moments::F32 => "f32",
                Moments::Bf16 => "bf16",
            }
        );
        require_model_memory_plus(
            &format!("--model {} {}", self.name(), c.shape_flags()),
            c,
            (copies, extra, &held),
            ", or fewer --threads",
        )?;
        let positives = positives_for(cfg, data);
        // Mapped columns are shared, not copied: the trainer keeps per-user offsets, not a
        // user per row.
        let (users, items) = (data.train_users.clone(), data.train_items.clone());
        let t = CpuTrainer::on_columns(model, cfg, users, items, positives, threads)?
            .with_first_layer(first);
        Ok(match group {
            Some(g) => Box::new(t.with_group(g)?),
            None => Box::new(t),
        })
    }

    fn device_trainer(
        &self,
        model: Model,
        cfg: &TrainConfig,
        data: &Dataset,
        device: &dyn DeviceBackend,
        group: Option<Group>,
    ) -> Result<Box<dyn Trainer>> {
        let positives = positives_for(cfg, data);
        device.neumf_trainer(model, cfg, data, positives.as_ref(), group)
    }
}

/// The model configuration of `kind` in `shape` for `n_users × n_items`.
pub fn model_config(kind: ModelKind, shape: &Shape, n_users: u32, n_items: u32) -> ModelConfig {
    ModelConfig {
        kind,
        n_users,
        n_items,
        factors: shape.factors,
        layers: shape.layers.clone(),
        dropout: shape.dropout,
    }
}

/// NeuMF initialised from a trained GMF and MLP ([`Model::neumf_from_pretrained`], trade-off
/// `alpha`, the plan's dropout); factors and layers come from the two models, so explicit
/// `--factors` / `--layers` must agree with them.
pub fn from_pretrained(
    gmf: &Model,
    mlp: &Model,
    alpha: f32,
    plan: &Plan,
    c: &Choices,
) -> Result<Model> {
    let nm = Model::neumf_from_pretrained(gmf, mlp, alpha, plan.shape.dropout)?;
    if c.factors.is_some_and(|f| f != nm.config.factors)
        || c.layers.as_ref().is_some_and(|l| *l != nm.config.layers)
    {
        return Err(Error::usage(format!(
            "--factors/--layers differ from the pre-trained models' ({} and {:?})",
            nm.config.factors, nm.config.layers
        )));
    }
    Ok(nm)
}
