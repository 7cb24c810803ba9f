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
#      WORK (models, logs and data; default target/paper-grid), FRESH=1 (retrain every cell),
#      BATCH and LR (default 256 and 0.001, the authors' README; other values for a cell whose
#      batch size and learning rate were tuned on validation by scripts/paper-tune.sh, as the
#      paper tuned them; give such runs their own WORK and OUTDIR).
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
batch=${BATCH:-256}
lr=${LR:-0.001}
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

# shellcheck source=scripts/paper-recipe.sh
source scripts/paper-recipe.sh
common=(--epochs "$epochs" --batch-size "$batch" --lr "$lr" "${paper_recipe[@]}"
  --device "$device" --quiet)

# Each cell keeps its result beside its model (STEM.run.json) and a later run of the grid reuses
# it when the epochs, device, batch size and learning rate match (FRESH=1 retrains every cell; a
# pre-trained NeuMF is
# retrained when its GMF or MLP is newer). Training checkpoints at every epoch end into
# STEM.safetensors.ckpt (removed when it completes), so a cell that was stopped (SIGTERM, a lost
# session) resumes from its last epoch with the same bits, provided the checkpoint was written
# with the same thread count, batch size and learning rate (else the cell starts again); its
# seconds are then training +
# evaluation time summed over the pieces, not wall time. A cell is locked (STEM.lock) while it
# trains: runs of the grid side by side must take different cells (e.g. different SEEDS) and
# different OUTDIRs.
train() {  # name factors seed model-flags...
  local name=$1 f=$2 seed=$3; shift 3
  local stem=$work/$name-f$f-s$seed
  local model=$stem.safetensors ckpt=$stem.safetensors.ckpt
  local lock
  exec {lock}>"$stem.lock"
  flock -n "$lock" || { echo "$0: $stem is being trained by another process" >&2; exit 1; }
  local fresh=${FRESH:-}
  case $name in
    neumf-pre*)
      for need in gmf mlp; do
        for x in "$stem.run.json" "$ckpt/checkpoint.safetensors"; do
          [[ ! -e $x || $x -nt $work/$need-f$f-s$seed.safetensors ]] || fresh=1
        done
      done ;;
  esac
  if [[ -z $fresh && -f $stem.run.json && -f $model && ! -e $ckpt ]] \
    && python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))
sys.exit(r.get("epochs") != int(sys.argv[2]) or r.get("device") != sys.argv[3]
         or r.get("batch", 256) != int(sys.argv[4]) or r.get("lr", 0.001) != float(sys.argv[5]))' \
      "$stem.run.json" "$epochs" "$device" "$batch" "$lr"; then
    cat "$stem.run.json" >>"$runs"
    echo "reused $stem.run.json" >&2
    exec {lock}>&-
    return
  fi
  rm -f "$stem.run.json"
  local resume=() why
  if [[ -z $fresh && -f $ckpt/checkpoint.safetensors ]]; then
    # The checkpoint's backend, epoch, batch size and learning rate, against this run's.
    if why=$(python3 - "$ckpt/checkpoint.safetensors" "$device" "${THREADS:-$(nproc)}" "$epochs" \
      "$batch" "$lr" <<'EOF'
import json, struct, sys
path, device, threads, epochs, batch, lr = sys.argv[1:7]
with open(path, "rb") as f:
    head = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
meta = json.loads(head["__metadata__"]["ncf_checkpoint"])
t = int(threads)
want = f"cpu ({t} thread{'' if t == 1 else 's'})"
if device == "cpu" and meta["backend"] != want:
    print(f"written by {meta['backend']}, this run is {want}")
    sys.exit(1)
if meta["position"]["epoch"] > int(epochs):
    print(f"at epoch {meta['position']['epoch']}, beyond EPOCHS={epochs}")
    sys.exit(1)
cfg = meta["train_config"]
if cfg["batch_size"] != int(batch) or abs(cfg["lr"] - float(lr)) > 1e-6 * float(lr):
    print(f"at batch {cfg['batch_size']}, lr {cfg['lr']:g}; this run is batch {batch}, lr {lr}")
    sys.exit(1)
EOF
    ); then
      resume=(--resume "$ckpt")
      echo "resuming $model from $ckpt" >&2
    else
      echo "$0: starting $model again: its checkpoint was $(tail -1 <<<"$why")" >&2
    fi
  fi
  if [[ ${#resume[@]} == 0 ]]; then
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
    "${THREADS:-}" "${#resume[@]}" "$batch" "$lr" >"$stem.run.json.tmp" <<'EOF'
import json, os, sys
log, name, f, seed, t0, t1, full, nv, epochs, device, threads, resumed, batch, lr = sys.argv[1:15]
raw = [l for l in open(log) if l.strip()]
lines = [json.loads(l) for l in raw]
s = lines[-1]
if s.get("epochs_run") != int(epochs):
    sys.exit(f"{log}: {s.get('epochs_run')} epochs run, EPOCHS is {epochs}")
# An epoch repeated after a hard kill (its line printed, its checkpoint not yet written) is
# logged twice: keep the last line of each epoch, in order, then the summary.
by_epoch = {l["epoch"]: r for l, r in zip(lines, raw) if "epoch" in l}
with open(log + ".tmp", "w") as out:
    out.writelines([by_epoch[e] for e in sorted(by_epoch)] + [raw[-1]])
os.replace(log + ".tmp", log)
full, nv = json.loads(full), json.loads(nv)
resumed = resumed != "0"
secs = s["train_time_s"] + s["eval_time_s"] if resumed else float(t1) - float(t0)
print(json.dumps({"model": name, "factors": int(f), "seed": int(seed),
                  "best_epoch": s["best_epoch"], "hr": s["best_hr"], "ndcg": s["best_ndcg"],
                  "nvidia_hr": nv["hr"], "nvidia_ndcg": nv["ndcg"],
                  "full_hr": full["hr"], "full_ndcg": full["ndcg"],
                  "seconds": round(secs, 1), "epochs": int(epochs), "device": device,
                  "batch": int(batch), "lr": float(lr),
                  "threads": int(threads) if threads else None, "resumed": resumed}))
EOF
  mv "$stem.run.json.tmp" "$stem.run.json"
  cat "$stem.run.json" >>"$runs"
  tail -1 "$runs" >&2
  exec {lock}>&-
}

for f in $factors; do
  for seed in $seeds; do
    for m in $models; do
      case $m in
        gmf | mlp | neumf) paper_model "$m" "$f"; train "$m" "$f" "$seed" "${paper_model_flags[@]}" ;;
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
