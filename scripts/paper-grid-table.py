#!/usr/bin/env python3
"""Mean ± std per cell of the NCF paper grid beside the paper's numbers, as a markdown table.

    scripts/paper-grid-table.py RUNS.jsonl EPOCHS > RESULTS.md

RUNS.jsonl is what scripts/paper-grid.sh writes (one line per trained model); it can be run on
a partial file while the grid is still going.
"""
import json, statistics as st, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
paper = {  # Table 2 of the paper: NeuMF without / with pre-training, HR@10 and NDCG@10
    ("neumf", 8): (0.688, 0.410), ("neumf", 16): (0.696, 0.420),
    ("neumf", 32): (0.701, 0.425), ("neumf", 64): (0.705, 0.426),
    ("neumf-pre", 8): (0.684, 0.403), ("neumf-pre", 16): (0.707, 0.426),
    ("neumf-pre", 32): (0.726, 0.445), ("neumf-pre", 64): (0.730, 0.447),
}
# Pre-trained NeuMF trained on with Adam (the authors' README) against the same paper cell.
paper.update({("neumf-pre-adam", f): v for (m, f), v in list(paper.items()) if m == "neumf-pre"})
def ms(xs):
    return f"{st.mean(xs):.4f} ± {st.stdev(xs):.4f}" if len(xs) > 1 else f"{xs[0]:.4f}"
print(f"# NCF paper grid on the authors' ml-1m split ({sys.argv[2]} epochs)\n")
print("| model | factors | seeds | HR@10 (1+99) | NDCG@10 (1+99) | paper HR / NDCG | "
      "HR@10 (1+100) | NDCG@10 (1+100) | HR@10 full | NDCG@10 full | s per run |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
# A cell is a model, its factors, and its batch size and learning rate (runs before these were
# recorded used the authors' 256 and 0.001); a cell with others is labelled with them.
def cell(r):
    return r["model"], r["factors"], r.get("batch", 256), r.get("lr", 0.001)
cells = sorted({cell(r) for r in runs}, key=lambda c: (c[1], c[0], c[2], c[3]))
for m, f, b, lr in cells:
    rs = [r for r in runs if cell(r) == (m, f, b, lr)]
    p = paper.get((m, f))
    name = m if (b, lr) == (256, 0.001) else f"{m} (batch {b}, lr {lr:g})"
    print(f"| {name} | {f} | {len(rs)} | {ms([r['hr'] for r in rs])} | "
          f"{ms([r['ndcg'] for r in rs])} | {f'{p[0]:.3f} / {p[1]:.3f}' if p else '–'} | "
          f"{ms([r['nvidia_hr'] for r in rs])} | {ms([r['nvidia_ndcg'] for r in rs])} | "
          f"{ms([r['full_hr'] for r in rs])} | {ms([r['full_ndcg'] for r in rs])} | "
          f"{st.mean(r['seconds'] for r in rs):.0f} |")
