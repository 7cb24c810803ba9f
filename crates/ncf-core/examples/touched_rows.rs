//! Does sending only the touched embedding rows pay in a data-parallel all-reduce? (issue 5)
//!
//! For a dataset (a directory from ncf-prep, e.g. `ncf-prep --synthetic` for the ml-20m shape),
//! NVIDIA's config (batch 2^20, 4 approximate negatives, NeuMF 64 / 256-256-128-64) and R ranks,
//! counts the distinct users and items in rank 0's share of the first steps and compares, per rank
//! and step, the bytes of a dense ring all-reduce of the whole gradient (2 (R-1)/R × P × 4) with a
//! sparse exchange of the touched embedding rows (an all-gather: every rank receives the other
//! R-1 ranks' rows with their ids, plus a dense all-reduce of the MLP weights).
//!
//!   cargo run --release -p ncf-core --example touched_rows -- DATASET [--steps 3] [--batch N]

use ncf_core::data::dataset::Dataset;
use ncf_core::model::{ModelConfig, ModelKind};
use ncf_core::sampling::rng::Rng;
use ncf_core::sampling::sampler::{EpochSamples, NegativeMode};
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1).filter(|a| !a.starts_with("--")) else {
        eprintln!("usage: touched_rows DATASET [--steps N] [--batch N]");
        std::process::exit(2);
    };
    let opt = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|k| args.get(k + 1))
            .map(|v| v.parse().expect("a number"))
            .unwrap_or(default)
    };
    let (steps, batch) = (opt("--steps", 3), opt("--batch", 1 << 20));
    let data = Dataset::load_any(Path::new(path)).expect("dataset");
    let mc = ModelConfig {
        kind: ModelKind::Neumf,
        n_users: data.n_users,
        n_items: data.n_items,
        factors: 64,
        layers: vec![256, 256, 128, 64],
        dropout: 0.5,
    };
    let layout = mc.layout();
    let total = layout.total as f64;
    // Row width (columns) of an embedding table.
    let width = |name: &str| {
        let t = layout.tensors.iter().find(|t| t.name == name).expect(name);
        t.shape[1]
    };
    // Floats per user row and per item row (GMF + MLP embeddings).
    let (uw, iw) = (
        width("mf_user_embed.weight") + width("mlp_user_embed.weight"),
        width("mf_item_embed.weight") + width("mlp_item_embed.weight"),
    );
    let embed = (data.n_users as usize * uw + data.n_items as usize * iw) as f64;
    let dense_rest = total - embed;
    let samples = EpochSamples::over(
        Rng::new(1),
        0,
        4,
        data.n_items,
        NegativeMode::Approximate,
        data.train_users.view(),
        &data.train_items,
        None,
    );
    println!(
        "{path}: {} users, {} items, {:.1} M parameters ({:.1} M in embeddings), batch {batch}, {} samples/epoch",
        data.n_users,
        data.n_items,
        total / 1e6,
        embed / 1e6,
        samples.len()
    );
    println!("ranks | users touched (rank 0) | items touched (rank 0) | dense all-reduce MB/rank/step | sparse exchange MB/rank/step | sparse/dense");
    for ranks in [1u64, 2, 4, 8, 16, 64] {
        let (mut fu, mut fi, mut dense, mut sparse) = (0f64, 0f64, 0f64, 0f64);
        for s in 0..steps {
            let start = s * batch;
            let end = (start + batch).min(samples.len());
            let share = (end - start) / ranks;
            let mut seen_u = vec![false; data.n_users as usize];
            let mut seen_i = vec![false; data.n_items as usize];
            let (mut nu, mut ni) = (0u64, 0u64);
            for p in start..start + share {
                let (u, i, _) = samples.at(p).expect("sample");
                if !std::mem::replace(&mut seen_u[u as usize], true) {
                    nu += 1;
                }
                if !std::mem::replace(&mut seen_i[i as usize], true) {
                    ni += 1;
                }
            }
            fu += nu as f64 / data.n_users as f64;
            fi += ni as f64 / data.n_items as f64;
            let r = ranks as f64;
            let ring = 2.0 * (r - 1.0) / r;
            dense += ring * total * 4.0;
            // Every other rank's touched rows (floats + a u32 id each), plus the dense rest.
            let rows = (nu as f64 * (uw as f64 + 1.0) + ni as f64 * (iw as f64 + 1.0)) * 4.0;
            sparse += (r - 1.0) * rows + ring * dense_rest * 4.0;
        }
        let k = steps as f64;
        println!(
            "{ranks:>5} | {:>21.1} % | {:>21.1} % | {:>29.1} | {:>28.1} | {:>12.2}",
            100.0 * fu / k,
            100.0 * fi / k,
            dense / k / 1e6,
            sparse / k / 1e6,
            if dense > 0.0 {
                sparse / dense
            } else {
                f64::NAN
            }
        );
    }
}
