#!/usr/bin/env bash
# The NCF paper's ml-1m grid (He et al., WWW'17, Table 2 and Figure 4) on the authors' own split:
# GMF, MLP, NeuMF without and with pre-training, for predictive factors 8/16/32/64, over several
# seeds, with the authors' hyper-parameters (batch 256, Adam lr 0.001, 4 exact negatives, no
# dropout, no L2, 20 epochs; pre-trained NeuMF with SGD lr 0.001 (the paper's text; Adam as the
# authors' README: neumf-pre-adam), alpha 0.5; MLP tower
# [8f, 4f, 2f, f]). Each model is evaluated with the paper's protocol (its 99 negatives, by
# ncf-train), with NVIDIA's (the same held-out items among 100 sampled negatives: a copy of the
# dataset written by ncf-negsample; models fit it by their split fingerprint) and with full ranking
# over every unseen item (ncf-eval --full): how sampled and full metrics relate.
#
#   scripts/paper-grid.sh [OUTDIR]          (default: benchmarks/results/<date>-paper-grid)
#
# Env: FACTORS (default "8 16 32 64"), SEEDS (default "1 2 3"), EPOCHS (default 20),
#      MODELS (default "gmf mlp neumf neumf-pre"; also neumf-pre-adam: pre-trained NeuMF with
#      Adam as the authors' README runs it), THREADS, DEVICE (cpu|cuda, default cpu),
#      BIN (directory of the ncf binaries; default: a release build), DATA (the authors' split),
#      WORK (models, logs and data; default target/paper-grid), FRESH=1 (retrain every cell).
# Writes OUTDIR/runs.jsonl (one line per model: config, best epoch, HR/NDCG per protocol,
# seconds) and OUTDIR/RESULTS.md (mean ± std per cell beside the paper's numbers); copy the
# table into docs/RESULTS.md. Hours on a 2-core CPU for the full grid; minutes on a GPU.
# Rerunning it after an interruption skips the finished cells and resumes the stopped one.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/$(date -u +%F)-paper-grid}
factors=${FACTORS:-8 16 32 64}
seeds=${SEEDS:-1 2 3}
epochs=${EPOCHS:-20}
models=${MODELS:-gmf mlp neumf neumf-pre}
device=${DEVICE:-cpu}
data=${DATA:-../shared/datasets/ncf-ml-1m}
threads=${THREADS:+--threads $THREADS}
if [[ -n ${BIN:-} ]]; then
  bin=$BIN
else
  cargo build --release -q -p ncf-cli --bin ncf-prep --bin ncf-train --bin ncf-eval --bin ncf-negsample
  bin=target/release
fi
work=${WORK:-target/paper-grid}
mkdir -p "$out" "$work"
ds=$work/data
[[ -d $ds ]] || "$bin/ncf-prep" "$data" -o "$ds" >&2
# NVIDIA's protocol: the same split, 100 sampled negatives per test user instead of the paper's 99.
ds100=$work/data-1+100
[[ -d $ds100 ]] || "$bin/ncf-negsample" "$ds" --test-negatives 100 --seed 1 --force -o "$ds100" >&2
runs=$out/runs.jsonl
: >"$runs"

common=(--epochs "$epochs" --batch-size 256 --lr 0.001 --beta1 0.9 --beta2 0.999 --eps 1e-8
  --dropout 0 --negatives 4 --negative-mode exact --device "$device" --quiet)

# Each cell keeps its result beside its model (STEM.run.json) and a later run of the grid reuses
# it when the epochs and device match (FRESH=1 retrains every cell). Training checkpoints at
# every epoch end into STEM.safetensors.ckpt (removed when it completes), so a cell that was
# stopped (SIGTERM, a lost session) resumes from its last epoch with the same bits; its seconds
# are then training + evaluation time summed over the pieces, not wall time.
train() {  # name factors seed model-flags...
  local name=$1 f=$2 seed=$3; shift 3
  local stem=$work/$name-f$f-s$seed
  local model=$stem.safetensors ckpt=$stem.safetensors.ckpt
  if [[ -z ${FRESH:-} && -f $stem.run.json && -f $model && ! -e $ckpt ]] \
    && python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))
sys.exit(r.get("epochs") != int(sys.argv[2]) or r.get("device") != sys.argv[3])' \
      "$stem.run.json" "$epochs" "$device"; then
    cat "$stem.run.json" >>"$runs"
    echo "reused $stem.run.json" >&2
    return
  fi
  rm -f "$stem.run.json"
  local resume=()
  if [[ -z ${FRESH:-} && -f $ckpt/checkpoint.safetensors ]]; then
    resume=(--resume "$ckpt")
    echo "resuming $model from $ckpt" >&2
  else
    rm -rf "$ckpt"
    : >"$stem.jsonl"
  fi
  local t0 t1
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  "$bin/ncf-train" "$ds" -o "$model" --force --seed "$seed" "${common[@]}" $threads \
    "${resume[@]}" "$@" >>"$stem.jsonl"
  t1=$(date +%s.%N)
  local full nv
  full=$("$bin/ncf-eval" "$ds" "$model" --full --device "$device")
  nv=$("$bin/ncf-eval" "$ds100" "$model" --device "$device")
  python3 - "$stem.jsonl" "$name" "$f" "$seed" "$t0" "$t1" "$full" "$nv" "$epochs" "$device" \
    "${THREADS:-}" "${#resume[@]}" >"$stem.run.json.tmp" <<'EOF'
import json, sys
log, name, f, seed, t0, t1, full, nv, epochs, device, threads, resumed = sys.argv[1:13]
s = [json.loads(l) for l in open(log) if l.strip()][-1]
full, nv = json.loads(full), json.loads(nv)
resumed = resumed != "0"
secs = s["train_time_s"] + s["eval_time_s"] if resumed else float(t1) - float(t0)
print(json.dumps({"model": name, "factors": int(f), "seed": int(seed),
                  "best_epoch": s["best_epoch"], "hr": s["best_hr"], "ndcg": s["best_ndcg"],
                  "nvidia_hr": nv["hr"], "nvidia_ndcg": nv["ndcg"],
                  "full_hr": full["hr"], "full_ndcg": full["ndcg"],
                  "seconds": round(secs, 1), "epochs": int(epochs), "device": device,
                  "threads": int(threads) if threads else None, "resumed": resumed}))
EOF
  mv "$stem.run.json.tmp" "$stem.run.json"
  cat "$stem.run.json" >>"$runs"
  tail -1 "$runs" >&2
}

for f in $factors; do
  layers="$((8 * f)),$((4 * f)),$((2 * f)),$f"
  for seed in $seeds; do
    for m in $models; do
      case $m in
        gmf) train gmf "$f" "$seed" --model gmf --factors "$f" ;;
        mlp) train mlp "$f" "$seed" --model mlp --layers "$layers" ;;
        neumf) train neumf "$f" "$seed" --model neumf --factors "$f" --layers "$layers" ;;
        neumf-pre)
          for need in gmf mlp; do
            [[ -f $work/$need-f$f-s$seed.safetensors ]] \
              || { echo "$0: neumf-pre needs $need in MODELS before it" >&2; exit 1; }
          done
          train neumf-pre "$f" "$seed" --model neumf --optimizer sgd --alpha 0.5 \
            --pretrain-gmf "$work/gmf-f$f-s$seed.safetensors" \
            --pretrain-mlp "$work/mlp-f$f-s$seed.safetensors" ;;
        neumf-pre-adam)
          # The authors' README runs pre-trained NeuMF with `--learner adam` (lr 0.001), where
          # the paper's text says vanilla SGD: both are reported.
          for need in gmf mlp; do
            [[ -f $work/$need-f$f-s$seed.safetensors ]] \
              || { echo "$0: neumf-pre-adam needs $need in MODELS before it" >&2; exit 1; }
          done
          train neumf-pre-adam "$f" "$seed" --model neumf --optimizer adam --alpha 0.5 \
            --pretrain-gmf "$work/gmf-f$f-s$seed.safetensors" \
            --pretrain-mlp "$work/mlp-f$f-s$seed.safetensors" ;;
        *) echo "$0: unknown model $m" >&2; exit 2 ;;
      esac
    done
  done
done

python3 scripts/paper-grid-table.py "$runs" "$epochs" >"$out/RESULTS.md"
cat "$out/RESULTS.md"
