#!/usr/bin/env bash
# Epoch times at the paper's batch 256 (ml-1m, the authors' split), 2 threads: binary before vs after.
set -u
d=target/paper-grid/data
common="--seed 5 --epochs 1 --batch-size 256 --lr 0.001 --beta1 0.9 --beta2 0.999 --eps 1e-8 --dropout 0 --negatives 4 --negative-mode exact --no-checkpoint --threads 2"
for b in ${OLD:?binary before} ${NEW:?binary after}; do
  for m in "gmf --factors 8" "mlp --layers 64,32,16,8" "neumf --factors 8 --layers 64,32,16,8" "neumf --factors 16 --layers 128,64,32,16"; do
    out=$($b $d -o /tmp/m.safetensors --force $common --quiet --model $m | tail -1)
    echo "{\"binary\": \"$b\", \"model\": \"$m\", \"summary\": $out}"
  done
  for f in 32 64; do
    l="$((8*f)),$((4*f)),$((2*f)),$f"
    s=$(timeout 30 $b $d -o /tmp/m.safetensors --force $common --model neumf --factors $f --layers $l 2>&1 >/dev/null | tr '\r' '\n' | grep -a -o "before epoch 0 step [0-9]*" | grep -o "[0-9]*$")
    echo "{\"binary\": \"$b\", \"model\": \"neumf --factors $f --layers $l\", \"steps_in_30s\": ${s:-null}}"
  done
done
