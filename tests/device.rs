//! The GPU check without a GPU: `scripts/device-check.sh` in its dry run over the debug binaries
//! and a small synthetic dataset. Every stage must run its real commands (which must accept their
//! arguments and stop at "CUDA unavailable"), say "no GPU", and leave a well-formed results.json
//! with every stage and its limit; the limits must add up to at most 480 s. A stage that hangs is
//! cut at its own limit and the later stages still run; a run cut in the middle still leaves the
//! finished stages in results.json.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const STAGES: [&str; 10] = [
    "env",
    "nccl_load",
    "nccl_1rank",
    "nccl_2rank",
    "nccl_kill",
    "parity",
    "ml1m",
    "sanitizer",
    "bench",
    "peer",
];

/// A `.device` directory like scripts/device-pack.sh makes, over the test binaries.
fn device_dir(root: &Path) -> PathBuf {
    let d = root.join("device");
    std::fs::create_dir_all(d.join("bin")).unwrap();
    std::fs::create_dir_all(d.join("peer")).unwrap();
    for b in ["ncf-train", "ncf-cuda-check", "ncf-devcheck"] {
        std::os::unix::fs::symlink(bin(b), d.join("bin").join(b)).unwrap();
    }
    let data = d.join("data");
    ok(
        root,
        "ncf-prep",
        &[
            "--synthetic",
            "300,200,6000",
            "-o",
            data.to_str().unwrap(),
            "-q",
        ],
    );
    ok(
        root,
        "ncf-negsample",
        &[data.to_str().unwrap(), "--test-negatives", "99"],
    );
    std::fs::write(
        d.join("peer/torch_neumf.py"),
        "# the PyTorch peer (not run without a GPU)\n",
    )
    .unwrap();
    std::fs::write(d.join("COMMIT"), "test\n").unwrap();
    d
}

fn check_command(dev: &Path, out: &Path) -> Command {
    let mut c = Command::new("bash");
    c.arg(repo_root().join("scripts/device-check.sh"))
        .env("DEVICE_CHECK_DRY", "1")
        .env("NCF_DEVICE_DIR", dev)
        .env("NCF_DEVICE_DATA", dev.join("data"))
        .env("OUT", out)
        .env_remove("DEVICE_CHECK_STAGES")
        .env_remove("DEVICE_CHECK_HANG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn results(out: &Path) -> Value {
    let text = std::fs::read_to_string(out.join("results.json")).expect("results.json");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("results.json is not JSON: {e}\n{text}"))
}

fn stage<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no stage {name} in {r}"))
}

fn text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn device_check_dry_run_wires_every_stage() {
    let dir = tempfile::tempdir().unwrap();
    let dev = device_dir(dir.path());
    let out = dir.path().join("out");
    let t0 = Instant::now();
    let o = check_command(&dev, &out).output().unwrap();
    let took = t0.elapsed();
    assert!(o.status.success(), "{}", text(&o));
    assert!(took < Duration::from_secs(60), "the dry run took {took:?}");
    let r = results(&out);
    assert_eq!(r["schema"], "ncf-device-check/1");
    assert_eq!(r["dry_run"], true, "{r}");
    assert_eq!(r["complete"], true, "{r}");
    let names: Vec<&str> = r["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, STAGES);
    let mut total = 0;
    let log = std::fs::read_to_string(out.join("log.txt")).unwrap();
    for name in STAGES {
        let s = stage(&r, name);
        assert_eq!(s["status"], "no-gpu", "{name}: {s}");
        let summary = s["summary"].as_str().unwrap();
        assert!(summary.starts_with("no GPU"), "{name}: {summary}");
        assert!(!summary.contains("not wired"), "{name}: {summary}");
        total += s["timeout_s"].as_u64().expect("a limit per stage");
        assert!(
            log.contains(&format!("stage {name}: no-gpu")),
            "{name} not in the log:\n{log}"
        );
    }
    assert!(total <= 480, "the stages' limits add up to {total} s");
    assert_eq!(r["total_limit_s"], total);
    // The commands really ran: the CUDA entry points stopped where a GPU is needed.
    for name in ["nccl_1rank", "nccl_2rank", "nccl_kill", "parity", "bench"] {
        let s = stage(&r, name)["summary"].as_str().unwrap();
        assert!(s.contains("CUDA unavailable"), "{name}: {s}");
    }
    assert!(stage(&r, "nccl_load")["summary"]
        .as_str()
        .unwrap()
        .contains("NCCL"));
    assert!(stage(&r, "env")["detail"].is_object(), "{r}");
    assert!(out.join("logs.tar.gz").is_file());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("=== device-check summary (no GPU: dry run) ==="),
        "{stdout}"
    );
}

#[test]
fn a_hung_stage_is_cut_at_its_limit_and_a_cut_run_keeps_the_finished_stages() {
    let dir = tempfile::tempdir().unwrap();
    let dev = device_dir(dir.path());
    // A stage that hangs: cut at its own limit, marked "timeout", and the next stages still run.
    let out = dir.path().join("out1");
    let o = check_command(&dev, &out)
        .env("DEVICE_CHECK_STAGES", "env nccl_load nccl_2rank parity")
        .env("DEVICE_CHECK_HANG", "nccl_2rank")
        .env("DEVICE_CHECK_HANG_S", "30")
        .env("LIMIT_nccl_2rank", "2")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r = results(&out);
    let hung = stage(&r, "nccl_2rank");
    assert_eq!(hung["status"], "timeout", "{hung}");
    assert_eq!(hung["timeout_s"], 2);
    assert!(hung["seconds"].as_f64().unwrap() < 15.0, "{hung}");
    assert_eq!(stage(&r, "parity")["status"], "no-gpu");
    assert_eq!(r["complete"], true);
    // The whole run cut while a stage hangs (as the device tool cuts a command at its limit):
    // results.json already holds every stage that finished.
    let out = dir.path().join("out2");
    let mut child = check_command(&dev, &out)
        .env("DEVICE_CHECK_HANG", "nccl_2rank")
        .env("DEVICE_CHECK_HANG_S", "30")
        .env("LIMIT_nccl_2rank", "8")
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        let log = std::fs::read_to_string(out.join("log.txt")).unwrap_or_default();
        if log.contains("stage nccl_2rank (limit") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "never reached nccl_2rank:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    let _ = child.wait();
    let r = results(&out);
    let names: Vec<&str> = r["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["env", "nccl_load", "nccl_1rank"], "{r}");
    assert_eq!(r["complete"], false);
    assert_eq!(r["not_run"][0], "nccl_2rank");
}

/// Stand-ins for the GPU machine's programs: `nvidia-smi`, `compute-sanitizer`, and binaries
/// that print what the real ones print on a GPU (epoch lines, the NCCL self-test and checksum
/// lines; a rank 0 that notices its peer's death and names it). They run the script's GPU
/// paths (launching, killing, timing, the verdicts of the real `ncf-devcheck`) without a GPU.
const FAKE_TRAIN: &str = r#"#!/usr/bin/env bash
epochs=1 nccl=0 out=""
while (($#)); do
  case $1 in --epochs) epochs=$2; shift ;; --nccl) nccl=1 ;; -o) out=$2; shift ;; esac
  shift
done
rank=${RANK:-0} world=${WORLD_SIZE:-1}
ranked=0; ((nccl || world > 1)) && ranked=1
((ranked)) && echo "ncf-cuda: rank $rank of $world: NCCL 2.27.7 (/fake/libnccl.so.2), non-blocking communicator; collectives self-test passed" >&2
((world > 1)) && echo $$ > "$FAKE_DIR/rank$rank-$MASTER_PORT.pid"
dead() { local s; s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null); [[ -z $s || $s == Z ]]; }
for ((e = 0; e < epochs; e++)); do
  if ((world > 1 && epochs > 1)); then
    sleep 0.3
    other=$((1 - rank)); pid=$(cat "$FAKE_DIR/rank$other-$MASTER_PORT.pid" 2>/dev/null)
    if [[ -n $pid ]] && dead "$pid"; then
      echo "ncf-train: rank $rank of $world: epoch $e step 3 failed: NCCL reported ncclRemoteError (6): rank $other died (its connection to rank $rank closed), in the middle of the step's NCCL collectives; the NCCL communicator was aborted" >&2
      exit 1
    fi
  fi
  ((rank == 0)) && echo "{\"epoch\":$e,\"loss\":0.44,\"hr\":0.45,\"ndcg\":0.25,\"k\":10,\"eval\":\"test\",\"train_s\":0.1,\"eval_s\":0.01,\"samples\":10,\"samples_per_s\":100.0,\"steps\":1,\"skipped_steps\":0}"
done
((rank == 0)) && echo '{"best_hr":0.70,"best_ndcg":0.42,"best_epoch":0,"first_epoch_reaching_target":null,"time_to_target_s":null,"train_time_s":1.0,"eval_time_s":0.1,"avg_samples_per_s":100.0,"best_samples_per_s":100.0,"epochs_run":1,"k":10,"eval":"test","backend":"cuda:0 Fake GPU (sm_90, tf32)"}'
# The model a fixed-seed run writes: the same bytes every run.
((rank == 0)) && [[ -n $out ]] && echo "fake model" > "$out"
sum=abcd; [[ -n ${FAKE_BAD:-} && $rank == 1 ]] && sum=abce
((ranked)) && echo "ncf-train: rank $rank of $world: parameters sha256 $sum" >&2
exit 0
"#;

const FAKE_CHECK: &str = r#"#!/usr/bin/env bash
json="" mode=check
while (($#)); do
  case $1 in --json) json=$2; shift ;; --nccl-version) mode=nccl ;; --bench) mode=bench ;; esac
  shift
done
case $mode in
  nccl) v='{"nccl_version":"2.27.7","code":22707,"library":"/fake/libnccl.so.2"}' ;;
  bench) v='{"results":[{"precision":"bf16","samples_per_s":1.5e8}]}' ;;
  check) v='{"checks":1,"failed":0,"results":[{"name":"philox","pass":true}]}'; echo "PASS philox fp32 0 0 at=0"; echo "1 of 1 checks passed" ;;
esac
[[ $mode != check ]] && echo "$v"
[[ -n $json ]] && echo "$v" > "$json"
exit 0
"#;

const FAKE_SMI: &str = r#"#!/usr/bin/env bash
case "$*" in
  -L) echo "GPU 0: Fake GPU (UUID: GPU-0)" ;;
  *--query-gpu*) echo "Fake GPU, 580.00, 1000 MiB, Default" ;;
  *) echo "| NVIDIA-SMI 580.00   Driver Version: 580.00   CUDA Version: 13.0 |" ;;
esac
"#;

const FAKE_SANITIZER: &str = r#"#!/usr/bin/env bash
while [[ $1 == --* ]]; do case $1 in --tool|--error-exitcode|--print-limit|--kernel-name) shift 2 ;; *) shift ;; esac; done
"$@" > /dev/null
echo "========= ERROR SUMMARY: 0 errors"
"#;

fn script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A device directory with the fake binaries (the real ncf-devcheck) and a PATH / CUDA_HOME
/// with the fake nvidia-smi and compute-sanitizer.
fn fake_gpu(root: &Path) -> (PathBuf, String, PathBuf) {
    let d = root.join("fakedevice");
    std::fs::create_dir_all(d.join("bin")).unwrap();
    std::fs::create_dir_all(d.join("data")).unwrap();
    std::fs::create_dir_all(d.join("peer")).unwrap();
    script(&d.join("bin/ncf-train"), FAKE_TRAIN);
    script(&d.join("bin/ncf-cuda-check"), FAKE_CHECK);
    std::os::unix::fs::symlink(bin("ncf-devcheck"), d.join("bin/ncf-devcheck")).unwrap();
    std::fs::write(d.join("peer/torch_neumf.py"), "\n").unwrap();
    let cuda = root.join("fakecuda");
    std::fs::create_dir_all(cuda.join("bin")).unwrap();
    script(&cuda.join("bin/nvidia-smi"), FAKE_SMI);
    script(&cuda.join("bin/compute-sanitizer"), FAKE_SANITIZER);
    let path = format!(
        "{}:{}",
        cuda.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (d, path, cuda)
}

#[test]
fn device_check_with_a_fake_gpu_judges_every_stage() {
    let dir = tempfile::tempdir().unwrap();
    let (dev, path, cuda) = fake_gpu(dir.path());
    let run = |out: &Path, stages: &str, bad: bool| {
        let mut c = check_command(&dev, out);
        c.env_remove("DEVICE_CHECK_DRY")
            .env("PATH", &path)
            .env("CUDA_HOME", &cuda)
            .env("FAKE_DIR", dir.path())
            .env("DEVICE_CHECK_STAGES", stages);
        if bad {
            c.env("FAKE_BAD", "1");
        }
        c.output().unwrap()
    };
    let out = dir.path().join("out");
    let stages = "env nccl_load nccl_1rank nccl_2rank nccl_kill parity ml1m sanitizer bench";
    let o = run(&out, stages, false);
    let r = results(&out);
    assert!(o.status.success(), "{}\n{r:#}", text(&o));
    assert_eq!(r["dry_run"], false);
    for name in stages.split(' ') {
        assert_eq!(stage(&r, name)["status"], "pass", "{name}: {r:#}");
    }
    let kill = &stage(&r, "nccl_kill")["detail"];
    assert_eq!(kill["names_it"], true, "{kill}");
    assert_eq!(kill["rc"], 1);
    assert!(kill["seconds"].as_f64().unwrap() < 30.0);
    assert!(kill["caught_by"]
        .as_str()
        .unwrap()
        .starts_with("NCCL asynchronous error"));
    let two = &stage(&r, "nccl_2rank")["detail"];
    assert_eq!(two["checksums_equal"], true, "{two}");
    assert_eq!(two["nccl"].as_array().unwrap().len(), 2, "{two}");
    assert!(stage(&r, "sanitizer")["summary"]
        .as_str()
        .unwrap()
        .contains("memcheck (fp32,bf16) clean"));
    // The keys ncf-bench-report reads.
    assert_eq!(r["env"][0], "Fake GPU, 580.00, 1000 MiB");
    assert_eq!(r["bench"]["results"][0]["precision"], "bf16");
    assert_eq!(r["ml1m"][1]["best_hr"], 0.7);
    // Ranks that disagree fail the 2-rank stage.
    let out = dir.path().join("out-bad");
    let o = run(&out, "nccl_1rank nccl_2rank", true);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r = results(&out);
    let s = stage(&r, "nccl_2rank");
    assert_eq!(s["status"], "fail", "{s}");
    assert!(
        s["summary"].as_str().unwrap().contains("checksums differ"),
        "{s}"
    );
}
