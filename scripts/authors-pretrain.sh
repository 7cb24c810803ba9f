#!/usr/bin/env bash
# The NCF authors' own pre-trained GMF and MLP (factors 8, the only ones they publish) scored by
# our evaluation and combined into NeuMF by our pre-training path, with SGD (the paper's text)
# and Adam (their README): does pre-trained NeuMF reach the paper's 0.684 / 0.403 from their
# models? Evidence for docs/RESULTS.md (issue 7).
#
#   scripts/authors-pretrain.sh AUTHORS_REPO OUTDIR
#
# AUTHORS_REPO: a checkout of github.com/hexiangnan/neural_collaborative_filtering (its
# Pretrain/ml-1m_GMF_8_1501651698.h5 and Pretrain/ml-1m_MLP_[64,32,16,8]_1501652038.h5).
# Env: PYTHON (a python with h5py and numpy; default python3), BIN (ncf binaries; default a
# release build), WORK (default target/paper-grid: the prepared split and its 1+100 copy, as
# scripts/paper-grid.sh makes them), THREADS (default 1), EPOCHS (default 20).
# Writes OUTDIR/components.jsonl (each imported model under the three protocols) and
# OUTDIR/neumf-pre-{sgd,adam}.jsonl (ncf-train's per-epoch log, seed 1).
set -euo pipefail
[[ $# == 2 ]] || { sed -n 2,15p "$0" >&2; exit 2; }
# Paths given relative to the caller's directory, before moving to the repository root.
abs() { [[ $1 == /* ]] && echo "$1" || echo "$PWD/$1"; }
repo=$(abs "$1") out=$(abs "$2")
[[ -z ${BIN:-} ]] || BIN=$(abs "$BIN")
[[ -z ${WORK:-} ]] || WORK=$(abs "$WORK")
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
work=${WORK:-target/paper-grid}
threads=${THREADS:-1}
epochs=${EPOCHS:-20}
if [[ -n ${BIN:-} ]]; then
  bin=$BIN
else
  cargo build --release -q -p ncf-cli --bin ncf-prep --bin ncf-train --bin ncf-eval --bin ncf-negsample
  bin=target/release
fi
ds=$work/data ds100=$work/data-1+100
[[ -d $ds ]] || "$bin/ncf-prep" ../shared/datasets/ncf-ml-1m -o "$ds" >&2
[[ -d $ds100 ]] || "$bin/ncf-negsample" "$ds" --test-negatives 100 --seed 1 --force -o "$ds100" >&2
mkdir -p "$out" "$work/authors"
gmf_h5=$repo/Pretrain/ml-1m_GMF_8_1501651698.h5
mlp_h5=$repo/Pretrain/ml-1m_MLP_[64,32,16,8]_1501652038.h5
for f in "$gmf_h5" "$mlp_h5"; do [[ -f $f ]] || { echo "$0: $f is missing" >&2; exit 1; }; done

# Templates (our layout and the split's fingerprints): one epoch of each architecture.
tmpl=(--epochs 1 --batch-size 256 --dropout 0 --negatives 4 --threads "$threads" --quiet --force)
"$bin/ncf-train" "$ds" -o "$work/authors/gmf-template.safetensors" "${tmpl[@]}" \
  --model gmf --factors 8 >/dev/null
"$bin/ncf-train" "$ds" -o "$work/authors/mlp-template.safetensors" "${tmpl[@]}" \
  --model mlp --layers 64,32,16,8 >/dev/null
"$py" scripts/keras-ncf-import.py "$gmf_h5" "$work/authors/gmf-template.safetensors" \
  "$work/authors/gmf8.safetensors"
"$py" scripts/keras-ncf-import.py "$mlp_h5" "$work/authors/mlp-template.safetensors" \
  "$work/authors/mlp8.safetensors"

: >"$out/components.jsonl"
for m in gmf8 mlp8; do
  model=$work/authors/$m.safetensors
  for name in paper nvidia full; do
    case $name in
      paper) args=("$ds" "$model") ;;
      nvidia) args=("$ds100" "$model") ;;
      full) args=("$ds" "$model" --full) ;;
    esac
    r=$("$bin/ncf-eval" "${args[@]}")
    echo "{\"model\":\"authors-$m\",\"protocol\":\"$name\",\"result\":$r}" >>"$out/components.jsonl"
  done
done
cat "$out/components.jsonl"

common=(--epochs "$epochs" --batch-size 256 --lr 0.001 --beta1 0.9 --beta2 0.999 --eps 1e-8
  --dropout 0 --negatives 4 --negative-mode exact --quiet --threads "$threads" --seed 1 --force)
for opt in sgd adam; do
  "$bin/ncf-train" "$ds" -o "$work/authors/neumf-pre-$opt.safetensors" "${common[@]}" \
    --model neumf --optimizer "$opt" --alpha 0.5 \
    --pretrain-gmf "$work/authors/gmf8.safetensors" \
    --pretrain-mlp "$work/authors/mlp8.safetensors" >"$out/neumf-pre-$opt.jsonl"
  tail -1 "$out/neumf-pre-$opt.jsonl"
done
