#!/usr/bin/env bash
# Every tool at MLPerf's scale on this machine (issue 33): wall time and peak memory of
#   ncf-prep --synthetic U,I,N -o DIR           (streamed generation + out-of-core prep)
#   ncf-negsample DIR --test-negatives 100      (NVIDIA's protocol)
#   ncf-negsample DIR --test-negatives 999      (MLPerf's protocol, replacing the 100)
#   ncf-train DIR --preset nvidia-ml20m --max-steps 1   (start-up and one CPU step, batch 2^20)
#     train-1-step: NVIDIA's recipe as it is (FP32 Adam moments, factored first layer);
#     train-1-step-lean: the same with --adam-moments bf16 --first-layer per-sample, the
#     configuration for a model of this size in 8 GB (docs/DESIGN.md, "Training memory")
#   ncf-eval DIR MODEL --users 10000            (sampled evaluation of 10,000 users, 1 + 999)
# A step that fails is recorded as such (its error in results-errors.txt) and the run goes on.
# at three shapes: ml-20m (20,000,263 interactions), MLPerf's ml-20mx4x16 (131,203,749) and
# ml-20mx16x32 (1,223,962,043), release build.
#
#   scripts/bench-scale.sh [SIZES] [WORKDIR]    SIZES: a comma list of 20m,131m,1b (default all)
#                                               WORKDIR: default target/bench-scale
#
# Peak RSS is /usr/bin/time's maximum resident set size; the same run is sampled every 0.2 s
# from /proc/PID/status for its split into anonymous memory (RssAnon: what the tool
# allocated) and mapped file pages (RssFile: the dataset's column file, shared with other
# processes, dropped by the kernel under pressure). Each size's dataset is deleted before the
# next (disk: about 1.5 GB at 20m, 9 GB at 131m, 40 GB at 1b).
# Writes benchmarks/results/<date>-scale/results.tsv (appending), results.md and chart.svg
# (scripts/bench-scale-chart.py); copy the table into BENCHMARKS.md ("ncf at scale").
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${1:-20m,131m,1b}
work=${2:-target/bench-scale}
out=benchmarks/results/$(date -u +%F)-scale
mkdir -p "$work" "$out"
[[ -x /usr/bin/time ]] || { echo "$0: /usr/bin/time is needed (apt-get install time)" >&2; exit 1; }
cargo build --release -q -p ncf-cli --bin ncf-prep --bin ncf-negsample --bin ncf-train --bin ncf-eval
bin=target/release
tsv=$out/results.tsv
[[ -s $tsv ]] || printf 'date\tsize\tinteractions\tstep\twall_s\tpeak_rss_mb\tpeak_anon_mb\tpeak_file_mb\n' > "$tsv"

shape() {
  case $1 in
    20m) echo 138493,26744,20000263 ;;
    131m) echo 498975,427888,131203749 ;;
    1b) echo 2197225,855776,1223962043 ;;
    *) echo "$0: unknown size $1 (20m, 131m or 1b)" >&2; exit 2 ;;
  esac
}

# measure SIZE ROWS STEP command...: run it under /usr/bin/time, sample its RssAnon/RssFile.
measure() {
  local size=$1 rows=$2 step=$3; shift 3
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" > "$work/stdout" 2> "$work/stderr" &
  local tpid=$! pid="" anon=0 file=0 a f
  while kill -0 "$tpid" 2> /dev/null; do
    [[ -n $pid ]] || pid=$(pgrep -P "$tpid" | head -n 1 || true)
    if [[ -n $pid && -r /proc/$pid/status ]]; then
      a=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2> /dev/null || echo 0)
      f=$(awk '/^RssFile:/ {print $2}' "/proc/$pid/status" 2> /dev/null || echo 0)
      (( ${a:-0} > anon )) && anon=$a
      (( ${f:-0} > file )) && file=$f
    fi
    sleep 0.2
  done
  local wall rss
  if ! wait "$tpid"; then
    echo "$0: $step at $size failed:" >&2
    tail -n 5 "$work/stderr" >&2
    printf '%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$size $step" "$(grep -v '^Command exited' "$work/stderr" | tail -n 3 | tr '\n' ' ')" \
      >> "$out/results-errors.txt"
    read -r wall rss < <(tail -n 1 "$work/time")
    printf '%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n' "$(date -u +%FT%TZ)" "$size" "$rows" "$step-failed" "$wall" \
      $((rss / 1024)) $((anon / 1024)) $((file / 1024)) | tee -a "$tsv"
    return 1
  fi
  read -r wall rss < <(tail -n 1 "$work/time")
  printf '%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n' "$(date -u +%FT%TZ)" "$size" "$rows" "$step" "$wall" \
    $((rss / 1024)) $((anon / 1024)) $((file / 1024)) | tee -a "$tsv"
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GB, git $(git rev-parse --short HEAD)" >&2
for size in ${sizes//,/ }; do
  spec=$(shape "$size")
  rows=${spec##*,}
  ds=$work/ds-$size
  rm -rf "$ds" "$work/model-$size.safetensors"
  model=$work/model-$size.safetensors
  measure "$size" "$rows" prep "$bin/ncf-prep" --synthetic "$spec" -o "$ds" -q || continue
  measure "$size" "$rows" negsample-100 "$bin/ncf-negsample" "$ds" --test-negatives 100 || true
  measure "$size" "$rows" negsample-999 "$bin/ncf-negsample" "$ds" --test-negatives 999 --force \
    || true
  lean=$work/model-$size-lean.safetensors
  rm -f "$lean"
  train=(--device cpu --preset nvidia-ml20m --threads 2 --max-steps 1 --no-checkpoint -q)
  measure "$size" "$rows" train-1-step "$bin/ncf-train" "$ds" -o "$model" "${train[@]}" || true
  measure "$size" "$rows" train-1-step-lean "$bin/ncf-train" "$ds" -o "$lean" "${train[@]}" \
    --adam-moments bf16 --first-layer per-sample || true
  [[ -s $model ]] || model=$lean
  [[ -s $model ]] && { measure "$size" "$rows" eval-10k-users "$bin/ncf-eval" "$ds" "$model" \
    --users 10000 || true; }
  du -sh "$ds" >&2
  rm -rf "$ds" "$work/model-$size.safetensors" "$lean"
done
python3 scripts/bench-scale-chart.py "$tsv" "$out/chart.svg" "$out/results.md"
echo "bench-scale: $tsv, $out/results.md, $out/chart.svg" >&2
