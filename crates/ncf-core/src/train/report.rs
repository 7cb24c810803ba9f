//! Where a training run's report lines go: stdout (data for a pipe, whose reader may go away
//! early) and the `--log` file, an output like every other: claimed for the run, appended to
//! only when it is a log ncf-train wrote, and rewritten whole through a temp file and a rename,
//! so it always holds complete lines and a write error names it.

use crate::io::{claim_output, write_atomic, Output, OutputLock};
use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Something the training loop writes its JSON lines to.
pub trait ReportSink {
    /// Write one line (with its `\n`); an error names what could not be written.
    fn report_line(&mut self, line: &[u8]) -> Result<()>;
}

/// In memory (tests, callers that want the lines).
impl ReportSink for Vec<u8> {
    fn report_line(&mut self, line: &[u8]) -> Result<()> {
        self.extend_from_slice(line);
        Ok(())
    }
}

/// A `--log` file as an output: appended to only when every line of it is an ncf-train report
/// ([`written_by_ncf_train`]); `--force` plays no part (an existing log is continued, which is
/// what `--resume` wants).
pub const LOG_OUTPUT: Output = Output {
    what: "training log",
    example: "train.jsonl",
    dir: false,
    reused: true,
    ours: written_by_ncf_train,
};

/// `Ok` when `path` is a log ncf-train wrote (empty, or JSON lines each an epoch report or a
/// summary), so that appending to it loses nothing; else why not.
pub fn written_by_ncf_train(path: &Path) -> std::result::Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot be read ({e})"))?;
    let not_ours = |why: String| {
        Err(format!(
            "not a training log of ncf-train ({why}), and --log would append to it"
        ))
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return not_ours("not UTF-8 text".into());
    };
    for (k, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) => return not_ours(format!("line {} is not a JSON line", k + 1)),
        };
        let report = v.get("epoch").is_some() && v.get("loss").is_some() && v.get("hr").is_some();
        if !(report || v.get("best_hr").is_some()) {
            return not_ours(format!(
                "line {} is not an epoch report or a summary",
                k + 1
            ));
        }
    }
    Ok(())
}

/// The `--log` file of a run: what it held when the run started plus this run's lines.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    text: Vec<u8>,
    _claim: OutputLock,
}

impl LogFile {
    /// Claim `path` for this run ([`LOG_OUTPUT`]) and read what it holds.
    pub fn open(path: &Path) -> Result<LogFile> {
        let claim = claim_output(path, &LOG_OUTPUT, false)?;
        let mut text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(path, e)),
        };
        if !text.is_empty() && !text.ends_with(b"\n") {
            text.push(b'\n');
        }
        Ok(LogFile {
            path: path.to_path_buf(),
            text,
            _claim: claim,
        })
    }

    fn append(&mut self, line: &[u8]) -> Result<()> {
        self.text.extend_from_slice(line);
        let text = &self.text;
        write_atomic(&self.path, |w| {
            w.write_all(text).map_err(|e| Error::io(&self.path, e))
        })
    }
}

/// Stdout and the `--log` file. When stdout's reader goes away (`ncf-train … | head -1`), the
/// run goes on: the model is what it is for, and the lines still reach the log; a note on
/// stderr says so once.
pub struct Reports {
    tool: &'static str,
    stdout: Option<Box<dyn Write>>,
    log: Option<LogFile>,
    lines: u64,
}

impl Reports {
    /// Lines to `stdout` (None: nowhere, e.g. a rank other than 0) and to `log`.
    pub fn new(tool: &'static str, stdout: Option<Box<dyn Write>>, log: Option<LogFile>) -> Self {
        Reports {
            tool,
            stdout,
            log,
            lines: 0,
        }
    }
}

impl ReportSink for Reports {
    fn report_line(&mut self, line: &[u8]) -> Result<()> {
        if let Some(out) = &mut self.stdout {
            match out.write_all(line).and_then(|_| out.flush()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    self.stdout = None;
                    let rest = match &self.log {
                        Some(l) => format!("the report lines go on only to {}", l.path.display()),
                        None => "its report lines are no longer shown (--log FILE keeps them)"
                            .to_string(),
                    };
                    crate::interrupt::note(&format!(
                        "{}: note: stdout was closed (its reader ended) after {} report \
                         line{}; training goes on to the end and writes the model, but {rest}",
                        self.tool,
                        self.lines,
                        if self.lines == 1 { "" } else { "s" }
                    ));
                }
                Err(e) => return Err(Error::io("<stdout>", e)),
            }
        }
        if let Some(log) = &mut self.log {
            log.append(line)?;
        }
        self.lines += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_log_of_ncf_train_is_appended_to() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log.jsonl");
        std::fs::write(
            &p,
            "{\"epoch\":0,\"loss\":0.5,\"hr\":0.4}\n{\"best_hr\":0.4}\n",
        )
        .unwrap();
        assert!(written_by_ncf_train(&p).is_ok());
        std::fs::write(&p, "").unwrap();
        assert!(written_by_ncf_train(&p).is_ok());
        std::fs::write(&p, "{\"format_version\":1}\n").unwrap();
        let e = written_by_ncf_train(&p).unwrap_err();
        assert!(e.contains("line 1 is not an epoch report"), "{e}");
        std::fs::write(&p, b"\x00\x01safetensors").unwrap();
        assert!(written_by_ncf_train(&p).is_err());
    }

    #[test]
    fn a_log_keeps_what_it_held_and_gets_whole_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log.jsonl");
        std::fs::write(&p, "{\"best_hr\":0.4}").unwrap();
        let mut r = Reports::new("t", None, Some(LogFile::open(&p).unwrap()));
        r.report_line(b"{\"best_hr\":0.5}\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "{\"best_hr\":0.4}\n{\"best_hr\":0.5}\n"
        );
    }
}
