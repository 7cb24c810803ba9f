//! Bad input and faults as a new user meets them (issue 24), through the real binaries: `--force`
//! replaces only what ncf wrote, an output is claimed by one run at a time, empty or nonsensical
//! input and flags are refused, Windows files and gzip are read, binary input is named by its kind
//! and offset, and the temp directories of dead runs are cleaned up. One test per numbered case
//! of the issue, and one that puts a foreign file at every output that takes `--force`.

mod common;

use common::{bin, fails, ok, repo_root, run};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A model of a few hundred parameters, one epoch, one thread: each run takes well under a second.
const TRAIN: &[&str] = &[
    "--epochs",
    "1",
    "--batch-size",
    "8192",
    "--factors",
    "4",
    "--layers",
    "8,4",
    "--threads",
    "1",
    "--quiet",
];

/// What the user wrote, that ncf must never delete.
const FOREIGN: &[u8] = b"the user's own file, not written by ncf\n";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The bundled ml-latest-small ratings (CRLF line ends, as GroupLens ships them).
fn ratings() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let p = repo_root().join("data/ml-latest-small/ratings.csv");
        p.to_str().unwrap().to_string()
    })
}

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// ml-latest-small prepared, with 20 test negatives per user.
    ds: PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let ds = root.join("ds");
    ok(&root, "ncf-prep", &[ratings(), "-o", s(&ds), "-q"]);
    ok(&root, "ncf-negsample", &[s(&ds), "--test-negatives", "20"]);
    Env {
        _dir: dir,
        root,
        ds,
    }
}

/// Train the small model to `model` (extra flags after the defaults).
fn train(e: &Env, model: &Path, extra: &[&str]) -> String {
    let mut a = vec![s(&e.ds), "-o", s(model), "--no-checkpoint"];
    a.extend_from_slice(TRAIN);
    a.extend_from_slice(extra);
    ok(&e.root, "ncf-train", &a)
}

fn fingerprint(ds: &Path) -> String {
    let meta: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(ds.join("meta.json")).unwrap()).unwrap();
    meta["fingerprint"].as_str().unwrap().to_string()
}

fn assert_foreign(path: &Path) {
    assert_eq!(
        fs::read(path).ok().as_deref(),
        Some(FOREIGN),
        "{}: the user's file was deleted or changed",
        path.display()
    );
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

/// `sh -c script` in `dir` with the tools' directory first on PATH.
fn shell(dir: &Path, script: &str) -> std::process::Output {
    let tools = bin("ncf-eval").parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        tools.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .args(["-c", script])
        .env("PATH", path)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Case 3: `ncf-eval ds --ranked - </dev/null` gave rc 0 and HR 0, and so did a failed
/// `ncf-topk` before the pipe. An input without a ranked line is now an error; a list that
/// leaves test users out says how many.
#[test]
fn case03_an_empty_or_failed_ranked_list_is_an_error() {
    let e = env();
    let ds = s(&e.ds);
    let out = shell(&e.root, &format!("ncf-eval {ds} --ranked - </dev/null"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("<stdin>: no ranked lines"), "{err}");
    assert!(err.contains("pipefail"), "{err}");
    assert!(out.stdout.is_empty(), "a result was printed");
    // ncf-topk fails (no such model) before it prints a line: no result either
    let out = shell(
        &e.root,
        &format!("ncf-topk {ds} missing.safetensors --all -k 5 | ncf-eval {ds} --ranked -"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("missing.safetensors"), "{err}");
    assert!(err.contains("no ranked lines"), "{err}");
    // a file with the header only is empty too
    fs::write(e.root.join("header.tsv"), "user\trank\titem\n").unwrap();
    let err = fails(&e.root, "ncf-eval", &[ds, "--ranked", "header.tsv"]);
    assert!(err.contains("header.tsv: no ranked lines"), "{err}");
    // a list for one user is evaluated, and says that the others count as misses
    let model = e.root.join("m.st");
    train(&e, &model, &[]);
    let out = shell(
        &e.root,
        &format!("set -o pipefail; ncf-topk {ds} m.st 1 -k 10 | ncf-eval {ds} --ranked -"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("<stdin> lists 1 of the 610 test users; the other 609 count as misses"),
        "{err}"
    );
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

/// The bundled ratings with LF line ends (the file itself has CRLF).
fn ratings_lf() -> Vec<u8> {
    let crlf = fs::read(ratings()).unwrap();
    String::from_utf8(crlf)
        .unwrap()
        .replace("\r\n", "\n")
        .into_bytes()
}

/// Case 5: Windows line ends (CRLF, and `\r\r\n` from a file converted twice) and a UTF-8 BOM
/// were refused with messages that hid the `\r` / BOM; gzip was not recognised and binary input
/// was dumped to the terminal as a "header". Now CRLF, BOM and gzip give the same dataset as the
/// plain file, and binary input is named by its kind or the offset of its first binary byte.
#[test]
fn case05_windows_files_and_gzip_are_read_and_binary_is_named() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let lf = ratings_lf();
    let text = String::from_utf8(lf.clone()).unwrap();
    let gz = {
        use std::io::Write;
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&lf).unwrap();
        z.finish().unwrap()
    };
    let variants: Vec<(&str, Vec<u8>)> = vec![
        ("lf.csv", lf.clone()),
        ("crlf.csv", text.replace('\n', "\r\n").into_bytes()),
        ("crcrlf.csv", text.replace('\n', "\r\r\n").into_bytes()),
        ("bom.csv", [&b"\xef\xbb\xbf"[..], &lf].concat()),
        (
            "bom-crlf.csv",
            [&b"\xef\xbb\xbf"[..], text.replace('\n', "\r\n").as_bytes()].concat(),
        ),
        ("ratings.csv.gz", gz.clone()),
    ];
    let mut fingerprints = Vec::new();
    for (name, bytes) in &variants {
        fs::write(root.join(name), bytes).unwrap();
        let out = format!("ds-{name}");
        ok(root, "ncf-prep", &[name, "-o", &out, "-q"]);
        fingerprints.push((name, fingerprint(&root.join(&out))));
    }
    for (name, fp) in &fingerprints {
        assert_eq!(fp, &fingerprints[0].1, "{name} gave another dataset");
    }
    // gzip through stdin too
    let out = shell(root, "ncf-prep - -o ds-stdin -q < ratings.csv.gz");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fingerprint(&root.join("ds-stdin")), fingerprints[0].1);
    // a damaged gzip says so
    fs::write(root.join("cut.csv.gz"), &gz[..gz.len() / 2]).unwrap();
    let err = fails(root, "ncf-prep", &["cut.csv.gz", "-o", "x"]);
    assert!(err.contains("cut.csv.gz: gzip: cannot decompress"), "{err}");
    // binary input: its kind or offset, never its bytes
    let elf: Vec<u8> = fs::read(bin("ncf-prep")).unwrap()[..4096].to_vec();
    fs::write(root.join("elf.csv"), &elf).unwrap();
    let mut nul = lf[..5000].to_vec();
    let at = nul.len();
    nul.extend_from_slice(b"\0\0\0\x07junk");
    fs::write(root.join("nul.csv"), &nul).unwrap();
    fs::write(root.join("utf16.csv"), b"\xff\xfeu\0s\0e\0r\0").unwrap();
    for (name, want) in [
        (
            "elf.csv",
            "elf.csv: this is an ELF executable, not a text ratings file".to_string(),
        ),
        (
            "nul.csv",
            format!("nul.csv: this is binary data (byte 0x00 at offset {at})"),
        ),
        ("utf16.csv", "utf16.csv: this is UTF-16 text".to_string()),
    ] {
        let out = run(root, "ncf-prep", &[name, "-o", "x"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&want), "{err}");
        assert!(!out.stderr.contains(&0), "NUL bytes on the terminal: {err}");
        assert!(
            out.stderr.len() < 400,
            "{} bytes of message: {err}",
            out.stderr.len()
        );
    }
    // a bad value shows its control characters instead of hiding them
    fs::write(
        root.join("bad.csv"),
        "userId,movieId,rating,timestamp\n1,2,4.0,9x\r7\n",
    )
    .unwrap();
    let err = fails(root, "ncf-prep", &["bad.csv", "-o", "x"]);
    assert!(err.contains("found `9x\\r7`"), "{err}");
}

/// Case 6: `ncf-eval A B --weights=0,0` and `--weights=-1` were accepted (HR 0, an inverted
/// model). Now weights must be ≥ 0 with at least one > 0.
#[test]
fn case06_ensemble_weights_must_be_non_negative_and_not_all_zero() {
    let e = env();
    train(&e, &e.root.join("a.st"), &[]);
    train(&e, &e.root.join("b.st"), &["--seed", "2"]);
    let ds = s(&e.ds);
    let err = fails(&e.root, "ncf-eval", &[ds, "a.st", "b.st", "--weights=0,0"]);
    assert!(err.contains("--weights 0,0: all zero"), "{err}");
    let err = fails(&e.root, "ncf-eval", &[ds, "a.st", "--weights=-1"]);
    assert!(err.contains("--weights -1: a negative weight"), "{err}");
    let err = fails(
        &e.root,
        "ncf-eval",
        &[ds, "a.st", "b.st", "--weights=0.5,-0.5"],
    );
    assert!(
        err.contains("--weights 0.5,-0.5: a negative weight"),
        "{err}"
    );
    ok(&e.root, "ncf-eval", &[ds, "a.st", "b.st", "--weights=1,0"]);
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

/// Case 10: a file not listed in SHA256SUMS inside a dataset was accepted, contrary to
/// docs/RELIABILITY.md. Now every reader refuses it, naming the file.
#[test]
fn case10_a_file_not_in_sha256sums_is_refused() {
    let e = env();
    train(&e, &e.root.join("m.st"), &[]);
    fs::write(e.ds.join("extra.parquet"), b"not ours").unwrap();
    let ds = s(&e.ds);
    let want = "ds/extra.parquet: not listed in SHA256SUMS";
    let mut a = vec![ds, "-o", "n.st", "--no-checkpoint"];
    a.extend_from_slice(TRAIN);
    for (tool, args) in [
        ("ncf-eval", vec![ds, "m.st"]),
        ("ncf-topk", vec![ds, "m.st", "1"]),
        ("ncf-train", a),
        ("ncf-negsample", vec![ds, "--epoch", "0", "-o", "e.tsv"]),
    ] {
        let err = fails(&e.root, tool, &args);
        assert!(err.contains(want), "{tool}: {err}");
    }
    fs::remove_file(e.ds.join("extra.parquet")).unwrap();
    ok(&e.root, "ncf-eval", &[ds, "m.st"]);
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
