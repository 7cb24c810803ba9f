//! The CUDA backend on the host device (no GPU): the kernels compiled for the CPU, every launch
//! and GEMM checked, against the CPU reference.

use ncf_core::train::Precision;
use ncf_cuda::check;
use ncf_cuda::device::Which;

#[test]
fn kernel_checks_pass_on_the_host_device() {
    let mut log = |m: &str| eprintln!("{m}");
    for p in Precision::ALL {
        let checks = check::kernel_checks(Which::Host, p, &mut log).expect("checks ran");
        let lines: Vec<String> = checks.iter().map(|c| c.line()).collect();
        eprintln!("{}", lines.join("\n"));
        assert!(checks.iter().all(|c| c.pass), "{}", lines.join("\n"));
    }
}

/// NeuMF, GMF and MLP, per sample and (with an MLP) with the first layer factored, with the split
/// and the fused step, with exact and approximate negatives, in every precision: 10 steps
/// against the CPU trainer.
#[test]
fn golden_runs_match_the_cpu_trainer_on_the_host_device() {
    use ncf_core::model::ModelKind;
    use ncf_core::neumf_cpu::FirstLayer;
    use ncf_core::sampling::sampler::NegativeMode;
    use ncf_core::train::StepKernels::{Fused, Split};
    let mut log = |m: &str| eprintln!("{m}");
    let runs = [
        (ModelKind::Neumf, FirstLayer::PerSample, Split),
        (ModelKind::Neumf, FirstLayer::Factored, Split),
        (ModelKind::Gmf, FirstLayer::PerSample, Split),
        (ModelKind::Mlp, FirstLayer::PerSample, Split),
        (ModelKind::Mlp, FirstLayer::Factored, Split),
        (ModelKind::Neumf, FirstLayer::PerSample, Fused),
        (ModelKind::Neumf, FirstLayer::Factored, Fused),
        (ModelKind::Gmf, FirstLayer::PerSample, Fused),
        (ModelKind::Mlp, FirstLayer::PerSample, Fused),
    ];
    let mut n = 0;
    for p in Precision::ALL {
        for run in runs {
            for mode in [NegativeMode::Exact, NegativeMode::Approximate] {
                let checks = check::golden::golden_in(Which::Host, p, run, mode, 10, &mut log)
                    .expect("golden ran");
                let lines: Vec<String> = checks.iter().map(|c| c.line()).collect();
                eprintln!("{}", lines.join("\n"));
                assert!(checks.iter().all(|c| c.pass), "{}", lines.join("\n"));
                n += 1;
            }
        }
    }
    assert_eq!(n, 4 * runs.len() * 2);
}

/// A trained-looking model: the toy NeuMF after a few CPU steps, so scores are not all alike.
fn trained_toy() -> (ncf_core::model::Model, Vec<u32>, Vec<u32>) {
    use ncf_core::model::ModelKind;
    use ncf_core::neumf_cpu::reference::toy;
    use ncf_core::neumf_cpu::CpuTrainer;
    use ncf_core::train::Trainer;
    let (us, is) = toy::data(30, 200, 10, 8);
    let model = toy::model(ModelKind::Neumf, 30, 200, 0.25, 9);
    let cfg = toy::train_config(Precision::Fp32, 128);
    let mut t = CpuTrainer::new(model, &cfg, us.clone(), is.clone(), None, 1).unwrap();
    for s in 0..8u64 {
        t.step(0, s * 128..(s + 1) * 128).unwrap();
    }
    (t.model().unwrap(), us, is)
}

#[test]
fn the_cuda_scorer_gives_the_cpu_scorers_metrics_and_top_k_on_the_host_device() {
    use ncf_core::eval::metrics::{evaluate, EvalSet};
    use ncf_core::eval::topk::top_k_of;
    use ncf_core::neumf_cpu::CpuScorer;
    use ncf_core::train::Scorer;
    let (model, us, is) = trained_toy();
    let dev = ncf_cuda::device::open(Which::Host, Precision::Fp32).unwrap();
    let mut gpu = ncf_cuda::CudaScorer::new(dev, &model).unwrap();
    let mut cpu = CpuScorer::new(&model);
    // Every pair of every user: scores to 1e-5, and the same top 10 of the items each has not
    // rated.
    let users: Vec<u32> = (0..30u32)
        .flat_map(|u| std::iter::repeat_n(u, 200))
        .collect();
    let items: Vec<u32> = (0..30).flat_map(|_| 0..200u32).collect();
    let (mut sg, mut sc) = (vec![0f32; users.len()], vec![0f32; users.len()]);
    gpu.score(&users, &items, &mut sg).unwrap();
    Scorer::score(&mut cpu, &users, &items, &mut sc).unwrap();
    let c = check::compare_scaled(
        "scores",
        Precision::Fp32,
        &sg.iter().map(|&x| x as f64).collect::<Vec<_>>(),
        &sc.iter().map(|&x| x as f64).collect::<Vec<_>>(),
        1e-5,
    );
    assert!(c.pass, "{}", c.line());
    let seen = ncf_core::sampling::sampler::UserItems::new(30, &us, &is);
    for u in 0..30usize {
        let top = |s: &[f32]| -> Vec<u32> {
            top_k_of(&s[u * 200..(u + 1) * 200], 10, seen.of(u as u32))
                .iter()
                .map(|x| x.0)
                .collect()
        };
        assert_eq!(top(&sg), top(&sc), "user {u}");
    }
    // HR/NDCG of a sampled evaluation: one held-out item and 20 negatives per user.
    let set = EvalSet {
        users: (0..30).collect(),
        items: (0..30u32).map(|u| (u * 7) % 200).collect(),
        negatives: (0..30u32)
            .flat_map(|u| (1..=20u32).map(move |k| (u * 7 + k * 9) % 200))
            .collect(),
        per_user: 20,
    };
    let mg = evaluate(&set, 10, |u, i, o| gpu.score(u, i, o)).unwrap();
    let mc = evaluate(&set, 10, |u, i, o| Scorer::score(&mut cpu, u, i, o)).unwrap();
    assert_eq!((mg.hr, mg.ndcg), (mc.hr, mc.ndcg));
}

/// Calls a GPU would take and corrupt memory with (or crash on), injected on purpose: the host
/// device refuses each before it runs, naming the call, the argument and the buffer.
#[test]
fn wrong_sizes_leading_dimensions_and_arguments_are_caught_naming_the_call() {
    use ncf_cuda::device::{Device, DeviceExt, GemmCall, HostDevice, Ptr};
    use ncf_cuda::kdef::{Cast, Gather, Mark};
    let d = HostDevice::new(Precision::Fp32).unwrap();
    let (m, n, k) = (8usize, 5usize, 3usize);
    let a = d.alloc::<f32>(m * k, "A of the test").unwrap();
    let b = d.alloc::<f32>(k * n, "B of the test").unwrap();
    let c = d.alloc::<f32>(m * n, "C of the test").unwrap();
    let call = |lda, ldc, c_addr| GemmCall {
        what: "injected gemm",
        ta: false,
        tb: false,
        m,
        n,
        k,
        a: a.addr(),
        lda,
        b: b.addr(),
        ldb: k,
        c: c_addr,
        ldc,
        beta: 0.0,
    };
    d.gemm(&call(m, m, c.addr())).unwrap();
    // A leading dimension below the stored rows: cuBLAS's CUBLAS_STATUS_INVALID_VALUE.
    let e = d.gemm(&call(m - 1, m, c.addr())).unwrap_err().to_string();
    assert!(e.contains("injected gemm") && e.contains("lda = 7"), "{e}");
    // A leading dimension that runs C past its buffer.
    let e = d.gemm(&call(m, m + 4, c.addr())).unwrap_err().to_string();
    assert!(e.contains("C (") && e.contains("C of the test"), "{e}");
    assert!(e.contains("past its end"), "{e}");
    // A kernel's buffer too small for its size argument.
    let src = d.alloc::<f32>(100, "cast source").unwrap();
    let dst = d.alloc_act(64, "cast destination").unwrap();
    let cast = Cast {
        src: src.ptr(),
        dst: dst.ptr(),
        n: 100,
    };
    let e = d
        .launch(&cast, 1, 0, "injected cast")
        .unwrap_err()
        .to_string();
    assert!(e.contains("kernel ncf_cast (injected cast"), "{e}");
    assert!(e.contains("argument dst (100 elements)"), "{e}");
    assert!(e.contains("cast destination"), "{e}");
    // A null and a misaligned pointer.
    let ids = d.upload(&[0u32, 1, 2], "ids").unwrap();
    let x0 = d.alloc_act(3 * 8, "x0").unwrap();
    let table = d.alloc::<f32>(3 * 4, "table").unwrap();
    let gather = Gather {
        users: ids.ptr(),
        items: ids.ptr(),
        batch: 3,
        e: 4,
        emb_user: Ptr::null(),
        emb_item: table.ptr(),
        x0: x0.ptr(),
    };
    let e = d
        .launch(&gather, 1, 0, "injected gather")
        .unwrap_err()
        .to_string();
    assert!(e.contains("argument emb_user is null"), "{e}");
    let gather = Gather {
        emb_user: table.ptr().byte_add(2),
        ..gather
    };
    let e = d
        .launch(&gather, 1, 0, "injected gather")
        .unwrap_err()
        .to_string();
    assert!(e.contains("emb_user") && e.contains("not aligned"), "{e}");
    // A write the extents cannot see (an id past the end of the flags): caught after the launch.
    let big = d.upload(&[1u32, 70], "ids with a stray one").unwrap();
    let flags = d.alloc::<u32>(64, "flags of the test").unwrap();
    let mark = Mark {
        ids: big.ptr(),
        n: 2,
        flags: flags.ptr(),
    };
    let e = d
        .launch(&mark, 1, 0, "injected mark")
        .unwrap_err()
        .to_string();
    assert!(e.contains("kernel ncf_mark (injected mark"), "{e}");
    assert!(e.contains("wrote past the end of flags of the test"), "{e}");
}

/// Five fixed-seed steps of 2048 samples of a toy model (200 users, 500 items) on a host device
/// whose blocks run on 4 OS threads; the parameters' bits.
fn five_steps(
    kind: ncf_core::model::ModelKind,
    first: ncf_core::neumf_cpu::FirstLayer,
    r: ncf_core::train::Reductions,
    step: ncf_core::train::StepKernels,
    p: Precision,
) -> Vec<u32> {
    use ncf_core::neumf_cpu::reference::toy;
    use ncf_core::train::Trainer;
    let (us, is) = toy::data(200, 500, 20, 8);
    let model = toy::model(kind, 200, 500, 0.25, 9);
    let cfg = toy::train_config(p, 2048);
    let dev = ncf_cuda::device::HostDevice::new(p)
        .unwrap()
        .with_threads(4);
    let mut t = ncf_cuda::CudaTrainer::new(Box::new(dev), &model, &cfg, &us, &is, None)
        .unwrap()
        .with_first_layer(first)
        .unwrap()
        .with_reductions(r)
        .unwrap()
        .with_step(step)
        .unwrap();
    let per_epoch = us.len() as u64 * 5;
    for s in 0..5u64 {
        let start = s * 2048 % (per_epoch - 2048);
        t.step(0, start..start + 2048).unwrap();
    }
    t.model()
        .unwrap()
        .params
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

/// The deterministic reductions (the default) give the same bits run after run on a host device
/// whose blocks run on 4 threads, with the split and the fused step; the float atomics they
/// replace do not (which shows the host device exposes an order-dependent sum, so the first
/// assertion means something).
#[test]
fn fixed_seed_runs_give_identical_bits_with_deterministic_reductions() {
    use ncf_core::model::ModelKind;
    use ncf_core::neumf_cpu::FirstLayer;
    use ncf_core::train::Reductions;
    use ncf_core::train::StepKernels::{Fused, Split};
    use Precision::{Bf16, Fp32};
    for (kind, first, step, p) in [
        (ModelKind::Neumf, FirstLayer::PerSample, Split, Fp32),
        (ModelKind::Neumf, FirstLayer::Factored, Split, Fp32),
        (ModelKind::Gmf, FirstLayer::PerSample, Split, Fp32),
        (ModelKind::Mlp, FirstLayer::PerSample, Split, Fp32),
        (ModelKind::Neumf, FirstLayer::PerSample, Fused, Fp32),
        (ModelKind::Neumf, FirstLayer::Factored, Fused, Fp32),
        (ModelKind::Mlp, FirstLayer::PerSample, Fused, Fp32),
        // The tensor-core (wmma) variant of the fused layers.
        (ModelKind::Neumf, FirstLayer::PerSample, Fused, Bf16),
    ] {
        let a = five_steps(kind, first, Reductions::Deterministic, step, p);
        let b = five_steps(kind, first, Reductions::Deterministic, step, p);
        assert!(a == b, "{kind:?} {first:?} {step:?} {p:?}: two runs differ");
    }
    let runs: Vec<Vec<u32>> = (0..3)
        .map(|_| {
            five_steps(
                ModelKind::Neumf,
                FirstLayer::PerSample,
                Reductions::Atomic,
                Split,
                Fp32,
            )
        })
        .collect();
    assert!(
        runs.iter().any(|r| r != &runs[0]),
        "three runs with float atomics gave the same bits: the host device no longer exposes \
         an order-dependent sum, so the determinism check above proves nothing"
    );
}

/// Steps whose stats wait on the device (`Trainer::step_queued`, what ncf-train's loop uses)
/// compute what steps read back at once do — the same parameters' bits and the same losses,
/// in order — with one blocking read of their losses and one of the sampler's flag per
/// `STATS_EVERY` steps instead of two reads per step; the sampler's failure still surfaces.
///
/// With the fused step, the queued steps are captured once as a graph and replayed: every step
/// of the full batch size replays it (the epoch's last, shorter step runs without), with the
/// same bits and losses as the same steps run one by one without a graph.
#[test]
fn queued_steps_read_back_once_per_stats_every_steps_and_change_nothing() {
    use ncf_core::model::ModelKind;
    use ncf_core::neumf_cpu::reference::toy;
    use ncf_core::neumf_cpu::FirstLayer;
    use ncf_core::train::{StepKernels, StepStats, Trainer};
    use ncf_cuda::trainer::STATS_EVERY;
    let steps = STATS_EVERY as u64 + 8;
    let (us, is) = toy::data(200, 500, 20, 8);
    let model = toy::model(ModelKind::Neumf, 200, 500, 0.25, 9);
    let cfg = toy::train_config(Precision::Fp32, 512);
    let per_epoch = us.len() as u64 * 5;
    // Steps over three epochs (the dropout masks and permutation change with the epoch, read
    // from the step's arguments by a replayed graph); step 20 is a short one (no replay).
    let at = |s: u64| {
        let start = s * 512 % (per_epoch - 512);
        let len = if s == 20 { 300 } else { 512 };
        ((s / 16) as u32, start..start + len)
    };
    let run = |queued: bool, (step, first): (StepKernels, FirstLayer)| {
        let dev = ncf_cuda::device::HostDevice::new(Precision::Fp32)
            .unwrap()
            .with_threads(2);
        let mut t = ncf_cuda::CudaTrainer::new(Box::new(dev), &model, &cfg, &us, &is, None)
            .unwrap()
            .with_first_layer(first)
            .unwrap()
            .with_step(step)
            .unwrap();
        let reads0 = t.device().profile().reads.get();
        let mut stats: Vec<StepStats> = Vec::new();
        let mut max_wait = 0;
        for s in 0..steps {
            let (epoch, range) = at(s);
            if queued {
                let done = t.step_queued(epoch, range).unwrap();
                stats.extend(done);
                max_wait = max_wait.max(s + 1 - stats.len() as u64);
            } else {
                stats.push(t.step(epoch, range).unwrap());
            }
        }
        stats.extend(t.drain().unwrap());
        let reads = t.device().profile().reads.get() - reads0;
        let replays = t.graph_replays();
        let bits: Vec<u32> = t
            .model()
            .unwrap()
            .params
            .iter()
            .map(|x| x.to_bits())
            .collect();
        (bits, stats, reads, max_wait, replays)
    };
    for (step, first) in [
        (StepKernels::Split, FirstLayer::PerSample),
        (StepKernels::Fused, FirstLayer::PerSample),
        (StepKernels::Fused, FirstLayer::Factored),
    ] {
        let (bits_now, stats_now, reads_now, _, replays_now) = run(false, (step, first));
        let (bits_late, stats_late, reads_late, max_wait, replays) = run(true, (step, first));
        assert!(
            bits_now == bits_late,
            "{step:?} {first:?}: queued steps trained other parameters"
        );
        assert_eq!(stats_late, stats_now, "{step:?}");
        assert_eq!(stats_late.len() as u64, steps);
        assert!(
            reads_now >= 2 * steps,
            "{reads_now} reads for {steps} steps read back at once"
        );
        let flushes = steps.div_ceil(STATS_EVERY as u64);
        assert_eq!(reads_late, 2 * flushes, "{step:?}: {steps} queued steps");
        assert_eq!(max_wait, STATS_EVERY as u64 - 1);
        assert_eq!(
            replays_now, 0,
            "{step:?}: steps read back at once are not captured"
        );
        match step {
            StepKernels::Fused => assert_eq!(replays, steps - 1, "every full step replayed"),
            StepKernels::Split => assert_eq!(replays, 0),
        }
    }

    // A sampler failure in a queued step is an error at the next read, not lost: exact
    // negatives for a user who has 19,999 of 20,000 items (each of 4096 draws finds the one
    // negative with probability 1/20,000, so nearly every sample fails).
    let n_items = 20_000u32;
    let users = vec![0u32; n_items as usize - 1];
    let items: Vec<u32> = (1..n_items).collect();
    let model = toy::model(ModelKind::Gmf, 1, n_items, 0.0, 9);
    let mut cfg = toy::train_config(Precision::Fp32, 64);
    cfg.negative_mode = ncf_core::sampling::sampler::NegativeMode::Exact;
    let positives = ncf_core::sampling::sampler::UserItems::new(1, &users, &items);
    let dev = ncf_cuda::device::HostDevice::new(Precision::Fp32)
        .unwrap()
        .with_threads(2);
    let mut t = ncf_cuda::CudaTrainer::new(
        Box::new(dev),
        &model,
        &cfg,
        &users,
        &items,
        Some(&positives),
    )
    .unwrap();
    assert!(
        t.step_queued(0, 0..64).unwrap().is_empty(),
        "reported at once"
    );
    let e = t.drain().unwrap_err().to_string();
    assert!(e.contains("no negative found in 4096 draws"), "{e}");
}

/// The factored first-layer kernels (kernels/factored.cuh) on the host device with the trainer's
/// launch shapes, for FP32 and BF16 activations, give exactly what their CPU twins
/// (ncf_cuda::factored) give: slots (and the flags cleared), distinct lists, the stable radix
/// sort (3 passes in the larger case), segments, gathered rows, z, per-slot sums in sample order
/// and the row scatter. (It ran on kernels/emu, one std::thread per CUDA thread, before the host
/// device existed.)
#[test]
fn factored_kernels_match_their_cpu_twins_on_the_host_device() {
    use ncf_core::sampling::rng::{below, stream, Rng};
    use ncf_cuda::device::{Device, DeviceExt, HostDevice};
    use ncf_cuda::factored as twin;
    use ncf_cuda::kdef::*;
    for p in [Precision::Fp32, Precision::Bf16] {
        let d = HostDevice::new(p).unwrap();
        let act = d.act();
        let r = |x: f32| check::round_act(x, act);
        for (case, (n, n_ids, e, w0)) in
            [(2500u32, 300u32, 8usize, 16usize), (70_000, 90_000, 4, 8)]
                .into_iter()
                .enumerate()
        {
            let rng = Rng::new(case as u64 + 1);
            let uni = |k: usize, c: u32| {
                (rng.uniform_f64(stream::SYNTH, k as u32, c, 0) * 2.0 - 1.0) as f32
            };
            // Skewed ids (some rows never drawn): popular ones repeat, as items do.
            let ids: Vec<u32> = (0..n)
                .map(|b| {
                    let x = rng.word(stream::SYNTH, b, 9, 0);
                    if x.is_multiple_of(3) {
                        below(x, 17.min(n_ids))
                    } else {
                        below(x >> 1, n_ids)
                    }
                })
                .collect();
            let cap = (n_ids.min(n)) as usize;
            let table: Vec<f32> = (0..n_ids as usize * e).map(|k| uni(k, 1)).collect();
            let pu: Vec<f32> = (0..cap * w0).map(|k| uni(k, 2)).collect();
            let pi: Vec<f32> = (0..cap * w0).map(|k| uni(k, 3)).collect();
            let dz: Vec<f32> = (0..n as usize * w0).map(|k| uni(k, 4)).collect();
            let drows: Vec<f32> = (0..cap * e).map(|k| uni(k, 5)).collect();
            let g0: Vec<f32> = (0..n_ids as usize * e).map(|k| uni(k, 6)).collect();
            // On the device, launched as the trainer launches them.
            let nn = n as usize;
            let dids = d.upload(&ids, "ids").unwrap();
            let flags = d.alloc::<u32>(n_ids as usize, "flags").unwrap();
            let slots = d.alloc::<u32>(n_ids as usize, "slots").unwrap();
            let list = d.alloc::<u32>(cap, "list").unwrap();
            let count = d.alloc::<u32>(1, "count").unwrap();
            let (keys, vals) = (
                d.alloc::<u32>(nn, "keys").unwrap(),
                d.alloc::<u32>(nn, "vals").unwrap(),
            );
            let (ka, va) = (
                d.alloc::<u32>(nn, "ka").unwrap(),
                d.alloc::<u32>(nn, "va").unwrap(),
            );
            let (kb, vb) = (
                d.alloc::<u32>(nn, "kb").unwrap(),
                d.alloc::<u32>(nn, "vb").unwrap(),
            );
            let tiles = nn.div_ceil(1024) as u32;
            let hist = d.alloc::<u32>(256 * tiles as usize, "hist").unwrap();
            let starts = d.alloc::<u32>(cap + 1, "starts").unwrap();
            let dtable = d.upload(&table, "table").unwrap();
            let rows = d.alloc_act(cap * e, "rows").unwrap();
            let (dpu, dpi) = (d.upload(&pu, "pu").unwrap(), d.upload(&pi, "pi").unwrap());
            let z = d.alloc::<f32>(nn * w0, "z").unwrap();
            let dz_act = d.alloc_act(nn * w0, "dz").unwrap();
            d.upload_raw(dz_act.addr(), &check::f32_to_bytes(&dz, act), "dz")
                .unwrap();
            let sums = d.alloc_act(cap * w0, "sums").unwrap();
            let ddrows = d.upload(&drows, "drows").unwrap();
            let g = d.upload(&g0, "g").unwrap();
            let grid = d.grid_for(n as u64);
            let go = |res: Result<(), ncf_cuda::CudaError>| res.unwrap();
            go(d.launch(
                &Mark {
                    ids: dids.ptr(),
                    n,
                    flags: flags.ptr(),
                },
                grid,
                0,
                "mark",
            ));
            let k = Slots {
                flags: flags.ptr(),
                len: n_ids,
                slots: slots.ptr(),
                list: list.ptr(),
                count: count.ptr(),
            };
            go(d.launch(&k, 1, 0, "slots"));
            let k = Keys {
                ids: dids.ptr(),
                n,
                slots: slots.ptr(),
                keys: keys.ptr(),
                vals: vals.ptr(),
            };
            go(d.launch(&k, grid, 0, "keys"));
            let pairs = [(ka.ptr(), va.ptr()), (kb.ptr(), vb.ptr())];
            let mut from = (keys.ptr(), vals.ptr());
            for pass in 0..twin::radix_passes(cap) {
                let (shift, to) = (8 * pass, pairs[pass as usize % 2]);
                go(d.launch(
                    &RadixHist {
                        keys: from.0,
                        n,
                        shift,
                        hist: hist.ptr(),
                    },
                    tiles,
                    0,
                    "hist",
                ));
                go(d.launch(
                    &Scan {
                        x: hist.ptr(),
                        len: 256 * tiles,
                    },
                    1,
                    0,
                    "scan",
                ));
                let k = RadixScatter {
                    keys: from.0,
                    vals: from.1,
                    n,
                    shift,
                    hist: hist.ptr(),
                    keys_out: to.0,
                    vals_out: to.1,
                };
                go(d.launch(&k, tiles, 0, "scatter"));
                from = to;
            }
            let k = Segments {
                sorted_keys: from.0,
                n,
                count: count.ptr(),
                starts: starts.ptr(),
            };
            go(d.launch(&k, grid, 0, "segments"));
            let k = GatherRows {
                list: list.ptr(),
                count: count.ptr(),
                cap: cap as u32,
                e: e as u32,
                table: dtable.ptr(),
                out: rows.ptr(),
            };
            go(d.launch(&k, d.grid_for(cap as u64 * 32), 0, "gather rows"));
            // Both sides' keys are this side's here: z[b] = pu[k[b]] + pi[k[b]].
            let k = FactoredZ {
                ku: keys.ptr(),
                ki: keys.ptr(),
                n,
                width: w0 as u32,
                pu: dpu.ptr(),
                pi: dpi.ptr(),
                z: z.ptr(),
            };
            go(d.launch(&k, d.grid_for((nn * w0) as u64), 0, "z"));
            let k = SegmentSum {
                dz: dz_act.ptr(),
                width: w0 as u32,
                order: from.1,
                starts: starts.ptr(),
                count: count.ptr(),
                cap: cap as u32,
                s: sums.ptr(),
            };
            go(d.launch(&k, d.grid_for(cap as u64 * 32), 0, "segment sums"));
            let k = ScatterRows {
                list: list.ptr(),
                count: count.ptr(),
                e: e as u32,
                rows: ddrows.ptr(),
                g: g.ptr(),
            };
            go(d.launch(&k, d.grid_for((cap * e) as u64), 0, "scatter rows"));
            // The twins.
            let tag = format!("{} case {case}", p.name());
            let s = twin::slots(&ids, n_ids);
            let dn = s.list.len();
            let twin_keys = twin::keys_of(&ids, &s);
            let (sorted, order) = twin::sort_by_key(&twin_keys);
            let twin_starts = twin::starts(&sorted, dn);
            let twin_rows: Vec<f32> = twin::gather_rows(&s.list, cap, e, &table)
                .into_iter()
                .map(r)
                .collect();
            let twin_z = twin::factored_z(&twin_keys, &twin_keys, w0, &pu, &pi);
            let dz_r: Vec<f32> = dz.iter().map(|&x| r(x)).collect();
            let twin_sums: Vec<f32> = twin::segment_sum(&dz_r, w0, &order, &twin_starts, cap)
                .into_iter()
                .map(r)
                .collect();
            let mut twin_g = g0.clone();
            twin::scatter_rows(&s.list, e, &drows, &mut twin_g);
            let get = |b: &ncf_cuda::device::Buf<u32>, len| d.download(b, len, "out").unwrap();
            let (fk, fv) = match twin::radix_passes(cap) % 2 {
                1 => (&ka, &va),
                _ => (&kb, &vb),
            };
            let act_of = |b: &ncf_cuda::device::Buf<ncf_cuda::device::ActElem>, len| {
                check::bytes_to_f32(&d.download_act(b, len, "out").unwrap(), act)
            };
            assert_eq!(
                get(&flags, n_ids as usize),
                vec![0; n_ids as usize],
                "{tag}: flags cleared"
            );
            assert_eq!(get(&slots, n_ids as usize), s.slots, "{tag}: slots");
            assert_eq!(get(&list, cap)[..dn], s.list[..], "{tag}: list");
            assert_eq!(get(&count, 1), [dn as u32], "{tag}: count");
            assert_eq!(get(&keys, nn), twin_keys, "{tag}: keys");
            assert_eq!(get(fk, nn), sorted, "{tag}: sorted keys");
            assert_eq!(get(fv, nn), order, "{tag}: order (stable)");
            assert_eq!(
                get(&starts, cap + 1)[..=dn],
                twin_starts[..],
                "{tag}: starts"
            );
            assert_eq!(act_of(&rows, cap * e), twin_rows, "{tag}: gathered rows");
            assert_eq!(d.download(&z, nn * w0, "z").unwrap(), twin_z, "{tag}: z");
            assert_eq!(act_of(&sums, cap * w0), twin_sums, "{tag}: segment sums");
            assert_eq!(
                d.download(&g, n_ids as usize * e, "g").unwrap(),
                twin_g,
                "{tag}: scattered rows"
            );
            if case == 1 {
                assert_eq!(
                    twin::radix_passes(cap),
                    3,
                    "the larger case sorts in 3 passes"
                );
            }
        }
    }
}

/// The device check's throughput bench (`ncf-cuda-check --bench`: NVIDIA's ml-20m shape) runs
/// on the host device with a small batch: per-step timings, the queued steps ncf-train runs
/// (all reported, finite losses) and the per-kernel profile, with the fused step. (Each host step
/// updates the whole ml-20m-sized model, ~1.5 s: two steps of each kind.)
#[test]
fn the_bench_runs_on_the_host_device() {
    use ncf_core::neumf_cpu::FirstLayer;
    let mut log = |m: &str| eprintln!("{m}");
    let r = check::bench::bench(
        Which::Host,
        &[Precision::Bf16],
        &[FirstLayer::Factored],
        &[ncf_core::train::StepKernels::Fused],
        2,
        0,
        4096,
        &mut log,
    )
    .expect("bench ran");
    let rows = r["results"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{r}");
    for row in rows {
        for key in ["samples_per_s", "queued_samples_per_s", "median_step_ms"] {
            assert!(row[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {row}");
        }
        assert_eq!(row["step"], "fused", "{row}");
        // The per-stage profile names the fused step's kernels.
        let stages: Vec<&str> = row["stages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["stage"].as_str())
            .collect();
        for k in ["ncf_linear_fwd", "ncf_linear_bwd", "ncf_adam_wide"] {
            assert!(stages.contains(&k), "{k} not in {stages:?}");
        }
    }
}

/// The host device's capture behaves as CUDA stream capture: kernel launches, copies and zeroing
/// are recorded, not run, and a replay runs them again in order on the buffers' current
/// contents; a blocking read (a download, a synchronisation) or an upload inside a capture is
/// refused, naming it.
#[test]
fn a_capture_records_replays_and_refuses_blocking_reads() {
    use ncf_cuda::device::{Device, DeviceExt, HostDevice};
    use ncf_cuda::kdef::SumBlocks;
    let d = HostDevice::new(Precision::Fp32).unwrap();
    let a = d.upload(&[1.0f32, 2.0, 3.0, 4.0], "a").unwrap();
    let b = d.alloc::<f32>(4, "b").unwrap();
    let sum = d.alloc::<f32>(2, "sum").unwrap();
    d.begin_capture("the test graph").unwrap();
    d.copy(&a, &b, "a to b").unwrap();
    // sum[j] += b[j] + b[2 + j]: two blocks of partials of width 2.
    let k = SumBlocks {
        partials: b.ptr(),
        blocks: 2,
        width: 2,
        out: sum.ptr(),
    };
    d.launch(&k, 1, 0, "test").unwrap();
    let e = d.download(&b, 4, "b").unwrap_err().to_string();
    assert!(
        e.contains("downloading b (a blocking read) inside the capture of the test graph"),
        "{e}"
    );
    assert!(d.sync("a sync").is_err());
    assert!(d.upload_into(&[0f32], &a, "a").is_err());
    let g = d.end_capture("the test graph").unwrap();
    assert_eq!(
        d.download(&b, 4, "b").unwrap(),
        vec![0.0; 4],
        "captured work ran"
    );
    assert_eq!(d.download(&sum, 2, "sum").unwrap(), vec![0.0; 2]);
    d.replay(g, "the test graph").unwrap();
    assert_eq!(d.download(&b, 4, "b").unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(d.download(&sum, 2, "sum").unwrap(), vec![4.0, 6.0]);
    d.upload_into(&[10.0f32, 20.0, 30.0, 40.0], &a, "a")
        .unwrap();
    d.replay(g, "the test graph").unwrap();
    assert_eq!(d.download(&sum, 2, "sum").unwrap(), vec![44.0, 66.0]);
    assert!(d.replay(g + 1, "no graph").is_err());
}
