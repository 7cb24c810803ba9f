#!/usr/bin/env bash
# The standard benchmark suite (`make bench`): measures what this machine has, each figure
# repeated, and writes benchmarks/results/<date>-<machine>.json (every run, median, min, max,
# the machine: CPU, cores, GPU, driver, rustc, git commit), then regenerates the generated blocks
# of BENCHMARKS.md and README.md from all results files (ncf-bench-report render).
#
#   1. ncf-prep: the 20,000,263-row ml-20m-shaped CSV → Parquet dataset, and → Arrow IPC stream
#   2. CPU training, NVIDIA's config (batch 2^20, 4 negatives, NeuMF 64 / 256-256-128-64):
#      steady-state steps on the ml-20m shape (cpu_train_bench), and whole epochs with
#      ncf-train on the NCF authors' ml-1m split (a whole ml-20m epoch would take ~15 min here)
#      and the same epoch as 1 rank × 1 thread and 2 ranks × 1 thread (strong scaling, issue 5)
#   3. evaluation throughput: ncf-eval, users × candidates / s, sampled (1+100) and full ranking
#   4. ncf-topk: latency of one user (whole process) and throughput of every user
#   5. GPU training throughput per precision (ncf-cuda-check --bench), when nvidia-smi sees a GPU
#   6. the PyTorch peer (shared/peers/torch_neumf.py), same config, when NCF_PEER_PYTHON names a
#      python with torch: recorded beside ours
#   7. iALS (`--model ials`) at 64 and 192 factors on the NCF authors' ml-1m split, cg and exact
#      solvers, beside the `implicit` library's ALS when NCF_PEER_PYTHON has implicit
#      (scripts/bench-ials.sh: seconds per iteration, HR@10 / NDCG@10)
#
# Environment: BENCH_REPEATS (default 3), BENCH_MACHINE (name in the file name; default
# <cores>core-<gpu or cpu>), NCF_SHARED (default ../shared), NCF_PEER_PYTHON, BENCH_WORK
# (default target/bench: ~1.5 GB of scratch), BENCH_NO_BUILD=1 (use the binaries in BENCH_BIN,
# default target/release, e.g. on a machine without Rust). Runs in < 20 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=${BENCH_REPEATS:-3}
shared=${NCF_SHARED:-../shared}
work=${BENCH_WORK:-target/bench}
bin=${BENCH_BIN:-target/release}
peer_py=${NCF_PEER_PYTHON:-}
mkdir -p "$work"
raw="$work/raw.jsonl"
: > "$raw"
log() { printf '[bench %s] %s\n' "$(date -u +%T)" "$*" >&2; }

if [[ -z ${BENCH_NO_BUILD:-} ]]; then
  log "building (release)"
  # With Open MPI here, ncf-train gets MPI (the 2-rank row runs under mpirun, issue 34).
  mpi_feature=()
  command -v mpicc >/dev/null && mpi_feature=(--features ncf-cli/mpi)
  cargo build --release -q "${mpi_feature[@]}" -p ncf-cli -p ncf-report -p ncf-devcheck
  cargo build --release -q "${mpi_feature[@]}" -p ncf-core --example cpu_train_bench --example ials_peer_io
fi
for b in ncf-prep ncf-train ncf-eval ncf-topk ncf-bench-report; do
  [[ -x $bin/$b ]] || { echo "bench: $bin/$b missing (build first)" >&2; exit 1; }
done
[[ -x $bin/examples/cpu_train_bench ]] || { echo "bench: $bin/examples/cpu_train_bench missing" >&2; exit 1; }
# The suite's own time (the build above is not counted).
start_date=$(date -u +%FT%TZ)
t_start=$EPOCHREALTIME

# record ID GROUP UNIT BETTER VALUE TITLE [PEER_OF] [NOTE]: one raw measurement (one repetition).
record() {
  local extra=""
  [[ -n ${7:-} ]] && extra+=",\"peer_of\":\"$7\""
  [[ -n ${8:-} ]] && extra+=",\"note\":\"$8\""
  printf '{"id":"%s","group":"%s","unit":"%s","better":"%s","value":%s,"title":"%s"%s}\n' \
    "$1" "$2" "$3" "$4" "$5" "$6" "$extra" >> "$raw"
  log "$1 = $5 $3"
}
note() { printf '{"note":"%s"}\n' "$1" >> "$raw"; }
# jget KEY < json: the first number after "KEY": (compact or spaced JSON).
jget() { grep -oE "\"$1\": ?-?[0-9.]+([eE][-+]?[0-9]+)?" | head -n 1 | sed -E 's/.*: ?//'; }
# timed CMD...: run, leave wall seconds in $wall and peak RSS (MB, when /usr/bin/time exists) in $rss.
timed() {
  local t0=$EPOCHREALTIME
  if [[ -x /usr/bin/time ]]; then
    /usr/bin/time -f '%M' -o "$work/rss" "$@"
    rss=$(( $(tail -n 1 "$work/rss") / 1024 ))
  else
    "$@"; rss=""
  fi
  wall=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.4f", b - a }')
}
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6g", a / b }'; }

# 1. ncf-prep on the 20M-row ml-20m-shaped CSV (generated once, kept in $work).
csv="$work/ratings-20m.csv"
if [[ ! -s $csv ]]; then
  log "generating $csv (20,000,263 rows, once)"
  "$bin/ncf-prep" --synthetic --synthetic-csv "$csv" -q
fi
for r in $(seq "$repeats"); do
  timed "$bin/ncf-prep" "$csv" -o "$work/ds20m" --force -q
  record prep.csv.parquet prep s lower "$wall" "ncf-prep 20M-row CSV → Parquet dataset (wall)"
  [[ -n $rss ]] && record prep.csv.parquet.rss prep MB lower "$rss" "ncf-prep 20M-row CSV → Parquet dataset (peak RSS)"
  timed "$bin/ncf-prep" "$csv" -o - -q > /dev/null
  record prep.csv.ipc prep s lower "$wall" "ncf-prep 20M-row CSV → Arrow IPC stream (wall)"
done
rm -rf "$work/ds20m"

# 2a. CPU training, steady-state steps on the ml-20m shape.
steps=${BENCH_CPU_STEPS:-4}
for r in $(seq "$repeats"); do
  "$bin/examples/cpu_train_bench" --steps "$steps" --json "$work/cpu.json" >&2
  record cpu.train.steady cpu-train samples/s higher "$(jget steady_samples_per_s < "$work/cpu.json")" \
    "CPU training, NVIDIA config, ml-20m shape, steady-state step (median of $((steps - 1)))"
done
if [[ -n $peer_py ]] && ! "$peer_py" -c 'import torch' >/dev/null 2>&1; then
  note "PyTorch peer skipped: $peer_py has no torch (NCF_PEER_PYTHON)"
  log "PyTorch peer skipped: $peer_py has no torch"
elif [[ -n $peer_py ]]; then
  peer_steps=${BENCH_PEER_STEPS:-2}
  for r in $(seq "${BENCH_PEER_REPEATS:-$repeats}"); do
    "$peer_py" "$shared/peers/torch_neumf.py" --synthetic 138493,26744,20000263 --device cpu \
      --epochs 1 --max-steps "$peer_steps" > "$work/peer.jsonl" 2>>"$work/peer.err"
    record peer.cpu.train.steady cpu-train samples/s higher "$(grep '"epoch"' "$work/peer.jsonl" | jget step_samples_per_s)" \
      "PyTorch peer, CPU, same config (mean of $peer_steps steps)" cpu.train.steady
  done
  note "PyTorch peer: $("$peer_py" -c 'import torch; print("torch", torch.__version__)' 2>/dev/null), $(nproc) threads, shared/peers/torch_neumf.py"
fi

# 2b. Whole epochs: ncf-train on the NCF authors' ml-1m split, NVIDIA config, 1 epoch each.
ml1m="$shared/datasets/ncf-ml-1m"
if [[ -d $ml1m ]]; then
  "$bin/ncf-prep" "$ml1m" -o "$work/ml1m" --force -q
  for r in $(seq "$repeats"); do
    "$bin/ncf-train" "$work/ml1m" -o "$work/ml1m.safetensors" --force --device cpu \
      --preset nvidia-ml20m --epochs 1 -q > "$work/epoch.jsonl"
    record cpu.train.epoch cpu-train samples/s higher "$(grep '"epoch"' "$work/epoch.jsonl" | jget samples_per_s)" \
      "CPU training, NVIDIA config, whole epoch of ml-1m (4.97 M samples, sampling included)"
  done
  # 2c. Ranks, strong scaling (docs/DISTRIBUTED.md): the same epoch as 1 rank × 1 thread and as
  # 2 ranks × 1 thread (mpirun -np 2: the gradients go over MPI); 1 × 2 is cpu.train.epoch.
  for r in $(seq "$repeats"); do
    "$bin/ncf-train" "$work/ml1m" -o "$work/ml1m-1x1.safetensors" --force --device cpu \
      --preset nvidia-ml20m --epochs 1 --threads 1 --no-checkpoint -q > "$work/epoch.jsonl"
    record cpu.scale.r1t1 cpu-scaling samples/s higher "$(grep '"epoch"' "$work/epoch.jsonl" | jget samples_per_s)" \
      "CPU training, whole epoch of ml-1m, 1 rank × 1 thread"
    if command -v mpirun >/dev/null; then
      mpirun --allow-run-as-root -np 2 "$bin/ncf-train" "$work/ml1m" \
        -o "$work/ml1m-2x1.safetensors" --force --device cpu --preset nvidia-ml20m --epochs 1 \
        --threads 1 --no-checkpoint -q > "$work/epoch-rank0.jsonl"
      record cpu.scale.r2t1 cpu-scaling samples/s higher "$(grep '"epoch"' "$work/epoch-rank0.jsonl" | jget samples_per_s)" \
        "CPU training, whole epoch of ml-1m, 2 ranks × 1 thread"
    fi
  done
  command -v mpirun >/dev/null || note "no mpirun: the 2 ranks × 1 thread row was not measured"
  # 3. Evaluation throughput (users × candidates / s, whole process: load + score + rank).
  for r in $(seq "$repeats"); do
    timed "$bin/ncf-eval" "$work/ml1m" "$work/ml1m.safetensors" --k 10 > "$work/eval.json"
    n=$(awk -v u="$(jget users < "$work/eval.json")" -v c="$(jget candidates < "$work/eval.json")" 'BEGIN { print u * c }')
    record eval.sampled eval scores/s higher "$(div "$n" "$wall")" "ncf-eval ml-1m, sampled (held-out item + 99 negatives), users × candidates / s"
    timed "$bin/ncf-eval" "$work/ml1m" "$work/ml1m.safetensors" --k 10 --full > "$work/eval.json"
    n=$(awk -v u="$(jget users < "$work/eval.json")" -v c="$(jget candidates < "$work/eval.json")" 'BEGIN { print u * c }')
    record eval.full eval scores/s higher "$(div "$n" "$wall")" "ncf-eval ml-1m, full ranking (every unseen item), users × candidates / s"
  done
  # 4. ncf-topk: every user, then one user (latency of the whole process; the first user listed).
  for r in $(seq "$repeats"); do
    timed "$bin/ncf-topk" "$work/ml1m" "$work/ml1m.safetensors" --all -k 10 > "$work/topk.tsv"
    users=$(cut -f1 "$work/topk.tsv" | uniq | wc -l)
    record topk.all_users topk users/s higher "$(div "$users" "$wall")" "ncf-topk ml-1m, top 10 of every user (whole process)"
  done
  user=$(head -n 1 "$work/topk.tsv" | cut -f1)
  for r in $(seq $((repeats + 2))); do
    timed "$bin/ncf-topk" "$work/ml1m" "$work/ml1m.safetensors" -k 10 "$user" > /dev/null
    record topk.one_user topk s lower "$wall" "ncf-topk ml-1m, top 10 of one user (whole process)"
  done
else
  note "whole-epoch, ncf-eval and ncf-topk figures skipped: $ml1m not found (set NCF_SHARED)"
fi

# 7 (before the GPU, whose absence ends nothing). iALS and the implicit peer.
BENCH_WORK=$work BENCH_BIN=$bin NCF_SHARED=$shared BENCH_REPEATS=$repeats NCF_PEER_PYTHON=$peer_py \
  scripts/bench-ials.sh "$raw"

# 5. GPU training throughput per precision, when a GPU is visible.
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 && [[ -x $bin/ncf-cuda-check ]]; then
  for r in $(seq "$repeats"); do
    "$bin/ncf-cuda-check" --bench --json "$work/gpu.json" > /dev/null
    awk '/"precision"/ { gsub(/[",]/, "", $2); p = $2 } /"samples_per_s"/ { gsub(/,/, "", $2); print p, $2 }' "$work/gpu.json" |
      while read -r p v; do
        record "gpu.train.$p" gpu-train samples/s higher "$v" "$p"
      done
  done
  if [[ -n $peer_py ]] && "$peer_py" -c 'import torch' >/dev/null 2>&1; then
    for p in fp32 tf32 fp16 bf16; do
      for r in $(seq "$repeats"); do
        "$peer_py" "$shared/peers/torch_neumf.py" --synthetic 138493,26744,20000263 --device cuda \
          --epochs 2 --max-steps 12 --precision "$p" > "$work/peer.jsonl" 2>>"$work/peer.err"
        record "peer.gpu.train.$p" gpu-train samples/s higher \
          "$(grep '"epoch": 1' "$work/peer.jsonl" | jget step_samples_per_s)" "PyTorch peer $p" "gpu.train.$p"
      done
    done
  fi
else
  note "GPU figures skipped: no GPU visible (nvidia-smi) or no ncf-cuda-check binary"
fi

# Results file and documents.
machine=${BENCH_MACHINE:-$(nproc)core-$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 | awk '{ print tolower($NF) }' || true)}
[[ $machine == *- ]] && machine+=cpu
out="benchmarks/results/$(date -u +%F)-$machine.json"
[[ -e $out ]] && out="benchmarks/results/$(date -u +%F-%H%M)-$machine.json"
elapsed=$(awk -v a="$t_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
note "make bench took $elapsed s in all ($repeats repeats)"
"$bin/ncf-bench-report" collect "$raw" --name "$machine" --date "$start_date" -o "$out"
"$bin/ncf-bench-report" render
log "done in $elapsed s: $out"
