//! `ncf-bench-report`'s flags and run: benchmark measurements into results files ([`results`]),
//! results files into the generated blocks of BENCHMARKS.md / README.md ([`markdown`]), and the
//! reports of training runs that the scripts and `make demo` print ([`runs`], [`timings`]).

use crate::runs::{self, AbMeasure, GridCell, GridRun, GridRunOf, SeedRun};
use crate::{markdown, results, timings};
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

/// Turn benchmark measurements into a results file, results files into BENCHMARKS.md / README.md,
/// and the logs of training runs into the reports of the experiment scripts and of make demo.
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
/// The reports of a run (inputs: ncf-train's JSON lines, ncf-eval's JSON; output on stdout):
/// run-summary: the lines `make demo` ends with (curve, HR/NDCG by ncf-eval, epochs, seconds).
/// grid-run: one record of scripts/paper-grid.sh (a JSON line: the best epoch's HR/NDCG, ncf-eval's
///   NVIDIA-protocol and full-ranking metrics, seconds); its log is rewritten with each epoch once.
/// grid-reuse: exit 0 when a grid record is of a run with these epochs, device, batch and lr.
/// grid: RESULTS.md of a runs.jsonl of grid records (mean ± std per cell beside the paper's).
/// tune: summary.md of scripts/paper-tune.sh's logs in a folder (MODEL-fF-sS-bB-lrLR.jsonl).
/// tune-row: one line of scripts/tune-ml1m.sh's summary.
/// seed-run, seeds: a record of scripts/mf-ml1m.sh (the last epoch's metrics), the summary line.
/// ab: the medians of scripts/bench-profile-ab.sh's measurements, one JSON line per metric.
/// timings: a cargo --timings HTML report summed up as Markdown (scripts/bench-newcomer.sh).
///
/// Exit codes: 0 success (render --check: documents up to date; grid-reuse: the record fits),
/// 1 error (malformed input, missing marker, out of date with --check, a run that did not
/// finish; grid-reuse: it does not fit, saying why), 2 usage error (bad command line).
///
/// Example:
///   scripts/bench.sh   # measures, then: ncf-bench-report collect raw.jsonl --name vm -o benchmarks/results/2026-11-26-vm.json && ncf-bench-report render
///   ncf-bench-report run-summary train.jsonl eval.json --curve curve.png
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
pub struct Args {
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
    /// The demo's closing lines: the curve, ncf-eval's metrics, ncf-train's epochs and seconds.
    RunSummary {
        /// ncf-train's log (stdout or --log).
        log: PathBuf,
        /// ncf-eval's output.
        eval: PathBuf,
        /// The training curve's PNG (named, not read).
        #[arg(long)]
        curve: PathBuf,
    },
    /// One cell's record of scripts/paper-grid.sh (a JSON line); LOG is rewritten with each epoch once.
    GridRun {
        log: PathBuf,
        #[arg(long)]
        model: String,
        #[arg(long)]
        factors: u32,
        #[arg(long)]
        seed: u64,
        #[command(flatten)]
        cell: CellArgs,
        #[arg(long)]
        threads: Option<u32>,
        /// The cell was resumed: its seconds are ncf-train's, summed over the pieces.
        #[arg(long)]
        resumed: bool,
        /// Wall milliseconds of its training.
        #[arg(long)]
        wall_ms: u64,
        /// ncf-eval --full's output.
        #[arg(long)]
        full: PathBuf,
        /// ncf-eval's output on the 1 + 100 copy of the dataset.
        #[arg(long)]
        nvidia: PathBuf,
    },
    /// Exit 0 when a grid record (STEM.run.json) is of a run with these epochs, device, batch and lr.
    GridReuse {
        record: PathBuf,
        #[command(flatten)]
        cell: CellArgs,
    },
    /// RESULTS.md of grid records (runs.jsonl): mean ± std per cell beside the paper's numbers.
    Grid {
        runs: PathBuf,
        /// The epochs, for the title.
        #[arg(long)]
        epochs: String,
    },
    /// summary.md of scripts/paper-tune.sh's config logs in DIR.
    Tune { dir: PathBuf },
    /// One line of scripts/tune-ml1m.sh's summary.
    TuneRow {
        log: PathBuf,
        #[arg(long)]
        name: String,
        /// The config's flags (empty: the preset's).
        #[arg(long, default_value = "", allow_hyphen_values = true)]
        flags: String,
    },
    /// One test seed's record of scripts/mf-ml1m.sh (its last epoch), a JSON line.
    SeedRun {
        log: PathBuf,
        #[arg(long)]
        model: String,
        #[arg(long)]
        factors: u32,
        #[arg(long, allow_hyphen_values = true)]
        flags: String,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        wall_ms: u64,
    },
    /// scripts/mf-ml1m.sh's summary line: mean ± std over its seed records.
    Seeds {
        runs: PathBuf,
        /// The epoch count chosen on validation, for the line.
        #[arg(long)]
        epochs: String,
    },
    /// Medians per metric of scripts/bench-profile-ab.sh's measurements ({round, build, metric, value} lines).
    Ab { measures: PathBuf },
    /// A cargo --timings HTML report summed up as Markdown.
    Timings {
        report: PathBuf,
        /// How many of the slowest units to list.
        #[arg(long, default_value_t = 12)]
        top: usize,
    },
}

/// What a grid cell runs with besides its model.
#[derive(clap::Args, Debug)]
struct CellArgs {
    #[arg(long)]
    epochs: u32,
    #[arg(long)]
    device: String,
    #[arg(long)]
    batch: u64,
    #[arg(long)]
    lr: f64,
}

impl CellArgs {
    fn cell(&self) -> GridCell {
        GridCell {
            epochs: self.epochs,
            device: self.device.clone(),
            batch: self.batch,
            lr: self.lr,
        }
    }
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

/// Run `ncf-bench-report` with its parsed flags.
pub fn run(a: Args) -> Result<()> {
    match a.what {
        What::Collect {
            raw,
            name,
            date,
            output,
        } => {
            let text = read(&raw)?;
            let date = date.unwrap_or_else(crate::now_rfc3339);
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
        What::RunSummary { log, eval, curve } => {
            print!("{}", runs::run_summary(&log, &eval, &curve)?)
        }
        What::GridRun {
            log,
            model,
            factors,
            seed,
            cell,
            threads,
            resumed,
            wall_ms,
            full,
            nvidia,
        } => {
            let of = GridRunOf {
                model: &model,
                factors,
                seed,
                cell: cell.cell(),
                threads,
                resumed,
                wall_s: wall_ms as f64 / 1000.0,
            };
            println!(
                "{}",
                serde_json::to_string(&runs::grid_run(&log, &full, &nvidia, of)?)?
            );
        }
        What::GridReuse { record, cell } => {
            let r: GridRun = serde_json::from_str(&read(&record)?)
                .with_context(|| format!("{}: not a grid record", record.display()))?;
            if let Some(why) = r.differs(&cell.cell()) {
                bail!("{}: {why}", record.display());
            }
        }
        What::Grid { runs: file, epochs } => {
            let rs: Vec<GridRun> = runs::read_lines(&file)?;
            print!("{}", runs::grid_table(&rs, &epochs));
        }
        What::Tune { dir } => print!("{}", runs::tune_table(&dir)?),
        What::TuneRow { log, name, flags } => println!("{}", runs::tune_row(&log, &name, &flags)?),
        What::SeedRun {
            log,
            model,
            factors,
            flags,
            seed,
            wall_ms,
        } => {
            let r = runs::seed_run(&log, &model, factors, &flags, seed, wall_ms as f64 / 1000.0)?;
            println!("{}", serde_json::to_string(&r)?);
        }
        What::Seeds { runs: file, epochs } => {
            let rs: Vec<SeedRun> = runs::read_lines(&file)?;
            print!("{}", runs::seeds_summary(&rs, &epochs)?);
        }
        What::Ab { measures } => {
            let rows: Vec<AbMeasure> = runs::read_lines(&measures)?;
            for v in runs::ab_medians(&rows) {
                println!("{}", serde_json::to_string(&v)?);
            }
        }
        What::Timings { report, top } => {
            let html = read(&report)?;
            print!(
                "{}",
                timings::summary(&html, &report.display().to_string(), top)?
            );
        }
    }
    Ok(())
}
