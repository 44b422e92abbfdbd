"""Training with a spatially blocked split, and the model directory.

``python -m asgm.train --input_directory DATASET --output_directory DIR --experiment_name NAME``
trains on a dataset directory and writes ``DIR/NAME/``:

- ``model.keras`` — the Keras model (an ensemble is one model averaging its members);
- ``config.json`` — channels, normalisation, patch size, training settings and the split;
- ``threshold.json`` — thresholds chosen on the validation split only (on calibrated probabilities);
- ``calibration.json`` — the probability calibration fitted on the validation split;
- ``metrics.json`` — test metrics with block-bootstrap 95 % confidence intervals;
- ``predictions.csv`` — ``patch_id, split, block, probability`` (calibrated), ``raw_probability, label`` of every patch;
- ``history.csv`` and ``figures/`` — learning curves, test PR/ROC curves, confusion matrix, reliability diagram.

A rerun with the same dataset and settings finds the finished directory and does nothing.
"""

from __future__ import annotations

import sys

from asgm import cli

if __name__ == "__main__":  # --help and bad flags answer before TensorFlow loads
    cli.check_early(cli.train_arguments)

# The imports below load TensorFlow (seconds), after the command line was checked (E402 on purpose).
import dataclasses
import hashlib
import json
import math
import warnings
from datetime import datetime, timezone
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, fbeta_score

from asgm import evaluate, plots
from asgm.atomic import atomic_path, check_target, plain_name
from asgm.augment import augment_batch
from asgm.backend import keras
from asgm.calibrate import apply_calibration, fit_calibration
from asgm.config import OSM_CHANNELS, TrainingConfig
from asgm.errors import AsgmError, AsgmWarning, InputFileError
from asgm.models import ARCHITECTURES, band_statistics, build_model, ensemble, normalize_patches, predict_probabilities
from asgm.patches import Dataset, read_dataset
from asgm.progress import progress_bar
from asgm.labels import confident_learning_flags
from asgm.sampling import EXCLUDED, held_out_splits, min_distance_between, spatial_folds, spatial_split
from asgm.scar import open_ground_ha

MODEL_FILES = ("model.keras", "config.json", "threshold.json", "metrics.json", "calibration.json", "predictions.csv")
#: Version of the model directory's contents; bump it when they change, so older directories are retrained.
MODEL_FORMAT = 3
#: Open ground (ha) below which a mine patch shows little or none of its mining, and the share of
#: such mine patches above which training warns (on the real benchmark: 22 % of the mines, 84 % in one region).
HIDDEN_MINE_HA, HIDDEN_MINE_SHARE = 0.5, 0.1
#: With ``training.teacher``: the teacher's share of a training patch's target (Hinton et al.'s
#: soft targets; the rest is the true label).
TEACHER_WEIGHT = 0.5


class AugmentedBatches(keras.utils.PyDataset):
    """Shuffled training batches ``(x, y, sample_weight)``, each patch passed through the named
    random ``transforms`` of :mod:`asgm.augment` (``binary``: the 0/1 OSM channels, resampled by
    nearest neighbour). Deterministic for a given seed."""

    def __init__(self, x: np.ndarray, y: np.ndarray, weights: np.ndarray, batch_size: int, seed: int,
                 transforms: tuple[str, ...] = ("dihedral",), binary: np.ndarray | None = None):
        super().__init__()
        self.x, self.y, self.weights = x, y.astype(np.float32), weights.astype(np.float32)
        self.batch_size, self.seed, self.transforms = batch_size, seed, tuple(transforms)
        self.binary = np.zeros(x.shape[-1], bool) if binary is None else np.asarray(binary, bool)
        self.epoch = 0
        self.order = np.random.default_rng([seed, 0]).permutation(len(x))

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, i: int):
        rows = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        x = self.x[rows]
        if self.transforms:
            x = augment_batch(x, self.transforms, self.binary, np.random.default_rng([self.seed, self.epoch, i]))
        return x, self.y[rows], self.weights[rows]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x))


def bagging_sample(n: int, share: float | None, seed: int) -> np.ndarray:
    """Rows of a member's training set: ``round(share · n)`` draws with replacement from ``n``
    training patches (a bootstrap sample, as Earth Genome's members), or all rows for ``None``."""
    if share is None:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, 1]).integers(0, n, max(1, round(share * n))))


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Weights n / (2 · n_c) of non-mines (0) and mines (1), so both classes weigh the same in the loss."""
    labels = np.asarray(labels).astype(int)
    n = len(labels)
    return {c: n / (2 * max(int((labels == c).sum()), 1)) for c in (0, 1)}


class EpochProgress(keras.callbacks.Callback):
    """One progress bar per training run, advanced each epoch, showing loss and validation PR-AUC."""

    def __init__(self, epochs: int, description: str, enabled: bool = True):
        super().__init__()
        self.bar = progress_bar(total=epochs, desc=description, unit="epoch", disable=not enabled, leave=False)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.bar.set_postfix(loss=f"{logs.get('loss', float('nan')):.3f}", val_pr_auc=f"{logs.get('val_pr_auc', float('nan')):.3f}")
        self.bar.update(1)

    def on_train_end(self, logs=None):
        self.bar.close()


def default_min_distance(dataset: Dataset) -> float:
    """The patch diagonal (m): held-out patches at least this far from every training patch
    cannot overlap one, whatever their grids' orientation."""
    return dataset.meta["patch_size"] * float(dataset.meta.get("resolution_m", 10.0)) * math.sqrt(2)


def split_dataset(dataset: Dataset, config: TrainingConfig) -> pd.DataFrame:
    """The spatially blocked train / validation / test split that training uses (``split`` and
    ``block`` per patch), checked to hold both classes in validation and test.

    Raises
    ------
    AsgmError
        Validation or test lacks mines or non-mines.
    """
    min_distance = config.min_distance_m or default_min_distance(dataset)
    classes = sorted(set(dataset.index["label"].astype(int).tolist()))
    if classes != [0, 1]:
        raise InputFileError(dataset.path / "index.csv", f"every patch has label {classes[0]}: the dataset holds one class only",
                             "add patches of the other class (mines are 1, non-mines 0); no split or seed can help")
    assigned = left_out(dataset, config, spatial_split(dataset.index, min_distance, tuple(config.split), config.split_rng_seed, config.split_areas))
    _require_both_classes(dataset, assigned["split"],
                          f"points closer than {min_distance:.0f} m form {assigned['block'].nunique()} spatial block(s) for {len(assigned)} patches. "
                          "The split needs mines and non-mines in validation and test. Use a larger or more spread-out set of points, "
                          "larger validation/test shares (training.split), or another training.split_seed.")
    return assigned


def training_folds(dataset: Dataset, split: np.ndarray, k: int, min_distance_m: float, seed: int) -> np.ndarray:
    """The fold (0 … k − 1) of each training and validation patch of ``split``, −1 for the others:
    whole spatial blocks, mines and non-mines balanced across folds
    (:func:`asgm.sampling.spatial_folds`), so no patch of one fold overlaps a patch of another."""
    used = np.isin(split, ["train", "validation"])
    folds = np.full(len(split), -1)
    folds[used] = spatial_folds(dataset.index.loc[used], k, min_distance_m, seed)["fold"].to_numpy()
    return folds


def member_folds(dataset: Dataset, split: np.ndarray, members: int, min_distance_m: float, seed: int) -> np.ndarray:
    """The fold each training and validation patch validates in with ``member_validation: folds``
    (:func:`training_folds`, one per member), so a member never validates on a patch that overlaps
    one it trains on.

    Raises
    ------
    AsgmError
        Fewer spatial blocks than members, or a fold without mines or non-mines.
    """
    folds = training_folds(dataset, split, members, min_distance_m, seed)
    labels = dataset.index["label"].to_numpy().astype(int)
    for fold in range(members):
        if set(labels[folds == fold].tolist()) != {0, 1}:
            raise AsgmError(f"{dataset.path}: member fold {fold} of {members} holds {int((folds == fold).sum())} patches without both mines and "
                            "non-mines (training.member_validation: folds): use fewer members (training.ensemble), another training.split_seed, "
                            "or member_validation: shared")
    return folds


def left_out(dataset: Dataset, config: TrainingConfig, split: pd.DataFrame) -> pd.DataFrame:
    """``split`` with the patches that ``training.train_negatives`` and ``training.mine_min_open_ha``
    keep out of training and validation marked ``excluded`` (the test split keeps every patch)."""
    out = pd.Series(False, index=dataset.index.index)
    if config.train_negatives is not None:
        out |= _excluded_negatives(dataset, config.train_negatives)
    if config.mine_min_open_ha is not None:
        out |= (dataset.index["label"] == 1) & (open_ground_ha(dataset) < config.mine_min_open_ha)
    return split.assign(split=split["split"].where(~out.to_numpy() | (split["split"] == "test").to_numpy(), EXCLUDED))


def warn_hidden_mines(dataset: Dataset) -> None:
    """Warn when many mine patches show almost no open ground (:data:`HIDDEN_MINE_HA`): their image
    shows little or none of the mining (a date before it, a point off the site, cloud, or a very
    small pit), and from the forest ones the model learns that forest is a mine. Silent for datasets without the bands B2 B3 B4 B8."""
    if not {"B2", "B3", "B4", "B8"} <= set(dataset.channels):
        return
    mines = dataset.index["label"].to_numpy() == 1
    hidden = mines & (open_ground_ha(dataset) < HIDDEN_MINE_HA)
    if mines.any() and hidden.sum() > HIDDEN_MINE_SHARE * mines.sum():
        examples = ", ".join(dataset.index.loc[hidden, "patch_id"].astype(str).head(5))
        warnings.warn(f"{hidden.sum()} of {mines.sum()} mine patches of {dataset.path} ({hidden.sum() / mines.sum():.0%}) show less than "
                      f"{HIDDEN_MINE_HA} ha of open ground (water or bare soil): their images show little or none of the mining "
                      f"(a date before it, a point off the site, cloud, or a very small pit; e.g. {examples}). Check their dates and positions, or set training.mine_min_open_ha: {HIDDEN_MINE_HA} "
                      "to leave them out of training and validation (the test keeps them)", AsgmWarning, stacklevel=2)


def _require_both_classes(dataset: Dataset, split: pd.Series, explanation: str) -> None:
    """Raise unless the validation and test parts of ``split`` each hold mines and non-mines."""
    for part in ("validation", "test"):
        rows = split.to_numpy() == part
        labels = set(dataset.index.loc[rows, "label"].astype(int).tolist())
        if labels != {0, 1}:
            raise AsgmError(f"{dataset.path}: the {part} split holds label(s) {sorted(labels)} only ({rows.sum()} patches): {explanation}")


def _excluded_negatives(dataset: Dataset, keep: tuple[str, ...]) -> pd.Series:
    """Non-mines whose category is not in ``keep``."""
    if "category" not in dataset.index.columns:
        raise InputFileError(dataset.path / "index.csv", "has no category column, so training.train_negatives cannot select negatives",
                             "add a category column, or set training.train_negatives to null")
    categories = set(dataset.index.loc[dataset.index["label"] == 0, "category"].dropna())
    unknown = sorted(set(keep) - categories)
    if unknown:
        raise AsgmError(f"training.train_negatives names {unknown}, but the non-mines of {dataset.path} have categories {sorted(categories)}")
    return (dataset.index["label"] == 0) & ~dataset.index["category"].isin(keep)


def split_summary(dataset: Dataset, split: pd.DataFrame) -> pd.DataFrame:
    """Per split: patches, mines, non-mines, spatial blocks, and the smallest distance (m) from any of
    its points to any training point (the guarantee: at least the split's minimum distance)."""
    index, rows = dataset.index, {}
    train = split["split"] == "train"
    for part in ("train", "validation", "test"):
        sel = split["split"] == part
        rows[part] = {"patches": int(sel.sum()), "mines": int(index.loc[sel, "label"].sum()),
                      "non_mines": int((index.loc[sel, "label"] == 0).sum()), "blocks": split.loc[sel, "block"].nunique(),
                      "min distance to train (m)": np.nan if part == "train" else round(min_distance_between(
                          index.loc[train, "lon"], index.loc[train, "lat"], index.loc[sel, "lon"], index.loc[sel, "lat"]))}
    return pd.DataFrame(rows).T


#: Settings added after the first models were saved, left out of the training key at their "off"
#: value: training is the same as before they existed, so those models stay valid (not retrained).
ADDED_SETTINGS_OFF = {"gce_q": 0.0, "member_validation": "shared", "early_stopping_from": 0.0, "operating_point": "f1"}


def _training_key(fingerprint: str, config: TrainingConfig, split: pd.DataFrame | None = None) -> str:
    fields = {k: v for k, v in dataclasses.asdict(config).items() if not (k in ADDED_SETTINGS_OFF and v == ADDED_SETTINGS_OFF[k])}
    # split_seed draws the split (unless the caller gives it) and the label and member folds; where it
    # draws nothing, or draws what the seed drew before it existed, it must not change the key
    split_seed_used = split is None or config.label_noise is not None or config.member_validation == "folds"
    if config.split_rng_seed == config.seed or not split_seed_used:
        del fields["split_seed"]
    settings = json.dumps(fields, sort_keys=True, default=str)
    given = "" if split is None else hashlib.sha256(pd.util.hash_pandas_object(split[["split", "block"]], index=False).to_numpy().tobytes()).hexdigest()
    return hashlib.sha256(f"{fingerprint}|{settings}|{given}|keras {keras.__version__}|format {MODEL_FORMAT}".encode()).hexdigest()[:16]


def is_complete(model_dir: Path, key: str | None = None) -> bool:
    """Whether ``model_dir`` holds every model file (and, given ``key``, was trained with it)."""
    if not all((model_dir / f).is_file() for f in MODEL_FILES):
        return False
    return key is None or json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("training_key") == key


def is_up_to_date(dataset: Dataset, model_dir: str | Path, config: TrainingConfig, split: pd.DataFrame | None = None) -> bool:
    """Whether ``model_dir`` is complete and was trained on ``dataset`` with ``config`` (and the
    given ``split``), so :func:`train_experiment` would return it without training."""
    return is_complete(Path(model_dir), _training_key(dataset.fingerprint, config, split))


def _fit_member(x, y, targets, split, config: TrainingConfig, channels, member: int, description: str, progress: bool):
    seed = config.seed + 1000 * member
    keras.utils.set_random_seed(seed)
    val = split == "validation"
    train_rows = np.flatnonzero(split == "train")[bagging_sample(int((split == "train").sum()), config.bagging, seed)]
    statistics = band_statistics(x[train_rows], channels) if config.standardize else None
    model = build_model(config.architecture, x.shape[1:], statistics, config.learning_rate, config.label_smoothing, config.gce_q)
    weights = np.ones(len(train_rows))
    if config.class_weights:
        cw = class_weights(y[train_rows])
        weights = np.where(y[train_rows] == 1, cw[1], cw[0])
    binary = np.array([c in OSM_CHANNELS for c in channels])
    batches = AugmentedBatches(x[train_rows], targets[train_rows], weights, config.batch_size, seed, config.augment, binary)
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_pr_auc", mode="max", patience=config.patience, restore_best_weights=True,
                                               start_from_epoch=int(config.early_stopping_from * config.epochs))]
    if config.lr_patience is not None:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_pr_auc", mode="max", factor=config.lr_factor,
                                                           patience=config.lr_patience, min_lr=1e-6))
    history = model.fit(batches, validation_data=(x[val], y[val].astype(np.float32)), epochs=config.epochs, verbose=0,
                        callbacks=[*callbacks, EpochProgress(config.epochs, description, progress)])
    frame = pd.DataFrame(history.history)
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    return model, frame, int(callbacks[0].best_epoch) + 1


def train_experiment(dataset: Dataset | str | Path, output_directory: str | Path, experiment_name: str,
                     config: TrainingConfig | None = None, progress: bool = True, force: bool = False,
                     split: pd.DataFrame | None = None) -> Path:
    """Train, choose thresholds on validation, evaluate on test, and write the model directory.

    Parameters
    ----------
    dataset
        A dataset directory (or one read with :func:`asgm.patches.read_dataset`).
    output_directory, experiment_name
        The model directory is ``output_directory / experiment_name``.
    config
        Training settings (default: :class:`~asgm.config.TrainingConfig` defaults).
    progress
        Show progress bars.
    force
        Retrain even when a finished directory with the same dataset and settings exists.
    split
        A ready split (``split`` and ``block`` per patch, on the dataset's index), e.g. one fold of
        :mod:`asgm.crossval`; default: :func:`split_dataset` with ``config``.

    Returns
    -------
    pathlib.Path
        The model directory.

    Raises
    ------
    AsgmError
        Unknown channels or architecture, or a split without both classes in validation or test.
    """
    config = config or TrainingConfig()
    model_dir = Path(output_directory) / plain_name(experiment_name, "experiment_name")
    check_target(model_dir, directory=True, marker="config.json", what="model directory")
    dataset = dataset if isinstance(dataset, Dataset) else read_dataset(dataset)
    fingerprint = dataset.fingerprint
    key = _training_key(fingerprint, config, split)
    if not force and is_complete(model_dir, key):
        return model_dir

    if config.teacher is not None and config.teacher not in ARCHITECTURES:
        raise AsgmError(f"unknown teacher architecture {config.teacher!r}; choose one of {', '.join(ARCHITECTURES)} (training.teacher), or null")
    if dataset.imagery_is_constant():
        raise InputFileError(dataset.path / "patches.npy", f"every reflectance channel {dataset.band_channels} holds the same value in every patch "
                             "(an all-zero or failed export): there is nothing to learn",
                             "rebuild the dataset from imagery with data (notebook 02), or check the export's date window and bands")
    # an impossible split fails before the patches are read
    given = split
    assigned = split_dataset(dataset, config) if given is None else _checked_split(dataset, given, config)
    split = assigned["split"].to_numpy()
    if config.mine_min_open_ha is None:
        warn_hidden_mines(dataset)
    min_distance = config.min_distance_m or default_min_distance(dataset)
    channels = list(config.channels or dataset.channels)
    x = normalize_patches(dataset.patches, dataset.channels, float(dataset.meta["scale"]), channels)
    index = dataset.index
    y = index["label"].to_numpy().astype(int)
    if float(x[split == "train"].std()) == 0.0:
        raise InputFileError(dataset.path / "patches.npy", f"every training patch holds the same value ({float(x.flat[0]) if x.size else 0:g}) in every pixel and "
                             "channel: there is nothing to learn (an export that failed, or a dataset of no-data patches)",
                             "rebuild the dataset from imagery that covers the points (notebook 02), and check a few patches in its preview")

    out_of_fold = None
    if config.label_noise is not None or config.thresholds_from == "out_of_fold":
        out_of_fold = out_of_fold_probabilities(dataset, output_directory, experiment_name, config, assigned, progress, force)
    flagged = np.zeros(len(index), bool)
    if config.label_noise == "prune":
        seen = ~np.isnan(out_of_fold)
        flagged[seen] = confident_learning_flags(y[seen], out_of_fold[seen])
        split = np.where(flagged, EXCLUDED, split)

    folds = None
    if config.member_validation == "folds":
        folds = member_folds(dataset, split, config.ensemble, min_distance, config.split_rng_seed)
        split = np.where(folds >= 0, "train", split)
    targets = y.astype(np.float32)
    if config.teacher is not None:
        teacher = train_experiment(dataset, output_directory, f"{experiment_name}_teacher", dataclasses.replace(config, architecture=config.teacher, teacher=None),
                                   progress, force, assigned[["split", "block"]])
        taught = pd.read_csv(teacher / "predictions.csv").set_index("patch_id")["probability"].reindex(index["patch_id"]).to_numpy()
        targets = np.where(split == "train", (1 - TEACHER_WEIGHT) * y + TEACHER_WEIGHT * taught, y).astype(np.float32)

    members, histories, best_epochs = [], [], []
    member_raw = np.full(len(index), np.nan)  # with folds: each training patch's output from the member that validated on it
    for m in range(config.ensemble):
        description = experiment_name if config.ensemble == 1 else f"{experiment_name} [{m + 1}/{config.ensemble}]"
        member_split = split if folds is None else np.where(folds == m, "validation", split)
        model, history, best = _fit_member(x, y, targets, member_split, config, channels, m, description, progress)
        if folds is not None:
            member_raw[folds == m] = predict_probabilities(model, x[folds == m], tta=config.tta)
        history.insert(0, "member", m)
        members.append(model)
        histories.append(history)
        best_epochs.append(best)
    model = ensemble(members)
    raw = predict_probabilities(model, x, tta=config.tta)

    test = split == "test"
    if folds is None:
        val = split == "validation"
        calibration, thresholds = calibrate_and_choose_thresholds(y[val], raw[val], config)
        scores = probability = apply_calibration(calibration, raw)
    else:
        val = folds >= 0
        calibration, thresholds = calibrate_and_choose_thresholds(y[val], member_raw[val], config, chosen_on="out_of_fold")
        probability, scores = apply_calibration(calibration, raw), apply_calibration(calibration, member_raw)
    evidence = val
    if out_of_fold is not None:
        trusted = ~np.isnan(out_of_fold) & ~flagged
        _, pooled = calibrate_and_choose_thresholds(y[trusted], out_of_fold[trusted], dataclasses.replace(config, calibration="none"),
                                                    calibrated=config.calibration != "none", chosen_on="out_of_fold")
        if config.thresholds_from == "out_of_fold":
            thresholds, evidence, scores = pooled | {"validation": thresholds}, trusted, out_of_fold
        else:
            thresholds["out_of_fold"] = pooled
    thresholds["evidence"] = threshold_evidence(y[evidence], scores[evidence], thresholds["threshold"], thresholds["specificity"]["threshold"])
    model_threshold, strict_threshold = thresholds["threshold"], thresholds["specificity"]["threshold"]
    blocks = assigned["block"].to_numpy()
    tables = {
        "model": evaluate.block_bootstrap(y[test], probability[test], blocks[test], model_threshold, config.bootstrap, config.seed),
        "specificity": evaluate.block_bootstrap(y[test], probability[test], blocks[test], strict_threshold, config.bootstrap, config.seed),
    }
    synthetic = bool(dataset.meta.get("synthetic", False))
    parts = {"train": split == "train", "validation": val, "test": test}  # with folds, every training patch also validates one member
    metrics = {
        "synthetic": synthetic,
        "dataset": str(dataset.path),
        "patches": {part: int(rows.sum()) for part, rows in parts.items()},
        "mines": {part: int(y[rows].sum()) for part, rows in parts.items()},
        "test": _table_json(tables["model"]) | {"threshold": model_threshold, "operating_point": config.operating_point},
        "test_at_specificity": _table_json(tables["specificity"]) | {"threshold": strict_threshold},
        "validation": evaluate.binary_metrics(y[val], scores[val], model_threshold),
        "bootstrap": {"replicates": config.bootstrap, "level": 0.95, "resampled": "spatial blocks",
                      "test_blocks": int(tables["model"]["n_blocks"].iloc[0]), "test_mine_blocks": int(tables["model"]["n_mine_blocks"].iloc[0])},
        "best_epochs": best_epochs,
        "label_noise": {"handling": config.label_noise, "flagged": index.loc[flagged, "patch_id"].tolist()},
    }
    model_config = {
        "training_key": key,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "channels": channels,
        "normalization": {"bands": "clip(x / scale, 0, 1)", "scale": float(dataset.meta["scale"]), "osm": "0/1 as stored",
                          "standardize": config.standardize},
        "tta": config.tta,
        "patch_size": int(dataset.meta["patch_size"]),
        "resolution_m": float(dataset.meta.get("resolution_m", 10.0)),
        "dataset": {"path": str(dataset.path), "fingerprint": fingerprint, "synthetic": synthetic,
                    "profile": dataset.meta.get("profile")},
        "training": dataclasses.asdict(config),
        "split": {"fractions": list(config.split), "min_distance_m": min_distance, "areas": config.split_areas, "seed": config.split_rng_seed,
                  "chosen_by": "asgm.train.split_dataset" if given is None else "given by the caller (e.g. a cross-validation fold)",
                  "patch_ids": {part: index.loc[rows, "patch_id"].tolist() for part, rows in parts.items()},
                  "member_validation": config.member_validation},
    }
    predictions = pd.DataFrame({"patch_id": index["patch_id"], "split": split, "block": blocks,
                                "probability": probability, "raw_probability": raw, "label": y})
    if out_of_fold is not None:
        predictions = predictions.assign(out_of_fold=out_of_fold, label_issue=flagged)
    if folds is not None:
        predictions = predictions.assign(member_fold=folds, member_probability=np.where(val, scores, np.nan))
    history = pd.concat(histories, ignore_index=True)

    with atomic_path(model_dir, marker="config.json", what="model directory") as tmp:
        (tmp / "figures").mkdir(parents=True)
        model.save(tmp / "model.keras")
        for name, content in (("config.json", model_config), ("threshold.json", thresholds), ("metrics.json", metrics),
                              ("calibration.json", calibration)):
            (tmp / name).write_text(json.dumps(content, indent=2, default=_json_default), encoding="utf-8")
        predictions.to_csv(tmp / "predictions.csv", index=False)
        history.to_csv(tmp / "history.csv", index=False)
        title = f"{experiment_name}" + (f" — {plots.SYNTHETIC_LABEL}" if synthetic else "")
        figures = {
            "learning_curves.png": plots.plot_learning_curves(history, title),
            "test_curves.png": plots.plot_test_curves(y[test], probability[test], model_threshold, title),
            "confusion_matrix.png": plots.plot_confusion_matrix(tables["model"], title),
        }
        if config.calibration != "none":
            figures["calibration.png"] = plots.plot_reliability(y[test], raw[test], probability[test], config.calibration, title)
        for name, fig in figures.items():
            fig.savefig(tmp / "figures" / name, dpi=110, bbox_inches="tight")
            plt.close(fig)
    return model_dir


def out_of_fold_probabilities(dataset: Dataset, output_directory: str | Path, experiment_name: str, config: TrainingConfig,
                              assigned: pd.DataFrame, progress: bool = True, force: bool = False) -> np.ndarray:
    """Calibrated out-of-fold probabilities of the training and validation patches (NaN for the
    others), from a spatial ``config.label_folds``-fold cross-validation over them of one model of
    the recipe each (``<experiment>_labelfold<i>`` beside the model, reused when up to date). The
    test split is never seen."""
    distance = config.min_distance_m or default_min_distance(dataset)
    folds = training_folds(dataset, assigned["split"].to_numpy(), config.label_folds, distance, config.split_rng_seed)
    single = dataclasses.replace(config, ensemble=1, label_noise=None, thresholds_from="validation", member_validation="shared",
                                 bootstrap=min(config.bootstrap, 200))
    probability = np.full(len(dataset.index), np.nan)
    for fold, split in enumerate(held_out_splits(dataset.index, folds, distance, tuple(config.split[:2]), config.split_rng_seed, config.split_areas)):
        model_dir = train_experiment(dataset, output_directory, f"{experiment_name}_labelfold{fold}", single, progress, force,
                                     pd.DataFrame({"split": split, "block": assigned["block"]}))
        predictions = pd.read_csv(model_dir / "predictions.csv")
        held = predictions["split"].to_numpy() == "test"
        probability[dataset.rows(predictions.loc[held, "patch_id"])] = predictions.loc[held, "probability"].to_numpy()
    return probability


def threshold_scores(model_dir: str | Path) -> pd.DataFrame:
    """The patches a model's thresholds were chosen on, from its ``predictions.csv``: ``patch_id``,
    ``label`` and ``probability`` (calibrated) — the validation split, or with ``member_validation:
    folds`` each training patch's member that validated on it, or with ``thresholds_from:
    out_of_fold`` the kept patches' out-of-fold predictions."""
    predictions = pd.read_csv(Path(model_dir) / "predictions.csv")
    if "member_probability" in predictions:
        rows, column = predictions["member_probability"].notna(), "member_probability"
    elif json.loads((Path(model_dir) / "threshold.json").read_text(encoding="utf-8")).get("chosen_on") == "out_of_fold":
        rows, column = predictions["out_of_fold"].notna() & ~predictions["label_issue"].astype(bool), "out_of_fold"
    else:
        rows, column = predictions["split"] == "validation", "probability"
    return predictions.loc[rows, ["patch_id", "label", column]].rename(columns={column: "probability"}).reset_index(drop=True)


def threshold_evidence(y: np.ndarray, p: np.ndarray, threshold: float, strict_threshold: float) -> dict:
    """What stands behind the thresholds: the patches they were chosen on, and the sensitivity and
    specificity there at each, with 95 % Wilson intervals (``asgm.predict`` prints them)."""
    out = {"patches": int(len(y)), "mines": int(y.sum())}
    for name, t in (("threshold", threshold), ("specificity", strict_threshold)):
        c = evaluate.confusion_counts(y, p >= t)
        out[name] = {"sensitivity": evaluate.wilson_interval(c["tp"], c["tp"] + c["fn"]),
                     "specificity": evaluate.wilson_interval(c["tn"], c["tn"] + c["fp"])}
    return out


def calibrate_and_choose_thresholds(y_val: np.ndarray, raw_val: np.ndarray, config: TrainingConfig,
                                    calibrated: bool = False, chosen_on: str = "validation") -> tuple[dict, dict]:
    """The calibration fitted on the validation labels and raw outputs (``calibration.json``) and the
    thresholds chosen on the calibrated validation probabilities (``threshold.json``: maximum
    sensitivity + specificity (``balanced``), maximum F1, maximum F0.5, and the most sensitive with
    specificity ≥ ``min_specificity``; ``threshold`` is the one ``config.operating_point`` names).

    When the scores are probabilities (``config.calibration`` is not ``none``, or ``calibrated``: they
    were calibrated before), each is maximised in expectation over the probabilities
    (:func:`asgm.evaluate.balanced_threshold`, :func:`asgm.evaluate.expected_f_beta_threshold`) rather
    than over the few validation labels near the maximum: on about a hundred validation patches the
    labels' own maximum moves the operating point with the sample (benchmarks/README.md, issue 31).
    The labels' maximum is kept as ``labels_threshold``. ``rule`` says which maximum (``expected`` or ``labels``) and
    ``chosen_on`` which patches: ``validation``, or ``out_of_fold`` when the caller passes the
    out-of-fold predictions of the training and validation patches."""
    calibration = fit_calibration(y_val, raw_val, config.calibration)
    p = apply_calibration(calibration, raw_val)
    probabilities = calibrated or config.calibration != "none"
    chosen = {}
    for name, beta in (("f1", 1.0), ("f0_5", 0.5)):
        by_labels, best = evaluate.f_beta_threshold(y_val, p, beta)
        threshold = evaluate.expected_f_beta_threshold(p, beta)[0] if probabilities else by_labels
        realised = float(fbeta_score(y_val, p >= threshold, beta=beta, zero_division=0.0))
        chosen[name] = {"threshold": threshold, f"validation_{name}": realised, "labels_threshold": by_labels, f"labels_validation_{name}": best}
    by_labels, best = evaluate.youden_threshold(y_val, p)
    balanced = evaluate.balanced_threshold(p) if probabilities else by_labels
    chosen["balanced"] = {"threshold": balanced, "validation_balanced_accuracy": float(balanced_accuracy_score(y_val, p >= balanced)),
                          "labels_threshold": by_labels, "labels_validation_balanced_accuracy": best}
    kind = (f"{config.calibration}-calibrated" if config.calibration != "none" else "calibrated")
    source = "the validation split" if chosen_on == "validation" else f"the out-of-fold predictions of {len(y_val)} training and validation patches"
    goal = {"balanced": "sensitivity + specificity", "f1": "F1"}[config.operating_point]
    return calibration, {
        "threshold": chosen[config.operating_point]["threshold"],
        "operating_point": config.operating_point,
        "chosen_by": (f"maximum expected {goal} of the {kind} probabilities of {source} (the plug-in rule)" if probabilities
                      else f"maximum {goal} on {source}"),
        "rule": "expected" if probabilities else "labels",
        "chosen_on": chosen_on,
        **chosen,
        "specificity": {"threshold": evaluate.specificity_threshold(y_val, p, config.min_specificity), "min_specificity": config.min_specificity},
    }


def _checked_split(dataset: Dataset, split: pd.DataFrame, config: TrainingConfig) -> pd.DataFrame:
    """A split given by the caller, with :func:`left_out` applied and checked like :func:`split_dataset`'s."""
    if len(split) != len(dataset.index) or not {"split", "block"} <= set(split.columns):
        raise AsgmError(f"the given split has {len(split)} rows and columns {list(split.columns)}; it needs split and block for each of "
                        f"the {len(dataset.index)} patches of {dataset.path}")
    split = left_out(dataset, config, split)
    _require_both_classes(dataset, split["split"], "the given split needs mines and non-mines in validation and test")
    return split


def _table_json(table: pd.DataFrame) -> dict:
    return {metric: {k: float(row[k]) for k in ("value", "ci_low", "ci_high")} for metric, row in table.iterrows()}


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_metrics(model_dir: str | Path) -> dict:
    """``metrics.json`` of a model directory."""
    path = Path(model_dir) / "metrics.json"
    if not path.is_file():
        raise InputFileError(path, "missing", "train the model first (python -m asgm.train …) or point at a complete model directory")
    return json.loads(path.read_text(encoding="utf-8"))


def metric_intervals(model_dir: str | Path, key: str = "test") -> pd.DataFrame:
    """Test metrics of a model directory: ``value, ci_low, ci_high`` per metric and confusion count.
    ``key``: ``test`` (the model's threshold) or ``test_at_specificity``."""
    return pd.DataFrame({k: v for k, v in read_metrics(model_dir)[key].items() if isinstance(v, dict)}).T


def metrics_table(model_dirs: dict[str, str | Path], key: str = "test") -> pd.DataFrame:
    """One row per experiment: each test metric as ``value [95 % CI]``, plus patches and threshold."""
    rows = {}
    for name, directory in model_dirs.items():
        m = read_metrics(directory)
        row = evaluate.format_ci(metric_intervals(directory, key).loc[list(evaluate.METRICS)]).to_dict()
        row |= {"threshold": round(m[key]["threshold"], 3), "test patches": m["patches"]["test"], "test blocks": m["bootstrap"]["test_blocks"],
                "test blocks with mines": m["bootstrap"]["test_mine_blocks"]}
        rows[name] = row
    return pd.DataFrame(rows).T


def main(argv: list[str] | None = None) -> int:
    try:
        args, config = cli.train_arguments(argv)
        model_dir = train_experiment(args.input_directory, args.output_directory, args.experiment_name, config, force=args.force)
    except AsgmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    m = read_metrics(model_dir)
    summary = ", ".join(f"{k} {m['test'][k]['value']:.3f} [{m['test'][k]['ci_low']:.3f}, {m['test'][k]['ci_high']:.3f}]"
                        for k in ("roc_auc", "average_precision", "sensitivity", "specificity"))
    print(f"{model_dir}: test {summary}" + (" (SYNTHETIC data)" if m["synthetic"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
