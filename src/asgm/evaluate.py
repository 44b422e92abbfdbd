"""Thresholds, metrics and block-bootstrap confidence intervals.

Thresholds are chosen on validation predictions only and then applied, unchanged, to the test set.
Confidence intervals resample whole spatial blocks (not single patches), because neighbouring
patches are not independent samples.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from asgm.errors import AsgmError

#: Metrics reported for a threshold, in table order.
METRICS = ("precision", "sensitivity", "specificity", "f1", "average_precision", "roc_auc")
CONFUSION = ("tn", "fp", "fn", "tp")
#: Fewer test blocks than this (or fewer blocks holding mines than MIN_CLASS_BLOCKS) and a bootstrap
#: interval says little: a warning is raised.
MIN_BLOCKS = 10
MIN_CLASS_BLOCKS = 5


def _check(y: np.ndarray, p: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    y, p = np.asarray(y).astype(int), np.asarray(p, float)
    if y.shape != p.shape or y.ndim != 1:
        raise AsgmError(f"{what}: labels {y.shape} and probabilities {p.shape} must be 1-D and of the same length")
    if len(np.unique(y)) < 2:
        raise AsgmError(f"{what}: needs both mines and non-mines, got only label(s) {sorted(set(y.tolist()))}; "
                        "use more data or a split with both classes in it")
    return y, p


def f_beta_threshold(y: np.ndarray, p: np.ndarray, beta: float = 1.0) -> tuple[float, float]:
    """Threshold that maximises F-beta on (validation) labels ``y`` and probabilities ``p``.

    Returns
    -------
    threshold, f_beta
        A patch is predicted a mine when its probability is >= ``threshold``.
    """
    y, p = _check(y, p, "threshold choice")
    precision, recall, thresholds = precision_recall_curve(y, p)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    b2 = beta * beta
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.nan_to_num((1 + b2) * precision * recall / (b2 * precision + recall))
    best = int(np.argmax(f))
    return _centred(p, float(thresholds[best])), float(f[best])


def _centred(p: np.ndarray, lowest_positive: float) -> float:
    """Every threshold in (largest score below ``lowest_positive``, ``lowest_positive``] gives the same
    validation predictions; return the middle of that interval rather than its edge, so a test
    patch scoring a hair below the last validation positive is not decided by chance."""
    below = p[p < lowest_positive]
    return float((below.max() + lowest_positive) / 2) if len(below) else float(lowest_positive)


def specificity_threshold(y: np.ndarray, p: np.ndarray, min_specificity: float = 0.95) -> float:
    """Threshold with the highest sensitivity on (validation) ``y, p`` among those whose specificity
    is at least ``min_specificity`` (centred between the neighbouring scores, as in :func:`f_beta_threshold`)."""
    y, p = _check(y, p, "threshold choice")
    negatives = np.sort(p[y == 0])
    # anything above the (k+1)-th highest negative leaves at most k false positives
    allowed_fp = int(np.floor((1 - min_specificity) * len(negatives) + 1e-9))
    if allowed_fp >= len(negatives):
        return float(p.min())
    last_negative = negatives[len(negatives) - 1 - allowed_fp]
    above = p[p > last_negative]
    return _centred(p, float(above.min())) if len(above) else float(np.nextafter(last_negative, np.inf))


def confusion_counts(y: np.ndarray, predicted: np.ndarray, weight: np.ndarray | None = None) -> dict[str, float]:
    """``tn, fp, fn, tp`` (weighted counts when ``weight`` is given)."""
    w = np.ones(len(y)) if weight is None else weight
    y, predicted = np.asarray(y).astype(bool), np.asarray(predicted).astype(bool)
    return {"tn": float(w[~y & ~predicted].sum()), "fp": float(w[~y & predicted].sum()),
            "fn": float(w[y & ~predicted].sum()), "tp": float(w[y & predicted].sum())}


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float, weight: np.ndarray | None = None) -> dict[str, float]:
    """Precision, sensitivity (recall), specificity, F1 at ``threshold``, threshold-free average
    precision (PR-AUC) and ROC-AUC, and the confusion counts. Undefined values are NaN."""
    y, p = np.asarray(y).astype(int), np.asarray(p, float)
    c = confusion_counts(y, p >= threshold, weight)
    tn, fp, fn, tp = (c[k] for k in CONFUSION)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "precision": tp / (tp + fp) if tp + fp else np.nan,
            "sensitivity": tp / (tp + fn) if tp + fn else np.nan,
            "specificity": tn / (tn + fp) if tn + fp else np.nan,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else np.nan,
        }
    both = len(np.unique(y[weight > 0] if weight is not None else y)) == 2
    out["average_precision"] = float(average_precision_score(y, p, sample_weight=weight)) if both else np.nan
    out["roc_auc"] = float(roc_auc_score(y, p, sample_weight=weight)) if both else np.nan
    return {**{k: float(v) for k, v in out.items()}, **c}


def block_bootstrap(y: np.ndarray, p: np.ndarray, blocks: np.ndarray, threshold: float, n_boot: int = 1000,
                    seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Metrics with confidence intervals from a bootstrap over spatial blocks.

    Each replicate draws as many blocks as there are, with replacement, and weights every patch by
    how often its block was drawn; the interval is the percentile interval of the replicates.

    Parameters
    ----------
    y, p
        Test labels and probabilities.
    blocks
        Spatial block of each patch (see :func:`asgm.sampling.spatial_blocks`).
    threshold
        Decision threshold (chosen on validation data).
    n_boot
        Number of replicates.
    seed
        Seed of the resampling.
    level
        Coverage of the interval.

    Returns
    -------
    pandas.DataFrame
        One row per metric (and confusion count): ``value`` (on the data as given), ``ci_low``,
        ``ci_high``, ``n_blocks`` and ``n_mine_blocks`` (blocks holding at least one mine).
    """
    y, p = _check(y, p, "bootstrap")
    block_ids, block_of = np.unique(np.asarray(blocks), return_inverse=True)
    mine_blocks = len(np.unique(block_of[y == 1]))
    if len(block_ids) < MIN_BLOCKS:
        warnings.warn(f"only {len(block_ids)} spatial blocks in the test split: the bootstrap intervals are not meaningful "
                      f"(at least {MIN_BLOCKS} are needed); use more, or more widely spread, sampling points", stacklevel=2)
    elif min(mine_blocks, len(np.unique(block_of[y == 0]))) < MIN_CLASS_BLOCKS:
        warnings.warn(f"the test split's mines lie in {mine_blocks} and its non-mines in {len(np.unique(block_of[y == 0]))} of its "
                      f"{len(block_ids)} spatial blocks: intervals rest on so few independent samples that they are not meaningful", stacklevel=2)
    point = binary_metrics(y, p, threshold)
    rng = np.random.default_rng(seed)
    replicates = []
    for _ in range(n_boot):
        drawn = np.bincount(rng.integers(0, len(block_ids), len(block_ids)), minlength=len(block_ids))
        replicates.append(binary_metrics(y, p, threshold, weight=drawn[block_of].astype(float)))
    reps = pd.DataFrame(replicates)
    alpha = (1 - level) / 2
    table = pd.DataFrame({
        "value": pd.Series(point),
        "ci_low": reps.quantile(alpha),
        "ci_high": reps.quantile(1 - alpha),
    })
    table["n_blocks"] = len(block_ids)
    table["n_mine_blocks"] = mine_blocks
    return table.loc[list(METRICS) + list(CONFUSION)]


def curves(y: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """Points of the precision–recall and ROC curves."""
    y, p = _check(y, p, "curves")
    precision, recall, _ = precision_recall_curve(y, p)
    fpr, tpr, _ = roc_curve(y, p)
    return {"precision": precision, "recall": recall, "fpr": fpr, "tpr": tpr}


def format_ci(table: pd.DataFrame, digits: int = 3) -> pd.Series:
    """``value [low, high]`` strings, one per metric, for display."""
    return table.apply(lambda r: f"{r['value']:.{digits}f} [{r['ci_low']:.{digits}f}, {r['ci_high']:.{digits}f}]", axis=1)
