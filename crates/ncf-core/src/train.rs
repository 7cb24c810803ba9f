//! The training loop shared by every backend: epochs of shuffled samples in batches, evaluation
//! after each epoch, best model kept, early stop at a target HR, NVIDIA-style JSON reports.
//! A backend implements [`Trainer`]; the CPU one is [`crate::cpu`], the CUDA one is `ncf-cuda`.

use crate::checkpoint::{self, CheckpointMeta, OptimizerState, Position};
use crate::model::Model;
use crate::sampler::NegativeMode;
use crate::Result;
use serde::{Deserialize, Serialize};

/// Numeric precision of a backend's compute (the CPU backend is always FP32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Tf32,
    Fp16,
    Bf16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    Adam,
    Sgd,
}

/// Everything that decides what a training run computes (backend-independent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub seed: u64,
    pub epochs: u32,
    /// Samples per optimiser step (global, across ranks).
    pub batch_size: u64,
    /// Negatives per positive, re-drawn every epoch.
    pub negatives: u32,
    pub negative_mode: NegativeMode,
    pub optimizer: Optimizer,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// L2 penalty on all parameters (added to the gradient), 0 as NVIDIA.
    pub l2: f32,
    /// `--model ials`: the weight α₀ of every unobserved (user, item) pair (0 otherwise).
    #[serde(default)]
    pub unobserved_weight: f32,
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
            seed,
            epochs: 30,
            batch_size: 1 << 20,
            negatives: 4,
            negative_mode: NegativeMode::Approximate,
            optimizer: Optimizer::Adam,
            lr: 0.0045,
            beta1: 0.25,
            beta2: 0.5,
            eps: 1e-8,
            l2: 0.0,
            unobserved_weight: 0.0,
            precision: Precision::Fp32,
            topk: 10,
            target_hr: None,
        }
    }
}

/// What one optimiser step reports.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepStats {
    /// Mean BCE loss over the batch.
    pub loss: f32,
    /// The step was skipped (FP16 loss-scale overflow).
    pub skipped: bool,
}

/// A backend that trains a model on the samples of [`crate::sampler::EpochSamples`].
///
/// The backend owns the data it needs (train positives, per-user positives for exact negatives)
/// and the model parameters with the optimiser state. Positions are indices into the shuffled
/// epoch: the batch of step `s` is positions `s*B .. min((s+1)*B, len)`.
pub trait Trainer {
    /// Human-readable backend name ("cpu (2 threads)", "cuda:0 NVIDIA H100 ...").
    fn name(&self) -> String;
    /// One optimiser step on the samples at `positions` of `epoch` (Adam step count is kept
    /// inside; `step` is the global step number, 1-based, for bias correction and dropout).
    fn step(&mut self, epoch: u32, positions: std::ops::Range<u64>) -> Result<StepStats>;
    /// Scores (logits) of (user, item) pairs with dropout off.
    fn score(&mut self, users: &[u32], items: &[u32], out: &mut [f32]) -> Result<()>;
    /// A copy of the current parameters.
    fn model(&mut self) -> Result<Model>;
    /// The optimiser state (parameters, moments, step count, loss scale) for a checkpoint.
    fn save_state(&mut self) -> Result<OptimizerState>;
    /// Continue from a state of [`Trainer::save_state`] (same model layout).
    fn load_state(&mut self, state: &OptimizerState) -> Result<()>;
    /// This process's rank and the number of ranks of a data-parallel run: evaluation is
    /// sharded by rows across ranks (every rank holds the same parameters).
    fn rank_world(&self) -> (usize, usize) {
        (0, 1)
    }
    /// Sum `x` element-wise across the ranks, in place (nothing to do on one rank).
    fn allreduce_f64(&mut self, _x: &mut [f64]) -> Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The loop every backend runs under.

use crate::dataset::Dataset;
use crate::metrics::{EvalSet, Metrics};
use crate::modelfile::{self, ModelMeta};
use crate::rng::{below, stream, Rng};
use crate::sampler::{EpochSamples, UserItems};
use crate::Error;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// What [`run`] needs besides the trainer and its configuration.
pub struct RunOptions<'a> {
    /// Held-out items ranked after every epoch (the test set or a validation split).
    pub eval: &'a EvalSet,
    /// "test" or "validation": recorded in the reports and the model file.
    pub eval_name: &'a str,
    /// Where the best model is written (atomically, after every improvement).
    pub model_path: Option<&'a Path>,
    /// Write the model after every epoch instead, so the file ends with the last epoch's (for
    /// runs whose epoch count was chosen on a validation split: the best epoch on the test set
    /// must not pick the model).
    pub save_last: bool,
    /// Fingerprint of the dataset, stored in the model file.
    pub dataset_fingerprint: String,
    /// Its split fingerprint ([`crate::dataset::Dataset::split_fingerprint`]), stored too: lets
    /// the model be evaluated on copies of the dataset with other test negatives.
    pub split_fingerprint: Option<String>,
    /// Show a progress line on stderr (only when it is a terminal).
    pub progress: bool,
    /// Write checkpoints into this directory (at every epoch end, every `checkpoint_every`
    /// steps, and when `stop` is raised).
    pub checkpoint_dir: Option<&'a Path>,
    /// Steps between checkpoints within an epoch (0: only at epoch ends).
    pub checkpoint_every: u64,
    /// Continue from this checkpoint (already checked against the run with
    /// [`CheckpointMeta::mismatch`]; its optimiser state is loaded by [`run`]).
    pub resume: Option<(CheckpointMeta, OptimizerState)>,
    /// Raised (by a signal handler) to stop at the next step boundary with a checkpoint.
    pub stop: Option<&'a std::sync::atomic::AtomicBool>,
    /// How to resume, for the message of an interrupted run (e.g. the command line).
    pub resume_hint: String,
}

impl RunOptions<'_> {
    /// Options with no checkpoints, no resume and no stop flag.
    pub fn new<'a>(
        eval: &'a EvalSet,
        eval_name: &'a str,
        model_path: Option<&'a Path>,
        dataset_fingerprint: String,
    ) -> RunOptions<'a> {
        RunOptions {
            eval,
            eval_name,
            model_path,
            save_last: false,
            dataset_fingerprint,
            split_fingerprint: None,
            progress: false,
            checkpoint_dir: None,
            checkpoint_every: 0,
            resume: None,
            stop: None,
            resume_hint: String::new(),
        }
    }
}

/// One line of the per-epoch report (NVIDIA's fields; epochs are 0-based).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    pub epoch: u32,
    /// Mean BCE loss of the epoch's (non-skipped) steps, weighted by batch size.
    pub loss: f64,
    pub hr: f64,
    pub ndcg: f64,
    pub k: usize,
    pub eval: String,
    pub train_s: f64,
    pub eval_s: f64,
    pub samples: u64,
    pub samples_per_s: f64,
    pub steps: u64,
    pub skipped_steps: u64,
}

/// The final report line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub best_hr: f64,
    pub best_ndcg: f64,
    pub best_epoch: Option<u32>,
    pub first_epoch_reaching_target: Option<u32>,
    /// Training plus evaluation time until the end of the evaluation that reached the target.
    pub time_to_target_s: Option<f64>,
    pub train_time_s: f64,
    pub eval_time_s: f64,
    pub avg_samples_per_s: f64,
    pub best_samples_per_s: f64,
    pub epochs_run: u32,
    pub k: usize,
    pub eval: String,
    pub backend: String,
}

fn json_line<T: Serialize>(out: &mut dyn Write, v: &T) -> Result<()> {
    let mut line = serde_json::to_vec(v).map_err(|e| Error::invalid(format!("report: {e}")))?;
    line.push(b'\n');
    out.write_all(&line)
        .and_then(|_| out.flush())
        .map_err(|e| Error::io("<stdout>", e))
}

/// Samples in epoch `epoch` of `data` under `cfg` (the same for every negative mode).
pub fn epoch_len(cfg: &TrainConfig, data: &Dataset, epoch: u32) -> Result<u64> {
    let n = data.train_users.len() as u64 * (1 + cfg.negatives as u64);
    if n >= 1 << 32 {
        return Err(Error::usage(format!(
            "an epoch would have {n} samples ({} positives × {}): at most 2^32 − 1 are supported",
            data.train_users.len(),
            1 + cfg.negatives
        )));
    }
    if data.train_users.is_empty() {
        return Err(Error::invalid("the dataset has no training interactions"));
    }
    let s = EpochSamples::new(
        Rng::new(cfg.seed),
        epoch,
        cfg.negatives,
        data.n_items,
        NegativeMode::Approximate,
        &data.train_users,
        &data.train_items,
        None,
    );
    Ok(s.len())
}

/// Check a configuration before any work is done.
pub fn check_config(cfg: &TrainConfig) -> Result<()> {
    if cfg.epochs == 0 {
        return Err(Error::usage("--epochs must be at least 1"));
    }
    if cfg.batch_size == 0 {
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
    let non_negative = |x: f32| x.is_finite() && x >= 0.0;
    if !non_negative(cfg.eps) || !non_negative(cfg.l2) {
        return Err(Error::usage("--eps and --l2 must be non-negative numbers"));
    }
    Ok(())
}

/// HR/NDCG of `eval` with the rows sharded across the trainer's ranks: each rank ranks its
/// share ([`crate::metrics::shard`]) and the integer counts are summed, so the result is the
/// same bits as one rank ranking every row.
pub fn evaluate_sharded(trainer: &mut dyn Trainer, eval: &EvalSet, k: usize) -> Result<Metrics> {
    let (rank, world) = trainer.rank_world();
    let rows = crate::metrics::shard(eval.len(), rank, world);
    let acc = crate::metrics::evaluate_rows(eval, k, rows, |u, i, o| trainer.score(u, i, o))?;
    let mut counts = acc.to_f64s();
    trainer.allreduce_f64(&mut counts)?;
    let acc = crate::metrics::Accumulator::from_f64s(k, &counts);
    Ok(Metrics::from_acc(&acc, eval.candidates(), "sampled"))
}

/// Train for `cfg.epochs` epochs (0-based), evaluating after each; the best model by HR (never
/// one with non-finite weights) is written to `opts.model_path`. One JSON line per epoch and a
/// final [`Summary`] line go to `out`. A non-finite loss stops the run with an error naming the
/// epoch and step; the best model written so far stays.
pub fn run(
    trainer: &mut dyn Trainer,
    cfg: &TrainConfig,
    data: &Dataset,
    opts: &RunOptions,
    out: &mut dyn Write,
) -> Result<Summary> {
    check_config(cfg)?;
    opts.eval.check_k(cfg.topk)?;
    let backend = trainer.name();
    let fresh = Summary {
        best_hr: 0.0,
        best_ndcg: 0.0,
        best_epoch: None,
        first_epoch_reaching_target: None,
        time_to_target_s: None,
        train_time_s: 0.0,
        eval_time_s: 0.0,
        avg_samples_per_s: 0.0,
        best_samples_per_s: 0.0,
        epochs_run: 0,
        k: cfg.topk,
        eval: opts.eval_name.to_string(),
        backend: backend.clone(),
    };
    let mut pos = Position {
        epoch: 0,
        step: 0,
        epoch_loss_sum: 0.0,
        epoch_loss_n: 0,
        epoch_skipped: 0,
        epoch_train_s: 0.0,
        best: None,
        total_samples: 0,
        summary: fresh,
    };
    let eval_digest = opts.eval.digest();
    if let Some((meta, state)) = &opts.resume {
        trainer.load_state(state)?;
        pos = meta.position.clone();
        pos.summary.backend = backend.clone();
    }
    let model_config = trainer.model()?.config;
    let checkpoint = |trainer: &mut dyn Trainer, pos: &Position| -> Result<()> {
        let Some(dir) = opts.checkpoint_dir else {
            return Ok(());
        };
        let state = trainer.save_state()?;
        let meta = CheckpointMeta {
            format_version: checkpoint::CHECKPOINT_FORMAT_VERSION,
            model_config: model_config.clone(),
            train_config: cfg.clone(),
            dataset_fingerprint: opts.dataset_fingerprint.clone(),
            eval: opts.eval_name.to_string(),
            eval_digest: eval_digest.clone(),
            backend: backend.clone(),
            position: pos.clone(),
            steps: 0,
            loss_scale: 1.0,
            clean_steps: 0,
            sha256: Default::default(),
        };
        checkpoint::save(dir, meta, &state)
    };
    let stopped = |pos: &Position| -> Error {
        let saved = match opts.checkpoint_dir {
            Some(d) => format!("a checkpoint is in {}", d.display()),
            None => "no checkpoint was written (no checkpoint directory)".to_string(),
        };
        Error::invalid(format!(
            "stopped by a signal before epoch {} step {}: {saved}; {}",
            pos.epoch, pos.step, opts.resume_hint
        ))
    };
    let stop_raised = || {
        opts.stop
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
    };
    let mut last_progress = Instant::now();
    while pos.epoch < cfg.epochs && pos.summary.first_epoch_reaching_target.is_none() {
        let epoch = pos.epoch;
        let len = epoch_len(cfg, data, epoch)?;
        let steps = len.div_ceil(cfg.batch_size);
        let t0 = Instant::now();
        let train_before = pos.epoch_train_s;
        while pos.step < steps {
            // Ranks agree on stopping before every step (one small host collective with a
            // timeout): a signal seen by one rank stops all of them at the same step, and a rank
            // that has gone is noticed here instead of inside a device collective (NCCL has no
            // timeout).
            let mut stop = [stop_raised() as u8 as f64];
            if trainer.rank_world().1 > 1 {
                trainer.allreduce_f64(&mut stop)?;
            }
            if stop[0] > 0.0 {
                pos.epoch_train_s = train_before + t0.elapsed().as_secs_f64();
                checkpoint(trainer, &pos)?;
                return Err(stopped(&pos));
            }
            let s = pos.step;
            let range = s * cfg.batch_size..((s + 1) * cfg.batch_size).min(len);
            let n = range.end - range.start;
            let st = trainer.step(epoch, range)?;
            pos.step += 1;
            if st.skipped {
                // FP16 loss scaling: the backend found non-finite gradients, lowered the scale
                // and applied nothing. Say where (rare; many in a row mean trouble).
                eprintln!(
                    "ncf-train: note: epoch {epoch} step {s}: non-finite gradients, step skipped \
                     (loss scale lowered)"
                );
                pos.epoch_skipped += 1;
            } else if !st.loss.is_finite() {
                let kept = match (pos.best, opts.model_path) {
                    (Some((hr, _, e)), Some(p)) => format!(
                        "; the best model so far (epoch {e}, HR {hr:.4}) is kept in {}",
                        p.display()
                    ),
                    _ => "; no model was written".to_string(),
                };
                return Err(Error::invalid(format!(
                    "training diverged: loss is {} at epoch {epoch} step {s} of {steps}{kept} \
                     (try a lower --lr)",
                    st.loss
                )));
            } else {
                pos.epoch_loss_sum += st.loss as f64 * n as f64;
                pos.epoch_loss_n += n;
                if opts.progress && last_progress.elapsed().as_millis() >= 250 {
                    last_progress = Instant::now();
                    eprint!(
                        "\repoch {epoch} step {}/{steps} loss {:.4}   ",
                        s + 1,
                        st.loss
                    );
                }
            }
            if opts.checkpoint_every > 0
                && pos.step.is_multiple_of(opts.checkpoint_every)
                && pos.step < steps
            {
                pos.epoch_train_s = train_before + t0.elapsed().as_secs_f64();
                checkpoint(trainer, &pos)?;
            }
        }
        let train_s = train_before + t0.elapsed().as_secs_f64();
        if opts.progress {
            eprint!("\repoch {epoch}: evaluating…                      \r");
        }
        let t1 = Instant::now();
        let m = evaluate_sharded(trainer, opts.eval, cfg.topk)?;
        let eval_s = t1.elapsed().as_secs_f64();
        if opts.progress {
            eprint!("\r{:60}\r", "");
        }
        let summary = &mut pos.summary;
        pos.total_samples += len;
        summary.train_time_s += train_s;
        summary.eval_time_s += eval_s;
        summary.epochs_run = epoch + 1;
        let sps = len as f64 / train_s.max(1e-9);
        summary.best_samples_per_s = summary.best_samples_per_s.max(sps);
        let report = EpochReport {
            epoch,
            loss: if pos.epoch_loss_n > 0 {
                pos.epoch_loss_sum / pos.epoch_loss_n as f64
            } else {
                f64::NAN
            },
            hr: m.hr,
            ndcg: m.ndcg,
            k: cfg.topk,
            eval: opts.eval_name.to_string(),
            train_s,
            eval_s,
            samples: len,
            samples_per_s: sps,
            steps,
            skipped_steps: pos.epoch_skipped,
        };
        let better = pos.best.is_none_or(|(hr, _, _)| m.hr > hr);
        if better || opts.save_last {
            let model = trainer.model()?;
            if !model.is_finite() {
                return Err(Error::invalid(format!(
                    "training diverged: non-finite weights after epoch {epoch} (try a lower --lr)"
                )));
            }
            if better {
                pos.best = Some((m.hr, m.ndcg, epoch));
            }
            if let Some(p) = opts.model_path {
                save_trained(p, &model, cfg, opts, epoch, &m)?;
            }
        }
        json_line(out, &report)?;
        let reached = cfg.target_hr.is_some_and(|t| m.hr >= t);
        if reached {
            let summary = &mut pos.summary;
            summary.first_epoch_reaching_target = Some(epoch);
            summary.time_to_target_s = Some(summary.train_time_s + summary.eval_time_s);
        }
        pos.epoch += 1;
        pos.step = 0;
        pos.epoch_loss_sum = 0.0;
        pos.epoch_loss_n = 0;
        pos.epoch_skipped = 0;
        pos.epoch_train_s = 0.0;
        checkpoint(trainer, &pos)?;
        if reached {
            break;
        }
    }
    let mut summary = pos.summary.clone();
    if let Some((hr, ndcg, e)) = pos.best {
        summary.best_hr = hr;
        summary.best_ndcg = ndcg;
        summary.best_epoch = Some(e);
    }
    summary.avg_samples_per_s = pos.total_samples as f64 / summary.train_time_s.max(1e-9);
    json_line(out, &summary)?;
    Ok(summary)
}

fn save_trained(
    path: &Path,
    model: &Model,
    cfg: &TrainConfig,
    opts: &RunOptions,
    epoch: u32,
    m: &Metrics,
) -> Result<()> {
    let mut meta = ModelMeta::new(model.config.clone(), opts.dataset_fingerprint.clone());
    meta.split_fingerprint = opts.split_fingerprint.clone();
    meta.epoch = Some(epoch);
    let mut m = m.clone();
    if opts.eval_name != "test" {
        m.protocol = format!("{} ({})", m.protocol, opts.eval_name);
    }
    meta.metrics = Some(m);
    // Through text so that f32 fields keep their short form (0.9, not 0.8999999761581421).
    let text = serde_json::to_string(cfg).map_err(|e| Error::invalid(e.to_string()))?;
    meta.train_config =
        Some(serde_json::from_str(&text).map_err(|e| Error::invalid(e.to_string()))?);
    modelfile::save(path, model, &meta)
}

/// Which training interaction of a user [`validation_split`] holds out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holdout {
    /// The latest by timestamp (the last such row on ties), as the test split holds out the
    /// latest interaction: validation then measures what the test measures.
    Latest,
    /// A random one (stream VALIDATION): easier than the latest, usable without timestamps.
    Random,
}

/// Whether the training rows have timestamps that order them (not all equal).
pub fn has_time_order(data: &Dataset) -> bool {
    data.train_timestamps
        .as_ref()
        .is_some_and(|t| t.iter().any(|&x| x != t[0]))
}

/// The validation split of `ncf-train --validation` (and `ncf-eval --validation`, which must
/// rank the same held-out items): as many negatives per user as the dataset's test set has (100
/// without one), the latest interaction held out when the training rows carry a time order, else
/// a random one, unless `holdout` says which.
pub fn default_validation(
    data: &Dataset,
    seed: u64,
    holdout: Option<Holdout>,
) -> Result<(Dataset, EvalSet)> {
    let per_user = if data.test_negatives_per_user > 0 {
        data.test_negatives_per_user
    } else {
        100
    };
    let holdout = holdout.unwrap_or(if has_time_order(data) {
        Holdout::Latest
    } else {
        Holdout::Random
    });
    validation_split(data, seed, per_user, holdout)
}

/// A validation split for tuning without looking at the test set: one training interaction of
/// every user with at least two is held out (`holdout`; random draws use stream VALIDATION,
/// independent of the training seed), with `negatives` distinct sampled items the user has not
/// interacted with (train or test). Returns the dataset without the held-out rows and the
/// validation set.
pub fn validation_split(
    data: &Dataset,
    seed: u64,
    negatives: usize,
    holdout: Holdout,
) -> Result<(Dataset, EvalSet)> {
    let times =
        match (holdout, &data.train_timestamps) {
            (Holdout::Latest, Some(t)) if has_time_order(data) => Some(t),
            (Holdout::Latest, _) => return Err(Error::invalid(
                "validation: the training rows carry no time order (no timestamps, or all equal \
                 as in the NCF authors' files) to hold out the latest interaction; use a random \
                 holdout",
            )),
            (Holdout::Random, _) => None,
        };
    let rng = Rng::new(seed);
    let n_users = data.n_users;
    let positives = UserItems::new(n_users, &data.train_users, &data.train_items);
    let test = UserItems::new(n_users, &data.test_users, &data.test_items);
    // Rows of each user in the training arrays (rows are grouped by user, but do not rely on it).
    let mut rows_of: Vec<Vec<usize>> = vec![Vec::new(); n_users as usize];
    for (r, &u) in data.train_users.iter().enumerate() {
        if u >= n_users {
            return Err(Error::invalid(format!(
                "train row {r}: user {u} out of range"
            )));
        }
        rows_of[u as usize].push(r);
    }
    let mut held = vec![false; data.train_users.len()];
    let mut set = EvalSet {
        per_user: negatives,
        ..Default::default()
    };
    let mut exclude = Vec::new();
    for (u, rows) in rows_of.iter().enumerate() {
        if rows.len() < 2 {
            continue;
        }
        let u32_ = u as u32;
        let r = match times {
            // max_by_key keeps the last of equal maxima.
            Some(t) => *rows.iter().max_by_key(|&&r| t[r]).unwrap_or(&rows[0]),
            None => {
                rows[below(rng.word(stream::VALIDATION, u32_, 0, 0), rows.len() as u32) as usize]
            }
        };
        held[r] = true;
        let item = data.train_items[r];
        exclude.clear();
        exclude.extend_from_slice(positives.of(u32_));
        exclude.extend_from_slice(test.of(u32_));
        exclude.sort_unstable();
        exclude.dedup();
        let available = data.n_items as usize - exclude.len().min(data.n_items as usize);
        if available < negatives {
            return Err(Error::invalid(format!(
                "validation: user {u} has only {available} items to draw {negatives} negatives from"
            )));
        }
        let start = set.negatives.len();
        let mut attempt = 0u32;
        while set.negatives.len() - start < negatives {
            let cand = below(rng.word(stream::VALIDATION, u32_, 1, attempt), data.n_items);
            attempt = attempt
                .checked_add(1)
                .ok_or_else(|| Error::invalid("validation draw overflow"))?;
            if exclude.binary_search(&cand).is_err() && !set.negatives[start..].contains(&cand) {
                set.negatives.push(cand);
            }
        }
        set.users.push(u32_);
        set.items.push(item);
    }
    if set.is_empty() {
        return Err(Error::invalid(
            "validation: no user has two training interactions",
        ));
    }
    let keep = |v: &[u32]| -> Vec<u32> {
        v.iter()
            .zip(&held)
            .filter(|p| !*p.1)
            .map(|p| *p.0)
            .collect()
    };
    let mut train = data.clone();
    train.train_users = keep(&data.train_users);
    train.train_items = keep(&data.train_items);
    train.train_timestamps = data.train_timestamps.as_ref().map(|t| {
        t.iter()
            .zip(&held)
            .filter(|p| !*p.1)
            .map(|p| *p.0)
            .collect()
    });
    Ok((train, set))
}

/// `per_user` test negatives for every test row of `data` (row-major, test order): distinct
/// items the user has neither in train nor in test, from [`crate::sampler::test_negatives`].
pub fn sample_test_negatives(data: &Dataset, per_user: usize, seed: u64) -> Result<Vec<u32>> {
    let rng = Rng::new(seed);
    let train = UserItems::new(data.n_users, &data.train_users, &data.train_items);
    let test = UserItems::new(data.n_users, &data.test_users, &data.test_items);
    let mut out = Vec::with_capacity(per_user * data.test_users.len());
    let mut exclude = Vec::new();
    for &u in &data.test_users {
        exclude.clear();
        exclude.extend_from_slice(train.of(u));
        exclude.extend_from_slice(test.of(u));
        exclude.sort_unstable();
        exclude.dedup();
        crate::sampler::test_negatives(&rng, u, per_user, data.n_items, &exclude, &mut out)?;
    }
    Ok(out)
}

/// How [`write_epoch_samples`] encodes the samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleFormat {
    /// Arrow IPC stream (the format of pipes).
    Ipc,
    /// Parquet (needs a file).
    Parquet,
    /// `user\titem\tlabel` lines, dense ids.
    Tsv,
}

impl SampleFormat {
    /// Parquet for `.parquet`, TSV for `.tsv`, an Arrow IPC stream otherwise (and for `-`).
    pub fn for_path(path: &Path) -> SampleFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some("parquet") => SampleFormat::Parquet,
            Some("tsv") => SampleFormat::Tsv,
            _ => SampleFormat::Ipc,
        }
    }
}

fn sample_schema() -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema};
    std::sync::Arc::new(Schema::new_with_metadata(
        vec![
            Field::new("user", DataType::UInt32, false),
            Field::new("item", DataType::UInt32, false),
            Field::new("label", DataType::Float32, false),
        ],
        std::collections::HashMap::from([("ncf.table".to_string(), "samples".to_string())]),
    ))
}

/// Write the samples of `samples` in shuffled order (position 0 first) as (user, item, label)
/// with dense ids, in `format`, to `w`.
pub fn write_epoch_samples<W: Write + Send>(
    samples: &EpochSamples,
    format: SampleFormat,
    w: &mut W,
    what: &str,
) -> Result<()> {
    use arrow::array::{Float32Array, RecordBatch, UInt32Array};
    const CHUNK: u64 = 1 << 20;
    let arrow_err = |e: arrow::error::ArrowError| match e {
        arrow::error::ArrowError::IoError(_, e) => Error::io(what, e),
        e => Error::io(what, std::io::Error::other(e.to_string())),
    };
    let pq_err =
        |e: parquet::errors::ParquetError| Error::io(what, std::io::Error::other(e.to_string()));
    let schema = sample_schema();
    let (mut u, mut i, mut l) = (Vec::new(), Vec::new(), Vec::new());
    let batches = (0..samples.len()).step_by(CHUNK as usize).map(|start| {
        let end = (start + CHUNK).min(samples.len());
        samples.fill(start..end, &mut u, &mut i, &mut l)?;
        RecordBatch::try_new(
            schema.clone(),
            vec![
                std::sync::Arc::new(UInt32Array::from(std::mem::take(&mut u))),
                std::sync::Arc::new(UInt32Array::from(std::mem::take(&mut i))),
                std::sync::Arc::new(Float32Array::from(std::mem::take(&mut l))),
            ],
        )
        .map_err(arrow_err)
    });
    match format {
        SampleFormat::Ipc => {
            let mut sw =
                arrow::ipc::writer::StreamWriter::try_new(&mut *w, &schema).map_err(arrow_err)?;
            for b in batches {
                sw.write(&b?).map_err(arrow_err)?;
            }
            sw.finish().map_err(arrow_err)?;
        }
        SampleFormat::Parquet => {
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::SNAPPY)
                .build();
            let mut pw = parquet::arrow::ArrowWriter::try_new(&mut *w, schema.clone(), Some(props))
                .map_err(pq_err)?;
            for b in batches {
                pw.write(&b?).map_err(pq_err)?;
            }
            pw.close().map_err(pq_err)?;
        }
        SampleFormat::Tsv => {
            for b in batches {
                let b = b?;
                let col = |k: usize| b.column(k).clone();
                let (bu, bi, bl) = (col(0), col(1), col(2));
                let bu = bu
                    .as_any()
                    .downcast_ref::<UInt32Array>()
                    .expect("built above");
                let bi = bi
                    .as_any()
                    .downcast_ref::<UInt32Array>()
                    .expect("built above");
                let bl = bl
                    .as_any()
                    .downcast_ref::<Float32Array>()
                    .expect("built above");
                for k in 0..b.num_rows() {
                    writeln!(w, "{}\t{}\t{}", bu.value(k), bi.value(k), bl.value(k))
                        .map_err(|e| Error::io(what, e))?;
                }
            }
        }
    }
    w.flush().map_err(|e| Error::io(what, e))
}

/// Read samples written by [`write_epoch_samples`] as an Arrow IPC stream.
pub fn read_epoch_samples_ipc<R: std::io::Read>(r: R, what: &str) -> Result<Vec<(u32, u32, f32)>> {
    use arrow::array::{Float32Array, UInt32Array};
    let bad = |e: &dyn std::fmt::Display| Error::parse(what, format!("not a samples stream: {e}"));
    let reader = arrow::ipc::reader::StreamReader::try_new(r, None).map_err(|e| bad(&e))?;
    if reader.schema().fields() != sample_schema().fields() {
        return Err(bad(&"columns are not (user: u32, item: u32, label: f32)"));
    }
    let mut out = Vec::new();
    for b in reader {
        let b = b.map_err(|e| bad(&e))?;
        let u = b
            .column(0)
            .as_any()
            .downcast_ref::<UInt32Array>()
            .expect("schema checked");
        let i = b
            .column(1)
            .as_any()
            .downcast_ref::<UInt32Array>()
            .expect("schema checked");
        let l = b
            .column(2)
            .as_any()
            .downcast_ref::<Float32Array>()
            .expect("schema checked");
        for k in 0..b.num_rows() {
            out.push((u.value(k), i.value(k), l.value(k)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ModelConfig, ModelKind};

    /// A backend whose quality per epoch is scripted: after epoch e, the held-out item scores
    /// `quality[e]` and every negative 0.5; loss NaN at (nan_epoch, nan_step).
    struct Fake {
        model: Model,
        quality: Vec<f32>,
        epoch_seen: Option<u32>,
        steps: Vec<(u32, std::ops::Range<u64>)>,
        nan_at: Option<(u32, u64)>,
        held_out: Vec<u32>,
    }

    impl Trainer for Fake {
        fn name(&self) -> String {
            "fake".into()
        }
        fn step(&mut self, epoch: u32, positions: std::ops::Range<u64>) -> Result<StepStats> {
            let s = self.steps.iter().filter(|(e, _)| *e == epoch).count() as u64;
            self.steps.push((epoch, positions));
            self.epoch_seen = Some(epoch);
            self.model.params[0] = epoch as f32; // marks which epoch a saved model is from
            let loss = if self.nan_at == Some((epoch, s)) {
                f32::NAN
            } else {
                0.5
            };
            Ok(StepStats {
                loss,
                skipped: false,
            })
        }
        fn score(&mut self, users: &[u32], items: &[u32], out: &mut [f32]) -> Result<()> {
            let q = self.quality[self.epoch_seen.unwrap() as usize];
            for k in 0..users.len() {
                let pos = self.held_out[users[k] as usize] == items[k];
                // users 0..q*n hit; the rest miss
                out[k] = if !pos {
                    0.5
                } else if (users[k] as f32) < q * 4.0 {
                    1.0
                } else {
                    0.0
                };
            }
            Ok(())
        }
        fn model(&mut self) -> Result<Model> {
            Ok(self.model.clone())
        }

        fn save_state(&mut self) -> Result<OptimizerState> {
            Err(Error::invalid("the fake trainer has no optimiser state"))
        }

        fn load_state(&mut self, _: &OptimizerState) -> Result<()> {
            Err(Error::invalid("the fake trainer has no optimiser state"))
        }
    }

    fn data() -> Dataset {
        // 4 users, 20 items, 3 train items each, one test item each
        let mut d = Dataset {
            n_users: 4,
            n_items: 20,
            ..Default::default()
        };
        for u in 0..4u32 {
            for k in 0..3 {
                d.train_users.push(u);
                d.train_items.push(u * 3 + k);
            }
            d.test_users.push(u);
            d.test_items.push(19 - u);
            d.test_negatives.extend([12, 13, 14]);
        }
        d.test_negatives_per_user = 3;
        d
    }

    fn cfg(epochs: u32) -> TrainConfig {
        TrainConfig {
            seed: 1,
            epochs,
            batch_size: 10,
            negatives: 4,
            negative_mode: NegativeMode::Approximate,
            optimizer: Optimizer::Adam,
            lr: 0.001,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            l2: 0.0,
            unobserved_weight: 0.0,
            precision: Precision::Fp32,
            topk: 1,
            target_hr: None,
        }
    }

    fn fake(quality: Vec<f32>, d: &Dataset) -> Fake {
        let c = ModelConfig {
            kind: ModelKind::Gmf,
            n_users: 4,
            n_items: 20,
            factors: 2,
            layers: vec![],
            dropout: 0.0,
        };
        Fake {
            model: Model::init(c, 1).unwrap(),
            quality,
            epoch_seen: None,
            steps: vec![],
            nan_at: None,
            held_out: d.test_items.clone(),
        }
    }

    fn opts<'a>(eval: &'a EvalSet, path: &'a Path) -> RunOptions<'a> {
        RunOptions::new(eval, "test", Some(path), "fp".into())
    }

    fn lines(out: &[u8]) -> Vec<serde_json::Value> {
        std::str::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn keeps_the_best_epoch_and_reports_each() {
        let d = data();
        let eval = EvalSet::from_test(&d).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let mut t = fake(vec![0.25, 0.75, 0.5], &d);
        let mut out = Vec::new();
        let s = run(&mut t, &cfg(3), &d, &opts(&eval, &p), &mut out).unwrap();
        assert_eq!((s.best_epoch, s.best_hr, s.epochs_run), (Some(1), 0.75, 3));
        let l = lines(&out);
        assert_eq!(l.len(), 4);
        assert_eq!(l[2]["hr"], 0.5);
        assert_eq!(l[0]["samples"], 60);
        assert_eq!(l[0]["steps"], 6);
        assert_eq!(l[3]["best_epoch"], 1);
        // steps cover every position of each epoch exactly once, in batches
        let e0: Vec<_> = t
            .steps
            .iter()
            .filter(|(e, _)| *e == 0)
            .map(|(_, r)| r.clone())
            .collect();
        assert_eq!(e0.first().unwrap().start, 0);
        assert_eq!(e0.last().unwrap().end, 60);
        assert!(e0.windows(2).all(|w| w[0].end == w[1].start));
        let (m, meta) = modelfile::load(&p).unwrap();
        assert_eq!(m.params[0], 1.0, "the saved model is not epoch 1's");
        assert_eq!(meta.epoch, Some(1));
        assert_eq!(meta.metrics.unwrap().hr, 0.75);
    }

    #[test]
    fn stops_at_the_target() {
        let d = data();
        let eval = EvalSet::from_test(&d).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let mut t = fake(vec![0.25, 0.5, 0.75, 1.0], &d);
        let mut c = cfg(4);
        c.target_hr = Some(0.5);
        let mut out = Vec::new();
        let s = run(&mut t, &c, &d, &opts(&eval, &p), &mut out).unwrap();
        assert_eq!((s.first_epoch_reaching_target, s.epochs_run), (Some(1), 2));
        assert!(s.time_to_target_s.is_some());
        assert_eq!(lines(&out).len(), 3);
    }

    #[test]
    fn nan_loss_stops_and_keeps_the_last_good_model() {
        let d = data();
        let eval = EvalSet::from_test(&d).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let mut t = fake(vec![0.5, 0.75, 1.0], &d);
        t.nan_at = Some((1, 2));
        let mut out = Vec::new();
        let err = run(&mut t, &cfg(3), &d, &opts(&eval, &p), &mut out)
            .unwrap_err()
            .to_string();
        assert!(err.contains("epoch 1 step 2"), "{err}");
        assert!(err.contains("epoch 0"), "{err}");
        let (m, _) = modelfile::load(&p).unwrap();
        assert_eq!(m.params[0], 0.0);
    }

    #[test]
    fn non_finite_weights_are_never_saved() {
        let d = data();
        let eval = EvalSet::from_test(&d).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let mut t = fake(vec![0.5], &d);
        t.model.params[1] = f32::INFINITY;
        let err = run(&mut t, &cfg(1), &d, &opts(&eval, &p), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("non-finite"), "{err}");
        assert!(!p.exists());
    }

    #[test]
    fn k_larger_than_the_candidates_is_refused() {
        let d = data();
        let eval = EvalSet::from_test(&d).unwrap();
        let mut t = fake(vec![0.5], &d);
        let mut c = cfg(1);
        c.topk = 5;
        let o = RunOptions {
            model_path: None,
            ..opts(&eval, Path::new("x"))
        };
        assert!(run(&mut t, &c, &d, &o, &mut Vec::new()).is_err());
    }

    #[test]
    fn validation_split_holds_out_one_train_row_per_user() {
        let mut d = data();
        d.train_users.push(3); // user 3 now has 4 rows
        d.train_items.push(0);
        let (train, v) = validation_split(&d, 7, 5, Holdout::Random).unwrap();
        assert_eq!(v.users, vec![0, 1, 2, 3]);
        assert_eq!(train.train_users.len(), d.train_users.len() - 4);
        let pos = UserItems::new(4, &d.train_users, &d.train_items);
        let kept = UserItems::new(4, &train.train_users, &train.train_items);
        for r in 0..v.len() {
            let (u, item) = (v.users[r], v.items[r]);
            assert!(pos.contains(u, item) && !kept.contains(u, item));
            let negs = &v.negatives[r * 5..(r + 1) * 5];
            let mut sorted = negs.to_vec();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 5, "negatives not distinct");
            assert!(negs
                .iter()
                .all(|&n| !pos.contains(u, n) && n != d.test_items[u as usize]));
        }
        let (_, again) = validation_split(&d, 7, 5, Holdout::Random).unwrap();
        assert_eq!(again, v);
        let (_, other) = validation_split(&d, 8, 5, Holdout::Random).unwrap();
        assert_ne!(other, v);
        assert!(validation_split(&d, 7, 17, Holdout::Random).is_err()); // 20 items − 3 train − 1 test < 17
                                                                        // Latest: needs timestamps that order the rows, takes each user's latest row (the
                                                                        // last of ties).
        assert!(validation_split(&d, 7, 5, Holdout::Latest).is_err());
        d.train_timestamps = Some(vec![0; d.train_users.len()]); // as the NCF authors' files
        let e = validation_split(&d, 7, 5, Holdout::Latest).unwrap_err();
        assert!(e.to_string().contains("no time order"), "{e}");
        let rows = d.train_users.len();
        let mut t: Vec<i64> = (0..rows as i64).map(|r| 100 - r).collect();
        let last_of_3 = rows - 1; // the row pushed above
        t[last_of_3] = 1000;
        let first_of_0 = d.train_users.iter().position(|&u| u == 0).unwrap();
        t[first_of_0] = 500;
        let second_of_0 = first_of_0
            + 1
            + d.train_users[first_of_0 + 1..]
                .iter()
                .position(|&u| u == 0)
                .unwrap();
        t[second_of_0] = 500; // a tie with the first: the later row wins
        d.train_timestamps = Some(t);
        let (_, latest) = validation_split(&d, 7, 5, Holdout::Latest).unwrap();
        assert_eq!(latest.items[3], 0, "user 3's latest item");
        assert_eq!(latest.items[0], d.train_items[second_of_0]);
        let (_, again) = validation_split(&d, 99, 5, Holdout::Latest).unwrap();
        assert_eq!(
            again.items, latest.items,
            "the latest does not depend on the seed"
        );
    }

    #[test]
    fn epoch_samples_round_trip_through_ipc_and_tsv() {
        let d = data();
        let s = EpochSamples::new(
            Rng::new(3),
            2,
            4,
            d.n_items,
            NegativeMode::Approximate,
            &d.train_users,
            &d.train_items,
            None,
        );
        let want: Vec<_> = (0..s.len()).map(|p| s.at(p).unwrap()).collect();
        let mut buf = Vec::new();
        write_epoch_samples(&s, SampleFormat::Ipc, &mut buf, "x").unwrap();
        assert_eq!(read_epoch_samples_ipc(&buf[..], "x").unwrap(), want);
        let mut tsv = Vec::new();
        write_epoch_samples(&s, SampleFormat::Tsv, &mut tsv, "x").unwrap();
        let text = String::from_utf8(tsv).unwrap();
        assert_eq!(text.lines().count(), want.len());
        let (u, i, l) = want[7];
        assert_eq!(text.lines().nth(7).unwrap(), format!("{u}\t{i}\t{l}"));
        let mut pq = Vec::new();
        write_epoch_samples(&s, SampleFormat::Parquet, &mut pq, "x").unwrap();
        assert_eq!(&pq[..4], b"PAR1");
        assert_eq!(
            SampleFormat::for_path(Path::new("a.parquet")),
            SampleFormat::Parquet
        );
        assert_eq!(SampleFormat::for_path(Path::new("-")), SampleFormat::Ipc);
    }

    #[test]
    fn test_negatives_avoid_every_positive() {
        let d = data();
        let negs = sample_test_negatives(&d, 10, 4).unwrap();
        assert_eq!(negs.len(), 40);
        let pos = UserItems::new(4, &d.train_users, &d.train_items);
        for (r, row) in negs.chunks(10).enumerate() {
            let u = d.test_users[r];
            let mut sorted = row.to_vec();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 10);
            assert!(row
                .iter()
                .all(|&i| !pos.contains(u, i) && i != d.test_items[r]));
        }
        assert_eq!(negs, sample_test_negatives(&d, 10, 4).unwrap());
        assert!(sample_test_negatives(&d, 17, 4).is_err());
    }
}
