"""Thresholds, metrics and block-bootstrap confidence intervals (nothing here trains a model).

Thresholds are chosen on validation predictions only and then applied, unchanged, to the test set.
Confidence intervals resample whole spatial blocks (not single patches), because neighbouring
patches are not independent samples. :func:`seed_mean_intervals` and :func:`paired_difference`
summarise several runs (seeds) and compare two experiments; the experiment grid that produces
such runs is :mod:`asgm.experiments`.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest
from sklearn.metrics import precision_recall_curve, roc_curve

from asgm.errors import AsgmError, AsgmWarning, InputFileError

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


def _probabilities(p: np.ndarray, what: str) -> np.ndarray:
    """``p`` as a 1-d float array of probabilities, or an error naming ``what`` needed them."""
    p = np.asarray(p, float)
    if p.ndim != 1 or not len(p) or not np.isfinite(p).all() or p.min() < 0 or p.max() > 1:
        raise AsgmError(f"{what}: needs a list of probabilities in [0, 1], got {p.size} values"
                        + (f" from {np.nanmin(p):g} to {np.nanmax(p):g}" if p.size and not np.isnan(p).all() else ""))
    return p


def expected_f_beta_curve(p: np.ndarray, beta: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The F-beta expected at each threshold when ``p`` are calibrated probabilities, each patch
    counting as ``p`` of a mine: the scores in decreasing order and the expected F-beta when every
    patch down to that score is called a mine."""
    scores = np.sort(_probabilities(p, "expected F-beta"))[::-1]
    b2 = beta * beta
    return scores, (1 + b2) * np.cumsum(scores) / (b2 * scores.sum() + np.arange(1, len(scores) + 1))


def expected_f_beta_threshold(p: np.ndarray, beta: float = 1.0) -> tuple[float, float]:
    """Threshold that maximises the F-beta *expected* when ``p`` are calibrated probabilities
    (:func:`expected_f_beta_curve`; the plug-in rule, Jansche 2007, Lipton et al. 2014 — for
    calibrated scores the F1-optimal threshold is half the best F1).

    On a validation split of about a hundred patches :func:`f_beta_threshold` follows the few labels
    around its maximum; this rule moves only with the calibration and the spread of the scores.

    Returns
    -------
    threshold, expected_f_beta
        A patch is predicted a mine when its probability is >= ``threshold``.
    """
    scores, f = expected_f_beta_curve(p, beta)
    last_of_ties = np.append(scores[1:] < scores[:-1], True)  # a threshold takes every patch of equal score
    best = int(np.flatnonzero(last_of_ties)[np.argmax(f[last_of_ties])])
    return _centred(scores, float(scores[best])), float(f[best])


def balanced_threshold(p: np.ndarray) -> float:
    """Threshold that maximises the sensitivity + specificity *expected* when ``p`` are calibrated
    probabilities (each patch counting as ``p`` of a mine, as in :func:`expected_f_beta_threshold`).

    Calling a patch of probability ``q`` a mine adds ``q / Σp`` to the expected sensitivity and
    takes ``(1 − q) / Σ(1 − p)`` from the expected specificity, so the best threshold is the mean
    probability (for Platt calibration the validation share of mines): a patch is called a mine
    where a mine is likelier than among the validation patches as a whole. Unlike F1's, this
    operating point does not move with the share of mines among the patches it is chosen on (which
    depends on how the labels were collected and on a label audit), only with the ranking.

    Returns
    -------
    float
        The mean probability itself: a patch is predicted a mine when its probability is >= it. Not
        centred between the neighbouring validation scores as the other rules are: on about a
        hundred patches that gap is wide and its middle follows the few patches beside it, while
        the mean is the point of the gap the argument above names (resampling the validation
        patches moved the out-of-region sensitivity less: benchmarks/README.md).
    """
    return float(_probabilities(p, "balanced threshold").mean())


def youden_threshold(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Threshold that maximises sensitivity + specificity on (validation) labels ``y`` (Youden's J),
    centred between the neighbouring scores as :func:`f_beta_threshold`'s.

    Returns
    -------
    threshold, balanced_accuracy
    """
    y, p = _check(y, p, "threshold choice")
    fpr, tpr, thresholds = roc_curve(y, p)
    best = int(np.argmax(tpr - fpr))
    threshold = _centred(p, float(thresholds[best])) if np.isfinite(thresholds[best]) else float(np.nextafter(p.max(), np.inf))
    return threshold, float((1 + tpr[best] - fpr[best]) / 2)


def threshold_rule(thresholds: dict) -> tuple[str, str]:
    """How a ``threshold.json`` chose its thresholds, ``(rule, chosen_on)``: ``expected`` (the
    plug-in rule) or ``labels`` (the validation labels' maximum), on ``validation`` or
    ``out_of_fold`` predictions. Files written before these fields existed say it in ``chosen_by``."""
    text = str(thresholds.get("chosen_by", ""))
    return (thresholds.get("rule", "expected" if "expected" in text else "labels"),
            thresholds.get("chosen_on", "out_of_fold" if "out-of-fold" in text else "validation"))


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


def ranking_metrics(y: np.ndarray, p: np.ndarray, weight: np.ndarray | None = None) -> tuple[float, float]:
    """ROC-AUC and average precision of scores ``p`` for labels ``y`` (0/1) with sample weights, as
    scikit-learn's ``roc_auc_score`` and ``average_precision_score`` compute them (same curves, ties
    included), in plain numpy: the bootstraps call this thousands of times, and scikit-learn's input
    checks cost more than the sums. NaN when a class has no weight."""
    w = np.ones(len(y)) if weight is None else np.asarray(weight, float)
    order = np.argsort(p, kind="mergesort")[::-1]
    scores, positive, w = np.asarray(p)[order], np.asarray(y)[order].astype(bool), w[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # the last patch of each distinct score
    tps, fps = np.cumsum(w * positive)[last], np.cumsum(w * ~positive)[last]
    if len(last) == 0 or tps[-1] <= 0 or fps[-1] <= 0:
        return np.nan, np.nan
    tpr, fpr = np.r_[0.0, tps / tps[-1]], np.r_[0.0, fps / fps[-1]]
    roc_auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    predicted = tps + fps
    precision = np.divide(tps, predicted, out=np.ones_like(tps), where=predicted != 0)
    recall = tps / tps[-1]
    average_precision = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return roc_auc, average_precision


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
    out["roc_auc"], out["average_precision"] = ranking_metrics(y, p, weight)
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
                      f"(at least {MIN_BLOCKS} are needed); use more, or more widely spread, sampling points", AsgmWarning, stacklevel=2)
    elif min(mine_blocks, len(np.unique(block_of[y == 0]))) < MIN_CLASS_BLOCKS:
        warnings.warn(f"the test split's mines lie in {mine_blocks} and its non-mines in {len(np.unique(block_of[y == 0]))} of its "
                      f"{len(block_ids)} spatial blocks: intervals rest on so few independent samples that they are not meaningful", AsgmWarning, stacklevel=2)
    point = binary_metrics(y, p, threshold)
    rng = np.random.default_rng(seed)
    replicates = []
    for _ in range(n_boot):
        replicates.append(binary_metrics(y, p, threshold, weight=block_weights(block_of, rng)))
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


def wilson_interval(hits, n) -> tuple[float, float, float]:
    """A share and its 95 % Wilson interval; NaN where there is nothing to count."""
    if pd.isna(n) or n == 0:
        return np.nan, np.nan, np.nan
    interval = binomtest(int(hits), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return round(hits / n, 3), round(interval.low, 3), round(interval.high, 3)


def curves(y: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """Points of the precision–recall and ROC curves."""
    y, p = _check(y, p, "curves")
    precision, recall, _ = precision_recall_curve(y, p)
    fpr, tpr, _ = roc_curve(y, p)
    return {"precision": precision, "recall": recall, "fpr": fpr, "tpr": tpr}


def format_ci(table: pd.DataFrame, digits: int = 3) -> pd.Series:
    """``value [low, high]`` strings, one per metric, for display."""
    return table.apply(lambda r: f"{r['value']:.{digits}f} [{r['ci_low']:.{digits}f}, {r['ci_high']:.{digits}f}]", axis=1)


#: Metrics of the grid table and figures.
GRID_METRICS = ("roc_auc", "average_precision", "sensitivity", "specificity", "precision", "f1")


@dataclass
class RunPredictions:
    """The test predictions of one run and its validation-chosen threshold."""

    patch_id: np.ndarray
    y: np.ndarray
    p: np.ndarray
    blocks: np.ndarray
    threshold: float


def read_run(model_dir: str | Path, key: str = "test", split: str = "test") -> RunPredictions:
    """Predictions of one split of a model directory, with the threshold of ``metrics.json[key]``
    (``test``: the model's threshold, ``training.operating_point``; ``test_at_specificity``: the stricter one)."""
    model_dir = Path(model_dir)
    path = model_dir / "predictions.csv"
    if not path.is_file():
        raise InputFileError(path, "missing", "train the model first, or point at a complete model directory")
    pred = pd.read_csv(path)
    pred = pred[pred["split"] == split]
    threshold = json.loads((model_dir / "metrics.json").read_text(encoding="utf-8"))[key]["threshold"]
    return RunPredictions(pred["patch_id"].to_numpy(), pred["label"].to_numpy().astype(int), pred["probability"].to_numpy(float),
                          pred["block"].to_numpy(), float(threshold))


def block_weights(blocks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap weight of each patch: how often its block was drawn (as many draws as blocks)."""
    return joint_block_weights([blocks], rng)[0]


def joint_block_weights(blocks: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Bootstrap weights for several runs at once: blocks are drawn from the union of the runs'
    block ids (ids name the same place in every run of one dataset), so a block that is held out
    in several runs is drawn once for all of them rather than counted as independent evidence."""
    ids = np.unique(np.concatenate([np.asarray(b) for b in blocks]))
    drawn = np.bincount(rng.integers(0, len(ids), len(ids)), minlength=len(ids)).astype(float)
    return [drawn[np.searchsorted(ids, np.asarray(b))] for b in blocks]


def _distinct_blocks(runs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[int, int]:
    """Distinct test blocks, and distinct test blocks holding mines, over runs ``(y, blocks)``."""
    every = np.concatenate([np.asarray(b) for _, b in runs])
    mines = np.concatenate([np.asarray(b)[np.asarray(y) == 1] for y, b in runs])
    return len(np.unique(every)), len(np.unique(mines))


def _summarise(point: pd.DataFrame, replicates: pd.DataFrame, level: float, metrics: tuple[str, ...]) -> pd.DataFrame:
    alpha = (1 - level) / 2
    return pd.DataFrame({
        "mean": point[list(metrics)].mean(),
        "sd": point[list(metrics)].std(ddof=1) if len(point) > 1 else np.nan,
        "ci_low": replicates[list(metrics)].quantile(alpha),
        "ci_high": replicates[list(metrics)].quantile(1 - alpha),
        "n_seeds": len(point),
    })


def _mean_rows(rows: list[dict], metrics: tuple[str, ...]) -> dict[str, float]:
    """Per metric, the mean of the rows' defined values (as pandas' ``mean``), NaN when none is."""
    out = {}
    for m in metrics:
        v = np.asarray([row[m] for row in rows], float)
        v = v[~np.isnan(v)]
        out[m] = float(v.mean()) if len(v) else np.nan
    return out


def seed_mean_intervals(runs: list[RunPredictions], n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                        metrics: tuple[str, ...] = GRID_METRICS) -> pd.DataFrame:
    """Mean over seeds of each test metric, its spread (sd) over seeds, and a 95 % interval of the mean.

    The interval comes from a block bootstrap over the runs' test blocks together
    (:func:`joint_block_weights`): each replicate draws blocks, computes the metrics of every run
    with those weights and averages them over the runs. Runs of one dataset with different seeds
    hold out different blocks, so their mean rests on more places than one run does.

    Returns
    -------
    pandas.DataFrame
        One row per metric: ``mean, sd, ci_low, ci_high, n_seeds``, and ``test_blocks`` /
        ``test_mine_blocks`` (distinct over runs: how many places the interval rests on).
    """
    if not runs:
        raise AsgmError("no finished runs to summarise")
    point = pd.DataFrame([binary_metrics(r.y, r.p, r.threshold) for r in runs])
    rng = np.random.default_rng(seed)
    replicates = pd.DataFrame([
        _mean_rows(replicate, metrics)
        for replicate in ([binary_metrics(r.y, r.p, r.threshold, w) for r, w in zip(runs, joint_block_weights([r.blocks for r in runs], rng))]
                          for _ in range(n_boot))])
    table = _summarise(point, replicates, level, metrics)
    table["test_blocks"], table["test_mine_blocks"] = _distinct_blocks([(r.y, r.blocks) for r in runs])
    return table


def paired_difference(runs_a: dict[int, RunPredictions], runs_b: dict[int, RunPredictions], n_boot: int = 1000, seed: int = 0,
                      level: float = 0.95, metrics: tuple[str, ...] = GRID_METRICS) -> pd.DataFrame:
    """Difference A − B of each test metric, paired by seed and by test patch.

    For every seed both runs are scored on the test patches they share (all of them when the two
    experiments used the same split); each bootstrap replicate draws the spatial blocks once (for
    all seeds, see :func:`joint_block_weights`) and weights both runs' patches with the same draw,
    so the interval reflects the difference itself, not the two runs' separate uncertainties.

    Returns
    -------
    pandas.DataFrame
        One row per metric: ``mean`` (of the per-seed differences), ``sd`` over seeds, ``ci_low``,
        ``ci_high``, ``n_seeds``, ``test_patches`` (shared, per seed, summed), ``test_blocks`` and
        ``test_mine_blocks`` (distinct over seeds) and ``supported``: the interval excludes 0 and
        rests on at least :data:`MIN_BLOCKS` blocks, :data:`MIN_CLASS_BLOCKS` of them with mines.
    """
    seeds = sorted(set(runs_a) & set(runs_b))
    if not seeds:
        raise AsgmError("the two experiments share no seed: a paired comparison needs runs with the same seeds")
    pairs = []
    for s in seeds:
        a, b = runs_a[s], runs_b[s]
        common, ia, ib = np.intersect1d(a.patch_id, b.patch_id, return_indices=True)
        if len(np.unique(a.y[ia])) < 2:
            raise AsgmError(f"seed {s}: the two runs share {len(common)} test patches, not enough with both classes to compare them")
        pairs.append((a.y[ia], a.p[ia], b.p[ib], a.blocks[ia], a.threshold, b.threshold))

    def differences(weights=None) -> list[dict]:
        rows = []
        for i, (y, pa, pb, _, ta, tb) in enumerate(pairs):
            w = None if weights is None else weights[i]
            ma, mb = binary_metrics(y, pa, ta, w), binary_metrics(y, pb, tb, w)
            rows.append({m: ma[m] - mb[m] for m in metrics})
        return rows

    point = pd.DataFrame(differences())
    rng = np.random.default_rng(seed)
    replicates = pd.DataFrame([_mean_rows(rows, metrics)
                               for rows in (differences(joint_block_weights([blocks for _, _, _, blocks, _, _ in pairs], rng)) for _ in range(n_boot))])
    table = _summarise(point, replicates, level, metrics)
    table["test_patches"] = sum(len(p[0]) for p in pairs)
    table["test_blocks"], table["test_mine_blocks"] = _distinct_blocks([(y, blocks) for y, _, _, blocks, _, _ in pairs])
    enough = (table["test_blocks"] >= MIN_BLOCKS) & (table["test_mine_blocks"] >= MIN_CLASS_BLOCKS)
    table["supported"] = ((table["ci_low"] > 0) | (table["ci_high"] < 0)) & enough
    return table


def describe_difference(row: pd.Series | dict, digits: int = 3) -> str:
    """One sentence on a paired difference (a row of :func:`grid_comparisons`) that claims a
    difference only when its interval excludes 0 and rests on enough spatial blocks."""
    metric = str(row["metric"]).replace("_", " ")
    numbers = f"{row['mean']:+.{digits}f} [{row['ci_low']:+.{digits}f}, {row['ci_high']:+.{digits}f}]"
    head = f"{row['experiment']} − {row['reference']}, {metric}: {numbers} over {int(row['n_seeds'])} seed(s)"
    if row["test_blocks"] < MIN_BLOCKS or row["test_mine_blocks"] < MIN_CLASS_BLOCKS:
        return (f"{head} — the test splits hold only {int(row['test_blocks'])} distinct spatial blocks ({int(row['test_mine_blocks'])} with mines): "
                "too few for the interval to support any claim.")
    if row["ci_low"] > 0:
        return f"{head} — higher; the 95 % interval excludes 0."
    if row["ci_high"] < 0:
        return f"{head} — lower; the 95 % interval excludes 0."
    return f"{head} — the 95 % interval includes 0: no difference can be claimed."


def category_breakdown(y: np.ndarray, predicted: np.ndarray, category: np.ndarray, blocks: np.ndarray, probability: np.ndarray | None = None,
                       n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Share of patches classified correctly per category (sensitivity for mine categories,
    specificity for the others), with block-bootstrap intervals within each category.

    Parameters
    ----------
    y, predicted
        Labels and the model's 0/1 calls (each run at its own threshold, so runs can be pooled).
    category, blocks
        Category and spatial block of each patch.
    probability
        Probabilities, for the mean per category (optional).

    Returns
    -------
    pandas.DataFrame
        One row per category: ``label, patches, blocks, correct, ci_low, ci_high`` (and ``mean_probability``).
    """
    y, predicted = np.asarray(y).astype(int), np.asarray(predicted).astype(bool)
    category, blocks = np.asarray(category).astype(str), np.asarray(blocks)
    correct = predicted == (y == 1)
    rng = np.random.default_rng(seed)
    alpha = (1 - level) / 2
    rows = {}
    for cat in sorted(np.unique(category)):
        sel = category == cat
        reps = [np.average(correct[sel], weights=w) for w in (block_weights(blocks[sel], rng) for _ in range(n_boot)) if w.sum() > 0]
        rows[cat] = {"label": int(np.bincount(y[sel]).argmax()), "patches": int(sel.sum()), "blocks": len(np.unique(blocks[sel])),
                     "correct": float(correct[sel].mean()), "ci_low": float(np.quantile(reps, alpha)), "ci_high": float(np.quantile(reps, 1 - alpha))}
        if probability is not None:
            rows[cat]["mean_probability"] = float(np.asarray(probability, float)[sel].mean())
    return pd.DataFrame(rows).T.rename_axis("category")
