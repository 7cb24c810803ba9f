#!/usr/bin/env bash
# Same bits before and after a change that must not change results (a refactor, a build-profile
# change): runs a fixed set of seeded pipelines with the binaries in BIN and prints the SHA-256 of
# every artefact, one `sha256  name` line each. Run it with the old and the new binaries and diff.
#
#   scripts/same-bits.sh BIN [WORK]     BIN: a directory with the ncf-* binaries (target/release)
#
# The runs: the `make demo` pipeline on the bundled ml-latest-small (same flags as the Makefile),
# and fixed-seed ml-100k runs of NeuMF, GMF, MLP, MF, iALS and EASE (2 threads each, the thread
# count is part of the CPU trainer's determinism). Model files hold no times, so equal runs give
# equal bytes. Takes about 2 minutes on 2 cores.
set -euo pipefail
BIN=$(cd "${1:?usage: same-bits.sh BIN [WORK]}" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${2:-$(mktemp -d)}
mkdir -p "$WORK"
cd "$WORK"
rm -rf demo k100 && mkdir -p demo k100
T=2
# The demo, as `make demo` runs it.
"$BIN/ncf-prep" "$ROOT/data/ml-latest-small/ratings.csv" --movies "$ROOT/data/ml-latest-small/movies.csv" \
  -o demo/dataset >/dev/null 2>&1
"$BIN/ncf-negsample" demo/dataset --test-negatives 100
"$BIN/ncf-train" demo/dataset -o demo/model.safetensors --preset ml1m --epochs 8 --batch-size 16384 \
  --threads $T -q > demo/train.jsonl
"$BIN/ncf-eval" demo/dataset demo/model.safetensors --k 10 > demo/eval.json
"$BIN/ncf-topk" demo/dataset demo/model.safetensors -k 10 1 > demo/topk.tsv
# ml-100k, fixed seeds.
U100K=${U100K:-$ROOT/../shared/datasets/ml-100k/u.data}
"$BIN/ncf-prep" "$U100K" -o k100/dataset >/dev/null 2>&1
"$BIN/ncf-negsample" k100/dataset --test-negatives 100 --seed 3
train() { "$BIN/ncf-train" k100/dataset --threads $T -q --seed 7 "$@"; }
train -o k100/neumf.safetensors --preset ml1m --epochs 3 --batch-size 8192 > k100/neumf.jsonl
train -o k100/gmf.safetensors --model gmf --preset ml1m --epochs 2 --batch-size 8192 > k100/gmf.jsonl
train -o k100/mlp.safetensors --model mlp --preset ml1m --epochs 2 --batch-size 8192 > k100/mlp.jsonl
train -o k100/mf.safetensors --model mf --factors 16 --epochs 3 > k100/mf.jsonl
# iALS: the exact solver (the only one before issue 36, whose hashes these are), then cg.
train -o k100/ials.safetensors --model ials --factors 16 --epochs 2 --ials-solver exact > k100/ials.jsonl
train -o k100/ials-cg.safetensors --model ials --factors 16 --epochs 2 --ials-solver cg > k100/ials-cg.jsonl
train -o k100/ease.safetensors --model ease > k100/ease.jsonl
"$BIN/ncf-eval" k100/dataset k100/neumf.safetensors --full > k100/neumf-full.json
"$BIN/ncf-topk" k100/dataset k100/mf.safetensors --all -k 5 > k100/mf-topk.tsv
# Times in the JSON lines differ run to run: hash the lines without them.
strip_times() { sed -E 's/"(train_s|eval_s|samples_per_s|train_time_s|eval_time_s|avg_samples_per_s|best_samples_per_s|time_to_target_s)":[^,}]*,?//g' "$1"; }
for f in demo/dataset/* demo/model.safetensors demo/eval.json demo/topk.tsv \
         k100/dataset/* k100/*.safetensors k100/*.json k100/*.tsv; do
  sha256sum "$f"
done
for f in demo/train.jsonl k100/*.jsonl; do
  printf '%s  %s (times removed)\n' "$(strip_times "$f" | sha256sum | cut -d' ' -f1)" "$f"
done
