//! Reads ncf-train's stdout (JSON lines: one per epoch, then a summary) into the points of a
//! training curve: `ncf_core::train`'s own `EpochReport` and `Summary`.

use crate::{Error, Result};
use ncf_core::train::{EpochReport, LogLine, Summary};
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct TrainLog {
    pub epochs: Vec<EpochReport>,
    pub summary: Option<Summary>,
}

/// Parse a training log; `name` is used in error messages (`name:line: ...`). Blank lines are
/// skipped; any other line must be an epoch report or the summary (`ncf_core::train::log`).
pub fn parse(text: &str, name: &str) -> Result<TrainLog> {
    let mut log = TrainLog::default();
    for (k, line) in text.lines().enumerate() {
        let at = || format!("{name}:{}", k + 1);
        match LogLine::parse(line).map_err(|e| Error::parse(at(), e))? {
            Some(LogLine::Epoch(e)) => log.epochs.push(e),
            Some(LogLine::Summary(s)) => log.summary = Some(s),
            None => {}
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
