//! Checks of the random-number kernels: Philox blocks, the epoch permutation and the sampler of
//! training negatives (both modes) against `ncf_core::sampling`, bit for bit.

use super::{exact, Check, Log, Setup};
use crate::device::{dptr, KArg};
use crate::CudaError;
use ncf_core::sampling::rng::{stream, Permutation, Rng};
use ncf_core::sampling::sampler::{EpochSamples, NegativeMode};

pub fn checks(s: &mut Setup, log: Log) -> Result<Vec<Check>, CudaError> {
    let (p, cfg, n_items, batch) = (s.p, s.cfg.clone(), s.n_items, s.batch);
    let (us, is, positives) = (&s.us, &s.is, &s.positives);
    let t = &mut s.t;
    let rng = Rng::new(cfg.seed);
    let st = t.gpu.stream.clone();
    let mut out = vec![];
    // Philox blocks.
    log("philox");
    let nb = 4096u32;
    let buf = t.gpu.alloc::<u32>(4 * nb as usize, "philox out")?;
    let seed = 0x1234_5678_9abc_def0u64;
    let args: Vec<KArg> = vec![
        (seed as u32).into(),
        ((seed >> 32) as u32).into(),
        7u32.into(),
        1000u32.into(),
        3u32.into(),
        9u32.into(),
        nb.into(),
        dptr(&buf, &st).into(),
    ];
    t.gpu.launch(
        "ncf_philox_blocks",
        t.gpu.grid_for(nb as u64),
        256,
        0,
        &args,
        "philox test",
    )?;
    let gpu = t.gpu.download(&buf, 4 * nb as usize, "philox out")?;
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
        let buf = t.gpu.alloc::<u64>(count as usize, "perm out")?;
        let k = pm.keys();
        let args: Vec<KArg> = vec![
            n.into(),
            pm.half_bits().into(),
            k[0].into(),
            k[1].into(),
            k[2].into(),
            k[3].into(),
            p0.into(),
            count.into(),
            dptr(&buf, &st).into(),
        ];
        t.gpu.launch(
            "ncf_permute",
            t.gpu.grid_for(count as u64),
            256,
            0,
            &args,
            &format!("n {n}"),
        )?;
        let gpu = t.gpu.download(&buf, count as usize, "perm out")?;
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
        t.gpu.zero(&mut t.sample_err, "sampler flag")?;
        let n = t.make_batch(epoch, range.clone())?;
        let gu = t.gpu.download(&t.batch.users, n, "users")?;
        let gi = t.gpu.download(&t.batch.items, n, "items")?;
        let gl = t.gpu.download(&t.batch.labels, n, "labels")?;
        let gs = t.gpu.download(&t.batch.sample, n, "sample ids")?;
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
