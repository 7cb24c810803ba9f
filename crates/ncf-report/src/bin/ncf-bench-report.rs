//! ncf-bench-report: benchmark results files in, results file / Markdown out.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ncf_report::{markdown, results};
use std::path::{Path, PathBuf};

/// Turn benchmark measurements into a results file, and results files into BENCHMARKS.md / README.md.
///
/// collect: reads raw measurements (JSON lines, one per repetition, as scripts/bench.sh writes:
///   {"id", "group", "title", "unit", "better": "higher"|"lower", "value"[, "peer_of", "note"]}
///   or {"note": "..."}), describes this machine (CPU, cores, memory, load, GPU and driver,
///   OS, rustc, git commit) and writes one results file (schema ncf-bench/1: per benchmark every
///   run, median, min and max) to -o.
/// render: reads every results file in --results (ncf-bench/1 files, ncf-published/1 files,
///   device-check folders) and rewrites the generated blocks of BENCHMARKS.md and README.md,
///   between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`; text outside them is kept.
///   --check writes nothing and fails when a document is out of date.
///
/// Exit codes: 0 success (render --check: documents up to date), 1 error (malformed input,
/// missing marker, out of date with --check), 2 usage error (bad command line).
///
/// Example:
///   scripts/bench.sh   # measures, then: ncf-bench-report collect raw.jsonl --name vm -o benchmarks/results/2026-11-26-vm.json && ncf-bench-report render
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand, Debug)]
enum What {
    /// Raw measurements (JSON lines) + this machine's description → one results file.
    Collect {
        /// Raw measurements, one JSON line per repetition (`-` for stdin).
        raw: PathBuf,
        /// Machine name for the results (also the file name's suffix by convention).
        #[arg(long)]
        name: String,
        /// When the run started (UTC, RFC 3339; default: now).
        #[arg(long)]
        date: Option<String>,
        /// Results file to write (JSON).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Results files → the generated blocks of BENCHMARKS.md and README.md.
    Render {
        /// Folder of results files.
        #[arg(long, default_value = "benchmarks/results")]
        results: PathBuf,
        /// BENCHMARKS.md to update (its blocks: bench-latest, gpu:FOLDER for each GPU run).
        #[arg(long, default_value = "BENCHMARKS.md")]
        benchmarks: PathBuf,
        /// README.md to update (its block: how-fast).
        #[arg(long, default_value = "README.md")]
        readme: PathBuf,
        /// Write nothing; exit 1 when a document differs from what would be written.
        #[arg(long)]
        check: bool,
    },
}

fn main() -> std::process::ExitCode {
    ncf_tool::main_with("ncf-bench-report", run)
}

fn read(path: &Path) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("<stdin>")?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| path.display().to_string())
}

/// Link prefix from a document to the results folder (both relative to the working directory).
fn prefix(doc: &Path, results: &Path) -> String {
    let base = doc.parent().unwrap_or(Path::new(""));
    let rel = results.strip_prefix(base).unwrap_or(results);
    let s = rel.display().to_string();
    if s.is_empty() {
        String::new()
    } else {
        format!("{}/", s.trim_end_matches('/'))
    }
}

fn run(a: Args) -> Result<()> {
    match a.what {
        What::Collect {
            raw,
            name,
            date,
            output,
        } => {
            let text = read(&raw)?;
            let date = date.unwrap_or_else(ncf_report::now_rfc3339);
            let machine = results::describe_machine(&name);
            let r = results::collect(&text, &raw.display().to_string(), &date, machine)?;
            let json = serde_json::to_string_pretty(&r)? + "\n";
            std::fs::write(&output, json).with_context(|| output.display().to_string())?;
            eprintln!(
                "ncf-bench-report: {} benchmarks → {}",
                r.benchmarks.len(),
                output.display()
            );
        }
        What::Render {
            results: dir,
            benchmarks,
            readme,
            check,
        } => {
            let all = results::load_all(&dir)?;
            let mut stale = vec![];
            for (doc, blocks) in [
                (
                    &benchmarks,
                    markdown::benchmarks_blocks(&all, &prefix(&benchmarks, &dir)),
                ),
                (
                    &readme,
                    vec![(
                        "how-fast".to_string(),
                        markdown::how_fast(&all, &prefix(&readme, &dir)),
                    )],
                ),
            ] {
                let old = read(doc)?;
                let new = markdown::fill(&old, &doc.display().to_string(), &blocks, true)?;
                if new != old {
                    if check {
                        stale.push(doc.display().to_string());
                    } else {
                        std::fs::write(doc, new).with_context(|| doc.display().to_string())?;
                        eprintln!("ncf-bench-report: updated {}", doc.display());
                    }
                }
            }
            if !stale.is_empty() {
                bail!(
                    "out of date with {}: {} (run `ncf-bench-report render`)",
                    dir.display(),
                    stale.join(", ")
                );
            }
        }
    }
    Ok(())
}
