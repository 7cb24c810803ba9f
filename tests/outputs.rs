//! What a run writes and how it ends, through the real binaries: every output (logs and charts
//! included) is claimed, never lands inside a dataset, replaces only what ncf wrote and is
//! written whole; symbolic links are written through; a resumed run keeps its model; a closed
//! stdout does not end training; SIGINT, SIGTERM and SIGHUP are handled alike and a second one
//! still says what it did. The defects D1, D3-D5, D14-D16, D19, D20 and rows of D28 of the probe
//! of 2026-12-07 (docs/RELIABILITY.md), one test each; ncf-plot's (D2, D13) are in tests/report.rs.

mod common;

use common::{bin, fails, json_lines, ok, repo_root, run, s, Tmpfs, TINY_MODEL as TINY};
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::symlink;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// ml-latest-small prepared once for the whole file, with 20 test negatives per user.
fn prepared() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, ds) = DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let ds = d.path().join("ds");
        let ratings = repo_root().join("data/ml-latest-small/ratings.csv");
        ok(d.path(), "ncf-prep", &[s(&ratings), "-o", s(&ds), "-q"]);
        ok(
            d.path(),
            "ncf-negsample",
            &[s(&ds), "--test-negatives", "20"],
        );
        (d, ds)
    });
    ds
}

/// A scratch directory holding a copy of the prepared dataset as `ds`.
struct Scratch {
    _dir: tempfile::TempDir,
    root: PathBuf,
    ds: PathBuf,
}

fn scratch() -> Scratch {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let ds = root.join("ds");
    copy_dir(prepared(), &ds);
    Scratch {
        _dir: dir,
        root,
        ds,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// `ncf-train ds -o model` with the tiny model, `epochs` epochs, and `extra` flags.
fn train_args<'a>(
    ds: &'a Path,
    model: &'a str,
    epochs: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut a = vec![s(ds), "-o", model, "--epochs", epochs];
    a.extend_from_slice(TINY);
    a.extend_from_slice(extra);
    a
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    n.sort();
    n
}

/// The names in `dir` that are ncf's lock or temp files.
fn leftovers(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.ends_with(".lock") || n.contains(".tmp-") || n.contains(".old-"))
        .collect()
}

/// The model config in a safetensors model file's metadata.
fn model_config(path: &Path) -> serde_json::Value {
    let b = fs::read(path).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let h: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    serde_json::from_str(h["__metadata__"]["ncf_model_config"].as_str().unwrap()).unwrap()
}

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

fn wait_output(child: Child) -> (std::process::ExitStatus, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

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

/// D28 O15: an empty SHA256SUMS was reported as the first table "not listed", with the advice to
/// move the real tables out of the dataset.
#[test]
fn d28_o15_an_empty_sha256sums_is_named() {
    let sc = scratch();
    fs::write(sc.ds.join("SHA256SUMS"), "").unwrap();
    ok(
        &sc.root,
        "ncf-train",
        &train_args(prepared(), "m.st", "1", &["--no-checkpoint"]),
    );
    let e = fails(&sc.root, "ncf-eval", &["ds", "m.st"]);
    assert!(e.contains("ds/SHA256SUMS: is empty"), "{e}");
    assert!(!e.contains("move it out"), "{e}");
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

/// D28 H14: clap wrapped ncf-plot's example at 100 columns, leaving `-o` at the end of a line
/// and its value on the next. No tool's help has a line ending in a flag that takes a value
/// (ncf-plot's own: tests/report.rs).
#[test]
fn help_examples_are_whole_lines_in_every_tool() {
    for tool in [
        "ncf-prep",
        "ncf-negsample",
        "ncf-train",
        "ncf-eval",
        "ncf-topk",
    ] {
        let out = run(Path::new("."), tool, &["--help"]);
        let help = String::from_utf8_lossy(&out.stdout);
        for line in help.lines() {
            let l = line.trim_end();
            assert!(
                !(l.ends_with(" -o") || l.ends_with(" --output")),
                "{tool} --help: a line ends in a flag without its value: {line:?}"
            );
        }
    }
}
