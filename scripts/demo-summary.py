#!/usr/bin/env python3
"""The last lines of `make demo`: where the curve is, and the model's HR@10 / NDCG@10 and training
time from ncf-train's summary line (the last JSON line of its log).

    scripts/demo-summary.py TRAIN_LOG EVAL_JSON CURVE_PNG
"""
import json
import sys

log, evaluation, curve = sys.argv[1:4]
with open(log) as f:
    summary = json.loads(f.read().strip().splitlines()[-1])
with open(evaluation) as f:
    e = json.loads(f.read())
print(f"== training curve: {curve}")
print(
    f"== model: HR@{e['k']} {e['hr']:.4f}, NDCG@{e['k']} {e['ndcg']:.4f} "
    f"({e['protocol']}, {e['candidates']} candidates per user); "
    f"trained {summary['epochs_run']} epochs in {summary['train_time_s']:.1f} s "
    f"on {summary['backend']}"
)
