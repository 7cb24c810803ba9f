//! The CUDA backend run whole on the host device (`--device cuda-host`: the kernels compiled for
//! the CPU, host memory, the stand-in NCCL between rank processes), through the real binaries:
//! ncf-eval and ncf-topk score as the CPU does, a killed and resumed run ends with the model an
//! uninterrupted one writes, two ranks train one model, and a rank killed mid-step makes the
//! other exit naming it. The host device runs blocks on several OS threads, as a GPU runs them
//! at once: runs repeat bit for bit because the step's sums are made in a fixed order (the
//! default `--cuda-reductions deterministic`), with the fused step (the host device's default
//! `--cuda-step`) and the split one.

mod common;

use common::{bin, json_lines, ok, run_with, s};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A small model and batch: a step takes milliseconds on the host device.
const MODEL: &[&str] = &[
    "--factors",
    "8",
    "--layers",
    "16,8",
    "--batch-size",
    "2048",
    "--precision",
    "fp32",
    "-q",
];

/// The users of the first 3,000 ratings of ml-latest-small (19 users), prepared with 20 test
/// negatives each, in a temp dir with an NCCL_HOME holding the stand-in NCCL.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    nccl_lib: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let text =
        fs::read_to_string(common::repo_root().join("data/ml-latest-small/ratings.csv")).unwrap();
    let head: String = text.split_inclusive('\n').take(3001).collect();
    fs::write(root.join("small.csv"), head).unwrap();
    ok(&root, "ncf-prep", &["small.csv", "-o", "ds", "-q"]);
    ok(&root, "ncf-negsample", &["ds", "--test-negatives", "20"]);
    let nccl_lib = ncf_nccl_host::nccl_home(&root.join("nccl")).expect("the stand-in NCCL");
    Fixture {
        _dir: dir,
        root,
        nccl_lib,
    }
}

impl Fixture {
    /// The environment of a host-device run (rank `rank` of `world` when given).
    fn env(&self, ranks: Option<(usize, usize, u16)>) -> Vec<(String, String)> {
        let mut env = vec![
            ("NCF_HOST_THREADS".to_string(), "2".to_string()),
            (
                "NCCL_HOME".to_string(),
                s(self.nccl_lib.parent().unwrap()).to_string(),
            ),
            ("LD_LIBRARY_PATH".to_string(), s(&self.nccl_lib).to_string()),
            ("NCF_NCCL_HOST_TIMEOUT".to_string(), "20".to_string()),
        ];
        if let Some((rank, world, port)) = ranks {
            for (k, v) in [
                ("RANK", rank.to_string()),
                ("WORLD_SIZE", world.to_string()),
                ("LOCAL_RANK", rank.to_string()),
                ("MASTER_ADDR", "127.0.0.1".into()),
                ("MASTER_PORT", port.to_string()),
            ] {
                env.push((k.to_string(), v));
            }
        }
        env
    }

    fn train_cmd(&self, args: &[&str], ranks: Option<(usize, usize, u16)>) -> Command {
        let mut c = Command::new(bin("ncf-train"));
        c.args(["ds", "--device", "cuda-host"])
            .args(MODEL)
            .args(args)
            .envs(self.env(ranks))
            .current_dir(&self.root);
        c
    }
}

/// A port for the ranks' rendezvous, different per test.
fn port(k: u16) -> u16 {
    29700 + (std::process::id() % 200) as u16 * 10 + k
}

/// The `parameters sha256` a rank printed on stderr.
fn params_sha(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.split("parameters sha256 ").nth(1))
        .unwrap_or_else(|| panic!("no parameters sha256 in:\n{stderr}"))
        .trim()
        .to_string()
}

#[test]
fn eval_and_topk_on_the_host_device_give_the_cpus_metrics_and_lists() {
    let f = fixture();
    let r = &f.root;
    let mut a = vec![
        "ds",
        "-o",
        "m.st",
        "--epochs",
        "2",
        "--no-checkpoint",
        "--threads",
        "1",
    ];
    a.extend_from_slice(&MODEL[..6]);
    ok(r, "ncf-train", &a);
    let env: Vec<(String, String)> = f.env(None);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let on = |tool: &str, device: &str, extra: &[&str]| {
        let mut args = vec!["ds", "m.st", "--device", device];
        args.extend_from_slice(extra);
        let out = run_with(r, tool, &args, &env, b"");
        assert!(
            out.status.success(),
            "{}",
            common::describe(tool, &args, &out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (host, cpu) = (on("ncf-eval", "cuda-host", &[]), on("ncf-eval", "cpu", &[]));
    let (h, c) = (&json_lines(&host)[0], &json_lines(&cpu)[0]);
    assert_eq!(
        (&h["hr"], &h["ndcg"]),
        (&c["hr"], &c["ndcg"]),
        "{host}\n{cpu}"
    );
    let topk = ["-k", "10", "--all"];
    let (host, cpu) = (
        on("ncf-topk", "cuda-host", &topk),
        on("ncf-topk", "cpu", &topk),
    );
    // user, rank, item (the scores may differ in their last bits).
    let lists = |t: &str| -> Vec<String> {
        t.lines()
            .map(|l| l.split('\t').take(3).collect::<Vec<_>>().join("\t"))
            .collect()
    };
    assert_eq!(lists(&host), lists(&cpu));
    assert!(lists(&host).len() > 100);
}

#[test]
fn a_killed_and_resumed_host_device_run_writes_the_uninterrupted_model() {
    let f = fixture();
    let r = &f.root;
    let epochs = ["--epochs", "4", "--checkpoint-every", "3"];
    let done = f
        .train_cmd(
            &[&epochs[..], &["-o", "whole.st", "--checkpoint", "ck1"]].concat(),
            None,
        )
        .output()
        .unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let mut child = f
        .train_cmd(
            &[&epochs[..], &["-o", "cut.st", "--checkpoint", "ck2"]].concat(),
            None,
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // After the first epoch's report, stop it mid-way through the second.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut String::new()).unwrap();
    // SAFETY: a signal to our own child.
    unsafe { libc_kill(child.id() as i32, 15) };
    let cut = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&cut.stderr);
    assert_eq!(cut.status.code(), Some(1), "{err}");
    assert!(err.contains("--resume ck2"), "{err}");
    let resumed = f
        .train_cmd(
            &[&epochs[..], &["-o", "cut.st", "--resume", "ck2"]].concat(),
            None,
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{err}");
    assert_eq!(
        fs::read(r.join("cut.st")).unwrap(),
        fs::read(r.join("whole.st")).unwrap(),
        "the resumed model differs from the uninterrupted one"
    );
}

/// `--cuda-step`: the fused step (the host device's default) writes the same model file run after
/// run with blocks on 2 OS threads; the split step stays selectable (its sums run in another
/// order, so its bits differ: the flag reaches the trainer); the CPU backend refuses the flag.
#[test]
fn the_fused_step_repeats_bit_for_bit_and_the_split_step_stays_selectable() {
    let f = fixture();
    let r = &f.root;
    // Three MLP layers, so that two run through ncf_linear_bwd (a model of one layer computes
    // its sums in the same order either way).
    let train = |out: &str, extra: &[&str]| {
        let base = [
            "--epochs",
            "2",
            "--no-checkpoint",
            "--layers",
            "32,16,8,8",
            "-o",
            out,
        ];
        let args = [&base[..], extra].concat();
        let o = f.train_cmd(&args, None).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    train("default.st", &[]);
    train("fused.st", &["--cuda-step", "fused"]);
    train("split.st", &["--cuda-step", "split"]);
    let model = |name: &str| fs::read(r.join(name)).unwrap();
    assert!(
        model("default.st") == model("fused.st"),
        "two fused runs differ"
    );
    assert!(
        model("fused.st") != model("split.st"),
        "--cuda-step split gave the fused step's bits"
    );
    let out = run_with(
        r,
        "ncf-train",
        &[
            "ds",
            "-o",
            "cpu.st",
            "--device",
            "cpu",
            "--cuda-step",
            "fused",
        ],
        &[],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--cuda-step is for --device cuda"), "{err}");
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Spawn the `world` ranks of a host-device run on port `p` with `args`.
fn spawn_ranks(f: &Fixture, world: usize, p: u16, args: &[&str]) -> Vec<Child> {
    (0..world)
        .map(|rank| {
            let model = format!("r{rank}.st");
            f.train_cmd(&[args, &["-o", &model]].concat(), Some((rank, world, p)))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect()
}

#[test]
fn two_host_device_ranks_through_the_stand_in_nccl_train_one_model() {
    let f = fixture();
    let args = ["--epochs", "2", "--no-checkpoint"];
    let shas: Vec<String> = spawn_ranks(&f, 2, port(1), &args)
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "{err}");
            assert!(err.contains("NCCL 9.99.1"), "not the stand-in: {err}");
            assert!(err.contains("collectives self-test passed"), "{err}");
            params_sha(&err)
        })
        .collect();
    assert_eq!(shas[0], shas[1], "the ranks hold different parameters");
    // One rank through the same NCCL path (--nccl) trains the model the two ranks train, up to
    // the order of the gradient sums (each rank sums its half of the batch, then NCCL the two
    // halves): every tensor within 1e-5 of its largest value. (The same bits for any rank count
    // need the fixed-order reductions of the fused step, issue 35.)
    let one = f
        .train_cmd(
            &[&args[..], &["--nccl", "-o", "one.st"]].concat(),
            Some((0, 1, port(2))),
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&one.stderr);
    assert!(one.status.success(), "{err}");
    assert!(err.contains("NCCL 9.99.1"), "{err}");
    let (m1, _) = ncf_core::model::file::load(&f.root.join("one.st")).unwrap();
    let (m2, _) = ncf_core::model::file::load(&f.root.join("r0.st")).unwrap();
    for t in &m1.layout.tensors {
        let (a, b) = (&m1.params[t.range()], &m2.params[t.range()]);
        let max = a.iter().fold(0f32, |m, x| m.max(x.abs()));
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-5 * max.max(1e-3),
            "{}: {worst} (max {max})",
            t.name
        );
    }
}

#[test]
fn a_host_device_rank_killed_mid_run_makes_the_other_exit_naming_it() {
    let f = fixture();
    let mut ranks = spawn_ranks(&f, 2, port(3), &["--epochs", "1000", "--no-checkpoint"]);
    // Both are training once rank 0 has reported an epoch.
    let mut out = BufReader::new(ranks[0].stdout.take().unwrap());
    out.read_line(&mut String::new()).unwrap();
    ranks[1].kill().unwrap();
    ranks[1].wait().unwrap();
    let t0 = Instant::now();
    let survivor = ranks.remove(0);
    let out = survivor.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "{:?}: {err}",
        t0.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("rank 1"), "the dead rank is not named: {err}");
}

#[test]
fn host_device_ranks_under_mpirun_get_the_nccl_id_over_mpi() {
    // The mpirun launch of CUDA ranks: MPI carries the NCCL id (and the host sums), the stand-in
    // NCCL the gradients; the ranks end with one model.
    let why = if !cfg!(feature = "mpi") {
        Some("built without the cargo feature mpi")
    } else if Command::new("mpirun").arg("--version").output().is_err() {
        Some("mpirun not found")
    } else {
        None
    };
    if let Some(why) = why {
        assert!(
            std::env::var_os("NCF_REQUIRE_MPI").is_none(),
            "NCF_REQUIRE_MPI: {why}"
        );
        eprintln!("skipping the mpirun launch: {why}");
        return;
    }
    let f = fixture();
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe", "-np", "2"]);
    for (k, v) in f.env(None) {
        c.args(["-x", &format!("{k}={v}")]);
    }
    c.arg(bin("ncf-train"))
        .args(["ds", "--device", "cuda-host"])
        .args(MODEL)
        .args(["--epochs", "2", "--no-checkpoint", "-o", "mpi.st"])
        .current_dir(&f.root);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for r in 0..2 {
        assert!(
            err.contains(&format!("rank {r} of 2: NCCL 9.99.1"))
                && err.contains("the id over mpi; collectives self-test passed"),
            "rank {r}: {err}"
        );
    }
    let shas: Vec<&str> = err
        .lines()
        .filter_map(|l| l.split("parameters sha256 ").nth(1))
        .map(str::trim)
        .collect();
    assert_eq!(shas.len(), 2, "{err}");
    assert_eq!(shas[0], shas[1], "the ranks hold different parameters");
    assert!(f.root.join("mpi.st").exists());
}
