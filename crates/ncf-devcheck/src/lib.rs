//! The GPU check of ncf, whole: `ncf-cuda-check` ([`cuda_check`]: kernel parity, golden runs,
//! bench, NCCL's version) and `ncf-devcheck` ([`cli`]): every verdict of scripts/device-check.sh
//! ([`judge`] for the NCCL stages, [`stages`] and [`env`] for the others, each stage's plan and
//! fragment) and its results file, one typed schema that ncf-report reads too ([`results`]).
//! The script only runs commands under timeouts; what they mean is decided here, tested without
//! a GPU.

pub mod cli;
#[cfg(feature = "cuda")]
pub mod cuda_check;
pub mod env;
pub mod judge;
pub mod results;
pub mod stages;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a stage ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Fail,
    /// No GPU (the dry run): the stage's commands ran as far as a GPU is needed.
    NoGpu,
    /// Not run, saying why (no compute-sanitizer, no Python with torch).
    Skipped,
    /// Cut at its limit.
    Timeout,
    /// Ended without a verdict, or its fragment could not be read.
    Error,
}

impl Status {
    /// The word in results.json and the summary table.
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::NoGpu => "no-gpu",
            Status::Skipped => "skipped",
            Status::Timeout => "timeout",
            Status::Error => "error",
        }
    }

    /// Whether the check as a whole fails for it.
    pub fn failed(self) -> bool {
        matches!(self, Status::Fail | Status::Timeout | Status::Error)
    }
}

/// What a stage decided: its status, a one-line summary, and its own report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageVerdict {
    pub status: Status,
    pub summary: String,
    #[serde(default)]
    pub detail: Value,
}

impl StageVerdict {
    pub fn new(status: Status, summary: impl Into<String>, detail: Value) -> StageVerdict {
        StageVerdict {
            status,
            summary: summary.into(),
            detail,
        }
    }

    /// The line the stage prints: `STATUS SUMMARY`.
    pub fn line(&self) -> String {
        format!("{} {}", self.status.word(), self.summary)
    }
}

impl From<judge::Verdict> for StageVerdict {
    fn from(v: judge::Verdict) -> StageVerdict {
        let status = if v.pass { Status::Pass } else { Status::Fail };
        StageVerdict::new(status, v.summary, v.detail)
    }
}
