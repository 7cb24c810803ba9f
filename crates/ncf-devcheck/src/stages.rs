//! The verdicts of the GPU check's stages besides the NCCL runs ([`crate::judge`]) and the
//! environment ([`crate::env`]): what a dry run proves, NCCL's load, parity, the ml1m preset's
//! HR, compute-sanitizer's exit codes, the bench, the PyTorch peer; and the driver's plan of
//! stages and its closing summary. Each takes what the script's commands left (exit codes,
//! their output) and decides.

use crate::results::{Bench, Checks, Header, Ml1mDetail, PeerDetail, PeerRun, Results};
use crate::{StageVerdict, Status};
use serde_json::{json, Value};

/// At most `n` characters of `s`.
pub fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The first line of a command's stderr that says why it stopped (300 characters at most).
pub fn first_error(stderr: &str) -> String {
    let why = ["CUDA unavailable", "error", "Error", "failed"];
    let line = stderr
        .lines()
        .find(|l| why.iter().any(|w| l.contains(w)))
        .unwrap_or("");
    cut(line, 300)
}

fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// One command a stage ran: a name for the summary, its exit code and its stderr.
#[derive(Clone, Debug)]
pub struct Ran {
    pub name: String,
    pub rc: i32,
    pub stderr: String,
}

/// The command ran as far as it can without a GPU: it stopped with an error of its own, not a
/// usage error (2), a missing binary (126, 127) or a panic.
pub fn wired(rc: i32, stderr: &str) -> bool {
    rc != 2 && rc != 126 && rc != 127 && !stderr.contains("panicked")
}

/// A stage without a GPU: `no-gpu` when every command it ran is [`wired`] (saying where the
/// `sample` stderr stopped), else `fail` naming those that are not.
pub fn dry(what: &str, sample: &str, ran: &[Ran]) -> StageVerdict {
    let not: Vec<String> = ran
        .iter()
        .filter(|r| !wired(r.rc, &r.stderr))
        .map(|r| format!(" {}: exit {};", r.name, r.rc))
        .collect();
    let detail = json!({"commands": ran.iter().map(|r| json!({"name": r.name, "rc": r.rc,
        "wired": wired(r.rc, &r.stderr)})).collect::<Vec<_>>()});
    if !not.is_empty() {
        StageVerdict::new(
            Status::Fail,
            format!("no GPU, and {what} not wired:{}", not.concat()),
            detail,
        )
    } else {
        let stopped = match first_error(sample) {
            e if e.is_empty() => format!("exit {}", ran.first().map_or(0, |r| r.rc)),
            e => e,
        };
        StageVerdict::new(
            Status::NoGpu,
            format!("no GPU: {what} wired (stopped at: {stopped})"),
            detail,
        )
    }
}

/// `ncf-cuda-check --nccl-version` on the GPU machine: NCCL loads without a libnccl.so link.
pub fn nccl_load(rc: i32, stdout: &str, stderr: &str, report: Value) -> StageVerdict {
    match rc {
        0 => StageVerdict::new(
            Status::Pass,
            format!("loaded without a libnccl.so link: {}", stdout.trim()),
            report,
        ),
        _ => StageVerdict::new(Status::Fail, cut(stderr, 400), report),
    }
}

/// `ncf-cuda-check` (every kernel and golden run): exit 0 is its `N of M checks passed`.
pub fn parity(rc: i32, stdout: &str, stderr: &str, report: Option<Checks>) -> StageVerdict {
    let detail = report.map_or(Value::Null, |c| json!(c));
    if rc == 0 {
        let last = last_lines(stdout, 1).concat();
        return StageVerdict::new(Status::Pass, last, detail);
    }
    let fails: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    let first: String = fails.iter().take(3).map(|l| format!("{l};")).collect();
    StageVerdict::new(
        Status::Fail,
        format!(
            "{} checks failed: {} {}",
            fails.len(),
            cut(&first, 400),
            last_lines(stderr, 1).concat()
        ),
        detail,
    )
}

/// The ml1m preset's best HR@10 on the GPU that passes (0.7066 on the H200 before).
pub const ML1M_MIN_HR: f64 = 0.65;

/// `ncf-train --preset ml1m`: exit 0 and a best HR of at least `min_hr` in its summary.
pub fn ml1m(rc: i32, log: &str, stderr: &str, min_hr: f64) -> StageVerdict {
    let (epochs, summary) = ncf_core::train::log::lenient(log);
    let hr = summary.as_ref().map(|s| s.best_hr);
    let detail = json!(Ml1mDetail { epochs, summary });
    match hr {
        Some(hr) if rc == 0 && hr >= min_hr => StageVerdict::new(
            Status::Pass,
            format!("best HR@10 {hr:.4} (tuned preset; 0.7066 on the H200 before)"),
            detail,
        ),
        _ => StageVerdict::new(
            Status::Fail,
            format!(
                "exit {rc}, best HR@10 {} (expected >= {min_hr}): {}",
                hr.map_or("none".into(), |h| format!("{h:.4}")),
                first_error(stderr)
            ),
            detail,
        ),
    }
}

/// compute-sanitizer's exit code for the errors it found (`--error-exitcode`).
pub const SANITIZER_ERRORS: i32 = 86;

/// One compute-sanitizer run: the tool, the precisions it checked, its limit, exit, output.
#[derive(Clone, Debug)]
pub struct SanitizerRun {
    pub tool: String,
    pub precisions: String,
    pub limit_s: u64,
    pub rc: i32,
    pub log: String,
}

/// This compute-sanitizer has no `--kernel-name` filter: the run is to be repeated without it.
pub fn sanitizer_unfiltered(rc: i32, log: &str) -> bool {
    let l = log.to_lowercase();
    rc != 0
        && (l.contains("unrecognized option")
            || l.contains("unknown option")
            || l.lines().any(|line| {
                line.find("invalid")
                    .is_some_and(|i| line[i..].contains("kernel-name"))
            }))
}

/// compute-sanitizer's runs: clean (exit 0), errors found (exit 86), cut at the limit (124,
/// 137: a timeout unless another run failed), or the checks themselves failing (any other).
pub fn sanitizer(path: &str, runs: &[SanitizerRun]) -> StageVerdict {
    if path.is_empty() {
        return StageVerdict::new(
            Status::Skipped,
            "compute-sanitizer not found (searched the CUDA toolkit's bin/, /usr/local/cuda*/bin, PATH)",
            Value::Null,
        );
    }
    let (mut res, mut bad, mut cut_short) = (String::new(), false, false);
    for r in runs {
        let errs = r
            .log
            .lines()
            .rev()
            .find_map(|l| l.find("ERROR SUMMARY: ").map(|i| &l[i..]))
            .map(|s| s.split(" error").next().unwrap_or(s).to_string() + " error");
        let errs_note = errs.as_ref().map_or(String::new(), |e| format!(" ({e})"));
        let what = format!("{} ({})", r.tool, r.precisions);
        res += &match r.rc {
            0 => format!("{what} clean{errs_note}; "),
            SANITIZER_ERRORS => {
                bad = true;
                let first: Vec<&str> = r
                    .log
                    .lines()
                    .filter(|l| {
                        ["Invalid", "Race", "Error"]
                            .iter()
                            .any(|w| l.starts_with(&format!("========= {w}")))
                    })
                    .take(2)
                    .collect();
                format!(
                    "{what} found errors: {} {}; ",
                    errs.unwrap_or_default(),
                    first.join(" ")
                )
            }
            124 | 137 => {
                cut_short = true;
                format!("{what} cut at {} s{errs_note}; ", r.limit_s)
            }
            rc => {
                bad = true;
                format!(
                    "{what} exit {rc} (checks failed?): {}; ",
                    last_lines(&r.log, 1).concat()
                )
            }
        };
    }
    let status = match (bad, cut_short) {
        (true, _) => Status::Fail,
        (false, true) => Status::Timeout,
        _ => Status::Pass,
    };
    let detail = json!({"sanitizer": path, "result": res,
        "runs": runs.iter().map(|r| json!({"tool": r.tool, "precisions": r.precisions,
            "limit_s": r.limit_s, "rc": r.rc})).collect::<Vec<_>>()});
    StageVerdict::new(status, res, detail)
}

/// `ncf-cuda-check --bench`: its samples/s per precision.
pub fn bench(rc: i32, report: Option<Bench>, stderr: &str) -> StageVerdict {
    let detail = report.as_ref().map_or(Value::Null, |b| json!(b));
    match (rc, report) {
        (0, Some(b)) => {
            let rows: Vec<String> = b
                .results
                .iter()
                .map(|r| match r.other.get("step").and_then(|v| v.as_str()) {
                    Some(step) => format!("{} {step} {:.0}", r.precision, r.samples_per_s),
                    None => format!("{} {:.0}", r.precision, r.samples_per_s),
                })
                .collect();
            StageVerdict::new(
                Status::Pass,
                format!("samples/s: {}", rows.join(" ")),
                detail,
            )
        }
        _ => StageVerdict::new(
            Status::Fail,
            format!("exit {rc}: {}", last_lines(stderr, 1).concat()),
            detail,
        ),
    }
}

/// What the peer stage had: a GPU, the peer's script, a Python with torch, the peer's epoch
/// lines and its stderr.
pub struct PeerFacts<'a> {
    pub gpu: bool,
    pub peer: &'a str,
    pub peer_present: bool,
    pub torch_python: &'a str,
    pub lines: &'a str,
    pub stderr: &'a str,
}

/// The PyTorch peer's throughput: it ran (a GPU, torch) and printed an epoch line.
pub fn peer(f: &PeerFacts) -> StageVerdict {
    let say = |status, summary: String| StageVerdict::new(status, summary, Value::Null);
    if !f.peer_present {
        return say(
            Status::Fail,
            format!("{} missing (scripts/device-pack.sh copies it)", f.peer),
        );
    }
    match (f.gpu, f.torch_python.is_empty()) {
        (false, true) => {
            return say(
                Status::NoGpu,
                "no GPU (and no Python with torch here): peer not run".into(),
            )
        }
        (true, true) => return say(Status::Skipped, "no Python with torch found".into()),
        (false, false) => {
            return say(
                Status::NoGpu,
                format!(
                    "no GPU: the torch peer is not run ({} has torch)",
                    f.torch_python
                ),
            )
        }
        (true, false) => {}
    }
    let runs: Vec<PeerRun> = f
        .lines
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let rows: Vec<String> = runs
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r.precision.as_deref().unwrap_or("?"),
                r.step_samples_per_s
                    .map_or("?".into(), |s| format!("{s:.0}"))
            )
        })
        .collect();
    let detail = json!(PeerDetail { runs });
    if rows.is_empty() {
        let why = last_lines(f.stderr, 2).join(" ");
        StageVerdict::new(Status::Fail, format!("no peer result: {why}"), detail)
    } else {
        StageVerdict::new(
            Status::Pass,
            format!("samples/s: {}", rows.join(" ")),
            detail,
        )
    }
}

/// The stages to run, in order, with their limits: `only` (space-separated; empty: every stage
/// of `limits`) taken from `limits` (the script's stages in order, `NAME=SECONDS`), at most
/// `cap` seconds in all.
pub fn plan(cap: u64, only: &str, limits: &[(String, u64)]) -> Result<Vec<(String, u64)>, String> {
    let names: Vec<&str> = match only.split_whitespace().collect::<Vec<_>>() {
        v if v.is_empty() => limits.iter().map(|(n, _)| n.as_str()).collect(),
        v => v,
    };
    let mut out = vec![];
    for n in names {
        match limits.iter().find(|(name, _)| name == n) {
            Some(l) => out.push(l.clone()),
            None => {
                let all: Vec<&str> = limits.iter().map(|(n, _)| n.as_str()).collect();
                return Err(format!("unknown stage {n} (stages: {})", all.join(" ")));
            }
        }
    }
    let total: u64 = out.iter().map(|(_, l)| l).sum();
    if total > cap {
        return Err(format!("the stages' limits add up to {total} s > {cap} s"));
    }
    Ok(out)
}

/// The header of a planned run.
pub fn header(gpu: bool, total_limit_s: u64, started: &str, host: &str, commit: &str) -> Header {
    let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
    Header {
        started: some(started),
        host: some(host),
        gpu_present: Some(gpu),
        dry_run: Some(!gpu),
        total_limit_s: Some(total_limit_s),
        commit: some(&cut(commit, 200)),
        other: Default::default(),
    }
}

/// The closing table: one line per stage (`name status summary`), and whether the check failed
/// (a stage failed, errored or was cut).
pub fn summary(r: &Results) -> (String, bool) {
    let kind = match r.header.dry_run {
        Some(false) => "GPU",
        _ => "no GPU: dry run",
    };
    let mut out = format!("=== device-check summary ({kind}) ===\n");
    for s in &r.stages {
        out += &format!(
            "{:<11} {:<8} {}\n",
            s.name,
            s.status.word(),
            cut(&s.summary, 300)
        );
    }
    (out, r.failed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dry_stage_is_wired_unless_a_command_was_refused_or_missing() {
        let ran = |rc: i32, err: &str| Ran {
            name: "a.err".into(),
            rc,
            stderr: err.into(),
        };
        let err = "ncf-train: note\nncf-train: CUDA unavailable: no driver\n";
        let v = dry("ncf-train", err, &[ran(1, err)]);
        assert_eq!(v.status, Status::NoGpu);
        assert_eq!(
            v.summary,
            "no GPU: ncf-train wired (stopped at: ncf-train: CUDA unavailable: no driver)"
        );
        for bad in [
            ran(2, "usage"),
            ran(127, ""),
            ran(101, "thread 'main' panicked"),
        ] {
            let v = dry("ncf-train", err, &[ran(1, err), bad.clone()]);
            assert_eq!(v.status, Status::Fail);
            assert_eq!(
                v.summary,
                format!("no GPU, and ncf-train not wired: a.err: exit {};", bad.rc)
            );
        }
    }

    #[test]
    fn ml1m_passes_at_its_hr_and_not_below() {
        let epoch = r#"{"epoch":0,"loss":0.4,"hr":0.45,"ndcg":0.25,"k":10,"eval":"test","train_s":0.1,"eval_s":0.01,"samples":10,"samples_per_s":100.0,"steps":1,"skipped_steps":0}"#;
        let summary = |hr: f64| {
            format!(
                r#"{{"best_hr":{hr},"best_ndcg":0.42,"best_epoch":17,"first_epoch_reaching_target":null,"time_to_target_s":null,"train_time_s":1.5,"eval_time_s":0.1,"avg_samples_per_s":1e7,"best_samples_per_s":1e7,"epochs_run":20,"k":10,"eval":"test","backend":"cuda"}}"#
            )
        };
        let log = |hr| format!("{epoch}\n{}\n", summary(hr));
        let v = ml1m(0, &log(0.7066), "", ML1M_MIN_HR);
        assert_eq!(v.status, Status::Pass, "{}", v.summary);
        assert_eq!(v.detail["summary"]["best_epoch"], 17);
        assert_eq!(v.detail["epochs"][0]["loss"], 0.4);
        let v = ml1m(0, &log(0.6499), "", ML1M_MIN_HR);
        assert_eq!(v.summary, "exit 0, best HR@10 0.6499 (expected >= 0.65): ");
        let v = ml1m(
            1,
            epoch,
            "ncf-train: CUDA error: out of memory",
            ML1M_MIN_HR,
        );
        assert_eq!(
            v.summary,
            "exit 1, best HR@10 none (expected >= 0.65): ncf-train: CUDA error: out of memory"
        );
    }

    #[test]
    fn sanitizer_exit_codes_mean_clean_errors_cut_or_failed_checks() {
        let run = |tool: &str, rc: i32, log: &str| SanitizerRun {
            tool: tool.into(),
            precisions: "fp32".into(),
            limit_s: 45,
            rc,
            log: log.into(),
        };
        let clean = "========= ERROR SUMMARY: 0 errors\n";
        let v = sanitizer("/cuda/compute-sanitizer", &[run("memcheck", 0, clean)]);
        assert_eq!(v.status, Status::Pass);
        assert_eq!(
            v.summary,
            "memcheck (fp32) clean (ERROR SUMMARY: 0 error); "
        );
        let found =
            "========= Invalid __global__ read of size 4\n========= ERROR SUMMARY: 3 errors\n";
        let v = sanitizer(
            "s",
            &[run("memcheck", 0, clean), run("racecheck", 86, found)],
        );
        assert_eq!(v.status, Status::Fail);
        assert!(
            v.summary.contains(
                "racecheck (fp32) found errors: ERROR SUMMARY: 3 error ========= Invalid"
            ),
            "{}",
            v.summary
        );
        let v = sanitizer("s", &[run("memcheck", 124, "")]);
        assert_eq!(
            (v.status, v.summary.as_str()),
            (Status::Timeout, "memcheck (fp32) cut at 45 s; ")
        );
        let v = sanitizer(
            "s",
            &[
                run("memcheck", 124, ""),
                run("racecheck", 1, "1 of 2 checks passed"),
            ],
        );
        assert_eq!(v.status, Status::Fail);
        assert!(v
            .summary
            .ends_with("racecheck (fp32) exit 1 (checks failed?): 1 of 2 checks passed; "));
        assert_eq!(sanitizer("", &[]).status, Status::Skipped);
        assert!(sanitizer_unfiltered(
            1,
            "Error: Unrecognized option '--kernel-name'"
        ));
        assert!(sanitizer_unfiltered(1, "invalid value for --kernel-name"));
        assert!(!sanitizer_unfiltered(86, found));
        assert!(!sanitizer_unfiltered(0, "unknown option"));
    }

    #[test]
    fn parity_bench_and_nccl_summaries() {
        let v = parity(0, "PASS a fp32\n139 of 139 checks passed\n", "", None);
        assert_eq!(
            (v.status, v.summary.as_str()),
            (Status::Pass, "139 of 139 checks passed")
        );
        let out = "PASS a\nFAIL b fp16 1e-2\nFAIL c bf16 2e-2\n137 of 139 checks passed\n";
        let v = parity(1, out, "x\nncf-cuda-check: 2 of 139 checks failed", None);
        assert_eq!(
            v.summary,
            "2 checks failed: FAIL b fp16 1e-2;FAIL c bf16 2e-2; ncf-cuda-check: 2 of 139 checks failed"
        );
        let b: Bench = serde_json::from_str(
            r#"{"device":"H200","results":[{"precision":"fp32","samples_per_s":3.3e7,"batch":1048576},{"precision":"bf16","samples_per_s":1.5e8}]}"#,
        )
        .unwrap();
        let v = bench(0, Some(b), "");
        assert_eq!(v.summary, "samples/s: fp32 33000000 bf16 150000000");
        assert_eq!(v.detail["device"], "H200");
        assert_eq!(v.detail["results"][0]["batch"], 1048576);
        assert_eq!(bench(1, None, "a\nboom").summary, "exit 1: boom");
        let v = nccl_load(0, "{\"nccl_version\":\"2.27.7\"}\n", "", Value::Null);
        assert_eq!(
            v.summary,
            "loaded without a libnccl.so link: {\"nccl_version\":\"2.27.7\"}"
        );
        assert_eq!(
            nccl_load(1, "", "ncf-cuda-check: cannot load NCCL", Value::Null).status,
            Status::Fail
        );
    }

    #[test]
    fn the_peer_runs_only_with_a_gpu_and_torch() {
        let facts = |gpu, torch: &'static str, lines: &'static str| PeerFacts {
            gpu,
            peer: "peer.py",
            peer_present: true,
            torch_python: torch,
            lines,
            stderr: "a\nb\nTraceback",
        };
        assert_eq!(peer(&facts(false, "", "")).status, Status::NoGpu);
        assert_eq!(peer(&facts(true, "", "")).status, Status::Skipped);
        assert_eq!(
            peer(&facts(false, "/py", "")).summary,
            "no GPU: the torch peer is not run (/py has torch)"
        );
        let v = peer(&facts(
            true,
            "/py",
            "{\"epoch\": 1, \"precision\": \"bf16\", \"step_samples_per_s\": 7e7}\n",
        ));
        assert_eq!(
            (v.status, v.summary.as_str()),
            (Status::Pass, "samples/s: bf16 70000000")
        );
        assert_eq!(v.detail["runs"][0]["epoch"], 1);
        assert_eq!(
            peer(&facts(true, "/py", "")).summary,
            "no peer result: b Traceback"
        );
        let missing = PeerFacts {
            peer_present: false,
            ..facts(true, "/py", "")
        };
        assert_eq!(
            peer(&missing).summary,
            "peer.py missing (scripts/device-pack.sh copies it)"
        );
    }

    #[test]
    fn a_plan_takes_the_asked_stages_within_the_cap() {
        let limits: Vec<(String, u64)> = [("env", 25), ("parity", 60), ("bench", 30)]
            .map(|(n, l)| (n.to_string(), l))
            .to_vec();
        assert_eq!(plan(480, "", &limits).unwrap().len(), 3);
        assert_eq!(
            plan(480, "bench env", &limits).unwrap(),
            vec![("bench".into(), 30), ("env".into(), 25)]
        );
        assert_eq!(
            plan(480, "x", &limits).unwrap_err(),
            "unknown stage x (stages: env parity bench)"
        );
        assert_eq!(
            plan(100, "", &limits).unwrap_err(),
            "the stages' limits add up to 115 s > 100 s"
        );
    }
}
