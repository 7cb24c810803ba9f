//! What a family can do, declared once in its spec ([`super::FamilySpec::capabilities`]), and
//! the one check that turns every declaration into ncf-train's refusals: flags, devices, ranks,
//! precisions and checkpoints.

use super::{Choices, Family};
use crate::train::config::{Precision, TrainConfig};
use crate::{Error, Result};

/// A recipe flag of `ncf-train` that a family may refuse, or that only some families take
/// ([`Flag::ONLY_SOME`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    BatchSize,
    Negatives,
    NegativeMode,
    Optimizer,
    Lr,
    /// `--beta1`, `--beta2` and `--eps` (Adam's).
    Adam,
    Layers,
    /// A dropout above 0 (a model without an MLP has 0).
    Dropout,
    Factors,
    /// An epoch count other than 1.
    Epochs,
    Checkpoint,
    CheckpointEvery,
    Resume,
    InitStd,
    UnobservedWeight,
    IalsSolver,
    /// `--pretrain-gmf` with `--pretrain-mlp`.
    Pretrained,
    /// `--adam-moments` other than f32 (the CPU NeuMF/GMF/MLP trainer keeps them in BF16).
    AdamMoments,
}

impl Flag {
    /// The flags only the families that list them in [`Capabilities::takes`] take; every family
    /// takes the others unless it refuses them.
    pub const ONLY_SOME: [Flag; 5] = [
        Flag::UnobservedWeight,
        Flag::IalsSolver,
        Flag::InitStd,
        Flag::Pretrained,
        Flag::AdamMoments,
    ];

    /// The flags of mini-batch SGD with sampled negatives and an MLP, which a model fitted
    /// exactly per epoch (iALS, EASE) takes no meaning from.
    pub const SGD_RECIPE: &'static [Flag] = &[
        Flag::BatchSize,
        Flag::Negatives,
        Flag::NegativeMode,
        Flag::Optimizer,
        Flag::Lr,
        Flag::Adam,
        Flag::Layers,
        Flag::Dropout,
    ];

    /// How the user types it.
    pub fn name(self) -> &'static str {
        match self {
            Flag::BatchSize => "--batch-size",
            Flag::Negatives => "--negatives",
            Flag::NegativeMode => "--negative-mode",
            Flag::Optimizer => "--optimizer",
            Flag::Lr => "--lr",
            Flag::Adam => "--beta1/--beta2/--eps",
            Flag::Layers => "--layers",
            Flag::Dropout => "--dropout",
            Flag::Factors => "--factors",
            Flag::Epochs => "--epochs",
            Flag::Checkpoint => "--checkpoint",
            Flag::CheckpointEvery => "--checkpoint-every",
            Flag::Resume => "--resume",
            Flag::InitStd => "--init-std",
            Flag::UnobservedWeight => "--unobserved-weight",
            Flag::IalsSolver => "--ials-solver",
            Flag::Pretrained => "--pretrain-gmf/--pretrain-mlp",
            Flag::AdamMoments => "--adam-moments",
        }
    }

    /// Whether `c` gives it (with a value that asks for something).
    pub fn given(self, c: &Choices) -> bool {
        match self {
            Flag::BatchSize => c.batch_size.is_some(),
            Flag::Negatives => c.negatives.is_some(),
            Flag::NegativeMode => c.negative_mode.is_some(),
            Flag::Optimizer => c.optimizer.is_some(),
            Flag::Lr => c.lr.is_some(),
            Flag::Adam => c.beta1.is_some() || c.beta2.is_some() || c.eps.is_some(),
            Flag::Layers => c.layers.is_some(),
            Flag::Dropout => c.dropout.is_some_and(|d| d != 0.0),
            Flag::Factors => c.factors.is_some(),
            Flag::Epochs => c.epochs.is_some_and(|e| e != 1),
            Flag::Checkpoint => c.checkpoint,
            Flag::CheckpointEvery => c.checkpoint_every,
            Flag::Resume => c.resume,
            Flag::InitStd => c.init_std.is_some(),
            Flag::UnobservedWeight => c.unobserved_weight.is_some(),
            Flag::IalsSolver => c.ials_solver.is_some(),
            Flag::Pretrained => c.pretrained,
            Flag::AdamMoments => c.adam_moments.is_some_and(|m| !m.is_f32()),
        }
    }
}

/// FP32, the one precision of the CPU trainers.
pub const FP32: &[Precision] = &[Precision::Fp32];

/// What a family can do. Each `why` finishes a sentence about the family, as the refusals
/// print it: `--model mf trains on the CPU only (WHY)`, `--dropout: --model mf WHY`.
#[derive(Clone, Debug)]
pub struct Capabilities {
    /// `Some(why)`: it trains on the CPU only; `None`: on a device backend too
    /// ([`super::DeviceBackend`]).
    pub cpu_only: Option<String>,
    /// `Some(why)`: it trains on one rank; `None`: data-parallel on any number.
    pub one_rank: Option<String>,
    /// The precisions it computes in on the CPU (a device backend checks its own).
    pub cpu_precisions: &'static [Precision],
    /// `Some(why)`: it writes no checkpoint, so it takes none of the checkpoint flags; `None`:
    /// it writes them and resumes from them.
    pub no_checkpoints: Option<String>,
    /// Of [`Flag::ONLY_SOME`], the flags it takes.
    pub takes: &'static [Flag],
    /// The flags it takes no meaning from, in groups, each with why.
    pub refuses: Vec<(&'static [Flag], String)>,
}

impl Default for Capabilities {
    /// Any device and number of ranks, FP32 on the CPU, checkpoints, no flag of
    /// [`Flag::ONLY_SOME`] and no refusal.
    fn default() -> Self {
        Capabilities {
            cpu_only: None,
            one_rank: None,
            cpu_precisions: FP32,
            no_checkpoints: None,
            takes: &[],
            refuses: Vec::new(),
        }
    }
}

impl Capabilities {
    /// Refuse the first flag of `c` that family `name` does not take: `--flag: --model NAME
    /// why` where it says why, and for [`Flag::ONLY_SOME`] which families take it.
    pub fn check_flags(&self, name: &str, c: &Choices) -> Result<()> {
        let checkpoint_flags = [Flag::Checkpoint, Flag::CheckpointEvery, Flag::Resume];
        let mut groups: Vec<(&[Flag], &str)> = self
            .refuses
            .iter()
            .map(|(f, why)| (*f, why.as_str()))
            .collect();
        if let Some(why) = &self.no_checkpoints {
            groups.push((&checkpoint_flags, why));
        }
        for (flags, why) in groups {
            if let Some(f) = flags.iter().find(|f| f.given(c)) {
                let mut msg = format!("{}: --model {name} {why}", f.name());
                if Flag::ONLY_SOME.contains(f) {
                    msg += &format!("; {}", only_for(*f));
                }
                return Err(Error::usage(msg));
            }
        }
        match Flag::ONLY_SOME
            .iter()
            .find(|f| f.given(c) && !self.takes.contains(f))
        {
            Some(f) => Err(Error::usage(only_for(*f))),
            None => Ok(()),
        }
    }

    /// Why family `name` cannot train on a device backend (`None`: it can).
    pub fn cpu_only_refusal(&self, name: &str) -> Option<String> {
        let why = self.cpu_only.as_ref()?;
        Some(format!("--model {name} trains on the CPU only ({why})"))
    }

    /// Refuse a run of family `name` with `cfg` on the CPU (`cpu`) or a device, on several
    /// ranks when `ranked`.
    pub fn check_run(&self, name: &str, cfg: &TrainConfig, cpu: bool, ranked: bool) -> Result<()> {
        if let (true, Some(why)) = (ranked, &self.one_rank) {
            return Err(Error::usage(format!(
                "--model {name} trains on one rank ({why})"
            )));
        }
        if !cpu {
            if let Some(why) = self.cpu_only_refusal(name) {
                return Err(Error::usage(why));
            }
        } else if !self.cpu_precisions.contains(&cfg.precision) {
            let names: Vec<&str> = self.cpu_precisions.iter().map(|p| p.name()).collect();
            return Err(Error::usage(format!(
                "--precision {}: the CPU backend computes in {} only",
                cfg.precision,
                names.join(" and ")
            )));
        }
        Ok(())
    }
}

/// `--flag is for --model a and b`: the families that take `flag`.
fn only_for(flag: Flag) -> String {
    let takers: Vec<&str> = Family::ALL
        .iter()
        .map(|f| f.spec())
        .filter(|s| s.capabilities().takes.contains(&flag))
        .map(|s| s.name())
        .collect();
    let list = match takers.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => "no model".to_string(),
    };
    format!("{} is for --model {list}", flag.name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::four_users;
    use crate::family::{Backend, DeviceBackend, Family::*};
    use crate::model::Model;
    use crate::sampling::sampler::{NegativeMode, UserItems};
    use crate::train::config::Preset;
    use crate::train::Trainer;

    fn refusal(f: Family, c: &Choices) -> String {
        f.plan(Preset::Ml1m, 1, 10, c).unwrap_err().to_string()
    }

    #[test]
    fn flag_refusals_come_from_the_declarations() {
        let alpha = Choices {
            unobserved_weight: Some(0.5),
            ..Choices::default()
        };
        for f in [Neumf, Gmf, Mlp, Mf, Ease, EaseUsers] {
            assert_eq!(
                refusal(f, &alpha),
                "--unobserved-weight is for --model ials"
            );
        }
        let plan = Ials.plan(Preset::Ml1m, 1, 10, &alpha).unwrap();
        assert_eq!(plan.cfg.family.ials.unobserved_weight, 0.5);
        let std = Choices {
            init_std: Some(0.1),
            ..Choices::default()
        };
        assert_eq!(
            refusal(Gmf, &std),
            "--init-std: --model gmf uses NVIDIA's initialisation; --init-std is for --model mf \
             and ials"
        );
        assert_eq!(
            refusal(EaseUsers, &std),
            "--init-std: --model ease-users has one factor per user and is fitted exactly in one \
             epoch from nothing (only --l2 sets it); --init-std is for --model mf and ials"
        );
        assert!(Mf.plan(Preset::Ml1m, 1, 10, &std).is_ok());
        let pretrained = Choices {
            pretrained: true,
            ..Choices::default()
        };
        assert_eq!(
            refusal(Mlp, &pretrained),
            "--pretrain-gmf/--pretrain-mlp is for --model neumf"
        );
        let lr = Choices {
            lr: Some(0.1),
            ..Choices::default()
        };
        assert_eq!(
            refusal(Ials, &lr),
            "--lr: --model ials solves each epoch exactly by least squares over every pair (no \
             optimiser, batches, sampled negatives or MLP)"
        );
        let resume = Choices {
            resume: true,
            ..Choices::default()
        };
        assert!(refusal(Ease, &resume)
            .starts_with("--resume: --model ease is fitted in closed form in one step; it writes"));
        let dropout = |d| Choices {
            dropout: Some(d),
            ..Choices::default()
        };
        assert_eq!(
            refusal(Mf, &dropout(0.5)),
            "--dropout: --model mf has no MLP to drop units from"
        );
        assert!(Mf.plan(Preset::Ml1m, 1, 10, &dropout(0.0)).is_ok());
        let one_epoch = Choices {
            epochs: Some(1),
            ..Choices::default()
        };
        assert!(Ease.plan(Preset::Ml1m, 1, 10, &one_epoch).is_ok());
    }

    /// A device backend that says what reached it.
    struct Probe;

    impl DeviceBackend for Probe {
        fn neumf_trainer(
            &self,
            _model: Model,
            _cfg: &TrainConfig,
            _data: &crate::data::dataset::Dataset,
            positives: Option<&UserItems>,
            group: Option<crate::dist::Group>,
        ) -> Result<Box<dyn Trainer>> {
            Err(Error::invalid(format!(
                "probe: positives of {:?} users, grouped {}",
                positives.map(|p| p.n_users()),
                group.is_some()
            )))
        }
    }

    #[test]
    fn runs_are_checked_against_devices_ranks_and_precisions() {
        let data = four_users();
        let device_only = |f: Family| f.spec().cpu_only().is_none();
        let on_devices: Vec<Family> = Family::ALL
            .into_iter()
            .filter(|&f| device_only(f))
            .collect();
        assert_eq!(on_devices, [Neumf, Gmf, Mlp]);
        let checkpointing: Vec<bool> = Family::ALL.iter().map(|f| f.spec().checkpoints()).collect();
        assert_eq!(checkpointing, [true, true, true, true, true, false, false]);
        let build = |f: Family, backend: Backend, exact: bool, precision| {
            let mut plan = f.plan(Preset::Ml1m, 1, 10, &Choices::default()).unwrap();
            plan.cfg.precision = precision;
            if exact {
                plan.cfg.negative_mode = NegativeMode::Exact;
            }
            let spec = f.spec();
            let model = spec.init(&plan, data.n_users, data.n_items).unwrap();
            spec.trainer(model, &plan.cfg, &data, backend, None)
                .err()
                .map(|e| e.to_string())
        };
        // NeuMF builds its trainer on the device, with the positives exact negatives need.
        let device = Backend::Device(&Probe);
        let e = build(Neumf, device, true, Precision::Bf16);
        assert_eq!(
            e.unwrap(),
            "probe: positives of Some(4) users, grouped false"
        );
        let e = build(Gmf, device, false, Precision::Fp32);
        assert_eq!(e.unwrap(), "probe: positives of None users, grouped false");
        // MF never reaches it; the CPU computes in FP32 only.
        let e = build(Mf, device, false, Precision::Fp32).unwrap();
        assert_eq!(
            e,
            "--model mf trains on the CPU only (its per-example SGD is sequential)"
        );
        let cpu = Backend::Cpu {
            threads: 1,
            first_layer: None,
        };
        assert_eq!(build(Mf, cpu, false, Precision::Fp32), None);
        let e = build(Neumf, cpu, false, Precision::Bf16).unwrap();
        assert_eq!(e, "--precision bf16: the CPU backend computes in fp32 only");
        let caps = Ials.spec().capabilities();
        let cfg = TrainConfig::nvidia(1);
        let e = caps.check_run("ials", &cfg, true, true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--model ials trains on one rank (its threads share the machine's cores)"
        );
        assert!(Neumf
            .spec()
            .capabilities()
            .check_run("neumf", &cfg, true, true)
            .is_ok());
    }
}
