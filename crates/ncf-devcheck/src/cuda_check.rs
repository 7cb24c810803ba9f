//! `ncf-cuda-check`'s flags and run: every CUDA kernel parity check and the golden CPU/GPU run in
//! every precision (one `PASS|FAIL name precision worst_abs worst_rel at=idx` line each), or the
//! training throughput bench (`--bench`), or NCCL's version (`--nccl-version`, no GPU needed), or
//! an NVRTC compile of every kernel (`--compile-only`, no GPU needed). The checks are
//! `ncf_cuda::check`; this module only runs them and writes their report.

use crate::results::{CheckResult, Checks};
use anyhow::{bail, Context, Result};
use clap::Parser;
use ncf_core::neumf_cpu::FirstLayer;
use ncf_core::train::{Precision, StepKernels};
use ncf_cuda::check;
use ncf_cuda::device::Which;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Parity checks and bench of the ncf CUDA kernels.
///
/// Checks (default): every kernel against its CPU reference, and short golden CPU/GPU training
/// runs, in each --precision; one `PASS|FAIL name precision worst_abs worst_rel at=idx` line per
/// check, then `N of M checks passed`; --json writes {device, arch, checks, failed, results}.
/// --bench: training steps per second per precision (ml-20m shape), JSON on stdout and --json.
/// --nccl-version: load NCCL (libnccl.so.2, else libnccl.so) and print
/// {nccl_version, code, library}; no GPU needed. --compile-only ARCHS: compile every kernel
/// with NVRTC (`PASS compile NAME ptx_bytes=N`); no GPU needed.
///
/// Exit codes: 0 every check passed, 1 a check failed or CUDA (NCCL) is unavailable, 2 usage
/// error (bad command line).
///
/// Example:
///   LD_LIBRARY_PATH=/usr/local/cuda/lib64 ncf-cuda-check --verbose --json checks.json
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
pub struct Args {
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    device: usize,
    /// Write the JSON summary (checks or bench) to this file (the bench also prints it).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Print each stage to stderr and synchronise after every kernel (names a failing kernel).
    #[arg(long)]
    verbose: bool,
    /// Measure training step throughput instead of checking.
    #[arg(long)]
    bench: bool,
    /// Precisions (comma-separated: fp32,tf32,fp16,bf16); default all.
    #[arg(long, value_enum, value_delimiter = ',')]
    precision: Vec<Precision>,
    /// Bench: timed steps (median reported).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Bench: untimed warm-up steps.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Bench: samples per step.
    #[arg(long, default_value_t = 1 << 20)]
    batch: u64,
    /// Bench: first-layer paths to time, comma-separated (per-sample, factored).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "per-sample")]
    first_layer: Vec<FirstLayer>,
    /// Bench: the step's kernels to time, comma-separated (split: the confirmed kernels; fused:
    /// the fused GEMM epilogues and Adam, docs/CUDA.md "The fused step").
    #[arg(long, value_enum, value_delimiter = ',', default_value = "split,fused")]
    step: Vec<StepKernels>,
    /// Only compile every kernel with NVRTC for these architectures (e.g. sm_80,sm_90); no GPU needed.
    #[arg(long, value_delimiter = ',')]
    compile_only: Vec<String>,
    /// Kernel checks only, no golden CPU/GPU runs (the small set compute-sanitizer runs).
    #[arg(long)]
    no_golden: bool,
    /// Only load NCCL (libnccl.so.2 or libnccl.so) and print a JSON line with ncclGetVersion
    /// and the file loaded; no GPU needed.
    #[arg(long, conflicts_with_all = ["bench", "compile_only"])]
    nccl_version: bool,
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| path.display().to_string())
}

/// Run `ncf-cuda-check` with its parsed flags; a failed check is an error (exit 1).
pub fn run(args: Args) -> Result<()> {
    if args.nccl_version {
        let lib = ncf_cuda::nccl::ffi::nccl()?;
        let v = serde_json::json!({"nccl_version": lib.version_string(), "code": lib.version,
            "library": lib.path});
        println!("{v}");
        return match &args.json {
            Some(p) => write_file(p, &format!("{v}\n")),
            None => Ok(()),
        };
    }
    for arch in &args.compile_only {
        for (what, len) in ncf_cuda::kernels::compile_all(arch)? {
            println!("PASS compile {what} ptx_bytes={len}");
        }
    }
    if !args.compile_only.is_empty() {
        return Ok(());
    }
    if args.verbose {
        // SAFETY: set before any thread reads the environment.
        unsafe { std::env::set_var("NCF_CUDA_SYNC", "1") };
    }
    let info = ncf_cuda::available()?;
    eprintln!(
        "ncf-cuda-check: device {} {} ({}), {:.1} GiB, driver {}",
        info.ordinal,
        info.name,
        info.arch(),
        info.total_mem as f64 / (1u64 << 30) as f64,
        info.driver_version
    );
    let precisions = match args.precision.is_empty() {
        true => Precision::ALL.to_vec(),
        false => args.precision.clone(),
    };
    let verbose = args.verbose;
    let mut log = |m: &str| {
        if verbose {
            eprintln!("ncf-cuda-check: {m}");
        }
    };
    if args.bench {
        let v = check::bench(
            Which::Gpu(args.device),
            &precisions,
            &args.first_layer,
            &args.step,
            args.steps,
            args.warmup,
            args.batch,
            &mut log,
        )?;
        let text = serde_json::to_string_pretty(&v)?;
        println!("{text}");
        return match &args.json {
            Some(p) => write_file(p, &(text + "\n")),
            None => Ok(()),
        };
    }
    let all = checks(&args, &precisions, &mut log);
    let failed = all.iter().filter(|c| !c.pass).count();
    if let Some(p) = &args.json {
        let report = Checks {
            device: info.name.clone(),
            arch: info.arch(),
            checks: all.len(),
            failed,
            results: all.iter().map(result_of).collect(),
        };
        write_file(p, &(serde_json::to_string_pretty(&report)? + "\n"))?;
    }
    println!("{} of {} checks passed", all.len() - failed, all.len());
    if failed > 0 {
        bail!("{failed} of {} checks failed", all.len());
    }
    Ok(())
}

/// Every kernel check and golden run in each precision, printed as they finish; a check that
/// could not run is a failed check naming why.
fn checks(args: &Args, precisions: &[Precision], log: check::Log) -> Vec<check::Check> {
    let mut all = vec![];
    for &p in precisions {
        let failed = |name: String, e: &dyn std::fmt::Display| check::Check {
            name,
            precision: p.name(),
            pass: false,
            worst_abs: 0.0,
            worst_rel: 0.0,
            at: 0,
            note: e.to_string(),
        };
        let mut checks = check::kernel_checks(Which::Gpu(args.device), p, &mut *log)
            .unwrap_or_else(|e| vec![failed("kernel_checks".into(), &e)]);
        let runs = match args.no_golden {
            true => vec![],
            false => check::golden::runs(p),
        };
        for run in runs {
            match check::golden(Which::Gpu(args.device), p, run, 10, &mut *log) {
                Ok(c) => checks.extend(c),
                Err(e) => checks.push(failed(
                    format!("golden_{}", check::golden::run_name(run)),
                    &e,
                )),
            }
        }
        for c in &checks {
            println!("{}", c.line());
            let _ = std::io::stdout().flush();
        }
        all.extend(checks);
    }
    all
}

/// A check as results.json holds it (`ncf_devcheck::results`, the schema ncf-report reads).
fn result_of(c: &check::Check) -> CheckResult {
    CheckResult {
        name: c.name.clone(),
        precision: c.precision.to_string(),
        pass: c.pass,
        worst_abs: c.worst_abs,
        worst_rel: c.worst_rel,
        at: c.at,
        note: c.note.clone(),
    }
}
