#!/usr/bin/env bash
# Epoch times at the paper's batch 256 (ml-1m, the authors' split): binary before vs after the
# deferred idle updates, 2 threads (and 1 thread for factors 64); one-epoch models compared by
# sha256 (the same bits are expected). Run from the repo root:
#   OLD=<ncf-train before> NEW=<ncf-train after> bash benchmarks/results/2026-11-27-deferred-idle/measure.sh > measure.jsonl
set -u
d=target/paper-grid/data
tmp=${TMPDIR:-/tmp}/deferred-idle-measure
mkdir -p "$tmp"
common="--seed 5 --epochs 1 --batch-size 256 --lr 0.001 --beta1 0.9 --beta2 0.999 --eps 1e-8 --dropout 0 --negatives 4 --negative-mode exact --no-checkpoint"
for which in old new; do
  if [[ $which == old ]]; then b=${OLD:?binary before}; else b=${NEW:?binary after}; fi
  for m in "gmf --factors 8" "mlp --layers 64,32,16,8" "neumf --factors 8 --layers 64,32,16,8" "neumf --factors 16 --layers 128,64,32,16"; do
    name=$(echo "$m" | tr -d ' -,')
    out=$($b $d -o "$tmp/$which-$name.safetensors" --force $common --threads 2 --quiet --model $m | tail -1)
    sha=$(sha256sum "$tmp/$which-$name.safetensors" | cut -c1-16)
    echo "{\"binary\": \"$which\", \"model\": \"$m\", \"threads\": 2, \"sha256\": \"$sha\", \"summary\": $out}"
  done
  for tf in "2 32" "2 64" "1 64"; do
    set -- $tf
    th=$1 f=$2
    l="$((8*f)),$((4*f)),$((2*f)),$f"
    s=$(timeout 30 $b $d -o "$tmp/x.safetensors" --force $common --threads $th --model neumf --factors $f --layers $l 2>&1 >/dev/null | tr '\r' '\n' | grep -a -o "before epoch 0 step [0-9]*" | tail -1 | grep -o "[0-9]*$")
    echo "{\"binary\": \"$which\", \"model\": \"neumf --factors $f --layers $l\", \"threads\": $th, \"steps_in_30s\": ${s:-null}}"
  done
done
