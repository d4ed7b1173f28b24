#!/usr/bin/env python3
"""Side-by-side timing: the reference implementations (MONAI, smp, torch, scipy) against segloss.

Run from the repository root, in an environment with
`torch monai==1.6.1 segmentation-models-pytorch==0.6.0 scipy numpy` and a built tool
(`cargo build --release --example segloss`):

    python benches/compare.py [--size 8,19,128,256] [--repeat 10] [--losses A,B,...]
                              [--segloss target/release/examples/segloss]

On the same inputs, each reference runs forward + backward (on CUDA when torch sees a GPU, else
on the CPU) `--repeat` times after a warm-up, and segloss runs through `segloss eval --repeat`
(its "gpu_ms" where the adapter has timestamp queries, else "ms"). Prints one line per pair with
the median milliseconds and the ratio reference / segloss (> 1: segloss is faster), and with
--json one JSON object per pair.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch


def median_ms(fn, repeat: int, sync) -> float:
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def references(z: np.ndarray, y: np.ndarray, device: str):
    """(name for segloss, params, reference label, closure running forward+backward)."""
    import monai.losses as ml
    import scipy.ndimage as ndi
    import segmentation_models_pytorch as smp

    zt = torch.tensor(z, device=device, requires_grad=True)
    yt = torch.tensor(y, device=device, dtype=torch.long)
    y1 = yt.unsqueeze(1)

    def fb(loss_fn):
        def run():
            zt.grad = None
            loss_fn().backward()
        return run

    dice_ce = ml.DiceCELoss(to_onehot_y=True, softmax=True)
    dice = ml.DiceLoss(to_onehot_y=True, softmax=True)
    focal = ml.FocalLoss(to_onehot_y=True, use_softmax=True)
    hd = ml.HausdorffDTLoss(to_onehot_y=True, softmax=True)
    bd = ml.BoundaryLoss(to_onehot_y=True, softmax=True)
    lovasz = smp.losses.LovaszLoss("multiclass")
    cldice = ml.SoftclDiceLoss()  # takes probabilities and a one-hot target
    onehot = torch.nn.functional.one_hot(yt, z.shape[1]).movedim(-1, 1).float()
    masks = (y == 1)
    yield "dice-ce", [], "monai DiceCELoss", fb(lambda: dice_ce(zt, y1))
    yield "dice", [], "monai DiceLoss", fb(lambda: dice(zt, y1))
    yield "focal", ["activation=softmax"], "monai FocalLoss (softmax)", fb(lambda: focal(zt, y1))
    yield "hausdorff-dt", [], "monai HausdorffDTLoss", fb(lambda: hd(zt, y1))
    yield "boundary", [], "monai BoundaryLoss", fb(lambda: bd(zt, y1))
    yield "lovasz-softmax", [], "smp LovaszLoss", fb(lambda: lovasz(zt, yt))
    yield "cldice", [], "monai SoftclDiceLoss (on softmax)", fb(lambda: cldice(torch.softmax(zt, 1), onehot))
    yield "cross-entropy", [], "torch cross_entropy", fb(lambda: torch.nn.functional.cross_entropy(zt, yt))
    yield None, None, "scipy distance_transform_edt (one mask per image)", (
        lambda: [ndi.distance_transform_edt(m) for m in masks])


def segloss_ms(tool: str, name: str, params, z_path: str, y_path: str, repeat: int) -> float:
    cmd = [tool, "eval", "--loss", name, "--logits", z_path, "--target", y_path, "--repeat", str(repeat)]
    for p in params:
        cmd += ["--param", p]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    res = json.loads(out.stdout)
    return float(res.get("gpu_ms") or res["ms"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="8,19,128,256", help="N,C,*S of the logits")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--segloss", default="target/release/examples/segloss")
    ap.add_argument("--losses", default="", help="only these segloss names, comma-separated")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    only = {x for x in a.losses.split(",") if x}
    dims = [int(d) for d in a.size.split(",")]
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 2.0, size=dims).astype(np.float32)
    n, c, spatial = dims[0], dims[1], dims[2:]
    # Stripes: regions, so the distance-based losses see structure.
    grid = np.indices(spatial).sum(axis=0)
    y = np.stack([((grid // 7 + i) % c) for i in range(n)]).astype(np.int64)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    env_note = f"torch {torch.__version__} on {torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}"
    with tempfile.TemporaryDirectory() as tmp:
        zp, yp = os.path.join(tmp, "z.npy"), os.path.join(tmp, "y.npy")
        np.save(zp, z)
        np.save(yp, y)
        if not a.json:
            print(f"shape {dims}; reference: {env_note}; segloss: {a.segloss}; median of {a.repeat}")
            print(f"{'reference':<52} {'ref ms':>10} {'segloss':<16} {'ms':>10} {'ratio':>8}")
        for name, params, label, run in references(z, y, device):
            if only and name not in only:
                continue
            ref = median_ms(run, a.repeat, sync)
            if name is None:
                # segloss's transform alone is timed by `cargo bench --bench distance`; the
                # losses above include it (one map per image and class, in the same stream).
                row = {"reference": label, "ref_ms": ref, "segloss": "-", "segloss_ms": None, "ratio": None}
            else:
                ours = segloss_ms(a.segloss, name, params, zp, yp, a.repeat)
                row = {"reference": label, "ref_ms": ref, "segloss": name, "segloss_ms": ours, "ratio": ref / ours}
            if a.json:
                row.update({"shape": dims, "reference_device": env_note})
                print(json.dumps(row))
            else:
                ours_s = "-" if row["segloss_ms"] is None else f"{row['segloss_ms']:.2f}"
                ratio_s = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
                print(f"{label:<52} {ref:>10.2f} {row['segloss']:<16} {ours_s:>10} {ratio_s:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
