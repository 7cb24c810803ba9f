//! The training loop shared by every backend: epochs of shuffled samples in batches, evaluation
//! after each epoch, best model kept, early stop at a target HR, NVIDIA-style JSON reports.
//! A backend implements [`Trainer`]; the CPU ones are [`crate::neumf_cpu`] and
//! [`crate::family`], the CUDA one is `ncf-cuda`.

use super::backend::{StepStats, Trainer};
use super::checkpoint::{self, CheckpointMeta, OptimizerState, Position};
use super::config::{check_config, TrainConfig};
use super::report::ReportSink;
use crate::data::dataset::Dataset;
use crate::eval::metrics::{EvalSet, Metrics};
use crate::model::file::{self as modelfile, ModelMeta};
use crate::model::{Model, ModelConfig};
use crate::sampling::rng::Rng;
use crate::sampling::sampler::{EpochSamples, NegativeMode, MAX_EPOCH_SAMPLES};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
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
    /// Its split fingerprint ([`crate::data::dataset::Dataset::split_fingerprint`]), stored too: lets
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
    /// A bounded run: stop after this many steps (counted from where the run starts or
    /// resumes). An epoch cut short is neither evaluated nor reported; the model after the last
    /// step is written to `model_path` without metrics and no checkpoint is kept for it.
    pub max_steps: Option<u64>,
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
            max_steps: None,
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

/// Write `v` as one JSON line to `out`.
fn json_line<T: Serialize>(out: &mut dyn ReportSink, v: &T) -> Result<()> {
    let mut line = serde_json::to_vec(v).map_err(|e| Error::invalid(format!("report: {e}")))?;
    line.push(b'\n');
    out.report_line(&line)
}

/// Samples in epoch `epoch` of `data` under `cfg` (the same for every negative mode).
pub fn epoch_len(cfg: &TrainConfig, data: &Dataset, epoch: u32) -> Result<u64> {
    let n = data.train_users.len() as u64 * (1 + cfg.negatives as u64);
    if n >= MAX_EPOCH_SAMPLES {
        return Err(Error::usage(format!(
            "an epoch would have {n} samples ({} positives × {}): at most 2^48 − 1 are supported",
            data.train_users.len(),
            1 + cfg.negatives as u64
        )));
    }
    if data.train_users.is_empty() {
        return Err(Error::invalid("the dataset has no training interactions"));
    }
    let s = EpochSamples::over(
        Rng::new(cfg.seed),
        epoch,
        cfg.negatives,
        data.n_items,
        NegativeMode::Approximate,
        data.train_users.view(),
        &data.train_items,
        None,
    );
    Ok(s.len())
}

/// HR/NDCG of `eval` with the rows sharded across the trainer's ranks: each rank ranks its
/// share ([`crate::eval::metrics::shard`]) and the integer counts are summed, so the result is the
/// same bits as one rank ranking every row.
pub fn evaluate_sharded(trainer: &mut dyn Trainer, eval: &EvalSet, k: usize) -> Result<Metrics> {
    let (rank, world) = trainer.rank_world();
    let rows = crate::eval::metrics::shard(eval.len(), rank, world);
    let acc = crate::eval::metrics::evaluate_rows(eval, k, rows, |u, i, o| trainer.score(u, i, o))?;
    let mut counts = acc.to_f64s();
    trainer.allreduce_f64(&mut counts)?;
    let acc = crate::eval::metrics::Accumulator::from_f64s(k, &counts);
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
    out: &mut dyn ReportSink,
) -> Result<Summary> {
    check_config(cfg)?;
    opts.eval.check_k(cfg.topk)?;
    let backend = trainer.name();
    let mut pos = fresh_position(cfg, opts, &backend);
    let eval_digest = opts.eval.digest();
    if let Some((meta, state)) = &opts.resume {
        check_model_kept(&meta.position, opts.model_path, cfg.topk)?;
        trainer.load_state(state)?;
        pos = meta.position.clone();
        pos.summary.backend = backend.clone();
    }
    let model_config = trainer.model_config()?;
    let ctx = RunCtx {
        cfg,
        opts,
        model_config: &model_config,
        eval_digest: &eval_digest,
        backend: &backend,
    };
    let mut last_progress = Instant::now();
    let mut steps_left = opts.max_steps;
    while pos.epoch < cfg.epochs && pos.summary.first_epoch_reaching_target.is_none() {
        if steps_left == Some(0) {
            break;
        }
        let epoch = pos.epoch;
        let len = epoch_len(cfg, data, epoch)?;
        let batch = cfg.batch_size.per_step(len);
        let steps = len.div_ceil(batch);
        let plan = EpochPlan {
            epoch,
            len,
            batch,
            steps,
        };
        let train_s = train_epoch(
            trainer,
            &ctx,
            &mut pos,
            plan,
            &mut last_progress,
            &mut steps_left,
        )?;
        if pos.step < steps {
            // A bounded run cut this epoch short.
            end_bounded(trainer, &ctx, &mut pos, plan, train_s)?;
            break;
        }
        let reached = end_epoch(trainer, &ctx, &mut pos, plan, train_s, out)?;
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

/// Before resuming at `pos`: the model file `model_path` must hold what the interrupted run
/// last wrote there, since the resumed run rewrites it only when a later epoch does better (with
/// another `-o`, or the file moved away, the run would end with no model, or another one).
pub fn check_model_kept(pos: &Position, model_path: Option<&Path>, k: usize) -> Result<()> {
    let (Some((hr, _, best_epoch)), Some(path)) = (pos.best, model_path) else {
        return Ok(());
    };
    let (epoch, wrote, want) = match &pos.model_written {
        Some(w) => (
            w.epoch,
            Some(w.path.as_path()),
            Some(w.params_sha256.as_str()),
        ),
        None => (best_epoch, None, None),
    };
    let held = match modelfile::load(path) {
        Ok((m, meta)) => match want {
            Some(sha) => modelfile::params_sha256(&m.params) == sha,
            None => meta.epoch == Some(epoch),
        },
        Err(_) => false,
    };
    if held {
        return Ok(());
    }
    let why = if path.exists() {
        "holds another model"
    } else {
        "does not exist"
    };
    let (at, fix) = match wrote {
        Some(w) if w != std::path::absolute(path).unwrap_or_default() => (
            format!("to {}", w.display()),
            format!(
                "resume with -o {} (or copy it to {})",
                w.display(),
                path.display()
            ),
        ),
        _ => (
            "there".to_string(),
            format!("put that model back at {}", path.display()),
        ),
    };
    let score = match epoch == best_epoch {
        true => format!(" (HR@{k} {hr:.4})"),
        false => String::new(),
    };
    Err(Error::usage(format!(
        "{}: {why}, but the run being resumed wrote its model of epoch {epoch}{score} {at}; a \
         resumed run writes a model only when a later epoch does better, so it could end with \
         none: {fix}",
        path.display()
    )))
}

/// What [`run`]'s helpers share: the configuration, the options, and what every checkpoint
/// records about the run.
struct RunCtx<'a> {
    cfg: &'a TrainConfig,
    opts: &'a RunOptions<'a>,
    model_config: &'a ModelConfig,
    eval_digest: &'a str,
    backend: &'a str,
}

/// The shape of one epoch: its index, samples, samples per step and steps.
#[derive(Clone, Copy)]
struct EpochPlan {
    epoch: u32,
    len: u64,
    batch: u64,
    steps: u64,
}

/// The position of a run that has not started: epoch 0, step 0, an empty summary.
fn fresh_position(cfg: &TrainConfig, opts: &RunOptions, backend: &str) -> Position {
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
        backend: backend.to_string(),
    };
    Position {
        epoch: 0,
        step: 0,
        epoch_loss_sum: 0.0,
        epoch_loss_n: 0,
        epoch_skipped: 0,
        epoch_train_s: 0.0,
        best: None,
        model_written: None,
        total_samples: 0,
        summary: fresh,
    }
}

/// Write a checkpoint of the trainer's state at `pos` (nothing without a checkpoint directory).
fn save_checkpoint(ctx: &RunCtx, trainer: &mut dyn Trainer, pos: &Position) -> Result<()> {
    let opts = ctx.opts;
    let Some(dir) = opts.checkpoint_dir else {
        return Ok(());
    };
    let state = trainer.save_state()?;
    let meta = CheckpointMeta {
        format_version: checkpoint::CHECKPOINT_FORMAT_VERSION,
        model_config: ctx.model_config.clone(),
        train_config: ctx.cfg.clone(),
        dataset_fingerprint: opts.dataset_fingerprint.clone(),
        eval: opts.eval_name.to_string(),
        eval_digest: ctx.eval_digest.to_string(),
        backend: ctx.backend.to_string(),
        position: pos.clone(),
        steps: 0,
        loss_scale: 1.0,
        clean_steps: 0,
        sha256: Default::default(),
    };
    checkpoint::save(dir, meta, &state)
}

/// The error of a run stopped by a signal before `pos`: where the checkpoint is and how to resume.
fn stopped(opts: &RunOptions, pos: &Position) -> Error {
    let saved = match opts.checkpoint_dir {
        Some(d) => format!("a checkpoint is in {}", d.display()),
        None => "no checkpoint was written (no checkpoint directory)".to_string(),
    };
    Error::invalid(format!(
        "stopped by a signal before epoch {} step {}: {saved}; {}",
        pos.epoch, pos.step, opts.resume_hint
    ))
}

/// Whether the stop flag (if any) has been raised.
fn stop_raised(opts: &RunOptions) -> bool {
    opts.stop
        .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
}

/// Run the remaining steps of `plan`'s epoch from `pos.step`, checkpointing every
/// `checkpoint_every` steps and stopping (with a checkpoint) when any rank saw the stop flag;
/// returns the epoch's training seconds.
fn train_epoch(
    trainer: &mut dyn Trainer,
    ctx: &RunCtx,
    pos: &mut Position,
    plan: EpochPlan,
    last_progress: &mut Instant,
    steps_left: &mut Option<u64>,
) -> Result<f64> {
    let opts = ctx.opts;
    let EpochPlan {
        epoch,
        len,
        batch,
        steps,
    } = plan;
    let t0 = Instant::now();
    let train_before = pos.epoch_train_s;
    // Steps handed to the trainer whose stats have not come back yet (step, samples).
    let mut queued = std::collections::VecDeque::new();
    let mut record = |pos: &mut Position,
                      done: Vec<StepStats>,
                      queued: &mut std::collections::VecDeque<(u64, u64)>| {
        for st in done {
            let (s, n) = queued
                .pop_front()
                .ok_or_else(|| Error::invalid("the trainer reported a step it was not given"))?;
            record_step(opts, pos, plan, s, n, &st, last_progress)?;
        }
        Ok::<(), Error>(())
    };
    while pos.step < steps && *steps_left != Some(0) {
        // Ranks agree on stopping before every step (one small host collective with a
        // timeout): a signal seen by one rank stops all of them at the same step, and a rank
        // that has gone is noticed here instead of inside a device collective (NCCL has no
        // timeout).
        let mut stop = [stop_raised(opts) as u8 as f64];
        if trainer.rank_world().1 > 1 {
            trainer.allreduce_f64(&mut stop)?;
        }
        if stop[0] > 0.0 {
            record(pos, trainer.drain()?, &mut queued)?;
            pos.epoch_train_s = train_before + t0.elapsed().as_secs_f64();
            save_checkpoint(ctx, trainer, pos)?;
            return Err(stopped(opts, pos));
        }
        let s = pos.step;
        let range = s * batch..((s + 1) * batch).min(len);
        queued.push_back((s, range.end - range.start));
        let done = trainer.step_queued(epoch, range)?;
        pos.step += 1;
        if let Some(n) = steps_left {
            *n -= 1;
        }
        record(pos, done, &mut queued)?;
        if opts.checkpoint_every > 0
            && pos.step.is_multiple_of(opts.checkpoint_every)
            && pos.step < steps
        {
            record(pos, trainer.drain()?, &mut queued)?;
            pos.epoch_train_s = train_before + t0.elapsed().as_secs_f64();
            save_checkpoint(ctx, trainer, pos)?;
        }
    }
    record(pos, trainer.drain()?, &mut queued)?;
    if let Some((s, _)) = queued.front() {
        return Err(Error::invalid(format!(
            "epoch {epoch}: the trainer never reported step {s} ({} steps unreported)",
            queued.len()
        )));
    }
    Ok(train_before + t0.elapsed().as_secs_f64())
}

/// Account for step `s` (of `n` samples) of `plan`'s epoch: count a skipped step, refuse a
/// non-finite loss, or add the loss to the epoch's and show progress.
fn record_step(
    opts: &RunOptions,
    pos: &mut Position,
    plan: EpochPlan,
    s: u64,
    n: u64,
    st: &StepStats,
    last_progress: &mut Instant,
) -> Result<()> {
    let EpochPlan { epoch, steps, .. } = plan;
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
            *last_progress = Instant::now();
            eprint!(
                "\repoch {epoch} step {}/{steps} loss {:.4}   ",
                s + 1,
                st.loss
            );
        }
    }
    Ok(())
}

/// After `plan`'s epoch trained for `train_s` seconds: evaluate, update the summary, keep the
/// model if it is the best (or the last, with `save_last`), report the epoch, move `pos` to
/// the next epoch and checkpoint; returns whether the target HR was reached.
fn end_epoch(
    trainer: &mut dyn Trainer,
    ctx: &RunCtx,
    pos: &mut Position,
    plan: EpochPlan,
    train_s: f64,
    out: &mut dyn ReportSink,
) -> Result<bool> {
    let (cfg, opts) = (ctx.cfg, ctx.opts);
    let EpochPlan {
        epoch, len, steps, ..
    } = plan;
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
        let mut written = None;
        trainer.with_model(&mut |model| {
            if !model.is_finite() {
                return Err(Error::invalid(format!(
                    "training diverged: non-finite weights after epoch {epoch} (try a lower --lr)"
                )));
            }
            if let Some(p) = opts.model_path {
                save_trained(p, model, cfg, opts, epoch, Some(&m))?;
                written = Some(checkpoint::ModelWritten {
                    path: std::path::absolute(p).map_err(|e| Error::io(p, e))?,
                    epoch,
                    params_sha256: modelfile::params_sha256(&model.params),
                });
            }
            Ok(())
        })?;
        if better {
            pos.best = Some((m.hr, m.ndcg, epoch));
        }
        if written.is_some() {
            pos.model_written = written;
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
    save_checkpoint(ctx, trainer, pos)?;
    Ok(reached)
}

/// The end of a bounded run (`max_steps`) inside `plan`'s epoch, trained for `train_s`
/// seconds up to `pos.step`: no evaluation; the model as it is goes to `model_path`, without
/// metrics (refused if not finite), and the summary counts the steps' samples.
fn end_bounded(
    trainer: &mut dyn Trainer,
    ctx: &RunCtx,
    pos: &mut Position,
    plan: EpochPlan,
    train_s: f64,
) -> Result<()> {
    let (cfg, opts) = (ctx.cfg, ctx.opts);
    let samples = (pos.step * plan.batch).min(plan.len);
    pos.total_samples += samples;
    pos.summary.train_time_s += train_s;
    let sps = samples as f64 / train_s.max(1e-9);
    pos.summary.best_samples_per_s = pos.summary.best_samples_per_s.max(sps);
    trainer.with_model(&mut |model| {
        if !model.is_finite() {
            return Err(Error::invalid(format!(
                "training diverged: non-finite weights after epoch {} step {} (try a lower --lr)",
                plan.epoch, pos.step
            )));
        }
        if let Some(p) = opts.model_path {
            save_trained(p, model, cfg, opts, plan.epoch, None)?;
        }
        Ok(())
    })
}

/// Save `model` to `path` with the metadata of this run and of `epoch`'s metrics (none for a
/// bounded run's model, which was not evaluated).
fn save_trained(
    path: &Path,
    model: &Model,
    cfg: &TrainConfig,
    opts: &RunOptions,
    epoch: u32,
    m: Option<&Metrics>,
) -> Result<()> {
    let mut meta = ModelMeta::new(model.config.clone(), opts.dataset_fingerprint.clone());
    meta.split_fingerprint = opts.split_fingerprint.clone();
    meta.epoch = Some(epoch);
    meta.metrics = m.map(|m| {
        let mut m = m.clone();
        if opts.eval_name != "test" {
            m.protocol = format!("{} ({})", m.protocol, opts.eval_name);
        }
        m
    });
    // Through text so that f32 fields keep their short form (0.9, not 0.8999999761581421).
    let text = serde_json::to_string(cfg).map_err(|e| Error::invalid(e.to_string()))?;
    meta.train_config =
        Some(serde_json::from_str(&text).map_err(|e| Error::invalid(e.to_string()))?);
    modelfile::save(path, model, &meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::four_users as data;
    use crate::model::{ModelConfig, ModelKind};
    use crate::train::backend::{Scorer, StepStats};
    use crate::train::config::{BatchSize, Optimizer, Precision};

    /// A backend whose quality per epoch is scripted: after epoch e, the held-out item scores
    /// `quality[e]` and every negative 0.5; loss NaN at (nan_epoch, nan_step).
    struct Fake {
        model: Model,
        quality: Vec<f32>,
        epoch_seen: Option<u32>,
        steps: Vec<(u32, std::ops::Range<u64>)>,
        nan_at: Option<(u32, u64)>,
        held_out: Vec<u32>,
        /// Losses vary by step (0.1 × (step + 1)) instead of 0.5 throughout.
        loss_by_step: bool,
        /// `step_queued` holds stats back until this many are waiting (as the CUDA backend
        /// does); None: the default, each step reported at once.
        queue: Option<usize>,
        waiting: Vec<StepStats>,
        drains: usize,
    }

    impl Scorer for Fake {
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
            } else if self.loss_by_step {
                0.1 * (s + 1) as f32
            } else {
                0.5
            };
            Ok(StepStats {
                loss,
                skipped: false,
            })
        }
        fn step_queued(
            &mut self,
            epoch: u32,
            positions: std::ops::Range<u64>,
        ) -> Result<Vec<StepStats>> {
            let st = self.step(epoch, positions)?;
            let Some(k) = self.queue else {
                return Ok(vec![st]);
            };
            self.waiting.push(st);
            Ok(if self.waiting.len() == k {
                std::mem::take(&mut self.waiting)
            } else {
                Vec::new()
            })
        }
        fn drain(&mut self) -> Result<Vec<StepStats>> {
            self.drains += 1;
            Ok(std::mem::take(&mut self.waiting))
        }
        fn model(&mut self) -> Result<Model> {
            assert!(self.waiting.is_empty(), "the model read with steps queued");
            Ok(self.model.clone())
        }

        fn save_state(&mut self) -> Result<OptimizerState> {
            assert!(self.waiting.is_empty(), "a checkpoint with steps queued");
            Err(Error::invalid("the fake trainer has no optimiser state"))
        }

        fn load_state(&mut self, _: &OptimizerState) -> Result<()> {
            Err(Error::invalid("the fake trainer has no optimiser state"))
        }
    }

    fn cfg(epochs: u32) -> TrainConfig {
        TrainConfig {
            adam_moments: Default::default(),
            seed: 1,
            epochs,
            batch_size: BatchSize::Samples(10),
            negatives: 4,
            negative_mode: NegativeMode::Approximate,
            optimizer: Optimizer::Adam,
            lr: 0.001,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            l2: 0.0,
            family: Default::default(),
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
            held_out: d.test_items.to_vec(),
            loss_by_step: false,
            queue: None,
            waiting: Vec::new(),
            drains: 0,
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
    fn a_bounded_run_stops_after_max_steps_and_writes_the_unevaluated_model() {
        let d = data();
        let eval = EvalSet::from_test(&d).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        // Epochs have 6 steps of 10 samples: 8 steps are one epoch (evaluated and reported)
        // and 2 steps of the next, which is cut short (neither evaluated nor reported).
        let mut t = fake(vec![0.25, 0.75, 0.5], &d);
        t.queue = Some(3);
        let mut o = opts(&eval, &p);
        o.max_steps = Some(8);
        let mut out = Vec::new();
        let s = run(&mut t, &cfg(3), &d, &o, &mut out).unwrap();
        assert_eq!(t.steps.len(), 8);
        assert_eq!(t.steps.last().unwrap(), &(1, 10..20));
        assert_eq!((s.epochs_run, s.best_epoch, s.best_hr), (1, Some(0), 0.25));
        let l = lines(&out);
        assert_eq!(l.len(), 2, "epoch 0's line and the summary");
        assert!(l[1]["avg_samples_per_s"].as_f64().unwrap() > 0.0);
        let (m, meta) = modelfile::load(&p).unwrap();
        assert_eq!(
            m.params[0], 1.0,
            "the model after the last step is epoch 1's"
        );
        assert_eq!(meta.epoch, Some(1));
        assert!(meta.metrics.is_none(), "a cut epoch has no metrics");

        // A bound at an epoch's end is a whole run of that many epochs.
        let mut t = fake(vec![0.25, 0.75, 0.5], &d);
        let mut o = opts(&eval, &p);
        o.max_steps = Some(12);
        let mut out = Vec::new();
        let s = run(&mut t, &cfg(3), &d, &o, &mut out).unwrap();
        assert_eq!(
            (t.steps.len(), s.epochs_run, s.best_epoch),
            (12, 2, Some(1))
        );
        assert_eq!(lines(&out).len(), 3);
        let (_, meta) = modelfile::load(&p).unwrap();
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

    /// A trainer that reports its steps late and in groups (the CUDA backend reads its losses
    /// back once per 32 steps) gives the epochs' losses and metrics of one that reports each
    /// step at once: stats are matched to their steps in order, with their own sample counts
    /// (the last batch is short), and everything is drained before the epoch ends.
    #[test]
    fn steps_reported_late_give_the_same_report() {
        let d = data();
        let eval = EvalSet::from_test(&d).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg(2);
        c.batch_size = BatchSize::Samples(7); // 60 samples: 8 steps of 7, one of 4
        let report = |queue: Option<usize>| {
            let p = dir.path().join(format!("m{queue:?}.safetensors"));
            let mut t = fake(vec![0.25, 0.75], &d);
            t.loss_by_step = true;
            t.queue = queue;
            let mut out = Vec::new();
            run(&mut t, &c, &d, &opts(&eval, &p), &mut out).unwrap();
            let keep = |l: &serde_json::Value| {
                (
                    l["epoch"].clone(),
                    l["loss"].clone(),
                    l["hr"].clone(),
                    l["steps"].clone(),
                )
            };
            (lines(&out).iter().map(keep).collect::<Vec<_>>(), t.drains)
        };
        let (now, _) = report(None);
        // Weighted by each step's samples: (0.1 + … + 0.8) × 7 + 0.9 × 4 over 60.
        assert!((now[0].1.as_f64().unwrap() - 0.48).abs() < 1e-6, "{now:?}");
        for k in [1, 3, 4, 20] {
            let (late, drains) = report(Some(k));
            assert_eq!(late, now, "reported in groups of {k}");
            assert!(drains >= 2, "groups of {k}: {drains} drains for 2 epochs");
        }
    }

    /// A non-finite loss reported late still names the step it came from.
    #[test]
    fn a_nan_loss_reported_late_names_its_step() {
        let d = data();
        let eval = EvalSet::from_test(&d).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let mut t = fake(vec![0.5, 0.75, 1.0], &d);
        t.nan_at = Some((1, 2));
        t.queue = Some(4);
        let err = run(&mut t, &cfg(3), &d, &opts(&eval, &p), &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("epoch 1 step 2 of 6"), "{err}");
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
}
