//! Checks of the random-number kernels: Philox blocks, the epoch permutation and the sampler of
//! training negatives (both modes) against `ncf_core::sampling`, bit for bit.

use super::{exact, Check, Log, Setup};
use crate::device::DeviceExt;
use crate::kdef::{Permute, PhiloxBlocks};
use crate::CudaError;
use ncf_core::sampling::rng::{stream, Permutation, Rng};
use ncf_core::sampling::sampler::{EpochSamples, NegativeMode};

pub fn checks(s: &mut Setup, log: Log) -> Result<Vec<Check>, CudaError> {
    let (p, cfg, n_items, batch) = (s.p, s.cfg.clone(), s.n_items, s.batch);
    let (us, is, positives) = (&s.us, &s.is, &s.positives);
    let t = &mut s.t;
    let rng = Rng::new(cfg.seed);
    let mut out = vec![];
    // Philox blocks.
    log("philox");
    let nb = 4096u32;
    let d = t.device();
    let buf = d.alloc::<u32>(4 * nb as usize, "philox out")?;
    let seed = 0x1234_5678_9abc_def0u64;
    let k = PhiloxBlocks {
        k0: seed as u32,
        k1: (seed >> 32) as u32,
        stream: 7,
        a0: 1000,
        b: 3,
        c: 9,
        n: nb,
        out: buf.ptr(),
    };
    d.launch(&k, d.grid_for(nb as u64), 0, "philox test")?;
    let gpu = d.download(&buf, 4 * nb as usize, "philox out")?;
    let r = Rng::new(seed);
    let cpu: Vec<u32> = (0..nb).flat_map(|i| r.block(7, 1000 + i, 3, 9)).collect();
    out.push(exact("philox4x32_10", p, &gpu, &cpu));

    // Permutation.
    log("permutation");
    let mut perm_ok = true;
    let mut note = String::new();
    for n in [1u64, 5, 1000, 65_537, 3_000_001] {
        let pm = Permutation::new(&rng, stream::SHUFFLE, 2, 0, n);
        let count = n.min(100_000) as u32;
        let p0 = n - count as u64;
        let d = t.device();
        let buf = d.alloc::<u64>(count as usize, "perm out")?;
        let k = pm.keys();
        let kern = Permute {
            n,
            half_bits: pm.half_bits(),
            pk0: k[0],
            pk1: k[1],
            pk2: k[2],
            pk3: k[3],
            p0,
            count,
            out: buf.ptr(),
        };
        d.launch(&kern, d.grid_for(count as u64), 0, &format!("n {n}"))?;
        let gpu = d.download(&buf, count as usize, "perm out")?;
        let cpu: Vec<u64> = (p0..n).map(|q| pm.apply(q)).collect();
        let c = exact("permutation", p, &gpu, &cpu);
        if !c.pass {
            perm_ok = false;
            note = format!("n={n}: {}", c.note);
        }
    }
    out.push(Check {
        name: "permutation".into(),
        precision: p.name(),
        pass: perm_ok,
        worst_abs: if perm_ok { 0.0 } else { 1.0 },
        worst_rel: 0.0,
        at: 0,
        note,
    });

    // Sampler, both modes, a batch from the middle of an epoch.
    for mode in [NegativeMode::Approximate, NegativeMode::Exact] {
        log(&format!("sampler {mode:?}"));
        t.cfg.negative_mode = mode;
        let epoch = 3;
        let range = 333..333 + batch;
        let es = EpochSamples::new(
            rng,
            epoch,
            cfg.negatives,
            n_items,
            mode,
            us,
            is,
            Some(positives),
        );
        t.device().zero(&t.sample_err, "sampler flag")?;
        let n = t.make_batch(epoch, range.clone())?;
        let (d, b) = (t.device(), &t.model.batch);
        let gu = d.download(&b.users, n, "users")?;
        let gi = d.download(&b.items, n, "items")?;
        let gl = d.download(&b.labels, n, "labels")?;
        let gs = d.download(&b.sample, n, "sample ids")?;
        let (mut cu, mut ci, mut cl) = (vec![], vec![], vec![]);
        es.fill(range.clone(), &mut cu, &mut ci, &mut cl)
            .map_err(|e| CudaError::Invalid(e.to_string()))?;
        let cs: Vec<u32> = range.clone().map(|q| es.order.apply(q) as u32).collect();
        let g: Vec<(u32, u32, u32, u32)> = (0..n)
            .map(|k| (gs[k], gu[k], gi[k], gl[k].to_bits()))
            .collect();
        let c: Vec<(u32, u32, u32, u32)> = (0..n)
            .map(|k| (cs[k], cu[k], ci[k], cl[k].to_bits()))
            .collect();
        out.push(exact(
            &format!(
                "sampler_{}",
                if mode == NegativeMode::Exact {
                    "exact"
                } else {
                    "approximate"
                }
            ),
            p,
            &g,
            &c,
        ));
    }
    t.cfg.negative_mode = NegativeMode::Approximate;
    Ok(out)
}
