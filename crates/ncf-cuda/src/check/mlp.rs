//! Checks of one training-mode forward and backward pass, kernel group by kernel group (gather,
//! GEMM + bias/ReLU/dropout, final layer + BCE, backward GEMMs + bias/ReLU/dropout backward +
//! scatter), each against [`reference`] fed with the device's own inputs of that group, so
//! errors do not compound. On a trainer with the factored first layer the same checks run with
//! names prefixed `factored:`, plus the exact checks of [`super::factored::structure`].

use super::{compare, compare_scaled, dl_act, eps_of, f, round_act, Check, Log, Setup, ATOL};
use crate::device::{dropout_threshold, DeviceExt};
use crate::model::Dropout;
use crate::trainer::CudaTrainer;
use crate::CudaError;
use ncf_core::model::Model;
use ncf_core::neumf_cpu::reference;
use ncf_core::sampling::rng::Rng;
use ncf_core::train::Precision;

/// The forward, final-layer + BCE and backward checks of one training batch (see the module).
pub fn checks(s: &mut Setup, log: Log) -> Result<Vec<Check>, CudaError> {
    let (p, cfg, batch) = (s.p, s.cfg.clone(), s.batch);
    let model = &s.model;
    let t = &mut s.t;
    let rng = Rng::new(cfg.seed);
    let mut out = vec![];
    // One training-mode forward + backward, checked kernel by kernel against the CPU reference fed
    // with the device's own inputs of that kernel (so errors do not compound).
    log("forward");
    let fwd = forward(t, model, p, &rng, batch, &mut out)?;
    log("final + BCE");
    let g_cpu = final_and_bce(t, model, p, &rng, &fwd, &mut out)?;
    log("backward");
    backward(t, model, p, &fwd, &g_cpu, &mut out)?;
    if fwd.factored {
        out.extend(super::factored::structure(t, fwd.n, &fwd.bu, &fwd.bi)?);
        for c in &mut out {
            c.name = format!("factored:{}", c.name);
        }
    }
    Ok(out)
}

/// What the checked forward pass leaves for the final-layer and backward checks.
struct Forward {
    /// The epoch of the batch (its dropout masks) and its sample count.
    epoch: u32,
    n: usize,
    /// The batch's users, items, labels and sample ids, as the device made them.
    bu: Vec<u32>,
    bi: Vec<u32>,
    bl: Vec<f32>,
    bs: Vec<u32>,
    /// The model with the GEMM weights rounded as the device's operands are.
    rmodel: Model,
    /// The MLP input the layers saw and each layer's device output.
    x0: Vec<f32>,
    acts: Vec<Vec<f32>>,
    /// Whether the trainer has the factored first layer.
    factored: bool,
}

/// Make a batch and run the MLP forward on the device, checking the gather, each layer's
/// GEMM + bias/ReLU/dropout and the dropout masks against the reference.
fn forward(
    t: &mut CudaTrainer,
    model: &Model,
    p: Precision,
    rng: &Rng,
    batch: u64,
    out: &mut Vec<Check>,
) -> Result<Forward, CudaError> {
    let act = t.device().act();
    let eps = eps_of(p);
    let epoch = 1;
    let range = 100..100 + batch;
    t.device().zero(&t.sample_err, "sampler flag")?;
    let n = t.make_batch(epoch, range)?;
    let (d, b) = (t.device(), &t.model.batch);
    let bu = d.download(&b.users, n, "users")?;
    let bi = d.download(&b.items, n, "items")?;
    let bl = d.download(&b.labels, n, "labels")?;
    let bs = d.download(&b.sample, n, "sample ids")?;
    let seed = t.rng.seed();
    t.model.mlp_forward(n, Some(Dropout { epoch, seed }))?;
    let mc = model.config.clone();
    let e = mc.mlp_embed();
    // The reference sees the weights rounded as the device's GEMM operands are.
    let mut rmodel = model.clone();
    for k in 0..mc.n_linear() {
        for w in rmodel.tensor_mut(&format!("mlp.{k}.weight")) {
            *w = round_act(*w, act);
        }
    }
    let drop = |b: usize| Some((rng, epoch, u64::from(bs[b])));
    let x0_cpu: Vec<f64> = (0..n)
        .flat_map(|b| reference::mlp_input(&rmodel, bu[b], bi[b]))
        .map(|v| round_act(v, act) as f64)
        .collect();
    // The factored path writes no x0: layer 0 then sees the reference's (rounded) input.
    let factored = t.model.factored.is_some();
    let x0: Vec<f32> = if factored {
        x0_cpu.iter().map(|&v| v as f32).collect()
    } else {
        let x0 = dl_act(t, &t.model.batch.x0, n * 2 * e, "x0")?;
        out.push(compare("gather", p, &f(&x0), &x0_cpu, ATOL, eps));
        x0
    };
    let (_, scale) = dropout_threshold(mc.dropout);
    let mut acts: Vec<Vec<f32>> = vec![];
    let mut mask_bad = 0usize;
    for k in 0..mc.n_linear() {
        let (fin, fout) = (mc.layers[k], mc.layers[k + 1]);
        let a_gpu = dl_act(t, &t.model.batch.acts[k], n * fout, &format!("acts {k}"))?;
        let x: &[f32] = if k == 0 { &x0 } else { &acts[k - 1] };
        let mut a_cpu = vec![0f64; n * fout];
        for b in 0..n {
            // The reference layer on the device's input of this layer.
            let mask = reference::dropout_mask(&mc, k, fout, drop(b));
            let row = reference::mlp_layer(&rmodel, k, &x[b * fin..(b + 1) * fin], &mask);
            for o in 0..fout {
                let kept = mask[o] != 0.0;
                a_cpu[b * fout + o] = row[o] as f64;
                let g = a_gpu[b * fout + o];
                if (!kept && g != 0.0) || (kept && row[o] > 1e-2 * scale && g == 0.0) {
                    mask_bad += 1;
                }
            }
        }
        // GEMM (TF32/half operands) error dominates: scale eps by the dot length for non-FP32.
        let eps_k = if p == Precision::Fp32 {
            1e-5
        } else {
            eps * 4.0
        };
        out.push(compare_scaled(
            &format!("gemm+bias_relu_dropout_fwd.{k}"),
            p,
            &f(&a_gpu),
            &a_cpu,
            eps_k,
        ));
        acts.push(a_gpu);
    }
    out.push(Check {
        name: "dropout_mask".into(),
        precision: p.name(),
        pass: mask_bad == 0,
        worst_abs: mask_bad as f64,
        worst_rel: 0.0,
        at: 0,
        note: format!("{mask_bad} units disagree"),
    });
    Ok(Forward {
        epoch,
        n,
        bu,
        bi,
        bl,
        bs,
        rmodel,
        x0,
        acts,
        factored,
    })
}

/// Run the final layer and BCE on the device after `fwd`, checking the loss, the final layer's
/// and GMF gradients and the gradient into the last MLP layer; returns the reference's
/// gradients of the whole batch.
fn final_and_bce(
    t: &mut CudaTrainer,
    model: &Model,
    p: Precision,
    rng: &Rng,
    fwd: &Forward,
    out: &mut Vec<Check>,
) -> Result<Vec<f64>, CudaError> {
    let Forward {
        epoch,
        n,
        bu,
        bi,
        bl,
        bs,
        rmodel,
        x0,
        acts,
        ..
    } = fwd;
    let (epoch, n) = (*epoch, *n);
    let mc = model.config.clone();
    let e = mc.mlp_embed();
    let drop = |b: usize| Some((rng, epoch, u64::from(bs[b])));
    let d = t.device();
    d.zero(&t.loss_sum, "loss")?;
    d.zero(&t.grads, "grads")?;
    t.train_final(n, 1.0 / n as f32)?;
    let loss_gpu = d.download(&t.loss_sum, 1, "loss")?[0] / n as f64;
    let dx_last = d.download(&t.model.batch.scratch, n * mc.mlp_out(), "dx_last")?;
    let g_final = t.grads_host()?;
    // The reference's final layer and backward pass on the device's activations.
    let lout = mc.mlp_out();
    let ff = mc.gmf_factors();
    let dev: Vec<reference::Activations> = (0..n)
        .map(|b| {
            let mut xs = vec![x0[b * 2 * e..(b + 1) * 2 * e].to_vec()];
            for (k, a) in acts.iter().enumerate() {
                let w = mc.layers[k + 1];
                xs.push(a[b * w..(b + 1) * w].to_vec());
            }
            reference::activations_from(rmodel, bu[b], bi[b], drop(b), xs)
        })
        .collect();
    let (loss_cpu, g_cpu) = reference::batch_loss_and_grad(rmodel, &dev, bl);
    out.push(compare(
        "final_bce_loss",
        p,
        &[loss_gpu],
        &[loss_cpu],
        ATOL,
        1e-5,
    ));
    let l = &model.layout;
    for name in [
        "final.weight",
        "final.bias",
        "mf_user_embed.weight",
        "mf_item_embed.weight",
    ] {
        let r = l.range(name);
        out.push(compare(
            &format!("final_grad:{name}"),
            p,
            &f(&g_final[r.clone()]),
            &g_cpu[r],
            ATOL,
            1e-5,
        ));
    }
    let fwv = rmodel.tensor("final.weight");
    let dx_cpu: Vec<f64> = (0..n * lout)
        .map(|k| {
            let b = k / lout;
            let z = dev[b].logit as f64;
            (1.0 / (1.0 + (-z).exp()) - bl[b] as f64) / n as f64 * fwv[ff + k % lout] as f64
        })
        .collect();
    if t.fused.is_some() && mc.kind.has_mlp() {
        // The fused step's ncf_final writes the top layer's dz: dx · scale where a > 0, in the
        // activation type.
        let top = mc.n_linear() - 1;
        let (_, scale) = dropout_threshold(mc.dropout);
        let a = &acts[top];
        let dz_cpu: Vec<f64> = (0..n * lout)
            .map(|k| match a[k] > 0.0 {
                true => dx_cpu[k] * scale as f64,
                false => 0.0,
            })
            .collect();
        let dz = dl_act(t, t.dz_buf(top), n * lout, "dz_last")?;
        out.push(compare(
            "final_dz_last",
            p,
            &f(&dz),
            &dz_cpu,
            ATOL,
            eps_of(p).max(1e-5),
        ));
    } else {
        out.push(compare(
            "final_dx_last",
            p,
            &f(&dx_last),
            &dx_cpu,
            ATOL,
            1e-5,
        ));
    }
    Ok(g_cpu)
}

/// Run the MLP backward on the device (after [`final_and_bce`]), checking each layer's bias and
/// weight gradients and the embeddings' (GEMM dX + scatter) against the reference's `g_cpu`.
fn backward(
    t: &mut CudaTrainer,
    model: &Model,
    p: Precision,
    fwd: &Forward,
    g_cpu: &[f64],
    out: &mut Vec<Check>,
) -> Result<(), CudaError> {
    let (epoch, n) = (fwd.epoch, fwd.n);
    let mc = &model.config;
    let l = &model.layout;
    let eps = eps_of(p);
    t.mlp_backward(n, epoch)?;
    let g_all = t.grads_host()?;
    // Backward grads depend on dz rounded to the activation type and on GEMM precision.
    let eps_b = if p == Precision::Fp32 {
        1e-5
    } else {
        eps * 4.0
    };
    for k in 0..mc.n_linear() {
        let r = l.range(&format!("mlp.{k}.bias"));
        out.push(compare_scaled(
            &format!("bias_relu_dropout_bwd:dbias.{k}"),
            p,
            &f(&g_all[r.clone()]),
            &g_cpu[r],
            eps_b,
        ));
        let r = l.range(&format!("mlp.{k}.weight"));
        out.push(compare_scaled(
            &format!("gemm_dW:mlp.{k}.weight"),
            p,
            &f(&g_all[r.clone()]),
            &g_cpu[r],
            eps_b,
        ));
    }
    for name in ["mlp_user_embed.weight", "mlp_item_embed.weight"] {
        let r = l.range(name);
        out.push(compare_scaled(
            &format!("gemm_dX+scatter:{name}"),
            p,
            &f(&g_all[r.clone()]),
            &g_cpu[r],
            eps_b,
        ));
    }
    Ok(())
}
