//! Data-parallel CPU training with the real `ncf-train` on ml-100k, ranks started by
//! `mpirun -np N` (their collectives go over MPI, issue 34). Strong scaling is exact: N ranks × 1
//! thread split every batch the way 1 rank × N threads does. CPU ranks started torchrun-style
//! (RANK / WORLD_SIZE) are refused with a message that says to use mpirun.

mod common;

use common::*;
use ncf_core::model::file as modelfile;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const FLAGS: &[&str] = small_model![
    "--epochs",
    "2",
    "--batch-size",
    "8192",
    "--dropout",
    "0",
    "--lr",
    "0.002",
    "--quiet",
    "--no-checkpoint",
];

/// Many small steps, so that a kill or a signal lands mid-training; a short rendezvous timeout.
const LONG_RUN: &[&str] = &[
    "--batch-size",
    "512",
    "--epochs",
    "20",
    "--rendezvous-timeout",
    "5",
];

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    /// The 1-rank runs with 2 and 3 threads: model file and stdout.
    singles: [OnceLock<(PathBuf, String)>; 2],
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let (dir, root, data) = ml100k_tempdir(50);
        Fixture {
            _dir: dir,
            root,
            data,
            singles: [OnceLock::new(), OnceLock::new()],
        }
    })
}

impl Fixture {
    /// The 1-rank run with `threads` (2 or 3) threads.
    fn single(&self, threads: usize) -> &(PathBuf, String) {
        self.singles[threads - 2].get_or_init(|| {
            let model = self.root.join(format!("single-{threads}.safetensors"));
            let t = threads.to_string();
            let mut a = vec![s(&self.data), "-o", s(&model), "--threads", &t];
            a.extend_from_slice(FLAGS);
            // 3 threads on a 2-core machine: allowed on request, as mpirun --oversubscribe does
            // for the 3 ranks compared with this run.
            let out = run_with(
                &self.root,
                "ncf-train",
                &a,
                &[("NCF_OVERSUBSCRIBE", "1")],
                b"",
            );
            assert!(out.status.success(), "{}", describe("ncf-train", &a, &out));
            (model, String::from_utf8_lossy(&out.stdout).into_owned())
        })
    }
}

/// Whether the ranks can run under mpirun: this build has MPI (cargo feature `mpi`, which `make`
/// turns on when an MPI is installed) and mpirun is on the PATH. Otherwise the test says why it
/// skips — unless NCF_REQUIRE_MPI is set (CI's .ci/run sets it), where it fails.
pub fn mpi_ready() -> bool {
    let why = if !cfg!(feature = "mpi") {
        "built without the cargo feature mpi (make turns it on when Open MPI is installed)"
    } else if Command::new("mpirun").arg("--version").output().is_err() {
        "mpirun not found (apt-get install openmpi-bin)"
    } else {
        return true;
    };
    assert!(
        std::env::var_os("NCF_REQUIRE_MPI").is_none(),
        "NCF_REQUIRE_MPI is set, but {why}"
    );
    eprintln!("skipping the mpirun launch: {why}");
    false
}

/// `mpirun -np N` (oversubscribed, allowed as root) of `ncf-train` on the fixture's data, one
/// thread per rank, writing `model`.
fn mpirun(f: &Fixture, np: usize, model: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "-np",
        &np.to_string(),
    ])
    .arg(bin("ncf-train"))
    .arg(&f.data)
    .arg("-o")
    .arg(model)
    .args(FLAGS)
    .args(["--threads", "1"])
    .args(extra)
    .current_dir(&f.root);
    c
}

/// A fresh model path in the fixture's directory.
fn model_path(f: &Fixture, name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let k = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    f.root.join(format!("{name}-{k}.safetensors"))
}

/// The pid of MPI rank `rank` among the children of mpirun `launcher` (waits until it exists).
fn rank_pid(launcher: u32, rank: usize) -> u32 {
    let t0 = Instant::now();
    loop {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // "pid (comm) state ppid ...": the fields after the last ')'.
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|t| t.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid != Some(launcher) {
                continue;
            }
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let want = format!("OMPI_COMM_WORLD_RANK={rank}");
            if env.split(|&b| b == 0).any(|v| v == want.as_bytes()) {
                return pid;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no rank {rank} under mpirun"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait for `child` at most `limit`; its output.
fn wait_within(mut child: Child, limit: Duration) -> (Output, Duration) {
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().unwrap(), t0.elapsed())
}

fn last_json(log: &str) -> serde_json::Value {
    serde_json::from_str(log.lines().last().expect("a summary line")).unwrap()
}

/// `np` ranks under mpirun wrote `model` and reported `out`: the same model bytes and the same
/// HR/NDCG as 1 rank with `np` threads.
fn check_same_result(f: &Fixture, np: usize, model: &Path, out: &Output) {
    assert!(out.status.success(), "{}", describe("mpirun", &[], out));
    let (single, single_log) = f.single(np);
    let (ma, _) = modelfile::load(model).unwrap();
    let (mb, _) = modelfile::load(single).unwrap();
    assert_eq!(ma.config, mb.config);
    assert!(
        ma.params
            .iter()
            .map(|v| v.to_bits())
            .eq(mb.params.iter().map(|v| v.to_bits())),
        "{np} ranks trained other parameters than 1 rank with {np} threads"
    );
    let (a, b) = (
        last_json(&String::from_utf8_lossy(&out.stdout)),
        last_json(single_log),
    );
    for key in ["best_hr", "best_ndcg", "best_epoch"] {
        assert_eq!(a[key], b[key], "{key}");
    }
    let backend = a["backend"].as_str().unwrap();
    assert!(backend.contains(&format!("{np} ranks over mpi")), "{a}");
}

#[test]
fn mpirun_two_and_three_ranks_equal_one_rank_with_as_many_threads() {
    if !mpi_ready() {
        return;
    }
    let f = fixture();
    for np in [2, 3] {
        let model = model_path(f, &format!("np{np}"));
        let out = mpirun(f, np, &model, &[]).output().unwrap();
        check_same_result(f, np, &model, &out);
    }
}

#[test]
fn every_rank_prints_the_same_parameter_checksum() {
    // The line the GPU check compares across CUDA ranks (scripts/device-check.sh, nccl_2rank),
    // read by its own parser.
    if !mpi_ready() {
        return;
    }
    let f = fixture();
    let model = model_path(f, "sums");
    let out = mpirun(f, 2, &model, &[]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let mut sums = ncf_devcheck::judge::checksums(&err);
    sums.sort();
    assert_eq!(sums.len(), 2, "{err}");
    assert_eq!((sums[0].0, sums[1].0, sums[0].1), (0, 1, 2));
    assert_eq!(sums[0].2, sums[1].2, "{err}");
    assert_eq!(sums[0].2.len(), 64);
    // It is the model's: the file rank 0 wrote holds the same parameters.
    let (m, _) = modelfile::load(&model).unwrap();
    let last = last_json(&String::from_utf8_lossy(&out.stdout));
    if last["best_epoch"] == last["epochs_run"].as_u64().unwrap() - 1 {
        assert_eq!(modelfile::params_sha256(&m.params), sums[0].2);
    }
}

#[test]
fn a_killed_rank_ends_the_job_with_its_name() {
    // Open MPI's mpirun sees rank 1 die and ends the job: it names the rank, kills the others
    // and exits non-zero (docs/DISTRIBUTED.md, "A dying rank").
    if !mpi_ready() {
        return;
    }
    let f = fixture();
    let model = model_path(f, "killed");
    let job = mpirun(f, 2, &model, LONG_RUN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let one = rank_pid(job.id(), 1);
    std::thread::sleep(Duration::from_millis(1500));
    let st = Command::new("kill")
        .args(["-KILL", &one.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let (out, took) = wait_within(job, Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("process rank 1 with PID") && err.contains("signal 9"),
        "mpirun does not name the dead rank: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    eprintln!("mpirun ended the job {took:?} after rank 1 was killed");
    // mpirun SIGKILLs rank 0 while it waits in a collective: its output lock `.NAME.lock` may
    // stay, harmless by design (the kernel released the flock; the next run takes the file over,
    // crate::io::OutputLock). No partly written output may stay.
    let name = model.file_name().unwrap().to_string_lossy().into_owned();
    let tmp: Vec<_> = std::fs::read_dir(&f.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.contains(&name) && !n.ends_with(".lock"))
        .collect();
    assert!(tmp.is_empty(), "half-written files: {tmp:?}");
    if model.exists() {
        modelfile::load(&model).expect("any model file left is whole");
    }
}

#[test]
fn a_signal_to_one_rank_stops_every_rank_at_the_same_step() {
    if !mpi_ready() {
        return;
    }
    let f = fixture();
    let model = model_path(f, "signal");
    let job = mpirun(f, 2, &model, LONG_RUN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let one = rank_pid(job.id(), 1);
    std::thread::sleep(Duration::from_millis(1500));
    // Only rank 1 is told to stop: the ranks agree before every step, so rank 0 stops too (with
    // the checkpoint only it writes) at the same step.
    let st = Command::new("kill")
        .args(["-INT", &one.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let (out, took) = wait_within(job, Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        took < Duration::from_secs(4),
        "the ranks waited: {took:?}: {err}"
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Both ranks say "stopped by a signal before epoch E step S", at the same step.
    let at: Vec<&str> = err
        .match_indices("stopped by a signal")
        .map(|(k, _)| {
            let rest = &err[k..];
            let b = rest.find("before epoch").expect("position in the message");
            rest[b..].split(':').next().unwrap()
        })
        .collect();
    assert_eq!(at.len(), 2, "{err}");
    assert_eq!(at[0], at[1], "{err}");
}

#[test]
fn a_rank_with_another_configuration_is_refused_at_start() {
    if !mpi_ready() {
        return;
    }
    let f = fixture();
    let model = model_path(f, "mismatch");
    // MPMD: rank 0 with the common flags, rank 1 with another learning rate.
    let mut c = mpirun(f, 1, &model, &[]);
    c.arg(":")
        .args(["-np", "1"])
        .arg(bin("ncf-train"))
        .arg(&f.data);
    c.arg("-o")
        .arg(&model)
        .args(FLAGS)
        .args(["--threads", "1", "--lr", "0.01"]);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("rank 0: rank 1 runs another configuration"),
        "{err}"
    );
    assert!(err.contains("rank 1: refused by rank 0"), "{err}");
    assert!(!model.exists());
}

#[test]
fn cpu_ranks_started_without_mpi_are_told_to_use_mpirun() {
    let f = fixture();
    let model = model_path(f, "torchrun");
    let out = Command::new(bin("ncf-train"))
        .arg(&f.data)
        .arg("-o")
        .arg(&model)
        .args(FLAGS)
        .env("RANK", "0")
        .env("WORLD_SIZE", "2")
        .current_dir(&f.root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("rank 0 of 2 (RANK/WORLD_SIZE): CPU ranks exchange their gradients over MPI")
            && err.contains("mpirun -np 2 ncf-train"),
        "{err}"
    );
    assert!(!model.exists());
}
