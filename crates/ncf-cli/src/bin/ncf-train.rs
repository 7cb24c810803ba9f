//! ncf-train: train NeuMF on a dataset, keep the best model by HR@K.

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use ncf_core::checkpoint;
use ncf_core::dataset::Dataset;
use ncf_core::dist::{self, Group, RankInfo};
use ncf_core::metrics::EvalSet;
use ncf_core::model::{Model, ModelConfig, ModelKind};
use ncf_core::modelfile;
use ncf_core::sampler::{NegativeMode, UserItems};
use ncf_core::train::{self, Holdout, Optimizer, Precision, RunOptions, TrainConfig, Trainer};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Device {
    Cpu,
    Cuda,
    /// CUDA when a GPU is usable, else CPU (with a note on stderr).
    Auto,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Preset {
    /// NVIDIA's DeepLearningExamples NCF defaults for ml-20m.
    NvidiaMl20m,
    /// A recipe for ml-1m sized data.
    Ml1m,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Kind {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Opt {
    Adam,
    Sgd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Prec {
    Fp32,
    Tf32,
    Fp16,
    Bf16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum HoldoutArg {
    Latest,
    Random,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum NegMode {
    Approximate,
    Exact,
}

/// Train NeuMF (or GMF / MLP alone, or biased MF) on a dataset; write the best model by HR@K.
///
/// Input: a dataset directory from ncf-prep with test negatives (ncf-negsample), or `-` for
/// its Arrow IPC stream. Each epoch re-draws the negatives and shuffles (the same samples as
/// `ncf-negsample --epoch E`), trains in batches, then ranks every test user's held-out item
/// among its test negatives. The model with the best HR@K (--save-last: of the last epoch) is
/// written to -o (safetensors with PyTorch NeuMF names, see docs). Stdout: one JSON line per
/// epoch (epoch, loss, hr, ndcg, train_s, eval_s, samples, samples_per_s, ...) and a final
/// summary line (best_hr, best_ndcg, best_epoch, first_epoch_reaching_target,
/// time_to_target_s, train_time_s, ...).
///
/// Defaults are NVIDIA's (= --preset nvidia-ml20m: batch 2^20, Adam lr 0.0045, betas 0.25/0.5,
/// eps 1e-8, factors 64, layers 256,256,128,64, dropout 0.5, 4 approximate negatives, 30 epochs,
/// no target: NVIDIA's --threshold defaults to 1.0; the MLPerf target is --target-hr 0.635 on
/// ml-20m with 999 negatives). --preset ml1m: batch 2^16, lr 0.004, betas 0.9/0.999, 20
/// epochs. Explicit flags override the preset. --validation tunes without the test set: one
/// training interaction per user (the latest when timestamps order the rows) is held out and
/// ranked instead.
///
/// Output schema: safetensors tensors in PyTorch NeuMF names (mf_user_embed.weight,
/// mlp_user_embed.weight, mlp.N.weight/bias, final.weight/bias, ...) plus metadata (model config,
/// dataset fingerprint); stdout JSON lines as above (`ncf-plot curve` draws them), progress on
/// stderr (only on a terminal; -q silences it).
///
/// Exit codes: 0 success (also when stdout is a closed pipe), 1 error (bad or inconsistent input
/// data, impossible request, output exists), 2 usage error (the command line cannot be parsed).
///
/// Example:
///   ncf-prep ratings.csv -o ml && ncf-negsample ml --test-negatives 100
///   ncf-train ml -o model.safetensors --preset ml1m --epochs 10 > log.jsonl
///   ncf-prep ratings.csv -o - | ncf-negsample - --test-negatives 100 -o - \
///     | ncf-train - -o model.safetensors | tee log.jsonl
///   ncf-plot curve log.jsonl -o curve.png
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment, args_override_self = true)]
struct Args {
    /// Dataset directory (from ncf-prep + ncf-negsample), or `-` for an Arrow IPC stream on stdin.
    dataset: PathBuf,
    /// Where the best model is written (safetensors).
    #[arg(short, long, value_name = "MODEL")]
    output: PathBuf,
    /// Replace an existing model file.
    #[arg(long)]
    force: bool,
    #[arg(long, value_enum, default_value = "cpu")]
    device: Device,
    /// GPU to train on (CUDA device ordinal; default: the rank's local rank modulo the GPUs
    /// visible, else 0).
    #[arg(long)]
    gpu: Option<usize>,
    /// CPU threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    #[arg(long, value_enum)]
    precision: Option<Prec>,
    /// Starting values for the flags below.
    #[arg(long, value_enum, default_value = "nvidia-ml20m")]
    preset: Preset,
    #[arg(long)]
    epochs: Option<u32>,
    #[arg(long)]
    batch_size: Option<u64>,
    #[arg(long)]
    lr: Option<f32>,
    #[arg(long)]
    beta1: Option<f32>,
    #[arg(long)]
    beta2: Option<f32>,
    #[arg(long)]
    eps: Option<f32>,
    /// L2 penalty added to every gradient.
    #[arg(long)]
    l2: Option<f32>,
    /// GMF embedding width ("predictive factors").
    #[arg(long)]
    factors: Option<usize>,
    /// MLP widths, input first (the first is twice the MLP embedding width).
    #[arg(long, value_delimiter = ',')]
    layers: Option<Vec<usize>>,
    #[arg(long)]
    dropout: Option<f32>,
    /// Training negatives per positive, re-drawn each epoch.
    #[arg(long)]
    negatives: Option<u32>,
    #[arg(long, value_enum)]
    negative_mode: Option<NegMode>,
    /// Model: neumf (default), gmf, mlp, mf, ials, ease or ease-users.
    ///
    /// mf: dot product plus user, item and global biases trained by one SGD update per sample
    /// (Rendle et al. 2020) on one CPU thread, saved as the equivalent GMF (factors + 2 columns
    /// holding the biases, final weights one). Unless given, mf uses --optimizer sgd --lr 0.002
    /// --l2 0.005 --negatives 8 (their ml-1m recipe); --l2 applies per sample to the rows it
    /// touches, and --batch-size only sets how often progress and checkpoints happen.
    ///
    /// ials: dot product fitted by implicit alternating least squares with frequency-scaled L2
    /// (Rendle et al. 2022) on the CPU threads, saved as a GMF. Every unobserved pair counts
    /// with --unobserved-weight instead of sampled negatives; one epoch solves all users, then
    /// all items. Unless given, ials uses --l2 0.007 --unobserved-weight 0.3 --epochs 16; it
    /// takes no optimiser, learning rate, batch size or negatives flags.
    ///
    /// ease: item-item weights B minimising ‖X − XB‖² + λ‖B‖² with diag(B) = 0, in closed
    /// form (Steck 2019) on the CPU threads, in one epoch; --l2 is λ (default 1000). Saved as a
    /// GMF whose factors are the items (user rows of X, item columns of B; (users + items) ×
    /// items floats). It takes no factors, initialisation, optimiser, batch or negatives flags.
    /// ease-users: the same on the transposed matrix (user-user weights, one factor per user).
    #[arg(long, value_enum, verbatim_doc_comment)]
    model: Option<Kind>,
    /// --model mf / ials: standard deviation of the initial latent factors (default: mf 0.1,
    /// ials 0.1/√factors).
    #[arg(long, value_name = "STD")]
    init_std: Option<f32>,
    /// --model ials: weight α₀ of every unobserved (user, item) pair in the squared loss.
    #[arg(long, value_name = "ALPHA0")]
    unobserved_weight: Option<f32>,
    #[arg(long, value_enum)]
    optimizer: Option<Opt>,
    /// Seed of initialisation, negatives, shuffling and dropout.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// K of HR@K / NDCG@K.
    #[arg(long, default_value_t = 10)]
    topk: usize,
    /// Stop after the first epoch whose HR@K reaches this.
    #[arg(long)]
    target_hr: Option<f64>,
    /// Evaluate on a validation split carved from training instead of the test set.
    #[arg(long)]
    validation: bool,
    /// Seed of the validation split (kept fixed while tuning other things).
    #[arg(long, default_value_t = 0, requires = "validation")]
    validation_seed: u64,
    /// Which training interaction per user --validation holds out: the latest (as the test
    /// split does; needs timestamps) or a random one. Default: latest when the training rows
    /// have timestamps that are not all equal, else random.
    #[arg(long, value_enum, requires = "validation")]
    validation_holdout: Option<HoldoutArg>,
    /// Also append the JSON lines to FILE.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(short, long)]
    quiet: bool,
    /// Directory for training checkpoints (weights, Adam state, position, best so far), written
    /// atomically at every epoch end, every --checkpoint-every steps and on SIGINT/SIGTERM.
    /// Default: MODEL.ckpt beside the model, removed when the run completes; a directory given
    /// here is kept.
    #[arg(long, value_name = "DIR")]
    checkpoint: Option<PathBuf>,
    /// Also checkpoint every N steps within an epoch (0: only at epoch ends).
    #[arg(long, value_name = "N", default_value_t = 0)]
    checkpoint_every: u64,
    /// Write the last epoch's model to -o (replaced after every epoch) instead of the best by
    /// HR@K: for test runs whose epoch count was chosen on --validation, so that the test set
    /// does not pick the model. The report lines and summary are unchanged.
    #[arg(long)]
    save_last: bool,
    /// Write no checkpoints (SIGINT/SIGTERM then stop without one).
    #[arg(long, conflicts_with_all = ["checkpoint", "checkpoint_every", "resume"])]
    no_checkpoint: bool,
    /// Initialise NeuMF from this trained GMF model (with --pretrain-mlp), as the NCF paper
    /// pre-trains: embeddings and MLP copied, final layer [α·GMF ‖ (1−α)·MLP]. Factors and
    /// layers come from the two models.
    #[arg(long, value_name = "MODEL", requires = "pretrain_mlp")]
    pretrain_gmf: Option<PathBuf>,
    /// The trained MLP model for --pretrain-gmf.
    #[arg(long, value_name = "MODEL", requires = "pretrain_gmf")]
    pretrain_mlp: Option<PathBuf>,
    /// Trade-off α between the pre-trained GMF and MLP output layers.
    #[arg(long, default_value_t = 0.5)]
    alpha: f32,
    /// This process's rank in a data-parallel run (default: from mpirun / srun / RANK env).
    #[arg(long, requires = "world_size")]
    rank: Option<usize>,
    /// Number of ranks (default: from the launcher's environment, else 1).
    #[arg(long, requires = "rank")]
    world_size: Option<usize>,
    /// Where rank 0 listens for the others (default: $MASTER_ADDR:$MASTER_PORT, else
    /// 127.0.0.1:29500).
    #[arg(long, value_name = "HOST:PORT")]
    rendezvous: Option<String>,
    /// Seconds to wait for the other ranks at start and for each collective; a rank that
    /// does not arrive or dies is named when it expires.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    rendezvous_timeout: f64,
    /// CUDA: all-reduce through NCCL even on one rank (checks the multi-GPU code path on one
    /// GPU; with several ranks NCCL is always used).
    #[arg(long)]
    nccl: bool,
    /// Continue the run whose checkpoint is in DIR (same dataset and flags; --epochs and
    /// --target-hr may change). Later checkpoints go to DIR too. The model file of the
    /// interrupted run is kept and replaced only by better epochs.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
}

struct Recipe {
    cfg: TrainConfig,
    factors: usize,
    layers: Vec<usize>,
    dropout: f32,
}

fn preset(p: Preset, seed: u64, topk: usize) -> Recipe {
    let nvidia = TrainConfig {
        topk,
        ..TrainConfig::nvidia(seed)
    };
    let layers = vec![256, 256, 128, 64];
    match p {
        Preset::NvidiaMl20m => Recipe {
            cfg: nvidia,
            factors: 64,
            layers,
            dropout: 0.5,
        },
        Preset::Ml1m => Recipe {
            cfg: TrainConfig {
                epochs: 20,
                batch_size: 1 << 16,
                lr: 0.004, // tuned on a validation split: scripts/tune-ml1m.sh, BENCHMARKS.md
                beta1: 0.9,
                beta2: 0.999,
                ..nvidia
            },
            factors: 64,
            layers,
            dropout: 0.5,
        },
    }
}

/// A file that gets every JSON line stdout gets.
struct Tee<A: Write, B: Write>(A, Option<B>);

impl<A: Write, B: Write> Write for Tee<A, B> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(buf)?;
        if let Some(b) = &mut self.1 {
            b.write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()?;
        if let Some(b) = &mut self.1 {
            b.flush()?;
        }
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    ncf_cli::main_with("ncf-train", run)
}

fn run(a: Args) -> Result<()> {
    let r = preset(a.preset, a.seed, a.topk);
    let mut cfg = r.cfg;
    let mf = a.model == Some(Kind::Mf);
    let ials = a.model == Some(Kind::Ials);
    let ease = matches!(a.model, Some(Kind::Ease | Kind::EaseUsers));
    if ials || ease {
        let what = if ials {
            "--model ials solves each epoch exactly by least squares over every pair".to_string()
        } else {
            format!(
                "--model {} is fitted in closed form over every pair",
                ease_name(a.model)
            )
        };
        for (given, flag) in [
            (a.batch_size.is_some(), "--batch-size"),
            (a.negatives.is_some(), "--negatives"),
            (a.negative_mode.is_some(), "--negative-mode"),
            (a.optimizer.is_some(), "--optimizer"),
            (a.lr.is_some(), "--lr"),
            (
                a.beta1.is_some() || a.beta2.is_some() || a.eps.is_some(),
                "--beta1/--beta2/--eps",
            ),
            (a.layers.is_some(), "--layers"),
            (a.dropout.is_some_and(|d| d != 0.0), "--dropout"),
        ] {
            if given {
                bail!("{flag}: {what} (no optimiser, batches, sampled negatives or MLP)");
            }
        }
        cfg.negatives = 0;
        // One step per epoch (an epoch has fewer than 2^32 samples).
        cfg.batch_size = 1 << 32;
        cfg.optimizer = Optimizer::Sgd;
    }
    if ease {
        let side = ease_side(a.model);
        let (name, per) = (side.model_name(), side.unit());
        for (given, flag) in [
            (a.factors.is_some(), "--factors"),
            (a.init_std.is_some(), "--init-std"),
            (a.epochs.is_some_and(|e| e != 1), "--epochs"),
        ] {
            if given {
                bail!(
                    "{flag}: --model {name} has one factor per {per} and is fitted exactly in \
                     one epoch from nothing (only --l2 sets it)"
                );
            }
        }
        // A closed-form fit has nothing to resume, and its checkpoint would hold three copies
        // of a model of (users + items) × width floats.
        for (given, flag) in [
            (a.checkpoint.is_some(), "--checkpoint"),
            (a.checkpoint_every != 0, "--checkpoint-every"),
            (a.resume.is_some(), "--resume"),
        ] {
            if given {
                bail!(
                    "{flag}: --model {name} is fitted in closed form in one step; it writes no \
                     checkpoint (rerun it instead of resuming: same bits)"
                );
            }
        }
        cfg.l2 = ncf_core::cpu::ease::DEFAULT_REG;
        cfg.epochs = 1;
    }
    if ials {
        use ncf_core::cpu::ials;
        // Rendle et al.'s ml-1m setting; --l2, --epochs and --unobserved-weight still win below.
        cfg.l2 = ials::DEFAULT_REG;
        cfg.unobserved_weight = a
            .unobserved_weight
            .unwrap_or(ials::DEFAULT_UNOBSERVED_WEIGHT);
        cfg.epochs = ials::DEFAULT_EPOCHS;
    } else if a.unobserved_weight.is_some() {
        bail!("--unobserved-weight is for --model ials");
    }
    if mf {
        // Rendle et al.'s ml-1m recipe; explicit flags still win below.
        cfg.optimizer = Optimizer::Sgd;
        cfg.lr = 0.002;
        cfg.l2 = 0.005;
        cfg.negatives = 8;
        if a.dropout.is_some_and(|d| d != 0.0) {
            bail!("--dropout: --model mf has no MLP to drop units from");
        }
    } else if a.init_std.is_some() && !ials && !ease {
        bail!(
            "--init-std is for --model mf and ials (the other models use NVIDIA's initialisation)"
        );
    }
    cfg.epochs = a.epochs.unwrap_or(cfg.epochs);
    cfg.batch_size = a.batch_size.unwrap_or(cfg.batch_size);
    cfg.lr = a.lr.unwrap_or(cfg.lr);
    cfg.beta1 = a.beta1.unwrap_or(cfg.beta1);
    cfg.beta2 = a.beta2.unwrap_or(cfg.beta2);
    cfg.eps = a.eps.unwrap_or(cfg.eps);
    cfg.l2 = a.l2.unwrap_or(cfg.l2);
    cfg.negatives = a.negatives.unwrap_or(cfg.negatives);
    cfg.target_hr = a.target_hr.or(cfg.target_hr);
    if let Some(m) = a.negative_mode {
        cfg.negative_mode = match m {
            NegMode::Approximate => NegativeMode::Approximate,
            NegMode::Exact => NegativeMode::Exact,
        };
    }
    if let Some(o) = a.optimizer {
        cfg.optimizer = match o {
            Opt::Adam => Optimizer::Adam,
            Opt::Sgd => Optimizer::Sgd,
        };
    }
    if let Some(p) = a.precision {
        cfg.precision = match p {
            Prec::Fp32 => Precision::Fp32,
            Prec::Tf32 => Precision::Tf32,
            Prec::Fp16 => Precision::Fp16,
            Prec::Bf16 => Precision::Bf16,
        };
    }
    train::check_config(&cfg)?;
    if ncf_core::io::is_stdio(&a.output) {
        bail!("-o -: the model needs a file (it is rewritten after every better epoch)");
    }
    let env = |k: &str| std::env::var(k).ok();
    let ranks = match (a.rank, a.world_size) {
        (Some(r), Some(w)) => RankInfo::new(r, w, r, "--rank/--world-size")?,
        _ => RankInfo::from_env(env)?.unwrap_or_else(RankInfo::single),
    };
    let lead = ranks.rank == 0;
    if lead && a.output.exists() && !a.force && a.resume.is_none() {
        bail!(
            "{}: output already exists (use --force to replace it)",
            a.output.display()
        );
    }
    if let Some(t) = cfg.target_hr {
        if !(0.0..=1.0).contains(&t) {
            bail!("--target-hr must be in [0, 1]");
        }
    }

    let data = Dataset::load_any(&a.dataset)?;
    let fingerprint = data
        .meta
        .as_ref()
        .map(|m| m.fingerprint.clone())
        .unwrap_or_default();
    let split_fingerprint = data.split_fingerprint();
    let (train_data, eval, eval_name) = if a.validation {
        let holdout = a.validation_holdout.map(|h| match h {
            HoldoutArg::Latest => Holdout::Latest,
            HoldoutArg::Random => Holdout::Random,
        });
        let (t, e) = train::default_validation(&data, a.validation_seed, holdout)?;
        (t, e, "validation")
    } else {
        let e = EvalSet::from_test(&data)
            .with_context(|| format!("{}: cannot evaluate", a.dataset.display()))?;
        (data, e, "test")
    };
    eval.check_k(cfg.topk).context("--topk")?;

    let kind = match a.model.unwrap_or(Kind::Neumf) {
        Kind::Neumf => ModelKind::Neumf,
        Kind::Gmf => ModelKind::Gmf,
        Kind::Mlp => ModelKind::Mlp,
        Kind::Mf | Kind::Ials | Kind::Ease | Kind::EaseUsers => ModelKind::Gmf,
    };
    let mc = ModelConfig {
        kind,
        n_users: train_data.n_users,
        n_items: train_data.n_items,
        factors: a.factors.unwrap_or(r.factors),
        layers: a.layers.clone().unwrap_or(r.layers),
        dropout: a.dropout.unwrap_or(r.dropout),
    };
    let model = match (&a.pretrain_gmf, &a.pretrain_mlp) {
        (None, None) if mf => {
            let std = a.init_std.unwrap_or(ncf_core::cpu::mf::DEFAULT_INIT_STD);
            ncf_core::cpu::mf::init(mc.n_users, mc.n_items, mc.factors, std, cfg.seed)?
        }
        (None, None) if ials => {
            use ncf_core::cpu::ials;
            let std = a.init_std.unwrap_or(ials::default_init_std(mc.factors));
            ials::init(mc.n_users, mc.n_items, mc.factors, std, cfg.seed)?
        }
        (None, None) if ease => {
            ncf_core::cpu::ease::init(mc.n_users, mc.n_items, ease_side(a.model))?
        }
        (None, None) => Model::init(mc, cfg.seed)?,
        (Some(g), Some(m)) => {
            if kind != ModelKind::Neumf || mf || ials || ease {
                bail!("--pretrain-gmf/--pretrain-mlp initialise a NeuMF model (--model neumf)");
            }
            let load = |p: &PathBuf| -> Result<Model> {
                let (model, meta) = modelfile::load(p)?;
                let (nu, ni) = (train_data.n_users, train_data.n_items);
                modelfile::check_fingerprint(&meta, &fingerprint, nu, ni)
                    .with_context(|| format!("{}: cannot pre-train from it", p.display()))?;
                Ok(model)
            };
            let (gmf, mlp) = (load(g)?, load(m)?);
            let nm = Model::neumf_from_pretrained(&gmf, &mlp, a.alpha, mc.dropout).with_context(
                || format!("pre-training from {} and {}", g.display(), m.display()),
            )?;
            if a.factors.is_some_and(|f| f != nm.config.factors)
                || a.layers.as_ref().is_some_and(|l| *l != nm.config.layers)
            {
                bail!(
                    "--factors/--layers differ from the pre-trained models' ({} and {:?})",
                    nm.config.factors,
                    nm.config.layers
                );
            }
            nm
        }
        _ => bail!("pre-training needs both --pretrain-gmf and --pretrain-mlp"),
    };

    let device = match a.device {
        Device::Auto if mf || ials || ease => Device::Cpu,
        Device::Cuda if mf => {
            bail!("--model mf trains on the CPU only (its per-example SGD is sequential)")
        }
        Device::Cuda if ials => bail!("--model ials trains on the CPU only"),
        Device::Cuda if ease => bail!("--model {} is fitted on the CPU only", ease_name(a.model)),
        Device::Auto => match ncf_cuda::available() {
            Ok(_) => Device::Cuda,
            Err(e) => {
                eprintln!("ncf-train: note: {e}; training on the CPU");
                Device::Cpu
            }
        },
        d => d,
    };
    if a.nccl && device != Device::Cuda {
        bail!("--nccl is for --device cuda (CPU ranks exchange gradients over TCP)");
    }
    // CUDA: one GPU per rank (the local rank picks it, modulo the GPUs this process sees, unless
    // --gpu does); the precision is settled before the ranks compare their configurations.
    let gpu = if device == Device::Cuda {
        let ordinal = match a.gpu {
            Some(g) => g,
            None => ranks.local_rank % ncf_cuda::available()?.device_count.max(1),
        };
        let info = ncf_cuda::probe(ordinal)?;
        if a.precision.is_none() {
            cfg.precision = if info.capability.0 >= 8 {
                Precision::Tf32
            } else {
                Precision::Fp32
            };
        }
        Some(ordinal)
    } else {
        None
    };
    // The ranks' group (TCP rendezvous): gradients on CPU, bootstrap and host sums on CUDA.
    let group = if ranks.world > 1 || (a.nccl && device == Device::Cuda) {
        let digest = format!(
            "{fingerprint} {} {} {}",
            serde_json::to_string(&cfg)?,
            serde_json::to_string(&model.config)?,
            eval.digest()
        );
        let addr = a
            .rendezvous
            .clone()
            .unwrap_or_else(|| dist::rendezvous_from_env(env));
        if !(a.rendezvous_timeout.is_finite() && a.rendezvous_timeout > 0.0) {
            bail!("--rendezvous-timeout must be positive");
        }
        let timeout = std::time::Duration::from_secs_f64(a.rendezvous_timeout);
        Some(Group::connect(ranks.clone(), &addr, timeout, &digest)?)
    } else {
        None
    };
    let mut trainer: Box<dyn Trainer> = match gpu {
        None => cpu_trainer(model, &cfg, &train_data, a.threads, group, a.model)?,
        Some(ordinal) => cuda_trainer(model, &cfg, ordinal, &train_data, group)?,
    };
    let log = match &a.log {
        Some(p) if lead => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| p.display().to_string())?,
        ),
        _ => None,
    };
    // Only rank 0 reports, writes the model and checkpoints.
    let stdout: Box<dyn Write> = if lead {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::io::sink())
    };
    let mut out = Tee(stdout, log);
    let resume = match &a.resume {
        Some(dir) => {
            let (meta, state) = checkpoint::load(dir)?;
            let mc = trainer.model()?.config;
            if let Some(why) = meta.mismatch(&mc, &cfg, &fingerprint, eval_name, &eval.digest()) {
                bail!(
                    "{}: cannot resume from this checkpoint: {why}",
                    checkpoint::file_in(dir).display()
                );
            }
            if meta.backend != trainer.name() {
                eprintln!(
                    "ncf-train: note: the checkpoint was written by {}, this run is {}: results \
                     may differ from an uninterrupted run in the last bits",
                    meta.backend,
                    trainer.name()
                );
            }
            Some((meta, state))
        }
        None => None,
    };
    let default_dir = PathBuf::from(format!("{}.ckpt", a.output.display()));
    let checkpoint_dir = match (&a.resume, &a.checkpoint, a.no_checkpoint) {
        (_, _, true) => None,
        _ if !lead || ease => None,
        (Some(d), _, _) | (None, Some(d), _) => Some(d.clone()),
        (None, None, false) => Some(default_dir.clone()),
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal ends the process at once (exit 1).
        signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(sig, stop.clone()))
            .context("installing the signal handlers")?;
    }
    let resume_hint = match &checkpoint_dir {
        Some(d) => format!(
            "continue with the same command plus --resume {}",
            d.display()
        ),
        None => "rerun without --no-checkpoint to be able to resume".to_string(),
    };
    let opts = RunOptions {
        progress: !a.quiet && ncf_cli::stderr_is_tty(),
        checkpoint_dir: checkpoint_dir.as_deref(),
        checkpoint_every: a.checkpoint_every,
        resume,
        stop: Some(&stop),
        resume_hint,
        split_fingerprint: Some(split_fingerprint),
        save_last: a.save_last,
        ..RunOptions::new(&eval, eval_name, lead.then_some(&a.output), fingerprint)
    };
    if opts.progress {
        eprintln!("ncf-train: {} on {}", trainer.name(), a.dataset.display());
    }
    train::run(trainer.as_mut(), &cfg, &train_data, &opts, &mut out)?;
    // A completed run needs no checkpoint unless one was asked for.
    if lead && checkpoint_dir.as_deref() == Some(default_dir.as_path()) && a.checkpoint.is_none() {
        let _ = std::fs::remove_file(checkpoint::file_in(&default_dir));
        let _ = std::fs::remove_dir(&default_dir);
    }
    Ok(())
}

/// The CUDA backend on GPU `ordinal` (its precision already settled: without an explicit
/// `--precision`, TF32 on GPUs that have it, compute capability 8.0+, as NVIDIA's NCF does, else
/// FP32), joined to the other ranks through NCCL when `group` is given.
fn cuda_trainer(
    model: Model,
    cfg: &TrainConfig,
    ordinal: usize,
    data: &Dataset,
    group: Option<Group>,
) -> Result<Box<dyn Trainer>> {
    let positives = (cfg.negative_mode == NegativeMode::Exact)
        .then(|| UserItems::new(data.n_users, &data.train_users, &data.train_items));
    let t = ncf_cuda::CudaTrainer::new(
        ordinal,
        model,
        cfg,
        &data.train_users,
        &data.train_items,
        positives.as_ref(),
    )?;
    Ok(match group {
        Some(g) => Box::new(t.with_ranks(g)?),
        None => Box::new(t),
    })
}

/// The `--model` name of an EASE kind.
fn ease_name(kind: Option<Kind>) -> &'static str {
    ease_side(kind).model_name()
}

/// EASE's neighbourhood for `--model ease` / `ease-users`.
fn ease_side(kind: Option<Kind>) -> ncf_core::cpu::ease::Side {
    match kind {
        Some(Kind::EaseUsers) => ncf_core::cpu::ease::Side::Users,
        _ => ncf_core::cpu::ease::Side::Items,
    }
}

/// The CPU backend; `--model mf`, `ials` and `ease` have their own trainers (one rank only).
fn cpu_trainer(
    model: Model,
    cfg: &TrainConfig,
    data: &Dataset,
    threads: Option<usize>,
    group: Option<Group>,
    kind: Option<Kind>,
) -> Result<Box<dyn Trainer>> {
    if cfg.precision != Precision::Fp32 {
        bail!(
            "--precision {:?}: the CPU backend computes in fp32 only",
            cfg.precision
        );
    }
    let threads = threads
        .unwrap_or_else(ncf_core::cpu::default_threads)
        .max(1);
    let positives = (cfg.negative_mode == NegativeMode::Exact)
        .then(|| UserItems::new(data.n_users, &data.train_users, &data.train_items));
    let (users, items) = (data.train_users.clone(), data.train_items.clone());
    match kind {
        Some(Kind::Mf) => {
            if group.is_some() {
                bail!("--model mf trains on one rank (its per-example SGD is sequential)");
            }
            let t =
                ncf_core::cpu::mf::MfTrainer::new(model, cfg, users, items, positives, threads)?;
            return Ok(Box::new(t));
        }
        Some(Kind::Ials) => {
            if group.is_some() {
                bail!("--model ials trains on one rank (its threads share the machine's cores)");
            }
            let t = ncf_core::cpu::ials::IalsTrainer::new(model, cfg, &users, &items, threads)?;
            return Ok(Box::new(t));
        }
        Some(Kind::Ease | Kind::EaseUsers) => {
            if group.is_some() {
                bail!(
                    "--model {} is fitted on one rank (its threads share the machine's cores)",
                    ease_name(kind)
                );
            }
            let side = ease_side(kind);
            let t =
                ncf_core::cpu::ease::EaseTrainer::new(model, cfg, &users, &items, side, threads)?;
            return Ok(Box::new(t));
        }
        _ => {}
    }
    let t = ncf_core::cpu::CpuTrainer::new(model, cfg, users, items, positives, threads)?;
    Ok(match group {
        Some(g) => Box::new(t.with_group(g)?),
        None => Box::new(t),
    })
}
