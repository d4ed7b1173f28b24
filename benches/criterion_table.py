#!/usr/bin/env python3
"""Tables of the criterion benches' results (`cargo bench`), with the cost growth per size.

Reads target/criterion/<group>/<function>/<size>/new/{benchmark,estimates}.json (what criterion
writes after `cargo bench --bench pixel` and the others) and prints, per benchmark group, one
row per size and one column per function (the CPU reference, the GPU): the median time in ms
and, in brackets, the growth exponent against the previous size of the same dimensionality,
log(t / t_prev) / log(n / n_prev) with n the elements (1.0: time grows linearly with size;
below 1: fixed costs, such as dispatches and final reductions, still weigh at the smaller size).

    python benches/criterion_table.py                       # markdown, every group
    python benches/criterion_table.py --groups dice,bce     # only these groups
    python benches/criterion_table.py --summary             # one row per GPU series
    python benches/criterion_table.py --json > docs/criterion-lavapipe.jsonl

Only the standard library: no Python packages needed.
"""
import argparse
import json
import math
import os
import re
import sys


def load(root: str):
    """Every (group, function, size id, elements, median ns) under `root`."""
    rows = []
    for dirpath, _, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            bench = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        size = bench.get("value_str") or ""
        ints = [int(v) for v in re.findall(r"\d+", size)]
        tp = bench.get("throughput") or {}
        if "Elements" in tp:
            elements = tp["Elements"]
        else:
            # The loss benches count bytes; their ids are the shape, N x C x spatial.
            elements = math.prod(ints) if ints else 0
        rows.append({
            "group": bench["group_id"],
            "function": bench.get("function_id") or "",
            "size": size,
            "dims": len(ints),
            "elements": elements,
            "median_ms": est["median"]["point_estimate"] / 1e6,
        })
    return rows


def with_growth(rows):
    """Adds `growth`: the exponent against the previous size of the same series and dimensionality."""
    series = {}
    for r in rows:
        series.setdefault((r["group"], r["function"], r["dims"]), []).append(r)
    for items in series.values():
        items.sort(key=lambda r: r["elements"])
        prev = None
        for r in items:
            r["growth"] = None
            if prev and r["elements"] > prev["elements"] and prev["median_ms"] > 0:
                r["growth"] = math.log(r["median_ms"] / prev["median_ms"]) / math.log(r["elements"] / prev["elements"])
            prev = r
    return rows


def markdown(rows):
    groups = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    for name in sorted(groups):
        items = groups[name]
        functions = sorted({r["function"] for r in items}, key=lambda f: (not f.startswith("cpu"), f))
        sizes = sorted({(r["dims"], r["elements"], r["size"]) for r in items})
        print(f"\n**{name}** (median ms; growth exponent in brackets)\n")
        print("| size | elements | " + " | ".join(functions) + " |")
        print("|---|---:|" + "---:|" * len(functions))
        for dims, elements, size in sizes:
            cells = []
            for fn in functions:
                hit = [r for r in items if r["function"] == fn and r["size"] == size]
                if not hit:
                    cells.append("")
                    continue
                r = hit[0]
                g = "" if r["growth"] is None else f" ({r['growth']:.2f})"
                cells.append(f"{r['median_ms']:.3g}{g}")
            print(f"| {size} | {elements} | " + " | ".join(cells) + " |")


def is_reference(function: str) -> bool:
    """The CPU side of a group: `cpu`, `cpu exact`, `std stable sort`."""
    return function.startswith("cpu") or function.startswith("std")


def summary(rows):
    """One row per GPU series: its times over the 2D and the 3D sizes (smallest to largest), the
    growth exponent from the smallest to the largest, and CPU / GPU at the largest."""
    series = {}
    for r in rows:
        series.setdefault((r["group"], r["function"]), []).append(r)
    print("| group | function | ms over the 2D sizes (lengths for a sort) | growth | CPU / GPU | ms over the 3D sizes | growth | CPU / GPU |")
    print("|---|---|---|---:|---:|---|---:|---:|")
    for (group, fn) in sorted(series):
        if is_reference(fn):
            continue
        refs = [r for r in rows if r["group"] == group and is_reference(r["function"])]
        cells = []
        items = series[(group, fn)]
        for dims in sorted({r["dims"] for r in items}):
            line = sorted((r for r in items if r["dims"] == dims), key=lambda r: r["elements"])
            first, last = line[0], line[-1]
            growth = ""
            if last["elements"] > first["elements"]:
                growth = f"{math.log(last['median_ms'] / first['median_ms']) / math.log(last['elements'] / first['elements']):.2f}"
            ref = [r for r in refs if r["size"] == last["size"]]
            ratio = f"{ref[0]['median_ms'] / last['median_ms']:.3g}" if ref else ""
            times = " / ".join(f"{r['median_ms']:.3g}" for r in line)
            cells += [f"{times} ({first['size']} to {last['size']})", growth, ratio]
        cells += [""] * (6 - len(cells))
        print(f"| {group} | {fn} | " + " | ".join(cells[:6]) + " |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="target/criterion", help="criterion's output directory")
    ap.add_argument("--groups", default="", help="only these groups, comma-separated")
    ap.add_argument("--json", action="store_true", help="one JSON object per result instead")
    ap.add_argument("--summary", action="store_true", help="one row per GPU series instead")
    a = ap.parse_args()
    rows = load(a.root)
    if not rows:
        print(f"no criterion results under {a.root}: run `cargo bench` first", file=sys.stderr)
        return 1
    only = {g for g in a.groups.split(",") if g}
    rows = with_growth([r for r in rows if not only or r["group"] in only])
    if a.json:
        for r in sorted(rows, key=lambda r: (r["group"], r["function"], r["dims"], r["elements"])):
            print(json.dumps(r))
    elif a.summary:
        summary(rows)
    else:
        markdown(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
