#!/usr/bin/env python3
"""Markdown tables of `segloss bench --json` and `benches/compare.py --json` output, so that the
tables of BENCHMARKS.md can be made again from the JSON lines committed under docs/:

    python benches/tables.py docs/twentieth-bench-lavapipe-*.jsonl        # one row per loss
    python benches/tables.py docs/compare-8x19x128x256.jsonl              # one row per pair
    python benches/tables.py docs/compare-[0-9]*.jsonl --ratios           # a ratio per size

`bench` lines (they have "gpu_ms") become one row per loss with its 2D and 3D figures side by
side: GPU ms, CPU reference ms, the speed-up over the CPU reference, and the fraction of the
copy roofline. Given several runs of one build on one adapter, each figure is the median over
the runs. `compare.py` lines (they have "ref_ms") become one row per pair: the reference's
and segloss's ms and their ratio (reference / segloss, above 1 where segloss is faster), with
the range over rounds where the run had several (`--rounds`). With `--ratios`, the compare
lines of several files become one row per pair and one ratio column per shape.

Only the standard library: no Python packages needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from math import prod


def read_rows(paths: list[str]) -> list[dict]:
    """Every file's JSON lines, each tagged with its file's index as "run"."""
    rows = []
    for run, path in enumerate(paths):
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rows.append({**json.loads(line), "run": run})
                except json.JSONDecodeError as e:
                    sys.exit(f"{path}:{n}: not a JSON line ({e})")
    return rows


def shape_text(shape: list[int]) -> str:
    return "×".join(str(d) for d in shape)


def ms(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.3f}" if x < 1 else f"{x:.1f}"


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


def bench_table(rows: list[dict]) -> list[str]:
    """One row per loss; the first shape seen of each dimensionality as its column group.

    Several files (runs of the same build) give each figure as the median over the runs: the
    GPU and CPU times each case's own, the copy roofline's over every run, and the fraction
    from those two medians (a run's roofline is timed once, at its start, so a stall then
    would skew every fraction of that run)."""
    spatial = {}  # spatial dimension count -> the shape of that group's first row
    runs: dict[str, dict[int, list[dict]]] = {}
    for r in rows:
        dims = len(r["shape"]) - 2
        if "error" not in r:
            spatial.setdefault(dims, r["shape"])
        runs.setdefault(r["loss"], {}).setdefault(dims, []).append(r)
    timed = [r for r in rows if "gpu_ms" in r]
    adapters = {r["adapter"] for r in timed}
    if len(adapters) > 1:
        sys.exit("bench lines from several adapters (" + ", ".join(sorted(adapters)) + "): one table each")
    builds = {r["shaders"] for r in timed if "shaders" in r}
    if len(builds) > 1:
        sys.exit("bench lines from builds with different shaders (" + ", ".join(sorted(builds)) + "): one table each")
    roofs = {r["run"]: r["roofline_gbs"] for r in timed}  # each run times its roofline once
    roof = median(list(roofs.values())) if roofs else float("nan")
    count = max(len(rs) for cells in runs.values() for rs in cells.values())
    groups = sorted(spatial)
    head = ["loss"]
    for d in groups:
        head += [f"{d}D GPU ms", f"{d}D CPU ms", f"{d}D ×CPU", f"{d}D of copy"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    errors = []
    for loss, cells in runs.items():
        # The binary losses run with C = 1 or 2, not the group's C: say so in their row.
        channels = {r["shape"][1] for rs in cells.values() for r in rs}
        own_c = channels - {spatial[d][1] for d in groups}
        row = [f"`{loss}`" + (f" (C = {', '.join(map(str, sorted(channels)))})" if own_c else "")]
        for d in groups:
            rs = cells.get(d, [])
            ok = [r for r in rs if "gpu_ms" in r]
            if not rs:
                row += ["–"] * 4
            elif not ok:
                row += ["not run¹", "", "", ""]
                errors.append(f"{loss} at {shape_text(rs[0]['shape'])}: {rs[0]['error']}")
            else:
                gpu = median([r["gpu_ms"] for r in ok])
                cpus = [r["cpu_ms"] for r in ok if r.get("cpu_ms")]
                cpu = median(cpus) if cpus else None
                speedup = f"{cpu / gpu:.1f}" if cpu else "–"
                gbs = ok[0]["bytes"] / (gpu * 1e6)
                row += [ms(gpu), ms(cpu), speedup, f"{100 * gbs / roof:.0f}%"]
        out.append("| " + " | ".join(row) + " |")
    notes = [f"{d}D: {shape_text(spatial[d])}" for d in groups]
    first = timed[0] if timed else None
    if first:
        notes.append(f"adapter {first.get('adapter', '?')}; GPU times from {first.get('timing', '?')}")
    if builds:
        notes.append(f"shaders {next(iter(builds))}")
    if count > 1:
        notes.append(
            f"each time the median of {count} runs; copy roofline {roof:.2f} GB/s, the median of "
            + ", ".join(f"{g:.2f}" for g in sorted(roofs.values()))
        )
    elif first:
        notes.append(f"copy roofline {roof:.2f} GB/s")
    out += ["", "; ".join(notes) + "."]
    if errors:
        out += ["", "¹ " + "; ".join(errors) + "."]
    return out


def compare_table(rows: list[dict]) -> list[str]:
    out = [
        "| reference | shape | reference ms | segloss | segloss ms | ratio | rounds' range |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rounds = r.get("rounds_ratio")
        spread = f"{min(rounds):.2f}–{max(rounds):.2f}× ({len(rounds)})" if rounds else "–"
        out.append(
            f"| {r['reference']} | {shape_text(r['shape'])} | {ms(r['ref_ms'])} | `{r['segloss']}` "
            f"| {ms(r['segloss_ms'])} | {r['ratio']:.2f}× | {spread} |"
        )
    notes = []
    devices = sorted({r["reference_device"] for r in rows if "reference_device" in r})
    if devices:
        notes.append("References: " + "; ".join(devices) + ".")
    builds = sorted({r["segloss_shaders"] for r in rows if r.get("segloss_shaders")})
    if builds:
        notes.append("segloss shaders " + ", ".join(builds) + ".")
    return out + ["", " ".join(notes)] if notes else out


def ratio_table(rows: list[dict]) -> list[str]:
    sizes: dict[str, int] = {}  # shape -> elements, for the columns' order
    pairs: dict[tuple[str, str], dict[str, float]] = {}
    for r in rows:
        key = (r["reference"], r["segloss"])
        s = shape_text(r["shape"])
        if r["segloss"] != "edt":
            sizes[s] = prod(r["shape"])
        pairs.setdefault(key, {})[s] = r["ratio"]
    shapes = sorted(sizes, key=sizes.get)
    out = ["| reference | segloss | " + " | ".join(shapes) + " |", "|---|---|" + "---|" * len(shapes)]
    for (ref, name), by_shape in pairs.items():
        if name == "edt":
            continue
        cells = [f"{by_shape[s]:.2f}×" if s in by_shape else "–" for s in shapes]
        out.append(f"| {ref} | `{name}` | " + " | ".join(cells) + " |")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="JSON lines of `segloss bench --json` or `compare.py --json`")
    ap.add_argument("--ratios", action="store_true", help="compare lines: one ratio column per shape")
    a = ap.parse_args()
    rows = read_rows(a.files)
    bench = [r for r in rows if "gpu_ms" in r or ("error" in r and "loss" in r)]
    compare = [r for r in rows if "ref_ms" in r]
    if not bench and not compare:
        sys.exit("no bench or compare lines in " + ", ".join(a.files))
    blocks = []
    if bench:
        blocks.append(bench_table(bench))
    if compare:
        blocks.append(ratio_table(compare) if a.ratios else compare_table(compare))
    print("\n\n".join("\n".join(b) for b in blocks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
