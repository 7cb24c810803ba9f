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
#      BIN (directory of ncf-prep, ncf-negsample, ncf-train, ncf-eval and ncf-bench-report;
#      default: a release build), DATA (the authors' split),
#      WORK (models, logs and data; default target/paper-grid), FRESH=1 (retrain every cell),
#      BATCH and LR (default 256 and 0.001, the authors' README; other values for a cell whose
#      batch size and learning rate were tuned on validation by scripts/paper-tune.sh, as the
#      paper tuned them; give such runs their own WORK and OUTDIR).
# Writes OUTDIR/runs.jsonl (one line per model: config, best epoch, HR/NDCG per protocol,
# seconds: `ncf-bench-report grid-run`) and OUTDIR/RESULTS.md (mean ± std per cell beside the
# paper's numbers: `ncf-bench-report grid`); copy the table into docs/RESULTS.md. Hours on a 2-core CPU for the full grid; minutes on a GPU.
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
  cargo build --release -q -p ncf-cli --bin ncf-prep --bin ncf-train --bin ncf-eval --bin ncf-negsample \
    -p ncf-report --bin ncf-bench-report
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
# session) resumes from its last epoch with the same bits, provided `ncf-train --check-resume`
# says the checkpoint continues this very run (the same flags, written by the same backend, so
# the same thread count; else the cell starts again); its seconds are then training +
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
    && "$bin/ncf-bench-report" grid-reuse "$stem.run.json" --epochs "$epochs" --device "$device" \
      --batch "$batch" --lr "$lr" 2>/dev/null; then
    cat "$stem.run.json" >>"$runs"
    echo "reused $stem.run.json" >&2
    exec {lock}>&-
    return
  fi
  rm -f "$stem.run.json"
  local resume=() why
  if [[ -z $fresh && -f $ckpt/checkpoint.safetensors ]]; then
    # Whether the checkpoint continues this very run, bit for bit: ncf-train says, or why not.
    # shellcheck disable=SC2086
    if why=$("$bin/ncf-train" "$ds" -o "$model" --seed "$seed" "${common[@]}" $threads "$@" \
      --resume "$ckpt" --check-resume 2>&1 >/dev/null); then
      resume=(--resume "$ckpt")
      echo "resuming $model from $ckpt" >&2
    else
      echo "$0: starting $model again: $(tail -1 <<<"$why")" >&2
    fi
  fi
  if [[ ${#resume[@]} == 0 ]]; then
    rm -rf "$ckpt"
    : >"$stem.jsonl"
  fi
  local t0 t1
  t0=$(date +%s%3N)
  # shellcheck disable=SC2086
  "$bin/ncf-train" "$ds" -o "$model" --force --seed "$seed" "${common[@]}" $threads \
    "${resume[@]}" "$@" >>"$stem.jsonl"
  t1=$(date +%s%3N)
  "$bin/ncf-eval" "$ds" "$model" --full --device "$device" >"$stem.full.json"
  "$bin/ncf-eval" "$ds100" "$model" --device "$device" >"$stem.nvidia.json"
  local resumed=()
  [[ ${#resume[@]} == 0 ]] || resumed=(--resumed)
  # The cell's record (its log rewritten with each epoch once); it fails unless EPOCHS ran.
  "$bin/ncf-bench-report" grid-run "$stem.jsonl" --model "$name" --factors "$f" --seed "$seed" \
    --epochs "$epochs" --device "$device" --batch "$batch" --lr "$lr" ${THREADS:+--threads "$THREADS"} \
    "${resumed[@]}" --wall-ms $((t1 - t0)) --full "$stem.full.json" --nvidia "$stem.nvidia.json" \
    >"$stem.run.json.tmp"
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

"$bin/ncf-bench-report" grid "$runs" --epochs "$epochs" >"$out/RESULTS.md"
cat "$out/RESULTS.md"
