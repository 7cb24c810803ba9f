#!/usr/bin/env bash
# A newcomer's first ten minutes, timed (issue 23): a fresh clone of HEAD into a temp dir (with
# ../shared linked beside it, as the tests expect), then `make demo`, then `make test`. Prints one
# JSON line with the wall seconds of each; run it on an otherwise idle machine. The cargo registry
# and pip caches of this machine are used (a newcomer's first download is not timed). The demo's
# build runs with --timings; its report (~200 kB of HTML, not kept) is summed up by
# `ncf-bench-report timings` into $TIMINGS (default benchmarks/results/newcomer-cargo-timing.md):
# profile, wall time, the shares of ncf-* and arrow/parquet, the slowest units.
#
#   scripts/bench-newcomer.sh [REV]      (default HEAD)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
rev=${1:-HEAD}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/ncf"
git -C "$work/ncf" checkout -q "$rev"
ln -s "$(cd "$repo/../shared" && pwd)" "$work/shared"
cd "$work/ncf"
now() { date +%s.%N; }
t0=$(now)
make demo BUILD_FLAGS=--timings > "$work/demo.log" 2>&1 || { tail -30 "$work/demo.log"; exit 1; }
t1=$(now)
make test > "$work/test.log" 2>&1 || { tail -30 "$work/test.log"; exit 1; }
t2=$(now)
awk -v r="$(git rev-parse --short HEAD)" -v c="$(nproc)" -v a="$t0" -v b="$t1" -v e="$t2" \
  'BEGIN { printf "{\"rev\":\"%s\",\"cores\":%s,\"demo_s\":%.1f,\"test_s\":%.1f,\"demo_and_test_s\":%.1f}\n", r, c, b - a, e - b, e - a }'
tail -3 "$work/demo.log" >&2
timings=${TIMINGS:-$repo/benchmarks/results/newcomer-cargo-timing.md}
# The clone's ncf-bench-report, else this checkout's (REV may predate `timings`).
for tool in target/debug/ncf-bench-report "$repo/target/debug/ncf-bench-report"; do
  "$tool" timings target/cargo-timings/cargo-timing.html > "$timings" 2>/dev/null \
    && { echo "timings: $timings" >&2; break; }
done
