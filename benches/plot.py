#!/usr/bin/env python3
"""Plots time against elements for the main losses, both implementations, from the JSON lines of
`benches/compare.py --json` (one file or several, e.g. one per size):

    python benches/plot.py docs/compare-*.jsonl --out docs/bench.png --title "..."

Needs matplotlib. Each reference/segloss pair becomes two lines of one colour (solid: segloss,
dashed: the reference).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--out", default="docs/bench.png")
    ap.add_argument("--title", default="segloss against the reference implementations")
    a = ap.parse_args()
    series = defaultdict(list)  # (label, impl) -> [(elements, ms)]
    for path in a.files:
        for line in open(path):
            row = json.loads(line)
            # The losses only: the EDT rows (segloss "edt") measure masks, not logits.
            if row.get("segloss_ms") is None or row["segloss"] == "edt":
                continue
            elements = 1
            for d in row["shape"]:
                elements *= d
            series[(row["segloss"], "reference: " + row["reference"])].append((elements, row["ref_ms"]))
            series[(row["segloss"], "segloss")].append((elements, row["segloss_ms"]))
    fig, ax = plt.subplots(figsize=(8, 5.5))
    colours = {}
    for (loss, impl), pts in sorted(series.items()):
        pts.sort()
        colour = colours.setdefault(loss, f"C{len(colours)}")
        style = "-" if impl == "segloss" else "--"
        label = f"{loss} (segloss)" if impl == "segloss" else f"{loss} ({impl[len('reference: '):]})"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", color=colour, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("logits elements (N·C·H·W)")
    ax.set_ylabel("forward + backward, median ms")
    ax.set_title(a.title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
