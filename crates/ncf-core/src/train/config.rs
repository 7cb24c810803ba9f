//! What a training run computes, independent of the backend: [`TrainConfig`] (optimiser,
//! batching, negatives, precision, evaluation cut-off) and the presets every tool starts from.

use crate::family::FamilyParams;
use crate::sampling::sampler::NegativeMode;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Numeric precision of a backend's compute (the CPU backend is always FP32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Tf32,
    Fp16,
    Bf16,
}

impl Precision {
    pub const ALL: [Precision; 4] = [
        Precision::Fp32,
        Precision::Tf32,
        Precision::Fp16,
        Precision::Bf16,
    ];

    /// The name users type (`--precision bf16`) and reports show.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Fp16 => "fp16",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    Adam,
    Sgd,
}

/// How Adam keeps its two moments: FP32 (NVIDIA's recipe, the default) or BF16 (half the
/// optimiser's memory: at MLPerf's ml-20mx16x32 NeuMF's moments are 4.7 GB in FP32, 2.3 GB in
/// BF16). The update itself is computed in FP32 either way; BF16 rounds each moment to nearest
/// even when it is stored (CPU backend only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Moments {
    #[default]
    F32,
    Bf16,
}

impl Moments {
    /// FP32 (what configurations written before the choice existed mean).
    pub fn is_f32(&self) -> bool {
        *self == Moments::F32
    }
}

/// Samples per optimiser step: a number of samples, or the whole epoch in one step (models
/// fitted exactly per epoch: iALS, EASE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchSize {
    Samples(u64),
    WholeEpoch,
}

/// How [`BatchSize::WholeEpoch`] is spelled in model files and checkpoints: a batch larger than
/// any epoch (epochs have fewer than 2^32 samples), as files written before the type existed.
const WHOLE_EPOCH_IN_FILES: u64 = 1 << 32;

impl BatchSize {
    /// Samples in the steps of an epoch of `epoch_len` samples (the last may be shorter).
    pub fn per_step(self, epoch_len: u64) -> u64 {
        match self {
            BatchSize::Samples(n) => n,
            BatchSize::WholeEpoch => epoch_len.max(1),
        }
    }

    /// The number of samples, `None` for a whole-epoch step.
    pub fn samples(self) -> Option<u64> {
        match self {
            BatchSize::Samples(n) => Some(n),
            BatchSize::WholeEpoch => None,
        }
    }
}

impl Serialize for BatchSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            BatchSize::Samples(n) => s.serialize_u64(*n),
            BatchSize::WholeEpoch => s.serialize_u64(WHOLE_EPOCH_IN_FILES),
        }
    }
}

impl<'de> Deserialize<'de> for BatchSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        Ok(if n >= WHOLE_EPOCH_IN_FILES {
            BatchSize::WholeEpoch
        } else {
            BatchSize::Samples(n)
        })
    }
}

/// Everything that decides what a training run computes (backend-independent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub seed: u64,
    pub epochs: u32,
    /// Samples per optimiser step (global, across ranks).
    pub batch_size: BatchSize,
    /// Negatives per positive, re-drawn every epoch.
    pub negatives: u32,
    pub negative_mode: NegativeMode,
    pub optimizer: Optimizer,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Adam's moments in FP32 or BF16; written to files only when not FP32 (so files of FP32
    /// runs keep their bytes).
    #[serde(default, skip_serializing_if = "Moments::is_f32")]
    pub adam_moments: Moments,
    /// L2 penalty on all parameters (added to the gradient), 0 as NVIDIA.
    pub l2: f32,
    /// The parameters a family owns beyond the shared ones above (iALS's α₀), set by its spec
    /// alone; flattened, so files keep the keys they have always had.
    #[serde(flatten)]
    pub family: FamilyParams,
    pub precision: Precision,
    /// Evaluation cut-off K of HR@K / NDCG@K.
    pub topk: usize,
    /// Stop after the first epoch whose HR@K reaches this.
    pub target_hr: Option<f64>,
}

impl TrainConfig {
    /// NVIDIA's NCF recipe for ml-20m: Adam lr 0.0045, betas 0.25/0.5, eps 1e-8, batch 2^20,
    /// 4 approximate negatives per positive, 30 epochs, FP32, HR@10, no target. Every preset
    /// and tool starts from this one definition.
    pub fn nvidia(seed: u64) -> TrainConfig {
        TrainConfig {
            adam_moments: Default::default(),
            seed,
            epochs: 30,
            batch_size: BatchSize::Samples(1 << 20),
            negatives: 4,
            negative_mode: NegativeMode::Approximate,
            optimizer: Optimizer::Adam,
            lr: 0.0045,
            beta1: 0.25,
            beta2: 0.5,
            eps: 1e-8,
            l2: 0.0,
            family: FamilyParams::default(),
            precision: Precision::Fp32,
            topk: 10,
            target_hr: None,
        }
    }
}

/// The starting values of `ncf-train`'s flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Preset {
    /// NVIDIA's DeepLearningExamples NCF defaults for ml-20m.
    NvidiaMl20m,
    /// A recipe for ml-1m sized data.
    Ml1m,
}

/// The widths of a NeuMF-family model a recipe trains (the dataset gives users and items).
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    pub factors: usize,
    pub layers: Vec<usize>,
    pub dropout: f32,
}

/// A preset's training configuration and model shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    pub cfg: TrainConfig,
    pub shape: Shape,
}

impl Preset {
    pub fn recipe(self, seed: u64, topk: usize) -> Recipe {
        let nvidia = TrainConfig {
            topk,
            ..TrainConfig::nvidia(seed)
        };
        let shape = Shape {
            factors: 64,
            layers: vec![256, 256, 128, 64],
            dropout: 0.5,
        };
        match self {
            Preset::NvidiaMl20m => Recipe { cfg: nvidia, shape },
            Preset::Ml1m => Recipe {
                cfg: TrainConfig {
                    epochs: 20,
                    batch_size: BatchSize::Samples(1 << 16),
                    lr: 0.004, // tuned on a validation split: scripts/tune-ml1m.sh, BENCHMARKS.md
                    beta1: 0.9,
                    beta2: 0.999,
                    ..nvidia
                },
                shape,
            },
        }
    }
}

/// Check a configuration before any work is done.
pub fn check_config(cfg: &TrainConfig) -> Result<()> {
    if cfg.epochs == 0 {
        return Err(Error::usage("--epochs must be at least 1"));
    }
    if cfg.batch_size == BatchSize::Samples(0) {
        return Err(Error::usage("--batch-size must be at least 1"));
    }
    if cfg.topk == 0 {
        return Err(Error::usage("--topk must be at least 1"));
    }
    if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        return Err(Error::usage("--lr must be a positive number"));
    }
    if !(0.0..1.0).contains(&cfg.beta1) || !(0.0..1.0).contains(&cfg.beta2) {
        return Err(Error::usage("--beta1 and --beta2 must be in [0, 1)"));
    }
    if !(cfg.eps.is_finite() && cfg.eps > 0.0) {
        // Adam divides by sqrt(v) + eps: with 0 a parameter whose gradient is 0 becomes 0/0.
        return Err(Error::usage(format!(
            "--eps {}: must be a number > 0 (Adam divides by sqrt(v) + eps; the recipes use 1e-8)",
            cfg.eps
        )));
    }
    if cfg.adam_moments != Moments::F32 && cfg.optimizer != Optimizer::Adam {
        return Err(Error::usage(
            "--adam-moments bf16 is how Adam keeps its moments: --optimizer sgd keeps none",
        ));
    }
    if !(cfg.l2.is_finite() && cfg.l2 >= 0.0) {
        return Err(Error::usage("--l2 must be a non-negative number"));
    }
    if cfg.negatives == 0 && cfg.batch_size != BatchSize::WholeEpoch {
        return Err(Error::usage(
            "--negatives 0: the model would see positives only and learn to score every pair 1; \
             give at least 1 (NVIDIA's recipe: 4), or use --model ials or ease, which weigh every \
             unobserved pair instead of sampling negatives",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_size_keeps_the_file_spelling() {
        let j = |b: BatchSize| serde_json::to_string(&b).unwrap();
        assert_eq!(j(BatchSize::Samples(1 << 20)), "1048576");
        assert_eq!(j(BatchSize::WholeEpoch), "4294967296");
        let back = |s: &str| serde_json::from_str::<BatchSize>(s).unwrap();
        assert_eq!(back("4294967296"), BatchSize::WholeEpoch);
        assert_eq!(back("65536"), BatchSize::Samples(65536));
        assert_eq!(BatchSize::WholeEpoch.per_step(77), 77);
        assert_eq!(BatchSize::Samples(10).per_step(77), 10);
    }

    #[test]
    fn family_parameters_keep_their_file_keys() {
        // Every model file and checkpoint has carried `unobserved_weight` where it stands.
        let mut cfg = TrainConfig::nvidia(1);
        let text = serde_json::to_string(&cfg).unwrap();
        assert!(
            text.contains(r#""l2":0.0,"unobserved_weight":0.0,"precision":"fp32""#),
            "{text}"
        );
        cfg.family.ials.unobserved_weight = 0.3;
        let text = serde_json::to_string(&cfg).unwrap();
        assert!(text.contains(r#""unobserved_weight":0.3,"#), "{text}");
        assert_eq!(serde_json::from_str::<TrainConfig>(&text).unwrap(), cfg);
        // Files written before iALS came have no key: α₀ is 0.
        let old = text.replace(r#""unobserved_weight":0.3,"#, "");
        let back: TrainConfig = serde_json::from_str(&old).unwrap();
        assert_eq!(back.family, FamilyParams::default());
        // --ials-solver: recorded unless exact, so that files written before it (which name
        // none) read as exact, the only solver there was; a resume compares it.
        assert!(!text.contains("ials_solver"), "{text}");
        cfg.family.ials.solver = crate::family::ials::Solver::Cg;
        let text = serde_json::to_string(&cfg).unwrap();
        assert!(text.contains(r#""ials_solver":"cg","#), "{text}");
        assert_eq!(serde_json::from_str::<TrainConfig>(&text).unwrap(), cfg);
        let old = text.replace(r#""ials_solver":"cg","#, "");
        let back: TrainConfig = serde_json::from_str(&old).unwrap();
        assert_eq!(back.family.ials.solver, crate::family::ials::Solver::Exact);
    }
}
