#!/usr/bin/env bash
# Benchmark the CPU trainer on synthetic data of the ml-20m shape (138,493 users, 26,744 items,
# 19,861,770 positives) with NVIDIA's model and batch (factors 64, layers 256-256-128-64,
# dropout 0.5, batch 2^20, 4 negatives): release build, samples/s of each step and the steady
# state (median after the first step). Numbers go into BENCHMARKS.md ("## CPU training").
#
#   scripts/bench-cpu-train.sh [--steps N] [--threads N] [--tile N] [--batch N]
#   scripts/bench-cpu-train.sh --gemm        (GFLOP/s of the tile GEMMs, one thread)
#
# Wall-clock numbers are only meaningful on an otherwise idle machine; each step also prints
# samples per CPU-second, which other load inflates much less.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p ncf-core --example cpu_train_bench
exec target/release/examples/cpu_train_bench "$@"
