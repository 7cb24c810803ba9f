//! The tools end to end on real data (ml-100k from ../shared/datasets): prep → negsample → train
//! → eval → topk, the sampler seen from outside, and every kind of bad input (exit 1, no panic,
//! nothing half-written). One small model is trained once and shared by the tests.

mod common;

use common::{bin, copy_dir, describe, fails, ok, run, s, shared_datasets, small_model};
use ncf_core::data::dataset::Dataset;
use ncf_core::sampling::rng::Rng;
use ncf_core::sampling::sampler::{EpochSamples, NegativeMode, UserItems};
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Small settings: a model of a few thousand parameters, two epochs, two threads.
const TRAIN_FLAGS: &[&str] = small_model![
    "--preset",
    "ml1m",
    "--epochs",
    "2",
    "--batch-size",
    "8192",
    "--threads",
    "2",
    "--quiet",
];

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// ncf-prep output without test negatives.
    bare: PathBuf,
    /// With 100 test negatives (seed 1).
    data: PathBuf,
    model: PathBuf,
    /// stdout of ncf-train.
    train_log: String,
}

fn u_data() -> PathBuf {
    shared_datasets().join("ml-100k/u.data")
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let bare = root.join("bare");
        ok(&root, "ncf-prep", &[s(&u_data()), "-o", s(&bare)]);
        let data = root.join("ml100k");
        copy_dir(&bare, &data);
        ok(
            &root,
            "ncf-negsample",
            &[s(&data), "--test-negatives", "100", "--seed", "1"],
        );
        let model = root.join("model.safetensors");
        let mut args = vec![s(&data), "-o", s(&model)];
        args.extend_from_slice(TRAIN_FLAGS);
        let train_log = ok(&root, "ncf-train", &args);
        Fixture {
            _dir: dir,
            root,
            bare,
            data,
            model,
            train_log,
        }
    })
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

fn no_temp_files(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        left.is_empty(),
        "temp files left in {}: {left:?}",
        dir.display()
    );
}

#[test]
fn train_reports_every_epoch_and_eval_agrees() {
    let f = fixture();
    let lines: Vec<_> = f.train_log.lines().map(json).collect();
    assert_eq!(lines.len(), 3, "{}", f.train_log);
    for (e, l) in lines[..2].iter().enumerate() {
        assert_eq!(l["epoch"], e as u64);
        let hr = l["hr"].as_f64().unwrap();
        assert!(
            (0.0..=1.0).contains(&hr) && l["loss"].as_f64().unwrap().is_finite(),
            "{l}"
        );
        assert!(l["samples"].as_u64().unwrap() > 400_000, "{l}");
    }
    let summary = &lines[2];
    let best = summary["best_hr"].as_f64().unwrap();
    // a trained model beats chance (10 of 101 candidates) clearly
    assert!(best > 0.2, "{summary}");
    let epoch = summary["best_epoch"].as_u64().unwrap() as usize;
    assert_eq!(lines[epoch]["hr"].as_f64().unwrap(), best);

    let out = ok(&f.root, "ncf-eval", &[s(&f.data), s(&f.model), "--k", "10"]);
    let m = json(out.trim());
    assert_eq!(m["k"], 10);
    assert_eq!(m["candidates"], 101);
    assert_eq!(m["protocol"], "sampled");
    assert_eq!(m["users"], 943);
    // same metric code, scores from another code path: equal up to float ties
    let hr = m["hr"].as_f64().unwrap();
    assert!(
        (hr - best).abs() < 0.005,
        "ncf-eval HR {hr}, ncf-train best HR {best}"
    );
    // --users N: N users spread over the test set, the same every run; N ≥ the test users is
    // the whole set.
    let eval = |extra: &[&str]| {
        let mut args = vec![s(&f.data), s(&f.model), "--k", "10"];
        args.extend_from_slice(extra);
        ok(&f.root, "ncf-eval", &args)
    };
    assert_eq!(eval(&["--users", "943"]), out);
    let some = eval(&["--users", "100"]);
    assert_eq!(json(some.trim())["users"], 100);
    assert_eq!(eval(&["--users", "100"]), some);
    let e = fails(
        &f.root,
        "ncf-eval",
        &[s(&f.data), s(&f.model), "--users", "0"],
    );
    assert!(e.contains("--users must be at least 1"), "{e}");
    no_temp_files(&f.root);
}

#[test]
fn topk_lists_unseen_items_and_ranks_agree_with_full_eval() {
    let f = fixture();
    let data = Dataset::load(&f.data).unwrap();
    let seen = UserItems::new(data.n_users, &data.train_users.rows(), &data.train_items);
    let out = ok(
        &f.root,
        "ncf-topk",
        &[s(&f.data), s(&f.model), "-k", "5", "1", "42"],
    );
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 10, "{out}");
    for (n, r) in rows.iter().enumerate() {
        assert!(r.len() >= 4, "{r:?}");
        assert_eq!(r[0], if n < 5 { "1" } else { "42" });
        assert_eq!(r[1], ((n % 5) + 1).to_string());
        let u = data.user_raw.iter().position(|x| x == r[0]).unwrap() as u32;
        let i = data.item_raw.iter().position(|x| x == r[2]).unwrap() as u32;
        assert!(
            !seen.contains(u, i),
            "item {} is in user {}'s training data",
            r[2],
            r[0]
        );
        if n % 5 > 0 {
            let prev: f32 = rows[n - 1][3].parse().unwrap();
            assert!(prev >= r[3].parse::<f32>().unwrap(), "not sorted: {out}");
        }
    }
    // users on stdin give the same lines
    let mut child = Command::new(bin("ncf-topk"))
        .args([s(&f.data), s(&f.model), "-k", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"1\n42\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    assert_eq!(String::from_utf8(o.stdout).unwrap(), out);

    // every user's top 10, evaluated as a ranked list, is full-ranking HR@10 (up to ties)
    let all = ok(
        &f.root,
        "ncf-topk",
        &[s(&f.data), s(&f.model), "--all", "-k", "10"],
    );
    let ranked = f.root.join("ranked.tsv");
    std::fs::write(&ranked, &all).unwrap();
    let r = json(ok(&f.root, "ncf-eval", &[s(&f.data), "--ranked", s(&ranked)]).trim());
    let full = json(ok(&f.root, "ncf-eval", &[s(&f.data), s(&f.model), "--full"]).trim());
    assert_eq!(full["protocol"], "full");
    assert_eq!(r["protocol"], "ranked");
    let (a, b) = (r["hr"].as_f64().unwrap(), full["hr"].as_f64().unwrap());
    assert!((a - b).abs() < 0.005, "ranked {a} vs full {b}");
    assert!(r["users"] == 943 && full["users"] == 943);
}

#[test]
fn negsample_epoch_is_what_the_trainer_draws() {
    let f = fixture();
    let data = Dataset::load(&f.data).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for mode in ["approximate", "exact"] {
        let tsv = dir.path().join(format!("{mode}.tsv"));
        ok(
            dir.path(),
            "ncf-negsample",
            &[
                s(&f.data),
                "--epoch",
                "3",
                "--seed",
                "5",
                "--mode",
                mode,
                "-o",
                s(&tsv),
            ],
        );
        let nm = if mode == "exact" {
            NegativeMode::Exact
        } else {
            NegativeMode::Approximate
        };
        let users = data.train_users.rows();
        let pos = UserItems::new(data.n_users, &users, &data.train_items);
        let lib = EpochSamples::new(
            Rng::new(5),
            3,
            4,
            data.n_items,
            nm,
            &users,
            &data.train_items,
            Some(&pos),
        );
        let text = std::fs::read_to_string(&tsv).unwrap();
        assert_eq!(text.lines().count() as u64, lib.len());
        let mut positives_drawn = 0;
        for (p, line) in text.lines().enumerate() {
            let (u, i, l) = lib.at(p as u64).unwrap();
            assert_eq!(line, format!("{u}\t{i}\t{l}"), "position {p}");
            if l == 0.0 && pos.contains(u, i) {
                positives_drawn += 1;
            }
        }
        if mode == "exact" {
            assert_eq!(positives_drawn, 0, "exact mode drew a positive");
        } else {
            assert!(
                positives_drawn > 0,
                "approximate mode should draw some positives"
            );
        }
    }
    // the IPC stream on stdout holds the same samples
    let out = Command::new(bin("ncf-negsample"))
        .args([s(&f.data), "--epoch", "3", "--seed", "5", "-o", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        describe("ncf-negsample", &[], &out)
    );
    let got =
        ncf_core::sampling::negatives::read_epoch_samples_ipc(&out.stdout[..], "stdout").unwrap();
    let text = std::fs::read_to_string(dir.path().join("approximate.tsv")).unwrap();
    let want: Vec<String> = text.lines().map(str::to_string).collect();
    assert_eq!(got.len(), want.len());
    assert!(got
        .iter()
        .zip(&want)
        .all(|((u, i, l), w)| &format!("{u}\t{i}\t{l}") == w));
    // Parquet by extension
    let pq = dir.path().join("e.parquet");
    ok(
        dir.path(),
        "ncf-negsample",
        &[s(&f.data), "--epoch", "0", "-o", s(&pq)],
    );
    let mut head = [0u8; 4];
    std::fs::File::open(&pq)
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    assert_eq!(&head, b"PAR1");
    // an existing output is refused
    let e = fails(
        dir.path(),
        "ncf-negsample",
        &[s(&f.data), "--epoch", "0", "-o", s(&pq)],
    );
    assert!(e.contains("already exists"), "{e}");
}

#[test]
fn test_negatives_are_distinct_exact_and_protected() {
    let f = fixture();
    let data = Dataset::load(&f.data).unwrap();
    assert_eq!(data.test_negatives_per_user, 100);
    let seen = UserItems::new(data.n_users, &data.train_users.rows(), &data.train_items);
    for (r, row) in data.test_negatives.chunks(100).enumerate() {
        let u = data.test_users[r];
        let mut sorted = row.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 100, "user {u}: negatives not distinct");
        assert!(
            row.iter()
                .all(|&i| i != data.test_items[r] && !seen.contains(u, i)),
            "user {u}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("d");
    copy_dir(&f.data, &copy);
    let e = fails(
        dir.path(),
        "ncf-negsample",
        &[s(&copy), "--test-negatives", "99"],
    );
    assert!(e.contains("--force"), "{e}");
    assert_eq!(
        Dataset::load(&copy).unwrap().test_negatives,
        data.test_negatives
    );
    ok(
        dir.path(),
        "ncf-negsample",
        &[s(&copy), "--test-negatives", "99", "--force"],
    );
    let again = Dataset::load(&copy).unwrap();
    assert_eq!(again.test_negatives_per_user, 99);
    no_temp_files(dir.path());
    // more negatives than items a user has not seen
    let e = fails(
        dir.path(),
        "ncf-negsample",
        &[s(&copy), "--test-negatives", "5000", "--force"],
    );
    assert!(e.contains("only"), "{e}");
    assert_eq!(Dataset::load(&copy).unwrap().test_negatives_per_user, 99);
    // a pipe: the dataset as a stream on stdin, written with negatives to -o DIR
    let stream = Command::new(bin("ncf-prep"))
        .args([s(&u_data()), "-o", "-"])
        .output()
        .unwrap();
    assert!(
        stream.status.success(),
        "{}",
        describe("ncf-prep", &[], &stream)
    );
    let piped = dir.path().join("piped");
    let mut child = Command::new(bin("ncf-negsample"))
        .args([
            "-",
            "--test-negatives",
            "100",
            "--seed",
            "1",
            "-o",
            s(&piped),
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&stream.stdout)
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        Dataset::load(&piped).unwrap().test_negatives,
        data.test_negatives
    );
}

#[test]
fn train_refuses_a_dataset_without_test_negatives() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.safetensors");
    let mut args = vec![s(&f.bare), "-o", s(&m)];
    args.extend_from_slice(TRAIN_FLAGS);
    let e = fails(dir.path(), "ncf-train", &args);
    assert!(e.contains("ncf-negsample"), "{e}");
    assert!(!m.exists());
    no_temp_files(dir.path());
    // an existing model is not overwritten without --force
    std::fs::write(&m, b"keep").unwrap();
    let mut args = vec![s(&f.data), "-o", s(&m)];
    args.extend_from_slice(TRAIN_FLAGS);
    let e = fails(dir.path(), "ncf-train", &args);
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(std::fs::read(&m).unwrap(), b"keep");
}

#[test]
fn validation_mode_trains_without_the_test_set() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.safetensors");
    // the bare dataset has no test negatives: validation mode does not need them
    let log = dir.path().join("log.jsonl");
    let mut args = vec![s(&f.bare), "-o", s(&m), "--validation", "--log", s(&log)];
    args.extend_from_slice(TRAIN_FLAGS);
    args.extend_from_slice(&["--epochs", "1"]);
    let out = ok(dir.path(), "ncf-train", &args);
    let first = json(out.lines().next().unwrap());
    assert_eq!(first["eval"], "validation");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        out,
        "--log differs from stdout"
    );
    let (_, meta) = ncf_core::model::file::load(&m).unwrap();
    assert_eq!(meta.metrics.unwrap().protocol, "sampled (validation)");
    assert_eq!(meta.train_config.unwrap()["beta1"], 0.9);
    assert!(m.exists());
}

#[test]
fn bad_model_files_are_refused() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(&f.model).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 2].to_vec()),
        ("tiny", good[..3].to_vec()),
        ("corrupt", {
            let mut b = good.clone();
            let n = b.len();
            b[n - 10] ^= 0xff;
            b
        }),
        ("not-a-model", b"user,item\n1,2\n".to_vec()),
    ];
    for (name, bytes) in cases {
        let p = dir.path().join(format!("{name}.safetensors"));
        std::fs::write(&p, bytes).unwrap();
        let e = fails(dir.path(), "ncf-eval", &[s(&f.data), s(&p)]);
        assert!(e.starts_with("ncf-eval: "), "{name}: {e}");
        assert!(
            e.contains(&format!("{name}.safetensors")),
            "{name}: error does not name the file: {e}"
        );
        fails(dir.path(), "ncf-topk", &[s(&f.data), s(&p), "1"]);
    }
    let e = fails(
        dir.path(),
        "ncf-eval",
        &[s(&f.data), s(&dir.path().join("missing"))],
    );
    assert!(e.contains("missing"), "{e}");
}

#[test]
fn a_model_fits_other_test_negatives_of_its_split_but_not_another_split() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The same split with other test negatives (the paper's 1 + 99 instead of 1 + 100): another
    // fingerprint, the same split fingerprint, so the model is evaluated without retraining.
    let other = d.join("other");
    copy_dir(&f.bare, &other);
    ok(
        d,
        "ncf-negsample",
        &[s(&other), "--test-negatives", "99", "--seed", "2"],
    );
    let m = json(ok(d, "ncf-eval", &[s(&other), s(&f.model)]).trim());
    assert_eq!(m["candidates"], 100, "{m}");
    assert_eq!(m["users"], 943, "{m}");
    ok(d, "ncf-topk", &[s(&other), s(&f.model), "1"]);
    // Another split of the same users and items (timestamps dropped: random leave-one-out):
    // refused, saying so.
    let text = std::fs::read_to_string(u_data()).unwrap();
    let no_time: String = text
        .lines()
        .map(|l| l.split('\t').take(3).collect::<Vec<_>>().join("\t") + "\n")
        .collect();
    let tsv = d.join("no-time.tsv");
    std::fs::write(&tsv, no_time).unwrap();
    let split = d.join("split");
    ok(
        d,
        "ncf-prep",
        &[
            s(&tsv),
            "-o",
            s(&split),
            "--format",
            "tsv",
            "--no-header",
            "--user-col",
            "1",
            "--item-col",
            "2",
            "--rating-col",
            "3",
        ],
    );
    ok(
        d,
        "ncf-negsample",
        &[s(&split), "--test-negatives", "100", "--seed", "1"],
    );
    let e = fails(d, "ncf-eval", &[s(&split), s(&f.model)]);
    assert!(
        e.contains("another dataset") && e.contains("split differs"),
        "{e}"
    );
    let e = fails(d, "ncf-topk", &[s(&split), s(&f.model), "1"]);
    assert!(e.contains("another dataset"), "{e}");
}

#[test]
fn topk_refuses_unknown_users_and_impossible_k() {
    let f = fixture();
    let e = fails(
        &f.root,
        "ncf-topk",
        &[s(&f.data), s(&f.model), "1", "nobody", "99999"],
    );
    assert!(e.contains("nobody") && e.contains("99999"), "{e}");
    let out = run(
        &f.root,
        "ncf-topk",
        &[
            s(&f.data),
            s(&f.model),
            "-k",
            "3",
            "1",
            "nobody",
            "--skip-unknown",
        ],
    );
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody"));
    let e = fails(
        &f.root,
        "ncf-topk",
        &[s(&f.data), s(&f.model), "-k", "2000", "1"],
    );
    assert!(e.contains("candidate"), "{e}");
    ok(
        &f.root,
        "ncf-topk",
        &[s(&f.data), s(&f.model), "-k", "1682", "1", "--include-seen"],
    );
    let e = fails(
        &f.root,
        "ncf-eval",
        &[s(&f.data), s(&f.model), "--k", "102"],
    );
    assert!(e.contains("101 candidates"), "{e}");
    ok(
        &f.root,
        "ncf-eval",
        &[s(&f.data), s(&f.model), "--k", "101"],
    );
}

#[test]
fn topk_into_a_closed_pipe_exits_0() {
    let f = fixture();
    let mut child = Command::new(bin("ncf-topk"))
        .args([s(&f.data), s(&f.model), "--all", "-k", "50"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("1\t1\t"), "{line}");
    // the reader is gone (like `| head -1`)
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "status {:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn usage_errors_exit_2_and_help_documents() {
    let f = fixture();
    for tool in ["ncf-negsample", "ncf-train", "ncf-eval", "ncf-topk"] {
        let help = ok(&f.root, tool, &["--help"]);
        assert!(help.contains("Example"), "{tool} --help has no example");
        let out = run(&f.root, tool, &["--no-such-flag"]);
        assert_eq!(out.status.code(), Some(2), "{tool}");
    }
    // neither --test-negatives nor --epoch
    assert_eq!(
        run(&f.root, "ncf-negsample", &[s(&f.data)]).status.code(),
        Some(2)
    );
}

/// The model file read without our code: Python parses the safetensors header by hand, builds
/// numpy arrays with PyTorch's names and shapes, and runs torch_neumf.py's eval-mode forward
/// (the peer's NeuMF.forward); its scores must equal ncf-topk's.
#[test]
fn python_reads_the_model_and_scores_identically() {
    let Some(py) = std::env::var_os("NCF_PYTHON").filter(|p| Path::new(p).exists()) else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("NCF_PYTHON is not set (or missing) but CI=true: run `make venv` and set it");
        }
        eprintln!("SKIPPED python_reads_the_model_and_scores_identically: NCF_PYTHON not set");
        return;
    };
    let f = fixture();
    let data = Dataset::load(&f.data).unwrap();
    let top = ok(
        &f.root,
        "ncf-topk",
        &[s(&f.data), s(&f.model), "-k", "20", "1", "7", "500"],
    );
    let mut pairs = String::new();
    for line in top.lines() {
        let c: Vec<&str> = line.split('\t').collect();
        let u = data.user_raw.iter().position(|x| x == c[0]).unwrap();
        let i = data.item_raw.iter().position(|x| x == c[2]).unwrap();
        pairs.push_str(&format!("{u} {i} {}\n", c[3]));
    }
    let script = r#"
import json, struct, sys
import numpy as np
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
meta = header.pop("__metadata__")
cfg = json.loads(meta["ncf_model_config"])
data = raw[8 + n:]
t = {}
for name, e in header.items():
    assert e["dtype"] == "F32", e
    a, b = e["data_offsets"]
    t[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(e["shape"]).astype(np.float64)
layers = cfg["layers"]
assert t["mf_user_embed.weight"].shape == (cfg["n_users"], cfg["factors"])
assert t["mlp_item_embed.weight"].shape == (cfg["n_items"], layers[0] // 2)
worst = 0.0
for line in sys.stdin:
    u, i, want = line.split()
    u, i, want = int(u), int(i), float(want)
    gmf = t["mf_user_embed.weight"][u] * t["mf_item_embed.weight"][i]
    x = np.concatenate([t["mlp_user_embed.weight"][u], t["mlp_item_embed.weight"][i]])
    for k in range(len(layers) - 1):
        x = np.maximum(t[f"mlp.{k}.weight"] @ x + t[f"mlp.{k}.bias"], 0.0)
    got = (t["final.weight"] @ np.concatenate([gmf, x]) + t["final.bias"])[0]
    worst = max(worst, abs(got - want) / (1e-3 + abs(want)))
print(worst)
assert worst < 1e-4, worst
"#;
    let mut child = Command::new(py)
        .args(["-c", script, s(&f.model)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pairs.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "python check failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_diverging_run_stops_with_an_error_and_writes_nothing() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.safetensors");
    let mut args = vec![s(&f.data), "-o", s(&m)];
    args.extend_from_slice(TRAIN_FLAGS);
    args.extend_from_slice(&["--lr", "1e30"]);
    let e = fails(dir.path(), "ncf-train", &args);
    assert!(e.contains("diverged") && e.contains("epoch 0"), "{e}");
    assert!(!m.exists());
    no_temp_files(dir.path());
}
