//! Helpers and fixtures shared by the process tests: run a real binary in a temp dir, print
//! everything on failure; ml-latest-small prepared once per test binary; the small models' flags.
//!
//! Where the tests are (each file runs the real binaries, each test in its own temp dir):
//!
//! | file | what it tests |
//! |---|---|
//! | `pipeline.rs` | the tools end to end on ml-100k: prep → negsample → train → eval → topk, the sampler seen from outside, usage errors |
//! | `prep.rs` | ncf-prep: every input format read, what it refuses in its input (bad lines, binary, gzip, Windows files, Parquet, the authors' split, memory) |
//! | `flags.rs` | ncf-train and ncf-negsample: requests refused before any work (impossible flags, sizes over memory, an invalid NCF_MEMORY_LIMIT in every tool, the rendezvous) |
//! | `scoring.rs` | ncf-eval and ncf-topk: ids as given, ranked lists, ensembles, NaN scores, the device asked for |
//! | `outputs.rs` | what a run writes and how it ends: outputs claimed, `--force`, locks, temps, links, logs, signals, a closed stdout |
//! | `corrupt.rs` | damaged files fed to every reader: truncated, bit-flipped, wrong schema, not in SHA256SUMS |
//! | `models.rs` | the model families through ncf-train: GMF, MLP, pre-trained NeuMF, MF, iALS, EASE |
//! | `resume.rs` | checkpoints and exact resume; paper-grid.sh and paper-tune.sh |
//! | `dist.rs` | data-parallel CPU ranks |
//! | `cuda_host.rs` | the CUDA backend on the host device through the tools (stand-in NCCL) |
//! | `docs.rs` | `--help`, man pages, completions, install.sh |
//! | `report.rs` | ncf-plot and ncf-bench-report (crate ncf-report) |
//! | `device.rs` | the GPU check's script without a GPU (crate ncf-devcheck) |
//!
//! The libraries' own tests are in their crates: unit tests in `src/`, and
//! `crates/ncf-cuda/tests/` (NVRTC, ptxas, the GPU, the kernel emulator, the host device) and
//! `crates/ncf-nccl-host/tests/`.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// `../shared/datasets` seen from the repository root (tests read licensed data from there).
pub fn shared_datasets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets")
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A path as the `&str` argument of a command.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The bundled ml-latest-small ratings.
pub fn ratings_csv() -> String {
    s(&repo_root().join("data/ml-latest-small/ratings.csv")).to_string()
}

/// The flags given followed by the tiny model's: a few hundred parameters, one thread; an epoch
/// of ml-latest-small takes a fraction of a second. A `&[&str]` ([`TINY_MODEL`], [`TINY_EPOCH`]).
macro_rules! tiny_model {
    ($($flag:literal),*) => {
        &[$($flag,)* "--factors", "4", "--layers", "8,4", "--batch-size", "8192", "--threads", "1", "--quiet"]
    };
}

/// The flags given followed by those of a NeuMF with 8 factors and MLP layers 32,16,8 (a few
/// thousand parameters on ml-100k). A `&[&str]`.
#[allow(unused_macros)]
macro_rules! small_model {
    ($($flag:literal),* $(,)?) => {
        &[$($flag,)* "--factors", "8", "--layers", "32,16,8"]
    };
}
#[allow(unused_imports)]
pub(crate) use small_model;

/// A model of a few hundred parameters, one thread: an epoch of ml-latest-small takes a fraction
/// of a second.
pub const TINY_MODEL: &[&str] = tiny_model!();

/// One epoch of [`TINY_MODEL`] (the run checkpoints as usual).
pub const TINY_EPOCH: &[&str] = tiny_model!("--epochs", "1");

/// [`TINY_EPOCH`]'s epoch without a checkpoint, to go with [`TINY_MODEL`].
pub const ONE_EPOCH: &[&str] = &["--epochs", "1", "--no-checkpoint"];

/// What the user wrote, that ncf must never replace or delete.
pub const FOREIGN: &[u8] = b"the user's own file, not written by ncf\n";

/// A binary of this test's package (`CARGO_BIN_EXE_<name>`), else of another package of the
/// workspace, found beside this test's executable in the target directory: `cargo test
/// --workspace` (`make test`) builds every package's binaries before it runs a test.
pub fn bin(name: &str) -> PathBuf {
    if let Ok(p) = std::env::var(format!("CARGO_BIN_EXE_{name}")) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let p = exe.parent().and_then(Path::parent).map(|d| d.join(name));
    match p {
        Some(p) if p.is_file() => p,
        _ => panic!(
            "{name}: not a binary of this package and not built beside {} (cargo build --workspace)",
            exe.display()
        ),
    }
}

/// Run `name args...` in `dir`; returns the output without judging it.
pub fn run(dir: &Path, name: &str, args: &[&str]) -> Output {
    Command::new(bin(name))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("spawn")
}

/// `name args...` in `dir` with `env` set and `stdin` fed in (empty: an empty stdin).
pub fn run_with(
    dir: &Path,
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &[u8],
) -> Output {
    let mut child = Command::new(bin(name))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // A tool that fails (or stops reading) before the end closes the pipe: no error here.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

pub fn describe(name: &str, args: &[&str], out: &Output) -> String {
    format!(
        "command: {name} {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The JSON values of a JSON-lines text (a training log, runs.jsonl).
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `run_with` that requires exit `code` and no panic; returns (stdout, stderr).
pub fn expect(
    code: i32,
    dir: &Path,
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &[u8],
) -> (String, String) {
    let out = run_with(dir, name, args, env, stdin);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}\n{}",
        describe(name, args, &out)
    );
    assert!(!err.contains("panicked"), "{}", describe(name, args, &out));
    (String::from_utf8_lossy(&out.stdout).into_owned(), err)
}

/// Run and require exit 0; returns stdout.
pub fn ok(dir: &Path, name: &str, args: &[&str]) -> String {
    let out = run(dir, name, args);
    assert!(
        out.status.success(),
        "expected success\n{}",
        describe(name, args, &out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run and require exit 1 with no panic; returns stderr.
pub fn fails(dir: &Path, name: &str, args: &[&str]) -> String {
    let out = run(dir, name, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1\n{}",
        describe(name, args, &out)
    );
    assert!(
        !err.contains("panicked"),
        "panicked\n{}",
        describe(name, args, &out)
    );
    err
}

/// ml-latest-small prepared once per test binary (`ds` in a temp dir), with 20 test negatives per
/// user. Shared: copy it ([`scratch`]) to change it.
pub fn prepared() -> &'static Path {
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

/// A scratch directory holding a copy of the [`prepared`] dataset as `ds`.
pub struct Scratch {
    pub _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub ds: PathBuf,
}

pub fn scratch() -> Scratch {
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

/// A copy of the files of `from` (a dataset directory) in `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// `ncf-train ds -o model` with the tiny model, `epochs` epochs, and `extra` flags.
pub fn train_args<'a>(
    ds: &'a Path,
    model: &'a str,
    epochs: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut a = vec![s(ds), "-o", model, "--epochs", epochs];
    a.extend_from_slice(TINY_MODEL);
    a.extend_from_slice(extra);
    a
}

/// A dataset's meta.json.
pub fn meta(ds: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(ds.join("meta.json")).unwrap()).unwrap()
}

/// The names in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    n.sort();
    n
}

/// The names in `dir` that are ncf's lock or temp files, sorted.
pub fn leftovers(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.ends_with(".lock") || n.contains(".tmp-") || n.contains(".old-"))
        .collect()
}

/// The exit status and stderr of `child` once it ends.
pub fn wait_output(child: std::process::Child) -> (std::process::ExitStatus, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Train [`TINY_EPOCH`] on the scratch dataset to `model` (`extra` flags after the defaults).
pub fn train(e: &Scratch, model: &Path, extra: &[&str]) -> String {
    let mut a = vec![s(&e.ds), "-o", s(model), "--no-checkpoint"];
    a.extend_from_slice(TINY_EPOCH);
    a.extend_from_slice(extra);
    ok(&e.root, "ncf-train", &a)
}

/// ml-latest-small with 20 test negatives per user in `dir/ds` (a copy of [`prepared`]).
pub fn small(dir: &Path) -> &'static str {
    copy_dir(prepared(), &dir.join("ds"));
    "ds"
}

/// A dataset's fingerprint (its meta.json's).
pub fn fingerprint(ds: &Path) -> String {
    meta(ds)["fingerprint"].as_str().unwrap().to_string()
}

/// `path` still holds [`FOREIGN`]: ncf left the user's file alone.
pub fn assert_foreign(path: &Path) {
    assert_eq!(
        fs::read(path).ok().as_deref(),
        Some(FOREIGN),
        "{}: the user's file was deleted or changed",
        path.display()
    );
}

/// `bash -c script` in `dir` with the tools' directory first on PATH.
pub fn shell(dir: &Path, script: &str) -> Output {
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

/// `out` exited 1 with no panic; its stderr.
pub fn failed(name: &str, args: &[&str], out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{}", describe(name, args, out));
    assert!(!err.contains("panicked"), "{}", describe(name, args, out));
    err
}

/// ml-100k from ../shared prepared into `root/ml100k` with `negatives` test negatives per user.
pub fn ml100k_dataset(root: &Path, negatives: usize) -> PathBuf {
    let data = root.join("ml100k");
    let u_data = shared_datasets().join("ml-100k/u.data");
    let (u, d) = (u_data.to_str().unwrap(), data.to_str().unwrap());
    ok(root, "ncf-prep", &[u, "-o", d]);
    ok(
        root,
        "ncf-negsample",
        &[d, "--test-negatives", &negatives.to_string()],
    );
    data
}

/// A new temp dir holding ml-100k prepared as `ml100k` with `negatives` test negatives per user:
/// the dir (removed when dropped), its path and the dataset's.
pub fn ml100k_tempdir(negatives: usize) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let data = ml100k_dataset(&root, negatives);
    (dir, root, data)
}

/// A tmpfs of `size` mounted at `dir` until dropped (tests that need a full disk; needs root).
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                dir.to_str().unwrap(),
            ])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|st| st.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }

    /// Fill it up but for `room` bytes.
    pub fn fill(&self, room: u64) {
        let st = std::process::Command::new("df")
            .args(["-B1", "--output=avail", self.0.to_str().unwrap()])
            .output()
            .unwrap();
        let avail: u64 = String::from_utf8_lossy(&st.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let n = avail.saturating_sub(room) as usize;
        let _ = std::fs::write(self.0.join("fill"), vec![0u8; n]);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}
