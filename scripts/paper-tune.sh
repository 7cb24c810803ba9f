#!/usr/bin/env bash
# Tune batch size and learning rate of one cell of the NCF paper's ml-1m grid on a VALIDATION
# split carved from the training data, as the paper did (its Section 4.1: "we randomly held-out
# one interaction for each user as the validation data and tuned hyper-parameters on it";
# batch sizes {128, 256, 512, 1024}, learning rates {0.0001, 0.0005, 0.001, 0.005}). The test
# file is never read for these numbers (`ncf-train --validation`: one random training
# interaction per user held out — the authors' files carry no timestamps — among 99 negatives).
# Everything else is the grid's recipe (scripts/paper-recipe.sh: Adam betas 0.9/0.999, 4 exact
# negatives, no dropout, no L2, MLP tower [8f, 4f, 2f, f]).
#
#   scripts/paper-tune.sh [OUTDIR]        (default: benchmarks/results/<date>-paper-tune)
#
# Env: MODEL (gmf|mlp|neumf, default neumf), FACTORS (default 64), SEED (default 1), EPOCHS
#      (default 8), CONFIGS (space-separated BATCH:LR pairs, default the paper's 16; LR is
#      written as %g prints it, so 1e-4 and 0.0001 are one config), THREADS, DEVICE (cpu|cuda,
#      default cpu), BIN (directory of ncf-prep/ncf-train, default: a release build), DATA (the
#      authors' split),
#      WORK (models and the prepared dataset, default target/paper-tune).
# Writes OUTDIR/<model>-f<F>-s<SEED>-b<BATCH>-lr<LR>.jsonl (ncf-train's per-epoch lines and
# summary) and OUTDIR/summary.md (best validation HR@10 / NDCG@10 per config, from every .jsonl
# in OUTDIR). A config whose .jsonl already holds a finished run of EPOCHS epochs is skipped, so
# two invocations with disjoint CONFIGS can share OUTDIR (one lane each; a config in both would
# be trained by both at once) and a stopped run is redone by running again.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/$(date -u +%F)-paper-tune}
model=${MODEL:-neumf}
f=${FACTORS:-64}
seed=${SEED:-1}
epochs=${EPOCHS:-8}
configs=${CONFIGS:-128:0.0001 128:0.0005 128:0.001 128:0.005 256:0.0001 256:0.0005 256:0.001 256:0.005 512:0.0001 512:0.0005 512:0.001 512:0.005 1024:0.0001 1024:0.0005 1024:0.001 1024:0.005}
data=${DATA:-../shared/datasets/ncf-ml-1m}
threads=${THREADS:+--threads $THREADS}
device=${DEVICE:-cpu}
if [[ -n ${BIN:-} ]]; then
  bin=$BIN
else
  cargo build --release -q -p ncf-cli --bin ncf-prep --bin ncf-train
  bin=target/release
fi
work=${WORK:-target/paper-tune}
mkdir -p "$out" "$work"
ds=$work/data
[[ -d $ds ]] || "$bin/ncf-prep" "$data" -o "$ds" >&2
# shellcheck source=scripts/paper-recipe.sh
source scripts/paper-recipe.sh
paper_model "$model" "$f" \
  || { echo "$0: MODEL must be gmf, mlp or neumf, not $model" >&2; exit 2; }

finished() {  # jsonl: holds a summary line of EPOCHS epochs
  [[ -s $1 ]] && python3 -c 'import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sys.exit(rows[-1].get("epochs_run") != int(sys.argv[2]))' "$1" "$epochs"
}

for c in $configs; do
  [[ $c =~ ^([1-9][0-9]*):([0-9]*\.?[0-9]+([eE]-?[0-9]+)?)$ ]] \
    || { echo "$0: CONFIGS entry '$c' is not BATCH:LR (e.g. 256:0.001)" >&2; exit 2; }
  batch=${BASH_REMATCH[1]}
  lr=$(LC_NUMERIC=C printf %g "${BASH_REMATCH[2]}")
  name=$model-f$f-s$seed-b$batch-lr$lr
  if finished "$out/$name.jsonl"; then
    echo "done already: $out/$name.jsonl" >&2
    continue
  fi
  echo "training $name ($epochs epochs, validation)" >&2
  # shellcheck disable=SC2086
  "$bin/ncf-train" "$ds" -o "$work/$name.safetensors" --force --no-checkpoint --quiet \
    --validation --seed "$seed" --epochs "$epochs" --batch-size "$batch" --lr "$lr" \
    "${paper_recipe[@]}" --device "$device" "${paper_model_flags[@]}" $threads \
    >"$out/$name.jsonl.tmp"
  mv "$out/$name.jsonl.tmp" "$out/$name.jsonl"
done

python3 - "$out" >"$out/summary.md.tmp" <<'EOF'
import glob, json, os, re, sys
out = sys.argv[1]
rows = []
for path in sorted(glob.glob(os.path.join(out, "*.jsonl"))):
    m = re.fullmatch(r"(\w+)-f(\d+)-s(\d+)-b(\d+)-lr([0-9.e-]+)\.jsonl", os.path.basename(path))
    if not m:
        continue
    lines = [json.loads(l) for l in open(path) if l.strip()]
    s = lines[-1]
    if "best_hr" not in s:
        continue
    per_epoch = " ".join(f"{l['hr']:.4f}" for l in lines if "epoch" in l)
    rows.append((m[1], int(m[2]), int(m[3]), int(m[4]), float(m[5]), s, per_epoch))
rows.sort(key=lambda r: (r[0], r[1], r[2], r[3], r[4]))
print("# Validation tuning (scripts/paper-tune.sh): best validation HR@10 / NDCG@10 (1+99)\n")
print("| model | factors | seed | batch | lr | best val HR@10 | NDCG@10 | best epoch | epochs | train s | HR@10 per epoch |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for model, f, seed, b, lr, s, pe in rows:
    print(f"| {model} | {f} | {seed} | {b} | {lr:g} | {s['best_hr']:.4f} | {s['best_ndcg']:.4f} | "
          f"{s['best_epoch']} | {s['epochs_run']} | {s.get('train_time_s', float('nan')):.0f} | {pe} |")
EOF
mv "$out/summary.md.tmp" "$out/summary.md"
cat "$out/summary.md"
