"""A spectral baseline on REAL data: how hard each held-out region is without a CNN.

Each patch becomes 36 numbers — the 5th, 25th, 50th, 75th and 95th percentile and the standard
deviation of each of its six bands (no OSM, no texture) — classified by scikit-learn's
HistGradientBoostingClassifier, under exactly the folds or regions of ``benchmarks/real_amazon6.py``
(``asgm.crossval.fold_splits``, same seed). Seconds instead of hours: it tells whether a region is
hard for any spectral model (a shift in soils, water and haze) or only for the CNN, and it is the
floor a CNN recipe should beat.

Usage: python benchmarks/real_baseline.py [--evaluation regions|kfold]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from asgm.crossval import SCHEMES, fold_splits
from asgm.evaluate import block_bootstrap
from asgm.patches import read_dataset

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ASGM_REFERENCE_DATA", ROOT.parent / "shared" / "data")) / "amazon-s2-6band"


def band_features(patches: np.ndarray) -> np.ndarray:
    """Per band: 5/25/50/75/95th percentiles and standard deviation over the patch's pixels."""
    pixels = patches.reshape(len(patches), -1, patches.shape[-1]).astype(np.float32)
    quantiles = np.percentile(pixels, [5, 25, 50, 75, 95], axis=1).transpose(1, 0, 2).reshape(len(patches), -1)
    return np.concatenate([quantiles, pixels.std(axis=1)], axis=1)


def real_folds(description: str, switches: dict[str, str] | None = None, options: dict[str, tuple] | None = None):
    """The command line (``--evaluation``, ``--fold-seed``, the on/off ``switches``: flag → help, and
    the ``options``: flag → (type, default, help)),
    the real dataset, and the folds or regions of ``benchmarks/real_amazon6.py`` (the same seed
    gives the same folds)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--evaluation", choices=list(SCHEMES), default="regions")
    parser.add_argument("--fold-seed", type=int, default=0)
    for flag, help_text in (switches or {}).items():
        parser.add_argument(flag, action="store_true", help=help_text)
    for flag, (kind, default, help_text) in (options or {}).items():
        parser.add_argument(flag, type=kind, default=default, help=help_text)
    args = parser.parse_args()
    if not (DATA / "patches.npy").is_file():
        raise SystemExit(f"real data not found at {DATA} (set ASGM_REFERENCE_DATA)")
    dataset = read_dataset(DATA)
    groups, splits = fold_splits(dataset, args.evaluation, {"kfold": 5, "regions": 6}[args.evaluation], seed=args.fold_seed)
    return args, dataset, groups, splits


def main() -> None:
    args, dataset, groups, splits = real_folds(__doc__.split("\n\n")[0])
    x = band_features(np.asarray(dataset.patches))
    y = dataset.index["label"].to_numpy().astype(int)
    blocks = groups["block"].to_numpy()
    out = np.zeros(len(y))
    print(f"REAL data, {args.evaluation}: spectral baseline (HistGradientBoosting on band percentiles), ROC-AUC [95 % block bootstrap]")
    for fold, split in enumerate(splits):
        train = split["split"].to_numpy() != "test"
        test = ~train
        model = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, random_state=0).fit(x[train], y[train])
        out[test] = model.predict_proba(x[test])[:, 1]
        ci = block_bootstrap(y[test], out[test], blocks[test], 0.5, 1000, 0).loc["roc_auc"]
        print(f"  {args.evaluation} {fold}: {test.sum():4d} patches ({y[test].sum():3d} mines)  ROC-AUC {roc_auc_score(y[test], out[test]):.3f} "
              f"[{ci['ci_low']:.2f}, {ci['ci_high']:.2f}]")
    ci = block_bootstrap(y, out, blocks, 0.5, 1000, 0).loc["roc_auc"]
    print(f"  pooled: ROC-AUC {roc_auc_score(y, out):.3f} [{ci['ci_low']:.2f}, {ci['ci_high']:.2f}]")


if __name__ == "__main__":
    main()
