#!/usr/bin/env bash
# Matrix factorisation on the NCF paper's ml-1m split, chosen without the test file: Rendle et
# al.'s MF (MODEL=mf, `ncf-train --model mf`: biased dot product, per-example SGD, RecSys 2020) or
# their iALS (MODEL=ials, `--model ials`: alternating least squares, RecSys 2022):
#   1. a VALIDATION run (one training interaction per user held out, `--validation`) for EPOCHS
#      epochs; the epoch count is the one with the best validation HR@10;
#   2. SEEDS runs on the test file for exactly that many epochs; the numbers reported are those of
#      the LAST epoch (not the best test epoch, which would be choosing on the test file), and
#      the model kept is the last epoch's (`--save-last`), ready for ensembles
#      (scripts/ensemble-ml1m.sh).
#
#   scripts/mf-ml1m.sh [OUTDIR]          (default: benchmarks/results/<date>-mf-ml1m)
#
# Env: MODEL (mf or ials, default mf), FACTORS (default 192), EPOCHS (validation epochs, default
#      mf 256, ials 16), LR (mf, 0.002), L2 (mf 0.005, ials 0.007), NEGATIVES (mf, 8), ALPHA0
#      (ials --unobserved-weight, 0.3), IALS_SOLVER (--ials-solver, default exact: the solver of
#      the recorded figures), SEEDS (default "1 2 3 4 5"), THREADS (default 2),
#      TEST_EPOCHS (skip the validation run and use this), BIN (directory of ncf-prep, ncf-train
#      and ncf-bench-report; default a release build), DATA (the authors' split, default
#      ../shared/datasets/ncf-ml-1m).
# Writes OUTDIR/validation.jsonl, OUTDIR/test-s<seed>.jsonl (ncf-train's lines),
# OUTDIR/runs.jsonl (one line per test seed: `ncf-bench-report seed-run`) and OUTDIR/summary.md
# (mean ± std: `ncf-bench-report seeds`); the models go
# to target/mf-ml1m/MODEL-validation.safetensors and MODEL-test-s<seed>.safetensors.
# Hyper-parameters default to Rendle et al.'s ml-1m commands (tuned on their hold-out sets).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${MODEL:-mf}
out=${1:-benchmarks/results/$(date -u +%F)-$model-ml1m}
factors=${FACTORS:-192}
seeds=${SEEDS:-1 2 3 4 5}
threads=${THREADS:-2}
data=${DATA:-../shared/datasets/ncf-ml-1m}
if [[ -n ${BIN:-} ]]; then
  bin=$BIN
else
  cargo build --release -q -p ncf-cli --bin ncf-prep --bin ncf-train -p ncf-report --bin ncf-bench-report
  bin=target/release
fi
work=target/mf-ml1m
mkdir -p "$out" "$work"
ds=$work/data
[[ -d $ds ]] || "$bin/ncf-prep" "$data" -o "$ds" >&2
case $model in
  mf)
    epochs=${EPOCHS:-256}
    hp=(--lr "${LR:-0.002}" --l2 "${L2:-0.005}" --negatives "${NEGATIVES:-8}"
      --negative-mode approximate --batch-size 1048576) ;;
  ials)
    epochs=${EPOCHS:-16}
    hp=(--l2 "${L2:-0.007}" --unobserved-weight "${ALPHA0:-0.3}" --ials-solver "${IALS_SOLVER:-exact}") ;;
  *) echo "MODEL must be mf or ials, not $model" >&2; exit 2 ;;
esac
flags=(--model "$model" --factors "$factors" "${hp[@]}" --threads "$threads" --no-checkpoint --quiet)

if [[ -n ${TEST_EPOCHS:-} ]]; then
  best=$TEST_EPOCHS
  echo "test epochs: $best (given)" >&2
else
  "$bin/ncf-train" "$ds" -o "$work/$model-validation.safetensors" --force --validation --seed 1 \
    --epochs "$epochs" "${flags[@]}" >"$out/validation.jsonl"
  # The epochs up to the best validation HR@10 (its first epoch, as ncf-train's summary names it).
  [[ $(tail -n 1 "$out/validation.jsonl") =~ \"best_epoch\":([0-9]+) ]] \
    || { echo "$0: no best epoch in $out/validation.jsonl" >&2; exit 1; }
  best=$((BASH_REMATCH[1] + 1))
  echo "test epochs: $best (best validation HR@10)" >&2
fi

runs=$out/runs.jsonl
: >"$runs"
for seed in $seeds; do
  t0=$(date +%s%3N)
  "$bin/ncf-train" "$ds" -o "$work/$model-test-s$seed.safetensors" --force --seed "$seed" \
    --epochs "$best" --save-last "${flags[@]}" >"$out/test-s$seed.jsonl"
  t1=$(date +%s%3N)
  "$bin/ncf-bench-report" seed-run "$out/test-s$seed.jsonl" --model "$model" --factors "$factors" \
    --flags "${hp[*]}" --seed "$seed" --wall-ms $((t1 - t0)) >>"$runs"
  tail -1 "$runs" >&2
done

"$bin/ncf-bench-report" seeds "$runs" --epochs "$best" >"$out/summary.md"
cat "$out/summary.md"
