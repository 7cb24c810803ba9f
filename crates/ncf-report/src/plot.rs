//! `ncf-plot`'s flags and run, and what it draws from which file: default titles and the
//! throughput bars of a results file. The charts themselves are [`crate::chart`].

use crate::chart::{self, Bar};
use crate::results::{read_gpu_run, BenchResults, SCHEMA};
use crate::trainlog::TrainLog;
use crate::{Error, Result};
use clap::{Parser, Subcommand};
use ncf_core::io::{claim_output, is_stdio, write_output};
use std::path::{Path, PathBuf};

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
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand, Debug)]
pub enum What {
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

pub fn run(a: Args) -> anyhow::Result<()> {
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
            let l = crate::trainlog::read(&log)?;
            let title = title.unwrap_or_else(|| curve_title(&log, &l));
            chart::training_curve(&l, &title, width, height)?
        }
        What::Throughput {
            results,
            title,
            width,
            height,
            ..
        } => {
            let (bars, default_title) = throughput_of(&results)?;
            let title = title.unwrap_or(default_title);
            chart::throughput_bars(&bars, &title, "samples/s", width, height)?
        }
    };
    write_output(&output, &png)?;
    Ok(())
}

/// "train.jsonl — best HR@10 0.7066 at epoch 17 (cpu, 2 threads)".
pub fn curve_title(path: &Path, log: &TrainLog) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "stdin".into());
    let k = log.epochs[0].k;
    match &log.summary {
        Some(s) => {
            let at = s
                .best_epoch
                .map(|e| format!(" at epoch {e}"))
                .unwrap_or_default();
            format!(
                "{name}: best HR@{k} {:.4}{at}, {:.1} s of training on {}",
                s.best_hr, s.train_time_s, s.backend
            )
        }
        None => format!("{name}: {} epochs (run not finished)", log.epochs.len()),
    }
}

/// Bars and a default title from a device-check folder / results.json, or a `make bench` file
/// (its GPU training figures if it has any, else its CPU training figures).
pub fn throughput_of(path: &Path) -> Result<(Vec<Bar>, String)> {
    let dir = if path.is_dir() {
        Some(path.to_path_buf())
    } else if path.file_name().is_some_and(|n| n == "results.json") {
        path.parent().map(Path::to_path_buf)
    } else {
        None
    };
    if let Some(dir) = dir {
        let name = dir
            .file_name()
            .map(|n| Path::new(n).to_path_buf())
            .unwrap_or_default();
        let run = read_gpu_run(&dir, &name)?;
        let bars: Vec<Bar> = run
            .throughput
            .iter()
            .map(|(p, ours, peer)| Bar {
                label: p.clone(),
                ncf: *ours,
                peer: *peer,
            })
            .collect();
        let title = format!(
            "Training throughput, NVIDIA's config, one {} ({})",
            run.gpu(),
            name.display()
        );
        return Ok((bars, title));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let r: BenchResults = serde_json::from_str(&text).map_err(|e| {
        Error::parse(
            path.display().to_string(),
            format!("{e} (expected a {SCHEMA} results file or a device-check folder)"),
        )
    })?;
    let pick = |group: &str| -> Vec<Bar> {
        r.benchmarks
            .iter()
            .filter(|m| m.group == group && m.peer_of.is_none() && m.unit == "samples/s")
            .map(|m| Bar {
                label: m.title.clone(),
                ncf: m.median,
                peer: r
                    .benchmarks
                    .iter()
                    .find(|p| p.peer_of.as_deref() == Some(m.id.as_str()))
                    .map(|p| p.median),
            })
            .collect()
    };
    let (bars, what) = match pick("gpu-train") {
        b if !b.is_empty() => (b, r.machine.gpu.clone().unwrap_or_else(|| "GPU".into())),
        _ => (
            pick("cpu-train"),
            format!("{} cores of {}", r.machine.cores, r.machine.cpu),
        ),
    };
    if bars.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no training throughput figures (groups gpu-train / cpu-train)",
            path.display()
        )));
    }
    Ok((
        bars,
        format!("Training throughput (median), {what}, {}", r.date),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_flags_are_consistent_and_sizes_bounded() {
        Args::command().debug_assert();
        let parse = |args: &[&str]| Args::try_parse_from([&["ncf-plot"], args].concat());
        let a = parse(&["curve", "log.jsonl", "-o", "c.png"]).unwrap();
        assert!(matches!(
            a.what,
            What::Curve {
                width: 1200,
                height: 500,
                ..
            }
        ));
        assert!(parse(&["curve", "log.jsonl"]).is_err(), "-o is required");
        assert!(parse(&["throughput", "r.json", "-o", "t.png", "--width", "100"]).is_err());
    }
}
