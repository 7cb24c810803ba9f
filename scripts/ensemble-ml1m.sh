#!/usr/bin/env bash
# MF (per-example SGD) + iALS as one ensemble on the NCF paper's ml-1m split, chosen without the
# test file:
#   1. scripts/mf-ml1m.sh for MODEL=mf and MODEL=ials (each: epochs from its validation run,
#      SEEDS test runs keeping the last epoch's model);
#   2. the weight w of `ncf-eval MF IALS --weights 1,w` (a logit sum: iALS scores are near 0..1,
#      MF logits spread over several units) from WEIGHTS, by the best validation HR@10 (then
#      NDCG@10) of the two validation models;
#   3. every seed's MF and iALS test models scored together with that weight.
#
#   scripts/ensemble-ml1m.sh [OUTDIR]     (default: benchmarks/results/<date>-ensemble-ml1m)
#
# Env: WEIGHTS (default "5 10 15 20 25 30 35 40 45 50 60 70 100 150"), SKIP_TRAINING=1 (reuse
#      OUTDIR/mf, OUTDIR/ials and the models in target/mf-ml1m), and mf-ml1m.sh's (SEEDS,
#      FACTORS, THREADS, BIN, DATA; MF_EPOCHS / IALS_EPOCHS set its TEST_EPOCHS per model).
# Writes OUTDIR/mf/ and OUTDIR/ials/ (mf-ml1m.sh's files), OUTDIR/ensemble-validation.jsonl (one
# line per weight), OUTDIR/runs.jsonl (one line per seed: MF, iALS and the ensemble) and
# OUTDIR/summary.md.
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
fi

: >"$out/ensemble-validation.jsonl"
for w in $weights; do
  "$bin/ncf-eval" "$ds" "$work/mf-validation.safetensors" "$work/ials-validation.safetensors" \
    --weights "1,$w" --validation | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(json.dumps({"weight": float(sys.argv[1]), "hr": r["hr"], "ndcg": r["ndcg"]}))' "$w" \
    >>"$out/ensemble-validation.jsonl"
done
w=$(python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(max(rows, key=lambda r: (r["hr"], r["ndcg"]))["weight"])' "$out/ensemble-validation.jsonl")
echo "iALS weight: $w (best validation HR@10, then NDCG@10)" >&2

runs=$out/runs.jsonl
: >"$runs"
for seed in $seeds; do
  "$bin/ncf-eval" "$ds" "$work/mf-test-s$seed.safetensors" "$work/ials-test-s$seed.safetensors" \
    --weights "1,$w" | python3 -c '
import json, sys
seed, w, mf_log, ials_log = sys.argv[1:5]
r = json.load(sys.stdin)
last = lambda p: [json.loads(l) for l in open(p) if "\"epoch\"" in l][-1]
m, i = last(mf_log), last(ials_log)
print(json.dumps({"seed": int(seed), "ials_weight": float(w), "hr": r["hr"], "ndcg": r["ndcg"],
                  "mf_hr": m["hr"], "mf_ndcg": m["ndcg"], "ials_hr": i["hr"],
                  "ials_ndcg": i["ndcg"]}))' "$seed" "$w" "$out/mf/test-s$seed.jsonl" \
    "$out/ials/test-s$seed.jsonl" >>"$runs"
  tail -1 "$runs" >&2
done

python3 - "$runs" >"$out/summary.md" <<'EOF'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def ms(k):
    v = [r[k] for r in rows]
    return f"{st.mean(v):.4f} ± {st.stdev(v):.4f}" if len(v) > 1 else f"{v[0]:.4f}"
print(f"{len(rows)} seeds, last epochs on the test file, iALS weight {rows[0]['ials_weight']} "
      f"(chosen on validation):\n")
print("| model | HR@10 | NDCG@10 |\n|---|---|---|")
print(f"| MF | {ms('mf_hr')} | {ms('mf_ndcg')} |")
print(f"| iALS | {ms('ials_hr')} | {ms('ials_ndcg')} |")
print(f"| MF + iALS | {ms('hr')} | {ms('ndcg')} |")
EOF
cat "$out/summary.md"
