#!/usr/bin/env python3
"""Side-by-side timing: the reference implementations (MONAI, smp, torch, scipy) against segloss.

Run from the repository root, in an environment with
`torch monai==1.6.1 segmentation-models-pytorch==0.6.0 scipy numpy` and a built tool
(`cargo build --release --example segloss`):

    python benches/compare.py [--size 8,19,128,256] [--repeat 10] [--rounds 1] [--losses A,B,...]
                              [--edt-size 128,128,128] [--segloss target/release/examples/segloss]

On the same inputs, each reference runs forward + backward (on CUDA when torch sees a GPU, else
on the CPU) `--repeat` times after a warm-up of 0.2 s, and segloss runs through
`segloss eval --repeat` (its "gpu_ms" where the adapter has timestamp queries, else "ms"). Prints one line per pair with
the median milliseconds and the ratio reference / segloss (> 1: segloss is faster), and with
--json one JSON object per pair.

With `--rounds R`, each pair is timed R times in turn (reference, segloss, reference, ...), and
the line gives the median of the R rounds' ratios and their range: on a shared or throttling
machine, whose speed drifts between two measurements taken a minute apart, a ratio of two
measurements taken side by side is steadier than a ratio of two separate medians.

The exact distance transform is compared twice, through `segloss edt --repeat` against scipy's
`distance_transform_edt` (which runs on the CPU whatever torch sees): on one mask per image of
the batch, and on one `--edt-size` volume (default 128³) of random balls.
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
    # Warm-up as `segloss eval --repeat` has it: untimed calls filling 0.2 s (at least one), so
    # that allocator caches and GPU clocks have settled for both sides.
    start = time.perf_counter()
    while True:
        fn()
        sync()
        if time.perf_counter() - start >= 0.2:
            break
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def references(z: np.ndarray, y: np.ndarray, device: str, zp: str, yp: str, mp: str):
    """(segloss name, segloss command line without --repeat, reference label, closure running
    the reference: forward+backward for the losses). `mp` gets the masks of the EDT pair."""
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
    def ev(name, *params):
        cmd = ["eval", "--loss", name, "--logits", zp, "--target", yp]
        for p in params:
            cmd += ["--param", p]
        return name, cmd

    masks = (y == 1)
    np.save(mp, masks.astype(np.uint8))
    yield *ev("dice-ce"), "monai DiceCELoss", fb(lambda: dice_ce(zt, y1))
    yield *ev("dice"), "monai DiceLoss", fb(lambda: dice(zt, y1))
    yield *ev("focal", "activation=softmax"), "monai FocalLoss (softmax)", fb(lambda: focal(zt, y1))
    yield *ev("hausdorff-dt"), "monai HausdorffDTLoss", fb(lambda: hd(zt, y1))
    yield *ev("boundary"), "monai BoundaryLoss", fb(lambda: bd(zt, y1))
    yield *ev("lovasz-softmax"), "smp LovaszLoss", fb(lambda: lovasz(zt, yt))
    yield *ev("cldice"), "monai SoftclDiceLoss (on softmax)", fb(lambda: cldice(torch.softmax(zt, 1), onehot))
    yield *ev("cross-entropy"), "torch cross_entropy", fb(lambda: torch.nn.functional.cross_entropy(zt, yt))
    yield "edt", ["edt", "--mask", mp], "scipy distance_transform_edt (one mask per image)", (
        lambda: [ndi.distance_transform_edt(m) for m in masks])


def balls(shape, count: int, rng) -> np.ndarray:
    """A mask of `count` random balls (radii 1/16 to 1/4 of the smallest extent)."""
    grid = np.indices(shape, dtype=np.float32)
    mask = np.zeros(shape, dtype=bool)
    lo = min(shape)
    for _ in range(count):
        centre = [rng.uniform(0, d) for d in shape]
        r = rng.uniform(lo / 16, lo / 4)
        mask |= sum((g - c) ** 2 for g, c in zip(grid, centre)) <= r * r
    return mask


def segloss_ms(tool: str, cmd, repeat: int) -> tuple[float, str | None]:
    """The median ms of `segloss CMD --repeat R`, and the digest of the WGSL it ran ("shaders")."""
    out = subprocess.run([tool, *cmd, "--repeat", str(repeat)], capture_output=True, text=True, check=True)
    # Pass the tool's warnings on (a binary built from other shaders than the checkout's says so).
    sys.stderr.write(out.stderr)
    res = json.loads(out.stdout)
    return float(res.get("gpu_ms") or res["ms"]), res.get("shaders")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="8,19,128,256", help="N,C,*S of the logits")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1, help="time each pair this many times in turn")
    ap.add_argument("--segloss", default="target/release/examples/segloss")
    ap.add_argument("--losses", default="", help="only these segloss names (and edt), comma-separated")
    ap.add_argument("--edt-size", default="128,128,128", help="the extents of the single EDT volume")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.rounds < 1 or a.repeat < 1:
        ap.error(f"--rounds and --repeat take at least 1 (got {a.rounds} and {a.repeat})")
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
    import scipy
    scipy_note = f"scipy {scipy.__version__} on the CPU"
    with tempfile.TemporaryDirectory() as tmp:
        zp, yp, mp = (os.path.join(tmp, f) for f in ("z.npy", "y.npy", "m.npy"))
        np.save(zp, z)
        np.save(yp, y)
        if not a.json:
            rounds = f", {a.rounds} rounds" if a.rounds > 1 else ""
            print(f"shape {dims}; reference: {env_note}; segloss: {a.segloss}; median of {a.repeat}{rounds}")
            print(f"{'reference':<52} {'ref ms':>10} {'segloss':<16} {'ms':>10} {'ratio':>8}")

        def pair(shape, name, cmd, label, run):
            refs, ours, shaders = [], [], None
            for _ in range(a.rounds):
                refs.append(median_ms(run, a.repeat, sync))
                own_ms, shaders = segloss_ms(a.segloss, cmd, a.repeat)
                ours.append(own_ms)
            ratios = [r / o for r, o in zip(refs, ours)]
            ref, own, ratio = (float(np.median(v)) for v in (refs, ours, ratios))
            row = {"reference": label, "ref_ms": ref, "segloss": name, "segloss_ms": own, "ratio": ratio}
            if a.rounds > 1:
                row.update({"rounds_ref_ms": refs, "rounds_segloss_ms": ours, "rounds_ratio": ratios})
            if a.json:
                # scipy runs on the CPU whatever torch sees.
                note = scipy_note if name == "edt" else env_note
                row.update({"shape": shape, "reference_device": note, "segloss_shaders": shaders})
                print(json.dumps(row), flush=True)
            else:
                spread = f"  ({min(ratios):.2f}-{max(ratios):.2f})" if a.rounds > 1 else ""
                print(f"{label:<52} {ref:>10.2f} {name:<16} {own:>10.2f} {ratio:>8.2f}{spread}", flush=True)

        for name, cmd, label, run in references(z, y, device, zp, yp, mp):
            if not only or name in only:
                pair([n, *spatial] if name == "edt" else dims, name, cmd, label, run)
        if not only or "edt" in only:
            import scipy.ndimage as ndi
            size = [int(d) for d in a.edt_size.split(",")]
            vol = balls(size, 12, rng)
            np.save(mp, vol[None].astype(np.uint8))
            label = f"scipy distance_transform_edt ({'x'.join(map(str, size))} balls)"
            pair([1, *size], "edt", ["edt", "--mask", mp], label, lambda: ndi.distance_transform_edt(vol))
    return 0


if __name__ == "__main__":
    sys.exit(main())
