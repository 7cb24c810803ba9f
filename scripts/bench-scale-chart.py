#!/usr/bin/env python3
"""Chart and table of a `make bench-scale` run: wall time and peak RSS of each tool against rows.

Usage: scripts/bench-scale-chart.py RESULTS.tsv OUT.svg OUT.md

RESULTS.tsv is scripts/bench-scale.sh's (one line per measurement; the latest line of each
(size, step) is used). The SVG has two log-log panels (wall seconds, peak RSS in MB, one line per
step, the 8 GB bound dashed); the markdown table has one row per step and, per size, the wall
time, the peak RSS (of which mapped file pages) and, last, time per interaction at the largest
size over that at the smallest. Steps that failed (`STEP-failed`, their errors in
results-errors.txt) are in the table, not drawn. Plain SVG, no dependencies.
"""
import csv
import math
import sys

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def load(path):
    latest = {}
    with open(path) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            latest[(r["size"], r["step"])] = r
    steps, sizes = [], {}
    for (size, step), r in latest.items():
        if step not in steps:
            steps.append(step)
        sizes[size] = int(r["interactions"])
    order = sorted(sizes, key=sizes.get)
    return latest, steps, order, sizes


def panel(x0, title, ylabel, series, rows, bound=None, w=460, h=340):
    xs = [math.log10(r) for r in rows]
    ys = [math.log10(v) for _, pts in series for _, v in pts if v > 0]
    if bound:
        ys.append(math.log10(bound))
    lx = (math.floor(min(xs) * 2) / 2, math.ceil(max(xs) * 2) / 2)
    ly = (math.floor(min(ys)), math.ceil(max(ys)))
    L, T, R, B = 62, 40, w - 15, h - 50

    def px(x):
        return L + (math.log10(x) - lx[0]) / (lx[1] - lx[0]) * (R - L)

    def py(y):
        return B - (math.log10(y) - ly[0]) / (ly[1] - ly[0]) * (B - T)

    out = [f'<g transform="translate({x0},0)">',
           f'<text x="{w/2}" y="22" text-anchor="middle" font-size="15">{title}</text>',
           f'<rect x="{L}" y="{T}" width="{R-L}" height="{B-T}" fill="none" stroke="#888"/>']
    for e in range(ly[0], ly[1] + 1):
        y = B - (e - ly[0]) / (ly[1] - ly[0]) * (B - T)
        out.append(f'<line x1="{L}" x2="{R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{L-6}" y="{y+4:.1f}" text-anchor="end" font-size="11">{10**e:g}</text>')
    for r in rows:
        x = px(r)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{T}" y2="{B}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{B+16}" text-anchor="middle" font-size="11">{r/1e6:,.0f}M</text>')
    out.append(f'<text x="{(L+R)/2}" y="{h-12}" text-anchor="middle" font-size="12">interactions</text>')
    out.append(f'<text x="14" y="{(T+B)/2}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 14 {(T+B)/2})">{ylabel}</text>')
    if bound:
        y = py(bound)
        out.append(f'<line x1="{L}" x2="{R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#000" stroke-dasharray="5,4"/>')
        out.append(f'<text x="{R-4}" y="{y-4:.1f}" text-anchor="end" font-size="11">8 GB</text>')
    for i, (name, pts) in enumerate(series):
        c = COLORS[i % len(COLORS)]
        pts = [(px(r), py(v)) for r, v in pts if v > 0]
        out.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
                   % (c, " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)))
        for x, y in pts:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{c}"/>')
    out.append("</g>")
    return out


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    latest, steps, order, sizes = load(sys.argv[1])
    rows = [sizes[s] for s in order]

    drawn = [step for step in steps if not step.endswith("-failed")]

    def series(field, scale=1.0):
        return [(step, [(sizes[s], float(latest[(s, step)][field]) * scale)
                        for s in order if (s, step) in latest]) for step in drawn]

    w = 460
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2*w+170}" height="340" '
           'font-family="sans-serif">', '<rect width="100%" height="100%" fill="white"/>']
    svg += panel(0, "wall time", "seconds", series("wall_s"), rows)
    svg += panel(w, "peak RSS", "MB", series("peak_rss_mb"), rows, bound=8192)
    for i, step in enumerate(drawn):
        y = 60 + 20 * i
        svg.append(f'<line x1="{2*w+8}" x2="{2*w+28}" y1="{y}" y2="{y}" '
                   f'stroke="{COLORS[i % len(COLORS)]}" stroke-width="2"/>')
        svg.append(f'<text x="{2*w+33}" y="{y+4}" font-size="12">{step}</text>')
    svg.append("</svg>")
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(svg) + "\n")

    head = "| step | " + " | ".join(f"{sizes[s]:,} rows: wall, peak RSS (file pages)" for s in order)
    md = [head + " | time per row, largest / smallest |",
          "|---" * (len(order) + 2) + "|"]
    for step in steps:
        cells, per_row = [], []
        for s in order:
            r = latest.get((s, step))
            if r is None:
                cells.append("—")
                continue
            cells.append(f'{float(r["wall_s"]):,.1f} s, {int(r["peak_rss_mb"]):,} MB '
                         f'({int(r["peak_file_mb"]):,} MB)')
            per_row.append(float(r["wall_s"]) / sizes[s])
        ratio = f"{per_row[-1] / per_row[0]:.2f}×" if len(per_row) > 1 else "—"
        md.append(f"| {step} | " + " | ".join(cells) + f" | {ratio} |")
    with open(sys.argv[3], "w") as f:
        f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
