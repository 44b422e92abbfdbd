"""Accuracy on REAL data: ../shared/data/amazon-s2-6band (794 Sentinel-2 patches, 6 bands, Amazon).

Trains each variant with the spatially blocked split (70/15/15, held-out patches at least one patch
diagonal from every training patch) for several seeds — the seed moves the split, the initial
weights and the augmentation — and prints, per variant, mean ± sd over seeds of the test metrics
and the mean of the seeds' 95 % block-bootstrap intervals.

Two operating points, both with thresholds chosen on the validation split only:
- ``F1``: the maximum-F1 threshold;
- ``spec``: the lowest threshold with validation specificity >= 0.95, applied to test
  (the goal: sensitivity >= 0.90 while test specificity stays >= 0.95).

Models are cached under models/benchmarks/real_amazon6/ (a rerun only trains what is missing).

Usage: python benchmarks/real_amazon6.py [--variants thesis_cnn bn_cnn_std ...] [--seeds 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from asgm.config import TrainingConfig
from asgm.evaluate import block_bootstrap, f_beta_threshold, specificity_threshold
from asgm.train import train_experiment

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ASGM_REFERENCE_DATA", ROOT.parent / "shared" / "data")) / "amazon-s2-6band"

#: Variants: training settings that differ from TrainingConfig's defaults.
VARIANTS = {
    "thesis_cnn": {},
    "thesis_cnn_std": {"standardize": True},
    "bn_cnn": {"architecture": "bn_cnn"},
    "bn_cnn_std": {"architecture": "bn_cnn", "standardize": True},
    "bn_cnn_std_noaug": {"architecture": "bn_cnn", "standardize": True, "augment": False},
    "bn_cnn_std_x3": {"architecture": "bn_cnn", "standardize": True, "ensemble": 3},
    "scan_cnn_std": {"architecture": "scan_cnn", "standardize": True},
}
METRICS = ("roc_auc", "average_precision", "sensitivity", "specificity")


def evaluate_model(model_dir: Path, config: TrainingConfig) -> dict:
    """Thresholds and test intervals recomputed from predictions.csv with the current evaluation code
    (so cached models need no retraining when only the evaluation changes)."""
    pred = pd.read_csv(model_dir / "predictions.csv")
    val, test = pred[pred["split"] == "validation"], pred[pred["split"] == "test"]
    thresholds = {"F1": f_beta_threshold(val["label"], val["probability"])[0],
                  "spec": specificity_threshold(val["label"], val["probability"], config.min_specificity)}
    row = {}
    for point, threshold in thresholds.items():
        table = block_bootstrap(test["label"], test["probability"], test["block"], threshold, config.bootstrap, config.seed)
        for metric in METRICS:
            for part in ("value", "ci_low", "ci_high"):
                row[f"{point}:{metric}:{part}"] = table.loc[metric, part]
    return row


def run_variant(name: str, overrides: dict, seeds: int, out: Path) -> pd.DataFrame:
    rows = []
    for seed in range(seeds):
        config = dataclasses.replace(TrainingConfig(), seed=seed, **overrides)
        start = time.perf_counter()
        model_dir = train_experiment(DATA, out, f"{name}_seed{seed}", config, progress=False)
        elapsed = time.perf_counter() - start
        row = {"variant": name, "seed": seed, "seconds": elapsed, **evaluate_model(model_dir, config)}
        rows.append(row)
        print(f"  {name} seed {seed}: ROC-AUC {row['F1:roc_auc:value']:.3f}, AP {row['F1:average_precision:value']:.3f}, "
              f"sens/spec @spec-threshold {row['spec:sensitivity:value']:.3f}/{row['spec:specificity:value']:.3f} "
              f"({elapsed:.0f} s{', cached' if elapsed < 5 else ''})", flush=True)
    return pd.DataFrame(rows)


def summarise(results: pd.DataFrame) -> str:
    lines = ["| variant | ROC-AUC | AP | sens @F1 | spec @F1 | sens @spec | spec @spec | s/seed |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results.groupby("variant", sort=False):
        def cell(point, metric):
            v = r[f"{point}:{metric}:value"]
            return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f} [{r[f'{point}:{metric}:ci_low'].mean():.2f}, {r[f'{point}:{metric}:ci_high'].mean():.2f}]"
        lines.append(f"| {name} | {cell('F1', 'roc_auc')} | {cell('F1', 'average_precision')} | {cell('F1', 'sensitivity')} | "
                     f"{cell('F1', 'specificity')} | {cell('spec', 'sensitivity')} | {cell('spec', 'specificity')} | {r['seconds'].mean():.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "benchmarks" / "real_amazon6")
    args = parser.parse_args()
    if not (DATA / "patches.npy").is_file():
        raise SystemExit(f"real data not found at {DATA}: this benchmark needs ../shared/data (or ASGM_REFERENCE_DATA)")
    print(f"REAL data: {DATA} — {args.seeds} seeds per variant")
    results = pd.concat([run_variant(name, VARIANTS[name], args.seeds, args.out) for name in args.variants], ignore_index=True)
    results.to_csv(args.out / "results.csv", index=False)
    print("\nmean ± sd over seeds [mean 95 % block-bootstrap interval]; thresholds from validation only")
    print(summarise(results))
    goal = results.groupby("variant", sort=False).agg(roc=("F1:roc_auc:value", "mean"), sens=("spec:sensitivity:value", "mean"),
                                                      spec=("spec:specificity:value", "mean"))
    goal["goal met"] = (goal["roc"] >= 0.95) & (goal["sens"] >= 0.90) & (goal["spec"] >= 0.95)
    print("\nGoal (ROC-AUC >= 0.95, sensitivity >= 0.90 at specificity >= 0.95):")
    print(goal.round(3).to_string())


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
