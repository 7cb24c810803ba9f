//! Helpers shared by the integration tests: run a real binary in a temp dir, print everything on failure.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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

/// A model of a few hundred parameters, one thread: an epoch of ml-latest-small takes a fraction
/// of a second.
pub const TINY_MODEL: &[&str] = &[
    "--factors",
    "4",
    "--layers",
    "8,4",
    "--batch-size",
    "8192",
    "--threads",
    "1",
    "--quiet",
];

pub fn bin(name: &str) -> PathBuf {
    let var = format!("CARGO_BIN_EXE_{name}");
    PathBuf::from(
        std::env::var(&var).unwrap_or_else(|_| panic!("{var} not set: run through cargo test")),
    )
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
