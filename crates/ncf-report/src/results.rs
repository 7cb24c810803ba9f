//! Benchmark results files: the `make bench` file (`ncf-bench/1`, one per run and machine, written
//! by `ncf-bench-report collect` from the raw measurements of scripts/bench.sh), the GPU
//! device-check folders (scripts/device-check.sh's results.json, read with the GPU check's own
//! schema, `ncf_devcheck::results`) and NVIDIA's published figures; and loading every one of
//! them from benchmarks/results/.

use crate::{Error, Result};
use ncf_devcheck::results::Results as DeviceResults;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const SCHEMA: &str = "ncf-bench/1";
pub const PUBLISHED_SCHEMA: &str = "ncf-published/1";

/// One raw measurement, one JSON line of scripts/bench.sh's raw file (one line per repetition).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RawRecord {
    /// Stable id, e.g. `cpu.train.steady`; peer measurements are `peer.…` with `peer_of` set.
    pub id: String,
    pub group: String,
    pub title: String,
    pub unit: String,
    /// "higher" or "lower": which way is better.
    pub better: String,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_of: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Every repetition of one benchmark, with its median and spread.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub id: String,
    pub group: String,
    pub title: String,
    pub unit: String,
    pub better: String,
    pub runs: Vec<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_of: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What the numbers were measured on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Machine {
    pub name: String,
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    /// Load average (1 min) when the run started: numbers from a busy machine are not idle figures.
    pub load_average: Option<f64>,
    pub gpu: Option<String>,
    pub gpu_driver: Option<String>,
    pub os: String,
    pub rustc: String,
    pub git_commit: String,
    pub git_dirty: bool,
}

/// A `make bench` results file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchResults {
    pub schema: String,
    /// UTC time the run started, RFC 3339.
    pub date: String,
    pub machine: Machine,
    pub benchmarks: Vec<Measurement>,
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Median of a non-empty slice (mean of the middle two for even counts).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Group raw records (JSON lines) by id, in order of first appearance, into measurements.
pub fn collect(raw: &str, name: &str, date: &str, machine: Machine) -> Result<BenchResults> {
    let mut out: Vec<Measurement> = Vec::new();
    let mut notes = Vec::new();
    for (k, line) in raw.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at = format!("{name}:{}", k + 1);
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| Error::parse(&at, format!("not a JSON line ({e})")))?;
        if let Some(n) = v.get("note").filter(|_| v.get("id").is_none()) {
            notes.push(n.as_str().unwrap_or_default().to_string());
            continue;
        }
        let r: RawRecord = serde_json::from_value(v).map_err(|e| {
            Error::parse(
                &at,
                format!("{e} (expected id, group, title, unit, better, value)"),
            )
        })?;
        if r.better != "higher" && r.better != "lower" {
            return Err(Error::parse(
                &at,
                format!("better: '{}', expected higher or lower", r.better),
            ));
        }
        if !r.value.is_finite() {
            return Err(Error::parse(
                &at,
                format!("{}: value is not a finite number", r.id),
            ));
        }
        match out.iter_mut().find(|m| m.id == r.id) {
            Some(m) => {
                if m.unit != r.unit {
                    return Err(Error::parse(
                        &at,
                        format!(
                            "{}: unit '{}' but earlier runs said '{}'",
                            r.id, r.unit, m.unit
                        ),
                    ));
                }
                m.runs.push(r.value);
                if r.note.is_some() {
                    m.note = r.note;
                }
            }
            None => out.push(Measurement {
                id: r.id,
                group: r.group,
                title: r.title,
                unit: r.unit,
                better: r.better,
                runs: vec![r.value],
                median: 0.0,
                min: 0.0,
                max: 0.0,
                peer_of: r.peer_of,
                note: r.note,
            }),
        }
    }
    if out.is_empty() {
        return Err(Error::parse(name, "no measurements"));
    }
    for m in &mut out {
        m.median = median(&m.runs);
        m.min = m.runs.iter().copied().fold(f64::INFINITY, f64::min);
        m.max = m.runs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    }
    Ok(BenchResults {
        schema: SCHEMA.into(),
        date: date.into(),
        machine,
        benchmarks: out,
        notes,
    })
}

fn command_line(prog: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(prog).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Describe this machine: CPU model and cores, memory, load, GPU and driver (nvidia-smi, when
/// present), OS, rustc and the git commit of the working tree.
pub fn describe_machine(name: &str) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| (kb / (1u64 << 20) as f64 * 10.0).round() / 10.0)
        .unwrap_or(0.0);
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok());
    let smi = command_line(
        "nvidia-smi",
        &["--query-gpu=name,driver_version", "--format=csv,noheader"],
    )
    .filter(|s| !s.is_empty());
    let (gpu, gpu_driver) = match smi.as_deref().and_then(|s| s.lines().next()) {
        Some(line) => {
            let mut it = line.split(',').map(|s| s.trim().to_string());
            let count = smi.as_deref().map_or(1, |s| s.lines().count());
            let name = it.next().unwrap_or_default();
            let name = if count > 1 {
                format!("{count}x {name}")
            } else {
                name
            };
            (Some(name), it.next())
        }
        None => (None, None),
    };
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("PRETTY_NAME="))
                .map(|l| l["PRETTY_NAME=".len()..].trim_matches('"').to_string())
        })
        .unwrap_or_else(|| std::env::consts::OS.into());
    Machine {
        name: name.into(),
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_gib,
        load_average,
        gpu,
        gpu_driver,
        os,
        rustc: command_line("rustc", &["--version"]).unwrap_or_else(|| "unknown".into()),
        git_commit: command_line("git", &["rev-parse", "--short=12", "HEAD"])
            .unwrap_or_else(|| "unknown".into()),
        git_dirty: command_line("git", &["status", "--porcelain", "--untracked-files=no"])
            .is_some_and(|s| !s.is_empty()),
    }
}

/// One GPU device-check run (a folder of scripts/device-check.sh's outputs).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct GpuRun {
    /// The folder, relative to where it was loaded from (for links).
    pub dir: PathBuf,
    /// The file the throughput and parity figures come from (results.json).
    pub file: PathBuf,
    /// GPU, driver, toolkit and torch lines from nvidia-smi / nvcc / python.
    pub env: Vec<String>,
    pub parity_pass: Option<(usize, usize)>,
    /// (precision, ncf samples/s, peer samples/s), in the bench's order.
    pub throughput: Vec<(String, f64, Option<f64>)>,
    /// (file, best HR, best NDCG, best epoch, training seconds) of the ml-1m run, when there was one.
    pub ml1m: Option<(PathBuf, f64, f64, Option<u32>, f64)>,
}

impl GpuRun {
    /// The GPU's name (first field of nvidia-smi's line).
    pub fn gpu(&self) -> &str {
        self.env
            .first()
            .and_then(|l| l.split(',').next())
            .unwrap_or("GPU")
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::parse(path.display().to_string(), e.to_string()))
}

/// A device-check results file, read with the GPU check's own structs
/// (`ncf_devcheck::results`, schema ncf-device-check/1, also the first runs' files).
fn read_device_results(path: &Path) -> Result<DeviceResults> {
    let v = read_json(path)?;
    if v.get("bench").is_none() {
        return Err(Error::parse(
            path.display().to_string(),
            "no bench.results (expected scripts/device-check.sh's results.json)",
        ));
    }
    serde_json::from_value(v).map_err(|e| {
        Error::parse(
            path.display().to_string(),
            format!("{e} (expected scripts/device-check.sh's results.json)"),
        )
    })
}

/// (best HR, best NDCG, best epoch, training seconds) of a results file's ml-1m run.
fn ml1m_summary(r: &DeviceResults) -> Option<(f64, f64, Option<u32>, f64)> {
    r.ml1m_summary()
        .map(|s| (s.best_hr, s.best_ndcg, s.best_epoch, s.train_time_s))
}

/// Read a device-check folder: `results.json` (env, parity, bench, peer) and, when that run had
/// no ml-1m summary, another `results*.json` beside it that has one.
pub fn read_gpu_run(dir: &Path, rel: &Path) -> Result<GpuRun> {
    let file = dir.join("results.json");
    let r = read_device_results(&file)?;
    let mut run = GpuRun {
        dir: rel.to_path_buf(),
        file: rel.join("results.json"),
        env: r.env.clone(),
        ..Default::default()
    };
    if let Some(p) = &r.parity {
        let pass = p.results.iter().filter(|c| c.pass).count();
        run.parity_pass = Some((pass, p.results.len()));
    }
    for row in &r.bench.results {
        let peer = r
            .peer
            .get(&row.precision)
            .and_then(|p| p.step_samples_per_s);
        // The fused step's rows (issue 35) beside the split step's: "bf16 (fused)".
        let label = match row.other.get("step").and_then(|v| v.as_str()) {
            Some(step) if step != "split" => format!("{} ({step})", row.precision),
            _ => row.precision.clone(),
        };
        run.throughput.push((label, row.samples_per_s, peer));
    }
    if let Some((hr, ndcg, ep, t)) = ml1m_summary(&r) {
        run.ml1m = Some((run.file.clone(), hr, ndcg, ep, t));
    } else {
        let mut others: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n.starts_with("results") && n.ends_with(".json") && n != "results.json")
            .collect();
        others.sort();
        for n in others {
            if let Some((hr, ndcg, ep, t)) = ml1m_summary(&read_device_results(&dir.join(&n))?) {
                run.ml1m = Some((rel.join(&n), hr, ndcg, ep, t));
                break;
            }
        }
    }
    Ok(run)
}

/// A published figure from someone else's documentation (file schema `ncf-published/1`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublishedFigure {
    pub gpu: String,
    pub gpus: u32,
    pub precision: String,
    pub samples_per_s: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Published {
    pub schema: String,
    pub who: String,
    pub source: String,
    pub what: String,
    pub figures: Vec<PublishedFigure>,
}

/// Everything under benchmarks/results/, paths relative to that folder.
#[derive(Clone, Debug, Default)]
pub struct AllResults {
    pub bench: Vec<(PathBuf, BenchResults)>,
    pub gpu: Vec<GpuRun>,
    pub published: Vec<(PathBuf, Published)>,
}

impl AllResults {
    /// The newest `make bench` file (by date, then name).
    pub fn latest_bench(&self) -> Option<&(PathBuf, BenchResults)> {
        self.bench.last()
    }
    /// The newest `make bench` file that has a given measurement.
    pub fn latest_with(&self, id: &str) -> Option<(&Path, &Measurement)> {
        self.bench.iter().rev().find_map(|(p, r)| {
            r.benchmarks
                .iter()
                .find(|m| m.id == id)
                .map(|m| (p.as_path(), m))
        })
    }
}

/// Load every results file in `dir`: `*.json` files of schema ncf-bench/1 or ncf-published/1,
/// and every subfolder with a device-check `results.json`. Sorted by name (names start with the date).
pub fn load_all(dir: &Path) -> Result<AllResults> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    let mut all = AllResults::default();
    for n in names {
        let path = dir.join(&n);
        if path.is_dir() {
            if path.join("results.json").is_file() {
                all.gpu.push(read_gpu_run(&path, Path::new(&n))?);
            }
        } else if n.ends_with(".json") {
            let v = read_json(&path)?;
            match v.get("schema").and_then(|s| s.as_str()) {
                Some(SCHEMA) => {
                    let r: BenchResults = serde_json::from_value(v).map_err(|e| {
                        Error::parse(path.display().to_string(), format!("{SCHEMA}: {e}"))
                    })?;
                    all.bench.push((PathBuf::from(&n), r));
                }
                Some(PUBLISHED_SCHEMA) => {
                    let r: Published = serde_json::from_value(v).map_err(|e| {
                        Error::parse(path.display().to_string(), format!("{PUBLISHED_SCHEMA}: {e}"))
                    })?;
                    all.published.push((PathBuf::from(&n), r));
                }
                other => {
                    return Err(Error::parse(
                        path.display().to_string(),
                        format!(
                            "schema {other:?}: expected \"{SCHEMA}\" or \"{PUBLISHED_SCHEMA}\" (results folders hold only results files)"
                        ),
                    ))
                }
            }
        }
    }
    all.bench
        .sort_by(|a, b| a.1.date.cmp(&b.1.date).then(a.0.cmp(&b.0)));
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, v: f64) -> String {
        format!(
            r#"{{"id":"{id}","group":"g","title":"t {id}","unit":"s","better":"lower","value":{v}}}"#
        )
    }

    #[test]
    fn collect_groups_by_id_in_order_with_median_and_spread() {
        let raw = [
            line("b", 3.0),
            line("a", 1.0),
            line("b", 1.0),
            r#"{"note":"short run"}"#.to_string(),
            line("b", 2.0),
            line("a", 4.0),
        ]
        .join("\n");
        let r = collect(&raw, "raw", "2026-11-26T00:00:00Z", Machine::default()).unwrap();
        assert_eq!(r.schema, SCHEMA);
        let ids: Vec<_> = r.benchmarks.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["b", "a"]);
        let b = &r.benchmarks[0];
        assert_eq!((b.median, b.min, b.max), (2.0, 1.0, 3.0));
        assert_eq!(b.runs, [3.0, 1.0, 2.0]);
        assert_eq!(r.benchmarks[1].median, 2.5);
        assert_eq!(r.notes, ["short run"]);
    }

    #[test]
    fn collect_rejects_bad_lines_with_their_line_number() {
        let e = collect("\nnope", "raw", "d", Machine::default()).unwrap_err();
        assert!(e.to_string().starts_with("raw:2: not a JSON line"), "{e}");
        let bad = line("a", 1.0).replace("lower", "sideways");
        let e = collect(&bad, "raw", "d", Machine::default()).unwrap_err();
        assert!(e.to_string().contains("expected higher or lower"), "{e}");
        let two = format!(
            "{}\n{}",
            line("a", 1.0),
            line("a", 2.0).replace("\"s\"", "\"ms\"")
        );
        let e = collect(&two, "raw", "d", Machine::default()).unwrap_err();
        assert!(e.to_string().starts_with("raw:2: a: unit 'ms'"), "{e}");
        assert!(collect("", "raw", "d", Machine::default()).is_err());
    }

    #[test]
    fn reads_the_committed_gpu_runs() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benchmarks/results");
        let all = load_all(&dir).unwrap();
        let v2 = all
            .gpu
            .iter()
            .find(|g| g.dir == Path::new("2026-11-26-h200-v2"))
            .expect("v2 run");
        assert_eq!(v2.parity_pass, Some((139, 139)));
        let bf16 = v2.throughput.iter().find(|t| t.0 == "bf16").unwrap();
        assert!((bf16.1 / 1e6 - 154.5).abs() < 0.05, "{bf16:?}");
        assert!((bf16.2.unwrap() / 1e6 - 71.8).abs() < 0.05, "{bf16:?}");
        let first = all
            .gpu
            .iter()
            .find(|g| g.dir == Path::new("2026-11-26-h200-first"))
            .expect("first run");
        let ml1m = first
            .ml1m
            .as_ref()
            .expect("run 1 ml-1m from the other file");
        assert_eq!(
            ml1m.0,
            Path::new("2026-11-26-h200-first/results-run1-with-ml1m.json")
        );
        assert!((ml1m.1 - 0.7056).abs() < 1e-4);
        assert_eq!(v2.gpu(), "NVIDIA H200");
    }

    #[test]
    fn reads_a_staged_device_check_run() {
        // scripts/device-check.sh since issue 25: stages, plus the keys read here.
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("2027-01-01-h200");
        std::fs::create_dir(&run).unwrap();
        std::fs::write(
            run.join("results.json"),
            r#"{"schema":"ncf-device-check/1","stages":[{"name":"env","status":"pass"}],
               "env":["NVIDIA H200, 580.159.04, 143771 MiB"],
               "parity":{"results":[{"pass":true},{"pass":false}]},
               "bench":{"results":[{"precision":"bf16","samples_per_s":1.5e8,"step":"split"},
                                   {"precision":"bf16","samples_per_s":3.0e8,"step":"fused"}]},
               "peer":{"bf16":{"step_samples_per_s":7.0e7}},
               "ml1m":[{"epoch":0,"loss":0.4,"hr":0.45,"ndcg":0.25,"k":10,"eval":"test","train_s":0.1,"eval_s":0.01,"samples":10,"samples_per_s":100.0,"steps":1,"skipped_steps":0},
                       {"best_hr":0.7,"best_ndcg":0.42,"best_epoch":17,"first_epoch_reaching_target":null,"time_to_target_s":null,"train_time_s":1.5,"eval_time_s":0.1,"avg_samples_per_s":1e7,"best_samples_per_s":1e7,"epochs_run":20,"k":10,"eval":"test","backend":"cuda"}]}"#,
        )
        .unwrap();
        // A cut run: no bench stage, empty bench results.
        let cut = dir.path().join("2027-01-02-h200");
        std::fs::create_dir(&cut).unwrap();
        std::fs::write(
            cut.join("results.json"),
            r#"{"schema":"ncf-device-check/1","stages":[],"env":[],"bench":{"results":[]},"peer":{}}"#,
        )
        .unwrap();
        let all = load_all(dir.path()).unwrap();
        assert_eq!(all.gpu.len(), 2);
        let g = &all.gpu[0];
        assert_eq!(g.gpu(), "NVIDIA H200");
        assert_eq!(g.parity_pass, Some((1, 2)));
        // The split step's row keeps the precision's name, the fused step's says so (issue 35);
        // both beside the same peer.
        assert_eq!(
            g.throughput,
            vec![
                ("bf16".to_string(), 1.5e8, Some(7.0e7)),
                ("bf16 (fused)".to_string(), 3.0e8, Some(7.0e7))
            ]
        );
        assert_eq!(g.ml1m.as_ref().map(|m| m.1), Some(0.7));
        assert!(all.gpu[1].throughput.is_empty());
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0]), 2.5);
    }
}
