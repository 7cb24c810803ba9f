#!/usr/bin/env bash
# MF (per-example SGD) + iALS as one ensemble on the NCF paper's ml-1m split, chosen without the
# test file:
#   1. scripts/mf-ml1m.sh for MODEL=mf and MODEL=ials (each: epochs from its validation run,
#      SEEDS test runs keeping the last epoch's model);
#   2. the weight w of `ncf-eval MF IALS --weights 1,w` (a logit sum: iALS scores are near 0..1,
#      MF logits spread over several units) from WEIGHTS, by the best validation HR@10 (then
#      NDCG@10) of the two validation models;
#   3. EASE (`--model ease`, item-item, closed form) as a third member: one validation model per
#      λ in EASE_L2, the weight v of `ncf-eval MF IALS EASE --weights 1,w,v` from EASE_WEIGHTS;
#      the pair (λ, v) with the best validation HR@10 (then NDCG@10) is taken if it beats the
#      two-member ensemble by that same rule, else EASE is left out;
#   4. every seed's MF and iALS test models (and the one EASE test model: it has no seed)
#      scored together with the chosen weights.
#
#   scripts/ensemble-ml1m.sh [OUTDIR]     (default: benchmarks/results/<date>-ensemble-ml1m)
#
# Env: WEIGHTS (default "5 10 15 20 25 30 35 40 45 50 60 70 100 150"), SKIP_TRAINING=1 (reuse
#      OUTDIR/mf, OUTDIR/ials and the models in target/mf-ml1m), and mf-ml1m.sh's (SEEDS,
#      FACTORS, THREADS, BIN, DATA; MF_EPOCHS / IALS_EPOCHS set its TEST_EPOCHS per model),
#      EASE_L2 (default "500 1000 2000"; empty: no EASE stage), EASE_WEIGHTS (default
#      "5 10 20 35 50 70 100").
# Writes OUTDIR/mf/ and OUTDIR/ials/ (mf-ml1m.sh's files), OUTDIR/ensemble-validation.jsonl (one
# line per weight), OUTDIR/ease/ (EASE's training logs), OUTDIR/ensemble-ease-validation.jsonl
# (one line per λ and weight), OUTDIR/runs.jsonl (one line per seed: MF, iALS, EASE, the
# two-member and the chosen ensemble) and OUTDIR/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/$(date -u +%F)-ensemble-ml1m}
weights=${WEIGHTS:-5 10 15 20 25 30 35 40 45 50 60 70 100 150}
seeds=${SEEDS:-1 2 3 4 5}
ease_l2=${EASE_L2-500 1000 2000}
ease_weights=${EASE_WEIGHTS:-5 10 20 35 50 70 100}
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

# EASE: validation models per λ, then the (λ, v) grid with the two members fixed.
ev=$out/ensemble-ease-validation.jsonl
: >"$ev"
if [[ -n $ease_l2 ]]; then
  mkdir -p "$out/ease"
  for l in $ease_l2; do
    "$bin/ncf-train" "$ds" --model ease --l2 "$l" --validation --quiet --no-checkpoint --force \
      -o "$work/ease-validation-l$l.safetensors" >"$out/ease/validation-l$l.jsonl"
    for v in $ease_weights; do
      "$bin/ncf-eval" "$ds" "$work/mf-validation.safetensors" "$work/ials-validation.safetensors" \
        "$work/ease-validation-l$l.safetensors" --weights "1,$w,$v" --validation | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(json.dumps({"l2": float(sys.argv[1]), "weight": float(sys.argv[2]), "hr": r["hr"],
                  "ndcg": r["ndcg"]}))' "$l" "$v" >>"$ev"
    done
  done
fi
# The two-member ensemble's line competes as weight 0.
read -r ease_l ease_v < <(python3 -c '
import json, sys
pair = [json.loads(l) for l in open(sys.argv[1])]
two = max(pair, key=lambda r: (r["hr"], r["ndcg"]))
rows = [dict(two, l2=0.0, weight=0.0)] + [json.loads(l) for l in open(sys.argv[2])]
b = max(rows, key=lambda r: (r["hr"], r["ndcg"]))
print(b["l2"], b["weight"])' "$out/ensemble-validation.jsonl" "$ev")
if [[ $ease_v == 0.0 ]]; then
  echo "EASE: not taken (no (λ, weight) beats MF + iALS on validation)" >&2
else
  echo "EASE: λ $ease_l, weight $ease_v (best validation HR@10, then NDCG@10)" >&2
  "$bin/ncf-train" "$ds" --model ease --l2 "$ease_l" --quiet --no-checkpoint --force \
    -o "$work/ease-test.safetensors" >"$out/ease/test.jsonl"
fi

runs=$out/runs.jsonl
: >"$runs"
for seed in $seeds; do
  pair=$("$bin/ncf-eval" "$ds" "$work/mf-test-s$seed.safetensors" \
    "$work/ials-test-s$seed.safetensors" --weights "1,$w")
  if [[ $ease_v == 0.0 ]]; then
    all=$pair
  else
    all=$("$bin/ncf-eval" "$ds" "$work/mf-test-s$seed.safetensors" \
      "$work/ials-test-s$seed.safetensors" "$work/ease-test.safetensors" \
      --weights "1,$w,$ease_v")
  fi
  python3 -c '
import json, sys
seed, w, el, ev, mf_log, ials_log, ease_log, pair, both = sys.argv[1:10]
p, r = json.loads(pair), json.loads(both)
last = lambda p: [json.loads(l) for l in open(p) if "\"epoch\"" in l][-1]
m, i = last(mf_log), last(ials_log)
line = {"seed": int(seed), "ials_weight": float(w), "ease_l2": float(el),
        "ease_weight": float(ev), "hr": r["hr"], "ndcg": r["ndcg"], "mf_ials_hr": p["hr"],
        "mf_ials_ndcg": p["ndcg"], "mf_hr": m["hr"], "mf_ndcg": m["ndcg"], "ials_hr": i["hr"],
        "ials_ndcg": i["ndcg"]}
if float(ev) > 0:
    e = last(ease_log)
    line.update(ease_hr=e["hr"], ease_ndcg=e["ndcg"])
print(json.dumps(line))' "$seed" "$w" "$ease_l" "$ease_v" "$out/mf/test-s$seed.jsonl" \
    "$out/ials/test-s$seed.jsonl" "$out/ease/test.jsonl" "$pair" "$all" >>"$runs"
  tail -1 "$runs" >&2
done

python3 - "$runs" >"$out/summary.md" <<'EOF'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def ms(k):
    v = [r[k] for r in rows]
    return f"{st.mean(v):.4f} ± {st.stdev(v):.4f}" if len(v) > 1 else f"{v[0]:.4f}"
r0 = rows[0]
ease = r0["ease_weight"] > 0
print(f"{len(rows)} seeds, last epochs on the test file, iALS weight {r0['ials_weight']}"
      + (f", EASE λ {r0['ease_l2']} weight {r0['ease_weight']}" if ease else ", no EASE")
      + " (chosen on validation):\n")
print("| model | HR@10 | NDCG@10 |\n|---|---|---|")
print(f"| MF | {ms('mf_hr')} | {ms('mf_ndcg')} |")
print(f"| iALS | {ms('ials_hr')} | {ms('ials_ndcg')} |")
if ease:
    print(f"| EASE (no seed: one model) | {r0['ease_hr']:.4f} | {r0['ease_ndcg']:.4f} |")
print(f"| MF + iALS | {ms('mf_ials_hr')} | {ms('mf_ials_ndcg')} |")
if ease:
    print(f"| MF + iALS + EASE | {ms('hr')} | {ms('ndcg')} |")
EOF
cat "$out/summary.md"
