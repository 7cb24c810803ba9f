//! Data-parallel CPU training with the real `ncf-train` on ml-100k: ranks started the way
//! torchrun does (RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT), and by `mpirun -np 2` when
//! OpenMPI is installed. Strong scaling is exact: 2 ranks × 1 thread split every batch the way
//! 1 rank × 2 threads does.

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
    /// The 1-rank, 2-thread run.
    single: PathBuf,
    single_log: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let (dir, root, data) = ml100k_tempdir(50);
        let single = root.join("single.safetensors");
        let mut a = vec![s(&data), "-o", s(&single), "--threads", "2"];
        a.extend_from_slice(FLAGS);
        let single_log = ok(&root, "ncf-train", &a);
        Fixture {
            _dir: dir,
            root,
            data,
            single,
            single_log,
        }
    })
}

fn free_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port().to_string()
}

/// Rank `rank` of `world`, torchrun-style environment.
fn spawn_rank(f: &Fixture, rank: usize, world: usize, port: &str, extra: &[&str]) -> Child {
    Command::new(bin("ncf-train"))
        .arg(&f.data)
        .arg("-o")
        .arg(f.root.join(format!("ranks-{port}.safetensors")))
        .args(FLAGS)
        .args(["--threads", "1"])
        .args(extra)
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port)
        .current_dir(&f.root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn last_json(log: &str) -> serde_json::Value {
    serde_json::from_str(log.lines().last().expect("a summary line")).unwrap()
}

/// Per tensor: max |a − b| / max |b| ≤ 1e-5.
fn assert_weights_close(a: &Path, b: &Path) {
    let (ma, _) = modelfile::load(a).unwrap();
    let (mb, _) = modelfile::load(b).unwrap();
    assert_eq!(ma.config, mb.config);
    for t in &mb.layout.tensors {
        let (x, y) = (&ma.params[t.range()], &mb.params[t.range()]);
        let scale = y.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
        let diff = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            diff / scale <= 1e-5,
            "{}: relative difference {}",
            t.name,
            diff / scale
        );
    }
}

fn check_same_result(f: &Fixture, model: &Path, rank0: &Output) {
    assert!(rank0.status.success(), "{}", describe("rank 0", &[], rank0));
    assert_weights_close(model, &f.single);
    let (a, b) = (
        last_json(&String::from_utf8_lossy(&rank0.stdout)),
        last_json(&f.single_log),
    );
    for key in ["best_hr", "best_ndcg", "best_epoch"] {
        assert_eq!(a[key], b[key], "{key}");
    }
    assert!(a["backend"].as_str().unwrap().contains("2 ranks"), "{a}");
}

#[test]
fn two_ranks_equal_one_rank_with_two_threads() {
    let f = fixture();
    let port = free_port();
    let r1 = spawn_rank(f, 1, 2, &port, &[]);
    let r0 = spawn_rank(f, 0, 2, &port, &[]).wait_with_output().unwrap();
    let o1 = r1.wait_with_output().unwrap();
    assert!(o1.status.success(), "{}", describe("rank 1", &[], &o1));
    assert!(o1.stdout.is_empty(), "only rank 0 reports");
    check_same_result(f, &f.root.join(format!("ranks-{port}.safetensors")), &r0);
}

#[test]
fn every_rank_prints_the_same_parameter_checksum() {
    // The line the GPU check compares across CUDA ranks (scripts/device-check.sh, nccl_2rank),
    // read by its own parser.
    let f = fixture();
    let port = free_port();
    let r1 = spawn_rank(f, 1, 2, &port, &[]);
    let o0 = spawn_rank(f, 0, 2, &port, &[]).wait_with_output().unwrap();
    let o1 = r1.wait_with_output().unwrap();
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&o0.stderr),
        String::from_utf8_lossy(&o1.stderr)
    );
    assert!(o0.status.success() && o1.status.success(), "{err}");
    let mut sums = ncf_devcheck::judge::checksums(&err);
    sums.sort();
    assert_eq!(sums.len(), 2, "{err}");
    assert_eq!((sums[0].0, sums[1].0, sums[0].1), (0, 1, 2));
    assert_eq!(sums[0].2, sums[1].2, "{err}");
    assert_eq!(sums[0].2.len(), 64);
    // It is the model's: the file rank 0 wrote holds the same parameters.
    let (m, _) = modelfile::load(&f.root.join(format!("ranks-{port}.safetensors"))).unwrap();
    let last = last_json(&String::from_utf8_lossy(&o0.stdout));
    if last["best_epoch"] == last["epochs_run"].as_u64().unwrap() - 1 {
        assert_eq!(modelfile::params_sha256(&m.params), sums[0].2);
    }
}

#[test]
fn a_killed_rank_ends_the_others_with_its_name() {
    let f = fixture();
    let port = free_port();
    let extra = LONG_RUN;
    let mut r0 = spawn_rank(f, 0, 2, &port, extra);
    let mut r1 = spawn_rank(f, 1, 2, &port, extra);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(r1.try_wait().unwrap().is_none(), "rank 1 ended early");
    r1.kill().unwrap();
    r1.wait().unwrap();
    let t0 = Instant::now();
    let out = loop {
        if r0.try_wait().unwrap().is_some() {
            break r0.wait_with_output().unwrap();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "rank 0 did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("rank 1"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let model = f.root.join(format!("ranks-{port}.safetensors"));
    let tmp: Vec<_> = std::fs::read_dir(&f.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.contains(&port))
        .collect();
    assert!(tmp.is_empty(), "half-written files: {tmp:?}");
    if model.exists() {
        modelfile::load(&model).expect("any model file left is whole");
    }
}

#[test]
fn a_signal_to_one_rank_stops_every_rank_at_the_same_step() {
    let f = fixture();
    let port = free_port();
    let extra = LONG_RUN;
    let r0 = spawn_rank(f, 0, 2, &port, extra);
    let r1 = spawn_rank(f, 1, 2, &port, extra);
    std::thread::sleep(Duration::from_millis(1500));
    // Only rank 1 is told to stop: the ranks agree before every step, so rank 0 stops too (with
    // the checkpoint only it writes) instead of waiting for rank 1 until the timeout.
    let st = Command::new("kill")
        .args(["-INT", &r1.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let t0 = Instant::now();
    let (o0, o1) = (
        r0.wait_with_output().unwrap(),
        r1.wait_with_output().unwrap(),
    );
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "the ranks waited for a timeout"
    );
    for (r, o) in [(0, &o0), (1, &o1)] {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "rank {r}: {err}");
        assert!(err.contains("stopped by a signal"), "rank {r}: {err}");
        assert!(!err.contains("panicked"), "rank {r}: {err}");
    }
    // The same step on both: "stopped by a signal before epoch E step S".
    let at = |o: &Output| {
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let k = err.find("before epoch").expect("position in the message");
        err[k..].split(':').next().unwrap().to_string()
    };
    assert_eq!(at(&o0), at(&o1));
}

#[test]
fn mismatched_ranks_and_missing_ranks_are_refused_at_start() {
    let f = fixture();
    let port = free_port();
    let mut r1 = spawn_rank(f, 1, 2, &port, &["--lr", "0.01"]);
    let r0 = spawn_rank(f, 0, 2, &port, &[]).wait_with_output().unwrap();
    let e0 = String::from_utf8_lossy(&r0.stderr);
    assert_eq!(r0.status.code(), Some(1), "{e0}");
    assert!(e0.contains("rank 1 runs another configuration"), "{e0}");
    let o1 = r1.wait().unwrap();
    assert_eq!(o1.code(), Some(1));
    // World 3 with only rank 0: it names the missing ranks when the timeout expires.
    let port = free_port();
    let r0 = spawn_rank(f, 0, 3, &port, &["--rendezvous-timeout", "2"])
        .wait_with_output()
        .unwrap();
    let e0 = String::from_utf8_lossy(&r0.stderr);
    assert_eq!(r0.status.code(), Some(1), "{e0}");
    assert!(e0.contains("rank(s) 1, 2 never arrived"), "{e0}");
}

#[test]
fn mpirun_two_ranks_when_openmpi_is_installed() {
    let Ok(v) = Command::new("mpirun").arg("--version").output() else {
        eprintln!(
            "mpirun not found: skipping the mpirun launch (RANK/WORLD_SIZE tests cover the path)"
        );
        return;
    };
    assert!(v.status.success());
    let f = fixture();
    let port = free_port();
    let model = f.root.join(format!("mpirun-{port}.safetensors"));
    let out = Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-np", "2"])
        .args(["-x", &format!("MASTER_PORT={port}")])
        .arg(bin("ncf-train"))
        .arg(&f.data)
        .arg("-o")
        .arg(&model)
        .args(FLAGS)
        .args(["--threads", "1"])
        .current_dir(&f.root)
        .output()
        .unwrap();
    check_same_result(f, &model, &out);
}
