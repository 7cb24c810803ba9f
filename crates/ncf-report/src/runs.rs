//! The reports of the experiment scripts and of `make demo`, from ncf-train's logs ([`trainlog`],
//! its own `EpochReport` and `Summary`) and ncf-eval's metrics (`eval::metrics::Metrics`): one
//! record per trained model (scripts/paper-grid.sh's cells, scripts/mf-ml1m.sh's seeds) and the
//! Markdown or text made of many (mean ± std per cell, the tuning tables, the A/B medians).
//!
//! [`trainlog`]: crate::trainlog

use crate::trainlog::{self, TrainLog};
use crate::{Error, Result};
use ncf_core::eval::metrics::Metrics;
use ncf_core::train::Summary;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::path::Path;

/// `x` as C's and Python's `%g` print it (6 significant digits, exponent below 1e-4 or from
/// 1e6): how the scripts name learning rates (`lr0.0005`, `lr5e-05`).
pub fn fmt_g(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let sci = format!("{x:.5e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa.to_string()), exp.abs())
    } else {
        trim(format!("{x:.*}", (5 - exp) as usize))
    }
}

/// Mean of a non-empty slice.
fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Sample standard deviation (n − 1) of at least two values.
fn stdev(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// `mean ± std` of several runs, the value of one (4 decimals).
pub fn mean_std(v: &[f64]) -> String {
    match v {
        [one] => format!("{one:.4}"),
        _ => format!("{:.4} ± {:.4}", mean(v), stdev(v)),
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// The JSON lines of a file as `T`, blank lines skipped; an error names the file and line.
pub fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let name = path.display().to_string();
    read(path)?
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(k, l)| {
            serde_json::from_str(l)
                .map_err(|e| Error::parse(format!("{name}:{}", k + 1), e.to_string()))
        })
        .collect()
}

/// ncf-eval's printed metrics.
pub fn read_metrics(path: &Path) -> Result<Metrics> {
    let text = read(path)?;
    serde_json::from_str(text.trim()).map_err(|e| {
        Error::parse(
            path.display().to_string(),
            format!("{e} (expected ncf-eval's output)"),
        )
    })
}

/// A finished run's log: its summary, or an error saying the run did not finish.
fn summary_of<'a>(log: &'a TrainLog, name: &str) -> Result<&'a Summary> {
    log.summary
        .as_ref()
        .ok_or_else(|| Error::parse(name, "no summary line: the run did not finish"))
}

/// The demo's closing lines: where the curve is, the model's metrics by ncf-eval and how it
/// was trained (ncf-train's summary).
pub fn run_summary(log: &Path, eval: &Path, curve: &Path) -> Result<String> {
    let t = trainlog::read(log)?;
    let s = summary_of(&t, &log.display().to_string())?;
    let e = read_metrics(eval)?;
    Ok(format!(
        "== training curve: {}\n== model: HR@{k} {:.4}, NDCG@{k} {:.4} ({}, {} candidates per user); \
         trained {} epochs in {:.1} s on {}\n",
        curve.display(),
        e.hr,
        e.ndcg,
        e.protocol,
        e.candidates,
        s.epochs_run,
        s.train_time_s,
        s.backend,
        k = e.k
    ))
}

/// One cell of scripts/paper-grid.sh (its STEM.run.json, a line of runs.jsonl). The first
/// grids' records lack the fields after `seconds` (batch and lr were then the authors' 256 and
/// 0.001).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GridRun {
    pub model: String,
    pub factors: u32,
    pub seed: u64,
    pub best_epoch: Option<u32>,
    /// Best epoch's HR/NDCG@10 by the paper's protocol (1 + 99, ncf-train's own evaluation).
    pub hr: f64,
    pub ndcg: f64,
    /// NVIDIA's protocol (1 + 100 sampled negatives) and full ranking, by ncf-eval.
    pub nvidia_hr: f64,
    pub nvidia_ndcg: f64,
    pub full_hr: f64,
    pub full_ndcg: f64,
    /// Wall seconds of training and evaluation; of a resumed cell, ncf-train's training plus
    /// evaluation seconds summed over its pieces.
    pub seconds: f64,
    #[serde(default)]
    pub epochs: Option<u32>,
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default = "authors_batch")]
    pub batch: u64,
    #[serde(default = "authors_lr")]
    pub lr: f64,
    #[serde(default)]
    pub threads: Option<u32>,
    #[serde(default)]
    pub resumed: bool,
}

fn authors_batch() -> u64 {
    256
}

fn authors_lr() -> f64 {
    0.001
}

/// What a grid cell is run with besides its model: the record is reused only for the same.
#[derive(Clone, Debug, PartialEq)]
pub struct GridCell {
    pub epochs: u32,
    pub device: String,
    pub batch: u64,
    pub lr: f64,
}

impl GridRun {
    /// Why this record is not of a run of `cell` (None: it is).
    pub fn differs(&self, cell: &GridCell) -> Option<String> {
        let theirs = (self.epochs, self.device.as_deref(), self.batch, self.lr);
        let same_lr = (self.lr - cell.lr).abs() <= 1e-9 * cell.lr.abs().max(1e-12);
        (self.epochs != Some(cell.epochs)
            || self.device.as_deref() != Some(cell.device.as_str())
            || self.batch != cell.batch
            || !same_lr)
            .then(|| {
                format!(
                    "run with epochs {:?}, device {:?}, batch {}, lr {}; this run is epochs {}, \
                     device {}, batch {}, lr {}",
                    theirs.0,
                    theirs.1,
                    theirs.2,
                    fmt_g(theirs.3),
                    cell.epochs,
                    cell.device,
                    cell.batch,
                    fmt_g(cell.lr)
                )
            })
    }
}

/// ncf-train's log text with each epoch once (the last line of an epoch repeated after a hard
/// kill and resume: its line was printed, its checkpoint not yet written), in epoch order,
/// then the summary.
pub fn tidy_log(text: &str, name: &str) -> Result<String> {
    trainlog::parse(text, name)?; // every line an epoch report or the summary
    let mut by_epoch = std::collections::BTreeMap::new();
    let mut summary = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match ncf_core::train::LogLine::parse(line) {
            Ok(Some(ncf_core::train::LogLine::Epoch(e))) => {
                by_epoch.insert(e.epoch, line);
            }
            _ => summary = Some(line),
        }
    }
    let mut out: String = by_epoch.values().map(|l| format!("{l}\n")).collect();
    out.extend(summary.map(|l| format!("{l}\n")));
    Ok(out)
}

/// The identity of a grid cell's record besides what its log and evaluations say.
pub struct GridRunOf<'a> {
    pub model: &'a str,
    pub factors: u32,
    pub seed: u64,
    pub cell: GridCell,
    pub threads: Option<u32>,
    pub resumed: bool,
    /// Wall seconds of training and evaluation (used unless the cell was resumed).
    pub wall_s: f64,
}

/// A grid cell's record from its training log (tidied in place: [`tidy_log`]; the run must have
/// trained `cell.epochs` epochs) and ncf-eval's NVIDIA-protocol and full-ranking metrics.
pub fn grid_run(log: &Path, full: &Path, nvidia: &Path, of: GridRunOf) -> Result<GridRun> {
    let name = log.display().to_string();
    let tidy = tidy_log(&read(log)?, &name)?;
    let t = trainlog::parse(&tidy, &name)?;
    let s = summary_of(&t, &name)?;
    if s.epochs_run != of.cell.epochs {
        return Err(Error::parse(
            &name,
            format!("{} epochs run, EPOCHS is {}", s.epochs_run, of.cell.epochs),
        ));
    }
    ncf_core::io::write_atomic(log, |w| {
        std::io::Write::write_all(w, tidy.as_bytes()).map_err(|e| Error::io(log, e))
    })?;
    let (full, nv) = (read_metrics(full)?, read_metrics(nvidia)?);
    let secs = match of.resumed {
        true => s.train_time_s + s.eval_time_s,
        false => of.wall_s,
    };
    Ok(GridRun {
        model: of.model.into(),
        factors: of.factors,
        seed: of.seed,
        best_epoch: s.best_epoch,
        hr: s.best_hr,
        ndcg: s.best_ndcg,
        nvidia_hr: nv.hr,
        nvidia_ndcg: nv.ndcg,
        full_hr: full.hr,
        full_ndcg: full.ndcg,
        seconds: (secs * 10.0).round() / 10.0,
        epochs: Some(of.cell.epochs),
        device: Some(of.cell.device),
        batch: of.cell.batch,
        lr: of.cell.lr,
        threads: of.threads,
        resumed: of.resumed,
    })
}

/// Table 2 of the NCF paper: HR@10 and NDCG@10 of NeuMF without and with pre-training; the
/// pre-trained NeuMF trained on with Adam (the authors' README) is held to the same cell.
fn paper(model: &str, factors: u32) -> Option<(f64, f64)> {
    let pre = matches!(model, "neumf-pre" | "neumf-pre-adam");
    Some(match (model, pre, factors) {
        ("neumf", _, 8) => (0.688, 0.410),
        ("neumf", _, 16) => (0.696, 0.420),
        ("neumf", _, 32) => (0.701, 0.425),
        ("neumf", _, 64) => (0.705, 0.426),
        (_, true, 8) => (0.684, 0.403),
        (_, true, 16) => (0.707, 0.426),
        (_, true, 32) => (0.726, 0.445),
        (_, true, 64) => (0.730, 0.447),
        _ => return None,
    })
}

/// scripts/paper-grid.sh's RESULTS.md: mean ± std per cell (a model, its factors, batch size
/// and learning rate) beside the paper's numbers. Works on a partial runs.jsonl.
pub fn grid_table(runs: &[GridRun], epochs: &str) -> String {
    let mut out = format!("# NCF paper grid on the authors' ml-1m split ({epochs} epochs)\n\n");
    out += "| model | factors | seeds | HR@10 (1+99) | NDCG@10 (1+99) | paper HR / NDCG | \
            HR@10 (1+100) | NDCG@10 (1+100) | HR@10 full | NDCG@10 full | s per run |\n";
    out += "|---|---|---|---|---|---|---|---|---|---|---|\n";
    let cell = |r: &GridRun| (r.model.clone(), r.factors, r.batch, r.lr);
    let mut cells: Vec<(String, u32, u64, f64)> = vec![];
    for r in runs {
        if !cells.contains(&cell(r)) {
            cells.push(cell(r));
        }
    }
    cells.sort_by(|a, b| {
        (a.1, &a.0, a.2)
            .cmp(&(b.1, &b.0, b.2))
            .then(a.3.total_cmp(&b.3))
    });
    for c in cells {
        let rs: Vec<&GridRun> = runs.iter().filter(|r| cell(r) == c).collect();
        let col = |f: fn(&GridRun) -> f64| mean_std(&rs.iter().map(|r| f(r)).collect::<Vec<_>>());
        let (m, f, b, lr) = c;
        let name = match (b, lr) == (authors_batch(), authors_lr()) {
            true => m.clone(),
            false => format!("{m} (batch {b}, lr {})", fmt_g(lr)),
        };
        let p = paper(&m, f).map_or("–".into(), |p| format!("{:.3} / {:.3}", p.0, p.1));
        let secs: Vec<f64> = rs.iter().map(|r| r.seconds).collect();
        let _ = writeln!(
            out,
            "| {name} | {f} | {} | {} | {} | {p} | {} | {} | {} | {} | {:.0} |",
            rs.len(),
            col(|r| r.hr),
            col(|r| r.ndcg),
            col(|r| r.nvidia_hr),
            col(|r| r.nvidia_ndcg),
            col(|r| r.full_hr),
            col(|r| r.full_ndcg),
            mean(&secs)
        );
    }
    out
}

/// `MODEL-fF-sSEED-bBATCH-lrLR.jsonl` → (model, factors, seed, batch, lr).
fn tune_name(file: &str) -> Option<(String, u32, u64, u64, f64)> {
    let stem = file.strip_suffix(".jsonl")?;
    let (model, rest) = stem.split_once("-f")?;
    if model.is_empty() || !model.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    let (f, rest) = rest.split_once("-s")?;
    let (seed, rest) = rest.split_once("-b")?;
    let (b, lr) = rest.split_once("-lr")?;
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let lr_ok = !lr.is_empty() && lr.chars().all(|c| c.is_ascii_digit() || ".e-".contains(c));
    if !(digits(f) && digits(seed) && digits(b) && lr_ok) {
        return None;
    }
    Some((
        model.into(),
        f.parse().ok()?,
        seed.parse().ok()?,
        b.parse().ok()?,
        lr.parse().ok()?,
    ))
}

/// scripts/paper-tune.sh's summary.md: the best validation HR@10 / NDCG@10 of every finished
/// config log (`MODEL-fF-sSEED-bBATCH-lrLR.jsonl`) in `dir`, with its HR@10 per epoch.
pub fn tune_table(dir: &Path) -> Result<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    let mut rows = vec![];
    for n in names {
        let Some(key) = tune_name(&n) else { continue };
        let log = trainlog::read(&dir.join(&n))?;
        let Some(s) = log.summary.clone() else {
            continue;
        };
        let per_epoch: Vec<String> = log.epochs.iter().map(|e| format!("{:.4}", e.hr)).collect();
        rows.push((key, s, per_epoch.join(" ")));
    }
    rows.sort_by(|a, b| {
        let (x, y) = (&a.0, &b.0);
        (&x.0, x.1, x.2, x.3)
            .cmp(&(&y.0, y.1, y.2, y.3))
            .then(x.4.total_cmp(&y.4))
    });
    let mut out = String::from(
        "# Validation tuning (scripts/paper-tune.sh): best validation HR@10 / NDCG@10 (1+99)\n\n",
    );
    out +=
        "| model | factors | seed | batch | lr | best val HR@10 | NDCG@10 | best epoch | epochs | \
            train s | HR@10 per epoch |\n";
    out += "|---|---|---|---|---|---|---|---|---|---|---|\n";
    for ((model, f, seed, b, lr), s, pe) in rows {
        let _ = writeln!(
            out,
            "| {model} | {f} | {seed} | {b} | {} | {:.4} | {:.4} | {} | {} | {:.0} | {pe} |",
            fmt_g(lr),
            s.best_hr,
            s.best_ndcg,
            s.best_epoch.map_or("none".into(), |e| e.to_string()),
            s.epochs_run,
            s.train_time_s
        );
    }
    Ok(out)
}

/// One line of scripts/tune-ml1m.sh's summary: `name | flags | best HR | NDCG | epoch | train s`.
pub fn tune_row(log: &Path, name: &str, flags: &str) -> Result<String> {
    let t = trainlog::read(log)?;
    let s = summary_of(&t, &log.display().to_string())?;
    let flags = if flags.is_empty() { "(preset)" } else { flags };
    Ok(format!(
        "{name} | {flags} | {:.4} | {:.4} | {} | {:.0}",
        s.best_hr,
        s.best_ndcg,
        s.best_epoch.map_or("none".into(), |e| e.to_string()),
        s.train_time_s
    ))
}

/// One test seed of scripts/mf-ml1m.sh (a line of its runs.jsonl): the LAST epoch's metrics,
/// since the epoch count was chosen on validation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedRun {
    pub model: String,
    pub factors: u32,
    /// The hyper-parameter flags, as given.
    pub flags: String,
    pub seed: u64,
    pub epochs: usize,
    pub hr: f64,
    pub ndcg: f64,
    pub seconds: f64,
}

/// A test seed's record from its training log (its last epoch).
pub fn seed_run(
    log: &Path,
    model: &str,
    factors: u32,
    flags: &str,
    seed: u64,
    wall_s: f64,
) -> Result<SeedRun> {
    let t = trainlog::read(log)?;
    let last = t.epochs.last().expect("trainlog: at least one epoch");
    Ok(SeedRun {
        model: model.into(),
        factors,
        flags: flags.into(),
        seed,
        epochs: t.epochs.len(),
        hr: last.hr,
        ndcg: last.ndcg,
        seconds: (wall_s * 10.0).round() / 10.0,
    })
}

/// scripts/mf-ml1m.sh's summary line: mean ± std over the seeds.
pub fn seeds_summary(runs: &[SeedRun], epochs: &str) -> Result<String> {
    let r = runs
        .first()
        .ok_or_else(|| Error::invalid("no runs to summarise"))?;
    let col = |f: fn(&SeedRun) -> f64| mean_std(&runs.iter().map(f).collect::<Vec<_>>());
    let secs: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
    Ok(format!(
        "{}, factors {}, {}, {epochs} epochs (chosen on validation), last epoch on the test file, \
         {} seeds: HR@10 {}, NDCG@10 {}, {:.0} s per run\n",
        r.model,
        r.factors,
        r.flags,
        runs.len(),
        col(|r| r.hr),
        col(|r| r.ndcg),
        mean(&secs)
    ))
}

/// One measurement of scripts/bench-profile-ab.sh: a round, a build ("before" or "after"), a
/// metric and its value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AbMeasure {
    pub round: u32,
    pub build: String,
    pub metric: String,
    pub value: f64,
}

/// A metric's medians of both builds, and after / before (4 decimals).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AbMedian {
    pub metric: String,
    pub before_median: Option<f64>,
    pub after_median: Option<f64>,
    pub after_over_before: Option<f64>,
}

/// Per metric (in order of first appearance): the medians of both builds and after / before.
pub fn ab_medians(rows: &[AbMeasure]) -> Vec<AbMedian> {
    let mut metrics: Vec<&str> = vec![];
    for r in rows {
        if !metrics.contains(&r.metric.as_str()) {
            metrics.push(&r.metric);
        }
    }
    metrics
        .into_iter()
        .map(|m| {
            let med = |b: &str| {
                let v: Vec<f64> = rows
                    .iter()
                    .filter(|r| r.metric == m && r.build == b)
                    .map(|r| r.value)
                    .collect();
                (!v.is_empty()).then(|| crate::results::median(&v))
            };
            let (before, after) = (med("before"), med("after"));
            let ratio = match (before, after) {
                (Some(b), Some(a)) => Some((a / b * 1e4).round() / 1e4),
                _ => None,
            };
            AbMedian {
                metric: m.into(),
                before_median: before,
                after_median: after,
                after_over_before: ratio,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benchmarks/results")
    }

    #[test]
    fn g_formats_like_printf() {
        for (x, g) in [
            (0.001, "0.001"),
            (0.0005, "0.0005"),
            (1e-4, "0.0001"),
            (5e-5, "5e-05"),
            (0.002, "0.002"),
            (256.0, "256"),
            (1234567.0, "1.23457e+06"),
            (0.1 + 0.2, "0.3"),
        ] {
            assert_eq!(fmt_g(x), g, "{x}");
        }
    }

    #[test]
    fn the_committed_grid_and_tuning_tables_are_what_their_runs_give() {
        for dir in [
            "2026-11-26-paper-grid",
            "2026-11-26-paper-grid-f8",
            "2026-11-27-paper-grid-tuned",
        ] {
            let d = results_dir().join(dir);
            let runs: Vec<GridRun> = read_lines(&d.join("runs.jsonl")).unwrap();
            let want = std::fs::read_to_string(d.join("RESULTS.md")).unwrap();
            assert_eq!(grid_table(&runs, "20"), want, "{dir}");
        }
        for dir in [
            "2026-11-27-paper-tune",
            "2026-11-27-paper-tune-e20",
            "2026-11-27-paper-tune-gmf",
            "2026-11-27-paper-tune-mlp",
        ] {
            let d = results_dir().join(dir);
            let want = std::fs::read_to_string(d.join("summary.md")).unwrap();
            assert_eq!(tune_table(&d).unwrap(), want, "{dir}");
        }
    }

    #[test]
    fn a_cell_is_reused_only_for_the_same_epochs_device_batch_and_lr() {
        let d = results_dir().join("2026-11-27-paper-grid-tuned/runs.jsonl");
        let r = &read_lines::<GridRun>(&d).unwrap()[0];
        let cell = GridCell {
            epochs: 20,
            device: r.device.clone().unwrap(),
            batch: 1024,
            lr: 0.0005,
        };
        assert_eq!(r.differs(&cell), None);
        let other = GridCell {
            lr: 0.001,
            ..cell.clone()
        };
        assert!(r
            .differs(&other)
            .unwrap()
            .contains("lr 0.0005; this run is"));
        let first =
            &read_lines::<GridRun>(&results_dir().join("2026-11-26-paper-grid-f8/runs.jsonl"))
                .unwrap()[0];
        assert_eq!((first.batch, first.lr, first.epochs), (256, 0.001, None));
        assert!(first
            .differs(&GridCell {
                batch: 256,
                lr: 0.001,
                ..cell
            })
            .is_some());
    }

    #[test]
    fn a_tidy_log_holds_each_epoch_once_then_the_summary() {
        let line = |e: u32, loss: f64| {
            format!(
                r#"{{"epoch":{e},"loss":{loss},"hr":0.5,"ndcg":0.3,"k":10,"eval":"test","train_s":0.1,"eval_s":0.01,"samples":10,"samples_per_s":100.0,"steps":1,"skipped_steps":0}}"#
            )
        };
        let summary = r#"{"best_hr":0.5,"best_ndcg":0.3,"best_epoch":0,"first_epoch_reaching_target":null,"time_to_target_s":null,"train_time_s":0.2,"eval_time_s":0.02,"avg_samples_per_s":100.0,"best_samples_per_s":100.0,"epochs_run":2,"k":10,"eval":"test","backend":"cpu (1 thread)"}"#;
        let log = format!(
            "{}\n{}\n{}\n\n{summary}\n",
            line(0, 0.4),
            line(1, 0.31),
            line(1, 0.3)
        );
        let tidy = tidy_log(&log, "t").unwrap();
        assert_eq!(
            tidy,
            format!("{}\n{}\n{summary}\n", line(0, 0.4), line(1, 0.3))
        );
    }

    #[test]
    fn medians_per_metric_in_order() {
        let m = |round, build: &str, metric: &str, value| AbMeasure {
            round,
            build: build.into(),
            metric: metric.into(),
            value,
        };
        let rows = [
            m(1, "before", "x", 100.0),
            m(1, "after", "x", 90.0),
            m(2, "before", "x", 110.0),
            m(2, "after", "x", 100.0),
            m(1, "before", "y", 2.0),
            m(1, "after", "y", 3.0),
        ];
        let v = ab_medians(&rows);
        assert_eq!(v[0].metric, "x");
        assert_eq!(
            (v[0].before_median, v[0].after_median),
            (Some(105.0), Some(95.0))
        );
        assert_eq!(v[0].after_over_before, Some(0.9048));
        assert_eq!(v[1].after_over_before, Some(1.5));
        assert_eq!(mean_std(&[0.5]), "0.5000");
        assert_eq!(mean_std(&[1.0, 2.0, 3.0]), "2.0000 ± 1.0000");
    }
}
