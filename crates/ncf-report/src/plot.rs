//! What ncf-plot draws from which file: default titles and the throughput bars of a results file.

use crate::chart::Bar;
use crate::results::{read_gpu_run, BenchResults, SCHEMA};
use crate::trainlog::TrainLog;
use crate::{Error, Result};
use std::path::Path;

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
