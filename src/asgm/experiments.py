"""The experiment grid of notebook 04: ablations of the profile's training recipe, trained once per
seed (:func:`run_grid`, cached per run), summarised with intervals (:func:`grid_table`) and paired
differences (:func:`grid_comparisons`). Metrics and intervals come from :mod:`asgm.evaluate`;
training from :mod:`asgm.train`.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from asgm.atomic import atomic_path
from asgm.cluster import run_tasks
from asgm.config import Profile, TrainingConfig
from asgm.errors import AsgmError
from asgm.evaluate import GRID_METRICS, RunPredictions, paired_difference, read_run, seed_mean_intervals
from asgm.patches import Dataset, read_dataset
from asgm.train import is_up_to_date, train_experiment


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

    def training(self, base: TrainingConfig, seed: int, epochs: int | None = None, ensemble: int | None = None) -> TrainingConfig:
        """The training settings of this experiment's run with ``seed`` (``epochs``, ``ensemble``:
        the grid's own, when given). The seed moves the split too (``split_seed``), so the seeds'
        spread includes which patches are held out."""
        return dataclasses.replace(base, channels=self.channels, class_weights=self.class_weights, train_negatives=self.train_negatives,
                                   min_distance_m=self.min_distance_m if self.min_distance_m is not None else base.min_distance_m,
                                   seed=seed, split_seed=seed, epochs=epochs or base.epochs, ensemble=ensemble or base.ensemble)


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
             output_directory: str | Path, epochs: int | None = None, progress: bool = True, scheduler: str = "synchronous",
             workers: int = 1, reuse: str | Path | None = None, ensemble: int | None = None) -> pd.DataFrame:
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
    scheduler, workers
        Where the runs train (they are independent): ``synchronous`` (one after another in this
        process), ``local`` (a dask LocalCluster of ``workers`` processes, each with its share of
        the cores) or a dask scheduler address; see :mod:`asgm.cluster`.
    reuse
        A directory of models trained elsewhere (notebook 03's ``models/<profile>``): a run whose
        ``reuse/<experiment>`` was trained on the same dataset with the same settings is copied
        instead of trained again.
    ensemble
        Models per run (default: ``base.ensemble``).

    Returns
    -------
    pandas.DataFrame
        One row per run: ``experiment, group, reference, seed, model_dir, status`` (``trained``,
        ``cached``, ``reused`` or ``skipped``) and ``reason`` (why a run was skipped: a split that
        cannot hold mines and non-mines in validation and test, a missing dataset, …).
    """
    read = {size: d if isinstance(d, Dataset) else read_dataset(d) for size, d in datasets.items()}
    rows, tasks = [], []
    for exp in experiments:
        for seed in seeds:
            config = exp.training(base, seed, epochs, ensemble)
            row = {"experiment": exp.name, "group": exp.group, "reference": exp.reference, "seed": seed,
                   "model_dir": Path(output_directory) / exp.name / f"seed{seed}", "status": "cached", "reason": ""}
            if exp.patch_size not in read:
                row |= {"status": "skipped", "reason": f"no {exp.patch_size} px dataset (add {exp.patch_size} to patches.sizes and rebuild)"}
            elif not is_up_to_date(read[exp.patch_size], row["model_dir"], config):
                if reuse is not None and is_up_to_date(read[exp.patch_size], Path(reuse) / exp.name, config):
                    with atomic_path(row["model_dir"], marker="config.json", what="model directory") as tmp:
                        shutil.copytree(Path(reuse) / exp.name, tmp)
                    row["status"] = "reused"
                else:
                    tasks.append((len(rows), (_task_dataset(read[exp.patch_size], scheduler), Path(output_directory) / exp.name, f"seed{seed}", config)))
            rows.append(row)
    outcomes = run_tasks(_train_run, [task for _, task in tasks], scheduler, workers, progress, desc="experiment grid", unit="run",
                         describe=lambda task: f"{task[1].name} {task[2]}")
    for i, error in outcomes:
        rows[tasks[i][0]] |= {"status": "skipped", "reason": error} if error else {"status": "trained"}
    return pd.DataFrame(rows)


def train_models(dataset: Dataset, output_directory: str | Path, configs: dict[str, TrainingConfig], scheduler: str = "synchronous",
                 workers: int = 1, progress: bool = True) -> dict[str, Path]:
    """Train one model per entry of ``configs`` (``{experiment name: settings}``) into
    ``output_directory/<name>``, in this process or on a dask cluster (``scheduler``, ``workers``: as
    :func:`run_grid`); a model directory that is up to date is reused. Returns each model's directory.

    Raises
    ------
    AsgmError
        A model cannot be trained (the first such error).
    """
    tasks = [(_task_dataset(dataset, scheduler), Path(output_directory), name, config) for name, config in configs.items()]
    for _ in run_tasks(_train_model, tasks, scheduler, workers, progress, desc="training", unit="model", describe=lambda task: task[2]):
        pass
    return {name: Path(output_directory) / name for name in configs}


def _task_dataset(dataset: Dataset, scheduler: str) -> Dataset | Path:
    """What a training task carries: the dataset in this process; its directory for a cluster,
    whose worker processes read it themselves rather than receive its arrays."""
    return dataset if scheduler == "synchronous" else dataset.path


def _train_model(task: tuple) -> Path:
    """Train one model of a task ``(dataset, output_directory, name, config)``."""
    from asgm.backend import keras

    dataset, output_directory, name, config = task
    try:
        return train_experiment(dataset, output_directory, name, config, progress=False)
    finally:
        keras.backend.clear_session()  # keeps memory flat over many runs in one process


def _train_run(task: tuple) -> str:
    """Train one run of the grid; the error message if it cannot be trained (else empty)."""
    try:
        _train_model(task)
    except AsgmError as exc:
        return str(exc)
    return ""


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
