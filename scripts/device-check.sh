#!/usr/bin/env bash
# The one prepared GPU check (issue 4/9). Runs ON the lent GPU machine (no Rust, no network) from the
# repository root, over binaries built here by scripts/device-pack.sh and carried in .device/:
#   1. every CUDA kernel's parity test and the CPU/GPU golden loss curve, in every precision;
#   2. a short ml-1m training run on the NCF paper's split (HR@10 on 1+99 candidates), and the
#      same run through NCCL on one rank (--nccl) compared bit for bit with the plain run;
#   3. training throughput per precision on the ml-20m shape, ncf and the PyTorch peer side by side.
# Prints a short table last; writes results.json (GPU, driver, versions, every figure) and logs to $OUT.
# Budget: under 8 minutes. Usage (device tool): bash scripts/device-check.sh  [OUT defaults to ./out]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
D=.device; B=$D/bin
log() { echo "[device-check $(date +%T)] $*" | tee -a "$OUT/log.txt" >&2; }
t_start=$(date +%s)

# Libraries: CUDA toolkit (NVRTC, cuBLAS) and NCCL from PyTorch's pip packages.
nccl_lib=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null || true)
cu13_lib=$(python3 -c 'import nvidia, os; p=[os.path.join(x,"cu13","lib") for x in nvidia.__path__]; print(":".join(q for q in p if os.path.isdir(q)))' 2>/dev/null || true)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${cu13_lib}:${nccl_lib}:${LD_LIBRARY_PATH:-}
export NCF_PTX_CACHE=/tmp/ncf-ptx CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
log "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  nvcc --version | tail -n 2
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
} > /tmp/ncf-env.txt 2>&1
cat /tmp/ncf-env.txt | tee -a "$OUT/log.txt"

# 1. Parity: every kernel vs its CPU reference, golden 10-step loss curve, every precision.
log "parity"
timeout ${PARITY_S:-100} $B/ncf-cuda-check --json "$OUT/parity.json" --verbose 2>&1 | tee "$OUT/parity.txt" | tail -n 60
parity_rc=${PIPESTATUS[0]}
log "parity exit $parity_rc"

# 2. ml-1m on the paper's split.
if [ -z "${SKIP_ML1M:-}" ]; then
log "ml-1m"
timeout ${TRAIN_S:-90} $B/ncf-train $D/data/ncf-ml-1m -o /tmp/ml1m.safetensors --device cuda --preset ml1m \
  2>/tmp/train-ml1m.err | tee "$OUT/train-ml1m.jsonl" | tail -n 3
train_rc=${PIPESTATUS[0]}
tail -n 5 /tmp/train-ml1m.err | tee -a "$OUT/log.txt"
log "train exit $train_rc"
fi

# 2b. NCCL (issue 5): a 1-rank run through the NCCL path (--nccl) against the plain run. CUDA
# training is not bit-reproducible (atomicAdd gradient reductions), so the plain run is made twice:
# the NCCL run must differ from the plain one no more than two plain runs differ from each other
# (per-epoch loss, HR, and every user's top-10 scores from ncf-topk).
if [ -z "${SKIP_NCCL:-}" ]; then
log "nccl 1-rank"
# pip's NCCL wheel ships libnccl.so.2 only; cudarc opens libnccl.so.
mkdir -p /tmp/ncclink && [ -n "$nccl_lib" ] && ln -sf "$nccl_lib/libnccl.so.2" /tmp/ncclink/libnccl.so
for mode in plain plain2 nccl; do
  flag=""; [ $mode = nccl ] && flag="--nccl --rendezvous 127.0.0.1:29517"
  LD_LIBRARY_PATH=/tmp/ncclink:$LD_LIBRARY_PATH timeout ${NCCL_S:-60} $B/ncf-train $D/data/ncf-ml-1m \
    -o /tmp/nccl-$mode.safetensors --force --device cuda --preset ml1m --precision fp32 --epochs 2 \
    --seed 7 --no-checkpoint $flag 2>>"$OUT/nccl.err" > "$OUT/nccl-$mode.jsonl"
  echo "nccl $mode exit $?" | tee -a "$OUT/log.txt"
  $B/ncf-topk $D/data/ncf-ml-1m /tmp/nccl-$mode.safetensors --all -k 10 > /tmp/nccl-$mode.tsv 2>>"$OUT/nccl.err"
done
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
def epochs(m):
    try:
        return [json.loads(l) for l in open(f"{out}/nccl-{m}.jsonl") if '"epoch"' in l and l.startswith("{")]
    except Exception:
        return []
def scores(m):
    try:
        return [float(l.split("\t")[3]) for l in open(f"/tmp/nccl-{m}.tsv")]
    except Exception:
        return []
def diff(a, b):
    ea, eb, sa, sb = epochs(a), epochs(b), scores(a), scores(b)
    if not ea or len(ea) != len(eb) or not sa or len(sa) != len(sb):
        return None
    return {"loss": max(abs(x["loss"] - y["loss"]) for x, y in zip(ea, eb)),
            "hr": max(abs(x["hr"] - y["hr"]) for x, y in zip(ea, eb)),
            "topk_score": max(abs(x - y) for x, y in zip(sa, sb))}
noise, nccl = diff("plain", "plain2"), diff("plain", "nccl")
ok = bool(noise and nccl) and all(nccl[k] <= max(4 * noise[k], 1e-4 if k != "hr" else 0.005) for k in nccl)
res = {"plain_vs_plain2": noise, "plain_vs_nccl": nccl, "pass": ok,
       "epochs": {m: epochs(m) for m in ["plain", "plain2", "nccl"]}}
json.dump(res, open(f"{out}/nccl.json", "w"), indent=1)
print("nccl 1-rank:", "PASS" if ok else "FAIL", "noise", noise, "nccl", nccl)
PY
tail -n 3 "$OUT/nccl.err"
fi

# 3. Throughput: ncf per precision (steady-state steps, batch 2^20, NVIDIA config, ml-20m shape).
log "ncf throughput"
timeout ${BENCH_S:-90} $B/ncf-cuda-check --bench --json "$OUT/bench.json" 2>&1 | tail -n 20

# 4. The PyTorch peer, same GPU, same config.
log "peer throughput"
: > "$OUT/peer.jsonl"
for p in ${PEER_PRECISIONS-fp32 tf32 fp16 bf16}; do
  timeout ${PEER_S:-45} python3 $D/torch_neumf.py --synthetic 138493,26744,20000263 --epochs 2 --max-steps 12 --precision $p \
    2>>"$OUT/log.txt" | grep '"epoch": 1' >> "$OUT/peer.jsonl"
done
cat "$OUT/peer.jsonl"

# 5. Summary.
python3 - "$OUT" <<'PY'
import json, os, sys, subprocess
out = sys.argv[1]
def load(name):
    p = os.path.join(out, name)
    try:
        return json.load(open(p))
    except Exception as e:
        return {"error": f"{name}: {e}"}
res = {"env": open("/tmp/ncf-env.txt").read().splitlines(),
       "parity": load("parity.json"), "bench": load("bench.json"), "nccl": load("nccl.json")}
peer = {}
for line in open(os.path.join(out, "peer.jsonl")):
    j = json.loads(line); peer[j["precision"]] = j
res["peer"] = peer
tp = os.path.join(out, "train-ml1m.jsonl")
train = [json.loads(l) for l in open(tp) if l.startswith("{")] if os.path.exists(tp) else []
res["ml1m"] = train
json.dump(res, open(os.path.join(out, "results.json"), "w"), indent=1)
print("\n=== device-check summary ===")
print("\n".join(res["env"]))
par = res["parity"]
if isinstance(par, dict) and "results" in par:
    fails = [c for c in par["results"] if not c.get("pass")]
    print(f"parity: {len(par['results']) - len(fails)} pass, {len(fails)} fail")
    for c in fails[:10]:
        print("  FAIL", c)
else:
    print("parity:", par)
summ = [t for t in train if "best_hr" in t]
print("ml-1m:", summ[-1] if summ else (train[-1] if train else "no output"))
n = res["nccl"]
print("nccl 1-rank:", {k: n.get(k) for k in ("pass", "plain_vs_plain2", "plain_vs_nccl")} if isinstance(n, dict) else n)
bench = res["bench"] if isinstance(res["bench"], dict) else {}
rows = bench.get("results", [])
print(f"{'precision':10} {'ncf samples/s':>15} {'peer samples/s':>15} {'ratio':>7}")
for p in ["fp32", "tf32", "fp16", "bf16"]:
    ours = next((r.get("samples_per_s") for r in rows if r.get("precision") == p), None)
    theirs = peer.get(p, {}).get("step_samples_per_s")
    ratio = f"{ours / theirs:.2f}" if ours and theirs else "-"
    print(f"{p:10} {ours or '-':>15} {theirs or '-':>15} {ratio:>7}")
PY
log "done in $(( $(date +%s) - t_start )) s"
