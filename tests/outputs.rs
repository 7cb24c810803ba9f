//! What a run writes and how it ends, through the real binaries: every output (logs and charts
//! included) is claimed for one run at a time, never lands inside a dataset, replaces only what
//! ncf wrote (`--force` never deletes a user's file) and is written whole; the temps of dead runs
//! are removed; symbolic links are written through; in place needs a dataset directory; a
//! resumed run keeps its model; a closed stdout does not end training; SIGINT, SIGTERM and SIGHUP
//! are handled alike and a second one still says what it did. Cases of issues 24 (`caseNN_`) and
//! 30 (`dNN_`, docs/RELIABILITY.md) among them; ncf-plot's own (D2, D13) are in tests/report.rs.

mod common;

use common::TINY_EPOCH as TRAIN;
use common::{
    assert_foreign, bin, fails, fingerprint, json_lines, leftovers, names, ok, repo_root, run, s,
    scratch, scratch as env, train, train_args, wait_output, Tmpfs, FOREIGN,
};
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::symlink;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Spawn `ncf-train args` in `dir` with stdout piped; returns the child and its first stdout
/// line (the first epoch's report: the run is inside its training loop).
fn spawn_training(dir: &Path, args: &[&str]) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(bin("ncf-train"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.contains("\"epoch\":0"), "no first report: {first:?}");
    (child, out)
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc_kill(child.id() as i32, sig) }, 0);
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

const SIGHUP: i32 = 1;
const SIGINT: i32 = 2;

/// D1: `--log FILE` appended to any file (a model, meta.json), and `--log X -o X` lost the log.
/// Now the log is an output like the others: appended to only when ncf-train wrote it, never
/// inside a dataset, never the path of another output.
#[test]
fn d01_log_appends_only_to_a_log_of_ncf_train() {
    let sc = scratch();
    let r = &sc.root;
    ok(
        r,
        "ncf-train",
        &train_args(&sc.ds, "a.st", "1", &["--no-checkpoint"]),
    );
    let model = fs::read(r.join("a.st")).unwrap();
    let e = fails(
        r,
        "ncf-train",
        &train_args(&sc.ds, "c.st", "1", &["--no-checkpoint", "--log", "a.st"]),
    );
    assert!(e.contains("a.st: not a training log of ncf-train"), "{e}");
    assert_eq!(
        fs::read(r.join("a.st")).unwrap(),
        model,
        "the model was changed"
    );
    assert!(!r.join("c.st").exists(), "refused only after training");
    let meta = fs::read(sc.ds.join("meta.json")).unwrap();
    let log_in_ds = format!("{}/meta.json", s(&sc.ds));
    let e = fails(
        r,
        "ncf-train",
        &train_args(
            &sc.ds,
            "c.st",
            "1",
            &["--no-checkpoint", "--log", &log_in_ds],
        ),
    );
    assert!(e.contains("inside the dataset directory"), "{e}");
    assert_eq!(fs::read(sc.ds.join("meta.json")).unwrap(), meta);
    let e = fails(
        r,
        "ncf-train",
        &train_args(&sc.ds, "x.st", "1", &["--no-checkpoint", "--log", "x.st"]),
    );
    assert!(e.contains("--log x.st: the same path as -o"), "{e}");
    // A log of ncf-train is continued, whole lines only.
    ok(
        r,
        "ncf-train",
        &train_args(
            &sc.ds,
            "l.st",
            "2",
            &["--no-checkpoint", "--log", "l.jsonl"],
        ),
    );
    let args = train_args(
        &sc.ds,
        "l.st",
        "1",
        &["--no-checkpoint", "--force", "--log", "l.jsonl"],
    );
    ok(r, "ncf-train", &args);
    let lines = json_lines(&fs::read_to_string(r.join("l.jsonl")).unwrap());
    assert_eq!(lines.len(), 3 + 2, "two runs' lines");
    ok(r, "ncf-eval", &[s(&sc.ds), "a.st"]);
}

/// D3: `--resume` with another `-o` (or with the model moved away) exited 0 and wrote no model.
/// Now the resumed run checks first that `-o` holds the model the interrupted run wrote, and says
/// where that one is.
#[test]
fn d03_resume_refuses_an_output_without_the_runs_model() {
    let sc = scratch();
    let r = &sc.root;
    ok(
        r,
        "ncf-train",
        &train_args(&sc.ds, "first.st", "1", &["--checkpoint", "ck"]),
    );
    let e = fails(
        r,
        "ncf-train",
        &train_args(&sc.ds, "other.st", "2", &["--resume", "ck"]),
    );
    assert!(e.contains("other.st: does not exist"), "{e}");
    assert!(e.contains("first.st"), "{e}");
    assert!(e.contains("resume with -o"), "{e}");
    assert!(!r.join("other.st").exists());
    // Moved away: the same path no longer holds it.
    fs::rename(r.join("first.st"), r.join("moved.st")).unwrap();
    let e = fails(
        r,
        "ncf-train",
        &train_args(&sc.ds, "first.st", "2", &["--resume", "ck"]),
    );
    assert!(e.contains("first.st: does not exist"), "{e}");
    assert!(e.contains("put that model back"), "{e}");
    // Another model there is not it either.
    ok(
        r,
        "ncf-train",
        &train_args(&sc.ds, "first.st", "1", &["--no-checkpoint", "--seed", "9"]),
    );
    let e = fails(
        r,
        "ncf-train",
        &train_args(&sc.ds, "first.st", "2", &["--resume", "ck"]),
    );
    assert!(e.contains("first.st: holds another model"), "{e}");
    // Put back, the run resumes and ends with a model.
    fs::rename(r.join("moved.st"), r.join("first.st")).unwrap();
    let out = ok(
        r,
        "ncf-train",
        &train_args(&sc.ds, "first.st", "2", &["--resume", "ck"]),
    );
    let summary = json_lines(&out).pop().unwrap();
    assert_eq!(summary["epochs_run"], 2, "{out}");
    ok(r, "ncf-eval", &[s(&sc.ds), "first.st"]);
}

/// D4: `ncf-train … | head -1` stopped training after one epoch without a word and exited 0.
/// Now the run goes on to the end (the model is what it is for), the lines still reach --log,
/// and a note says so.
#[test]
fn d04_a_closed_stdout_does_not_end_training() {
    let sc = scratch();
    let args = train_args(&sc.ds, "d.st", "4", &["--no-checkpoint", "--log", "d.log"]);
    let (child, out) = spawn_training(&sc.root, &args);
    drop(out);
    let (status, err) = wait_output(child);
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("stdout was closed"), "{err}");
    assert!(
        err.contains("the report lines go on only to d.log"),
        "{err}"
    );
    let lines = json_lines(&fs::read_to_string(sc.root.join("d.log")).unwrap());
    assert_eq!(lines.len(), 4 + 1, "every epoch and the summary in the log");
    assert_eq!(lines[4]["epochs_run"], 4);
    assert!(sc.root.join("d.st").exists());
}

/// D14: `--checkpoint` naming the dataset directory was accepted; the checkpoint ruined the
/// dataset and the printed resume command failed. Now refused before any work.
#[test]
fn d14_a_checkpoint_in_the_dataset_directory_is_refused_up_front() {
    let sc = scratch();
    let r = &sc.root;
    let before = names(&sc.ds);
    let e = fails(
        r,
        "ncf-train",
        &train_args(&sc.ds, "k.st", "1", &["--checkpoint", "ds"]),
    );
    assert!(e.contains("ds: is a dataset directory"), "{e}");
    assert!(e.contains("a directory of its own"), "{e}");
    let e = fails(
        r,
        "ncf-train",
        &train_args(&sc.ds, "k.st", "1", &["--checkpoint", "ds/ck"]),
    );
    assert!(e.contains("inside the dataset directory"), "{e}");
    assert_eq!(
        names(&sc.ds),
        before,
        "the dataset directory was written into"
    );
    assert!(!r.join("k.st").exists());
    ok(
        r,
        "ncf-train",
        &train_args(&sc.ds, "k.st", "1", &["--no-checkpoint"]),
    );
}

/// D15: two quick Ctrl-C exited 1 without a word, left lock files and no stop checkpoint. Now the
/// first says it is stopping, the second stops at once saying where the last checkpoint is, and
/// no lock file is left.
#[test]
fn d15_a_second_signal_says_what_it_did_and_leaves_no_locks() {
    let sc = scratch();
    // Steps of a few tens of milliseconds: the second signal lands while the first is pending.
    let args = [
        s(&sc.ds),
        "-o",
        "dbl.st",
        "--epochs",
        "1000",
        "--factors",
        "64",
        "--layers",
        "256,128",
        "--batch-size",
        "65536",
        "--threads",
        "1",
        "--quiet",
    ];
    let (child, mut out) = spawn_training(&sc.root, &args);
    // After the second report, epoch 0's checkpoint is on disk.
    out.read_line(&mut String::new()).unwrap();
    signal(&child, SIGINT);
    std::thread::sleep(Duration::from_millis(50));
    signal(&child, SIGINT);
    drop(out);
    let (status, err) = wait_output(child);
    assert!(!status.success(), "{status}");
    // Either the second signal came while the step ran (stopped at once) or the run had already
    // written its stop checkpoint; either way it says so.
    if status.signal() == Some(SIGINT) {
        assert!(err.contains("stopped by SIGINT"), "{err}");
        assert!(err.contains("--resume dbl.st.ckpt"), "{err}");
    } else {
        assert_eq!(status.code(), Some(1), "{err}");
        assert!(err.contains("a checkpoint is in dbl.st.ckpt"), "{err}");
    }
    assert!(err.contains("stopping after this step"), "{err}");
    assert_eq!(leftovers(&sc.root), Vec::<String>::new(), "{err}");
    assert_eq!(
        leftovers(&sc.root.join("dbl.st.ckpt")),
        Vec::<String>::new()
    );
    assert!(sc.root.join("dbl.st.ckpt/checkpoint.safetensors").exists());
}

/// D16: SIGHUP (a closed terminal, a dropped ssh) killed ncf-train with status 129, no message,
/// no stop checkpoint and lock files left. Now it is handled as SIGINT and SIGTERM are.
#[test]
fn d16_sighup_stops_training_with_a_checkpoint_like_sigterm() {
    let sc = scratch();
    let args = train_args(&sc.ds, "h.st", "100000", &[]);
    let (child, out) = spawn_training(&sc.root, &args);
    signal(&child, SIGHUP);
    drop(out);
    let (status, err) = wait_output(child);
    assert_eq!(status.code(), Some(1), "{status}: {err}");
    assert!(err.contains("SIGHUP: stopping after this step"), "{err}");
    assert!(err.contains("stopped by a signal before epoch"), "{err}");
    assert!(err.contains("--resume h.st.ckpt"), "{err}");
    assert_eq!(leftovers(&sc.root), Vec::<String>::new());
    assert!(sc.root.join("h.st.ckpt/checkpoint.safetensors").exists());
}

/// D19: a full disk under `--log` was reported as `<stdout>: No space left on device`. Now the
/// message names the log.
#[test]
fn d19_a_full_log_disk_names_the_log() {
    let sc = scratch();
    let Some(disk) = Tmpfs::mount(&sc.root.join("small"), "1m") else {
        eprintln!("SKIPPED d19: cannot mount a tmpfs (not root)");
        return;
    };
    disk.fill(0);
    let log = sc.root.join("small/log.jsonl");
    let args = train_args(&sc.ds, "l.st", "1", &["--no-checkpoint", "--log", s(&log)]);
    let e = fails(&sc.root, "ncf-train", &args);
    assert!(
        e.contains("small/log.jsonl: no space left on device"),
        "{e}"
    );
    assert!(!e.contains("<stdout>"), "{e}");
}

/// D20: an in-place `ncf-negsample` on a symbolic link to a dataset replaced the link with an
/// updated copy and left the real dataset as it was. Now outputs are written through links.
#[test]
fn d20_a_symlinked_dataset_is_updated_through_the_link() {
    let sc = scratch();
    let r = &sc.root;
    symlink("ds", r.join("link")).unwrap();
    ok(
        r,
        "ncf-negsample",
        &["link", "--test-negatives", "5", "--force"],
    );
    assert!(fs::symlink_metadata(r.join("link"))
        .unwrap()
        .file_type()
        .is_symlink());
    let meta: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(sc.ds.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["test_negatives_per_user"], 5);
    assert_eq!(leftovers(r), Vec::<String>::new());
    // A model written through a link lands where it points.
    symlink("real.st", r.join("m.st")).unwrap();
    let a = train_args(&sc.ds, "m.st", "1", &["--no-checkpoint", "--topk", "5"]);
    ok(r, "ncf-train", &a);
    assert!(fs::symlink_metadata(r.join("m.st"))
        .unwrap()
        .file_type()
        .is_symlink());
    ok(r, "ncf-eval", &[s(&sc.ds), "real.st", "--k", "5"]);
}

/// D28 O04: a dangling symbolic link as `-o` gave `link2: Not a directory (os error 20)`.
#[test]
fn d28_o04_a_dangling_link_as_output_is_named() {
    let sc = scratch();
    let r = &sc.root;
    symlink("/nonexistent-ncf/x", r.join("link2")).unwrap();
    let ratings = repo_root().join("data/ml-latest-small/ratings.csv");
    let e = fails(r, "ncf-prep", &[s(&ratings), "-o", "link2", "-q"]);
    assert!(
        e.contains("link2: a symbolic link to /nonexistent-ncf/x"),
        "{e}"
    );
    assert!(e.contains("/nonexistent-ncf does not exist"), "{e}");
}

/// D28 P03/P04: an output inside a dataset directory was refused only by the next reader, which
/// blamed ncf's own lock file. Now it is refused up front, and nothing is written there.
#[test]
fn d28_p03_p04_outputs_inside_a_dataset_are_refused_before_writing() {
    let sc = scratch();
    let r = &sc.root;
    let before = names(&sc.ds);
    let e = fails(
        r,
        "ncf-negsample",
        &["ds", "--epoch", "0", "-o", "ds/e.parquet"],
    );
    assert!(
        e.contains("ds/e.parquet: inside the dataset directory ds"),
        "{e}"
    );
    let e = fails(r, "ncf-train", &train_args(&sc.ds, "ds/model.st", "1", &[]));
    assert!(e.contains("inside the dataset directory"), "{e}");
    assert_eq!(names(&sc.ds), before);
    ok(
        r,
        "ncf-train",
        &train_args(&sc.ds, "m.st", "1", &["--no-checkpoint"]),
    );
    // A lock file left there by an old run is named for what it is.
    fs::write(sc.ds.join(".e.parquet.lock"), "1\n").unwrap();
    let e = fails(r, "ncf-eval", &["ds", "m.st"]);
    assert!(e.contains("ds/.e.parquet.lock: left by an ncf run"), "{e}");
    assert!(!e.contains("move it out of"), "{e}");
}

/// D28 M10: a table that is a symbolic link made the in-place update say "it holds
/// train.parquet, which ncf does not write".
#[test]
fn d28_m10_a_symlinked_table_is_named_as_a_link() {
    let sc = scratch();
    let r = &sc.root;
    fs::rename(sc.ds.join("train.parquet"), r.join("tr.parquet")).unwrap();
    symlink(r.join("tr.parquet"), sc.ds.join("train.parquet")).unwrap();
    let e = fails(
        r,
        "ncf-negsample",
        &["ds", "--test-negatives", "5", "--force"],
    );
    assert!(e.contains("holds train.parquet as a symbolic link"), "{e}");
    assert!(!e.contains("which ncf does not write"), "{e}");
}

/// The bundled ml-latest-small ratings (CRLF line ends, as GroupLens ships them).
fn ratings() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let p = repo_root().join("data/ml-latest-small/ratings.csv");
        p.to_str().unwrap().to_string()
    })
}

/// Case 1: `--force` deleted whatever directory it was pointed at. Now it replaces only an ncf
/// dataset (meta.json and the files ncf writes, nothing else) and names anything else.
#[test]
fn case01_force_replaces_only_an_ncf_dataset() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    fs::create_dir_all(root.join("h/docs")).unwrap();
    fs::write(root.join("h/docs/thesis.txt"), FOREIGN).unwrap();
    let e = fails(root, "ncf-prep", &[ratings(), "-o", "h", "--force"]);
    assert!(e.contains("h: not an ncf dataset"), "{e}");
    assert!(e.contains("docs"), "{e}");
    assert!(e.contains("--force replaces only"), "{e}");
    assert_foreign(&root.join("h/docs/thesis.txt"));
    // A dataset ncf wrote is replaced.
    ok(root, "ncf-prep", &[ratings(), "-o", "ds", "-q"]);
    let fp = fingerprint(&root.join("ds"));
    let min30 = [ratings(), "-o", "ds", "--force", "--min-interactions", "30"];
    ok(root, "ncf-prep", &[&min30[..], &["-q"]].concat());
    assert_ne!(fingerprint(&root.join("ds")), fp);
    // One with a file the user added is not.
    fs::write(root.join("ds/notes.txt"), FOREIGN).unwrap();
    let e = fails(root, "ncf-prep", &[ratings(), "-o", "ds", "--force"]);
    assert!(
        e.contains("ds: not an ncf dataset") && e.contains("notes.txt"),
        "{e}"
    );
    assert_foreign(&root.join("ds/notes.txt"));
    // Nor is a file.
    fs::write(root.join("f.txt"), FOREIGN).unwrap();
    let e = fails(root, "ncf-prep", &[ratings(), "-o", "f.txt", "--force"]);
    assert!(e.contains("f.txt"), "{e}");
    assert_foreign(&root.join("f.txt"));
}

/// Wait until `path` exists (the first run has trained an epoch).
fn wait_for(child: &mut Child, path: &Path) {
    let t0 = Instant::now();
    while !path.exists() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "the first run ended ({st}) before writing {}",
                path.display()
            );
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "no model written");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Case 2: Two runs on one output both exited 0 and one model was lost. Now the output (and its
/// checkpoint directory) is locked for the run: a second run is refused at once, naming the pid.
#[test]
fn case02_a_second_run_on_the_same_output_is_refused_naming_the_first() {
    let e = env();
    let model = e.root.join("m.st");
    let mut first = Command::new(bin("ncf-train"))
        .args([s(&e.ds), "-o", s(&model), "--force"])
        .args(TRAIN)
        .args(["--epochs", "100000"])
        .current_dir(&e.root)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = first.id().to_string();
    wait_for(&mut first, &model);
    let mut second = vec![s(&e.ds), "-o", s(&model), "--force"];
    second.extend_from_slice(TRAIN);
    let t0 = Instant::now();
    let err = fails(&e.root, "ncf-train", &second);
    assert!(err.contains("in use by another run"), "{err}");
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(err.contains("m.st"), "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "refused only after training"
    );
    // Its checkpoint directory is claimed too (another model, the same --checkpoint).
    let ckpt = format!("{}.ckpt", model.display());
    let mut other = vec![s(&e.ds), "-o", "other.st", "--checkpoint", &ckpt];
    other.extend_from_slice(TRAIN);
    let err = fails(&e.root, "ncf-train", &other);
    assert!(err.contains("m.st.ckpt: in use by another run"), "{err}");
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(!e.root.join("other.st").exists());
    // The lock is the same for every tool: no dataset is written there either.
    let err = fails(
        &e.root,
        "ncf-prep",
        &[ratings(), "-o", s(&model), "--force"],
    );
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    // A killed holder leaves no lock behind that stops the next run.
    first.kill().unwrap();
    first.wait().unwrap();
    train(&e, &model, &["--force"]);
}

/// Case 8: A directory as the model gave "No such device"; `ncf-train -o DIR --force` trained
/// first, then said "Is a directory"; `-o . --force` gave "Device or resource busy".
#[test]
fn case08_clear_messages_for_a_directory_model_and_output_dot() {
    let e = env();
    fs::create_dir(e.root.join("dirm")).unwrap();
    let ds = s(&e.ds);
    for (tool, args) in [
        ("ncf-eval", vec![ds, "dirm"]),
        ("ncf-topk", vec![ds, "dirm", "1"]),
    ] {
        let err = fails(&e.root, tool, &args);
        assert!(
            err.contains("dirm: is a directory, not a model file"),
            "{err}"
        );
        assert!(!err.contains("os error"), "{err}");
    }
    let mut a = vec![ds, "-o", "dirm", "--force"];
    a.extend_from_slice(TRAIN);
    let out = run(&e.root, "ncf-train", &a);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("dirm: is a directory; -o names the model file"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "it trained before refusing");
    // `-o .` in a directory holding the user's files
    let work = e.root.join("work");
    fs::create_dir(&work).unwrap();
    fs::write(work.join("mine.txt"), FOREIGN).unwrap();
    let err = fails(&work, "ncf-prep", &[ratings(), "-o", ".", "--force"]);
    assert!(err.contains("`.`: name the output"), "{err}");
    assert!(!err.contains("busy"), "{err}");
    let err = fails(
        &work,
        "ncf-negsample",
        &[ds, "--test-negatives", "5", "-o", ".", "--force"],
    );
    assert!(err.contains("`.`: name the output"), "{err}");
    let mut a = vec![ds, "-o", ".", "--force"];
    a.extend_from_slice(TRAIN);
    let err = fails(&work, "ncf-train", &a);
    assert!(err.contains("`.`: name the output"), "{err}");
    assert_foreign(&work.join("mine.txt"));
}

/// Acceptance: nothing the user wrote is deleted. A foreign file at every output that takes
/// `--force` (and inside the directories ncf writes into) survives; ncf's own outputs there are
/// still replaced.
#[test]
fn force_never_deletes_a_foreign_file_at_any_output() {
    let e = env();
    let r = &e.root;
    let ds = s(&e.ds);
    let foreign_dir = |name: &str| {
        let d = r.join(name);
        fs::create_dir(&d).unwrap();
        fs::write(d.join("mine.txt"), FOREIGN).unwrap();
        d.join("mine.txt")
    };
    let foreign_file = |name: &str| {
        fs::write(r.join(name), FOREIGN).unwrap();
        r.join(name)
    };
    // ncf-prep -o DIR
    let p = foreign_dir("prep-dir");
    fails(r, "ncf-prep", &[ratings(), "-o", "prep-dir", "--force"]);
    assert_foreign(&p);
    let p = foreign_file("prep-file");
    fails(r, "ncf-prep", &[ratings(), "-o", "prep-file", "--force"]);
    assert_foreign(&p);
    // ncf-prep --synthetic-csv FILE: a real ratings file cannot be told from ncf's own
    let p = foreign_file("synthetic.csv");
    let synth = [
        "--synthetic",
        "300,400,12000",
        "--synthetic-csv",
        "synthetic.csv",
        "-q",
    ];
    let err = fails(r, "ncf-prep", &synth);
    assert!(err.contains("already exists"), "{err}");
    let err = fails(r, "ncf-prep", &[&synth[..], &["--force"]].concat());
    assert!(err.contains("synthetic.csv"), "{err}");
    assert_foreign(&p);
    // ncf-negsample --test-negatives -o DIR
    let p = foreign_dir("neg-dir");
    let neg = [ds, "--test-negatives", "5", "-o", "neg-dir", "--force"];
    let err = fails(r, "ncf-negsample", &neg);
    assert!(err.contains("neg-dir: not an ncf dataset"), "{err}");
    assert_foreign(&p);
    // ncf-negsample in place, on a dataset written before SHA256SUMS (nothing to check against)
    let old = r.join("old");
    ok(r, "ncf-prep", &[ratings(), "-o", s(&old), "-q"]);
    fs::remove_file(old.join("SHA256SUMS")).unwrap();
    fs::create_dir(old.join("docs")).unwrap();
    fs::write(old.join("docs/mine.txt"), FOREIGN).unwrap();
    let err = fails(
        r,
        "ncf-negsample",
        &[s(&old), "--test-negatives", "5", "--force"],
    );
    assert!(
        err.contains("old: not an ncf dataset") && err.contains("docs"),
        "{err}"
    );
    assert_foreign(&old.join("docs/mine.txt"));
    // ncf-negsample --epoch -o FILE, each format; ncf's own file is replaced
    for name in ["e.parquet", "e.tsv", "e.arrows"] {
        let p = foreign_file(name);
        let epoch = [ds, "--epoch", "0", "-o", name, "--force"];
        let err = fails(r, "ncf-negsample", &epoch);
        assert!(err.contains(&format!("{name}: not")), "{err}");
        assert_foreign(&p);
        fs::remove_file(&p).unwrap();
        ok(r, "ncf-negsample", &epoch);
        ok(r, "ncf-negsample", &epoch);
    }
    // ncf-train -o MODEL; ncf's own model is replaced
    let p = foreign_file("m.st");
    let mut a = vec![ds, "-o", "m.st", "--force"];
    a.extend_from_slice(TRAIN);
    let err = fails(r, "ncf-train", &a);
    assert!(err.contains("m.st: not an ncf model"), "{err}");
    assert_foreign(&p);
    fs::remove_file(&p).unwrap();
    ok(r, "ncf-train", &a);
    ok(r, "ncf-train", &a);
    // its checkpoint directory: a foreign checkpoint.safetensors is refused before training,
    // other files there are left alone (also when the default directory is removed at the end)
    let ck = foreign_dir("ck");
    fs::write(r.join("ck/checkpoint.safetensors"), FOREIGN).unwrap();
    let mut a = vec![ds, "-o", "c.st", "--checkpoint", "ck"];
    a.extend_from_slice(TRAIN);
    let err = fails(r, "ncf-train", &a);
    assert!(
        err.contains("ck: holds checkpoint.safetensors, which is not an ncf checkpoint"),
        "{err}"
    );
    assert_foreign(&r.join("ck/checkpoint.safetensors"));
    fs::remove_file(r.join("ck/checkpoint.safetensors")).unwrap();
    ok(r, "ncf-train", &a);
    assert_foreign(&ck);
    let p = foreign_dir("d.st.ckpt");
    let mut a = vec![ds, "-o", "d.st"];
    a.extend_from_slice(TRAIN);
    ok(r, "ncf-train", &a);
    assert_foreign(&p);
    let p = foreign_file("f.st.ckpt");
    let mut a = vec![ds, "-o", "f.st"];
    a.extend_from_slice(TRAIN);
    let err = fails(r, "ncf-train", &a);
    assert!(err.contains("f.st.ckpt: is a file"), "{err}");
    assert_foreign(&p);
    assert!(!r.join("f.st").exists());
}

/// A pid that no process has: above the largest the kernel hands out.
fn dead_pid() -> u64 {
    let max: u64 = fs::read_to_string("/proc/sys/kernel/pid_max")
        .map_or(4_194_304, |s| s.trim().parse().unwrap());
    max + 7
}

/// Case 9: the temp directories of a SIGKILLed ncf-prep (`.NAME.tmp-PID/`, full copies) were
/// never cleaned up. Now the next write to the same target removes those of dead pids (and
/// leaves a live run's alone).
#[test]
fn case09_temps_of_dead_runs_are_removed_on_the_next_write() {
    let e = env();
    let r = &e.root;
    let dead = dead_pid();
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let live = sleeper.id();
    for target in ["ds2", "m.st"] {
        for pid in [dead, live as u64] {
            let tmp = r.join(format!(".{target}.tmp-{pid}"));
            fs::create_dir_all(tmp.join("sub")).unwrap();
            fs::write(tmp.join("sub/train.parquet"), vec![7u8; 1 << 16]).unwrap();
        }
        fs::write(r.join(format!(".{target}.old-{dead}")), b"old").unwrap();
    }
    ok(r, "ncf-prep", &[ratings(), "-o", "ds2", "-q"]);
    train(&e, &r.join("m.st"), &[]);
    for target in ["ds2", "m.st"] {
        assert!(
            !r.join(format!(".{target}.tmp-{dead}")).exists(),
            "{target}: dead temp kept"
        );
        assert!(
            !r.join(format!(".{target}.old-{dead}")).exists(),
            "{target}: dead old kept"
        );
        assert!(
            r.join(format!(".{target}.tmp-{live}/sub/train.parquet"))
                .exists(),
            "{target}: a live run's temp was removed"
        );
    }
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
}

/// D28 D10: `ncf-negsample stream.arrows --test-negatives 10` (in place on a stream file) got an
/// output's message ("give a new path, or move the file away"). Now it says that in place needs
/// a dataset directory and suggests -o DIR.
#[test]
fn d28_d10_in_place_on_a_stream_file_suggests_o_dir() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let out = Command::new(bin("ncf-prep"))
        .args([ratings(), "-o", "-", "-q"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    fs::write(dir.join("stream.arrows"), &out.stdout).unwrap();
    let err = fails(
        dir,
        "ncf-negsample",
        &["stream.arrows", "--test-negatives", "10"],
    );
    assert!(
        err.contains("stream.arrows: not a dataset directory"),
        "{err}"
    );
    assert!(err.contains("with -o DIR (or -o - for a stream)"), "{err}");
    assert!(!err.contains("move the file away"), "{err}");
    assert_eq!(fs::read(dir.join("stream.arrows")).unwrap(), out.stdout);
    ok(
        dir,
        "ncf-negsample",
        &["stream.arrows", "--test-negatives", "10", "-o", "withneg"],
    );
}
