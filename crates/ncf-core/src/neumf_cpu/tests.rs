//! Tests of the CPU backend: reference gradients against finite differences, the fast path
//! against the reference, determinism, learning, scoring and dropout masks.

use super::reference::{self, Moments, Sample};
use super::*;
use crate::model::dropout::{dropout_keep, sample_dropout_mask};
use crate::model::dropout::{dropout_scale, dropout_threshold};
use crate::model::{ModelConfig, ModelKind};
use crate::sampling::rng::stream;
use crate::train::config::{BatchSize, Optimizer, Precision};

fn config(kind: ModelKind, layers: Vec<usize>, dropout: f32) -> ModelConfig {
    ModelConfig {
        kind,
        n_users: 5,
        n_items: 7,
        factors: 4,
        layers,
        dropout,
    }
}

fn train_config(optimizer: Optimizer) -> TrainConfig {
    TrainConfig {
        adam_moments: Default::default(),
        seed: 11,
        epochs: 1,
        batch_size: BatchSize::Samples(16),
        negatives: 4,
        negative_mode: NegativeMode::Approximate,
        optimizer,
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        l2: 0.0,
        family: Default::default(),
        precision: Precision::Fp32,
        topk: 10,
        target_hr: None,
    }
}

/// A model with parameters of order 1 (NVIDIA's init makes embeddings tiny, hiding mistakes).
fn big_model(config: ModelConfig, seed: u64) -> Model {
    let mut m = Model::init(config, seed).unwrap();
    let rng = Rng::new(seed ^ 0x5eed);
    for t in m.layout.tensors.clone() {
        for (e, x) in m.params[t.range()].iter_mut().enumerate() {
            *x = (rng.uniform_f64(stream::SYNTH, e as u32, t.offset as u32, 0) * 2.0 - 1.0) as f32
                * 0.8;
        }
    }
    m
}

fn toy_samples(n: u32, n_users: u32, n_items: u32) -> Vec<Sample> {
    (0..n)
        .map(|k| Sample {
            user: (k * 3 + 1) % n_users,
            item: (k * 5 + 2) % n_items,
            label: (k % 3 == 0) as u32 as f32,
            index: k.into(),
        })
        .collect()
}

fn all_kinds() -> Vec<ModelConfig> {
    vec![
        config(ModelKind::Neumf, vec![8, 6, 4], 0.0),
        config(ModelKind::Gmf, vec![8, 6, 4], 0.0),
        config(ModelKind::Mlp, vec![8, 6, 4], 0.0),
    ]
}

#[test]
fn reference_gradients_match_finite_differences() {
    for cfg in all_kinds() {
        let model = big_model(cfg.clone(), 3);
        let samples = toy_samples(12, 5, 7);
        let rng = Rng::new(1);
        let mut grad = vec![0f32; model.params.len()];
        reference::loss_and_grad(&model, &samples, &rng, 0, &mut grad);
        let loss_at = |params: &[f32]| {
            let mut m = model.clone();
            m.params.copy_from_slice(params);
            let mut scratch = vec![0f32; params.len()];
            reference::loss_and_grad(&m, &samples, &rng, 0, &mut scratch)
        };
        let h = 1e-2f32;
        for t in &model.layout.tensors {
            let (mut err, mut norm) = (0f64, 0f64);
            for k in t.range() {
                let mut p = model.params.clone();
                p[k] += h;
                let up = loss_at(&p);
                p[k] -= 2.0 * h;
                let down = loss_at(&p);
                let fd = (up - down) / (2.0 * h as f64);
                err += (fd - grad[k] as f64).powi(2);
                norm += (grad[k] as f64).powi(2);
            }
            let rel = (err / norm).sqrt();
            assert!(norm > 1e-8, "{:?} {}: zero gradient", cfg.kind, t.name);
            assert!(
                rel < 1e-2,
                "{:?} {}: relative gradient error {rel}",
                cfg.kind,
                t.name
            );
        }
    }
}

/// Reference training: the same batches, per-sample math, dense optimiser.
fn reference_steps(
    model: &mut Model,
    cfg: &TrainConfig,
    users: &[u32],
    items: &[u32],
    steps: u64,
) -> Vec<f64> {
    let mut st = Moments::new(model.params.len());
    let rng = Rng::new(cfg.seed);
    let mut losses = vec![];
    for step in 0..steps {
        let s = EpochSamples::new(
            rng,
            0,
            cfg.negatives,
            model.config.n_items,
            cfg.negative_mode,
            users,
            items,
            None,
        );
        let b = cfg.batch_size.per_step(s.len());
        let range = step * b..((step + 1) * b).min(s.len());
        let batch: Vec<Sample> = range
            .map(|p| {
                let idx = s.order.apply(p);
                let (user, item, label) = s.sample(idx).unwrap();
                Sample {
                    user,
                    item,
                    label,
                    index: idx,
                }
            })
            .collect();
        let mut grad = vec![0f32; model.params.len()];
        losses.push(reference::loss_and_grad(model, &batch, &rng, 0, &mut grad));
        reference::optimizer_step(cfg, &mut model.params, &grad, &mut st);
    }
    losses
}

fn toy_train(n_users: u32, n_items: u32) -> (Vec<u32>, Vec<u32>) {
    let users: Vec<u32> = (0..40).map(|k| k % n_users).collect();
    let items: Vec<u32> = (0..40).map(|k| (k * 7 + k / 5) % n_items).collect();
    (users, items)
}

fn assert_close(what: &str, a: &[f32], b: &[f32], rtol: f32, atol: f32) {
    let mut worst = (0f32, 0usize);
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        let excess = (x - y).abs() - (atol + rtol * y.abs());
        if excess > worst.0 || !x.is_finite() {
            worst = (excess.max(f32::MIN_POSITIVE), k);
        }
    }
    assert!(
        worst.0 <= 0.0,
        "{what}: element {} is {} vs {}",
        worst.1,
        a[worst.1],
        b[worst.1]
    );
}

#[test]
fn fast_path_matches_reference_with_dropout() {
    let layers_of = |kind| match kind {
        ModelKind::Gmf => vec![8, 6],
        _ => vec![40, 24, 16, 8],
    };
    let cases = [ModelKind::Neumf, ModelKind::Gmf, ModelKind::Mlp]
        .into_iter()
        .flat_map(|k| [Optimizer::Adam, Optimizer::Sgd].map(|o| (k, o)))
        .flat_map(|(k, o)| [FirstLayer::Factored, FirstLayer::PerSample].map(|f| (k, o, f)));
    for (kind, optimizer, first) in cases {
        {
            let mc = ModelConfig {
                kind,
                n_users: 9,
                n_items: 11,
                factors: 8,
                layers: layers_of(kind),
                dropout: 0.4,
            };
            let mut cfg = train_config(optimizer);
            cfg.batch_size = BatchSize::Samples(37);
            cfg.l2 = 1e-3;
            let (users, items) = toy_train(9, 11);
            let model = big_model(mc, 5);
            let mut reference_model = model.clone();
            let ref_losses = reference_steps(&mut reference_model, &cfg, &users, &items, 4);
            let mut t = CpuTrainer::new(model, &cfg, users.clone(), items.clone(), None, 2)
                .unwrap()
                .with_tile(5)
                .with_first_layer(first);
            for (step, want) in ref_losses.iter().enumerate() {
                let s = step as u64;
                let got = t.step(0, s * 37..(s + 1) * 37).unwrap().loss as f64;
                assert!(
                    (got - want).abs() <= 1e-5 * want.abs(),
                    "{kind:?} {optimizer:?} {first:?} step {step}: {got} vs {want}"
                );
            }
            let mut padding = vec![true; t.params().len()];
            for spec in &reference_model.layout.tensors {
                padding[spec.range()].iter_mut().for_each(|x| *x = false);
            }
            let nonzero_pad = t
                .params()
                .iter()
                .zip(&padding)
                .filter(|(x, pad)| **pad && **x != 0.0)
                .count();
            assert_eq!(
                nonzero_pad, 0,
                "{kind:?} {optimizer:?} {first:?}: padding floats changed"
            );
            let what = format!("{kind:?} {optimizer:?} {first:?} params");
            assert_close(&what, t.params(), &reference_model.params, 1e-5, 1e-7);
        }
    }
}

/// An epoch of more than 2^32 samples (40 positives × (1 + 2^28) = 10.7 billion): steps at
/// positions whose samples have 64-bit indices train exactly like the per-sample reference, and a
/// sample's numbers (its negative, its dropout mask) are addressed by the whole index.
#[test]
fn epochs_past_2_pow_32_train_like_the_reference() {
    let mc = ModelConfig {
        kind: ModelKind::Neumf,
        n_users: 9,
        n_items: 11,
        factors: 8,
        layers: vec![40, 24, 16, 8],
        dropout: 0.4,
    };
    let mut cfg = train_config(Optimizer::Adam);
    cfg.negatives = 1 << 28;
    let (users, items) = toy_train(9, 11);
    let es = EpochSamples::new(
        Rng::new(cfg.seed),
        0,
        cfg.negatives,
        11,
        NegativeMode::Approximate,
        &users,
        &items,
        None,
    );
    assert!(es.len() > 1 << 33);
    // Samples 2^32 apart share the low 32 bits of their index, not their draws.
    let differ = (0..200u64)
        .filter(|&i| {
            let (a, b) = (40 + i, 40 + i + (1 << 32));
            es.sample(a).unwrap().1 != es.sample(b).unwrap().1
        })
        .count();
    assert!(differ > 150, "{differ} of 200 negatives 2^32 apart differ");
    let high = (2u64 << 32) + 12_345;
    let positions = [high..high + 64, 3..67, (1 << 32) - 20..(1 << 32) + 44];
    let past = positions
        .iter()
        .flat_map(|r| r.clone())
        .filter(|&p| es.order.apply(p) >= 1 << 32)
        .count();
    assert!(past > 64, "only {past} samples with indices past 2^32");
    let model = big_model(mc, 5);
    let mut reference = reference::RefTrainer::new(model.clone(), &cfg, &users, &items, None);
    let mut fast = CpuTrainer::new(model, &cfg, users.clone(), items.clone(), None, 2)
        .unwrap()
        .with_tile(5);
    for (step, r) in positions.iter().enumerate() {
        let want = reference.step(0, r.clone()).unwrap().loss;
        let got = fast.step(0, r.clone()).unwrap().loss;
        assert!(
            (got - want).abs() <= 1e-5 * want.abs(),
            "step {step} at {r:?}: {got} vs {want}"
        );
    }
    assert_close("params", fast.params(), &reference.model.params, 1e-5, 1e-7);
}

/// Sparse gradients (embedding rows by slot, one rank) train to the bits of dense per-thread
/// vectors: every model kind, both first layers, Adam and SGD, 1 to 3 threads, with dropout.
#[test]
fn sparse_gradients_give_the_bits_of_dense_ones() {
    let layers_of = |kind| match kind {
        ModelKind::Gmf => vec![8, 6],
        _ => vec![40, 24, 16, 8],
    };
    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for kind in [ModelKind::Neumf, ModelKind::Gmf, ModelKind::Mlp] {
        for first in [FirstLayer::Factored, FirstLayer::PerSample] {
            for (opt, threads) in [
                (Optimizer::Adam, 1),
                (Optimizer::Adam, 3),
                (Optimizer::Sgd, 2),
            ] {
                let mc = ModelConfig {
                    kind,
                    n_users: 9,
                    n_items: 11,
                    factors: 8,
                    layers: layers_of(kind),
                    dropout: 0.4,
                };
                let mut cfg = train_config(opt);
                cfg.l2 = 1e-3;
                let (users, items) = toy_train(9, 11);
                let run = |dense: bool| {
                    let model = big_model(mc.clone(), 5);
                    let mut t =
                        CpuTrainer::new(model, &cfg, users.clone(), items.clone(), None, threads)
                            .unwrap()
                            .with_tile(5)
                            .with_first_layer(first);
                    if dense {
                        t = t.with_dense_grads();
                    }
                    let losses: Vec<u32> = (0..4u64)
                        .map(|s| t.step(0, s * 37..(s + 1) * 37).unwrap().loss.to_bits())
                        .collect();
                    let (m, v) = t.moments.to_f32();
                    (losses, bits(t.params()), bits(&m), bits(&v))
                };
                assert!(
                    run(false) == run(true),
                    "{kind:?} {first:?} {opt:?} {threads} threads: sparse and dense differ"
                );
            }
        }
    }
}

#[test]
fn same_seed_and_threads_give_identical_params() {
    let mc = ModelConfig {
        kind: ModelKind::Neumf,
        n_users: 9,
        n_items: 11,
        factors: 8,
        layers: vec![32, 16, 8],
        dropout: 0.5,
    };
    let cfg = train_config(Optimizer::Adam);
    let (users, items) = toy_train(9, 11);
    let run = |threads| {
        let model = Model::init(mc.clone(), 2).unwrap();
        let mut t = CpuTrainer::new(model, &cfg, users.clone(), items.clone(), None, threads)
            .unwrap()
            .with_tile(7);
        for s in 0..5u64 {
            t.step(0, s * 16..(s + 1) * 16).unwrap();
        }
        t.params().to_vec()
    };
    let (a, b) = (run(2), run(2));
    assert!(
        a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
        "two runs differ"
    );
    let c = run(1);
    assert_close("1 vs 2 threads", &c, &a, 1e-4, 1e-6);
    let init = Model::init(mc, 2).unwrap();
    assert_ne!(init.params, a, "training changed nothing");
}

#[test]
fn training_learns_a_block_structure() {
    // Users and items in two groups; users like the items of their group.
    let (n_users, n_items) = (40u32, 30u32);
    let mut users = vec![];
    let mut items = vec![];
    for u in 0..n_users {
        for i in 0..n_items {
            if u % 2 == i % 2 && (u + i) % 3 != 0 {
                users.push(u);
                items.push(i);
            }
        }
    }
    let mc = ModelConfig {
        kind: ModelKind::Neumf,
        n_users,
        n_items,
        factors: 8,
        layers: vec![16, 16, 8],
        dropout: 0.1,
    };
    let mut cfg = train_config(Optimizer::Adam);
    cfg.negatives = 1;
    cfg.batch_size = BatchSize::Samples(128);
    let positives = UserItems::new(n_users, &users, &items);
    cfg.negative_mode = NegativeMode::Exact;
    let mut t = CpuTrainer::new(
        Model::init(mc, 1).unwrap(),
        &cfg,
        users.clone(),
        items,
        Some(positives),
        2,
    )
    .unwrap();
    let len = users.len() as u64 * 2;
    let mut epoch_losses = vec![];
    for epoch in 0..15 {
        let (mut sum, mut n) = (0f64, 0f64);
        let mut p = 0;
        while p < len {
            let end = (p + cfg.batch_size.per_step(len)).min(len);
            sum += t.step(epoch, p..end).unwrap().loss as f64 * (end - p) as f64;
            n += (end - p) as f64;
            p = end;
        }
        epoch_losses.push(sum / n);
    }
    let (first, last) = (epoch_losses[0], *epoch_losses.last().unwrap());
    assert!(
        first > 0.6 && last < 0.3,
        "losses per epoch: {epoch_losses:?}"
    );
    // A held-out same-group pair scores above an other-group pair.
    let mut out = [0f32; 2];
    t.score(&[4, 4], &[2, 5], &mut out).unwrap();
    assert!(out[0] > out[1], "{out:?}");
}

#[test]
fn score_equals_reference_logits_for_every_kind() {
    for mut cfg in all_kinds() {
        cfg.dropout = 0.5; // ignored when scoring
        cfg.layers = vec![40, 24, 8];
        let model = big_model(cfg.clone(), 9);
        let users: Vec<u32> = (0..300).map(|k| k % 5).collect();
        let items: Vec<u32> = (0..300).map(|k| (k * 3) % 7).collect();
        let mut fast = vec![0f32; 300];
        score_with(&model, &users, &items, &mut fast, 1);
        for k in 0..300 {
            let want = reference::logit(&model, users[k], items[k]);
            assert!(
                (fast[k] - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{:?} pair {k}: {} vs {want}",
                cfg.kind,
                fast[k]
            );
        }
        // Rows are independent: any thread count gives the same bits.
        let many_users: Vec<u32> = (0..10_000).map(|k| k % 5).collect();
        let many_items: Vec<u32> = (0..10_000).map(|k| (k * 3) % 7).collect();
        let (mut a, mut b) = (vec![0f32; 10_000], vec![0f32; 10_000]);
        score_with(&model, &many_users, &many_items, &mut a, 1);
        score(&model, &many_users, &many_items, &mut b);
        let differ = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x.to_bits() != y.to_bits());
        assert_eq!(differ, None, "score() differs from one thread");
        score_with(&model, &many_users, &many_items, &mut b, 3);
        let differ = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x.to_bits() != y.to_bits());
        assert_eq!(differ, None, "3 threads differ from one");
    }
}

#[test]
fn score_rejects_out_of_range_ids() {
    let model = Model::init(config(ModelKind::Neumf, vec![8, 4], 0.0), 1).unwrap();
    let cfg = train_config(Optimizer::Adam);
    let mut t = CpuTrainer::new(model, &cfg, vec![0, 1], vec![2, 3], None, 1).unwrap();
    let err = t.score(&[5], &[0], &mut [0.0]).unwrap_err().to_string();
    assert!(err.contains("user id 5"), "{err}");
    let err = t.score(&[0], &[7], &mut [0.0]).unwrap_err().to_string();
    assert!(err.contains("item id 7"), "{err}");
    assert!(CpuTrainer::new(t.model().unwrap(), &cfg, vec![0], vec![9], None, 1).is_err());
}

#[test]
fn non_finite_loss_is_an_error_and_not_applied() {
    let mut model = Model::init(config(ModelKind::Neumf, vec![8, 4], 0.0), 1).unwrap();
    let fb = model.layout.range("final.bias").start;
    model.params[fb] = f32::NAN;
    let cfg = train_config(Optimizer::Adam);
    let mut t = CpuTrainer::new(model, &cfg, vec![0, 1], vec![2, 3], None, 1).unwrap();
    let err = t.step(0, 0..4).unwrap_err().to_string();
    assert!(
        err.contains("loss is NaN") && err.contains("epoch 0"),
        "{err}"
    );
    assert_eq!(t.steps(), 0);
}

#[test]
fn non_finite_gradient_with_finite_loss_stops_training() {
    // final.weight ≈ 3e38 on the GMF part, the user's GMF row 0 (so the logit stays finite), the
    // item's row 100: d·w·100 overflows in the user's GMF gradient.
    let mut model = Model::init(config(ModelKind::Neumf, vec![8, 4], 0.0), 1).unwrap();
    let f = model.config.gmf_factors();
    let fw = model.layout.range("final.weight").start;
    let (mu, mi) = (
        model.layout.range("mf_user_embed.weight").start,
        model.layout.range("mf_item_embed.weight").start,
    );
    for j in 0..f {
        model.params[fw + j] = 3e38;
        model.params[mu + j] = 0.0; // user 0
        model.params[mi + 2 * f + j] = 100.0; // item 2
    }
    let cfg = train_config(Optimizer::Adam);
    let mut t = CpuTrainer::new(model, &cfg, vec![0], vec![2], None, 1).unwrap();
    let err = t.step(0, 0..5).unwrap_err().to_string();
    assert!(
        err.contains("gradient is not finite") && err.contains("epoch 0"),
        "{err}"
    );
}

#[test]
fn dropout_masks_follow_the_documented_definition() {
    let rng = Rng::new(4);
    let t = dropout_threshold(0.5);
    assert_eq!((t, dropout_scale(t)), (128, 2.0));
    assert_eq!(dropout_threshold(0.0), 0);
    assert_eq!(dropout_threshold(0.9999), 255);
    let key = DropoutKey {
        rng,
        epoch: 3,
        threshold: t,
    };
    let mut keep = vec![false; 40];
    let mut kept = 0;
    for s in 0..500u32 {
        sample_dropout_mask(&key, s.into(), 1, &mut keep);
        for (j, k) in keep.iter().enumerate() {
            assert_eq!(*k, dropout_keep(&rng, s.into(), 3, 1, j as u32, t));
            // The definition written out.
            let w = rng.block(stream::DROPOUT, s, 3, (1 << 16) | (j as u32 / 16))[(j % 16) / 4];
            assert_eq!(*k, (w >> (8 * (j % 4))) & 0xff >= 128);
            kept += *k as u32;
        }
    }
    assert!(
        (9_500..10_500).contains(&kept),
        "{kept} of 20000 kept at p = 0.5"
    );
}

#[test]
fn scorer_is_split_independent_on_grouped_inputs() {
    // Inputs grouped by user, as evaluation and top-K give them: runs of equal users crossing
    // tile boundaries. Scores match the reference, and are the same bits whether the pairs are
    // scored in one call on several threads or user by user on one.
    for mut cfg in all_kinds() {
        cfg.layers = vec![40, 24, 8];
        let model = big_model(cfg.clone(), 11);
        let (mut users, mut items) = (vec![], vec![]);
        // Users 0..5 twice over (a user's second run lands in other tiles).
        for u in (0..5u32).chain(0..5) {
            for k in 0..(1000 + 37 * u) {
                users.push(u);
                items.push((k * 5 + u) % 7);
            }
        }
        let n = users.len();
        assert!(n > 2 * 4096, "too few rows for 3 threads");
        let mut whole = vec![0f32; n];
        CpuScorer::with_threads(&model, 3).score(&users, &items, &mut whole);
        let one = CpuScorer::with_threads(&model, 1);
        let mut by_user = vec![0f32; n];
        let mut start = 0;
        while start < n {
            let end = start
                + users[start..]
                    .iter()
                    .take_while(|&&u| u == users[start])
                    .count();
            one.score(
                &users[start..end],
                &items[start..end],
                &mut by_user[start..end],
            );
            start = end;
        }
        for k in 0..n {
            let want = reference::logit(&model, users[k], items[k]);
            assert!(
                (whole[k] - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{:?} pair {k}: {} vs {want}",
                cfg.kind,
                whole[k]
            );
            assert_eq!(
                whole[k].to_bits(),
                by_user[k].to_bits(),
                "{:?} pair {k}",
                cfg.kind
            );
        }
    }
}

/// [`optim::pass`] over the flat vector (`p`, `m`, `v`) and every thread's gradient vector in
/// `g`, cut into chunks of `per` parameters as the trainer cuts it among threads; false when a
/// chunk reported a non-finite gradient.
fn pass_in_chunks<M: optim::Moment>(
    kernel: &optim::Kernel,
    segs: &[optim::Segment],
    touched: Option<&optim::Touched>,
    per: usize,
    (p, m, v): (&mut [f32], &mut [M], &mut [M]),
    g: &mut [Vec<f32>],
    sparse: &[optim::SparseRows],
) -> bool {
    let mut ok = true;
    let mut start = 0;
    while start < p.len() {
        let end = (start + per).min(p.len());
        let mut gs: Vec<&mut [f32]> = g.iter_mut().map(|g| &mut g[start..end]).collect();
        ok &= optim::pass(
            kernel,
            segs,
            touched,
            start,
            &mut p[start..end],
            &mut m[start..end],
            &mut v[start..end],
            &mut gs,
            sparse,
        );
        start = end;
    }
    ok
}

/// The optimiser pass gives the bits of the scalar per-element update (threads summed in order,
/// then Adam or SGD with L2), for 1 to 3 thread gradient vectors, whether it skips the untouched
/// embedding rows or not, however the flat vector is cut into chunks (cuts inside rows too); it
/// zeroes every gradient and reports a non-finite one anywhere.
#[test]
fn optimiser_pass_equals_the_scalar_update() {
    use super::optim::{self, Kernel, Touched};
    use crate::model::Side;
    let model = big_model(config(ModelKind::Neumf, vec![8, 4], 0.0), 3);
    let segs = optim::segments(&model.layout);
    let n = model.layout.total;
    // Segments tile the vector; the four embedding tables are row segments.
    assert_eq!(segs.first().unwrap().range.start, 0);
    assert_eq!(segs.last().unwrap().range.end, n);
    assert!(segs.windows(2).all(|w| w[0].range.end == w[1].range.start));
    assert_eq!(segs.iter().filter(|s| s.rows.is_some()).count(), 4);
    let (users, items) = ([1u32, 3], [0u32, 4, 6]);
    // Gradients are non-zero only in the touched rows of the tables and in the dense parts.
    let row_of = |k: usize| -> Option<(Side, usize)> {
        let s = segs.iter().find(|s| s.range.contains(&k))?;
        let (side, w) = s.rows?;
        Some((side, (k - s.range.start) / w))
    };
    let live = |k: usize| match row_of(k) {
        None => true,
        Some((Side::User, r)) => users.contains(&(r as u32)),
        Some((Side::Item, r)) => items.contains(&(r as u32)),
    };
    let val = |k: usize, salt: u32| {
        let x = crate::sampling::rng::Rng::new(5).uniform_f64(salt, k as u32, 0, 0);
        (x as f32 - 0.5) * 0.02
    };
    let cases = [Optimizer::Adam, Optimizer::Sgd]
        .into_iter()
        .flat_map(|o| [0.01f32, 0.0].map(|l2| (o, l2)));
    for (opt, l2) in cases {
        for threads in 1..=3usize {
            let mut cfg = train_config(opt);
            cfg.l2 = l2;
            let kernel = Kernel {
                opt,
                adam: AdamScalars::new(&cfg, 7),
                lr: cfg.lr,
                l2: cfg.l2,
            };
            let p0 = model.params.clone();
            let m0: Vec<f32> = (0..n).map(|k| val(k, 2)).collect();
            let v0: Vec<f32> = (0..n).map(|k| val(k, 3).abs() * 1e-2).collect();
            let g0: Vec<Vec<f32>> = (0..threads)
                .map(|t| {
                    (0..n)
                        .map(|k| if live(k) { val(k, 10 + t as u32) } else { 0.0 })
                        .collect()
                })
                .collect();
            let (mut p1, mut m1, mut v1) = (p0.clone(), m0.clone(), v0.clone());
            for k in 0..n {
                let mut g = 0f32;
                for t in &g0 {
                    g += t[k];
                }
                g += cfg.l2 * p1[k];
                match opt {
                    Optimizer::Adam => kernel.adam.update(&mut p1[k], &mut m1[k], &mut v1[k], g),
                    Optimizer::Sgd => p1[k] -= cfg.lr * g,
                }
            }
            let mut touched = Touched::new(5, 7);
            touched.mark(Side::User, &users);
            touched.mark(Side::Item, &items);
            touched.mark(Side::Item, &items[..1]); // repeats are fine
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            for sparse in [false, true] {
                for per in [n, 16, 13, 5] {
                    let (mut p, mut m, mut v, mut g) =
                        (p0.clone(), m0.clone(), v0.clone(), g0.clone());
                    let t = sparse.then_some(&touched);
                    let state = (&mut p[..], &mut m[..], &mut v[..]);
                    let ok = pass_in_chunks(&kernel, &segs, t, per, state, &mut g, &[]);
                    let what = format!(
                        "{opt:?} l2 {l2}, {threads} threads, sparse {sparse}, chunks of {per}"
                    );
                    assert!(ok, "{what}: finite gradients reported as not finite");
                    assert_eq!(bits(&p1), bits(&p), "{what}: parameters differ");
                    assert_eq!(bits(&m1), bits(&m), "{what}: m differs");
                    assert_eq!(bits(&v1), bits(&v), "{what}: v differs");
                    assert!(
                        g.iter().flatten().all(|&x| x == 0.0),
                        "{what}: gradients not zeroed"
                    );
                }
            }
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                for at in (0..n).filter(|&k| live(k)).step_by(37) {
                    let mut g = g0.clone();
                    g[threads - 1][at] = bad;
                    let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
                    let mut gs: Vec<&mut [f32]> = g.iter_mut().map(|g| &mut g[..]).collect();
                    let ok = optim::pass(
                        &kernel,
                        &segs,
                        Some(&touched),
                        0,
                        &mut p,
                        &mut m,
                        &mut v,
                        &mut gs,
                        &[],
                    );
                    assert!(!ok, "{opt:?}: gradient {bad} at {at} not reported");
                }
            }
        }
    }
}

/// Sparse gradients: the optimiser pass over threads whose embedding gradients are kept by slot
/// (each thread touching its own subset of rows, slots in any order, a −0 among the values)
/// gives the bits of the dense pass over the same gradients scattered into dense vectors
/// (`+0 + row`), leaves the dense vectors' tables unwritten, cuts anywhere, and reports a
/// non-finite gradient in a slot row.
#[test]
fn optimiser_pass_over_slot_rows_equals_the_dense_pass() {
    use super::factored::NONE;
    use super::optim::{self, Kernel, SparseRows, Touched};
    use crate::model::Side;
    let model = big_model(config(ModelKind::Neumf, vec![8, 4], 0.0), 3);
    let segs = optim::segments(&model.layout);
    let n = model.layout.total;
    let (users, items) = ([1u32, 3, 4], [0u32, 4, 6]);
    let val = |k: usize, salt: u32| {
        let x = crate::sampling::rng::Rng::new(9).uniform_f64(salt, k as u32, 0, 0);
        (x as f32 - 0.5) * 0.02
    };
    let tables: Vec<(usize, Side, usize)> = segs
        .iter()
        .filter_map(|s| s.rows.map(|(side, w)| (s.range.start, side, w)))
        .collect();
    assert_eq!(tables.len(), 4);
    for opt in [Optimizer::Adam, Optimizer::Sgd] {
        for threads in 1..=3usize {
            let mut cfg = train_config(opt);
            cfg.l2 = 0.01;
            let kernel = Kernel {
                opt,
                adam: AdamScalars::new(&cfg, 3),
                lr: cfg.lr,
                l2: cfg.l2,
            };
            // Thread t touches the ids with (id + t) % 3 != 1 (thread 0: all of them), slots
            // handed out in reverse order.
            let has = |t: usize, id: u32| t == 0 || (id as usize + t) % 3 != 1;
            let mut slots: Vec<(Vec<u32>, Vec<u32>)> = vec![];
            for t in 0..threads {
                let mut su = vec![NONE; 5];
                let mut si = vec![NONE; 7];
                for (map, ids) in [(&mut su, &users[..]), (&mut si, &items[..])] {
                    let mine: Vec<u32> = ids.iter().copied().filter(|&i| has(t, i)).collect();
                    for (slot, &id) in mine.iter().rev().enumerate() {
                        map[id as usize] = slot as u32;
                    }
                }
                slots.push((su, si));
            }
            let dense_parts: Vec<Vec<f32>> = (0..threads)
                .map(|t| (0..n).map(|k| val(k, 10 + t as u32)).collect())
                .collect();
            // Slot rows of each thread's tables, and the dense vectors they stand for.
            let mut rows: Vec<Vec<Vec<f32>>> = vec![];
            let mut dense = dense_parts.clone();
            for t in 0..threads {
                let mut per_table = vec![];
                for (ti, &(start, side, w)) in tables.iter().enumerate() {
                    let map = match side {
                        Side::User => &slots[t].0,
                        Side::Item => &slots[t].1,
                    };
                    let count = map.iter().filter(|&&s| s != NONE).count();
                    let mut buf = vec![0f32; count * w];
                    for (id, &slot) in map.iter().enumerate() {
                        let at = start + id * w;
                        match slot {
                            NONE => dense[t][at..at + w].iter_mut().for_each(|x| *x = 0.0),
                            slot => {
                                for j in 0..w {
                                    let x = if j == 1 && ti == 2 {
                                        -0.0
                                    } else {
                                        val(at + j, 30 + t as u32)
                                    };
                                    buf[slot as usize * w + j] = x;
                                    dense[t][at + j] = 0.0 + x;
                                }
                            }
                        }
                    }
                    per_table.push(buf);
                }
                rows.push(per_table);
            }
            let mut sparse_dense = dense_parts.clone();
            for g in sparse_dense.iter_mut() {
                for &(start, side, w) in &tables {
                    let rows = match side {
                        Side::User => 5,
                        Side::Item => 7,
                    };
                    g[start..start + rows * w].iter_mut().for_each(|x| *x = 0.0);
                }
            }
            let sparse_rows = |rows: &[Vec<Vec<f32>>]| -> Vec<Vec<(usize, Vec<f32>)>> {
                rows.iter()
                    .map(|per| {
                        tables
                            .iter()
                            .zip(per)
                            .map(|(t, b)| (t.0, b.clone()))
                            .collect()
                    })
                    .collect()
            };
            let mut touched = Touched::new(5, 7);
            touched.mark(Side::User, &users);
            touched.mark(Side::Item, &items);
            let p0 = model.params.clone();
            let m0: Vec<f32> = (0..n).map(|k| val(k, 2)).collect();
            let v0: Vec<f32> = (0..n).map(|k| val(k, 3).abs() * 1e-2).collect();
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            let run = |g: &mut Vec<Vec<f32>>, sr: &[Vec<(usize, Vec<f32>)>], per: usize| {
                let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
                let views: Vec<SparseRows> = sr
                    .iter()
                    .zip(&slots)
                    .map(|(tabs, (su, si))| SparseRows {
                        slot_user: su,
                        slot_item: si,
                        tables: tabs.iter().map(|(at, b)| (*at, &b[..])).collect(),
                    })
                    .collect();
                let state = (&mut p[..], &mut m[..], &mut v[..]);
                let ok = pass_in_chunks(&kernel, &segs, Some(&touched), per, state, g, &views);
                (ok, p, m, v)
            };
            let (ok, p1, m1, v1) = run(&mut dense.clone(), &[], n);
            assert!(ok);
            for per in [n, 16, 13, 5] {
                let what = format!("{opt:?}, {threads} threads, chunks of {per}");
                let mut g = sparse_dense.clone();
                let (ok, p, m, v) = run(&mut g, &sparse_rows(&rows), per);
                assert!(ok, "{what}: finite gradients reported as not finite");
                assert_eq!(bits(&p1), bits(&p), "{what}: parameters differ");
                assert_eq!(bits(&m1), bits(&m), "{what}: m differs");
                assert_eq!(bits(&v1), bits(&v), "{what}: v differs");
                assert!(
                    g.iter().flatten().all(|&x| x == 0.0),
                    "{what}: gradients not zeroed"
                );
            }
            let mut bad = rows.clone();
            bad[threads - 1][3][1] = f32::NAN;
            let (ok, ..) = run(&mut sparse_dense.clone(), &sparse_rows(&bad), 13);
            assert!(
                !ok,
                "{opt:?} {threads} threads: a NaN slot row not reported"
            );
        }
    }
}

/// BF16 Adam moments: the optimiser pass gives the bits of the scalar update that rounds each
/// moment to BF16 when it stores it (dense and touched-row passes, any cut); a trainer with
/// them stays near the FP32 one, and its checkpoint state resumes bit for bit.
#[test]
fn bf16_moments_round_when_stored_and_resume_exactly() {
    use super::optim::{self, Kernel, Touched};
    use crate::model::Side;
    use crate::train::config::Moments;
    use half::bf16;
    let model = big_model(config(ModelKind::Neumf, vec![8, 4], 0.0), 3);
    let segs = optim::segments(&model.layout);
    let n = model.layout.total;
    let val = |k: usize, salt: u32| {
        let x = crate::sampling::rng::Rng::new(4).uniform_f64(salt, k as u32, 0, 0);
        (x as f32 - 0.5) * 0.02
    };
    let cfg = train_config(Optimizer::Adam);
    let kernel = Kernel {
        opt: Optimizer::Adam,
        adam: AdamScalars::new(&cfg, 5),
        lr: cfg.lr,
        l2: 0.0,
    };
    let m0: Vec<bf16> = (0..n).map(|k| bf16::from_f32(val(k, 2))).collect();
    let v0: Vec<bf16> = (0..n)
        .map(|k| bf16::from_f32(val(k, 3).abs() * 1e-2))
        .collect();
    let (users, items) = ([1u32, 3], [0u32, 4, 6]);
    let mut touched = Touched::new(5, 7);
    touched.mark(Side::User, &users);
    touched.mark(Side::Item, &items);
    let row_live = |k: usize| {
        let s = segs.iter().find(|s| s.range.contains(&k)).unwrap();
        match s.rows {
            None => true,
            Some((Side::User, w)) => users.contains(&(((k - s.range.start) / w) as u32)),
            Some((Side::Item, w)) => items.contains(&(((k - s.range.start) / w) as u32)),
        }
    };
    let g0: Vec<f32> = (0..n)
        .map(|k| if row_live(k) { val(k, 10) } else { 0.0 })
        .collect();
    let (mut p1, mut m1, mut v1) = (model.params.clone(), m0.clone(), v0.clone());
    for k in 0..n {
        let (mut m, mut v) = (m1[k].to_f32(), v1[k].to_f32());
        kernel.adam.update(&mut p1[k], &mut m, &mut v, 0.0 + g0[k]);
        (m1[k], v1[k]) = (bf16::from_f32(m), bf16::from_f32(v));
    }
    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let hbits = |x: &[bf16]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for t in [None, Some(&touched)] {
        for per in [n, 13] {
            let (mut p, mut m, mut v, mut g) = (
                model.params.clone(),
                m0.clone(),
                v0.clone(),
                vec![g0.clone()],
            );
            let state = (&mut p[..], &mut m[..], &mut v[..]);
            assert!(pass_in_chunks(&kernel, &segs, t, per, state, &mut g, &[]));
            let what = format!("touched {}, chunks of {per}", t.is_some());
            assert_eq!(bits(&p1), bits(&p), "{what}: parameters");
            assert_eq!(hbits(&m1), hbits(&m), "{what}: m");
            assert_eq!(hbits(&v1), hbits(&v), "{what}: v");
        }
    }
    // A trainer: near FP32's after a few steps, not equal; resumed from its state, exact.
    let mc = ModelConfig {
        kind: ModelKind::Neumf,
        n_users: 9,
        n_items: 11,
        factors: 8,
        layers: vec![32, 16, 8],
        dropout: 0.5,
    };
    let (users, items) = toy_train(9, 11);
    let trainer = |moments| {
        let mut cfg = train_config(Optimizer::Adam);
        cfg.adam_moments = moments;
        let model = Model::init(mc.clone(), 2).unwrap();
        CpuTrainer::new(model, &cfg, users.clone(), items.clone(), None, 2)
            .unwrap()
            .with_tile(7)
    };
    let steps = |t: &mut CpuTrainer, from: u64, to: u64| {
        for s in from..to {
            t.step(0, s * 16..(s + 1) * 16).unwrap();
        }
    };
    let (mut full, mut f32s) = (trainer(Moments::Bf16), trainer(Moments::F32));
    steps(&mut full, 0, 6);
    steps(&mut f32s, 0, 6);
    assert_ne!(
        bits(full.params()),
        bits(f32s.params()),
        "bf16 moments changed nothing"
    );
    assert_close(
        "bf16 vs f32 moments",
        full.params(),
        f32s.params(),
        2e-2,
        1e-3,
    );
    let mut first = trainer(Moments::Bf16);
    steps(&mut first, 0, 3);
    let state = first.save_state().unwrap();
    let mut resumed = trainer(Moments::Bf16);
    resumed.load_state(&state).unwrap();
    steps(&mut resumed, 3, 6);
    assert_eq!(
        bits(resumed.params()),
        bits(full.params()),
        "resume changed the bits"
    );
}
