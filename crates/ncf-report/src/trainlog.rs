//! Reads ncf-train's stdout (JSON lines: one per epoch, then a summary) into the points of a
//! training curve.

use crate::{Error, Result};
use serde::Deserialize;
use std::path::Path;

/// One epoch of a training log (the fields of `ncf_core::train::EpochReport` a curve needs).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct EpochPoint {
    pub epoch: u32,
    pub loss: f64,
    pub hr: f64,
    pub ndcg: f64,
    pub k: usize,
}

/// The final summary line, when the run finished.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct SummaryLine {
    pub best_hr: f64,
    pub best_ndcg: f64,
    pub best_epoch: Option<u32>,
    pub train_time_s: f64,
    pub backend: String,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct TrainLog {
    pub epochs: Vec<EpochPoint>,
    pub summary: Option<SummaryLine>,
}

/// Parse a training log; `name` is used in error messages (`name:line: ...`). Blank lines are
/// skipped; any other line must be an epoch report or the summary.
pub fn parse(text: &str, name: &str) -> Result<TrainLog> {
    let mut log = TrainLog::default();
    for (k, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at = || format!("{name}:{}", k + 1);
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| Error::parse(at(), format!("not a JSON line ({e})")))?;
        if v.get("epoch").is_some() {
            let p: EpochPoint = serde_json::from_value(v).map_err(|e| {
                Error::parse(
                    at(),
                    format!("epoch report: {e} (expected ncf-train's output)"),
                )
            })?;
            if let Some(why) = out_of_range(&p) {
                return Err(Error::parse(
                    at(),
                    format!("{why}: not a value ncf-train reports"),
                ));
            }
            log.epochs.push(p);
        } else if v.get("best_hr").is_some() {
            let s: SummaryLine = serde_json::from_value(v)
                .map_err(|e| Error::parse(at(), format!("summary: {e}")))?;
            log.summary = Some(s);
        } else {
            return Err(Error::parse(
                at(),
                "expected an epoch report (\"epoch\", \"loss\", \"hr\", \"ndcg\") or the summary (\"best_hr\")",
            ));
        }
    }
    if log.epochs.is_empty() {
        return Err(Error::parse(
            name,
            "no epoch reports (expected ncf-train's stdout: one JSON line per epoch)",
        ));
    }
    Ok(log)
}

/// What is wrong with an epoch report's values, if anything: HR and NDCG are fractions, the
/// loss a finite number.
fn out_of_range(p: &EpochPoint) -> Option<String> {
    for (name, v) in [("hr", p.hr), ("ndcg", p.ndcg)] {
        if !(0.0..=1.0).contains(&v) {
            return Some(format!("{name} {v} is outside [0, 1]"));
        }
    }
    (!p.loss.is_finite()).then(|| format!("loss {} is not a finite number", p.loss))
}

/// Read and parse a log file (`-` is stdin).
pub fn read(path: &Path) -> Result<TrainLog> {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| Error::io("<stdin>", e))?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?
    };
    let name = if path.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    };
    parse(&text, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"{"epoch":0,"loss":0.44,"hr":0.45,"ndcg":0.25,"k":10,"eval":"test","train_s":0.1,"eval_s":0.01,"samples":10,"samples_per_s":100.0,"steps":1,"skipped_steps":0}

{"epoch":1,"loss":0.38,"hr":0.51,"ndcg":0.29,"k":10,"eval":"test","train_s":0.1,"eval_s":0.01,"samples":10,"samples_per_s":100.0,"steps":1,"skipped_steps":0}
{"best_hr":0.51,"best_ndcg":0.29,"best_epoch":1,"first_epoch_reaching_target":null,"time_to_target_s":null,"train_time_s":0.2,"eval_time_s":0.02,"avg_samples_per_s":100.0,"best_samples_per_s":100.0,"epochs_run":2,"k":10,"eval":"test","backend":"cpu"}
"#;

    #[test]
    fn reads_epochs_and_summary() {
        let log = parse(LOG, "t.jsonl").unwrap();
        assert_eq!(log.epochs.len(), 2);
        assert_eq!(log.epochs[1].epoch, 1);
        assert_eq!(log.epochs[1].hr, 0.51);
        assert_eq!(log.summary.unwrap().best_epoch, Some(1));
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let e = parse("{\"epoch\":0}\n", "t.jsonl").unwrap_err().to_string();
        assert!(e.starts_with("t.jsonl:1: epoch report"), "{e}");
        let e = parse("{\"x\":1}\n", "t.jsonl").unwrap_err().to_string();
        assert!(e.starts_with("t.jsonl:1: expected an epoch report"), "{e}");
        let e = parse("\nnot json\n", "t.jsonl").unwrap_err().to_string();
        assert!(e.starts_with("t.jsonl:2: not a JSON line"), "{e}");
        let e = parse("", "t.jsonl").unwrap_err().to_string();
        assert!(e.contains("no epoch reports"), "{e}");
    }
}
