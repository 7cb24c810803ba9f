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
#      default cpu), BIN (directory of ncf-prep, ncf-train and ncf-bench-report, default: a
#      release build), DATA (the authors' split),
#      WORK (models and the prepared dataset, default target/paper-tune).
# Writes OUTDIR/<model>-f<F>-s<SEED>-b<BATCH>-lr<LR>.jsonl (ncf-train's per-epoch lines and
# summary) and OUTDIR/summary.md (best validation HR@10 / NDCG@10 per config, from every .jsonl
# in OUTDIR: `ncf-bench-report tune`). A config whose .jsonl already holds a finished run of EPOCHS epochs is skipped, so
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
  cargo build --release -q -p ncf-cli --bin ncf-prep --bin ncf-train -p ncf-report --bin ncf-bench-report
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

finished() {  # jsonl: its last line is ncf-train's summary of EPOCHS epochs
  [[ -s $1 && $(tail -n 1 "$1") =~ \"epochs_run\":\ *([0-9]+) && ${BASH_REMATCH[1]} == "$epochs" ]]
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

"$bin/ncf-bench-report" tune "$out" >"$out/summary.md.tmp"
mv "$out/summary.md.tmp" "$out/summary.md"
cat "$out/summary.md"
