#!/usr/bin/env bash
# iALS beside the `implicit` library (issue 36), `make bench`'s iALS rows: on the NCF paper's
# ml-1m split, 2 threads, at each of FACTORS, for each repeat, alternating:
#   - ncf-train --model ials with the default solver (cg) for ITERATIONS epochs: seconds per
#     iteration (median of the epochs' train_s, which includes the reported objective) and the
#     last epoch's HR@10 / NDCG@10 on the test file;
#   - the same with --ials-solver exact for EXACT_ITERATIONS epochs (time only: ~10× slower);
#   - when NCF_PEER_PYTHON has implicit: implicit's ALS (scripts/implicit_peer.py, its
#     regularisation and alpha tuned on validation split 0: scripts/ials-peer-tune.sh) with its
#     default conjugate-gradient solver for ITERATIONS iterations (seconds per iteration: median
#     of its own per-iteration times; its factors imported as an ncf model and scored by
#     ncf-eval), and with its Cholesky solver for EXACT_ITERATIONS (time only).
#
#   scripts/bench-ials.sh RAW.jsonl     appends one JSON record per measurement (bench.sh's form)
#
# Env: BENCH_IALS_REPEATS (default BENCH_REPEATS or 3), BENCH_IALS_FACTORS ("64 192"),
# BENCH_IALS_ITERATIONS (16, iALS's default epochs), BENCH_IALS_EXACT_ITERATIONS (2),
# NCF_PEER_PYTHON, NCF_SHARED (../shared), BENCH_WORK (target/bench), BENCH_BIN
# (target/release, with examples/ials_peer_io).
set -euo pipefail
cd "$(dirname "$0")/.."
raw=${1:?usage: bench-ials.sh RAW.jsonl}
repeats=${BENCH_IALS_REPEATS:-${BENCH_REPEATS:-3}}
shared=${NCF_SHARED:-../shared}
work=${BENCH_WORK:-target/bench}/ials
bin=${BENCH_BIN:-target/release}
peer_py=${NCF_PEER_PYTHON:-}
iters=${BENCH_IALS_ITERATIONS:-16}
exact_iters=${BENCH_IALS_EXACT_ITERATIONS:-2}
threads=2
log() { printf '[bench-ials %s] %s\n' "$(date -u +%T)" "$*" >&2; }
record() {
  local extra=""
  [[ -n ${7:-} ]] && extra+=",\"peer_of\":\"$7\""
  printf '{"id":"%s","group":"%s","unit":"%s","better":"%s","value":%s,"title":"%s"%s}\n' \
    "$1" "$2" "$3" "$4" "$5" "$6" "$extra" >> "$raw"
  log "$1 = $5 $3"
}
note() { printf '{"note":"%s"}\n' "$1" >> "$raw"; }
jget() { grep -oE "\"$1\": ?-?[0-9.]+([eE][-+]?[0-9]+)?" | head -n 1 | sed -E 's/.*: ?//'; }
# median < numbers, one per line
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

ml1m="$shared/datasets/ncf-ml-1m"
if [[ ! -d $ml1m ]]; then
  note "iALS figures skipped: $ml1m not found (set NCF_SHARED)"
  exit 0
fi
mkdir -p "$work"
[[ -d $work/ml1m ]] || "$bin/ncf-prep" "$ml1m" -o "$work/ml1m" --force -q
peer=""
if [[ -n $peer_py ]] && "$peer_py" -c 'import implicit, scipy' 2>/dev/null; then
  [[ -x $bin/examples/ials_peer_io ]] || { echo "bench-ials: $bin/examples/ials_peer_io missing (build first)" >&2; exit 1; }
  "$bin/examples/ials_peer_io" export "$work/ml1m" "$work/split"
  peer=1
  note "implicit peer: $("$peer_py" -c 'import implicit, numpy; print("implicit", implicit.__version__, "numpy", numpy.__version__)'), $threads threads, scripts/implicit_peer.py (regularisation tuned on validation split 0)"
else
  note "implicit peer skipped: NCF_PEER_PYTHON unset or without implicit and scipy (scripts/implicit_peer.py)"
fi

# Our λ / α₀ per factor count, chosen on validation split 0 like the peer's (a 3 × 3 grid
# around Rendle et al.'s 0.007 / 0.3, 16 epochs, cg: benchmarks/results/2026-12-07-ials-peer/).
ours_flags() {
  case $1 in
    64) echo --l2 0.007 --unobserved-weight 0.1 ;;
    *) echo --l2 0.007 --unobserved-weight 0.3 ;;
  esac
}
ours() { # FACTORS SOLVER EPOCHS → $work/ours.jsonl
  # shellcheck disable=SC2046
  "$bin/ncf-train" "$work/ml1m" -o "$work/ials.safetensors" --force --model ials --factors "$1" \
    $(ours_flags "$1") --ials-solver "$2" --epochs "$3" --threads "$threads" --no-checkpoint \
    --save-last -q > "$work/ours.jsonl"
}
theirs() { # FACTORS SOLVER ITERATIONS → $work/peer.json
  "$peer_py" scripts/implicit_peer.py "$work/split" --factors "$1" --solver "$2" --iterations "$3" \
    --threads "$threads" --out "$work/peer-factors" > "$work/peer.json" 2>>"$work/peer.err"
}
for f in ${BENCH_IALS_FACTORS:-64 192}; do
  for r in $(seq "$repeats"); do
    ours "$f" cg "$iters"
    record "ials.d$f.cg.iter_s" ials s lower \
      "$(grep '"epoch"' "$work/ours.jsonl" | grep -oE '"train_s":[0-9.eE+-]+' | cut -d: -f2 | median)" \
      "iALS $f factors, cg (default): s per iteration (median of $iters)"
    last=$(grep '"epoch"' "$work/ours.jsonl" | tail -n 1)
    record "ials.d$f.cg.hr" ials HR@10 higher "$(jget hr <<< "$last")" "iALS $f factors, cg, HR@10 after $iters iterations (test)"
    record "ials.d$f.cg.ndcg" ials NDCG@10 higher "$(jget ndcg <<< "$last")" "iALS $f factors, cg, NDCG@10 after $iters iterations (test)"
    if [[ -n $peer ]]; then
      theirs "$f" cg "$iters"
      record "peer.ials.d$f.cg.iter_s" ials s lower "$(jget seconds_per_iteration < "$work/peer.json")" \
        "implicit $f factors, cg: s per iteration (median of $iters)" "ials.d$f.cg.iter_s"
      "$bin/examples/ials_peer_io" import "$work/ml1m" "$work/peer-factors" "$work/peer.safetensors"
      "$bin/ncf-eval" "$work/ml1m" "$work/peer.safetensors" --k 10 > "$work/peer-eval.json"
      record "peer.ials.d$f.cg.hr" ials HR@10 higher "$(jget hr < "$work/peer-eval.json")" \
        "implicit $f factors, cg, HR@10 after $iters iterations (test, ncf-eval)" "ials.d$f.cg.hr"
      record "peer.ials.d$f.cg.ndcg" ials NDCG@10 higher "$(jget ndcg < "$work/peer-eval.json")" \
        "implicit $f factors, cg, NDCG@10 after $iters iterations (test, ncf-eval)" "ials.d$f.cg.ndcg"
    fi
    ours "$f" exact "$exact_iters"
    record "ials.d$f.exact.iter_s" ials s lower \
      "$(grep '"epoch"' "$work/ours.jsonl" | grep -oE '"train_s":[0-9.eE+-]+' | cut -d: -f2 | median)" \
      "iALS $f factors, exact (Cholesky, f64): s per iteration (median of $exact_iters)"
    if [[ -n $peer ]]; then
      theirs "$f" cholesky "$exact_iters"
      record "peer.ials.d$f.exact.iter_s" ials s lower "$(jget seconds_per_iteration < "$work/peer.json")" \
        "implicit $f factors, Cholesky: s per iteration (median of $exact_iters)" "ials.d$f.exact.iter_s"
    fi
  done
done
