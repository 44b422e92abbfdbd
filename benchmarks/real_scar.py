"""The scar classifier of the monitoring (``asgm.scar``) on REAL patches: how much scar it maps in a
real 48 px window (23 ha) that holds a mine, and how much in one that holds a look-alike.

The monitoring's area figures are measured on the SYNTHETIC demo only, where the pixel truth is
known. The real patches have no pixel truth, only patch labels, but a patch is exactly what a
detection is (a 48 px window), so two things can be measured on them, under the folds of
``benchmarks/real_amazon6.py`` (``asgm.crossval.fold_splits``, the same seed): in each fold the
classifier is trained as the monitoring trains it (on the weak pixel labels of the training and
validation patches, threshold out of fold by spatial block) and maps the scar of each held-out
patch as the monitoring maps a detected window (the whole patch as the footprint, the minimum
mapping unit, long and narrow patches and rivers left out).

- In a non-mine patch (rivers moving, landslides, farms, roads, towns), every mapped hectare is
  false scar: what a false detection adds to a period's area.
- In a mine patch, the mapped hectares are the classifier's idea of the mine ground. Their truth is
  unknown, but a mine patch with nothing mapped is a detected mine that adds no area.

The mapped hectares are also scored as a patch classifier (ROC-AUC), and the shares of patches with
anything mapped (≥ 0.1 ha, the mapping unit) and with ≥ 0.5 ha (the size of a new-mining alert)
are given with 95 % block-bootstrap intervals.

``--ponds`` also maps a rule that was tried on the demo and not adopted: every water body (not a
river, at least the 0.1 ha mapping unit) that touches the mapped scar joins it as a mine pond.

Usage: python benchmarks/real_scar.py [--evaluation regions|kfold] [--ponds] [--grow_px N]
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from scipy import ndimage
from real_baseline import real_folds  # a sibling script: run from any directory as python benchmarks/real_scar.py

from asgm.evaluate import block_bootstrap
from asgm.scar import (EIGHT, GROW_PX, MAX_ELONGATION, MIN_PIXELS, SCAR_BANDS, candidates, kept_patches, mine_probability, patches_touching, rivers,
                       scar_mask, train_scar_classifier)

PIXEL_HA = 0.01  # 10 m pixels
NDVI_MAX = 0.25  # monitoring.scar_ndvi's default


def with_ponds(water: np.ndarray, scar: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """``scar`` and every water body (not a river, at least the mapping unit) that touches it."""
    ponds = kept_patches(water & ~rivers(water), footprint, 0.5, MIN_PIXELS, MAX_ELONGATION)
    return scar | patches_touching(ponds, ndimage.binary_dilation(scar, EIGHT))


def mapped_scar(dataset, rows: np.ndarray, classifier, ponds: bool = False, grow_px: int = GROW_PX) -> pd.DataFrame:
    """Per patch of ``rows``: hectares of candidate ground (water and bare) and of mapped scar (grown
    by ``grow_px``; with ``ponds`` also of the scar with :func:`with_ponds`), with the whole patch as
    the detection footprint."""
    channels, scale = list(dataset.channels), float(dataset.meta["scale"])
    footprint = np.ones(dataset.patches.shape[1:3], dtype=bool)
    out = []
    for row in rows:
        patch = np.asarray(dataset.patches[row], dtype=np.float32)
        reflectance = {b: patch[..., channels.index(b)] / scale for b in SCAR_BANDS}
        water, bare = candidates(reflectance, NDVI_MAX)
        probability = mine_probability(reflectance, footprint, classifier, NDVI_MAX)
        scar = scar_mask(reflectance, footprint, classifier, NDVI_MAX, probability=probability, grow_px=grow_px)
        out.append({"candidate_ha": float((water | bare).sum()) * PIXEL_HA, "scar_ha": float(scar.sum()) * PIXEL_HA}
                   | ({"scar_ponds_ha": float(with_ponds(water, scar, footprint).sum()) * PIXEL_HA} if ponds else {}))
    return pd.DataFrame(out, index=dataset.index.index[rows])


def share_interval(y: np.ndarray, score: np.ndarray, blocks: np.ndarray, threshold_ha: float) -> tuple[pd.Series, pd.Series, float]:
    """Shares of mine and of non-mine patches with at least ``threshold_ha`` mapped, [95 % block
    bootstrap], and the ROC-AUC of the mapped hectares."""
    table = block_bootstrap(y, score, blocks, threshold_ha - 1e-9, 1000, 0)
    mines = table.loc["sensitivity"]
    # the share of non-mines with scar mapped is 1 - specificity
    non_mines = 1 - table.loc["specificity"][["value", "ci_high", "ci_low"]].set_axis(["value", "ci_low", "ci_high"])
    return mines, non_mines, float(table.loc["roc_auc", "value"])


def main() -> None:
    args, dataset, groups, splits = real_folds(__doc__.split("\n\n")[0], {"--ponds": "also map the scar with the pond rule"},
                                               {"--grow_px": (int, GROW_PX, "the scar's growth into weaker pixels (0: none, the default before 2026-12-03)")})
    index = dataset.index
    print(f"REAL data, {args.evaluation}: the monitoring's scar classifier, each held-out patch mapped as a detected window")
    parts = []
    for fold, split in enumerate(splits):
        start = time.perf_counter()
        used = np.flatnonzero(split["split"].to_numpy() != "test")
        held = np.flatnonzero(split["split"].to_numpy() == "test")
        classifier = train_scar_classifier(dataset, used, split["block"].to_numpy()[used], NDVI_MAX)
        mapped = mapped_scar(dataset, held, classifier, args.ponds, args.grow_px).assign(fold=fold, threshold=classifier.threshold)
        parts.append(mapped)
        y = index["label"].to_numpy()[held]
        print(f"  {args.evaluation} {fold}: threshold {classifier.threshold:.2f}; mean scar {mapped['scar_ha'][y == 1].mean():.2f} ha per mine patch, "
              f"{mapped['scar_ha'][y == 0].mean():.2f} ha per non-mine patch ({time.perf_counter() - start:.0f} s)", flush=True)
    mapped = pd.concat(parts).loc[index.index]
    y = index["label"].to_numpy().astype(int)
    blocks = groups["block"].to_numpy()
    table = index[["label", "category"]].join(mapped)
    print("\nMapped hectares per patch (a patch is 23 ha), by category:")
    print(table.groupby(["label", "category"])[["candidate_ha", "scar_ha"]].describe(percentiles=[0.5, 0.9])
          .loc[:, (slice(None), ["count", "mean", "50%", "90%"])].round(2).to_string())
    for column in ["scar_ha"] + (["scar_ponds_ha"] if args.ponds else []):
        print(f"\n{column}: mean {table[column][y == 1].mean():.2f} ha per mine patch, {table[column][y == 0].mean():.2f} ha per non-mine patch")
        for threshold_ha in (0.1, 0.5):
            mines, non_mines, auc = share_interval(y, table[column].to_numpy(), blocks, threshold_ha)
            print(f"  >= {threshold_ha} ha: mine patches {mines['value']:.3f} [{mines['ci_low']:.2f}, {mines['ci_high']:.2f}], "
                  f"non-mine patches {non_mines['value']:.3f} [{non_mines['ci_low']:.2f}, {non_mines['ci_high']:.2f}]")
        print(f"  Mapped hectares as a patch score: ROC-AUC {auc:.3f}")
    per_group = table.assign(fold=mapped["fold"]).groupby(["fold", "label"])["scar_ha"].agg(["mean", lambda s: (s >= 0.1).mean()])
    per_group.columns = ["mean_ha", "share_mapped"]
    print(f"\nPer held-out {args.evaluation} group:")
    print(per_group.unstack("label").round(3).to_string())


if __name__ == "__main__":
    main()
