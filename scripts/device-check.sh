#!/usr/bin/env bash
# The one prepared GPU check (issues 4, 9, 22, 25). Runs ON the lent GPU machine (no Rust, no
# network) from the repository root, over what scripts/device-pack.sh gathered in .device/:
#
#   stage        limit  what it proves
#   env            25 s  the GPU, driver, compute mode; torch's Python, NCCL's lib directory, a
#                        CUDA lib directory no newer than the driver, compute-sanitizer: found, printed
#   nccl_load      10 s  ncf's own loader opens libnccl.so.2 (no libnccl.so link) and ncclGetVersion
#   nccl_1rank     50 s  one rank forced through NCCL (--nccl) trains like two plain runs (1 ml-1m
#                        fp32 epoch): loopback host group, real communicator, collectives self-test,
#                        out-of-place all-reduces, finalize; the two plain runs' model files are
#                        the same bytes (deterministic reductions; every ncf-train run here uses
#                        --cuda-step $NCF_CUDA_STEP, default fused: the step this round confirms)
#   nccl_2rank     60 s  2 ranks on the one GPU (--share-gpu: per-rank NCCL_HOSTID, NCCL sockets on
#                        lo) for the same epoch: loss and HR within the plain runs' noise, and the
#                        same parameter checksum on both ranks
#   nccl_kill      60 s  2 ranks, rank 1 SIGKILLed mid-epoch: rank 0 exits non-zero within 30 s
#                        naming rank 1
#   parity         60 s  every kernel against the CPU reference, golden loss curves, 4 precisions
#                        (the fused step's kernels too: checks named fused:, golden *_fused)
#   ml1m           25 s  the ml1m preset trains to its HR
#   sanitizer      90 s  compute-sanitizer memcheck (fp32, bf16) and racecheck (fp32) on the
#                        kernel checks (--no-golden), ncf's kernels only
#   bench          30 s  training throughput per precision, ml-20m shape, split and fused steps,
#                        each with its per-stage profile
#   peer           45 s  the PyTorch peer's throughput, same shape (bf16, fp32)
#                 ----
#                 455 s  (the device tool allows 600 s a command; 480 s is this script's cap)
#
# This script only runs commands, each under a timeout (a stage's own limit, and tighter ones
# inside it); everything they mean is decided by `ncf-devcheck` (crates/ncf-devcheck, tested in
# CI): each stage's verdict (`ncf-devcheck env|dry|nccl-load|runs|kill|parity|ml1m|sanitizer|
# bench|peer`, from the commands' exit codes and outputs), the plan of stages and limits, each
# stage's fragment, results.json (schema ncf-device-check/1, the structs ncf-report reads) and the
# closing summary. The one Python here is interop: asking a Python where pip put NCCL and CUDA.
#
# Each stage runs under its own timeout, and $OUT/results.json is rewritten as soon as a stage
# ends (a cut run still returns every finished stage); $OUT/log.txt grows as the stages run;
# $OUT/logs.tar.gz (every stage's own logs) is written at the end. Without a GPU (or with
# DEVICE_CHECK_DRY=1) every stage still runs its commands, which must accept their arguments and
# stop at "CUDA unavailable", and reports "no GPU": the dry run that tests/device.rs runs in CI.
#
# Usage (device tool, carry .device/bin .device/data .device/peer .device/COMMIT):
#   bash scripts/device-check.sh            [OUT defaults to ./out]
# Knobs: DEVICE_CHECK_STAGES="env nccl_load ..." (a subset, in order), LIMIT_<stage>=S,
# NCF_DEVICE_DIR (default .device), NCF_DEVICE_BIN, NCF_DEVICE_DATA, NCF_DEVICE_PEER,
# NCF_CUDA_STEP (fused|split: the step of the ncf-train runs), NCF_PYTHON (a Python to try
# first), NCF_DEVICE_WORK (the work directory; default a fresh one under /tmp, removed at the
# end), DEVICE_CHECK_DRY=1; DEVICE_CHECK_HANG=<stage> makes that stage hang for
# DEVICE_CHECK_HANG_S seconds (the dry-run test of the timeouts and of a cut run).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
SELF=$ROOT/scripts/device-check.sh
export OUT=${OUT:-$ROOT/out}
mkdir -p "$OUT"
export NCF_DEVICE_DIR=${NCF_DEVICE_DIR:-$ROOT/.device}
export B=${NCF_DEVICE_BIN:-$NCF_DEVICE_DIR/bin}
export DATA=${NCF_DEVICE_DATA:-$NCF_DEVICE_DIR/data/ncf-ml-1m}
export PEER=${NCF_DEVICE_PEER:-$NCF_DEVICE_DIR/peer/torch_neumf.py}

# The stages in order and their limits (seconds); LIMIT_<stage>=S overrides one. `ncf-devcheck
# plan` refuses an unknown stage or limits over the cap.
STAGES=(env nccl_load nccl_1rank nccl_2rank nccl_kill parity ml1m sanitizer bench peer)
declare -A LIMIT=([env]=25 [nccl_load]=10 [nccl_1rank]=50 [nccl_2rank]=60 [nccl_kill]=60
  [parity]=60 [ml1m]=25 [sanitizer]=90 [bench]=30 [peer]=45)
TOTAL_CAP=480

log() { echo "[device-check $(date +%T)] $*" | tee -a "$OUT/log.txt" >&2; }
# ncf-devcheck under a timeout of its own: it only reads files and decides.
devcheck() { timeout -k 2 20 "$B/ncf-devcheck" "$@"; }
now_ms() { date +%s%3N; }

# ---------------------------------------------------------------- stage helpers (in a stage)
# verdict SUBCOMMAND ARGS...: ncf-devcheck decides the stage's status and summary (printed, and
# written to $W/$STAGE.verdict.json for the driver).
verdict() { devcheck "$@" --out "$W/$STAGE.verdict.json"; }
# Without a GPU: how the commands fared. ARGS: WHAT SAMPLE_ERRFILE RC ERRFILE [RC ERRFILE ...]
dry() {
  local what=$1 sample=$2 runs=()
  shift 2
  while (($#)); do runs+=(--ran "$1:$2"); shift 2; done
  verdict dry --what "$what" --sample "$sample" "${runs[@]}"
}
train() { "$B/ncf-train" "$@"; }
# The step every ncf-train run here uses (issue 35): the fused step, which this round confirms
# (two plain runs' identical model files, the NCCL runs against them, the ml-1m HR);
# NCF_CUDA_STEP=split reruns the round on the previous kernels. Parity and bench run both.
CUDA_STEP=${NCF_CUDA_STEP:-fused}
F1=(--preset ml1m --precision fp32 --epochs 1 --seed 7 --no-checkpoint --quiet --cuda-step "$CUDA_STEP")

# ---------------------------------------------------------------- stages
stage_env() {
  local py="" torch_py="" torch_v="" c out
  if [[ $HAVE_GPU == 1 ]]; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv,noheader \
      > "$W/smi-query.txt" 2>/dev/null
    nvidia-smi > "$W/smi.txt" 2>/dev/null
  fi
  # Python: torch's first (the peer needs it), else any Python.
  for c in ${NCF_PYTHON:-} python3 python python3.12 /opt/torch/.venv/bin/python3 /opt/conda/bin/python3 \
    /usr/local/bin/python3 /usr/bin/python3; do
    command -v "$c" >/dev/null 2>&1 || continue
    c=$(command -v "$c")
    [[ -z $py ]] && timeout 15 "$c" -c 'import sys' >/dev/null 2>&1 && py=$c
    if out=$(timeout 15 "$c" -c 'import torch, sys; print(sys.executable, torch.__version__, torch.version.cuda)' 2>/dev/null); then
      torch_py=$c
      torch_v=$out
      break
    fi
  done
  local probe=${torch_py:-$py} nccl_dir="" pip_cuda=""
  if [[ -n $probe ]]; then
    # Interop: where pip put NCCL (nvidia-nccl-cu13) and the CUDA 13 libraries for this Python.
    nccl_dir=$(timeout 15 "$probe" - 2>/dev/null <<'PY'
import glob, os, site, sys
dirs = []
try:
    import nvidia.nccl
    dirs += [os.path.join(p, "lib") for p in nvidia.nccl.__path__]
except Exception:
    pass
for s in site.getsitepackages() + [site.getusersitepackages()] + sys.path:
    dirs += glob.glob(os.path.join(s, "nvidia", "nccl", "lib"))
for d in dirs:
    if glob.glob(os.path.join(d, "libnccl.so*")):
        print(d)
        break
PY
)
    pip_cuda=$(timeout 15 "$probe" -c 'import nvidia, os; print("\n".join(os.path.join(p, "cu13", "lib") for p in nvidia.__path__))' 2>/dev/null | head -n1)
  fi
  timeout 10 ldconfig -p > "$W/ldconfig.txt" 2>/dev/null
  local cands=() d
  [[ -n ${CUDA_HOME:-} ]] && cands+=(--cuda-dir "$CUDA_HOME/lib64")
  for d in /usr/local/cuda-13.0/lib64 /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64; do cands+=(--cuda-dir "$d"); done
  [[ -n $pip_cuda ]] && cands+=(--cuda-dir "$pip_cuda")
  for c in ${CUDA_HOME:+$CUDA_HOME/bin/compute-sanitizer} /usr/local/cuda-13.0/bin/compute-sanitizer \
    /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer \
    "$(command -v compute-sanitizer 2>/dev/null)"; do
    [[ -n $c ]] && cands+=(--sanitizer "$c")
  done
  verdict env --gpu "$HAVE_GPU" --smi-query "$W/smi-query.txt" --smi "$W/smi.txt" \
    --python "$py" --torch-python "$torch_py" --torch "$torch_v" --nccl-dir "$nccl_dir" \
    --ldconfig "$W/ldconfig.txt" "${cands[@]}" --ld-library-path "${LD_LIBRARY_PATH:-}" \
    --bin "$B" --data "$DATA" --commit "$NCF_DEVICE_DIR/COMMIT" --env-sh "$W/env.sh"
}

stage_nccl_load() {
  local rc
  "$B/ncf-cuda-check" --nccl-version --json "$W/$STAGE.json" > "$W/$STAGE.out" 2> "$W/$STAGE.err"
  rc=$?
  cat "$W/$STAGE.out" "$W/$STAGE.err"
  if [[ $HAVE_GPU != 1 ]]; then
    dry "ncf-cuda-check --nccl-version" "$W/$STAGE.err" "$rc" "$W/$STAGE.err"
  else
    verdict nccl-load --rc "$rc" --stdout "$W/$STAGE.out" --stderr "$W/$STAGE.err" --json "$W/$STAGE.json"
  fi
}

stage_nccl_1rank() {
  local m rcs=()
  for m in plain plain2 nccl; do
    local extra=()
    [[ $m == nccl ]] && extra=(--nccl --rendezvous 127.0.0.1:29517 --rendezvous-timeout 20)
    train "$DATA" -o "$W/1r-$m.safetensors" --force --device cuda "${F1[@]}" "${extra[@]}" \
      > "$W/1r-$m.jsonl" 2> "$W/1r-$m.err"
    rcs+=("$?")
    echo "1 rank $m: exit ${rcs[-1]}"
    tail -n 3 "$W/1r-$m.err"
  done
  if [[ $HAVE_GPU != 1 ]]; then
    dry "3 runs of ncf-train (plain, plain, --nccl)" "$W/1r-nccl.err" \
      "${rcs[0]}" "$W/1r-plain.err" "${rcs[1]}" "$W/1r-plain2.err" "${rcs[2]}" "$W/1r-nccl.err"
    return
  fi
  verdict runs --ref "plain=${rcs[0]}:$W/1r-plain.jsonl" --ref "plain2=${rcs[1]}:$W/1r-plain2.jsonl" \
    --run "nccl=${rcs[2]}:$W/1r-nccl.jsonl" --stderr "$W/1r-nccl.err" --ranks 1 \
    --identical "$W/1r-plain.safetensors" "$W/1r-plain2.safetensors"
}

# Two ranks on the one GPU, torchrun-style environment; rank r's logs in $W/$1-r.{jsonl,err}.
two_ranks() { # TAG PORT ARGS...
  local tag=$1 port=$2 r
  shift 2
  for r in 0 1; do
    RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
      NCCL_DEBUG=${NCCL_DEBUG:-INFO} NCCL_DEBUG_SUBSYS=${NCCL_DEBUG_SUBSYS:-INIT,NET} \
      "$B/ncf-train" "$DATA" -o "$W/$tag.safetensors" --force --device cuda --share-gpu "$@" \
      > "$W/$tag-$r.jsonl" 2> "$W/$tag-$r.err" &
    PIDS[r]=$!
  done
}

stage_nccl_2rank() {
  local PIDS=() rc0 rc1
  if [[ $HAVE_GPU == 1 && ! -s $W/1r-plain.jsonl ]]; then
    train "$DATA" -o "$W/1r-plain.safetensors" --force --device cuda "${F1[@]}" > "$W/1r-plain.jsonl" 2> "$W/1r-plain.err"
    echo "reference plain run: exit $?"
  fi
  two_ranks 2r 29527 "${F1[@]}" --rendezvous-timeout 20
  wait "${PIDS[0]}"; rc0=$?
  wait "${PIDS[1]}"; rc1=$?
  echo "2 ranks: exit $rc0 $rc1"
  grep -hE "NET/Socket : Using|Using network|nNodes|self-test|sha256|rror" "$W"/2r-*.err | head -n 20
  if [[ $HAVE_GPU != 1 ]]; then
    dry "2 ranks of ncf-train --share-gpu" "$W/2r-0.err" "$rc0" "$W/2r-0.err" "$rc1" "$W/2r-1.err"
    return
  fi
  local refs=(--ref "plain=0:$W/1r-plain.jsonl")
  [[ -s $W/1r-plain2.jsonl ]] && refs+=(--ref "plain2=0:$W/1r-plain2.jsonl")
  verdict runs "${refs[@]}" --run "2 ranks=$rc0:$W/2r-0.jsonl" --also "rank 1=$rc1" \
    --stderr "$W/2r-0.err" --stderr "$W/2r-1.err" --ranks 2
}

stage_nccl_kill() {
  local PIDS=() t0 tk rc0 rc1 i
  two_ranks 2k 29537 --preset ml1m --precision fp32 --epochs 30 --seed 7 --no-checkpoint --quiet \
    --cuda-step "$CUDA_STEP" --rendezvous-timeout 10
  t0=$(date +%s)
  # Kill rank 1 in the middle of an epoch: half a second after rank 0 reported its second epoch
  # (about 20 s at the latest), while both are training.
  while (($(date +%s) - t0 < 20)); do
    kill -0 "${PIDS[0]}" 2>/dev/null && kill -0 "${PIDS[1]}" 2>/dev/null || break
    grep -q '"epoch":1' "$W/2k-0.jsonl" 2>/dev/null && { sleep 0.5; break; }
    sleep 0.1
  done
  if [[ $HAVE_GPU != 1 ]] || ! kill -0 "${PIDS[0]}" 2>/dev/null || ! kill -0 "${PIDS[1]}" 2>/dev/null; then
    wait "${PIDS[1]}"; rc1=$?
    wait "${PIDS[0]}"; rc0=$?
    echo "a rank ended before the kill: rank 0 exit $rc0, rank 1 exit $rc1"
    tail -n 3 "$W/2k-0.err" "$W/2k-1.err"
    if [[ $HAVE_GPU != 1 ]]; then
      dry "2 ranks of ncf-train --share-gpu (kill test)" "$W/2k-0.err" "$rc0" "$W/2k-0.err" "$rc1" "$W/2k-1.err"
    else
      verdict kill --killed 1 --rc "$rc0" --stderr "$W/2k-0.err" --ended-first "$rc1:$W/2k-1.err"
    fi
    return
  fi
  kill -9 "${PIDS[1]}"
  tk=$(now_ms)
  echo "killed rank 1 (pid ${PIDS[1]}) after $(($(date +%s) - t0)) s; epochs rank 0 reported: $(grep -c '"epoch"' "$W/2k-0.jsonl")"
  for ((i = 0; i < 350; i++)); do
    kill -0 "${PIDS[0]}" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "${PIDS[0]}" 2>/dev/null; then
    kill -9 "${PIDS[0]}"
    echo "rank 0 still running 35 s after the kill: killed it"
  fi
  wait "${PIDS[0]}"; rc0=$?
  local ms=$(($(now_ms) - tk))
  echo "rank 0: exit $rc0, $ms ms after the kill"
  tail -n 4 "$W/2k-0.err"
  verdict kill --killed 1 --rc "$rc0" --millis "$ms" --limit 30 --stderr "$W/2k-0.err"
}

stage_parity() {
  local rc
  "$B/ncf-cuda-check" --json "$W/$STAGE.json" --verbose > "$W/parity.txt" 2> "$W/parity.err"
  rc=$?
  tail -n 40 "$W/parity.txt"
  tail -n 3 "$W/parity.err"
  if [[ $HAVE_GPU != 1 ]]; then
    dry "ncf-cuda-check" "$W/parity.err" "$rc" "$W/parity.err"
  else
    verdict parity --rc "$rc" --stdout "$W/parity.txt" --stderr "$W/parity.err" --json "$W/$STAGE.json"
  fi
}

stage_ml1m() {
  local rc
  train "$DATA" -o "$W/ml1m.safetensors" --force --device cuda --preset ml1m --no-checkpoint --quiet \
    --cuda-step "$CUDA_STEP" > "$W/ml1m.jsonl" 2> "$W/ml1m.err"
  rc=$?
  tail -n 2 "$W/ml1m.jsonl"
  tail -n 3 "$W/ml1m.err"
  if [[ $HAVE_GPU != 1 ]]; then
    dry "ncf-train --preset ml1m" "$W/ml1m.err" "$rc" "$W/ml1m.err"
  else
    verdict ml1m --rc "$rc" --log "$W/ml1m.jsonl" --stderr "$W/ml1m.err"
  fi
}

stage_sanitizer() {
  local tool rc prec lim runs=()
  if [[ $HAVE_GPU != 1 ]]; then
    # The command it would wrap still has to accept its flags.
    "$B/ncf-cuda-check" --precision fp32 --no-golden > /dev/null 2> "$W/san.err"
    dry "ncf-cuda-check --no-golden (compute-sanitizer: ${SANITIZER:-not found})" "$W/san.err" "$?" "$W/san.err"
    return
  fi
  for tool in memcheck racecheck; do
    lim=45 prec=fp32,bf16
    [[ $tool == racecheck ]] && { lim=35; prec=fp32; }
    [[ -n ${SANITIZER:-} ]] || break
    local filter=(--kernel-name kns=ncf_)
    timeout -k 3 "$lim" "$SANITIZER" --tool "$tool" --error-exitcode 86 --print-limit 20 "${filter[@]}" \
      "$B/ncf-cuda-check" --precision "$prec" --no-golden > "$W/san-$tool.txt" 2>&1
    rc=$?
    if [[ $(devcheck sanitizer-filter --rc "$rc" --log "$W/san-$tool.txt") == unsupported ]]; then
      echo "$tool: no --kernel-name filter in this compute-sanitizer: checking every kernel"
      timeout -k 3 "$lim" "$SANITIZER" --tool "$tool" --error-exitcode 86 --print-limit 20 \
        "$B/ncf-cuda-check" --precision "$prec" --no-golden > "$W/san-$tool.txt" 2>&1
      rc=$?
    fi
    tail -n 5 "$W/san-$tool.txt"
    runs+=(--ran "$tool:$prec:$lim:$rc:$W/san-$tool.txt")
  done
  verdict sanitizer --sanitizer "${SANITIZER:-}" "${runs[@]}"
}

stage_bench() {
  local rc
  "$B/ncf-cuda-check" --bench --json "$W/$STAGE.json" > "$W/bench.txt" 2> "$W/bench.err"
  rc=$?
  tail -n 3 "$W/bench.err"
  if [[ $HAVE_GPU != 1 ]]; then
    dry "ncf-cuda-check --bench" "$W/bench.err" "$rc" "$W/bench.err"
  else
    verdict bench --rc "$rc" --json "$W/$STAGE.json" --stderr "$W/bench.err"
  fi
}

stage_peer() {
  local p
  : > "$W/peer.jsonl"
  if [[ $HAVE_GPU == 1 && -n ${TORCH_PY:-} && -f $PEER ]]; then
    for p in ${PEER_PRECISIONS-bf16 fp32}; do
      timeout 21 "$TORCH_PY" "$PEER" --synthetic 138493,26744,20000263 --epochs 2 --max-steps 12 --precision "$p" \
        2>> "$W/peer.err" | grep '"epoch": 1' >> "$W/peer.jsonl"
      echo "peer $p: exit ${PIPESTATUS[0]}"
    done
  fi
  verdict peer --gpu "$HAVE_GPU" --peer "$PEER" --torch-python "${TORCH_PY:-}" --lines "$W/peer.jsonl" \
    --stderr "$W/peer.err"
}

# ---------------------------------------------------------------- one stage (child process)
if [[ ${1:-} == --stage ]]; then
  STAGE=$2
  W=${W:?}
  [[ -f $W/env.sh ]] && source "$W/env.sh"
  if [[ ${DEVICE_CHECK_HANG:-} == "$STAGE" ]]; then
    echo "$STAGE: hanging on purpose (DEVICE_CHECK_HANG)"
    sleep "${DEVICE_CHECK_HANG_S:-100000}"
  fi
  "stage_$STAGE"
  exit 0
fi

# ---------------------------------------------------------------- the driver
export W=${NCF_DEVICE_WORK:-$(mktemp -d /tmp/ncf-devcheck.XXXXXX)}
mkdir -p "$W/frag"
: > "$OUT/log.txt"
if [[ ${DEVICE_CHECK_DRY:-} == 1 ]] || ! timeout 20 nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  export HAVE_GPU=0
  # Dry also where a GPU exists: every CUDA entry point must stop at "CUDA unavailable".
  export CUDA_VISIBLE_DEVICES=
else
  export HAVE_GPU=1
fi
limits=()
for s in "${STAGES[@]}"; do
  v=LIMIT_$s
  limits+=("$s=${!v:-${LIMIT[$s]}}")
done
# The stages to run and their limits (one "NAME SECONDS" line each), and the header.
if ! plan=$(devcheck plan --cap "$TOTAL_CAP" --only "${DEVICE_CHECK_STAGES:-}" --gpu "$HAVE_GPU" \
  --started "$(date -u +%FT%TZ)" --host "$(hostname 2>/dev/null)" --commit "$NCF_DEVICE_DIR/COMMIT" \
  --header "$W/header.json" "${limits[@]}" 2> "$W/plan.err"); then
  log "no plan: $(cat "$W/plan.err") (is $B/ncf-devcheck there? scripts/device-pack.sh gathers it)"
  exit 2
fi
run_stages=()
declare -A LIM
while read -r s lim; do run_stages+=("$s"); LIM[$s]=$lim; done <<< "$plan"
log "stages: ${run_stages[*]}; GPU: $([[ $HAVE_GPU == 1 ]] && echo yes || echo 'no GPU (dry run)'); work dir $W"
expect=$(IFS=,; echo "${run_stages[*]}")

n=0
for s in "${run_stages[@]}"; do
  lim=${LIM[$s]}
  log "stage $s (limit $lim s)"
  t0=$(now_ms)
  timeout -k 5 "$lim" bash "$SELF" --stage "$s" > "$W/$s.log" 2>&1
  rc=$?
  ms=$(($(now_ms) - t0))
  sed "s/^/  [$s] /" "$W/$s.log" >> "$OUT/log.txt"
  frag=$W/frag/$(printf %02d "$n")-$s.json
  n=$((n + 1))
  line=$(devcheck stage --name "$s" --rc "$rc" --millis "$ms" --limit "$lim" --verdict "$W/$s.verdict.json" \
    --log "$W/$s.log" --out "$frag" 2>&1)
  devcheck merge --out "$OUT/results.json" --header "$W/header.json" --expect "$expect" "$W"/frag/*.json \
    2>> "$OUT/log.txt"
  log "$line"
done

rm -f "$W"/*.safetensors
tar czf "$OUT/logs.tar.gz" -C "$W" . 2>/dev/null || true
[[ -z ${NCF_DEVICE_WORK:-} ]] && rm -rf "$W"
echo
devcheck summary "$OUT/results.json"
failed=$?
echo "results: $OUT/results.json; log: $OUT/log.txt; stage logs: $OUT/logs.tar.gz"
exit $failed
