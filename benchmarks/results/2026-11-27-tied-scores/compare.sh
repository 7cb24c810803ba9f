#!/bin/bash
# Old rule (candidates strictly higher: ties for the held-out item) against the new one (ties
# against it) on the same models, the paper's protocol and NVIDIA's 1+100 copy of the split:
#   OLD=DIR NEW=DIR compare.sh MODEL.safetensors... > sampled-old-vs-new.jsonl
# OLD: ncf binaries of dd53bd7 (the last commit with the old rule), NEW: of the commit after.
# WORK: the paper grid's work directory (target/paper-grid: data, data-1+100).
work=${WORK:-target/paper-grid}
for m in "$@"; do
  for d in data data-1+100; do
    a=$("$OLD/ncf-eval" "$work/$d" "$m") b=$("$NEW/ncf-eval" "$work/$d" "$m")
    echo "{\"model\":\"$(basename "$m")\",\"data\":\"$d\",\"old\":$a,\"new\":$b}"
  done
done
