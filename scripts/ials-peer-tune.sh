#!/usr/bin/env bash
# Tunes the `implicit` peer of `--model ials` (issue 36) on a validation split, never the test
# file: validation split 0 of the NCF paper's ml-1m data (the one `ncf-train --validation` carves:
# each user's random held-out interaction and 99 negatives, removed from training), exported by
# `ials_peer_io export --validation-seed 0`. For each factor count, implicit's conjugate-gradient
# ALS over the grid REGS × ALPHAS (its `regularization` and `alpha`), then its Cholesky ALS on the
# TOP best of those (the exact solver costs 8-15× more). Ranked by validation HR@10, then
# NDCG@10 (implicit_peer.py --metrics: numpy, ncf-eval's definition).
#
#   NCF_PEER_PYTHON=python-with-implicit scripts/ials-peer-tune.sh [OUTDIR]
#
# Env: FACTORS (default "64 192"), ITERATIONS (default 16, as `make bench`'s iALS rows),
# REGS (default "0.1 1 3 10 30 100"), ALPHAS (default "1 3 10"), TOP (default 3), THREADS
# (default 2), NCF_SHARED (default ../shared), BIN (default target/release, with
# examples/ials_peer_io). Writes OUTDIR/peer-tuning.jsonl (implicit_peer.py's lines; a rerun
# appends, skipping the fits it holds, so a grid can be widened) and OUTDIR/tuned.txt (the best
# per factors and solver: implicit_peer.py's TUNED table).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/$(date -u +%F)-ials-peer}
py=${NCF_PEER_PYTHON:?set NCF_PEER_PYTHON to a python with implicit, numpy and scipy}
bin=${BIN:-target/release}
shared=${NCF_SHARED:-../shared}
work=${WORK:-target/ials-peer}
iters=${ITERATIONS:-16}
threads=${THREADS:-2}
"$py" -c 'import implicit' || { echo "ials-peer-tune: $py has no implicit" >&2; exit 1; }
if [[ -z ${BIN:-} ]]; then
  cargo build --release -q -p ncf-cli --bin ncf-prep
  cargo build --release -q -p ncf-core --example ials_peer_io
fi
mkdir -p "$out" "$work"
[[ -d $work/ml1m ]] || "$bin/ncf-prep" "$shared/datasets/ncf-ml-1m" -o "$work/ml1m" -q
"$bin/examples/ials_peer_io" export "$work/ml1m" "$work/val0" --validation-seed 0
log="$out/peer-tuning.jsonl"
touch "$log"
# fit FACTORS SOLVER REG ALPHA: one line in the log, unless it holds that fit already (a rerun
# with a wider grid only adds).
fit() {
  if "$py" - "$log" "$1" "$2" "$3" "$4" "$iters" <<'PY'
import json, sys
_, log, f, s, reg, alpha, it = sys.argv
want = (int(f), s, float(reg), float(alpha), int(it))
for line in open(log):
    r = json.loads(line)
    if (r["factors"], r["solver"], r["regularization"], r["alpha"], r["iterations"]) == want:
        sys.exit(0)
sys.exit(1)
PY
  then return 0; fi
  "$py" scripts/implicit_peer.py "$work/val0" --iterations "$iters" --threads "$threads" --metrics \
    --factors "$1" --solver "$2" --regularization "$3" --alpha "$4" >> "$log"
  tail -n 1 "$log" | cut -c1-400 >&2
}
for f in ${FACTORS:-64 192}; do
  for reg in ${REGS:-0.1 1 3 10 30 100}; do
    for alpha in ${ALPHAS:-1 3 10}; do
      fit "$f" cg "$reg" "$alpha"
    done
  done
  # Cholesky on the best TOP of the conjugate-gradient grid.
  "$py" - "$log" "$f" "${TOP:-3}" <<'PY' | while read -r reg alpha; do fit "$f" cholesky "$reg" "$alpha"; done
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rows = [r for r in rows if r["factors"] == int(sys.argv[2]) and r["solver"] == "cg"]
rows.sort(key=lambda r: (-r["hr"], -r["ndcg"]))
for r in rows[: int(sys.argv[3])]:
    print(r["regularization"], r["alpha"])
PY
done
"$py" - "$log" > "$out/tuned.txt" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
best = {}
for r in rows:
    k = (r["factors"], r["solver"])
    if k not in best or (r["hr"], r["ndcg"]) > (best[k]["hr"], best[k]["ndcg"]):
        best[k] = r
for (f, s), r in sorted(best.items()):
    print(f'({f}, "{s}"): ({r["regularization"]}, {r["alpha"]}),  # validation HR@10 {r["hr"]:.4f} NDCG@10 {r["ndcg"]:.4f}, {r["iterations"]} iterations')
PY
cat "$out/tuned.txt"
