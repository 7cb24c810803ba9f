#!/usr/bin/env python3
"""Chart of an --expand run: item popularity and per-user counts before and after.

Usage: scripts/expand-chart.py EXPANDED_DATASET_DIR OUT.svg

Reads the dataset's meta.json (`stats.expansion`, written by `ncf-prep INPUT --expand KxM`:
each distribution sorted descending at log-spaced ranks) and draws two log-log panels, counts
divided by their mean against rank divided by the number of users / items, so that curves of the
same shape coincide. Plain SVG, no dependencies.
"""
import json
import math
import sys


def panel(x0, title, series, w=440, h=330):
    out = [f'<g transform="translate({x0},0)">',
           f'<text x="{w/2}" y="22" text-anchor="middle" font-size="15">{title}</text>']
    pts_all = [(r / s["n"], c / s["mean"]) for s, _, _ in series for r, c in s["ranked"]]
    xmin = min(p[0] for p in pts_all)
    ymin = min(p[1] for p in pts_all)
    ymax = max(p[1] for p in pts_all)
    lx = (math.log10(xmin), 0.0)
    ly = (math.floor(math.log10(ymin)), math.ceil(math.log10(ymax)))
    L, T, R, B = 60, 40, w - 15, h - 45

    def px(x):
        return L + (math.log10(x) - lx[0]) / (lx[1] - lx[0]) * (R - L)

    def py(y):
        return B - (math.log10(y) - ly[0]) / (ly[1] - ly[0]) * (B - T)

    out.append(f'<rect x="{L}" y="{T}" width="{R-L}" height="{B-T}" fill="none" stroke="#888"/>')
    for e in range(math.ceil(lx[0]), 1):
        out.append(f'<line x1="{px(10**e):.1f}" y1="{B}" x2="{px(10**e):.1f}" y2="{B+4}" stroke="#888"/>'
                   f'<text x="{px(10**e):.1f}" y="{B+17}" text-anchor="middle" font-size="11">1e{e}</text>')
    for e in range(ly[0], ly[1] + 1):
        out.append(f'<line x1="{L-4}" y1="{py(10**e):.1f}" x2="{L}" y2="{py(10**e):.1f}" stroke="#888"/>'
                   f'<text x="{L-7}" y="{py(10**e)+4:.1f}" text-anchor="end" font-size="11">1e{e}</text>')
    out.append(f'<text x="{(L+R)/2}" y="{h-8}" text-anchor="middle" font-size="12">rank / count of them (log)</text>')
    out.append(f'<text transform="translate(14,{(T+B)/2}) rotate(-90)" text-anchor="middle" font-size="12">interactions / mean (log)</text>')
    for k, (s, colour, label) in enumerate(series):
        d = " ".join(f"{px(r / s['n']):.1f},{py(c / s['mean']):.1f}" for r, c in s["ranked"])
        out.append(f'<polyline points="{d}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{R-8}" y="{T+18+16*k}" text-anchor="end" font-size="12" fill="{colour}">'
                   f'{label}: {s["n"]:,}, mean {s["mean"]:.1f}, max {s["max"]:,}</text>')
    out.append('</g>')
    return out


def main():
    ds, out = sys.argv[1], sys.argv[2]
    meta = json.load(open(f"{ds}/meta.json"))
    e = meta["stats"]["expansion"]
    spec = meta["options"].get("expand", "?")
    svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="900" height="360" font-family="sans-serif">',
           '<rect width="100%" height="100%" fill="white"/>']
    svg += panel(0, f"Item popularity, before and after --expand {spec}",
                 [(e["before"]["item_counts"], "#1f77b4", "before, items"),
                  (e["after"]["item_counts"], "#d62728", "after, items")])
    svg += panel(450, f"Interactions per user, before and after --expand {spec}",
                 [(e["before"]["user_counts"], "#1f77b4", "before, users"),
                  (e["after"]["user_counts"], "#d62728", "after, users")])
    svg.append('</svg>')
    open(out, "w").write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
