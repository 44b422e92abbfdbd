"""Thresholds, metrics, block-bootstrap confidence intervals, and the experiment grid.

Thresholds are chosen on validation predictions only and then applied, unchanged, to the test set.
Confidence intervals resample whole spatial blocks (not single patches), because neighbouring
patches are not independent samples. The experiment grid (:func:`experiment_grid`,
:func:`run_grid`) trains the ablations of the profile once per seed and summarises them with
intervals (:func:`grid_table`) and paired differences (:func:`grid_comparisons`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve
from tqdm.auto import tqdm

from asgm.config import Profile, TrainingConfig
from asgm.errors import AsgmError, InputFileError
from asgm.patches import Dataset, read_dataset

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


def curves(y: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """Points of the precision–recall and ROC curves."""
    y, p = _check(y, p, "curves")
    precision, recall, _ = precision_recall_curve(y, p)
    fpr, tpr, _ = roc_curve(y, p)
    return {"precision": precision, "recall": recall, "fpr": fpr, "tpr": tpr}


def format_ci(table: pd.DataFrame, digits: int = 3) -> pd.Series:
    """``value [low, high]`` strings, one per metric, for display."""
    return table.apply(lambda r: f"{r['value']:.{digits}f} [{r['ci_low']:.{digits}f}, {r['ci_high']:.{digits}f}]", axis=1)


# --- the experiment grid (notebook 04) -------------------------------------------------------

#: Metrics of the grid table and figures.
GRID_METRICS = ("roc_auc", "average_precision", "sensitivity", "specificity", "precision", "f1")


@dataclass(frozen=True)
class Experiment:
    """One experiment of the grid: what differs from the profile's training settings.

    ``reference`` names the experiment it is compared with (same seeds, same split), if any.
    """

    name: str
    group: str
    patch_size: int
    channels: tuple[str, ...]
    class_weights: bool = False
    train_negatives: tuple[str, ...] | None = None
    min_distance_m: float | None = None
    reference: str | None = None
    question: str = ""

    def training(self, base: TrainingConfig, seed: int, epochs: int | None = None) -> TrainingConfig:
        """The training settings of this experiment's run with ``seed``."""
        return dataclasses.replace(base, channels=self.channels, class_weights=self.class_weights, train_negatives=self.train_negatives,
                                   min_distance_m=self.min_distance_m if self.min_distance_m is not None else base.min_distance_m,
                                   seed=seed, epochs=epochs or base.epochs)


def experiment_grid(profile: Profile) -> list[Experiment]:
    """The experiments of the profile's ``experiments.groups`` (see :class:`asgm.config.ExperimentsConfig`).

    The baseline is Sentinel-2 + every OSM channel of the profile at the first patch size with the
    training section's settings; each group changes one thing. Groups that need OSM channels (or a
    second patch size) are left out when the profile has none.
    """
    bands, osm, groups = tuple(profile.imagery.bands), tuple(profile.osm.channels), profile.experiments.groups
    size, base_cw = profile.patches.sizes[0], profile.training.class_weights
    baseline = "s2_osm" if osm else "s2_only"
    grid = [Experiment(baseline, "osm", size, bands + osm, base_cw)]
    if osm and "osm" in groups:
        grid.append(Experiment("s2_only", "osm", size, bands, base_cw))
        grid[0] = dataclasses.replace(grid[0], reference="s2_only", question="Do the OSM channels help?")
    if len(osm) > 1 and "single_osm" in groups:
        grid += [Experiment(f"s2_plus_{c}", "single_osm", size, bands + (c,), base_cw, reference="s2_only",
                            question=f"Does {c} alone help?") for c in osm]
        if "osm" not in groups:
            grid.append(Experiment("s2_only", "osm", size, bands, base_cw))
    if len(osm) > 1 and "leave_one_out" in groups:
        grid += [Experiment(f"s2_osm_minus_{c}", "leave_one_out", size, bands + tuple(o for o in osm if o != c), base_cw,
                            reference=baseline, question=f"Does leaving {c} out hurt?") for c in osm]
    sizes = profile.patches.sizes
    if len(sizes) > 1 and "patch_size" in groups:
        # one split for every size, far enough apart for the largest patch: a paired comparison
        distance = max(sizes) * profile.patches.resolution_m * math.sqrt(2)
        grid += [Experiment(f"{baseline}_{s}px", "patch_size", s, bands + osm, base_cw, min_distance_m=distance,
                            reference=None if s == sizes[0] else f"{baseline}_{sizes[0]}px",
                            question=f"Does {s} px context beat {sizes[0]} px?") for s in sizes]
    if "negatives" in groups:
        grid += [Experiment(f"{baseline}_{kind}_negatives", "negatives", size, bands + osm, base_cw, train_negatives=(f"{kind}_negative",),
                            reference=baseline, question=f"Training on {kind} negatives only, instead of both?") for kind in ("curated", "random")]
    if "class_weights" in groups:
        name = f"{baseline}_{'no_' if base_cw else ''}class_weights"
        grid.append(Experiment(name, "class_weights", size, bands + osm, not base_cw, reference=baseline,
                               question=f"Does {'dropping' if base_cw else 'adding'} class weights change the result?"))
    return grid


def run_grid(experiments: list[Experiment], datasets: dict[int, Dataset | str | Path], base: TrainingConfig, seeds: tuple[int, ...],
             output_directory: str | Path, epochs: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Train every experiment once per seed, skipping runs whose model directory is up to date.

    Parameters
    ----------
    experiments
        From :func:`experiment_grid`.
    datasets
        Dataset (or its directory) per patch size.
    base
        The profile's training settings, which each experiment changes.
    seeds
        Seeds of the runs.
    output_directory
        Model directories go to ``output_directory/<experiment>/seed<k>``.
    epochs
        Maximum epochs (default: ``base.epochs``).
    progress
        Show progress bars.

    Returns
    -------
    pandas.DataFrame
        One row per run: ``experiment, group, reference, seed, model_dir, status`` (``trained``,
        ``cached`` or ``skipped``) and ``reason`` (why a run was skipped: a split that cannot hold
        mines and non-mines in validation and test, a missing dataset, …).
    """
    import keras

    from asgm.train import is_up_to_date, train_experiment

    read = {size: d if isinstance(d, Dataset) else read_dataset(d) for size, d in datasets.items()}
    rows = []
    bar = tqdm(total=len(experiments) * len(seeds), desc="experiment grid", unit="run", disable=not progress)
    for exp in experiments:
        for seed in seeds:
            config = exp.training(base, seed, epochs)
            row = {"experiment": exp.name, "group": exp.group, "reference": exp.reference, "seed": seed,
                   "model_dir": Path(output_directory) / exp.name / f"seed{seed}", "status": "cached", "reason": ""}
            bar.set_postfix_str(f"{exp.name} seed {seed}")
            if exp.patch_size not in read:
                row |= {"status": "skipped", "reason": f"no {exp.patch_size} px dataset (add {exp.patch_size} to patches.sizes and rebuild)"}
            elif not is_up_to_date(read[exp.patch_size], row["model_dir"], config):
                try:
                    train_experiment(read[exp.patch_size], Path(output_directory) / exp.name, f"seed{seed}", config, progress=progress)
                    row["status"] = "trained"
                except AsgmError as exc:
                    row |= {"status": "skipped", "reason": str(exc)}
                keras.backend.clear_session()  # keeps memory flat over many runs
            rows.append(row)
            bar.update(1)
    bar.close()
    return pd.DataFrame(rows)


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
    (``test``: maximum validation F1; ``test_at_specificity``: the stricter one)."""
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
        pd.DataFrame([binary_metrics(r.y, r.p, r.threshold, w) for r, w in zip(runs, joint_block_weights([r.blocks for r in runs], rng))])[list(metrics)].mean()
        for _ in range(n_boot)])
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

    def differences(weights=None):
        rows = []
        for i, (y, pa, pb, _, ta, tb) in enumerate(pairs):
            w = None if weights is None else weights[i]
            ma, mb = binary_metrics(y, pa, ta, w), binary_metrics(y, pb, tb, w)
            rows.append({m: ma[m] - mb[m] for m in metrics})
        return pd.DataFrame(rows)

    point = differences()
    rng = np.random.default_rng(seed)
    replicates = pd.DataFrame([differences(joint_block_weights([blocks for _, _, _, blocks, _, _ in pairs], rng)).mean() for _ in range(n_boot)])
    table = _summarise(point, replicates, level, metrics)
    table["test_patches"] = sum(len(p[0]) for p in pairs)
    table["test_blocks"], table["test_mine_blocks"] = _distinct_blocks([(y, blocks) for y, _, _, blocks, _, _ in pairs])
    enough = (table["test_blocks"] >= MIN_BLOCKS) & (table["test_mine_blocks"] >= MIN_CLASS_BLOCKS)
    table["supported"] = ((table["ci_low"] > 0) | (table["ci_high"] < 0)) & enough
    return table


def collect_runs(runs: pd.DataFrame, key: str = "test") -> dict[str, dict[int, RunPredictions]]:
    """Test predictions of every finished run of :func:`run_grid`: ``{experiment: {seed: RunPredictions}}``."""
    out: dict[str, dict[int, RunPredictions]] = {}
    for row in runs[runs["status"] != "skipped"].itertuples():
        out.setdefault(row.experiment, {})[int(row.seed)] = read_run(row.model_dir, key)
    return out


def grid_table(runs: pd.DataFrame, key: str = "test", n_boot: int = 1000, seed: int = 0, metrics: tuple[str, ...] = GRID_METRICS) -> pd.DataFrame:
    """The results table of the grid: one row per experiment and metric with ``mean``, ``sd`` over
    seeds and the 95 % block-bootstrap interval of the mean; skipped experiments keep one row
    with the reason.

    Returns
    -------
    pandas.DataFrame
        Columns ``experiment, group, metric, mean, sd, ci_low, ci_high, n_seeds, test_blocks,
        test_mine_blocks, reason``.
    """
    collected = collect_runs(runs, key)
    rows = []
    for (name, group), sub in runs.groupby(["experiment", "group"], sort=False):
        if name not in collected:
            rows.append(pd.DataFrame([{"experiment": name, "group": group, "metric": "", "n_seeds": 0, "reason": sub["reason"].iloc[0]}]))
            continue
        table = seed_mean_intervals(list(collected[name].values()), n_boot, seed, metrics=metrics)
        rows.append(table.rename_axis("metric").reset_index().assign(experiment=name, group=group, reason=""))
    columns = ["experiment", "group", "metric", "mean", "sd", "ci_low", "ci_high", "n_seeds", "test_blocks", "test_mine_blocks", "reason"]
    return pd.concat(rows, ignore_index=True).reindex(columns=columns)


def grid_comparisons(runs: pd.DataFrame, experiments: list[Experiment], key: str = "test", n_boot: int = 1000, seed: int = 0,
                     metrics: tuple[str, ...] = GRID_METRICS) -> pd.DataFrame:
    """Paired differences (experiment − its reference) for every experiment with a reference and runs.

    Returns
    -------
    pandas.DataFrame
        Columns ``experiment, reference, question, metric, mean, sd, ci_low, ci_high, n_seeds,
        test_patches, test_blocks, test_mine_blocks, supported`` (see :func:`paired_difference`).
    """
    collected = collect_runs(runs, key)
    rows = []
    for exp in experiments:
        if exp.reference and exp.name in collected and exp.reference in collected:
            table = paired_difference(collected[exp.name], collected[exp.reference], n_boot, seed, metrics=metrics)
            rows.append(table.rename_axis("metric").reset_index().assign(experiment=exp.name, reference=exp.reference, question=exp.question))
    columns = ["experiment", "reference", "question", "metric", "mean", "sd", "ci_low", "ci_high", "n_seeds", "test_patches",
               "test_blocks", "test_mine_blocks", "supported"]
    return pd.concat(rows, ignore_index=True)[columns] if rows else pd.DataFrame(columns=columns)


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
