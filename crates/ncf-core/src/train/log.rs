//! Reading ncf-train's report lines back (its stdout or `--log`): each JSON line is an
//! [`EpochReport`] or the run's [`Summary`], the structs the run writes them from. Every reader
//! (ncf-plot's curves, the GPU check's verdicts and results file, the reports of the scripts)
//! parses them here, so none keeps a struct of its own.

use super::{EpochReport, Summary};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One line of a training log.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum LogLine {
    Epoch(EpochReport),
    Summary(Summary),
}

impl LogLine {
    /// One line: an epoch report (it has "epoch") or the summary ("best_hr"); `Ok(None)` for a
    /// blank line. An epoch report must hold values ncf-train reports (HR and NDCG in [0, 1], a
    /// finite loss). The error says what is wrong, for the caller to say where.
    pub fn parse(line: &str) -> Result<Option<LogLine>, String> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(None);
        }
        let v: Value = serde_json::from_str(line).map_err(|e| format!("not a JSON line ({e})"))?;
        Self::from_value(v).map(Some)
    }

    /// [`LogLine::parse`] of a line already read as JSON.
    pub fn from_value(v: Value) -> Result<LogLine, String> {
        if v.get("epoch").is_some() {
            let e: EpochReport = serde_json::from_value(v)
                .map_err(|e| format!("epoch report: {e} (expected ncf-train's output)"))?;
            match out_of_range(&e) {
                Some(why) => Err(format!("{why}: not a value ncf-train reports")),
                None => Ok(LogLine::Epoch(e)),
            }
        } else if v.get("best_hr").is_some() {
            let s = serde_json::from_value(v).map_err(|e| format!("summary: {e}"))?;
            Ok(LogLine::Summary(s))
        } else {
            Err(
                "expected an epoch report (\"epoch\", \"loss\", \"hr\", \"ndcg\") or the \
                 summary (\"best_hr\")"
                    .into(),
            )
        }
    }
}

impl<'de> Deserialize<'de> for LogLine {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        LogLine::from_value(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// What is wrong with an epoch report's values, if anything: HR and NDCG are fractions, the
/// loss a finite number.
fn out_of_range(p: &EpochReport) -> Option<String> {
    for (name, v) in [("hr", p.hr), ("ndcg", p.ndcg)] {
        if !(0.0..=1.0).contains(&v) {
            return Some(format!("{name} {v} is outside [0, 1]"));
        }
    }
    (!p.loss.is_finite()).then(|| format!("loss {} is not a finite number", p.loss))
}

/// The epoch reports and the summary of a log's text, skipping every line that is neither (a
/// stderr line mixed in, a line cut by a kill): for readers that judge what a run did rather
/// than check its log.
pub fn lenient(text: &str) -> (Vec<EpochReport>, Option<Summary>) {
    let (mut epochs, mut summary) = (vec![], None);
    for line in text.lines() {
        match LogLine::parse(line) {
            Ok(Some(LogLine::Epoch(e))) => epochs.push(e),
            Ok(Some(LogLine::Summary(s))) => summary = Some(s),
            _ => {}
        }
    }
    (epochs, summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH: &str = r#"{"epoch":1,"loss":0.38,"hr":0.51,"ndcg":0.29,"k":10,"eval":"test","train_s":0.1,"eval_s":0.01,"samples":10,"samples_per_s":100.0,"steps":1,"skipped_steps":0}"#;
    const SUMMARY: &str = r#"{"best_hr":0.51,"best_ndcg":0.29,"best_epoch":1,"first_epoch_reaching_target":null,"time_to_target_s":null,"train_time_s":0.2,"eval_time_s":0.02,"avg_samples_per_s":100.0,"best_samples_per_s":100.0,"epochs_run":2,"k":10,"eval":"test","backend":"cpu"}"#;

    #[test]
    fn lines_round_trip_through_the_structs_the_run_writes() {
        for text in [EPOCH, SUMMARY] {
            let line = LogLine::parse(text).unwrap().unwrap();
            let back: LogLine =
                serde_json::from_str(&serde_json::to_string(&line).unwrap()).unwrap();
            assert_eq!(back, line);
        }
        assert!(matches!(LogLine::parse(EPOCH), Ok(Some(LogLine::Epoch(e))) if e.epoch == 1));
        assert_eq!(LogLine::parse("  "), Ok(None));
    }

    #[test]
    fn values_ncf_train_never_reports_are_refused() {
        let e = LogLine::parse(&EPOCH.replace("\"hr\":0.51", "\"hr\":2")).unwrap_err();
        assert_eq!(e, "hr 2 is outside [0, 1]: not a value ncf-train reports");
        let e = LogLine::parse(r#"{"epoch":0}"#).unwrap_err();
        assert!(e.starts_with("epoch report: missing field"), "{e}");
        let e = LogLine::parse(r#"{"x":0}"#).unwrap_err();
        assert!(e.starts_with("expected an epoch report"), "{e}");
        let (epochs, summary) = lenient(&format!("junk\n{EPOCH}\n{{\"epoch\":0}}\n{SUMMARY}\n"));
        assert_eq!((epochs.len(), summary.map(|s| s.epochs_run)), (1, Some(2)));
    }
}
