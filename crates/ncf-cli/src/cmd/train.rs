//! `ncf-train`'s flags and run: the plan of its family, the ranks and their group, the outputs
//! claimed for the run, the model (fresh or pre-trained), the backend, resume and signals, then
//! `ncf_core::train::run`. The binary is `main` over [`run`].

use crate::args::{DeviceArgs, ValidationArgs};
use crate::backend::{self, Chosen};
use anyhow::{bail, Context, Result};
use clap::Parser;
use ncf_core::data::dataset::Dataset;
use ncf_core::dist::{self, Group, RankInfo};
use ncf_core::eval::metrics::EvalSet;
use ncf_core::family::{neumf, Choices, Family, FamilySpec, Plan};
use ncf_core::io::{claim_output, OutputLock};
use ncf_core::model::{file as modelfile, Model};
use ncf_core::neumf_cpu::FirstLayer;
use ncf_core::sampling::sampler::NegativeMode;
use ncf_core::train::checkpoint::{self, CheckpointMeta, OptimizerState};
use ncf_core::train::{
    self, LogFile, Moments, Optimizer, Precision, Preset, Reductions, Reports, RunOptions,
    StepKernels, TrainConfig, Trainer,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

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
#[command(
    version,
    verbatim_doc_comment,
    args_override_self = true,
    allow_negative_numbers = true
)]
pub struct Args {
    /// Dataset directory (from ncf-prep + ncf-negsample), or `-` for an Arrow IPC stream on stdin.
    dataset: PathBuf,
    /// Where the best model is written (safetensors).
    #[arg(short, long, value_name = "MODEL")]
    output: PathBuf,
    /// Replace an existing model file.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    device: DeviceArgs,
    /// CPU threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// How MLP layer 0 is computed: factored over the step's distinct users and items (the
    /// CPU's default: a GEMM per distinct row instead of per sample; no float atomics on CUDA)
    /// or per sample (a GEMM over the batch: CUDA's default until a device run confirms the
    /// factored kernels; on the CPU the leaner choice when a step's distinct rows outnumber its
    /// samples, as at MLPerf's ml-20mx16x32, where factoring holds ~2 GB per thread).
    #[arg(long, value_enum, value_name = "PATH", alias = "cuda-first-layer")]
    first_layer: Option<FirstLayer>,
    /// CUDA: how a step's sums over many samples are made (embedding, GMF and bias gradients,
    /// the final layer's weights, the loss): deterministic (samples sorted by user and item,
    /// per-block partials added in block order: the same bits every run; the default) or atomic
    /// (float atomics, the kernels before: the last bits vary run to run).
    #[arg(long, value_enum, value_name = "HOW")]
    cuda_reductions: Option<Reductions>,
    /// CUDA: the step's kernels: fused (each MLP layer's GEMM with its bias/ReLU/dropout
    /// epilogue in one kernel, the mask and bias gradient in the input-gradient GEMM, Adam at
    /// its bandwidth floor; the default on the host device) or split (cuBLAS GEMMs and separate
    /// kernels; the default on a GPU until a device round confirms the fused step).
    #[arg(long, value_enum, value_name = "KERNELS")]
    cuda_step: Option<StepKernels>,
    #[arg(long, value_enum)]
    precision: Option<Precision>,
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
    #[arg(long, value_delimiter = ',', action = clap::ArgAction::Set)]
    layers: Option<Vec<usize>>,
    #[arg(long)]
    dropout: Option<f32>,
    /// Training negatives per positive, re-drawn each epoch.
    #[arg(long)]
    negatives: Option<u32>,
    #[arg(long, value_enum)]
    negative_mode: Option<NegativeMode>,
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
    model: Option<Family>,
    /// --model mf / ials: standard deviation of the initial latent factors (default: mf 0.1,
    /// ials 0.1/√factors).
    #[arg(long, value_name = "STD")]
    init_std: Option<f32>,
    /// --model ials: weight α₀ of every unobserved (user, item) pair in the squared loss.
    #[arg(long, value_name = "ALPHA0")]
    unobserved_weight: Option<f32>,
    /// --model ials: how each row is solved: cg (a few conjugate-gradient steps warm-started
    /// from the last epoch's row, f32; the default) or exact (Cholesky, f64).
    #[arg(long, value_enum, value_name = "SOLVER")]
    ials_solver: Option<ncf_core::family::ials::Solver>,
    #[arg(long, value_enum)]
    optimizer: Option<Optimizer>,
    /// How Adam keeps its two moments: f32 (NVIDIA's recipe; the default) or bf16 (half the
    /// optimiser's memory, rounded when stored, computed in f32; the CPU NeuMF/GMF/MLP
    /// trainer). At MLPerf's ml-20mx16x32 the moments are 4.7 GB in f32, 2.3 GB in bf16.
    #[arg(long, value_enum, value_name = "TYPE")]
    adam_moments: Option<Moments>,
    /// Seed of initialisation, negatives, shuffling and dropout.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// K of HR@K / NDCG@K.
    #[arg(long, default_value_t = 10)]
    topk: usize,
    /// Stop after the first epoch whose HR@K reaches this.
    #[arg(long)]
    target_hr: Option<f64>,
    #[command(flatten)]
    validation: ValidationArgs,
    /// Also append the JSON lines to FILE (a new file, or a log ncf-train wrote: anything
    /// else is refused; the file is rewritten whole after each line, so it always holds
    /// complete lines).
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
    /// A bounded run (benchmarks, smoke tests): stop after N steps. An epoch cut short is not
    /// evaluated; -o gets the model after the last step, without metrics (evaluate it with
    /// ncf-eval), and no checkpoint is kept for it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_steps: Option<u64>,
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
    /// CUDA ranks that no MPI started: where rank 0 listens for the others (default:
    /// $MASTER_ADDR:$MASTER_PORT, else 127.0.0.1:29500). Ranks that mpirun / srun started meet
    /// over MPI.
    #[arg(long, value_name = "HOST:PORT")]
    rendezvous: Option<String>,
    /// Seconds to wait for the other ranks at the TCP rendezvous, for each of its collectives and
    /// for each NCCL step; a rank that does not arrive or dies is named when it expires (under
    /// MPI the launcher ends the job when a rank dies).
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    rendezvous_timeout: f64,
    /// CUDA: all-reduce through NCCL even on one rank (checks the multi-GPU code path on one
    /// GPU; with several ranks NCCL is always used).
    #[arg(long)]
    nccl: bool,
    /// CUDA ranks: let several ranks share one GPU (a test set-up): each rank gets its own
    /// NCCL_HOSTID and NCCL connects the ranks through its socket transport on the loopback
    /// interface (NCCL_SOCKET_IFNAME=lo, NCCL_NET=Socket, P2P and SHM off; variables already set
    /// are kept). See docs/DISTRIBUTED.md.
    #[arg(long)]
    share_gpu: bool,
    /// Continue the run whose checkpoint is in DIR (same dataset and flags; --epochs and
    /// --target-hr may change). Later checkpoints go to DIR too. The model file of the
    /// interrupted run is kept and replaced only by better epochs.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// With --resume DIR: only say whether its checkpoint continues this run exactly, then exit
    /// (0, `DIR: resumes …` on stdout; 1, why not, on stderr); nothing is trained or written.
    /// Exactly: what --resume requires (the same dataset, model, training configuration and
    /// evaluation set, the model file of the stopped run at -o), written by this backend (`cpu
    /// (N threads)` with another N continues with other bits) and not past --epochs.
    #[arg(long, requires = "resume")]
    check_resume: bool,
}

impl Args {
    /// The model family (--model, default NeuMF).
    fn family(&self) -> Family {
        self.model.unwrap_or(Family::Neumf)
    }

    /// The recipe flags as given (the family and the preset fill in the rest).
    fn choices(&self) -> Choices {
        Choices {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            l2: self.l2,
            negatives: self.negatives,
            negative_mode: self.negative_mode,
            optimizer: self.optimizer,
            adam_moments: self.adam_moments,
            precision: self.precision,
            target_hr: self.target_hr,
            factors: self.factors,
            layers: self.layers.clone(),
            dropout: self.dropout,
            init_std: self.init_std,
            unobserved_weight: self.unobserved_weight,
            ials_solver: self.ials_solver,
            checkpoint: self.checkpoint.is_some(),
            checkpoint_every: self.checkpoint_every != 0,
            resume: self.resume.is_some(),
            pretrained: self.pretrain_gmf.is_some() && self.pretrain_mlp.is_some(),
        }
    }
}

/// Where this run checkpoints (`None`: it does not), and the default directory `MODEL.ckpt`.
fn checkpoint_dir(a: &Args, lead: bool, spec: &dyn FamilySpec) -> (Option<PathBuf>, PathBuf) {
    let default_dir = PathBuf::from(format!("{}.ckpt", a.output.display()));
    let dir = match (&a.resume, &a.checkpoint, a.no_checkpoint) {
        (_, _, true) => None,
        _ if !lead || !spec.checkpoints() => None,
        (Some(d), _, _) | (None, Some(d), _) => Some(d.clone()),
        (None, None, false) => Some(default_dir.clone()),
    };
    (dir, default_dir)
}

/// This process's rank: --rank/--world-size, else the launcher's environment, else alone. With
/// --share-gpu, the per-rank NCCL environment is set here, before anything loads NCCL or starts
/// a thread that could read the environment.
fn ranks_of(a: &Args) -> Result<RankInfo> {
    let env = |k: &str| std::env::var(k).ok();
    let ranks = match (a.rank, a.world_size) {
        (Some(r), Some(w)) => RankInfo::new(r, w, r, "--rank/--world-size")?,
        _ => RankInfo::from_env(env)?.unwrap_or_else(RankInfo::single),
    };
    if a.share_gpu {
        let set = ncf_cuda::nccl::share_gpu_env(ranks.rank, env);
        let shown: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for (k, v) in set {
            std::env::set_var(k, v);
        }
        eprintln!(
            "ncf-train: rank {} of {}: --share-gpu: {}",
            ranks.rank,
            ranks.world,
            shown.join(" ")
        );
    }
    Ok(ranks)
}

/// Rank 0 writes the model, the checkpoints and the --log file: each is claimed for the run
/// before any work (a second run on them is refused, naming this one's pid), no two are the same
/// path, an existing model is replaced (--force, --resume) only when ncf wrote it, and the log
/// is appended to only when ncf-train wrote it.
fn claim_outputs(
    a: &Args,
    lead: bool,
    checkpoint_dir: Option<&Path>,
) -> Result<(Vec<OutputLock>, Option<LogFile>)> {
    let mut claims = Vec::new();
    if !lead {
        return Ok((claims, None));
    }
    let mut named = vec![("-o", a.output.as_path())];
    named.extend(checkpoint_dir.map(|d| ("the checkpoint directory", d)));
    named.extend(a.log.as_deref().map(|l| ("--log", l)));
    distinct_outputs(&named)?;
    let replace = a.force || a.resume.is_some();
    claims.push(claim_output(&a.output, &modelfile::OUTPUT, replace)?);
    if let Some(dir) = checkpoint_dir {
        claims.push(claim_output(dir, &checkpoint::OUTPUT, true)?);
    }
    let log = a.log.as_deref().map(LogFile::open).transpose()?;
    Ok((claims, log))
}

/// Refuse two outputs of one run at the same path (`--log X -o X`: the model would replace the
/// log), naming the flags.
fn distinct_outputs(named: &[(&str, &Path)]) -> Result<()> {
    let real = |p: &Path| {
        let p = ncf_core::io::resolve_output(p).unwrap_or_else(|_| p.to_path_buf());
        std::path::absolute(&p).unwrap_or(p)
    };
    for (i, (flag, p)) in named.iter().enumerate() {
        for (other, q) in &named[..i] {
            if real(p) == real(q) {
                bail!(
                    "{flag} {}: the same path as {other}; each output of a run needs its own \
                     (e.g. --log {}.jsonl)",
                    p.display(),
                    a_stem(named[0].1)
                );
            }
        }
    }
    Ok(())
}

/// `model` for `model.safetensors`: a name to suggest for a log beside it.
fn a_stem(model: &Path) -> String {
    model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "train".into())
}

/// The model to start from: the family's initialisation, or NeuMF from pre-trained GMF and MLP
/// models of the same dataset.
fn initial_model(
    a: &Args,
    plan: &Plan,
    choices: &Choices,
    fingerprint: &str,
    data: &Dataset,
) -> Result<Model> {
    let (n_users, n_items) = (data.n_users, data.n_items);
    match (&a.pretrain_gmf, &a.pretrain_mlp) {
        (Some(g), Some(m)) => {
            let load = |p: &PathBuf| -> Result<Model> {
                let (model, meta) = modelfile::load(p)?;
                if let Some(n) =
                    ncf_core::eval::nan::non_finite_note(&model, &p.display().to_string())
                {
                    eprintln!("ncf-train: note: {n}");
                }
                modelfile::check_fingerprint(&meta, fingerprint, n_users, n_items)
                    .with_context(|| format!("{}: cannot pre-train from it", p.display()))?;
                Ok(model)
            };
            let (gmf, mlp) = (load(g)?, load(m)?);
            neumf::from_pretrained(&gmf, &mlp, a.alpha, plan, choices)
                .with_context(|| format!("pre-training from {} and {}", g.display(), m.display()))
        }
        (None, None) => Ok(a.family().spec().init(plan, n_users, n_items)?),
        _ => bail!("pre-training needs both --pretrain-gmf and --pretrain-mlp"),
    }
}

/// The ranks' group: over MPI when mpirun / srun started the ranks (gradients, metric sums, the
/// NCCL id), over the TCP bootstrap for CUDA ranks started torchrun-style (NCCL's id and the host
/// values around its steps); `None` for a single rank that does not force NCCL. CPU ranks that no
/// MPI started are refused: their gradients travel over MPI only. The ranks compare `digest`
/// (data, configuration, model, evaluation set) before they start.
fn connect(a: &Args, ranks: &RankInfo, chosen: Chosen, digest: &str) -> Result<Option<Group>> {
    if ranks.world == 1 && !(a.nccl && chosen != Chosen::Cpu) {
        return Ok(None);
    }
    if !(a.rendezvous_timeout.is_finite() && a.rendezvous_timeout > 0.0) {
        bail!("--rendezvous-timeout must be positive");
    }
    let timeout = std::time::Duration::from_secs_f64(a.rendezvous_timeout);
    if ranks.launched_by_mpi() {
        return Ok(Some(Group::mpi(ranks.clone(), timeout, digest)?));
    }
    if chosen == Chosen::Cpu {
        bail!(
            "rank {} of {} ({}): CPU ranks exchange their gradients over MPI: launch them with \
             `mpirun -np {} ncf-train ...` (or srun), not with {}; the TCP rendezvous only \
             bootstraps NCCL for CUDA ranks (docs/DISTRIBUTED.md)",
            ranks.rank,
            ranks.world,
            ranks.source,
            ranks.world,
            ranks.source
        );
    }
    let addr = a
        .rendezvous
        .clone()
        .unwrap_or_else(|| dist::rendezvous_from_env(|k: &str| std::env::var(k).ok()));
    Ok(Some(Group::connect(ranks.clone(), &addr, timeout, digest)?))
}

/// Stdout (rank 0 only; the others report nothing), and the --log file beside it.
fn report_to(lead: bool, log: Option<LogFile>) -> Reports {
    let stdout: Option<Box<dyn Write>> = lead.then(|| Box::new(std::io::stdout().lock()) as _);
    Reports::new("ncf-train", stdout, log)
}

/// The checkpoint of --resume DIR, checked against this run; `exact` (--check-resume): also
/// written by this backend and not past --epochs.
fn resume_from(
    dir: &Path,
    trainer: &mut dyn Trainer,
    cfg: &TrainConfig,
    fingerprint: &str,
    (eval_name, eval): (&str, &EvalSet),
    exact: bool,
) -> Result<(CheckpointMeta, OptimizerState)> {
    let (meta, state) = checkpoint::load(dir)?;
    let mc = trainer.model_config()?;
    let not_exact = || {
        if meta.backend != trainer.name() {
            Some(format!(
                "it was written by {}, this run is {}: it would continue with other bits than \
                 an uninterrupted run",
                meta.backend,
                trainer.name()
            ))
        } else if meta.position.epoch > cfg.epochs {
            Some(format!(
                "it is at epoch {}, beyond --epochs {}",
                meta.position.epoch, cfg.epochs
            ))
        } else {
            None
        }
    };
    let why = meta.mismatch(&mc, cfg, fingerprint, eval_name, &eval.digest());
    if let Some(why) = why.or_else(|| exact.then(not_exact).flatten()) {
        bail!(
            "{}: cannot resume from this checkpoint: {why}",
            checkpoint::file_in(dir).display()
        );
    }
    if meta.backend != trainer.name() {
        eprintln!(
            "ncf-train: note: the checkpoint was written by {}, this run is {}: results may \
             differ from an uninterrupted run in the last bits",
            meta.backend,
            trainer.name()
        );
    }
    Ok((meta, state))
}

/// SIGINT, SIGTERM and SIGHUP raise the returned flag (the run checkpoints and stops at the
/// next step, exit 1); a second signal ends the process at once, saying where the last
/// checkpoint in `checkpoint_dir` is (`ncf_core::interrupt`).
fn stop_on_signals(checkpoint_dir: Option<PathBuf>) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    ncf_core::interrupt::stop_gracefully(stop.clone(), move || match &checkpoint_dir {
        None => ", without a checkpoint (this run writes none)".to_string(),
        Some(d) => match checkpoint::position_in(d) {
            Some(p) => format!(
                ", without the stop checkpoint; the last one (before epoch {} step {}) is in \
                 {}: continue with the same command plus --resume {}",
                p.epoch,
                p.step,
                d.display(),
                d.display()
            ),
            None => ", before its first checkpoint: nothing to resume from".to_string(),
        },
    });
    stop
}

/// Run `ncf-train` with its parsed flags.
pub fn run(a: Args) -> Result<()> {
    let spec = a.family().spec();
    let choices = a.choices();
    let plan = a.family().plan(a.preset, a.seed, a.topk, &choices)?;
    backend::check_threads(a.threads)?;
    let mut cfg = plan.cfg.clone();
    if ncf_core::io::is_stdio(&a.output) {
        bail!("-o -: the model needs a file (it is rewritten after every better epoch)");
    }
    let ranks = ranks_of(&a)?;
    let lead = ranks.rank == 0;
    if let Some(t) = cfg.target_hr {
        if !(0.0..=1.0).contains(&t) {
            bail!("--target-hr must be in [0, 1]");
        }
    }
    let (checkpoint_dir, default_dir) = checkpoint_dir(&a, lead, spec);
    let (_claims, log) = match a.check_resume {
        true => (Vec::new(), None),
        false => claim_outputs(&a, lead, checkpoint_dir.as_deref())?,
    };

    let data = Dataset::load_any(&a.dataset)?;
    let fingerprint = data
        .meta
        .as_ref()
        .map(|m| m.fingerprint.clone())
        .unwrap_or_default();
    let split_fingerprint = data.split_fingerprint();
    let (train_data, eval, eval_name) = match a.validation.split(&data)? {
        Some((t, e)) => (t, e, "validation"),
        None => {
            let e = EvalSet::from_test(&data)
                .with_context(|| format!("{}: cannot evaluate", a.dataset.display()))?;
            (data, e, "test")
        }
    };
    eval.check_k(cfg.topk).context("--topk")?;
    let model = initial_model(&a, &plan, &choices, &fingerprint, &train_data)?;

    let d = &a.device;
    let chosen = backend::choose(
        "ncf-train",
        "training",
        d.device,
        d.gpu,
        ranks.local_rank,
        spec.cpu_only(),
    )?;
    if a.nccl && chosen == Chosen::Cpu {
        bail!("--nccl is for --device cuda (CPU ranks exchange gradients over MPI)");
    }
    if a.share_gpu && chosen == Chosen::Cpu {
        bail!("--share-gpu is for --device cuda (CPU ranks share no device)");
    }
    // The precision is settled before the ranks compare their configurations.
    if a.precision.is_none() {
        cfg.precision = backend::default_precision(chosen)?;
    }
    let digest = format!(
        "{fingerprint} {} {} {}",
        serde_json::to_string(&cfg)?,
        serde_json::to_string(&model.config)?,
        eval.digest()
    );
    let group = match a.check_resume {
        true => None,
        false => connect(&a, &ranks, chosen, &digest)?,
    };
    let ranked = group.is_some();
    let mut trainer = backend::trainer(
        spec,
        model,
        &cfg,
        &train_data,
        chosen,
        a.threads,
        group,
        backend::CudaOptions {
            first_layer: a.first_layer,
            reductions: a.cuda_reductions,
            step: a.cuda_step,
        },
    )?;
    if let (true, Some(dir)) = (a.check_resume, &a.resume) {
        let (meta, _) = resume_from(
            dir,
            trainer.as_mut(),
            &cfg,
            &fingerprint,
            (eval_name, &eval),
            true,
        )?;
        train::check_model_kept(&meta.position, Some(&a.output), cfg.topk)?;
        let p = &meta.position;
        println!(
            "{}: resumes this run at epoch {} step {}",
            dir.display(),
            p.epoch,
            p.step
        );
        return Ok(());
    }
    let mut out = report_to(lead, log);
    let resume = match &a.resume {
        Some(dir) => Some(resume_from(
            dir,
            trainer.as_mut(),
            &cfg,
            &fingerprint,
            (eval_name, &eval),
            false,
        )?),
        None => None,
    };
    let stop = stop_on_signals(checkpoint_dir.clone());
    let resume_hint = match &checkpoint_dir {
        Some(d) => format!(
            "continue with the same command plus --resume {}",
            d.display()
        ),
        None => "rerun without --no-checkpoint to be able to resume".to_string(),
    };
    let opts = RunOptions {
        progress: !a.quiet && ncf_tool::stderr_is_tty(),
        checkpoint_dir: checkpoint_dir.as_deref(),
        checkpoint_every: a.checkpoint_every,
        resume,
        stop: Some(&stop),
        resume_hint,
        split_fingerprint: Some(split_fingerprint),
        save_last: a.save_last,
        max_steps: a.max_steps,
        ..RunOptions::new(&eval, eval_name, lead.then_some(&a.output), fingerprint)
    };
    if opts.progress {
        eprintln!("ncf-train: {} on {}", trainer.name(), a.dataset.display());
    }
    train::run(trainer.as_mut(), &cfg, &train_data, &opts, &mut out)?;
    if ranked {
        // Every rank holds the same parameters: the GPU check compares these lines.
        trainer.with_model(&mut |m| {
            ncf_core::interrupt::note(&format!(
                "ncf-train: rank {} of {}: parameters sha256 {}",
                ranks.rank,
                ranks.world,
                modelfile::params_sha256(&m.params)
            ));
            Ok(())
        })?;
    }
    trainer.finish()?;
    // A completed run needs no checkpoint unless one was asked for.
    if lead && checkpoint_dir.as_deref() == Some(default_dir.as_path()) && a.checkpoint.is_none() {
        let _ = std::fs::remove_file(checkpoint::file_in(&default_dir));
        let _ = std::fs::remove_dir(&default_dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_flags_are_consistent() {
        Args::command().debug_assert();
        let a = Args::try_parse_from(["ncf-train", "ds", "-o", "m.st", "--layers", "8,4"]);
        assert_eq!(a.unwrap().choices().layers, Some(vec![8, 4]));
        let a = Args::try_parse_from(["ncf-train", "ds", "-o", "m", "--check-resume"]);
        assert!(a.is_err(), "--check-resume needs --resume");
    }

    #[test]
    fn two_outputs_at_one_path_are_refused_naming_both_flags() {
        let (model, log) = (Path::new("m.safetensors"), Path::new("./m.safetensors"));
        distinct_outputs(&[("-o", model), ("--log", Path::new("m.jsonl"))]).unwrap();
        let err = distinct_outputs(&[("-o", model), ("--log", log)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--log ./m.safetensors: the same path as -o; each output of a run needs its own \
             (e.g. --log m.jsonl)"
        );
        assert_eq!(a_stem(Path::new("/")), "train");
    }
}
