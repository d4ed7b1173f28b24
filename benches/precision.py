#!/usr/bin/env python3
"""Precision probe: the GPU kernels (f32) against the CPU reference (f64) with near-perfect
predictions, the regime of late training, where a loss is a small difference of numbers near 1.

Run from the repository root after `cargo build --release --example segloss`; needs numpy only:

    python benches/precision.py [--segloss target/release/examples/segloss] [--seeds 3]

For every loss (and a few parameter variants), on 2×4×12×13 (2×1×12×13 for the binary losses)
with blob-shaped labels and logits `scale · onehot(label) + N(0, 1)` for scale 4, 8 and 12, runs
`segloss eval` on both backends and prints the worst loss error (relative to the loss, floor
1e-3) and gradient error (relative to the largest gradient entry, floor 1e-3) over the inputs.
README.md ("Precision") quotes its output. `segloss check --logit-scale S` covers confident
logits with random labels.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile

import numpy as np

LOSSES = [
    ("cross-entropy", []), ("bce", []), ("balanced-bce", []), ("focal", []), ("topk", []),
    ("dice", []), ("jaccard", []), ("tversky", []), ("focal-tversky", []),
    ("focal-tversky", ["gamma=3"]), ("asymmetric", []), ("generalized-dice", []),
    ("log-cosh-dice", []), ("sensitivity-specificity", []), ("dice-ce", []), ("dice-focal", []),
    ("generalized-dice-focal", []), ("combo", []), ("exp-log", []),
    ("exp-log", ["gamma_dice=0.1", "gamma_ce=0.1"]), ("unified-focal", []), ("boundary", []),
    ("hausdorff-dt", []), ("log-hausdorff-dt", []), ("lovasz-softmax", []), ("lovasz-hinge", []),
    ("cldice", []), ("dice-cldice", []), ("active-contour", []),
]
BINARY = {"bce", "balanced-bce", "lovasz-hinge", "active-contour", "unified-focal"}


def inputs(rng: np.random.Generator, binary: bool, scale: float):
    shape = (2, 1, 12, 13) if binary else (2, 4, 12, 13)
    c = shape[1]
    classes = 2 if c == 1 else c
    coarse = rng.integers(0, classes, (shape[0], 4, 5))
    y = np.repeat(np.repeat(coarse, 3, 1), 3, 2)[:, :12, :13].astype(np.int64)
    noise = rng.standard_normal(shape)
    if c == 1:
        z = np.where(y[:, None] == 1, 1.0, -1.0) * scale + noise
    else:
        z = np.eye(c)[y].transpose(0, 3, 1, 2) * scale + noise
    return z.astype(np.float32), y


def run(tool: str, d: str, loss: str, params: list[str], backend: str):
    cmd = [tool, "eval", "--loss", loss, "--logits", f"{d}/z.npy", "--target", f"{d}/y.npy",
           "--backend", backend, "--grad", f"{d}/g.npy"]
    for p in params:
        cmd += ["--param", p]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return np.ravel(np.array(json.loads(r.stdout)["loss"], dtype=np.float64)), np.load(f"{d}/g.npy")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--segloss", default="target/release/examples/segloss")
    ap.add_argument("--seeds", type=int, default=3)
    a = ap.parse_args()
    tool = os.path.abspath(a.segloss)
    with tempfile.TemporaryDirectory() as d:
        print(f"{'loss':24s} {'params':28s} {'loss err':>9s} {'grad err':>9s}")
        for loss, params in LOSSES:
            worst_l = worst_g = 0.0
            for seed in range(a.seeds):
                rng = np.random.default_rng(seed)
                for scale in (4.0, 8.0, 12.0):
                    z, y = inputs(rng, loss in BINARY, scale)
                    np.save(f"{d}/z.npy", z)
                    np.save(f"{d}/y.npy", y)
                    lg, gg = run(tool, d, loss, params, "gpu")
                    lc, gc = run(tool, d, loss, params, "cpu")
                    worst_l = max(worst_l, float(np.max(np.abs(lg - lc) / np.maximum(np.abs(lc), 1e-3))))
                    worst_g = max(worst_g, float(np.abs(gg - gc).max() / max(np.abs(gc).max(), 1e-3)))
            print(f"{loss:24s} {' '.join(params):28s} {worst_l:9.1e} {worst_g:9.1e}")


if __name__ == "__main__":
    main()
