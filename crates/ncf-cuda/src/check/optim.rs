//! Checks of the optimiser kernels: the fused Adam and SGD step against
//! [`reference::optimizer_step`] (and that it zeroes the gradients), and the FP16 overflow check
//! that skips a step.

use super::{compare, f, Check, Log, Setup, ATOL};
use crate::device::DeviceExt;
use crate::kdef::CheckFinite;
use crate::CudaError;
use ncf_core::neumf_cpu::reference;
use ncf_core::sampling::rng::{stream, Rng};
use ncf_core::train::{Optimizer, Precision};

pub fn checks(s: &mut Setup, log: Log) -> Result<Vec<Check>, CudaError> {
    let (p, cfg) = (s.p, s.cfg.clone());
    let model = &s.model;
    let t = &mut s.t;
    let l = &model.layout;
    let mut out = vec![];
    log("adam");
    for opt in [Optimizer::Adam, Optimizer::Sgd] {
        let total = l.total;
        let r = Rng::new(77);
        let rnd = |k: usize, c: u32, s: f64| (r.normal(stream::SYNTH, k as u32, c, 0) * s) as f32;
        let p0: Vec<f32> = (0..total).map(|k| rnd(k, 0, 0.1)).collect();
        let g0: Vec<f32> = (0..total).map(|k| rnd(k, 1, 0.01)).collect();
        let m0: Vec<f32> = (0..total).map(|k| rnd(k, 2, 0.01)).collect();
        let v0: Vec<f32> = (0..total).map(|k| rnd(k, 3, 1e-4).abs()).collect();
        let init = (p0.clone(), m0.clone(), v0.clone());
        let d = t.device();
        d.upload_into(&p0, &t.model.params, "params")?;
        d.upload_into(&g0, &t.grads, "grads")?;
        d.upload_into(&m0, &t.m, "m")?;
        d.upload_into(&v0, &t.v, "v")?;
        let mut c2 = cfg.clone();
        c2.optimizer = opt;
        c2.l2 = 1e-3;
        t.cfg = c2.clone();
        t.optimizer_step(5, 1.0, false)?;
        let pg = t.params_host()?;
        let gg = t.grads_host()?;
        let mut want = p0;
        let mut state = reference::Moments {
            m: m0,
            v: v0,
            step: 4,
        };
        reference::optimizer_step(&c2, &mut want, &g0, &mut state);
        let name = if opt == Optimizer::Adam {
            "adam"
        } else {
            "sgd"
        };
        out.push(compare(name, p, &f(&pg), &f(&want), ATOL, 1e-6));
        let zeroed = gg.iter().all(|&x| x == 0.0);
        out.push(Check {
            name: format!("{name}_zeroes_grads"),
            precision: p.name(),
            pass: zeroed,
            worst_abs: 0.0,
            worst_rel: 0.0,
            at: 0,
            note: String::new(),
        });
        if t.fused.is_some() {
            // The fused step's ncf_adam_wide against ncf_adam from the same state: the same
            // element math, so the same bits of p, m and v.
            let d = t.device();
            let (mw, vw) = (d.download(&t.m, total, "m")?, d.download(&t.v, total, "v")?);
            d.upload_into(&init.0, &t.model.params, "params")?;
            d.upload_into(&g0, &t.grads, "grads")?;
            d.upload_into(&init.1, &t.m, "m")?;
            d.upload_into(&init.2, &t.v, "v")?;
            t.optimizer_step_with(5, 1.0, false, false, true)?;
            let d = t.device();
            let (ps, ms, vs) = (
                t.params_host()?,
                d.download(&t.m, total, "m")?,
                d.download(&t.v, total, "v")?,
            );
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
            let same = [(&pg, &ps), (&mw, &ms), (&vw, &vs)]
                .iter()
                .map(|(a, b)| bits(a) == bits(b))
                .collect::<Vec<bool>>();
            out.push(Check {
                name: format!("{name}_wide_bits_equal_ncf_adam"),
                precision: p.name(),
                pass: same.iter().all(|&x| x),
                worst_abs: 0.0,
                worst_rel: 0.0,
                at: 0,
                note: format!("p, m, v bit-identical: {same:?}"),
            });
        }
    }
    t.cfg = cfg.clone();

    if p == Precision::Fp16 {
        log("inf check + skipped step");
        let total = l.total;
        let mut g0 = vec![0.001f32; total];
        g0[total / 2] = f32::INFINITY;
        let p0 = t.params_host()?;
        let d = t.device();
        d.upload_into(&g0, &t.grads, "grads")?;
        d.zero(&t.found_inf, "inf flag")?;
        let k = CheckFinite {
            g: t.grads.ptr(),
            n: total as u64,
            found: t.found_inf.ptr(),
        };
        d.launch(&k, d.grid_for(total as u64), 0, "inf check")?;
        t.optimizer_step(1, 1.0, true)?;
        let flag = t.device().download(&t.found_inf, 1, "flag")?[0];
        let p1 = t.params_host()?;
        out.push(Check {
            name: "fp16_overflow_skips_step".into(),
            precision: "fp16",
            pass: flag == 1 && p0 == p1,
            worst_abs: 0.0,
            worst_rel: 0.0,
            at: 0,
            note: format!("flag {flag}, params unchanged {}", p0 == p1),
        });
    }
    Ok(out)
}
