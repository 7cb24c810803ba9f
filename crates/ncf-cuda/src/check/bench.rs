//! Training throughput on a synthetic problem of the ml-20m shape, per precision, with a
//! per-stage profile of one synchronised step.

use super::Log;
use crate::device::{self, Which};
use crate::first_layer::FirstLayer;
use crate::fused::StepKernels;
use crate::trainer::CudaTrainer;
use crate::CudaError;
use ncf_core::model::{Model, ModelConfig, ModelKind};
use ncf_core::neumf_cpu::reference::toy;
use ncf_core::sampling::rng::{stream, Rng};
use ncf_core::train::{Precision, Trainer};

/// Training throughput on a synthetic ml-20m-shaped problem: samples/s per precision, first
/// layer and step kernels (median of `steps` timed steps after `warmup`), as JSON.
#[allow(clippy::too_many_arguments)]
pub fn bench(
    which: Which,
    precisions: &[Precision],
    firsts: &[FirstLayer],
    kernels: &[StepKernels],
    steps: usize,
    warmup: usize,
    batch: u64,
    log: Log,
) -> Result<serde_json::Value, CudaError> {
    let (n_users, n_items, n_pos) = (138_493u32, 26_744u32, 20_000_263usize);
    if steps == 0 || batch == 0 || batch >= n_pos as u64 {
        return Err(CudaError::Invalid(format!(
            "bench: need at least one step and a batch in 1..{n_pos} (got {steps} steps of {batch})"
        )));
    }
    log(&format!("bench: generating {n_pos} positives"));
    let rng = Rng::new(20);
    let users: Vec<u32> = (0..n_pos)
        .map(|k| ncf_core::sampling::rng::below(rng.word(stream::SYNTH, k as u32, 0, 0), n_users))
        .collect();
    let items: Vec<u32> = (0..n_pos)
        .map(|k| ncf_core::sampling::rng::below(rng.word(stream::SYNTH, k as u32, 1, 0), n_items))
        .collect();
    let cfgm = ModelConfig {
        kind: ModelKind::Neumf,
        n_users,
        n_items,
        factors: 64,
        layers: vec![256, 256, 128, 64],
        dropout: 0.5,
    };
    let model = Model::init(cfgm.clone(), 1).map_err(|e| CudaError::Invalid(e.to_string()))?;
    let mut results = vec![];
    let mut info = None;
    let runs = precisions.iter().flat_map(|p| {
        firsts
            .iter()
            .flat_map(move |f| kernels.iter().map(move |k| (*p, *f, *k)))
    });
    for (p, first, kind) in runs {
        let mut cfg = toy::train_config(p, batch);
        cfg.lr = 0.0045;
        cfg.beta1 = 0.25;
        cfg.beta2 = 0.5;
        cfg.negatives = 4;
        let path = match first {
            FirstLayer::PerSample => "per-sample",
            FirstLayer::Factored => "factored",
        };
        let step = match kind {
            StepKernels::Fused => "fused",
            StepKernels::Split => "split",
        };
        log(&format!("bench {} {path} {step}: uploading", p.name()));
        let dev = device::open(which, p)?;
        let mut t = CudaTrainer::new(dev, &model, &cfg, &users, &items, None)?
            .with_first_layer(first)?
            .with_step(kind)?;
        // Timings without the --verbose per-kernel synchronisation.
        t.device().profile().sync_each.set(false);
        info = Some(t.device().info().clone());
        let per_epoch = t.samples_per_epoch();
        let mut times = vec![];
        let mut losses = vec![];
        for s in 0..warmup + steps {
            let start = (s as u64 * batch) % (per_epoch - batch);
            t.device().sync("bench")?;
            let t0 = std::time::Instant::now();
            let st = t
                .step(0, start..start + batch)
                .map_err(|e| CudaError::Invalid(e.to_string()))?;
            t.device().sync("bench")?;
            if s >= warmup {
                times.push(t0.elapsed().as_secs_f64());
            }
            losses.push(st.loss);
        }
        // The same number of steps as ncf-train runs them: queued, their stats read back once
        // per STATS_EVERY steps (FP16: after each), timed as a whole.
        t.device().sync("bench")?;
        let t0 = std::time::Instant::now();
        let mut queued_losses = vec![];
        for s in 0..steps {
            let start = (s as u64 * batch) % (per_epoch - batch);
            let done = t
                .step_queued(0, start..start + batch)
                .map_err(|e| CudaError::Invalid(e.to_string()))?;
            queued_losses.extend(done.iter().map(|st| st.loss));
        }
        let done = t.drain().map_err(|e| CudaError::Invalid(e.to_string()))?;
        queued_losses.extend(done.iter().map(|st| st.loss));
        let queued = t0.elapsed().as_secs_f64() / steps as f64;
        if queued_losses.len() != steps || queued_losses.iter().any(|l| !l.is_finite()) {
            return Err(CudaError::Invalid(format!(
                "bench {}: {} of {steps} queued steps reported, losses {:?}",
                p.name(),
                queued_losses.len(),
                &queued_losses[..queued_losses.len().min(4)]
            )));
        }
        // One more step with every kernel synchronised and timed: where the time goes.
        *t.device().profile().on.borrow_mut() = Some(vec![]);
        t.step(0, 0..batch)
            .map_err(|e| CudaError::Invalid(e.to_string()))?;
        let stages: Vec<serde_json::Value> = t
            .device()
            .profile()
            .on
            .borrow_mut()
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(|(name, s)| serde_json::json!({"stage": name, "ms": s * 1e3}))
            .collect();
        times.sort_by(|a, b| a.total_cmp(b));
        let med = times[times.len() / 2];
        let flops = 6.0 * cfgm.macs_per_sample() as f64 * batch as f64;
        log(&format!(
            "bench {} {path} {step}: median step {:.3} ms",
            p.name(),
            med * 1e3
        ));
        results.push(serde_json::json!({
            "precision": p.name(), "first_layer": path, "step": step, "batch": batch, "median_step_ms": med * 1e3,
            "min_step_ms": times[0] * 1e3, "samples_per_s": batch as f64 / med,
            "tflops": flops / med / 1e12, "queued_step_ms": queued * 1e3, "queued_samples_per_s": batch as f64 / queued, "first_loss": losses[0], "last_loss": losses[losses.len() - 1], "stages": stages,
        }));
    }
    let Some(info) = info else {
        return Err(CudaError::Invalid("bench: no precision to run".into()));
    };
    Ok(
        serde_json::json!({"device": info.name, "arch": info.arch(), "users": n_users, "items": n_items,
        "positives": n_pos, "steps": steps, "warmup": warmup, "results": results}),
    )
}
