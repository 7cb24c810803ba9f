#!/usr/bin/env python3
"""Summarise a `cargo build --timings` report (target/cargo-timings/cargo-timing.html).

    scripts/timings-summary.py REPORT.html [TOP]

Prints the profile, wall time, units, the summed compile time (CPU-ish seconds over all units),
the share of our own crates (ncf-*) and of the arrow/parquet family, and the TOP (default 12)
slowest units, as a Markdown table for docs/BUILD.md.
"""
import json
import re
import sys


def field(html, name):
    m = re.search(r"<td>%s:</td><td>(.*?)</td>" % re.escape(name), html)
    return m.group(1) if m else "?"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    html = open(sys.argv[1], encoding="utf-8").read()
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    m = re.search(r"const UNIT_DATA = (\[.*?\]);\n", html, re.S)
    if not m:
        sys.exit(f"{sys.argv[1]}: no UNIT_DATA (not a cargo timings report?)")
    units = json.loads(m.group(1))
    total = sum(u["duration"] for u in units)
    ours = sum(u["duration"] for u in units if u["name"].startswith("ncf-"))
    arrow = sum(u["duration"] for u in units if u["name"].startswith(("arrow", "parquet")))
    print(f"profile {field(html, 'Profile')}, wall {field(html, 'Total time')}, "
          f"{field(html, 'Total units')} units, {field(html, 'Max concurrency')}")
    print(f"summed unit time {total:.0f} s: ncf-* {ours:.0f} s ({100 * ours / total:.0f} %), "
          f"arrow/parquet {arrow:.0f} s ({100 * arrow / total:.0f} %)")
    print()
    print("| unit | s |")
    print("|---|---|")
    for u in sorted(units, key=lambda u: -u["duration"])[:top]:
        target = u["target"].strip()
        name = f"{u['name']} {target}".strip()
        print(f"| {name} | {u['duration']:.1f} |")


if __name__ == "__main__":
    main()
