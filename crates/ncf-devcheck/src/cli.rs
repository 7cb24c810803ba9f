//! `ncf-devcheck`'s flags and run: the judgements of scripts/device-check.sh (the GPU check), so
//! that they are Rust, tested without a GPU ([`crate::judge`]), and need no Python on the GPU
//! machine.
//!
//! - `runs`: do runs through NCCL train like the plain runs, and do the ranks' parameter
//!   checksums agree? Prints `STATUS SUMMARY`, writes the detail to --out.
//! - `kill`: did the survivor of a killed rank exit non-zero in time, naming it?
//! - `merge`: the stages' JSON files (in order) into one results file, written atomically.
//!
//! Exit 0 whatever the verdict (the verdict is the printed status); 1 on unreadable input.

use crate::judge::{judge_kill, judge_runs, merge, Run, Verdict};
use anyhow::{anyhow, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

/// Judgements and results file of the ncf GPU check.
#[derive(Parser)]
#[command(version)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Compare runs (NAME=EXIT:LOG) with plain reference runs (the same form).
    Runs {
        /// A plain run, NAME=EXIT:LOG (give two: their difference is the noise).
        #[arg(long = "ref", value_name = "NAME=EXIT:LOG")]
        refs: Vec<String>,
        /// A run through NCCL, NAME=EXIT:LOG.
        #[arg(long = "run", value_name = "NAME=EXIT:LOG")]
        runs: Vec<String>,
        /// The ranks' stderr logs (checksum lines).
        #[arg(long)]
        stderr: Vec<PathBuf>,
        /// Ranks that must each print one equal parameter checksum (0: none needed).
        #[arg(long, default_value_t = 0)]
        ranks: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Judge the survivor of a killed rank.
    Kill {
        #[arg(long)]
        killed: usize,
        #[arg(long, allow_hyphen_values = true)]
        rc: i32,
        #[arg(long)]
        seconds: f64,
        #[arg(long, default_value_t = 30.0)]
        limit: f64,
        #[arg(long)]
        stderr: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Merge the stages' JSON into --out.
    Merge {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        header: Option<PathBuf>,
        /// Stage names that a complete run has (comma-separated).
        #[arg(long, value_delimiter = ',')]
        expect: Vec<String>,
        stages: Vec<PathBuf>,
    },
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn write_atomic(p: &Path, text: &str) -> Result<()> {
    let tmp = p.with_extension("json.tmp");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, p))
        .with_context(|| p.display().to_string())
}

/// NAME=EXIT:LOG → (name, exit, log text).
fn parse_run(s: &str) -> Result<(String, i32, String)> {
    let form = || anyhow!("{s:?}: expected NAME=EXIT:LOG");
    let (name, rest) = s.split_once('=').ok_or_else(form)?;
    let (rc, log) = rest.split_once(':').ok_or_else(form)?;
    let rc = rc.parse().map_err(|_| anyhow!("{s:?}: exit code {rc:?}"))?;
    Ok((name.to_string(), rc, read(Path::new(log))))
}

fn as_runs(v: &[(String, i32, String)]) -> Vec<Run<'_>> {
    v.iter()
        .map(|(n, rc, log)| Run {
            name: n,
            rc: *rc,
            log,
        })
        .collect()
}

fn report(v: &Verdict, out: &Path) -> Result<()> {
    let mut d = v.detail.clone();
    d["status"] = v.status().into();
    d["summary"] = v.summary.clone().into();
    let text = serde_json::to_string_pretty(&d)?;
    write_atomic(out, &(text + "\n"))?;
    println!("{} {}", v.status(), v.summary);
    Ok(())
}

/// Run `ncf-devcheck` with its parsed flags.
pub fn run(a: Args) -> Result<()> {
    match a.cmd {
        Cmd::Runs {
            refs,
            runs,
            stderr,
            ranks,
            out,
        } => {
            let refs = refs
                .iter()
                .map(|s| parse_run(s))
                .collect::<Result<Vec<_>>>()?;
            let runs = runs
                .iter()
                .map(|s| parse_run(s))
                .collect::<Result<Vec<_>>>()?;
            let err: String = stderr
                .iter()
                .map(|p| read(p))
                .collect::<Vec<_>>()
                .join("\n");
            report(
                &judge_runs(&as_runs(&refs), &as_runs(&runs), &err, ranks),
                &out,
            )
        }
        Cmd::Kill {
            killed,
            rc,
            seconds,
            limit,
            stderr,
            out,
        } => report(
            &judge_kill(killed, rc, seconds, limit, &read(&stderr)),
            &out,
        ),
        Cmd::Merge {
            out,
            header,
            expect,
            stages,
        } => {
            let header = header.map(|p| read(&p));
            let stages: Vec<(String, String)> = stages
                .iter()
                .map(|p| {
                    (
                        p.file_name()
                            .map(|f| f.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        read(p),
                    )
                })
                .collect();
            let expect: Vec<&str> = expect.iter().map(String::as_str).collect();
            let v = merge(header.as_deref(), &stages, &expect);
            let text = serde_json::to_string_pretty(&v)?;
            write_atomic(&out, &(text + "\n"))
        }
    }
}
