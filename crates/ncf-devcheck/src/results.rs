//! results.json of the GPU check (schema `ncf-device-check/1`): the structs that `ncf-devcheck
//! merge` writes and ncf-report (`ncf-bench-report render`, `ncf-plot throughput`) reads, and the
//! merge of the stages' fragments into it ([`merge`]), rewritten after every stage.
//!
//! The first device checks (2026-11-26, committed under benchmarks/results/) wrote only the
//! report keys (`env`, `parity`, `bench`, `peer`, `ml1m`): every other field has a default, so
//! their files read with the same structs.

use crate::{StageVerdict, Status};
use ncf_core::train::{EpochReport, LogLine, Summary};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub const SCHEMA: &str = "ncf-device-check/1";

/// The whole file: the run's header, the keys ncf-report reads, and every stage in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Results {
    #[serde(default)]
    pub schema: String,
    #[serde(flatten)]
    pub header: Header,
    /// "GPU, driver, memory" first, then "torch VERSION" when torch was found.
    #[serde(default)]
    pub env: Vec<String>,
    /// ncf-cuda-check's report of the parity stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parity: Option<Checks>,
    /// ncf-cuda-check --bench's report (no results when the bench did not run).
    #[serde(default)]
    pub bench: Bench,
    /// The PyTorch peer's epoch line, by precision.
    #[serde(default)]
    pub peer: BTreeMap<String, PeerRun>,
    /// The ml1m stage's training log: its epoch reports, then its summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ml1m: Option<Vec<LogLine>>,
    #[serde(default)]
    pub stages: Vec<Stage>,
    /// How many stages ended with each status.
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
    /// Every stage of the plan ran (a run cut by the device tool's limit is not complete).
    #[serde(default)]
    pub complete: bool,
    #[serde(default)]
    pub not_run: Vec<String>,
}

/// What `ncf-devcheck plan` records before the first stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Header {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_present: Option<bool>,
    /// No GPU (or DEVICE_CHECK_DRY=1): every stage ran its commands only as far as "CUDA
    /// unavailable".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// The stages' limits added up (at most the plan's cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_limit_s: Option<u64>,
    /// The commit the binaries were built from (.device/COMMIT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Anything else a header held (kept as it was), or why it could not be read.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One stage: its verdict, how long it ran under which limit, and its own report (`detail`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub name: String,
    pub status: Status,
    #[serde(default)]
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
    /// The stage's exit code (124 or 137: cut at its limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rc: Option<i32>,
    /// A file holding the detail, read into `detail` by [`merge`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail_file: Option<String>,
    /// The stage's own report (each stage's shape: ncf-cuda-check's JSON, a verdict's detail).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub detail: Value,
    /// A fragment that could not be read: why, and its text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<Value>,
}

impl Stage {
    /// The fragment of a stage that ran: `verdict` is what the stage decided (None when it was
    /// cut or died first); a cut (exit 124 or 137) is a timeout whatever it decided.
    pub fn ended(
        name: &str,
        rc: i32,
        seconds: f64,
        limit_s: u64,
        verdict: Option<StageVerdict>,
        log_tail: &str,
    ) -> Stage {
        let (status, summary, detail) = match (rc, verdict) {
            (124 | 137, v) => {
                let mut s = format!("cut at its limit of {limit_s} s");
                if let Some(v) = &v {
                    s += &format!("; {}", v.summary);
                }
                (Status::Timeout, s, v.map(|v| v.detail).unwrap_or_default())
            }
            (_, Some(v)) => (v.status, v.summary, v.detail),
            (_, None) => (
                Status::Error,
                format!("the stage ended (exit {rc}) without a verdict: {log_tail}"),
                Value::Null,
            ),
        };
        Stage {
            name: name.into(),
            status,
            summary,
            seconds: Some((seconds * 10.0).round() / 10.0),
            timeout_s: Some(limit_s),
            rc: Some(rc),
            detail_file: None,
            detail,
            error: None,
            raw: None,
        }
    }
}

/// ncf-cuda-check's report of its checks (`--json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Checks {
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub arch: String,
    #[serde(default)]
    pub checks: usize,
    #[serde(default)]
    pub failed: usize,
    pub results: Vec<CheckResult>,
}

/// One check: GPU against the CPU reference, the worst element's errors.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub precision: String,
    pub pass: bool,
    #[serde(default)]
    pub worst_abs: f64,
    #[serde(default)]
    pub worst_rel: f64,
    #[serde(default)]
    pub at: usize,
    #[serde(default)]
    pub note: String,
}

/// ncf-cuda-check --bench's report: the rows ncf-report draws, the rest as the bench wrote it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Bench {
    pub results: Vec<BenchRow>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchRow {
    pub precision: String,
    pub samples_per_s: f64,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The PyTorch peer's epoch line (its own fields, kept as it wrote them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerRun {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_samples_per_s: Option<f64>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The env stage's detail: what it found on the GPU machine.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EnvDetail {
    pub gpu: String,
    pub driver: String,
    pub driver_cuda: String,
    pub memory: String,
    pub compute_mode: String,
    pub torch_python: String,
    pub torch: String,
    pub python: String,
    pub nccl_lib_dir: String,
    pub cuda_lib_dir: String,
    pub cuda_lib_version: String,
    pub cuda_candidates: String,
    pub compute_sanitizer: String,
    pub ld_library_path: String,
    pub commit: String,
}

/// The ml1m stage's detail: ncf-train's log, read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ml1mDetail {
    pub epochs: Vec<EpochReport>,
    pub summary: Option<Summary>,
}

/// The peer stage's detail: one epoch line per precision.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerDetail {
    pub runs: Vec<PeerRun>,
}

impl Results {
    /// The report keys, taken from the stages' details (a detail of another shape is left out).
    fn fill_report_keys(&mut self) {
        if let Some(e) = detail_of::<EnvDetail>(&self.stages, "env") {
            if !e.gpu.is_empty() {
                self.env
                    .push(format!("{}, {}, {}", e.gpu, e.driver, e.memory));
            }
            if !e.torch.is_empty() {
                self.env.push(format!("torch {}", e.torch));
            }
        }
        self.parity = detail_of(&self.stages, "parity");
        self.bench = detail_of(&self.stages, "bench").unwrap_or_default();
        for r in detail_of::<PeerDetail>(&self.stages, "peer").map_or(vec![], |p| p.runs) {
            if let Some(name) = r.precision.clone() {
                self.peer.insert(name, r);
            }
        }
        self.ml1m = detail_of::<Ml1mDetail>(&self.stages, "ml1m").map(|m| {
            let mut lines: Vec<LogLine> = m.epochs.into_iter().map(LogLine::Epoch).collect();
            lines.extend(m.summary.map(LogLine::Summary));
            lines
        });
    }

    /// The summary of the ml1m run, when there was one.
    pub fn ml1m_summary(&self) -> Option<&Summary> {
        self.ml1m.iter().flatten().rev().find_map(|l| match l {
            LogLine::Summary(s) => Some(s),
            LogLine::Epoch(_) => None,
        })
    }

    /// A stage failed, errored or was cut.
    pub fn failed(&self) -> bool {
        self.stages.iter().any(|s| s.status.failed())
    }
}

/// The detail of stage `name` as `T`, when it ran and its detail has that shape.
fn detail_of<T: serde::de::DeserializeOwned>(stages: &[Stage], name: &str) -> Option<T> {
    let s = stages.iter().find(|s| s.name == name)?;
    serde_json::from_value(s.detail.clone()).ok()
}

/// One fragment (`file`: its name, `text`: its JSON): a stage, or an error stage that says why
/// it is not one (so one bad stage never spoils the file). Its `detail_file` is read into
/// `detail` (as `{"raw": text}` when that is not JSON).
fn stage_of(file: &str, text: &str) -> Stage {
    let broken = |error: Option<String>, raw: Value| Stage {
        name: file.into(),
        status: Status::Error,
        summary: String::new(),
        seconds: None,
        timeout_s: None,
        rc: None,
        detail_file: None,
        detail: Value::Null,
        error,
        raw: Some(raw),
    };
    let mut s = match serde_json::from_str::<Value>(text) {
        Err(e) => return broken(Some(format!("not JSON: {e}")), json!(text)),
        Ok(v) => match serde_json::from_value::<Stage>(v.clone()) {
            Ok(s) => s,
            Err(e) => return broken(Some(format!("not a stage: {e}")), v),
        },
    };
    if let Some(path) = &s.detail_file {
        s.detail = match std::fs::read_to_string(path) {
            Ok(t) => serde_json::from_str(&t).unwrap_or(json!({"raw": t})),
            Err(_) => Value::Null,
        };
    }
    s
}

/// The results file: `header` (ncf-devcheck plan's JSON) and every stage fragment in order;
/// `expected` are the planned stages (those missing are `not_run`). The report keys are taken
/// from the stages ([`Results::fill_report_keys`]).
pub fn merge(header: Option<&str>, stages: &[(String, String)], expected: &[&str]) -> Results {
    let mut out = Results {
        schema: SCHEMA.into(),
        ..Results::default()
    };
    match header.map(serde_json::from_str::<Value>) {
        Some(Ok(v @ Value::Object(_))) => match serde_json::from_value::<Header>(v.clone()) {
            Ok(h) => out.header = h,
            Err(e) => {
                out.header.other.insert("header".into(), v);
                out.header
                    .other
                    .insert("header_error".into(), json!(e.to_string()));
            }
        },
        Some(Ok(v)) => {
            out.header.other.insert("header".into(), v);
        }
        Some(Err(e)) => {
            out.header
                .other
                .insert("header_error".into(), json!(e.to_string()));
        }
        None => {}
    }
    out.stages = stages.iter().map(|(f, t)| stage_of(f, t)).collect();
    for s in &out.stages {
        *out.counts.entry(s.status.word().into()).or_insert(0) += 1;
    }
    out.not_run = expected
        .iter()
        .filter(|e| !out.stages.iter().any(|s| s.name == **e))
        .map(|e| e.to_string())
        .collect();
    out.complete = out.not_run.is_empty();
    out.fill_report_keys();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_merged_file_has_the_keys_ncf_report_reads() {
        let dir = tempfile::tempdir().unwrap();
        let w = |name: &str, text: &str| {
            let p = dir.path().join(format!("{name}.json"));
            std::fs::write(&p, text).unwrap();
            (
                format!("{name}.json"),
                format!(
                    "{{\"name\":\"{name}\",\"status\":\"pass\",\"detail_file\":{:?}}}",
                    p.to_str().unwrap()
                ),
            )
        };
        let stages = vec![
            w(
                "env",
                r#"{"gpu":"NVIDIA H200","driver":"580.159.04","memory":"143771 MiB","torch":"2.11.0+cu130"}"#,
            ),
            w(
                "parity",
                r#"{"checks":2,"results":[{"pass":true},{"pass":false}]}"#,
            ),
            w(
                "bench",
                r#"{"results":[{"precision":"bf16","samples_per_s":1.5e8}]}"#,
            ),
            w(
                "peer",
                r#"{"runs":[{"precision":"bf16","step_samples_per_s":7e7}]}"#,
            ),
            w(
                "ml1m",
                r#"{"epochs":[{"epoch":0,"loss":0.4,"hr":0.45,"ndcg":0.25,"k":10,"eval":"test","train_s":0.1,"eval_s":0.01,"samples":10,"samples_per_s":100.0,"steps":1,"skipped_steps":0}],"summary":{"best_hr":0.7,"best_ndcg":0.42,"best_epoch":17,"first_epoch_reaching_target":null,"time_to_target_s":null,"train_time_s":1.5,"eval_time_s":0.1,"avg_samples_per_s":1e7,"best_samples_per_s":1e7,"epochs_run":20,"k":10,"eval":"test","backend":"cuda"}}"#,
            ),
        ];
        let v = serde_json::to_value(merge(None, &stages, &[])).unwrap();
        assert_eq!(v["env"][0], json!("NVIDIA H200, 580.159.04, 143771 MiB"));
        assert_eq!(v["parity"]["results"].as_array().unwrap().len(), 2);
        assert_eq!(v["bench"]["results"][0]["precision"], json!("bf16"));
        assert_eq!(v["peer"]["bf16"]["step_samples_per_s"], json!(7e7));
        assert_eq!(v["ml1m"][1]["best_hr"], json!(0.7));
    }

    #[test]
    fn merging_keeps_every_stage_and_survives_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d.json");
        std::fs::write(&d, "{\"pass\": true}").unwrap();
        let stages = vec![
            (
                "00-env.json".to_string(),
                "{\"name\":\"env\",\"status\":\"no-gpu\"}".to_string(),
            ),
            (
                "01-nccl_load.json".to_string(),
                format!(
                    "{{\"name\":\"nccl_load\",\"status\":\"pass\",\"detail_file\":{:?}}}",
                    d.to_str().unwrap()
                ),
            ),
            ("02-x.json".to_string(), "{\"name\": broken".to_string()),
        ];
        let v = serde_json::to_value(merge(
            Some("{\"gpu\": \"none\"}"),
            &stages,
            &["env", "nccl_load", "parity"],
        ))
        .unwrap();
        assert_eq!(v["schema"], json!("ncf-device-check/1"));
        assert_eq!(v["gpu"], json!("none"));
        assert_eq!(v["stages"].as_array().unwrap().len(), 3);
        assert_eq!(v["stages"][1]["detail"]["pass"], json!(true));
        assert_eq!(v["stages"][2]["status"], json!("error"));
        assert_eq!(v["counts"]["no-gpu"], json!(1));
        assert_eq!(v["complete"], json!(false));
        assert_eq!(v["not_run"], json!(["parity"]));
        // What ncf-report reads is there even without those stages.
        assert_eq!(v["bench"]["results"], json!([]));
        assert_eq!(v["env"], json!([]));
        // Text, not JSON, round-trips: the file stays well-formed.
        let text = serde_json::to_string(&v).unwrap();
        assert!(serde_json::from_str::<Value>(&text).is_ok());
    }

    #[test]
    fn the_first_runs_files_read_with_the_same_structs() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benchmarks/results");
        for run in [
            "2026-11-26-h200-v2/results.json",
            "2026-11-26-h200-first/results-run1-with-ml1m.json",
        ] {
            let text = std::fs::read_to_string(dir.join(run)).unwrap();
            let r: Results = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{run}: {e}"));
            assert_eq!(
                r.parity.as_ref().map(|p| p.results.len()),
                Some(139),
                "{run}"
            );
            assert!(r.ml1m_summary().is_some_and(|s| s.best_hr > 0.7), "{run}");
            assert_eq!(r.env[0].split(',').next(), Some("NVIDIA H200"));
        }
    }

    #[test]
    fn a_stage_cut_at_its_limit_is_a_timeout_whatever_it_decided() {
        let v = StageVerdict::new(Status::Pass, "fine", Value::Null);
        let s = Stage::ended("parity", 124, 60.04, 60, Some(v), "");
        assert_eq!((s.status, s.seconds), (Status::Timeout, Some(60.0)));
        assert_eq!(s.summary, "cut at its limit of 60 s; fine");
        let s = Stage::ended("parity", 3, 1.0, 60, None, "boom");
        assert_eq!(s.status, Status::Error);
        assert_eq!(
            s.summary,
            "the stage ended (exit 3) without a verdict: boom"
        );
    }
}
