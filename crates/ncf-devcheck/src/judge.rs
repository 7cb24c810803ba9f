//! The judgements of the GPU check's NCCL stages (`scripts/device-check.sh`, through the
//! `ncf-devcheck` tool), here so that they are tested without a GPU: reading the training logs
//! and the ranks' checksum lines, deciding whether a run through NCCL trains like the plain runs
//! ([`judge_runs`]) and whether a killed rank ended the others in time and by name
//! ([`judge_kill`]).

use ncf_core::train::EpochReport;
use serde_json::{json, Map, Value};

/// The epoch reports of an `ncf-train` JSON-lines log (`ncf_core::train::log`); other lines
/// are skipped.
pub fn epochs(log: &str) -> Vec<EpochReport> {
    ncf_core::train::log::lenient(log).0
}

/// The `ncf-train: rank R of W: parameters sha256 HEX` lines of the ranks' stderr: (R, W, HEX).
pub fn checksums(stderr: &str) -> Vec<(usize, usize, String)> {
    stderr
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("ncf-train: rank ")?;
            let (r, rest) = rest.split_once(" of ")?;
            let (w, hex) = rest.split_once(": parameters sha256 ")?;
            Some((r.parse().ok()?, w.parse().ok()?, hex.trim().to_string()))
        })
        .collect()
}

/// The ranks' `ncf-cuda: rank R of W: NCCL … collectives self-test passed` lines.
pub fn self_tests(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.starts_with("ncf-cuda: rank ") && l.contains("self-test passed"))
        .map(|l| l.trim().to_string())
        .collect()
}

/// Largest |a − b| of the epochs' loss and HR; None when the logs' epochs differ in number.
fn diff(a: &[EpochReport], b: &[EpochReport]) -> Option<(f64, f64)> {
    if a.is_empty() || a.len() != b.len() {
        return None;
    }
    Some(a.iter().zip(b).fold((0f64, 0f64), |(l, h), (x, y)| {
        (l.max((x.loss - y.loss).abs()), h.max((x.hr - y.hr).abs()))
    }))
}

/// Loss and HR tolerances given the run-to-run noise of two plain runs: 4× the noise, at least
/// 1e-4 (loss) and 0.005 (HR, 30 of ml-1m's 6,040 users). CUDA training is not bit-reproducible
/// (atomically reduced gradients), so the NCCL run is held to what two plain runs differ by.
pub fn tolerances(noise: (f64, f64)) -> (f64, f64) {
    ((4.0 * noise.0).max(1e-4), (4.0 * noise.1).max(0.005))
}

/// A verdict: its status word, a one-line summary and the detail.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub pass: bool,
    pub summary: String,
    pub detail: Value,
}

impl Verdict {
    pub fn status(&self) -> &'static str {
        if self.pass {
            "pass"
        } else {
            "fail"
        }
    }
}

/// A run of the check: its name, exit code, training log (rank 0's stdout).
pub struct Run<'a> {
    pub name: &'a str,
    pub rc: i32,
    pub log: &'a str,
}

/// Do `runs` (through NCCL) train like the plain `refs` (one or two: two measure the noise)?
/// Every run must exit 0 with the references' epochs, losses and HR within [`tolerances`]; with
/// `ranks` > 0, `stderr` (the ranks' logs) must hold one checksum line from each of `ranks`
/// ranks, all equal, and each rank's line saying its NCCL collectives self-test passed.
pub fn judge_runs(refs: &[Run], runs: &[Run], stderr: &str, ranks: usize) -> Verdict {
    let mut why = vec![];
    for r in refs.iter().chain(runs) {
        if r.rc != 0 {
            why.push(format!("{} exited {}", r.name, r.rc));
        }
    }
    let base = refs.first().map(|r| epochs(r.log)).unwrap_or_default();
    if base.is_empty() {
        why.push("the reference run logged no epoch".into());
    }
    let noise = match refs.get(1) {
        Some(r2) => match diff(&base, &epochs(r2.log)) {
            Some(d) => Some(d),
            None => {
                why.push(format!(
                    "{} logged other epochs than {}",
                    r2.name, refs[0].name
                ));
                None
            }
        },
        None => None,
    };
    let (tol_loss, tol_hr) = tolerances(noise.unwrap_or((0.0, 0.0)));
    let mut cands = Map::new();
    for r in runs {
        let e = epochs(r.log);
        let d = diff(&base, &e);
        match d {
            Some((dl, dh)) => {
                if dl > tol_loss {
                    why.push(format!(
                        "{}: loss differs by {dl:.3e} > {tol_loss:.3e}",
                        r.name
                    ));
                }
                if dh > tol_hr {
                    why.push(format!("{}: HR differs by {dh:.4} > {tol_hr:.4}", r.name));
                }
            }
            None if !base.is_empty() => why.push(format!(
                "{}: {} epochs logged, the reference {}",
                r.name,
                e.len(),
                base.len()
            )),
            None => {}
        }
        cands.insert(
            r.name.to_string(),
            json!({"rc": r.rc, "epochs": e.iter().map(|x| json!({"epoch": x.epoch, "loss": x.loss, "hr": x.hr})).collect::<Vec<_>>(),
                   "loss_diff": d.map(|x| x.0), "hr_diff": d.map(|x| x.1)}),
        );
    }
    let sums = checksums(stderr);
    let mut same = None;
    if ranks > 0 {
        let mut seen: Vec<usize> = sums.iter().map(|s| s.0).collect();
        seen.sort_unstable();
        seen.dedup();
        let all: Vec<usize> = (0..ranks).collect();
        if seen != all || sums.iter().any(|s| s.1 != ranks) {
            why.push(format!(
                "parameter checksums from ranks {seen:?} of {ranks} (need one from each)"
            ));
        }
        let equal = sums.windows(2).all(|w| w[0].2 == w[1].2) && !sums.is_empty();
        if !equal {
            why.push("the ranks' parameter checksums differ".into());
        }
        same = Some(equal);
        let n = self_tests(stderr).len();
        if n < ranks {
            why.push(format!(
                "{n} of {ranks} ranks said their NCCL collectives self-test passed"
            ));
        }
    }
    let pass = why.is_empty();
    let summary = if pass {
        let mut s =
            format!("loss within {tol_loss:.1e} and HR within {tol_hr:.4} of the plain run");
        if let Some(n) = noise {
            s += &format!(
                " (noise of two plain runs: loss {:.1e}, HR {:.4})",
                n.0, n.1
            );
        }
        if same == Some(true) {
            s += &format!("; {ranks} ranks' parameter checksums equal");
        }
        s
    } else {
        why.join("; ")
    };
    Verdict {
        pass,
        summary,
        detail: json!({
            "noise": noise.map(|n| json!({"loss": n.0, "hr": n.1})),
            "tolerance": {"loss": tol_loss, "hr": tol_hr},
            "reference": refs.iter().map(|r| json!({"name": r.name, "rc": r.rc, "epochs": epochs(r.log).len()})).collect::<Vec<_>>(),
            "runs": cands,
            "checksums": sums.iter().map(|s| json!({"rank": s.0, "world": s.1, "sha256": s.2})).collect::<Vec<_>>(),
            "checksums_equal": same,
            "nccl": self_tests(stderr),
            "problems": why,
        }),
    }
}

/// The survivor of a killed rank: it must exit non-zero (not by the stage's own timeout: 124,
/// 137) within `limit_s` seconds of the kill, name the killed rank (`rank K`) and not panic.
/// The detail says which path caught it (NCCL's asynchronous error, the step deadline, or a host
/// collective) and how the abort went.
pub fn judge_kill(killed: usize, rc: i32, seconds: f64, limit_s: f64, stderr: &str) -> Verdict {
    let name = format!("rank {killed}");
    let names = stderr
        .match_indices(&name)
        .any(|(i, _)| !stderr[i + name.len()..].starts_with(|c: char| c.is_ascii_digit()));
    let mut why = vec![];
    if rc == 0 {
        why.push("the survivor exited 0".to_string());
    }
    if rc == 124 || rc == 137 || rc < 0 {
        why.push(format!("the survivor did not exit by itself (exit {rc})"));
    }
    if seconds > limit_s {
        why.push(format!("it took {seconds:.1} s > {limit_s:.0} s"));
    }
    if !names {
        why.push(format!("its error does not name {name}"));
    }
    if stderr.contains("panicked") {
        why.push("it panicked".into());
    }
    let path = if stderr.contains("NCCL reported") {
        "NCCL asynchronous error (socket closed), then abort"
    } else if stderr.contains("did not finish within") {
        "step deadline, then abort"
    } else if stderr.contains("receiving rank") || stderr.contains("waiting for the sums") {
        "host collective (the ranks' stop agreement or evaluation)"
    } else {
        "unknown"
    };
    let abort = [
        "the NCCL communicator was aborted",
        "aborting the NCCL communicator failed too",
        "did not finish within 10 s",
    ]
    .into_iter()
    .find(|s| stderr.contains(s));
    let error = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("ncf-train:") && !l.contains("parameters sha256"))
        .unwrap_or("")
        .to_string();
    let pass = why.is_empty();
    Verdict {
        pass,
        summary: if pass {
            format!("exit {rc} {seconds:.1} s after the kill, naming {name} ({path})")
        } else {
            why.join("; ")
        },
        detail: json!({"killed": killed, "rc": rc, "seconds": seconds, "limit_s": limit_s,
            "names_it": names, "caught_by": path, "abort": abort, "error": error, "problems": why}),
    }
}

/// Why two model files of fixed-seed runs that must be equal are not (None: the same bytes).
pub fn identical(a: &std::path::Path, b: &std::path::Path) -> Option<String> {
    match (std::fs::read(a), std::fs::read(b)) {
        (Ok(x), Ok(y)) if x == y => None,
        (Ok(_), Ok(_)) => Some(format!(
            "{} and {} differ: two fixed-seed runs wrote different model bytes (the \
             deterministic reductions should make them equal)",
            a.display(),
            b.display()
        )),
        (Err(e), _) => Some(format!("{}: {e}", a.display())),
        (_, Err(e)) => Some(format!("{}: {e}", b.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ncf-train's lines: an epoch report per (loss, HR), then the summary.
    fn log(losses: &[(f64, f64)]) -> String {
        let mut s = String::from("not json\n");
        for (e, (l, h)) in losses.iter().enumerate() {
            s += &format!(
                "{{\"epoch\":{e},\"loss\":{l},\"hr\":{h},\"ndcg\":0.25,\"k\":10,\"eval\":\"test\",\
                 \"train_s\":0.1,\"eval_s\":0.01,\"samples\":10,\"samples_per_s\":100.0,\
                 \"steps\":1,\"skipped_steps\":0}}\n"
            );
        }
        s + &format!("{}\n", SUMMARY)
    }

    const SUMMARY: &str = r#"{"best_hr":0.5,"best_ndcg":0.3,"best_epoch":1,"first_epoch_reaching_target":null,"time_to_target_s":null,"train_time_s":1.5,"eval_time_s":0.1,"avg_samples_per_s":100.0,"best_samples_per_s":100.0,"epochs_run":2,"k":10,"eval":"test","backend":"cpu"}"#;

    #[test]
    fn logs_and_checksum_lines_are_read() {
        let e = epochs(&log(&[(0.44, 0.45), (0.38, 0.51)]));
        assert_eq!(e.len(), 2);
        assert_eq!((e[1].epoch, e[1].loss, e[1].hr), (1, 0.38, 0.51));
        let err =
            "ncf-cuda: rank 0 of 2: NCCL 2.27.7\nncf-train: rank 1 of 2: parameters sha256 ab12\n";
        assert_eq!(checksums(err), vec![(1, 2, "ab12".to_string())]);
    }

    #[test]
    fn an_nccl_run_passes_within_the_noise_and_fails_outside_it() {
        let (a, b) = (log(&[(0.44, 0.45)]), log(&[(0.44001, 0.4502)]));
        let refs = [
            Run {
                name: "plain",
                rc: 0,
                log: &a,
            },
            Run {
                name: "plain2",
                rc: 0,
                log: &b,
            },
        ];
        let ok = log(&[(0.44003, 0.451)]);
        let v = judge_runs(
            &refs,
            &[Run {
                name: "nccl",
                rc: 0,
                log: &ok,
            }],
            "",
            0,
        );
        assert!(v.pass, "{}", v.summary);
        assert_eq!(v.detail["tolerance"]["loss"], json!(1e-4));
        let bad = log(&[(0.45, 0.45)]);
        let v = judge_runs(
            &refs,
            &[Run {
                name: "nccl",
                rc: 0,
                log: &bad,
            }],
            "",
            0,
        );
        assert!(!v.pass);
        assert!(
            v.summary.contains("nccl: loss differs by 1.000e-2"),
            "{}",
            v.summary
        );
        let v = judge_runs(
            &refs,
            &[Run {
                name: "nccl",
                rc: 1,
                log: "",
            }],
            "",
            0,
        );
        assert!(v.summary.contains("nccl exited 1"), "{}", v.summary);
        assert!(v.summary.contains("0 epochs logged"), "{}", v.summary);
    }

    #[test]
    fn two_ranks_need_one_equal_checksum_each() {
        let a = log(&[(0.44, 0.45)]);
        let refs = [Run {
            name: "plain",
            rc: 0,
            log: &a,
        }];
        let runs = [Run {
            name: "2 ranks",
            rc: 0,
            log: &a,
        }];
        let same =
            "ncf-cuda: rank 0 of 2: NCCL 2.27.7 (x), non-blocking communicator; collectives \
                    self-test passed\nncf-cuda: rank 1 of 2: NCCL 2.27.7 (x), non-blocking \
                    communicator; collectives self-test passed\nncf-train: rank 0 of 2: parameters \
                    sha256 ff\nncf-train: rank 1 of 2: parameters sha256 ff\n";
        let v = judge_runs(&refs, &runs, same, 2);
        assert!(v.pass, "{}", v.summary);
        assert!(v.summary.contains("2 ranks' parameter checksums equal"));
        let differ = same.replace(
            "1 of 2: parameters sha256 ff",
            "1 of 2: parameters sha256 fe",
        );
        let v = judge_runs(&refs, &runs, &differ, 2);
        assert!(v.summary.contains("checksums differ"), "{}", v.summary);
        let one = "ncf-train: rank 0 of 2: parameters sha256 ff\n";
        let v = judge_runs(&refs, &runs, one, 2);
        assert!(v.summary.contains("from ranks [0] of 2"), "{}", v.summary);
        assert!(v
            .summary
            .contains("0 of 2 ranks said their NCCL collectives self-test passed"));
    }

    #[test]
    fn a_survivor_must_exit_in_time_naming_the_killed_rank() {
        let err = "ncf-cuda: rank 0 of 2: NCCL 2.27.7\nncf-train: rank 0 of 2: epoch 2 step 160 \
                   failed: NCCL reported ncclRemoteError (6): rank 1 died (its connection to rank \
                   0 closed), in the middle of the step's NCCL collectives; the NCCL communicator \
                   was aborted\n";
        let v = judge_kill(1, 1, 2.5, 30.0, err);
        assert!(v.pass, "{}", v.summary);
        assert_eq!(
            v.detail["caught_by"],
            json!("NCCL asynchronous error (socket closed), then abort")
        );
        assert_eq!(
            v.detail["abort"],
            json!("the NCCL communicator was aborted")
        );
        assert!(!judge_kill(1, 124, 45.0, 30.0, err).pass);
        assert!(!judge_kill(1, 0, 1.0, 30.0, err).pass);
        assert!(!judge_kill(1, 1, 31.0, 30.0, err).pass);
        // "rank 10" is not rank 1.
        let v = judge_kill(1, 1, 2.0, 30.0, "ncf-train: rank 10 is gone");
        assert!(v.summary.contains("does not name rank 1"), "{}", v.summary);
        let host = "ncf-train: rank 0: receiving rank 1's sums: connection closed (did it die?)";
        assert!(judge_kill(1, 1, 0.3, 30.0, host).detail["caught_by"]
            .as_str()
            .unwrap()
            .starts_with("host collective"));
    }

    #[test]
    fn two_fixed_seed_models_must_hold_the_same_bytes() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, c) = (d.path().join("a"), d.path().join("b"), d.path().join("c"));
        std::fs::write(&a, b"model").unwrap();
        std::fs::write(&b, b"model").unwrap();
        std::fs::write(&c, b"modem").unwrap();
        assert_eq!(identical(&a, &b), None);
        assert!(identical(&a, &c).unwrap().contains("different model bytes"));
        assert!(identical(&a, &d.path().join("none")).is_some());
    }
}
