//! Benchmark of the CPU trainer on synthetic data of the ml-20m shape with NVIDIA's model
//! (factors 64, layers 256-256-128-64, dropout 0.5, batch 2^20, 4 negatives), and of the tile
//! GEMMs it is made of. Prints numbers; asserts nothing.
//!
//! cargo run --release -p ncf-core --example cpu_train_bench -- [--steps N] [--threads N]
//!     [--tile N] [--batch N] [--users N] [--items N] [--positives N] [--per-sample-first-layer]
//!     [--gemm] [--json FILE]

use ncf_core::model::{Model, ModelConfig, ModelKind};
use ncf_core::neumf_cpu::{tile, CpuTrainer, FirstLayer};
use ncf_core::sampling::rng::{below, stream, Rng};
use ncf_core::train::{TrainConfig, Trainer};
use std::time::Instant;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(k) => args
            .get(k + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                eprintln!("cpu_train_bench: {name} needs a number");
                std::process::exit(2)
            }),
        None => default,
    }
}

/// GFLOP/s of the three GEMMs of each layer (forward, dW, dX) on tiles of `t` rows, one thread.
fn gemm_bench(layers: &[usize]) {
    println!("tile GEMMs, one thread, matrixmultiply 0.3.11:");
    for t in [64usize, 128, 256, 512] {
        let x: Vec<f32> = (0..t * 256).map(|k| (k % 97) as f32 * 1e-2).collect();
        let ws: Vec<Vec<f32>> = (0..layers.len() - 1)
            .map(|k| vec![0.01f32; layers[k] * layers[k + 1]])
            .collect();
        let mut dws: Vec<Vec<f32>> = ws.iter().map(|w| vec![0f32; w.len()]).collect();
        let (mut z, mut dx) = (vec![0f32; t * 256], vec![0f32; t * 256]);
        let reps = (1usize << 17) / t;
        let mut secs = [0f64; 3];
        for rep in 0..reps + 4 {
            for k in 0..layers.len() - 1 {
                let (ni, no) = (layers[k], layers[k + 1]);
                let t0 = Instant::now();
                tile::sgemm(
                    (t, ni, no),
                    &x,
                    (ni, 1),
                    &ws[k],
                    (1, ni),
                    0.0,
                    &mut z,
                    (no, 1),
                );
                let t1 = Instant::now();
                tile::sgemm(
                    (no, t, ni),
                    &z,
                    (1, no),
                    &x,
                    (ni, 1),
                    1.0,
                    &mut dws[k],
                    (ni, 1),
                );
                let t2 = Instant::now();
                tile::sgemm(
                    (t, no, ni),
                    &z,
                    (no, 1),
                    &ws[k],
                    (ni, 1),
                    0.0,
                    &mut dx,
                    (ni, 1),
                );
                let t3 = Instant::now();
                if rep >= 4 {
                    secs[0] += (t1 - t0).as_secs_f64();
                    secs[1] += (t2 - t1).as_secs_f64();
                    secs[2] += (t3 - t2).as_secs_f64();
                }
            }
        }
        std::hint::black_box((&dws, &dx));
        let macs: f64 = (0..layers.len() - 1)
            .map(|k| (layers[k] * layers[k + 1]) as f64)
            .sum::<f64>();
        let flop = 2.0 * macs * (t * reps) as f64;
        let total: f64 = secs.iter().sum();
        println!(
            "  T={t:4}: forward {:5.1}  dW {:5.1}  dX {:5.1}  all {:5.1} GFLOP/s = {:7.0} samples/s/thread",
            flop / secs[0] / 1e9,
            flop / secs[1] / 1e9,
            flop / secs[2] / 1e9,
            3.0 * flop / total / 1e9,
            (t * reps) as f64 / total
        );
    }
}

/// CPU seconds used by this process so far (all threads), from /proc; 0 where unavailable.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    if f.len() < 13 {
        return 0.0;
    }
    (f[11] + f[12]) / 100.0
}

fn main() {
    let layers = vec![256usize, 256, 128, 64];
    if std::env::args().any(|a| a == "--gemm") {
        gemm_bench(&layers);
        return;
    }
    let steps = arg("--steps", 4);
    let threads = arg("--threads", 0) as usize;
    let tile_rows = arg("--tile", ncf_core::neumf_cpu::DEFAULT_TILE as u64) as usize;
    let batch = arg("--batch", 1 << 20);
    let n_users = arg("--users", 138_493) as u32;
    let n_items = arg("--items", 26_744) as u32;
    // ml-20m: 20,000,263 ratings minus one test item per user.
    let n_pos = arg("--positives", 19_861_770);
    let rng = Rng::new(1);
    let users: Vec<u32> = (0..n_pos)
        .map(|k| below(rng.word(stream::SYNTH, k as u32, 0, 0), n_users))
        .collect();
    let items: Vec<u32> = (0..n_pos)
        .map(|k| below(rng.word(stream::SYNTH, k as u32, 1, 0), n_items))
        .collect();
    let mc = ModelConfig {
        kind: ModelKind::Neumf,
        n_users,
        n_items,
        factors: 64,
        layers: layers.clone(),
        dropout: 0.5,
    };
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: ncf_core::train::BatchSize::Samples(batch),
        ..TrainConfig::nvidia(1)
    };
    let model = Model::init(mc.clone(), 1).expect("model");
    let mut t = CpuTrainer::new(model, &cfg, users, items, None, threads)
        .expect("trainer")
        .with_tile(tile_rows)
        .with_first_layer(
            if std::env::args().any(|a| a == "--per-sample-first-layer") {
                FirstLayer::PerSample
            } else {
                FirstLayer::Factored
            },
        );
    let len = n_pos * 5;
    println!(
        "cpu trainer: {} users, {} items, {} samples/epoch, batch {batch}, {}, tile {tile_rows}, {:.2} GFLOP/step",
        n_users,
        n_items,
        len,
        t.name(),
        6.0 * mc.macs_per_sample() as f64 * batch as f64 / 1e9
    );
    let mut rates = vec![];
    for s in 0..steps {
        let range = s * batch..((s + 1) * batch).min(len);
        let n = range.end - range.start;
        let (t0, c0) = (Instant::now(), cpu_seconds());
        let st = t.step(0, range).expect("step");
        let secs = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - c0;
        let rate = n as f64 / secs;
        // Wall time is inflated when other processes share the cores; CPU time much less so.
        println!(
            "  step {s}: {secs:7.3} s  {rate:9.0} samples/s  ({:.0} samples per CPU-second)  loss {:.5}",
            n as f64 / cpu,
            st.loss
        );
        rates.push(rate);
    }
    // Steady state: the median of the steps after the first (page faults of fresh buffers).
    let mut steady = if rates.len() > 1 {
        rates[1..].to_vec()
    } else {
        rates.clone()
    };
    steady.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = steady[steady.len() / 2];
    println!(
        "steady state: {median:.0} samples/s ({:.1} GFLOP/s), {}, tile {tile_rows}",
        median * 6.0 * mc.macs_per_sample() as f64 / 1e9,
        t.name()
    );
    // --json FILE: the same figures for scripts/bench.sh (one object).
    let args: Vec<String> = std::env::args().collect();
    if let Some(k) = args.iter().position(|a| a == "--json") {
        let Some(path) = args.get(k + 1) else {
            eprintln!("cpu_train_bench: --json needs a file name");
            std::process::exit(2);
        };
        let v = serde_json::json!({
            "users": n_users, "items": n_items, "samples_per_epoch": len, "batch": batch,
            "threads": t.name(), "tile": tile_rows, "step_samples_per_s": rates,
            "steady_samples_per_s": median,
            "gflops": median * 6.0 * mc.macs_per_sample() as f64 / 1e9,
        });
        if let Err(e) = std::fs::write(path, v.to_string() + "\n") {
            eprintln!("cpu_train_bench: {path}: {e}");
            std::process::exit(1);
        }
    }
}
