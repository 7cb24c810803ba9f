//! What ncf-train and ncf-negsample are asked, refused before any work through the real
//! binaries: impossible flags (threads, eps, negatives, precision, a repeated list, a negative
//! number), test negatives and models too large for memory, an invalid NCF_MEMORY_LIMIT (in every
//! tool), a rendezvous address that cannot be. Cases of issues 24 (`caseNN_`) and 30 (`dNN_`,
//! docs/RELIABILITY.md) among them.

mod common;

use common::TINY_EPOCH as TRAIN;
use common::{
    expect, failed, fails, json_lines, ok, ratings_csv, run, run_with, s, scratch as env, scratch,
    small, train, train_args, ONE_EPOCH, TINY_MODEL,
};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

fn ratings() -> String {
    ratings_csv()
}

/// The model config in a safetensors model file's metadata.
fn model_config(path: &Path) -> serde_json::Value {
    let b = fs::read(path).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let h: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    serde_json::from_str(h["__metadata__"]["ncf_model_config"].as_str().unwrap()).unwrap()
}

/// Case 4: `--threads 1000` on 2 cores was accepted and ran ~30× slower. Now more threads than
/// the cores this process may use is refused at start, naming the number of cores.
#[test]
fn case04_more_threads_than_cores_are_refused_at_start() {
    let e = env();
    let cores = std::thread::available_parallelism().unwrap().get();
    let mut a = vec![s(&e.ds), "-o", "m.st", "--no-checkpoint"];
    a.extend_from_slice(TRAIN);
    a.extend_from_slice(&["--threads", "1000"]);
    let t0 = Instant::now();
    let err = fails(&e.root, "ncf-train", &a);
    assert!(
        err.contains(&format!(
            "--threads 1000: this machine lets ncf run {cores} at once; give at most {cores}"
        )),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "it trained first");
    assert!(!e.root.join("m.st").exists());
    let a0: Vec<&str> = a
        .iter()
        .map(|x| if *x == "1000" { "0" } else { x })
        .collect();
    let err = fails(&e.root, "ncf-train", &a0);
    assert!(err.contains("--threads 0: give at least 1"), "{err}");
}

/// Case 7: `--eps 0` was accepted, then the divergence error told the user to lower --lr.
/// Now it is refused before training.
#[test]
fn case07_eps_must_be_positive() {
    let e = env();
    for eps in ["0", "-0.5"] {
        let flag = format!("--eps={eps}");
        let mut a = vec![s(&e.ds), "-o", "m.st", "--no-checkpoint", &flag];
        a.extend_from_slice(TRAIN);
        let out = run(&e.root, "ncf-train", &a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("--eps {eps}: must be a number > 0")),
            "{err}"
        );
        assert!(!err.contains("--lr"), "{err}");
        assert!(out.stdout.is_empty(), "it trained first");
    }
}

/// Case 11: ncf-topk trimmed user ids from stdin but not from its arguments; `--negatives 0`
/// trained on positives only without a word; precision errors printed `Fp16`.
#[test]
fn case11_trimmed_ids_refused_zero_negatives_and_typed_precision() {
    let e = env();
    let ds = s(&e.ds);
    train(&e, &e.root.join("m.st"), &[]);
    let a = ok(&e.root, "ncf-topk", &[ds, "m.st", " 1 ", "-k", "3"]);
    let b = ok(&e.root, "ncf-topk", &[ds, "m.st", "1", "-k", "3"]);
    assert_eq!(a, b);
    assert!(a.starts_with("1\t1\t"), "{a}");
    let mut t = vec![ds, "-o", "z.st", "--no-checkpoint", "--negatives", "0"];
    t.extend_from_slice(TRAIN);
    let err = fails(&e.root, "ncf-train", &t);
    assert!(
        err.contains("--negatives 0: the model would see positives only"),
        "{err}"
    );
    assert!(!e.root.join("z.st").exists());
    let mut t = vec![ds, "-o", "z.st", "--no-checkpoint", "--device", "cpu"];
    t.extend_from_slice(TRAIN);
    t.extend_from_slice(&["--precision", "fp16"]);
    let err = fails(&e.root, "ncf-train", &t);
    assert!(err.contains("--precision fp16"), "{err}");
    assert!(!err.contains("Fp16"), "{err}");
}

/// D5: a repeated `--layers` concatenated the lists (`16,8` then `32,16` trained [16,8,32,16]).
/// Now the last one given wins, as for every other flag, and is checked alone.
#[test]
fn d05_a_repeated_layers_flag_keeps_the_last() {
    let sc = scratch();
    let r = &sc.root;
    let mut a = train_args(&sc.ds, "e.st", "1", &["--no-checkpoint"]);
    a.extend(["--layers", "16,8", "--layers", "32,16"]);
    ok(r, "ncf-train", &a);
    assert_eq!(
        model_config(&r.join("e.st"))["layers"],
        serde_json::json!([32, 16])
    );
    let mut a = train_args(&sc.ds, "f.st", "1", &["--no-checkpoint"]);
    a.extend(["--layers", "16,8", "--layers", "15,8"]);
    let e = fails(r, "ncf-train", &a);
    assert!(e.contains("--layers"), "{e}");
    assert!(!r.join("f.st").exists());
    // No list flag is concatenated silently: ncf-eval's --weights given twice is refused.
    let args = ["ds", "e.st", "e.st", "--weights", "1,2", "--weights", "3,4"];
    let out = run(r, "ncf-eval", &args);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("'--weights <WEIGHTS>' cannot be used multiple times"),
        "{e}"
    );
}

/// D28 F_lrneg: `--lr -1` was a usage error whose tip (`use '-- -1'`) is wrong for an option.
/// Now the value reaches ncf-train's own check.
#[test]
fn d28_f_lrneg_a_negative_number_reaches_the_flag_check() {
    let sc = scratch();
    let a = train_args(&sc.ds, "x.st", "1", &["--lr", "-1"]);
    let e = fails(&sc.root, "ncf-train", &a);
    assert!(e.contains("--lr must be a positive number"), "{e}");
    assert!(!e.contains("tip:"), "{e}");
}

/// D11: --test-negatives 99999999999 aborted (a 244 TB allocation, exit 134) and left the lock
/// file behind. Now more than the items a user has left is refused before anything is
/// allocated, and the negatives are checked against the memory available.
#[test]
fn d11_impossible_test_negatives_are_refused_before_allocating() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    small(dir);
    for n in ["99999999999", "4294967296"] {
        let err = fails(
            dir,
            "ncf-negsample",
            &["ds", "--test-negatives", n, "--force", "-o", "big"],
        );
        assert!(
            err.contains(&format!(
                "--test-negatives {n}: the dataset has only 9724 items"
            )),
            "{err}"
        );
        assert!(err.contains("give --test-negatives 7026 or fewer"), "{err}");
        assert!(!dir.join("big").exists() && !dir.join(".big.lock").exists());
    }
    // More than user 414 (2698 items rated) has left, in place: the dataset is kept.
    let err = fails(
        dir,
        "ncf-negsample",
        &["ds", "--test-negatives", "7027", "--force"],
    );
    assert!(err.contains("user 414 has 2698 of the 9724 items"), "{err}");
    assert!(!dir.join(".ds.lock").exists());
    // Possible, but more than the memory allowed.
    let args = ["ds", "--test-negatives", "5000", "--force", "-o", "big"];
    let (_, err) = expect(
        1,
        dir,
        "ncf-negsample",
        &args,
        &[("NCF_MEMORY_LIMIT", "25M")],
        b"",
    );
    assert!(
        err.contains("5000 test negatives for each of the 610 test users needs about"),
        "{err}"
    );
    assert!(err.contains("(NCF_MEMORY_LIMIT=25M)"), "{err}");
}

/// D12: --factors 4000000000, --layers 16,4000000000 and --layers 2000000,8 aborted in the
/// allocator (exit 134). Now every family's model is sized with overflow checks and checked
/// against the memory available before it is allocated.
#[test]
fn d12_models_too_large_for_memory_are_refused_with_their_size() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    small(dir);
    let limit = [("NCF_MEMORY_LIMIT", "4G")];
    let cases: [(&[&str], &str); 6] = [
        (
            &["--factors", "4000000000", "--layers", "16,8"],
            "41340000082848 parameters",
        ),
        (
            &["--factors", "8", "--layers", "16,4000000000"],
            "72000165376 parameters",
        ),
        (
            &["--factors", "8", "--layers", "2000000,8"],
            "10350082720 parameters",
        ),
        (
            &["--model", "mf", "--factors", "1000000000"],
            "--model mf --factors 1000000000",
        ),
        (
            &["--model", "ials", "--factors", "1000000000"],
            "--model ials --factors 1000000000",
        ),
        (
            &["--factors", "18446744073709551615"],
            "the model's size overflows",
        ),
    ];
    for (shape, what) in cases {
        let args = [
            &["ds", "-o", "f.st", "--epochs", "1", "-q", "--no-checkpoint"],
            shape,
        ]
        .concat();
        let (_, err) = expect(1, dir, "ncf-train", &args, &limit, b"");
        assert!(err.contains(what), "{shape:?}: {err}");
        if !what.contains("overflows") {
            assert!(
                err.contains("needs about") && err.contains("NCF_MEMORY_LIMIT=4G"),
                "{err}"
            );
        }
        assert!(!dir.join("f.st").exists() && !dir.join(".f.st.lock").exists());
    }
    // A sensible model, over a small limit: refused with its size before training.
    let args = [
        "ds",
        "-o",
        "f.st",
        "--epochs",
        "1",
        "-q",
        "--no-checkpoint",
        "--factors",
        "1000",
    ];
    let (_, err) = expect(
        1,
        dir,
        "ncf-train",
        &args,
        &[("NCF_MEMORY_LIMIT", "60M")],
        b"",
    );
    assert!(
        err.contains("this model (--model neumf --factors 1000 --layers 256,256,128,64 for 610 users × 9724 items: 11764784 parameters"),
        "{err}"
    );
}

/// D28 S20: `ncf-train --negatives 4294967295` said "(100226 positives × 0)" (1 + negatives
/// overflowed a u32; a debug build panicked). Now it is refused before the data is read.
#[test]
fn d28_s20_negatives_that_no_epoch_can_hold_are_refused_up_front() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    small(dir);
    let err = fails(
        dir,
        "ncf-train",
        &[
            &["ds", "-o", "x.st", "--negatives", "4294967295"],
            ONE_EPOCH,
            TINY_MODEL,
        ]
        .concat(),
    );
    assert!(
        err.contains("--negatives 4294967295: an epoch has positives × (1 + negatives) samples and 1 + negatives must fit in 32 bits"),
        "{err}"
    );
    // the dataset's own limit names the real product
    let err = fails(
        dir,
        "ncf-train",
        &[
            &["ds", "-o", "x.st", "--negatives", "4294967294"],
            ONE_EPOCH,
            TINY_MODEL,
        ]
        .concat(),
    );
    assert!(err.contains("(100226 positives × 4294967295)"), "{err}");
    let err = fails(
        dir,
        "ncf-negsample",
        &[
            "ds",
            "--epoch",
            "0",
            "--negatives",
            "4294967295",
            "-o",
            "e.tsv",
        ],
    );
    assert!(err.contains("(100226 positives × 4294967296)"), "{err}");
}

/// D28 W07: a bad `--rendezvous` was reported as `(MASTER_ADDR:MASTER_PORT)`. Now the message
/// says where the address came from.
#[test]
fn d28_w07_the_rendezvous_error_names_where_the_address_came_from() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    small(dir);
    let ranks = [
        "--rank",
        "0",
        "--world-size",
        "2",
        "--rendezvous-timeout",
        "5",
    ];
    // CUDA ranks (the host device): only they use the TCP rendezvous; CPU ranks need mpirun.
    let cuda = ["--device", "cuda-host"];
    let base = [&["ds", "-o", "w.st"], ONE_EPOCH, TINY_MODEL, &ranks, &cuda].concat();
    let args = [&base[..], &["--rendezvous", "notahost:99999"]].concat();
    let (_, err) = expect(1, dir, "ncf-train", &args, &[], b"");
    assert!(
        err.contains("cannot listen at notahost:99999 (from --rendezvous): invalid port value"),
        "{err}"
    );
    let env = [("MASTER_ADDR", "notahost"), ("MASTER_PORT", "99999")];
    let (_, err) = expect(1, dir, "ncf-train", &base, &env, b"");
    assert!(
        err.contains("cannot listen at notahost:99999 (from MASTER_ADDR and MASTER_PORT)"),
        "{err}"
    );
}

/// D18: an invalid NCF_MEMORY_LIMIT was ignored: a limit the user believed in force was not.
/// Every tool refuses it before any work; `1K` and `1k` are limits.
#[test]
fn d18_invalid_memory_limit_is_refused_by_every_tool() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let r = ratings();
    let tools: [(&str, Vec<&str>); 5] = [
        ("ncf-prep", vec![&r, "-o", "out"]),
        ("ncf-negsample", vec!["ds", "--test-negatives", "5"]),
        ("ncf-train", vec!["ds", "-o", "m.st"]),
        ("ncf-eval", vec!["ds", "m.st"]),
        ("ncf-topk", vec!["ds", "m.st", "1"]),
    ];
    for bad in ["1KB", "1KiB", "abc", "-5", "10E", "99999999999999999999999"] {
        for (tool, args) in &tools {
            let out = run_with(root, tool, args, &[("NCF_MEMORY_LIMIT", bad)], b"");
            let err = failed(tool, args, &out);
            assert!(
                err.contains(&format!("NCF_MEMORY_LIMIT={bad}: not a size")),
                "{tool}: {err}"
            );
        }
    }
    for good in ["1K", "1k"] {
        for (tool, args) in &tools {
            let out = run_with(root, tool, args, &[("NCF_MEMORY_LIMIT", good)], b"");
            let err = failed(tool, args, &out);
            assert!(!err.contains("not a size"), "{tool}: {err}");
        }
        let out = run_with(
            root,
            "ncf-prep",
            &tools[0].1,
            &[("NCF_MEMORY_LIMIT", good)],
            b"",
        );
        let err = failed("ncf-prep", &tools[0].1, &out);
        assert!(
            err.contains(&format!(
                "only 1.0 KiB is available (NCF_MEMORY_LIMIT={good})"
            )),
            "{err}"
        );
    }
}

#[test]
fn max_steps_bounds_a_run_and_writes_a_model_ncf_eval_reads() {
    let e = scratch();
    let m = e.root.join("m.safetensors");
    // 3 steps of 8,192 samples cut the first epoch short: no epoch line, only the summary.
    let lines = json_lines(&train(&e, &m, &["--max-steps", "3"]));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["epochs_run"], 0, "{}", lines[0]);
    assert!(lines[0]["avg_samples_per_s"].as_f64().unwrap() > 0.0);
    let ev: serde_json::Value =
        serde_json::from_str(ok(&e.root, "ncf-eval", &[s(&e.ds), s(&m)]).trim()).unwrap();
    assert!(ev["hr"].as_f64().unwrap() >= 0.0, "{ev}");
    let args = [s(&e.ds), "-o", "x", "--max-steps", "0"];
    let (_, err) = expect(2, &e.root, "ncf-train", &args, &[], b"");
    assert!(err.contains("--max-steps"), "{err}");
}

/// `--adam-moments bf16` (issue 33: half the optimiser's memory at scale): the CPU NeuMF
/// trainer takes it and says so in the model file's training config (an FP32 run's config
/// does not name it, so its files keep their bytes); MF refuses it, SGD keeps no moments, and
/// the CUDA trainer (here on the host device) keeps its moments in f32.
#[test]
fn adam_moments_bf16_trains_on_the_cpu_and_is_refused_elsewhere() {
    let e = scratch();
    let meta = |m: &Path| -> serde_json::Value {
        let b = fs::read(m).unwrap();
        let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        let h: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
        serde_json::from_str(h["__metadata__"]["ncf_train_config"].as_str().unwrap()).unwrap()
    };
    let (m16, m32) = (e.root.join("m16.st"), e.root.join("m32.st"));
    let lines = json_lines(&train(&e, &m16, &["--adam-moments", "bf16"]));
    assert!(lines.last().unwrap()["epochs_run"] == 1, "{lines:?}");
    assert_eq!(meta(&m16)["adam_moments"], "bf16");
    train(&e, &m32, &[]);
    assert!(meta(&m32).get("adam_moments").is_none(), "{}", meta(&m32));
    assert_ne!(fs::read(&m16).unwrap(), fs::read(&m32).unwrap());
    let refused: [(&[&str], &str); 3] = [
        (&["--model", "mf"], "--adam-moments"),
        (
            &["--optimizer", "sgd"],
            "--adam-moments bf16 is how Adam keeps its moments: --optimizer sgd keeps none",
        ),
        (
            &["--device", "cuda-host"],
            "the CUDA trainer keeps Adam's moments in f32",
        ),
    ];
    for (extra, want) in refused {
        let mut a = vec![
            s(&e.ds),
            "-o",
            "x.st",
            "--no-checkpoint",
            "--adam-moments",
            "bf16",
        ];
        a.extend_from_slice(TRAIN);
        a.extend_from_slice(extra);
        let err = fails(&e.root, "ncf-train", &a);
        assert!(err.contains(want), "{extra:?}: {err}");
        assert!(!e.root.join("x.st").exists());
    }
}
