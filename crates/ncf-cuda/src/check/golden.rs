//! The golden run: the CPU trainer and the GPU from the same model, data and seed for a few
//! steps; the loss curves, the scores afterwards and their top-K must agree. Its tests check
//! that the reference trainer, the CPU trainer and finite differences agree among themselves.

use super::{compare, compare_scaled, exact, f, Check, Log};
use crate::device::{self, Which};
use crate::first_layer::FirstLayer;
use crate::fused::StepKernels;
use crate::trainer::CudaTrainer;
use crate::CudaError;
use ncf_core::eval::topk::top_k_of;
use ncf_core::model::ModelKind;
use ncf_core::neumf_cpu::reference::toy;
use ncf_core::neumf_cpu::CpuTrainer;
use ncf_core::sampling::sampler::{NegativeMode, UserItems};
use ncf_core::train::{Precision, Scorer, Trainer};

/// One golden run: the model kind, the first layer's path and the step's kernels.
pub type Run = (ModelKind, FirstLayer, StepKernels);

/// The golden runs of precision `p`: every model kind in FP32, NeuMF in the others; NeuMF also
/// with the factored first layer, and both NeuMF runs again with the fused step.
pub fn runs(p: Precision) -> Vec<Run> {
    let split = StepKernels::Split;
    let mut r = vec![(ModelKind::Neumf, FirstLayer::PerSample, split)];
    if p == Precision::Fp32 {
        r.push((ModelKind::Gmf, FirstLayer::PerSample, split));
        r.push((ModelKind::Mlp, FirstLayer::PerSample, split));
    }
    r.push((ModelKind::Neumf, FirstLayer::Factored, split));
    r.push((ModelKind::Neumf, FirstLayer::PerSample, StepKernels::Fused));
    r.push((ModelKind::Neumf, FirstLayer::Factored, StepKernels::Fused));
    r
}

/// `neumf`, `gmf`, `mlp`, `neumf_factored`, `neumf_fused`, `neumf_factored_fused`: a golden
/// run's name in the report.
pub fn run_name((kind, first, step): Run) -> String {
    let k = format!("{kind:?}").to_lowercase();
    let k = match first {
        FirstLayer::Factored => format!("{k}_factored"),
        FirstLayer::PerSample => k,
    };
    match step {
        StepKernels::Fused => format!("{k}_fused"),
        StepKernels::Split => k,
    }
}

/// Golden run: CPU reference and GPU from the same model, data and seed for `steps` steps; the
/// loss curves must agree (fp32 1e-4 relative, others 2e-2), and so must scores afterwards.
pub fn golden(
    which: Which,
    p: Precision,
    run: Run,
    steps: u32,
    log: Log,
) -> Result<Vec<Check>, CudaError> {
    golden_in(which, p, run, NegativeMode::Exact, steps, log)
}

/// [`golden`] with the training negatives drawn in `mode` (run names of approximate negatives
/// end in `_approx`).
pub fn golden_in(
    which: Which,
    p: Precision,
    (kind, first, step): Run,
    mode: NegativeMode,
    steps: u32,
    log: Log,
) -> Result<Vec<Check>, CudaError> {
    let (n_users, n_items) = (30u32, 200u32);
    let (us, is) = toy::data(n_users, n_items, 10, 8);
    let positives = UserItems::new(n_users, &us, &is);
    let model = toy::model(kind, n_users, n_items, 0.25, 9);
    let batch = 128u64;
    let mut cfg = toy::train_config(p, batch);
    cfg.negative_mode = mode;
    log(&format!(
        "golden {kind:?} {} {mode:?}: {} positives, {steps} steps of {batch}",
        p.name(),
        us.len()
    ));
    let dev = device::open(which, p)?;
    let mut gpu = CudaTrainer::new(dev, &model, &cfg, &us, &is, Some(&positives))?
        .with_first_layer(first)?
        .with_step(step)?;
    let mut cpu = CpuTrainer::new(
        model,
        &cfg,
        us.clone(),
        is.clone(),
        Some(positives.clone()),
        1,
    )
    .map_err(|e| CudaError::Invalid(format!("CPU trainer: {e}")))?;
    let per_epoch = us.len() as u64 * (1 + cfg.negatives as u64);
    let (mut lg, mut lc) = (vec![], vec![]);
    let mut skipped = 0;
    let mut pos = 0u64;
    let mut epoch = 0u32;
    for _ in 0..steps {
        if pos >= per_epoch {
            pos = 0;
            epoch += 1;
        }
        let end = (pos + batch).min(per_epoch);
        let sg = gpu
            .step(epoch, pos..end)
            .map_err(|e| CudaError::Invalid(e.to_string()))?;
        let sc = cpu
            .step(epoch, pos..end)
            .map_err(|e| CudaError::Invalid(e.to_string()))?;
        skipped += sg.skipped as u32;
        lg.push(sg.loss as f64);
        lc.push(sc.loss as f64);
        pos = end;
    }
    let tol = if matches!(p, Precision::Fp32) {
        1e-4
    } else {
        2e-2
    };
    let tag = match mode {
        NegativeMode::Exact => run_name((kind, first, step)),
        NegativeMode::Approximate => format!("{}_approx", run_name((kind, first, step))),
    };
    let mut c = compare(&format!("golden_loss_{tag}"), p, &lg, &lc, 0.0, tol);
    c.note = format!(
        "{}gpu {:?} cpu {:?}",
        if skipped > 0 {
            format!("{skipped} skipped, ")
        } else {
            String::new()
        },
        lg.iter().map(|x| *x as f32).collect::<Vec<_>>(),
        lc.iter().map(|x| *x as f32).collect::<Vec<_>>()
    );
    let mut out = vec![c];
    // FP32: every tensor after the steps, to 1e-5 of the tensor's largest value. (Not in the
    // lower precisions: Adam divides by the gradient's own size, so a rounding difference in a
    // near-zero gradient moves its parameter by up to the learning rate either way; their
    // losses and scores are compared instead.)
    let (pg, pc) = (
        gpu.model().map_err(|e| CudaError::Invalid(e.to_string()))?,
        cpu.model().map_err(|e| CudaError::Invalid(e.to_string()))?,
    );
    let ptol = 1e-5;
    for t in pc.layout.tensors.iter().filter(|_| p == Precision::Fp32) {
        let r = t.range();
        out.push(compare_scaled(
            &format!("golden_params_{tag}:{}", t.name),
            p,
            &f(&pg.params[r.clone()]),
            &f(&pc.params[r]),
            ptol,
        ));
    }
    // Scores after training (dropout off), all pairs of a few users.
    let su: Vec<u32> = (0..5u32)
        .flat_map(|u| std::iter::repeat_n(u, n_items as usize))
        .collect();
    let si: Vec<u32> = (0..5).flat_map(|_| 0..n_items).collect();
    let (mut og, mut oc) = (vec![0f32; su.len()], vec![0f32; su.len()]);
    gpu.score(&su, &si, &mut og)
        .map_err(|e| CudaError::Invalid(e.to_string()))?;
    cpu.score(&su, &si, &mut oc)
        .map_err(|e| CudaError::Invalid(e.to_string()))?;
    let stol = if matches!(p, Precision::Fp32) {
        1e-4
    } else {
        3e-2
    };
    out.push(compare_scaled(
        &format!("golden_score_{tag}"),
        p,
        &f(&og),
        &f(&oc),
        stol,
    ));
    // Top-K from the GPU's scores (all items of 5 users, train positives excluded) vs the CPU's.
    let top = |scores: &[f32]| -> Vec<Vec<u32>> {
        (0..5u32)
            .map(|u| {
                let row = &scores[u as usize * n_items as usize..][..n_items as usize];
                top_k_of(row, 10, positives.of(u))
                    .iter()
                    .map(|x| x.0)
                    .collect()
            })
            .collect()
    };
    // FP32: the same lists. Lower precisions: the same lists up to the order of items whose
    // CPU scores differ by less than the score tolerance (a near tie may fall either way).
    let (tg, tc) = (top(&og), top(&oc));
    let tg = match p {
        Precision::Fp32 => tg,
        _ => {
            let max = oc.iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
            let close = |u: usize, a: u32, b: u32| {
                let row = &oc[u * n_items as usize..][..n_items as usize];
                ((row[a as usize] - row[b as usize]).abs() as f64) <= stol * max
            };
            tg.into_iter()
                .zip(&tc)
                .enumerate()
                .map(|(u, (g, c))| {
                    g.iter()
                        .zip(c)
                        .map(|(&a, &b)| if close(u, a, b) { b } else { a })
                        .collect()
                })
                .collect()
        }
    };
    out.push(exact(&format!("topk_{tag}"), p, &tg, &tc));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ncf_core::model::Model;
    use ncf_core::neumf_cpu::reference::{self, RefTrainer};
    use ncf_core::sampling::rng::Rng;

    /// The CPU reference's gradient is the derivative of its loss (central differences, fixed
    /// dropout mask), for every model kind: the kernels are checked against it, so it must be right.
    #[test]
    fn reference_gradient_matches_finite_differences() {
        for kind in [ModelKind::Neumf, ModelKind::Gmf, ModelKind::Mlp] {
            let mut model = toy::model(kind, 6, 9, 0.25, 4);
            for x in model.params.iter_mut() {
                *x *= 3.0; // larger values: finite differences above f32 noise
            }
            let users = [0u32, 1, 2, 3, 4, 5, 0, 3];
            let items = [1u32, 2, 3, 4, 5, 6, 7, 8];
            let labels = [1f32, 0., 1., 0., 0., 1., 0., 1.];
            let rng = Rng::new(3);
            let loss_and_grad = |m: &Model| {
                let acts: Vec<_> = (0..8)
                    .map(|b| reference::forward(m, users[b], items[b], Some((&rng, 0, b as u64))))
                    .collect();
                reference::batch_loss_and_grad(m, &acts, &labels)
            };
            let (_, g) = loss_and_grad(&model);
            let loss_at = |params: &[f32]| {
                loss_and_grad(&Model {
                    params: params.to_vec(),
                    ..model.clone()
                })
                .0
            };
            let (mut tested, mut bad) = (0, vec![]);
            for k in (0..model.params.len()).filter(|&k| g[k].abs() > 1e-3) {
                let h = 1e-3f32;
                let mut p = model.params.clone();
                p[k] += h;
                let up = loss_at(&p);
                p[k] -= 2.0 * h;
                let down = loss_at(&p);
                let fd = (up - down) / (2.0 * h as f64);
                tested += 1;
                if (fd - g[k]).abs() > 1e-3 + 3e-2 * g[k].abs() {
                    bad.push((k, fd, g[k]));
                }
            }
            assert!(
                tested > 20,
                "{kind:?}: only {tested} coordinates with a gradient"
            );
            // A few coordinates may sit on a ReLU kink.
            assert!(
                bad.len() * 50 <= tested,
                "{kind:?}: {} of {tested} differ: {:?}",
                bad.len(),
                &bad[..bad.len().min(5)]
            );
        }
    }

    /// The kernel checks' CPU reference agrees with ncf_core's CPU trainer (the golden run's CPU
    /// side) on a 10-step loss curve with dropout and exact negatives, for every model kind.
    #[test]
    fn reference_trainer_matches_the_cpu_trainer() {
        let (us, is) = toy::data(30, 200, 10, 8);
        let pos = UserItems::new(30, &us, &is);
        for kind in [ModelKind::Neumf, ModelKind::Gmf, ModelKind::Mlp] {
            let model = toy::model(kind, 30, 200, 0.25, 9);
            let mut cfg = toy::train_config(Precision::Fp32, 128);
            cfg.negative_mode = NegativeMode::Exact;
            let mut cpu = CpuTrainer::new(
                model.clone(),
                &cfg,
                us.clone(),
                is.clone(),
                Some(pos.clone()),
                1,
            )
            .unwrap();
            let mut r = RefTrainer::new(model, &cfg, &us, &is, Some(&pos));
            let (mut a, mut b) = (vec![], vec![]);
            for s in 0..8u64 {
                a.push(cpu.step(0, s * 128..(s + 1) * 128).unwrap().loss as f64);
                b.push(r.step(0, s * 128..(s + 1) * 128).unwrap().loss as f64);
            }
            let c = compare("ref_vs_cpu", Precision::Fp32, &b, &a, 0.0, 1e-5);
            assert!(c.pass, "{kind:?}: {}\nref {b:?}\ncpu {a:?}", c.line());
            let pc = cpu.model().unwrap().params;
            let pr = r.model().unwrap().params;
            let c = compare_scaled("ref_vs_cpu_params", Precision::Fp32, &f(&pr), &f(&pc), 1e-4);
            assert!(c.pass, "{kind:?}: {}", c.line());
        }
    }

    #[test]
    fn reference_trainer_learns_the_toy_data() {
        let (us, is) = toy::data(30, 200, 10, 8);
        let pos = UserItems::new(30, &us, &is);
        let mut cfg = toy::train_config(Precision::Fp32, 128);
        cfg.negative_mode = NegativeMode::Exact;
        let model = toy::model(ModelKind::Neumf, 30, 200, 0.0, 9);
        let mut t = RefTrainer::new(model, &cfg, &us, &is, Some(&pos));
        let per_epoch = us.len() as u64 * 5;
        let mut first = None;
        let mut last = 0.0;
        for epoch in 0..6 {
            let mut p = 0;
            while p < per_epoch {
                let end = (p + 128).min(per_epoch);
                let s = t.step(epoch, p..end).unwrap();
                first.get_or_insert(s.loss);
                last = s.loss;
                p = end;
            }
        }
        let first = first.unwrap();
        assert!(
            (first - std::f32::consts::LN_2).abs() < 0.05,
            "initial loss {first}"
        );
        assert!(last < first * 0.8, "loss {first} -> {last}");
    }
}
