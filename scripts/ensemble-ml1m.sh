#!/usr/bin/env bash
# MF (per-example SGD) + iALS (+ EASE item-item, + EASE user-user) as one ensemble on the NCF
# paper's ml-1m split, every choice made without the test file:
#   1. scripts/mf-ml1m.sh for MODEL=mf and MODEL=ials (each: epochs from its validation run on
#      split 0, SEEDS test runs keeping the last epoch's model);
#   2. scripts/ensemble-ml1m.py: MF and iALS validation models on the other VALIDATION_SEEDS
#      splits at those epochs; the iALS weight w of `ncf-eval MF IALS --weights 1,w` (a logit
#      sum: iALS scores are near 0..1, MF logits spread over several units) from WEIGHTS; then
#      EASE (`--model ease`, λ from EASE_L2, weight from EASE_WEIGHTS) and EASE user-user
#      (`--model ease-users`, EASE_USERS_L2 / EASE_USERS_WEIGHTS), each added only if it raises
#      the score of the ensemble so far. The score: validation HR@10 averaged over the splits,
#      then NDCG@10;
#   3. every seed's MF and iALS test models (and the EASE test models: no seed, one fit each)
#      scored together with the chosen weights.
#
#   scripts/ensemble-ml1m.sh [OUTDIR]     (default: benchmarks/results/<date>-ensemble-ml1m)
#
# Env: WEIGHTS (default "5 10 15 20 25 30 35 40 45 50 60 70 100 150"), VALIDATION_SEEDS
#      (default "0 1 2"), EASE_L2 / EASE_USERS_L2 (default "250 500 1000 2000"; empty: no such
#      member), EASE_WEIGHTS and EASE_USERS_WEIGHTS (default "5 10 20 35 50 70 100"),
#      IALS_SOLVER (default exact: the figure in docs/RESULTS.md), SKIP_TRAINING=1 (reuse
#      OUTDIR/mf, OUTDIR/ials and the models in
#      target/mf-ml1m, and EASE's validation models there; validation models of MF and iALS
#      are reused only when their epochs and flags match), and
#      mf-ml1m.sh's (SEEDS, FACTORS, THREADS, BIN, DATA; MF_EPOCHS / IALS_EPOCHS set its
#      TEST_EPOCHS per model).
# Writes OUTDIR/mf/ and OUTDIR/ials/ (mf-ml1m.sh's files, plus validation-vN.jsonl per extra
# split), OUTDIR/ease/ and OUTDIR/ease-users/ (training logs), OUTDIR/ensemble-validation.jsonl,
# OUTDIR/ensemble-ease-validation.jsonl, OUTDIR/ensemble-ease-users-validation.jsonl (one line
# per candidate, with the per-split numbers), OUTDIR/runs.jsonl (one line per seed: each
# member, MF + iALS and the chosen ensemble) and OUTDIR/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/$(date -u +%F)-ensemble-ml1m}
weights=${WEIGHTS:-5 10 15 20 25 30 35 40 45 50 60 70 100 150}
seeds=${SEEDS:-1 2 3 4 5}
if [[ -n ${BIN:-} ]]; then
  bin=$BIN
else
  cargo build --release -q -p ncf-cli --bin ncf-prep --bin ncf-train --bin ncf-eval
  bin=target/release
fi
work=target/mf-ml1m
ds=$work/data
mkdir -p "$out"
if [[ ${SKIP_TRAINING:-0} != 1 ]]; then
  MODEL=mf TEST_EPOCHS=${MF_EPOCHS:-} BIN=$bin scripts/mf-ml1m.sh "$out/mf"
  MODEL=ials TEST_EPOCHS=${IALS_EPOCHS:-} BIN=$bin scripts/mf-ml1m.sh "$out/ials"
  # The models were retrained: EASE's validation models may be from other data (the others
  # are checked against the epochs and flags asked for by scripts/ensemble-ml1m.py).
  rm -f "$work"/ease-*-validation*.safetensors
fi

python3 scripts/ensemble-ml1m.py --bin "$bin" --work "$work" --out "$out" --seeds "$seeds" \
  --validation-seeds "${VALIDATION_SEEDS:-0 1 2}" --weights "$weights" \
  --ease-l2 "${EASE_L2-250 500 1000 2000}" --ease-weights "${EASE_WEIGHTS:-5 10 20 35 50 70 100}" \
  --ease-users-l2 "${EASE_USERS_L2-250 500 1000 2000}" \
  --ease-users-weights "${EASE_USERS_WEIGHTS:-5 10 20 35 50 70 100}" --threads "${THREADS:-2}" \
  --factors "${FACTORS:-192}" --mf-flags "--lr ${LR:-0.002} --l2 ${L2:-0.005} --negatives ${NEGATIVES:-8}" \
  --ials-flags "--l2 ${L2:-0.007} --unobserved-weight ${ALPHA0:-0.3} --ials-solver ${IALS_SOLVER:-exact}"
