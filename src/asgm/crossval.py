"""How a training recipe does on places it has never seen: spatial k-fold cross-validation and
leave-one-region-out, on any dataset directory.

- ``kfold``: whole spatial blocks go to ``k`` folds (:func:`asgm.sampling.spatial_folds`); each
  fold is held out in turn as the test set while a model trains on the others, so every patch gets
  exactly one out-of-fold prediction.
- ``regions``: the points are grouped into ``k`` large geographic regions (k-means on their
  positions, whole blocks each: :func:`asgm.sampling.spatial_regions`); each region is held out in
  turn. This is the number that predicts how the model does in a region it was not trained on.

In both, the validation set (early stopping, calibration, thresholds) is carved by spatial blocks
out of the training folds only, so nothing about the held-out fold informs its own predictions.
Every patch is judged at its own fold's validation-chosen thresholds; metrics over all out-of-fold
predictions get 95 % intervals from a bootstrap over spatial blocks.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from asgm import evaluate
from asgm.atomic import atomic_path
from asgm.config import TrainingConfig
from asgm.errors import AsgmError
from asgm.patches import Dataset, read_dataset
from asgm.progress import progress_bar
from asgm.sampling import EXCLUDED, held_out_splits, spatial_folds, spatial_regions
from asgm.train import default_min_distance, is_up_to_date, read_metrics, train_experiment

SCHEMES = ("kfold", "regions")


def fold_splits(dataset: Dataset, scheme: str = "kfold", k: int = 5, config: TrainingConfig | None = None,
                seed: int = 0, exclude: np.ndarray | None = None) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """The held-out groups and, for each, the train / validation / test split that trains its model.

    Parameters
    ----------
    dataset
        The dataset to cross-validate.
    scheme
        ``kfold`` (spatial k-fold) or ``regions`` (leave one geographic region out).
    k
        Folds or regions.
    config
        Training settings: ``min_distance_m`` (default: the patch diagonal), ``split`` (its train
        and validation shares set the validation share of the training folds), ``split_areas``
        (validation made of whole areas of the training folds).
    seed
        Seed of the folds (or regions) and of the validation blocks; not the training seed, so runs
        of several training seeds share their folds and can be paired or averaged.
    exclude
        Patches (a boolean per row) never trained or validated on, but still predicted in their
        own fold: e.g. those whose label a reference map contradicts (:mod:`asgm.labels`). The
        folds do not depend on it, so runs with and without are compared on the same patches.

    Returns
    -------
    groups, splits
        ``groups``: ``fold`` and ``block`` per patch (and ``region_lon``, ``region_lat`` for
        ``regions``); ``splits[i]``: ``split`` and ``block`` per patch, fold ``i`` as the test set.

    Raises
    ------
    AsgmError
        Unknown scheme, too few blocks, or a held-out group without mines and non-mines.
    """
    config = config or TrainingConfig()
    if scheme not in SCHEMES:
        raise AsgmError(f"unknown cross-validation scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    index = dataset.index
    distance = config.min_distance_m or default_min_distance(dataset)
    if scheme == "kfold":
        groups = spatial_folds(index, k, distance, seed)
    else:
        groups = spatial_regions(index, k, distance, seed).rename(columns={"region": "fold"})
    folds = groups["fold"].to_numpy()
    for fold in range(k):
        labels = set(index.loc[folds == fold, "label"].astype(int).tolist())
        if labels != {0, 1}:
            raise AsgmError(f"{dataset.path}: {scheme} group {fold} holds label(s) {sorted(labels)} only ({(folds == fold).sum()} patches); "
                            "every held-out group needs mines and non-mines: use fewer folds or regions")
    left_out = np.zeros(len(index), bool) if exclude is None else np.asarray(exclude, bool)
    splits = [pd.DataFrame({"split": split.where(~left_out | (split == "test"), EXCLUDED).to_numpy(), "block": groups["block"].to_numpy()}, index=index.index)
              for split in held_out_splits(index, folds, distance, tuple(config.split[:2]), seed, config.split_areas)]
    return groups, splits


@dataclass
class CrossValidation:
    """Out-of-fold predictions of a cross-validation (:func:`cross_validate`)."""

    scheme: str
    #: One row per patch: ``patch_id, fold, block, label, probability`` and the fold's validation
    #: thresholds ``threshold_balanced``, ``threshold_f1`` and ``threshold_spec`` (plus ``category``
    #: when the index has one; ``threshold_balanced`` is empty for models saved before it existed).
    predictions: pd.DataFrame
    #: One row per fold: ``fold, model_dir, seconds`` (training time; 0 when reused), patches, mines.
    folds: pd.DataFrame

    def metrics(self, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
        """Metrics over every out-of-fold prediction at each fold's validation thresholds
        (``balanced``: maximum sensitivity + specificity, ``f1``: maximum F1, ``spec``: validation
        specificity ≥ the recipe's ``min_specificity``; ``balanced`` only where every fold has one),
        with block-bootstrap 95 % intervals.

        Returns
        -------
        pandas.DataFrame
            Index ``(operating_point, metric)``; columns ``value, ci_low, ci_high, n_blocks, n_mine_blocks``.
        """
        p = self.predictions
        tables = {point: evaluate.block_bootstrap(p["label"], p["probability"], p["block"], p[f"threshold_{point}"].to_numpy(), n_boot, seed)
                  for point in ("balanced", "f1", "spec") if f"threshold_{point}" in p and p[f"threshold_{point}"].notna().all()}
        return pd.concat(tables, names=["operating_point", "metric"])

    def per_fold(self, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
        """Per held-out fold or region: patches, mines, ROC-AUC, average precision, and sensitivity /
        specificity at the ``spec`` operating point, each with a block-bootstrap interval."""
        rows = []
        for fold, part in self.predictions.groupby("fold"):
            table = evaluate.block_bootstrap(part["label"], part["probability"], part["block"], part["threshold_spec"].to_numpy(), n_boot, seed)
            row = {"fold": fold, "patches": len(part), "mines": int(part["label"].sum()), "blocks": part["block"].nunique()}
            if "region_lon" in part:
                row |= {"centre_lon": round(float(part["region_lon"].iloc[0]), 2), "centre_lat": round(float(part["region_lat"].iloc[0]), 2)}
            for metric in ("roc_auc", "average_precision", "sensitivity", "specificity"):
                row |= {metric: table.loc[metric, "value"], f"{metric}_low": table.loc[metric, "ci_low"], f"{metric}_high": table.loc[metric, "ci_high"]}
            rows.append(row)
        return pd.DataFrame(rows).set_index("fold").join(self.folds.set_index("fold")[["seconds"]])


def cross_validate(dataset: Dataset | str | Path, output_directory: str | Path, config: TrainingConfig | None = None,
                   scheme: str = "kfold", k: int = 5, seed: int = 0, progress: bool = True, exclude: np.ndarray | None = None) -> CrossValidation:
    """Train the recipe ``config`` once per fold or region and collect the out-of-fold predictions.

    Parameters
    ----------
    dataset
        A dataset directory (or one read with :func:`asgm.patches.read_dataset`).
    output_directory
        Each fold's model directory goes to ``output_directory/fold<i>`` (reused when up to date,
        so an interrupted cross-validation resumes); the pooled predictions to
        ``output_directory/cv_predictions.csv``.
    config
        The training recipe (default: :class:`~asgm.config.TrainingConfig`'s).
    scheme, k, seed, exclude
        See :func:`fold_splits`.
    progress
        Show progress bars.
    """
    config = config or TrainingConfig()
    dataset = dataset if isinstance(dataset, Dataset) else read_dataset(dataset)
    groups, splits = fold_splits(dataset, scheme, k, config, seed, exclude)
    out = Path(output_directory)
    parts, folds = [], []
    for fold in progress_bar(range(k), desc=f"{scheme} cross-validation", unit="fold", disable=not progress):
        reused = is_up_to_date(dataset, out / f"fold{fold}", config, splits[fold])
        start = time.perf_counter()
        model_dir = train_experiment(dataset, out, f"fold{fold}", config, progress=progress, split=splits[fold])
        seconds = 0.0 if reused else round(time.perf_counter() - start, 1)
        metrics = read_metrics(model_dir)
        thresholds = json.loads((model_dir / "threshold.json").read_text(encoding="utf-8"))
        pred = pd.read_csv(model_dir / "predictions.csv")
        test = pred[pred["split"] == "test"]
        part = pd.DataFrame({"patch_id": test["patch_id"].to_numpy(), "fold": fold, "block": test["block"].to_numpy(),
                             "label": test["label"].to_numpy(), "probability": test["probability"].to_numpy(),
                             "threshold_balanced": thresholds.get("balanced", {}).get("threshold", np.nan),
                             "threshold_f1": thresholds.get("f1", {}).get("threshold", thresholds["threshold"]),
                             "threshold_spec": metrics["test_at_specificity"]["threshold"]})
        parts.append(part)
        folds.append({"fold": fold, "model_dir": str(model_dir), "seconds": seconds,
                      "train_patches": metrics["patches"]["train"], "validation_patches": metrics["patches"]["validation"],
                      "test_patches": metrics["patches"]["test"], "test_mines": metrics["mines"]["test"]})
    predictions = pd.concat(parts, ignore_index=True)
    extra = dataset.index.set_index("patch_id")
    columns = [c for c in ("category", "lon", "lat") if c in extra.columns]
    predictions = predictions.join(extra[columns], on="patch_id")
    if "region_lon" in groups:
        predictions = predictions.join(groups.assign(patch_id=dataset.index["patch_id"]).set_index("patch_id")[["region_lon", "region_lat"]], on="patch_id")
    result = CrossValidation(scheme, predictions, pd.DataFrame(folds))
    with atomic_path(out / "cv_predictions.csv") as tmp:
        predictions.to_csv(tmp, index=False)
    return result

