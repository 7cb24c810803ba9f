//! ncf-plot: PNG charts of a training log or of benchmark results files.

use anyhow::Result;
use clap::{Parser, Subcommand};
use ncf_core::io::{claim_output, is_stdio, write_output};
use ncf_report::chart;
use std::path::PathBuf;

/// Draw PNG charts: the training curve of an ncf-train run, or throughput per precision.
///
/// curve: reads ncf-train's stdout (JSON lines, one per epoch:
///   {"epoch", "loss", "hr", "ndcg", "k", ...}, then the summary {"best_hr", ...}),
///   from a file or `-` for stdin, and draws loss and HR@K / NDCG@K per epoch.
/// throughput: reads one results file (a GPU device-check folder or its results.json, or a
///   `make bench` file benchmarks/results/DATE-MACHINE.json) and draws samples/s per precision
///   (or per rank count), ncf beside the PyTorch peer where the run measured it.
/// Output: a PNG file (-o, written whole through a temp file; an existing one is replaced only
/// with --force, and only when ncf-plot wrote it), or `-o -` for stdout.
///
/// Exit codes: 0 success, 1 error (unreadable or malformed input, cannot write the PNG,
/// output exists), 2 usage error (bad command line).
///
/// Example:
///   ncf-train ds -o model.safetensors --epochs 8 | tee train.jsonl
///   ncf-plot curve train.jsonl -o curve.png
///   ncf-plot throughput benchmarks/results/2026-11-26-h200-v2 -o h200.png
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand, Debug)]
enum What {
    /// Training curve (loss, HR@K, NDCG@K per epoch) from ncf-train's JSON lines.
    Curve {
        /// Training log: ncf-train's stdout or --log file (`-` for stdin).
        log: PathBuf,
        /// Output PNG (`-` for stdout).
        #[arg(short, long)]
        output: PathBuf,
        /// Replace an existing PNG that ncf-plot wrote (nothing else is ever replaced).
        #[arg(long)]
        force: bool,
        /// Title (default: the log's file name, best HR and backend).
        #[arg(long)]
        title: Option<String>,
        /// Width in pixels.
        #[arg(long, default_value_t = 1200, value_parser = clap::value_parser!(u32).range(200..=8000))]
        width: u32,
        /// Height in pixels.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(150..=8000))]
        height: u32,
    },
    /// Training throughput per precision / rank count from one results file or device-check folder.
    Throughput {
        /// A device-check folder (or its results.json) or a `make bench` results file.
        results: PathBuf,
        /// Output PNG (`-` for stdout).
        #[arg(short, long)]
        output: PathBuf,
        /// Replace an existing PNG that ncf-plot wrote (nothing else is ever replaced).
        #[arg(long)]
        force: bool,
        /// Title (default: says what and where from).
        #[arg(long)]
        title: Option<String>,
        /// Width in pixels.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(200..=8000))]
        width: u32,
        /// Height in pixels.
        #[arg(long, default_value_t = 550, value_parser = clap::value_parser!(u32).range(150..=8000))]
        height: u32,
    },
}

fn main() -> std::process::ExitCode {
    ncf_tool::main_with("ncf-plot", run)
}

fn run(a: Args) -> Result<()> {
    let (output, force) = match &a.what {
        What::Curve { output, force, .. } | What::Throughput { output, force, .. } => {
            (output.clone(), *force)
        }
    };
    // Claimed before any work: the input itself, a model or any file ncf-plot did not write is
    // never replaced.
    let _claim = match is_stdio(&output) {
        true => None,
        false => Some(claim_output(&output, &chart::OUTPUT, force)?),
    };
    let png = match a.what {
        What::Curve {
            log,
            title,
            width,
            height,
            ..
        } => {
            let l = ncf_report::trainlog::read(&log)?;
            let title = title.unwrap_or_else(|| ncf_report::plot::curve_title(&log, &l));
            chart::training_curve(&l, &title, width, height)?
        }
        What::Throughput {
            results,
            title,
            width,
            height,
            ..
        } => {
            let (bars, default_title) = ncf_report::plot::throughput_of(&results)?;
            let title = title.unwrap_or(default_title);
            chart::throughput_bars(&bars, &title, "samples/s", width, height)?
        }
    };
    write_output(&output, &png)?;
    Ok(())
}
