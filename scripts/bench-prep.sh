#!/usr/bin/env bash
# Benchmark ncf-prep on an ml-20m sized ratings.csv (20,000,263 synthetic rows, same shape and
# format as ml-20m): release build, wall time and peak RSS from /usr/bin/time -v.
#
#   scripts/bench-prep.sh [WORKDIR]      (default: target/bench-prep; needs ~1.5 GB of disk)
#
# Prints one line per step and appends them to WORKDIR/results.txt; copy the numbers into
# BENCHMARKS.md ("## ncf-prep").
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-target/bench-prep}
mkdir -p "$work"
cargo build --release -q -p ncf-cli --bin ncf-prep
bin=target/release/ncf-prep
[[ -x /usr/bin/time ]] || { echo "$0: /usr/bin/time is needed (apt-get install time)" >&2; exit 1; }

csv="$work/ratings-20m.csv"

measure() {  # label, command...
  local label=$1; shift
  /usr/bin/time -v -o "$work/step.time" "$@" 2>"$work/step.err" >/dev/null \
    || { cat "$work/step.err" >&2; exit 1; }
  local wall rss
  wall=$(grep 'Elapsed (wall clock)' "$work/step.time" | awk '{print $NF}')
  rss=$(grep 'Maximum resident set size' "$work/step.time" | awk '{print $NF}')
  local line
  line=$(printf '%-34s wall %8s  peak RSS %6d MB' "$label" "$wall" $((rss / 1024)))
  echo "$line" | tee -a "$work/results.txt"
}

if [[ ! -s "$csv" ]]; then
  measure "ncf-prep --synthetic-csv (generate)" "$bin" --synthetic --synthetic-csv "$csv" -q
fi
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" \
  | tee -a "$work/results.txt"
echo "# input $(du -h "$csv" | cut -f1) $(wc -l < "$csv") lines" | tee -a "$work/results.txt"
measure "ncf-prep ratings-20m.csv -o DIR" "$bin" "$csv" -o "$work/ds" --force
measure "ncf-prep ratings-20m.csv -o -" "$bin" "$csv" -o -
measure "ncf-prep --synthetic -o DIR" "$bin" --synthetic -o "$work/ds-synth" --force
cat "$work/step.err" >&2 || true
