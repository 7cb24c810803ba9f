//! Checkpoints and exact resume of `ncf-train` (CPU, fixed thread count), with the real binary on
//! ml-100k: a run killed with SIGKILL at several points and resumed each time ends with a model
//! file byte-identical to an uninterrupted run; SIGINT stops with a checkpoint and a message
//! saying how to resume; checkpoints from another config or dataset are refused.

mod common;

use common::*;
use ncf_core::train::checkpoint;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Small and quick, with many steps per epoch so that kills land mid-epoch.
const FLAGS: &[&str] = small_model![
    "--epochs",
    "3",
    "--batch-size",
    "2048",
    "--lr",
    "0.002",
    "--beta1",
    "0.9",
    "--beta2",
    "0.999",
    "--threads",
    "2",
    "--quiet",
];

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    /// The uninterrupted run's model and stdout.
    model: Vec<u8>,
    log: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let (dir, root, data) = ml100k_tempdir(50);
        let out = root.join("straight.safetensors");
        let mut args = vec![s(&data), "-o", s(&out)];
        args.extend_from_slice(FLAGS);
        let log = ok(&root, "ncf-train", &args);
        assert!(
            !root.join("straight.safetensors.ckpt").exists(),
            "the default checkpoint directory outlived a completed run"
        );
        Fixture {
            model: std::fs::read(&out).unwrap(),
            log,
            _dir: dir,
            root,
            data,
        }
    })
}

fn spawn(f: &Fixture, model: &Path, extra: &[&str]) -> Child {
    Command::new(bin("ncf-train"))
        .arg(&f.data)
        .arg("-o")
        .arg(model)
        .args(FLAGS)
        .args(extra)
        .current_dir(&f.root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ncf-train")
}

/// (epoch, step) of the checkpoint in `dir`, if there is one.
fn position(dir: &Path) -> Option<(u32, u64)> {
    if !checkpoint::file_in(dir).exists() {
        return None;
    }
    let (meta, _) = checkpoint::load(dir).expect("a checkpoint on disk is always whole");
    Some((meta.position.epoch, meta.position.step))
}

/// Wait until the checkpoint in `dir` is at or past `at`, then SIGKILL `child`. Returns false
/// if the child ended first.
fn kill_when(child: &mut Child, dir: &Path, at: (u32, u64)) -> bool {
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "ncf-train failed before the kill");
            return false;
        }
        if position(dir).is_some_and(|p| p >= at) {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return true;
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(3));
    }
}

#[test]
fn sigkill_at_several_points_then_resume_gives_the_same_model_bytes() {
    let f = fixture();
    let model = f.root.join("killed.safetensors");
    let ckpt = f.root.join("killed.ckpt");
    let ck = ["--checkpoint", s(&ckpt), "--checkpoint-every", "5"];
    let resume = ["--resume", s(&ckpt), "--checkpoint-every", "5"];
    let mut child = spawn(f, &model, &ck);
    let mut kills = 0;
    // Mid first epoch, just after the first epoch end, mid last epoch.
    for (k, at) in [(0u32, 10u64), (1, 0), (2, 15)].into_iter().enumerate() {
        if kill_when(&mut child, &ckpt, at) {
            kills += 1;
        }
        let before = position(&ckpt).expect("a checkpoint after the kill");
        assert!(before >= at, "kill {k}: checkpoint at {before:?}");
        child = spawn(f, &model, &resume);
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        describe("ncf-train --resume", &[], &out)
    );
    assert_eq!(kills, 3, "every kill should land before the run ends");
    let resumed = std::fs::read(&model).unwrap();
    assert!(
        resumed == f.model,
        "resumed model differs from the uninterrupted run ({} vs {} bytes)",
        resumed.len(),
        f.model.len()
    );
    // The explicit checkpoint directory is kept, at the end of the run.
    assert_eq!(position(&ckpt), Some((3, 0)));
    // The final summary of the resumed run agrees with the uninterrupted one.
    let last = |log: &str| -> serde_json::Value {
        serde_json::from_str(log.lines().last().unwrap()).unwrap()
    };
    let (a, b) = (last(&f.log), last(&String::from_utf8_lossy(&out.stdout)));
    for key in ["best_hr", "best_ndcg", "best_epoch", "epochs_run"] {
        assert_eq!(a[key], b[key], "{key}");
    }
}

#[test]
fn sigint_stops_with_a_checkpoint_and_says_how_to_resume() {
    let f = fixture();
    let model = f.root.join("interrupted.safetensors");
    let ckpt = PathBuf::from(format!("{}.ckpt", model.display()));
    let mut child = spawn(f, &model, &["--checkpoint-every", "4"]);
    let t0 = Instant::now();
    while position(&ckpt).is_none_or(|p| p < (0, 8)) {
        assert!(child.try_wait().unwrap().is_none(), "ended before SIGINT");
        assert!(t0.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(3));
    }
    let pid = child.id().to_string();
    let st = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("stopped by a signal"), "{err}");
    assert!(
        err.contains(&format!("--resume {}", ckpt.display())),
        "{err}"
    );
    // The default directory survives an interrupted run; resuming completes it and removes it.
    assert!(position(&ckpt).is_some());
    let out = spawn(f, &model, &["--resume", s(&ckpt)])
        .wait_with_output()
        .unwrap();
    assert!(out.status.success(), "{}", describe("resume", &[], &out));
    assert!(
        std::fs::read(&model).unwrap() == f.model,
        "model bytes differ"
    );
    assert!(!ckpt.exists(), "default checkpoint directory left behind");
}

#[test]
fn resume_refuses_another_config_or_dataset_or_a_corrupt_checkpoint() {
    let f = fixture();
    let model = f.root.join("refuse.safetensors");
    let ckpt = f.root.join("refuse.ckpt");
    let mut args = vec![s(&f.data), "-o", s(&model), "--checkpoint", s(&ckpt)];
    args.extend_from_slice(FLAGS);
    args.extend_from_slice(&["--epochs", "1"]);
    ok(&f.root, "ncf-train", &args);
    let resume = |extra: &[&str], data: &Path| {
        let mut a = vec![s(data), "-o", s(&model), "--resume", s(&ckpt)];
        a.extend_from_slice(FLAGS);
        a.extend_from_slice(extra);
        let a: Vec<String> = a.iter().map(|x| x.to_string()).collect();
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        fails(&f.root, "ncf-train", &a)
    };
    let e = resume(&["--lr", "0.01"], &f.data);
    assert!(
        e.contains("another training config") && e.contains("lr"),
        "{e}"
    );
    let e = resume(&["--factors", "16"], &f.data);
    assert!(e.contains("another model"), "{e}");
    let e = resume(&["--validation"], &f.data);
    assert!(e.contains("evaluated on another set"), "{e}");
    // Another dataset: ml-latest-small from the repository.
    let other = f.root.join("small");
    let ratings = repo_root().join("data/ml-latest-small/ratings.csv");
    ok(&f.root, "ncf-prep", &[s(&ratings), "-o", s(&other)]);
    ok(
        &f.root,
        "ncf-negsample",
        &[s(&other), "--test-negatives", "50"],
    );
    let e = resume(&[], &other);
    assert!(e.contains("another dataset"), "{e}");
    // More epochs is allowed: the run continues from epoch 1.
    let mut a = vec![s(&f.data), "-o", s(&model), "--resume", s(&ckpt)];
    a.extend_from_slice(FLAGS);
    a.extend_from_slice(&["--epochs", "2"]);
    let log = ok(&f.root, "ncf-train", &a);
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["epoch"], 1, "{log}");
    // A flipped byte in the tensors fails the checksum; a truncated file is refused.
    let file = checkpoint::file_in(&ckpt);
    let mut bytes = std::fs::read(&file).unwrap();
    let k = bytes.len() - 10;
    bytes[k] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    let e = resume(&[], &f.data);
    assert!(e.contains("SHA-256"), "{e}");
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let e = resume(&[], &f.data);
    assert!(e.contains("checkpoint"), "{e}");
    let e = resume(&[], &f.root.join("no-such-dir"));
    assert!(!e.is_empty());
}

/// `ncf-train --check-resume` (issue 31) says whether a checkpoint continues this run exactly,
/// and why not, without training or writing anything: what scripts/paper-grid.sh asks before it
/// resumes a stopped cell.
#[test]
fn check_resume_says_whether_a_checkpoint_continues_this_run_exactly() {
    let f = fixture();
    let model = f.root.join("check.safetensors");
    let ckpt = f.root.join("check.ckpt");
    let mut args = vec![s(&f.data), "-o", s(&model), "--checkpoint", s(&ckpt)];
    args.extend_from_slice(FLAGS);
    args.extend_from_slice(&["--epochs", "2"]);
    ok(&f.root, "ncf-train", &args);
    let check = |extra: &[&str]| {
        let mut a = vec![
            s(&f.data),
            "-o",
            s(&model),
            "--resume",
            s(&ckpt),
            "--check-resume",
        ];
        a.extend_from_slice(FLAGS);
        a.extend_from_slice(extra);
        run(&f.root, "ncf-train", &a)
    };
    let listing = || {
        let mut v: Vec<_> = std::fs::read_dir(&f.root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let (before, model_bytes) = (listing(), std::fs::read(&model).unwrap());
    let ckpt_bytes = std::fs::read(checkpoint::file_in(&ckpt)).unwrap();
    let out = check(&[]);
    assert!(
        out.status.success(),
        "{}",
        describe("--check-resume", &[], &out)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("resumes this run at epoch 2 step 0"),
        "{said}"
    );
    let why = |extra: &[&str]| {
        let out = check(extra);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            describe("--check-resume", extra, &out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = why(&["--threads", "1"]);
    assert!(
        e.contains("written by cpu (2 threads), this run is cpu (1 thread)"),
        "{e}"
    );
    let e = why(&["--lr", "0.01"]);
    assert!(e.contains("another training config"), "{e}");
    let e = why(&["--epochs", "1"]);
    assert!(e.contains("at epoch 2, beyond --epochs 1"), "{e}");
    let moved = f.root.join("moved.safetensors");
    std::fs::rename(&model, &moved).unwrap();
    let e = why(&[]);
    assert!(e.contains("does not exist"), "{e}");
    std::fs::rename(&moved, &model).unwrap();
    // Nothing was trained or written.
    assert_eq!(listing(), before);
    assert!(std::fs::read(&model).unwrap() == model_bytes);
    assert!(std::fs::read(checkpoint::file_in(&ckpt)).unwrap() == ckpt_bytes);
    let out = run(
        &f.root,
        "ncf-train",
        &[s(&f.data), "-o", s(&model), "--check-resume"],
    );
    assert_eq!(out.status.code(), Some(2), "--check-resume needs --resume");
}

/// `bash scripts/SCRIPT OUT` on the ncf binaries under test, one thread, with WORK (created, the
/// prepared `data` linked into it) for its models: what the paper scripts share.
fn paper_script(script: &str, out: &Path, work: &Path, data: &Path) -> Command {
    std::fs::create_dir_all(work).unwrap();
    if !work.join("data").exists() {
        std::os::unix::fs::symlink(data, work.join("data")).unwrap();
    }
    let mut c = Command::new("bash");
    c.arg(repo_root().join("scripts").join(script))
        .arg(out)
        .env("BIN", bin("ncf-train").parent().unwrap())
        .env("WORK", work)
        .env("THREADS", "1");
    c
}

/// `scripts/paper-grid.sh` survives a lost session: stopped (SIGTERM to its process group)
/// while it trains the MLP cell and run again, it reuses the finished GMF cell, resumes the MLP
/// from its checkpoint, and ends with model files and results identical to an uninterrupted run.
#[test]
fn paper_grid_script_resumes_a_stopped_cell_and_reuses_finished_ones() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = ml100k_dataset(root, 99);
    let grid = |work: &str| {
        let out = root.join(format!("{work}-out"));
        let mut c = paper_script("paper-grid.sh", &out, &root.join(work), &data);
        c.env("EPOCHS", "4")
            .env("FACTORS", "8")
            .env("SEEDS", "1")
            .env("MODELS", "gmf mlp")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        c
    };
    let whole = grid("a").output().unwrap();
    assert!(
        whole.status.success(),
        "{}",
        describe("paper-grid.sh", &[], &whole)
    );
    // Stop the second grid once the MLP cell has finished its first epoch.
    let mut child = grid("b").spawn().unwrap();
    let log = root.join("b/mlp-f8-s1.jsonl");
    let t0 = Instant::now();
    while std::fs::read_to_string(&log).map_or(true, |s| s.lines().count() < 1) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "grid ended before the stop"
        );
        assert!(t0.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(3));
    }
    let group = format!("-{}", child.id());
    let st = Command::new("kill")
        .args(["-TERM", "--", &group])
        .status()
        .unwrap();
    assert!(st.success());
    let stopped = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&stopped.stderr);
    assert!(err.contains("stopped by a signal"), "{err}");
    let ckpt = root.join("b/mlp-f8-s1.safetensors.ckpt");
    assert!(
        ckpt.join(checkpoint::CHECKPOINT_FILE).exists(),
        "no checkpoint to resume"
    );
    let again = grid("b").output().unwrap();
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        again.status.success(),
        "{}",
        describe("paper-grid.sh again", &[], &again)
    );
    assert!(
        err.contains("reused") && err.contains("gmf-f8-s1.run.json"),
        "{err}"
    );
    assert!(
        err.contains("resuming") && err.contains("mlp-f8-s1"),
        "{err}"
    );
    assert!(!ckpt.exists(), "checkpoint left behind");
    for m in ["gmf", "mlp"] {
        let file = format!("{m}-f8-s1.safetensors");
        let (a, b) = (root.join("a").join(&file), root.join("b").join(&file));
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "{file} differs"
        );
    }
    let read = |path: PathBuf| json_lines(&std::fs::read_to_string(path).unwrap());
    let same = |x: &serde_json::Value, y: &serde_json::Value, keys: &[&str], what: &str| {
        for key in keys {
            assert_eq!(x.get(key), y.get(key), "{what}: {key}");
        }
    };
    let runs = |work: &str| read(root.join(format!("{work}-out/runs.jsonl")));
    let (a, b) = (runs("a"), runs("b"));
    assert_eq!(a.len(), 2);
    assert_eq!(b.len(), 2);
    let keys = [
        "model",
        "best_epoch",
        "hr",
        "ndcg",
        "nvidia_hr",
        "nvidia_ndcg",
    ];
    for (x, y) in a.iter().zip(&b) {
        let what = x["model"].to_string();
        same(
            x,
            y,
            &[&keys[..], &["full_hr", "full_ndcg"]].concat(),
            &what,
        );
    }
    // The per-epoch logs agree line for line (timings aside), one line per epoch.
    let keys = [
        "epoch",
        "loss",
        "hr",
        "ndcg",
        "best_hr",
        "best_epoch",
        "epochs_run",
    ];
    for m in ["gmf", "mlp"] {
        let log = |work: &str| read(root.join(work).join(format!("{m}-f8-s1.jsonl")));
        let (a, b) = (log("a"), log("b"));
        assert_eq!(a.len(), 5, "{m}: 4 epochs and a summary");
        assert_eq!(b.len(), 5, "{m}: 4 epochs and a summary");
        for (x, y) in a.iter().zip(&b) {
            same(x, y, &keys, m);
        }
    }
    assert_eq!(
        (b[0]["resumed"].clone(), b[1]["resumed"].clone()),
        (false.into(), true.into())
    );
    assert_eq!(
        (b[0]["batch"].clone(), b[0]["lr"].clone()),
        (256.into(), 0.001.into())
    );
    // Another learning rate is another cell: the finished GMF is retrained, not reused.
    let other = grid("b")
        .env("MODELS", "gmf")
        .env("LR", "0.002")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(
        other.status.success(),
        "{}",
        describe("paper-grid.sh LR=0.002", &[], &other)
    );
    assert!(!err.contains("reused"), "{err}");
    let b = runs("b");
    assert_eq!(b.len(), 1);
    assert_eq!(
        (b[0]["batch"].clone(), b[0]["lr"].clone()),
        (256.into(), 0.002.into())
    );
    // ... and trained at that rate: from the same seed, its first epoch differs.
    let loss0 = |work: &str| read(root.join(work).join("gmf-f8-s1.jsonl"))[0]["loss"].clone();
    assert_ne!(loss0("a"), loss0("b"), "LR=0.002 trained as LR=0.001");
}

/// `scripts/paper-tune.sh` trains each BATCH:LR config on the validation split, tabulates the
/// best validation epoch of each, skips finished configs when run again, and refuses a malformed
/// config.
#[test]
fn paper_tune_script_tabulates_configs_and_skips_finished_ones() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = ml100k_dataset(root, 99);
    let out = root.join("out");
    let tune = |configs: &str| {
        paper_script("paper-tune.sh", &out, &root.join("work"), &data)
            .env("MODEL", "gmf")
            .env("FACTORS", "8")
            .env("EPOCHS", "2")
            .env("CONFIGS", configs)
            .output()
            .unwrap()
    };
    let first = tune("256:0.001 512:2e-3");
    assert!(
        first.status.success(),
        "{}",
        describe("paper-tune.sh", &[], &first)
    );
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    let rows: Vec<&str> = summary
        .lines()
        .filter(|l| l.starts_with("| gmf |"))
        .collect();
    assert_eq!(rows.len(), 2, "{summary}");
    assert!(
        rows[0].starts_with("| gmf | 8 | 1 | 256 | 0.001 | 0."),
        "{summary}"
    );
    assert!(
        rows[1].starts_with("| gmf | 8 | 1 | 512 | 0.002 | 0."),
        "{summary}"
    );
    for name in ["gmf-f8-s1-b256-lr0.001", "gmf-f8-s1-b512-lr0.002"] {
        let lines =
            json_lines(&std::fs::read_to_string(out.join(format!("{name}.jsonl"))).unwrap());
        assert_eq!(lines.len(), 3, "{name}: 2 epochs and a summary");
        assert_eq!(lines[0]["eval"], "validation", "{name}");
    }
    let again = tune("256:0.001 512:0.002");
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{err}");
    assert_eq!(err.matches("done already").count(), 2, "{err}");
    assert!(!err.contains("training"), "{err}");
    for bad in ["256-0.001", "1024", "256:e", "0:0.001"] {
        let out = tune(bad);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("'{bad}' is not BATCH:LR")),
            "{bad}: {err}"
        );
    }
}
