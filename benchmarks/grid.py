"""Experiment-grid speed: the runs in-process (one after another) vs on a local dask cluster.

Trains the same small grid twice from scratch — ``synchronous`` (the notebook's process, TensorFlow
with all cores) and ``local`` with 2 workers (each TensorFlow limited to its share of the cores) —
and prints both wall times, the speed-up, and how far the two grids' test predictions differ.
Dataset: the REAL Amazon patches when ``../shared/data`` (or ``$ASGM_REFERENCE_DATA``) holds them,
else the demo's 48 px dataset (SYNTHETIC; speed does not depend on what the pixels show).

Usage: python benchmarks/grid.py [--runs 4] [--epochs 8]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from asgm import experiments
from asgm.config import TrainingConfig, load_profile
from asgm.patches import read_dataset

ROOT = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("ASGM_REFERENCE_DATA", ROOT.parent / "shared" / "data")) / "amazon-s2-6band"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4, help="grid runs (seeds of one experiment)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per run (no early stop before them)")
    args = parser.parse_args()

    if (REAL / "patches.npy").is_file():
        data, what = REAL, "REAL Amazon patches"
    else:
        data, what = load_profile("demo", root=ROOT).dataset_dir(48), "SYNTHETIC demo patches"
    dataset = read_dataset(data)
    config = TrainingConfig(epochs=args.epochs, patience=args.epochs, bootstrap=50, ensemble=1)
    grid = [experiments.Experiment("recipe", "benchmark", dataset.meta["patch_size"], tuple(dataset.channels))]
    seeds = tuple(range(args.runs))
    print(f"{what}: {len(dataset)} patches; {args.runs} runs of {args.epochs} epochs; {os.cpu_count()} cores")
    times, runs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, kwargs in (("in-process", {}), ("local cluster, 2 workers", {"scheduler": "local", "workers": 2})):
            start = time.perf_counter()
            runs[name] = experiments.run_grid(grid, {grid[0].patch_size: data}, config, seeds, Path(tmp) / name.split()[0], progress=False, **kwargs)
            times[name] = time.perf_counter() - start
            assert (runs[name]["status"] == "trained").all(), runs[name]
            print(f"{name:26s} {times[name]:7.1f} s  ({times[name] / args.runs:.1f} s per run)")
        gaps = []
        for a, b in zip(*(r["model_dir"] for r in runs.values())):
            pa, pb = (pd.read_csv(Path(d) / "predictions.csv") for d in (a, b))
            gaps.append(float(np.abs(pa["probability"] - pb["probability"]).max()))
    base, other = times.values()
    print(f"speed-up of the cluster over in-process: {base / other:.2f}x (bound: 2x on 2 cores)")
    print(f"largest difference in a test probability between the two grids: {max(gaps):.4f}")


if __name__ == "__main__":
    main()
