//! ncf-cuda-check: runs every CUDA kernel parity check and the golden CPU/GPU run in every
//! precision (one `PASS|FAIL name precision worst_abs worst_rel at=idx` line each), or the training
//! throughput bench (`--bench`), or loads NCCL and prints its version (`--nccl-version`, no GPU
//! needed). Exit 1 when a check fails or CUDA (NCCL) is unavailable.
//!
//! Example: LD_LIBRARY_PATH=/usr/local/cuda/lib64 ncf-cuda-check --verbose --json checks.json
//!
//! (Built by ncf-cli, not ncf-cuda, so that the tests under tests/ can run it as a process.)

use clap::Parser;
use ncf_core::train::Precision;
use ncf_cuda::check;
use ncf_cuda::device::Which;
use std::io::Write;

#[derive(Parser, Debug)]
#[command(
    name = "ncf-cuda-check",
    about = "Parity checks and bench of the ncf CUDA kernels"
)]
struct Args {
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    device: usize,
    /// Write the JSON summary (checks or bench) to this file (the bench also prints it).
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Print each stage to stderr and synchronise after every kernel (names a failing kernel).
    #[arg(long)]
    verbose: bool,
    /// Measure training step throughput instead of checking.
    #[arg(long)]
    bench: bool,
    /// Precisions (comma-separated: fp32,tf32,fp16,bf16); default all.
    #[arg(long, value_delimiter = ',')]
    precision: Vec<String>,
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
    #[arg(long, value_delimiter = ',', default_value = "per-sample")]
    first_layer: Vec<String>,
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

fn parse_precision(s: &str) -> Result<Precision, String> {
    Ok(match s {
        "fp32" => Precision::Fp32,
        "tf32" => Precision::Tf32,
        "fp16" => Precision::Fp16,
        "bf16" => Precision::Bf16,
        _ => return Err(format!("unknown precision {s:?} (fp32, tf32, fp16, bf16)")),
    })
}

/// The precisions asked for (all by default); an unknown name is a usage error (exit 2).
fn precisions(args: &Args) -> Result<Vec<Precision>, String> {
    if args.precision.is_empty() {
        return Ok(Precision::ALL.to_vec());
    }
    args.precision.iter().map(|s| parse_precision(s)).collect()
}

fn main() {
    let args = Args::parse();
    if let Err(e) = precisions(&args) {
        eprintln!("ncf-cuda-check: --precision: {e}");
        std::process::exit(2);
    }
    match run(&args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("ncf-cuda-check: {e}");
            std::process::exit(1);
        }
    }
}

fn run(args: &Args) -> Result<bool, String> {
    let verbose = args.verbose;
    let mut log = |m: &str| {
        if verbose {
            eprintln!("ncf-cuda-check: {m}");
        }
    };
    if args.nccl_version {
        let lib = ncf_cuda::nccl::ffi::nccl().map_err(|e| e.to_string())?;
        let v = serde_json::json!({"nccl_version": lib.version_string(), "code": lib.version,
            "library": lib.path});
        println!("{v}");
        if let Some(p) = &args.json {
            std::fs::write(p, format!("{v}\n")).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        return Ok(true);
    }
    if !args.compile_only.is_empty() {
        for arch in &args.compile_only {
            for (what, len) in ncf_cuda::kernels::compile_all(arch).map_err(|e| e.to_string())? {
                println!("PASS compile {what} ptx_bytes={len}");
            }
        }
        return Ok(true);
    }
    if verbose {
        // SAFETY: set before any thread reads the environment.
        unsafe { std::env::set_var("NCF_CUDA_SYNC", "1") };
    }
    let info = ncf_cuda::available().map_err(|e| e.to_string())?;
    eprintln!(
        "ncf-cuda-check: device {} {} ({}), {:.1} GiB, driver {}",
        info.ordinal,
        info.name,
        info.arch(),
        info.total_mem as f64 / (1u64 << 30) as f64,
        info.driver_version
    );
    let precisions = precisions(args)?;
    let write_json = |v: &serde_json::Value| -> Result<(), String> {
        let text = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
        println!("{text}");
        if let Some(p) = &args.json {
            std::fs::write(p, text + "\n").map_err(|e| format!("{}: {e}", p.display()))?;
        }
        Ok(())
    };
    if args.bench {
        let firsts = args
            .first_layer
            .iter()
            .map(|f| match f.as_str() {
                "per-sample" => Ok(ncf_cuda::first_layer::FirstLayer::PerSample),
                "factored" => Ok(ncf_cuda::first_layer::FirstLayer::Factored),
                _ => Err(format!(
                    "--first-layer: unknown {f:?} (per-sample, factored)"
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let v = check::bench(
            Which::Gpu(args.device),
            &precisions,
            &firsts,
            args.steps,
            args.warmup,
            args.batch,
            &mut log,
        )
        .map_err(|e| e.to_string())?;
        write_json(&v)?;
        return Ok(true);
    }
    let mut all = vec![];
    for p in precisions {
        let mut checks = match check::kernel_checks(Which::Gpu(args.device), p, &mut log) {
            Ok(c) => c,
            Err(e) => vec![failed("kernel_checks", p, e.to_string())],
        };
        let runs = match args.no_golden {
            true => vec![],
            false => check::golden::runs(p),
        };
        for run in runs {
            match check::golden(Which::Gpu(args.device), p, run, 10, &mut log) {
                Ok(c) => checks.extend(c),
                Err(e) => checks.push(failed(
                    &format!("golden_{}", check::golden::run_name(run.0, run.1)),
                    p,
                    e.to_string(),
                )),
            }
        }
        for c in &checks {
            println!("{}", c.line());
            let _ = std::io::stdout().flush();
        }
        all.extend(checks);
    }
    let failed_n = all.iter().filter(|c| !c.pass).count();
    let summary = serde_json::json!({
        "device": info.name, "arch": info.arch(), "checks": all.len(), "failed": failed_n,
        "results": all.iter().map(|c| c.json()).collect::<Vec<_>>(),
    });
    if let Some(p) = &args.json {
        let text = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
        std::fs::write(p, text + "\n").map_err(|e| format!("{}: {e}", p.display()))?;
    }
    println!("{} of {} checks passed", all.len() - failed_n, all.len());
    Ok(failed_n == 0)
}

fn failed(name: &str, p: Precision, note: String) -> check::Check {
    check::Check {
        name: name.into(),
        precision: p.name(),
        pass: false,
        worst_abs: 0.0,
        worst_rel: 0.0,
        at: 0,
        note,
    }
}
