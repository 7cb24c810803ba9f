//! The paper's three models through the real `ncf-train` on ml-100k: GMF and MLP alone, and NeuMF
//! pre-trained from them (`--pretrain-gmf/--pretrain-mlp`, trade-off `--alpha`).

mod common;

use common::*;
use ncf_core::model::file as modelfile;
use ncf_core::model::ModelKind;
use std::path::Path;

const COMMON: &[&str] = &[
    "--epochs",
    "1",
    "--batch-size",
    "4096",
    "--threads",
    "2",
    "--quiet",
    "--no-checkpoint",
];

/// `ncf-train --model MODEL` with each case's extra flags fails, saying the case's text.
fn refuses(root: &Path, data: &Path, model: &str, cases: &[(&[&str], &str)]) {
    for (extra, why) in cases {
        let mut a = vec![s(data), "-o", "x.safetensors", "--model", model];
        a.extend_from_slice(extra);
        let e = fails(root, "ncf-train", &a);
        assert!(e.contains(why), "{extra:?}: {e}");
    }
}

fn scores(path: &Path, users: &[u32], items: &[u32]) -> Vec<f32> {
    let (model, _) = modelfile::load(path).unwrap();
    let mut out = vec![0f32; users.len()];
    ncf_core::neumf_cpu::score_with(&model, users, items, &mut out, 1);
    out
}

#[test]
fn gmf_mlp_and_pretrained_neumf() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = ml100k_dataset(root, 99);
    let train = |out: &Path, extra: &[&str]| -> serde_json::Value {
        let mut a = vec![s(&data), "-o", s(out)];
        a.extend_from_slice(COMMON);
        a.extend_from_slice(extra);
        let log = ok(root, "ncf-train", &a);
        serde_json::from_str(log.lines().last().unwrap()).unwrap()
    };
    let (gmf, mlp, neumf) = (
        root.join("gmf.safetensors"),
        root.join("mlp.safetensors"),
        root.join("neumf.safetensors"),
    );
    for (path, kind, extra) in [
        (
            &gmf,
            ModelKind::Gmf,
            &["--model", "gmf", "--factors", "8"][..],
        ),
        (
            &mlp,
            ModelKind::Mlp,
            &["--model", "mlp", "--layers", "16,8,4"][..],
        ),
    ] {
        let summary = train(path, extra);
        // Better than chance (10 of 100 candidates) after one epoch.
        assert!(summary["best_hr"].as_f64().unwrap() > 0.2, "{summary}");
        let (m, _) = modelfile::load(path).unwrap();
        assert_eq!(m.config.kind, kind);
    }
    // NeuMF from both, with a learning rate too small to move it: its scores are the predicted
    // α·GMF + (1−α)·MLP.
    let alpha = 0.3f32;
    let alpha_s = alpha.to_string();
    let pre = [
        "--pretrain-gmf",
        s(&gmf),
        "--pretrain-mlp",
        s(&mlp),
        "--alpha",
        &alpha_s,
        "--optimizer",
        "sgd",
        "--lr",
        "1e-30",
        "--dropout",
        "0",
    ];
    train(&neumf, &pre);
    let users: Vec<u32> = (0..900).map(|k| k % 943).collect();
    let items: Vec<u32> = (0..900).map(|k| (k * 7) % 1682).collect();
    let (g, m, n) = (
        scores(&gmf, &users, &items),
        scores(&mlp, &users, &items),
        scores(&neumf, &users, &items),
    );
    for k in 0..users.len() {
        let want = alpha * g[k] + (1.0 - alpha) * m[k];
        assert!(
            (n[k] - want).abs() <= 1e-4 * (1.0 + want.abs()),
            "pair {k}: {} vs {want}",
            n[k]
        );
    }
    // Wrong combinations are refused with a reason.
    let mut a = vec![s(&data), "-o", "x.safetensors", "--pretrain-gmf", s(&mlp)];
    a.extend_from_slice(&["--pretrain-mlp", s(&gmf)]);
    let e = fails(root, "ncf-train", &a);
    assert!(e.contains("needs a GMF and an MLP model"), "{e}");
    let mut a = vec![s(&data), "-o", "x.safetensors", "--pretrain-gmf", s(&gmf)];
    a.extend_from_slice(&["--pretrain-mlp", s(&mlp), "--factors", "16"]);
    let e = fails(root, "ncf-train", &a);
    assert!(e.contains("differ from the pre-trained"), "{e}");
}

/// `--model mf` (Rendle et al.'s MF by per-example SGD) through the real binaries: it learns,
/// its file is a GMF every tool scores (ncf-eval finds the HR ncf-train reported), the batch
/// size does not change what it learns, and what it cannot do is refused with a reason.
#[test]
fn mf_by_per_example_sgd() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = ml100k_dataset(root, 99);
    let train = |out: &Path, extra: &[&str]| -> serde_json::Value {
        let mut a = vec![s(&data), "-o", s(out), "--model", "mf", "--factors", "16"];
        a.extend_from_slice(&["--epochs", "2", "--quiet", "--no-checkpoint", "--seed", "4"]);
        a.extend_from_slice(extra);
        let log = ok(root, "ncf-train", &a);
        serde_json::from_str(log.lines().last().unwrap()).unwrap()
    };
    let (a, b) = (root.join("a.safetensors"), root.join("b.safetensors"));
    let sa = train(&a, &["--batch-size", "1000", "--lr", "0.01"]);
    let sb = train(&b, &["--batch-size", "77", "--lr", "0.01"]);
    assert!(sa["best_hr"].as_f64().unwrap() > 0.2, "{sa}");
    assert!(
        sa["backend"].as_str().unwrap().contains("per-example sgd"),
        "{sa}"
    );
    assert_eq!(sa["best_hr"], sb["best_hr"], "{sa} vs {sb}");
    let (m, _) = modelfile::load(&a).unwrap();
    let (mb, _) = modelfile::load(&b).unwrap();
    assert!(m.params == mb.params, "the batch size changed the model");
    assert_eq!(m.config.kind, ModelKind::Gmf);
    assert_eq!(m.config.factors, 18);
    assert_eq!(ncf_core::family::mf::dim_of(&m), Some(16));
    let eval: serde_json::Value =
        serde_json::from_str(ok(root, "ncf-eval", &[s(&data), s(&a)]).trim()).unwrap();
    let (hr, want) = (
        eval["hr"].as_f64().unwrap(),
        sa["best_hr"].as_f64().unwrap(),
    );
    assert!(
        (hr - want).abs() < 1e-9,
        "ncf-eval HR {hr}, ncf-train {want}"
    );
    // An ensemble of a model with itself scores as the model; --weights must match the models.
    let twice: serde_json::Value = serde_json::from_str(
        ok(
            root,
            "ncf-eval",
            &[s(&data), s(&a), s(&b), "--weights", "0.25,0.75"],
        )
        .trim(),
    )
    .unwrap();
    assert!(
        (twice["hr"].as_f64().unwrap() - want).abs() < 1e-9,
        "{twice}"
    );
    let e = fails(root, "ncf-eval", &[s(&data), s(&a), "--weights", "1,1"]);
    assert!(e.contains("2 weights for 1 models"), "{e}");
    // ncf-eval --validation ranks the split ncf-train --validation held out: same HR.
    let v = root.join("v.safetensors");
    let sv = train(&v, &["--validation", "--validation-seed", "3"]);
    let ev: serde_json::Value = serde_json::from_str(
        ok(
            root,
            "ncf-eval",
            &[s(&data), s(&v), "--validation", "--validation-seed", "3"],
        )
        .trim(),
    )
    .unwrap();
    assert_eq!(ev["hr"], sv["best_hr"], "{ev} vs {sv}");
    assert_eq!(ev["ndcg"], sv["best_ndcg"], "{ev} vs {sv}");
    assert_eq!(ev["protocol"], "sampled (validation)", "{ev}");
    let cases: &[(&[&str], &str)] = &[
        (&["--optimizer", "adam"], "--optimizer sgd"),
        (&["--device", "cuda"], "CPU only"),
        (&["--dropout", "0.5"], "no MLP"),
        (&["--init-std=-1"], "--init-std"),
    ];
    refuses(root, &data, "mf", cases);
    let e = fails(
        root,
        "ncf-train",
        &[s(&data), "-o", "x.safetensors", "--init-std", "0.1"],
    );
    assert!(e.contains("--model mf"), "{e}");
}

#[test]
fn ials_by_alternating_least_squares() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = ml100k_dataset(root, 99);
    let train = |out: &Path, extra: &[&str]| -> Vec<serde_json::Value> {
        let mut a = vec![s(&data), "-o", s(out), "--model", "ials", "--factors", "16"];
        a.extend_from_slice(&["--epochs", "3", "--quiet", "--no-checkpoint", "--seed", "4"]);
        a.extend_from_slice(extra);
        json_lines(&ok(root, "ncf-train", &a))
    };
    let (a, b) = (root.join("a.safetensors"), root.join("b.safetensors"));
    let la = train(&a, &["--threads", "1"]);
    let lb = train(&b, &["--threads", "2", "--save-last"]);
    let sa = la.last().unwrap();
    assert_eq!(lb.last().unwrap()["best_hr"], sa["best_hr"]);
    assert!(sa["best_hr"].as_f64().unwrap() > 0.4, "{sa}");
    assert!(sa["backend"].as_str().unwrap().contains("ials"), "{sa}");
    // One step per epoch, over the positives only; the objective falls.
    assert_eq!(la[0]["steps"], 1, "{}", la[0]);
    let loss: Vec<f64> = la[..3]
        .iter()
        .map(|l| l["loss"].as_f64().unwrap())
        .collect();
    assert!(loss[0] > loss[1] && loss[1] > loss[2], "{loss:?}");
    // Threads do not change the bits: the per-epoch lines agree.
    for (x, y) in la[..3].iter().zip(&lb[..3]) {
        assert_eq!(
            (&x["hr"], &x["ndcg"], &x["loss"]),
            (&y["hr"], &y["ndcg"], &y["loss"])
        );
    }
    let (m, ma) = modelfile::load(&a).unwrap();
    assert_eq!(m.config.kind, ModelKind::Gmf);
    assert_eq!(m.config.factors, 16);
    let eval = |p: &Path| -> serde_json::Value {
        serde_json::from_str(ok(root, "ncf-eval", &[s(&data), s(p)]).trim()).unwrap()
    };
    assert_eq!(eval(&a)["hr"], sa["best_hr"]);
    assert_eq!(ma.epoch.map(|e| e as u64), sa["best_epoch"].as_u64());
    // --save-last keeps the last epoch's model whichever epoch was best.
    let (_, mb) = modelfile::load(&b).unwrap();
    assert_eq!(mb.epoch, Some(2));
    assert_eq!(eval(&b)["hr"], lb[2]["hr"]);
    let cases: &[(&[&str], &str)] = &[
        (&["--batch-size", "100"], "--batch-size"),
        (&["--negatives", "4"], "--negatives"),
        (&["--lr", "0.1"], "--lr"),
        (&["--device", "cuda"], "CPU only"),
        (&["--unobserved-weight=-1"], "--unobserved-weight"),
    ];
    refuses(root, &data, "ials", cases);
    // Both solvers: cg is the default; exact is recorded by naming no solver (as every file
    // before the flag), cg by name. Stopped after 2 epochs on 1 thread and resumed to 3 on 2,
    // each gives the uninterrupted run's bytes; a resume with the other solver is refused.
    for solver in ["cg", "exact"] {
        let run = |out: &Path, extra: &[&str]| -> Vec<serde_json::Value> {
            let mut a = vec![s(&data), "-o", s(out), "--model", "ials", "--factors", "16"];
            a.extend_from_slice(&["--quiet", "--seed", "4", "--save-last", "--ials-solver"]);
            a.push(solver);
            a.extend_from_slice(extra);
            json_lines(&ok(root, "ncf-train", &a))
        };
        let straight = root.join(format!("{solver}.safetensors"));
        let ls = run(
            &straight,
            &["--epochs", "3", "--threads", "2", "--no-checkpoint"],
        );
        let backend = ls.last().unwrap()["backend"].as_str().unwrap().to_string();
        assert_eq!(backend.contains("cg solver"), solver == "cg", "{backend}");
        let (_, meta) = modelfile::load(&straight).unwrap();
        let recorded = serde_json::to_string(&meta).unwrap();
        assert_eq!(
            recorded.contains("\"ials_solver\":\"cg\""),
            solver == "cg",
            "{recorded}"
        );
        assert!(
            !recorded.contains("\"ials_solver\":\"exact\""),
            "{recorded}"
        );
        let (cut, ck) = (
            root.join(format!("{solver}-cut.st")),
            root.join(format!("{solver}-ck")),
        );
        run(
            &cut,
            &["--epochs", "2", "--threads", "1", "--checkpoint", s(&ck)],
        );
        let other = if solver == "cg" { "exact" } else { "cg" };
        let mut a = vec![
            s(&data),
            "-o",
            s(&cut),
            "--model",
            "ials",
            "--factors",
            "16",
        ];
        a.extend_from_slice(&[
            "--quiet",
            "--seed",
            "4",
            "--epochs",
            "3",
            "--resume",
            s(&ck),
        ]);
        a.extend_from_slice(&["--ials-solver", other]);
        let e = fails(root, "ncf-train", &a);
        assert!(e.contains("ials_solver"), "{e}");
        let lr = run(
            &cut,
            &["--epochs", "3", "--threads", "2", "--resume", s(&ck)],
        );
        assert_eq!(lr.last().unwrap()["best_hr"], ls.last().unwrap()["best_hr"]);
        assert!(
            std::fs::read(&cut).unwrap() == std::fs::read(&straight).unwrap(),
            "{solver}"
        );
    }
    let e = fails(
        root,
        "ncf-train",
        &[
            s(&data),
            "-o",
            "x.safetensors",
            "--unobserved-weight",
            "0.3",
        ],
    );
    assert!(e.contains("--model ials"), "{e}");
}

#[test]
fn ease_in_closed_form_item_and_user_side() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = ml100k_dataset(root, 99);
    let train = |model: &str, out: &Path, threads: &str| -> serde_json::Value {
        let a = [
            s(&data),
            "-o",
            s(out),
            "--model",
            model,
            "--l2",
            "100",
            "--force",
        ];
        let log = ok(
            root,
            "ncf-train",
            &[
                &a[..],
                &["--quiet", "--no-checkpoint", "--threads", threads],
            ]
            .concat(),
        );
        let lines = json_lines(&log);
        assert_eq!(lines.len(), 2, "one epoch and the summary: {log}");
        assert_eq!(lines[0]["steps"], 1, "{}", lines[0]);
        lines[1].clone()
    };
    let eval = |p: &Path| -> serde_json::Value {
        serde_json::from_str(ok(root, "ncf-eval", &[s(&data), s(p)]).trim()).unwrap()
    };
    for (model, side) in [("ease", "item-item"), ("ease-users", "user-user")] {
        let (a, b) = (root.join("a.safetensors"), root.join("b.safetensors"));
        let sa = train(model, &a, "1");
        let sb = train(model, &b, "2");
        assert!(sa["backend"].as_str().unwrap().contains(side), "{sa}");
        // A strong model on ml-100k's 1+99 protocol; threads change no bit.
        assert!(sa["best_hr"].as_f64().unwrap() > 0.6, "{model}: {sa}");
        assert_eq!(sa["best_hr"], sb["best_hr"]);
        assert_eq!(sa["best_ndcg"], sb["best_ndcg"]);
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let (m, _) = modelfile::load(&a).unwrap();
        assert_eq!(m.config.kind, ModelKind::Gmf);
        let width = if model == "ease" {
            m.config.n_items
        } else {
            m.config.n_users
        };
        assert_eq!(m.config.factors, width as usize);
        assert_eq!(eval(&a)["hr"], sa["best_hr"]);
        let cases: &[(&[&str], &str)] = &[
            (&["--factors", "8"], "--factors"),
            (&["--epochs", "2"], "--epochs"),
            (&["--negatives", "4"], "--negatives"),
            (&["--optimizer", "adam"], "--optimizer"),
            (&["--l2", "0"], "--l2"),
            (&["--device", "cuda"], "CPU only"),
            (&["--checkpoint", "ck"], "writes no checkpoint"),
            (&["--resume", "ck"], "writes no checkpoint"),
        ];
        refuses(root, &data, model, cases);
        // No checkpoint was left beside the model.
        assert!(!root.join("a.safetensors.ckpt").exists());
        // Too large for the memory given: refused before allocating, with the sizes.
        let out = std::process::Command::new(common::bin("ncf-train"))
            .args([s(&data), "-o", "big.safetensors", "--model", model])
            .current_dir(root)
            .env("NCF_MEMORY_LIMIT", "30M")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("needs about"), "{err}");
        assert!(err.contains("only 30.0 MiB is available"), "{err}");
        assert!(!root.join("big.safetensors").exists());
    }
}
