#!/usr/bin/env bash
# CPU training speed of two builds side by side (issue 23: a build-profile change must keep the
# speed within 3 %). BEFORE and AFTER are target directories (e.g. target/release of two
# checkouts) holding ncf-prep, ncf-train and examples/cpu_train_bench (AFTER also
# ncf-bench-report, which takes the medians). Rounds alternate
# before/after so that drift of the machine hits both alike; run it on an otherwise idle machine.
# Prints one JSON line per measurement, then one summary line per metric (medians, after/before).
#
#   scripts/bench-profile-ab.sh BEFORE AFTER [ROUNDS]     (default 3 rounds)
#
# Metrics: cpu_train_bench's steady-state samples/s (NVIDIA config, ml-20m shape, median of 3
# steps after the first), and one whole ml-1m epoch of ncf-train (NVIDIA config, 2 threads,
# samples/s as ncf-train reports it, sampling included) on ../shared/datasets/ncf-ml-1m.
set -euo pipefail
[[ $# -ge 2 ]] || { sed -n 2,12p "$0" >&2; exit 2; }
before=$1 after=$2 rounds=${3:-3}
repo=$(cd "$(dirname "$0")/.." && pwd)
ml1m=${NCF_SHARED:-$repo/../shared}/datasets/ncf-ml-1m
for d in "$before" "$after"; do
  for b in ncf-prep ncf-train examples/cpu_train_bench; do
    [[ -x $d/$b ]] || { echo "bench-profile-ab: $d/$b missing" >&2; exit 1; }
  done
done
[[ -x $after/ncf-bench-report ]] || { echo "bench-profile-ab: $after/ncf-bench-report missing" >&2; exit 1; }
[[ -d $ml1m ]] || { echo "bench-profile-ab: $ml1m not found (set NCF_SHARED)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Each build trains on the dataset its own ncf-prep writes (a dataset format may change with the
# build: since issue 33 it holds column files that older readers refuse as unlisted).
"$before/ncf-prep" "$ml1m" -o "$work/ml1m-before" -q
"$after/ncf-prep" "$ml1m" -o "$work/ml1m-after" -q
# The number FIELD holds in the last JSON line of stdin that has it (one line per record).
field() { sed -n "s/.*\"$1\": *\([-+0-9.eE]*\).*/\1/p" | tail -n 1; }
: > "$work/all.jsonl"
for r in $(seq "$rounds"); do
  for side in before after; do
    d=${!side}
    "$d/examples/cpu_train_bench" --steps 4 --json "$work/cpu.json" > /dev/null 2>&1
    v=$(field steady_samples_per_s < "$work/cpu.json")
    echo "{\"round\":$r,\"build\":\"$side\",\"metric\":\"steady_samples_per_s\",\"value\":$v}" | tee -a "$work/all.jsonl"
    "$d/ncf-train" "$work/ml1m-$side" -o "$work/m.safetensors" --force --device cpu --preset nvidia-ml20m \
      --epochs 1 --no-checkpoint -q > "$work/epoch.jsonl"
    v=$(grep '"epoch"' "$work/epoch.jsonl" | field samples_per_s)
    echo "{\"round\":$r,\"build\":\"$side\",\"metric\":\"ml1m_epoch_samples_per_s\",\"value\":$v}" | tee -a "$work/all.jsonl"
  done
done
"$after/ncf-bench-report" ab "$work/all.jsonl"
