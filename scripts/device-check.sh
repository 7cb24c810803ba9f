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
#                        out-of-place all-reduces, finalize
#   nccl_2rank     60 s  2 ranks on the one GPU (--share-gpu: per-rank NCCL_HOSTID, NCCL sockets on
#                        lo) for the same epoch: loss and HR within the plain runs' noise, and the
#                        same parameter checksum on both ranks
#   nccl_kill      60 s  2 ranks, rank 1 SIGKILLed mid-epoch: rank 0 exits non-zero within 30 s
#                        naming rank 1
#   parity         60 s  every kernel against the CPU reference, golden loss curves, 4 precisions
#   ml1m           25 s  the ml1m preset trains to its HR
#   sanitizer      90 s  compute-sanitizer memcheck (fp32, bf16) and racecheck (fp32) on the
#                        kernel checks (--no-golden), ncf's kernels only
#   bench          30 s  training throughput per precision, ml-20m shape
#   peer           45 s  the PyTorch peer's throughput, same shape (bf16, fp32)
#                 ----
#                 455 s  (the device tool allows 600 s a command; 480 s is this script's cap)
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
# NCF_DEVICE_DIR (default .device), NCF_DEVICE_BIN, NCF_DEVICE_DATA, NCF_DEVICE_PEER, NCF_PYTHON
# (a Python to try first), NCF_DEVICE_WORK (the work directory; default a fresh one under /tmp,
# removed at the end), DEVICE_CHECK_DRY=1; DEVICE_CHECK_HANG=<stage> makes that stage hang for
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

STAGES=(env nccl_load nccl_1rank nccl_2rank nccl_kill parity ml1m sanitizer bench peer)
declare -A LIMIT=([env]=25 [nccl_load]=10 [nccl_1rank]=50 [nccl_2rank]=60 [nccl_kill]=60
  [parity]=60 [ml1m]=25 [sanitizer]=90 [bench]=30 [peer]=45)
TOTAL_CAP=480

log() { echo "[device-check $(date +%T)] $*" | tee -a "$OUT/log.txt" >&2; }

# A JSON string of $1 (control characters dropped).
js() {
  local s
  s=$(printf '%s' "$1" | tr -d '\000-\010\013\014\016-\037')
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\t'/\\t}
  s=${s//$'\r'/}
  printf '"%s"' "$s"
}
# A JSON object of key=value (a string) and key:=value (raw: a number, true, false) arguments.
jobj() {
  local sep="" kv
  printf '{'
  for kv in "$@"; do
    if [[ $kv =~ ^([A-Za-z0-9_]+):=(.*)$ ]]; then
      printf '%s"%s":%s' "$sep" "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]:-null}"
    else
      printf '%s"%s":%s' "$sep" "${kv%%=*}" "$(js "${kv#*=}")"
    fi
    sep=,
  done
  printf '}\n'
}

# ---------------------------------------------------------------- stage helpers (in a stage)
# finish STATUS SUMMARY: what the driver reads back.
finish() {
  printf '%s\n' "$1" > "$W/$STAGE.status"
  printf '%s\n' "$2" > "$W/$STAGE.summary"
  echo "$STAGE: $1: $2"
}
# The stage's command ran as far as it can without a GPU: exit 1 with "CUDA unavailable" (or
# "NCCL" missing), not a usage error (2), a missing binary (126/127) or a panic.
wired() { # RC ERRFILE
  [[ $1 != 2 && $1 != 126 && $1 != 127 ]] && ! grep -q panicked "$2" 2>/dev/null
}
unavailable() { grep -qE "CUDA unavailable|cannot load NCCL" "$1" 2>/dev/null; }
first_error() { grep -m1 -E "CUDA unavailable|error|Error|failed" "$1" 2>/dev/null | cut -c1-300; }
# In a stage without a GPU: report how the commands fared. ARGS: RC ERRFILE [RC ERRFILE ...]
dry_verdict() {
  local what=$1 ok=1 notes=""
  shift
  while (($#)); do
    if ! wired "$1" "$2"; then ok=0; notes+=" $(basename "$2"): exit $1;"; fi
    shift 2
  done
  if ((ok)); then
    finish no-gpu "no GPU: $what wired (stopped at: $(first_error "$ERR_SAMPLE"))"
  else
    finish fail "no GPU, and $what not wired:$notes"
  fi
}
train() { "$B/ncf-train" "$@"; }
F1=(--preset ml1m --precision fp32 --epochs 1 --seed 7 --no-checkpoint --quiet)

# ---------------------------------------------------------------- stages
stage_env() {
  local gpu="" drv="" mem="" mode="" cudav="" py="" torch_py="" torch_v="" c out
  if [[ $HAVE_GPU == 1 ]]; then
    IFS=, read -r gpu drv mem mode < <(nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode \
      --format=csv,noheader 2>/dev/null | head -n1 | sed 's/, /,/g')
    cudav=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -n1)
  fi
  # Python: torch's first (the peer needs it), else any Python.
  for c in ${NCF_PYTHON:-} python3 python python3.12 /opt/torch/.venv/bin/python3 /opt/conda/bin/python3 \
    /usr/local/bin/python3 /usr/bin/python3; do
    command -v "$c" >/dev/null 2>&1 || continue
    c=$(command -v "$c")
    [[ -z $py ]] && "$c" -c 'import sys' >/dev/null 2>&1 && py=$c
    if out=$(timeout 15 "$c" -c 'import torch, sys; print(sys.executable, torch.__version__, torch.version.cuda)' 2>/dev/null); then
      torch_py=$c
      torch_v=$out
      break
    fi
  done
  local probe=${torch_py:-$py}
  # NCCL: the pip wheel's lib directory (nvidia-nccl-cu13), else the system's.
  local nccl_dir=""
  if [[ -n $probe ]]; then
    nccl_dir=$("$probe" - 2>/dev/null <<'PY'
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
  fi
  if [[ -z $nccl_dir ]]; then
    local f
    f=$(ldconfig -p 2>/dev/null | awk '/libnccl\.so/ {print $NF; exit}')
    [[ -n $f ]] && nccl_dir=$(dirname "$f")
  fi
  # CUDA libraries (NVRTC, cuBLAS): a directory with libnvrtc.so.13 and libcublas.so.13 whose
  # toolkit is no newer than the driver's CUDA (PTX from a newer NVRTC does not load), preferring
  # the exact version; the pip cu13 directory of torch's Python is a candidate too.
  local cands=() d v best="" bestv="" notes=""
  [[ -n ${CUDA_HOME:-} ]] && cands+=("$CUDA_HOME/lib64")
  for d in /usr/local/cuda-13.0/lib64 /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64; do cands+=("$d"); done
  if [[ -n $probe ]]; then
    d=$("$probe" -c 'import nvidia, os; print("\n".join(os.path.join(p, "cu13", "lib") for p in nvidia.__path__))' 2>/dev/null | head -n1)
    [[ -n $d ]] && cands+=("$d")
  fi
  local seen=" "
  for d in "${cands[@]}"; do
    [[ -d $d && $seen != *" $d "* ]] || continue
    seen+="$d "
    [[ -e $d/libnvrtc.so.13 && -e $d/libcublas.so.13 ]] || { notes+="$d: no libnvrtc.so.13/libcublas.so.13; "; continue; }
    v=$(readlink -f "$d/libnvrtc.so.13" | sed -n 's/.*libnvrtc\.so\.\([0-9]*\.[0-9]*\).*/\1/p')
    [[ -z $v && -f $d/../version.json ]] && v=$(sed -n 's/.*"version" *: *"\([0-9]*\.[0-9]*\).*/\1/p' "$d/../version.json" | head -n1)
    notes+="$d: CUDA ${v:-?}; "
    if [[ -n $cudav && -n $v ]] && awk -v a="$v" -v b="$cudav" 'BEGIN {exit !(a + 0 > b + 0)}'; then
      continue # newer than the driver
    fi
    if [[ -z $best || ($v == "$cudav" && $bestv != "$cudav") ]]; then best=$d; bestv=$v; fi
  done
  # compute-sanitizer of that toolkit, else any.
  local san=""
  for c in ${best:+$best/../bin/compute-sanitizer} ${CUDA_HOME:+$CUDA_HOME/bin/compute-sanitizer} \
    /usr/local/cuda-13.0/bin/compute-sanitizer /usr/local/cuda/bin/compute-sanitizer \
    /usr/local/cuda/compute-sanitizer/compute-sanitizer "$(command -v compute-sanitizer 2>/dev/null)"; do
    [[ -n $c && -x $c ]] && { san=$(readlink -f "$c"); break; }
  done
  local ld=""
  for d in "$best" "$nccl_dir"; do [[ -n $d ]] && ld+="$d:"; done
  ld+=${LD_LIBRARY_PATH:-}
  {
    printf 'export LD_LIBRARY_PATH=%q\n' "${ld%:}"
    printf 'export NCF_PTX_CACHE=/tmp/ncf-ptx\n'
    printf 'TORCH_PY=%q\nPY=%q\nSANITIZER=%q\nNCCL_DIR=%q\nCUDA_DIR=%q\n' "$torch_py" "$py" "$san" "$nccl_dir" "$best"
    # Headers for NVRTC (fp16/bf16): the toolkit's include/, or the pip layout's.
    [[ -n $best && -f $best/../include/cuda_fp16.h ]] && printf 'export NCF_NVRTC_HOME=%q\n' "$(readlink -f "$best/..")"
  } > "$W/env.sh"
  echo "GPU: ${gpu:-none} driver ${drv:-none} (CUDA ${cudav:-?}) ${mem:-} compute mode ${mode:-?}"
  echo "python (torch): ${torch_py:-not found} ${torch_v:-}"
  echo "python: ${py:-not found}"
  echo "NCCL lib dir: ${nccl_dir:-not found}"
  echo "CUDA lib dir: ${best:-not found} (CUDA ${bestv:-?}); candidates: ${notes:-none}"
  echo "compute-sanitizer: ${san:-not found}"
  echo "LD_LIBRARY_PATH=${ld%:}"
  jobj gpu="$gpu" driver="$drv" driver_cuda="$cudav" memory="$mem" compute_mode="$mode" \
    torch_python="$torch_py" torch="$torch_v" python="$py" nccl_lib_dir="$nccl_dir" cuda_lib_dir="$best" \
    cuda_lib_version="$bestv" cuda_candidates="$notes" compute_sanitizer="$san" ld_library_path="${ld%:}" \
    commit="$(head -c 200 "$NCF_DEVICE_DIR/COMMIT" 2>/dev/null)" > "$W/$STAGE.json"
  local missing=""
  for c in ncf-train ncf-cuda-check ncf-devcheck; do [[ -x $B/$c ]] || missing+=" $c"; done
  [[ -e $DATA ]] || missing+=" $DATA"
  if [[ -n $missing ]]; then
    finish fail "missing (run scripts/device-pack.sh and carry .device/...):$missing"
  elif [[ $HAVE_GPU != 1 ]]; then
    finish no-gpu "no GPU; binaries and data present; python ${py:-none}, torch ${torch_py:-none}"
  elif [[ $mode == *Exclusive* ]]; then
    finish fail "$gpu in compute mode $mode: two processes (the 2-rank stages) cannot share it"
  else
    finish pass "$gpu, driver $drv (CUDA $cudav); CUDA libs ${best:-?}; NCCL ${nccl_dir:-?}; torch ${torch_py:-none}"
  fi
}

stage_nccl_load() {
  local rc out
  out=$("$B/ncf-cuda-check" --nccl-version --json "$W/$STAGE.json" 2> "$W/$STAGE.err")
  rc=$?
  echo "$out"
  cat "$W/$STAGE.err"
  if ((rc == 0)); then
    finish pass "loaded without a libnccl.so link: $out"
  elif [[ $HAVE_GPU != 1 ]]; then
    ERR_SAMPLE=$W/$STAGE.err dry_verdict "ncf-cuda-check --nccl-version" "$rc" "$W/$STAGE.err"
  else
    finish fail "$(head -c 400 "$W/$STAGE.err")"
  fi
}

stage_nccl_1rank() {
  local m rcs=() args=()
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
    ERR_SAMPLE=$W/1r-nccl.err dry_verdict "3 runs of ncf-train (plain, plain, --nccl)" \
      "${rcs[0]}" "$W/1r-plain.err" "${rcs[1]}" "$W/1r-plain2.err" "${rcs[2]}" "$W/1r-nccl.err"
    return
  fi
  local v
  v=$("$B/ncf-devcheck" runs --ref "plain=${rcs[0]}:$W/1r-plain.jsonl" --ref "plain2=${rcs[1]}:$W/1r-plain2.jsonl" \
    --run "nccl=${rcs[2]}:$W/1r-nccl.jsonl" --stderr "$W/1r-nccl.err" --ranks 1 --out "$W/$STAGE.json")
  finish "${v%% *}" "${v#* }"
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
    ERR_SAMPLE=$W/2r-0.err dry_verdict "2 ranks of ncf-train --share-gpu" "$rc0" "$W/2r-0.err" "$rc1" "$W/2r-1.err"
    return
  fi
  local refs=(--ref "plain=0:$W/1r-plain.jsonl")
  [[ -s $W/1r-plain2.jsonl ]] && refs+=(--ref "plain2=0:$W/1r-plain2.jsonl")
  local v
  v=$("$B/ncf-devcheck" runs "${refs[@]}" --run "2 ranks=$rc0:$W/2r-0.jsonl" \
    --stderr "$W/2r-0.err" --stderr "$W/2r-1.err" --ranks 2 --out "$W/$STAGE.json")
  local net
  net=$(grep -hoE "Using network [A-Za-z]+|NET/Socket : Using \[[0-9]+\][a-z0-9]+" "$W/2r-0.err" | sort -u | tr '\n' ' ')
  if ((rc1 != 0)); then
    finish fail "rank 1 exited $rc1; ${v#* }"
  else
    finish "${v%% *}" "${v#* }${net:+ (NCCL: $net)}"
  fi
}

stage_nccl_kill() {
  local PIDS=() t0 tk rc0 rc1 i
  two_ranks 2k 29537 --preset ml1m --precision fp32 --epochs 30 --seed 7 --no-checkpoint --quiet --rendezvous-timeout 10
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
      ERR_SAMPLE=$W/2k-0.err dry_verdict "2 ranks of ncf-train --share-gpu (kill test)" "$rc0" "$W/2k-0.err" "$rc1" "$W/2k-1.err"
    else
      finish fail "a rank ended before rank 1 could be killed (rank 0 exit $rc0, rank 1 exit $rc1): $(first_error "$W/2k-0.err") $(first_error "$W/2k-1.err")"
    fi
    return
  fi
  kill -9 "${PIDS[1]}"
  tk=$(date +%s.%N)
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
  local dt
  dt=$(awk -v a="$tk" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  echo "rank 0: exit $rc0, $dt s after the kill"
  tail -n 4 "$W/2k-0.err"
  local v
  v=$("$B/ncf-devcheck" kill --killed 1 --rc "$rc0" --seconds "$dt" --limit 30 --stderr "$W/2k-0.err" --out "$W/$STAGE.json")
  finish "${v%% *}" "${v#* }"
}

stage_parity() {
  local rc
  "$B/ncf-cuda-check" --json "$W/$STAGE.json" --verbose > "$W/parity.txt" 2> "$W/parity.err"
  rc=$?
  tail -n 40 "$W/parity.txt"
  tail -n 3 "$W/parity.err"
  if [[ $HAVE_GPU != 1 ]]; then
    ERR_SAMPLE=$W/parity.err dry_verdict "ncf-cuda-check" "$rc" "$W/parity.err"
  elif ((rc == 0)); then
    finish pass "$(tail -n 1 "$W/parity.txt")"
  else
    finish fail "$(grep -c '^FAIL' "$W/parity.txt") checks failed: $(grep -m3 '^FAIL' "$W/parity.txt" | tr '\n' ';' | cut -c1-400) $(tail -n 1 "$W/parity.err")"
  fi
}

stage_ml1m() {
  local rc hr
  train "$DATA" -o "$W/ml1m.safetensors" --force --device cuda --preset ml1m --no-checkpoint --quiet \
    > "$W/ml1m.jsonl" 2> "$W/ml1m.err"
  rc=$?
  tail -n 2 "$W/ml1m.jsonl"
  tail -n 3 "$W/ml1m.err"
  if [[ $HAVE_GPU != 1 ]]; then
    ERR_SAMPLE=$W/ml1m.err dry_verdict "ncf-train --preset ml1m" "$rc" "$W/ml1m.err"
    return
  fi
  hr=$(grep -o '"best_hr":[0-9.e-]*' "$W/ml1m.jsonl" | tail -n 1 | cut -d: -f2)
  local last
  last=$(grep '"best_hr"' "$W/ml1m.jsonl" | tail -n 1)
  { echo '{"epochs": ['; grep '^{"epoch"' "$W/ml1m.jsonl" | paste -sd, -; echo '], "summary":'; echo "${last:-null}"; echo '}'; } > "$W/$STAGE.json"
  if ((rc == 0)) && awk -v h="${hr:-0}" 'BEGIN {exit !(h >= 0.65)}'; then
    finish pass "best HR@10 $hr (tuned preset; 0.7066 on the H200 before)"
  else
    finish fail "exit $rc, best HR@10 ${hr:-none} (expected >= 0.65): $(first_error "$W/ml1m.err")"
  fi
}

stage_sanitizer() {
  local tool rc res="" bad=0 cut=0 prec
  if [[ -z ${SANITIZER:-} || $HAVE_GPU != 1 ]]; then
    if [[ $HAVE_GPU != 1 ]]; then
      # The command it would wrap still has to accept its flags.
      "$B/ncf-cuda-check" --precision fp32 --no-golden > /dev/null 2> "$W/san.err"
      ERR_SAMPLE=$W/san.err dry_verdict "ncf-cuda-check --no-golden (compute-sanitizer: ${SANITIZER:-not found})" "$?" "$W/san.err"
    else
      finish skipped "compute-sanitizer not found (searched the CUDA toolkit's bin/, /usr/local/cuda*/bin, PATH)"
    fi
    return
  fi
  for tool in memcheck racecheck; do
    local lim=45 kn=(--kernel-name kns=ncf_)
    prec=fp32,bf16
    [[ $tool == racecheck ]] && { lim=35; prec=fp32; }
    timeout -k 3 "$lim" "$SANITIZER" --tool "$tool" --error-exitcode 86 --print-limit 20 "${kn[@]}" \
      "$B/ncf-cuda-check" --precision "$prec" --no-golden > "$W/san-$tool.txt" 2>&1
    rc=$?
    if ((rc != 0)) && grep -qiE "unrecognized option|invalid.*kernel-name|unknown option" "$W/san-$tool.txt"; then
      echo "$tool: no --kernel-name filter in this compute-sanitizer: checking every kernel"
      timeout -k 3 "$lim" "$SANITIZER" --tool "$tool" --error-exitcode 86 --print-limit 20 \
        "$B/ncf-cuda-check" --precision "$prec" --no-golden > "$W/san-$tool.txt" 2>&1
      rc=$?
    fi
    local errs
    errs=$(grep -o "ERROR SUMMARY: [0-9]* error" "$W/san-$tool.txt" | tail -n 1)
    tail -n 5 "$W/san-$tool.txt"
    case $rc in
      0) res+="$tool ($prec) clean${errs:+ ($errs)}; " ;;
      86) bad=1; res+="$tool ($prec) found errors: $errs $(grep -m2 -E '^========= (Invalid|Race|Error)' "$W/san-$tool.txt" | tr '\n' ' '); " ;;
      124 | 137) cut=1; res+="$tool ($prec) cut at $lim s${errs:+ ($errs)}; " ;;
      *) bad=1; res+="$tool ($prec) exit $rc (checks failed?): $(tail -n 1 "$W/san-$tool.txt"); " ;;
    esac
  done
  jobj sanitizer="$SANITIZER" result="$res" > "$W/$STAGE.json"
  if ((bad)); then finish fail "$res"; elif ((cut)); then finish timeout "$res"; else finish pass "$res"; fi
}

stage_bench() {
  local rc
  "$B/ncf-cuda-check" --bench --json "$W/$STAGE.json" > "$W/bench.txt" 2> "$W/bench.err"
  rc=$?
  tail -n 3 "$W/bench.err"
  if [[ $HAVE_GPU != 1 ]]; then
    ERR_SAMPLE=$W/bench.err dry_verdict "ncf-cuda-check --bench" "$rc" "$W/bench.err"
  elif ((rc == 0)); then
    finish pass "samples/s: $(grep -oE '"(precision|samples_per_s)": *[^,}]*' "$W/$STAGE.json" | cut -d: -f2 | paste -sd' ' | tr -d '"')"
  else
    finish fail "exit $rc: $(tail -n 1 "$W/bench.err")"
  fi
}

stage_peer() {
  local p rc runs=""
  if [[ ! -f $PEER ]]; then
    finish fail "$PEER missing (scripts/device-pack.sh copies it)"
    return
  fi
  if [[ -z ${TORCH_PY:-} ]]; then
    if [[ $HAVE_GPU != 1 ]]; then finish no-gpu "no GPU (and no Python with torch here): peer not run"; else finish skipped "no Python with torch found"; fi
    return
  fi
  if [[ $HAVE_GPU != 1 ]]; then
    finish no-gpu "no GPU: the torch peer is not run ($TORCH_PY has torch)"
    return
  fi
  : > "$W/peer.jsonl"
  for p in ${PEER_PRECISIONS-bf16 fp32}; do
    timeout 21 "$TORCH_PY" "$PEER" --synthetic 138493,26744,20000263 --epochs 2 --max-steps 12 --precision "$p" \
      2>> "$W/peer.err" | grep '"epoch": 1' >> "$W/peer.jsonl"
    echo "peer $p: exit ${PIPESTATUS[0]}"
  done
  { echo '{"runs": ['; paste -sd, "$W/peer.jsonl"; echo ']}'; } > "$W/$STAGE.json"
  runs=$(grep -oE '"(precision|step_samples_per_s)": *[^,}]*' "$W/peer.jsonl" | cut -d: -f2 | paste -sd' ' | tr -d '"')
  if [[ -s $W/peer.jsonl ]]; then finish pass "samples/s: $runs"; else finish fail "no peer result: $(tail -n 2 "$W/peer.err" | tr '\n' ' ')"; fi
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
if [[ ${DEVICE_CHECK_DRY:-} == 1 ]] || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  export HAVE_GPU=0
  # Dry also where a GPU exists: every CUDA entry point must stop at "CUDA unavailable".
  export CUDA_VISIBLE_DEVICES=
else
  export HAVE_GPU=1
fi
run_stages=(${DEVICE_CHECK_STAGES:-${STAGES[@]}})
total=0
for s in "${run_stages[@]}"; do
  [[ -n ${LIMIT[$s]:-} ]] || { log "unknown stage $s (stages: ${STAGES[*]})"; exit 2; }
  v=LIMIT_$s
  [[ -n ${!v:-} ]] && LIMIT[$s]=${!v}
  total=$((total + LIMIT[$s]))
done
if ((total > TOTAL_CAP)); then
  log "the stages' limits add up to $total s > $TOTAL_CAP s"
  exit 2
fi
jobj schema=ncf-device-check/1 started="$(date -u +%FT%TZ)" host="$(hostname 2>/dev/null)" \
  gpu_present:="$([[ $HAVE_GPU == 1 ]] && echo true || echo false)" \
  dry_run:="$([[ $HAVE_GPU == 1 ]] && echo false || echo true)" total_limit_s:="$total" \
  commit="$(head -c 200 "$NCF_DEVICE_DIR/COMMIT" 2>/dev/null)" > "$W/header.json"
log "stages: ${run_stages[*]}; limits add up to $total s (cap $TOTAL_CAP s); GPU: $([[ $HAVE_GPU == 1 ]] && echo yes || echo 'no GPU (dry run)'); work dir $W"
expect=$(IFS=,; echo "${run_stages[*]}")

merge() {
  if ! "$B/ncf-devcheck" merge --out "$OUT/results.json" --header "$W/header.json" --expect "$expect" \
    "$W"/frag/*.json 2>> "$OUT/log.txt"; then
    # Without ncf-devcheck: the fragments (each one JSON object) joined, still well-formed JSON.
    local f sep=""
    {
      printf '{"schema":"ncf-device-check/1","merged_by":"bash (ncf-devcheck failed)","stages":['
      for f in "$W"/frag/*.json; do printf '%s' "$sep"; cat "$f"; sep=,; done
      printf ']}\n'
    } > "$OUT/results.json.tmp" && mv "$OUT/results.json.tmp" "$OUT/results.json"
  fi
}

n=0
declare -A ST SU
for s in "${run_stages[@]}"; do
  lim=${LIMIT[$s]}
  log "stage $s (limit $lim s)"
  t0=$(date +%s.%N)
  timeout -k 5 "$lim" bash "$SELF" --stage "$s" > "$W/$s.log" 2>&1
  rc=$?
  sed "s/^/  [$s] /" "$W/$s.log" >> "$OUT/log.txt"
  dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  status=$(head -n 1 "$W/$s.status" 2>/dev/null)
  summary=$(head -n 1 "$W/$s.summary" 2>/dev/null)
  if ((rc == 124 || rc == 137)); then
    status=timeout
    summary="cut at its limit of $lim s${summary:+; $summary}"
  elif [[ -z $status ]]; then
    status=error
    summary="the stage ended (exit $rc) without a verdict: $(tail -n 2 "$W/$s.log" | tr '\n' ' ')"
  fi
  detail=()
  [[ -s $W/$s.json ]] && detail=(detail_file="$W/$s.json")
  ST[$s]=$status
  SU[$s]=$summary
  jobj name="$s" status="$status" seconds:="$dt" timeout_s:="$lim" rc:="$rc" summary="$summary" \
    "${detail[@]}" > "$W/frag/$(printf %02d "$n")-$s.json"
  n=$((n + 1))
  merge
  log "stage $s: $status in $dt s: $summary"
done

rm -f "$W"/*.safetensors
tar czf "$OUT/logs.tar.gz" -C "$W" . 2>/dev/null || true
[[ -z ${NCF_DEVICE_WORK:-} ]] && rm -rf "$W"
echo
echo "=== device-check summary ($([[ $HAVE_GPU == 1 ]] && echo GPU || echo 'no GPU: dry run')) ==="
failed=0
for s in "${run_stages[@]}"; do
  printf '%-11s %-8s %s\n' "$s" "${ST[$s]}" "${SU[$s]:0:300}"
  [[ ${ST[$s]} == fail || ${ST[$s]} == error || ${ST[$s]} == timeout ]] && failed=1
done
echo "results: $OUT/results.json; log: $OUT/log.txt; stage logs: $OUT/logs.tar.gz"
exit $failed
