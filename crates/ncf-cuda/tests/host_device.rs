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

/// NeuMF, GMF and MLP, per sample and (with an MLP) with the first layer factored, with exact
/// and approximate negatives, in every precision: 10 steps against the CPU trainer.
#[test]
fn golden_runs_match_the_cpu_trainer_on_the_host_device() {
    use ncf_core::model::ModelKind;
    use ncf_core::neumf_cpu::FirstLayer;
    use ncf_core::sampling::sampler::NegativeMode;
    let mut log = |m: &str| eprintln!("{m}");
    let runs = [
        (ModelKind::Neumf, FirstLayer::PerSample),
        (ModelKind::Neumf, FirstLayer::Factored),
        (ModelKind::Gmf, FirstLayer::PerSample),
        (ModelKind::Mlp, FirstLayer::PerSample),
        (ModelKind::Mlp, FirstLayer::Factored),
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
    assert_eq!(n, 4 * 5 * 2);
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
