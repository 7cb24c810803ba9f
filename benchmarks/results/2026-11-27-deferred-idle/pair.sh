#!/usr/bin/env bash
# Two single-thread NeuMF factors-64 runs side by side (how the paper grid's lanes run), 30 s,
# binary before vs after: steps each reached. OLD=... NEW=... bash pair.sh >> measure.jsonl
set -u
d=target/paper-grid/data
common="--epochs 1 --batch-size 256 --lr 0.001 --beta1 0.9 --beta2 0.999 --eps 1e-8 --dropout 0 --negatives 4 --negative-mode exact --no-checkpoint --threads 1 --model neumf --factors 64 --layers 512,256,128,64"
for which in old new; do
  if [[ $which == old ]]; then b=${OLD:?}; else b=${NEW:?}; fi
  for s in 5 6; do
    (timeout 30 $b $d -o /tmp/pair-$s.safetensors --force --seed $s $common 2>&1 >/dev/null | tr '\r' '\n' | grep -a -o "before epoch 0 step [0-9]*" | tail -1 | grep -o "[0-9]*$" > /tmp/pair-$s.txt) &
  done
  wait
  echo "{\"binary\": \"$which\", \"model\": \"neumf --factors 64 --layers 512,256,128,64\", \"threads\": 1, \"side_by_side\": 2, \"steps_in_30s\": [$(cat /tmp/pair-5.txt), $(cat /tmp/pair-6.txt)]}"
done
