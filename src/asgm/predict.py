"""Apply a trained model directory to a dataset directory.

``python -m asgm.predict --model_directory DIR/NAME --input_directory DATASET --output FILE.csv``
writes ``patch_id, probability, prediction`` (prediction: probability ≥ the saved threshold).
The dataset must hold every channel the model was trained on, by name; extra channels are ignored.
The model's own threshold decides (``threshold.json``'s ``threshold``: by default ``balanced``, see
``training.operating_point``); ``--operating_point`` picks another of the thresholds chosen on
validation: ``balanced`` (maximum expected sensitivity + specificity), ``f1`` (maximum expected
F1), ``f0_5`` (maximum expected F0.5: fewer false alarms) or ``specificity`` (the most sensitive
threshold with validation specificity ≥ ``training.min_specificity``).
"""

from __future__ import annotations

import sys

from asgm import cli

if __name__ == "__main__":  # --help and bad flags answer before TensorFlow loads
    cli.check_early(cli.predict_arguments)

# The imports below load TensorFlow (seconds), after the command line was checked (E402 on purpose).
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from asgm.atomic import atomic_path, check_target
from asgm.backend import keras
from asgm.calibrate import apply_calibration
from asgm.errors import AsgmError, AsgmWarning, InputFileError, read_json_object
from asgm.evaluate import threshold_rule
from asgm.models import normalize_patches, predict_probabilities
from asgm.patches import Dataset, read_dataset
from asgm.progress import progress_bar
from asgm.train import MODEL_FILES


@dataclass
class TrainedModel:
    """A model directory read back: the Keras model, its ``config.json`` and ``threshold.json``."""

    path: Path
    model: keras.Model
    config: dict
    thresholds: dict
    #: ``calibration.json``: the map from the network's output to calibrated probabilities.
    calibration: dict

    @property
    def channels(self) -> list[str]:
        return list(self.config["channels"])

    @property
    def patch_size(self) -> int:
        return int(self.config["patch_size"])

    @property
    def threshold(self) -> float:
        """The model's decision threshold, on calibrated probabilities (chosen on validation)."""
        return float(self.thresholds["threshold"])

    @property
    def operating_point(self) -> str:
        """Which rule chose :attr:`threshold` (models saved before the setting existed: ``f1``)."""
        return str(self.thresholds.get("operating_point", "f1"))

    def threshold_at(self, operating_point: str | None) -> float:
        """The validation threshold of one of :data:`asgm.cli.OPERATING_POINTS`; None: :attr:`threshold`."""
        if operating_point is None or operating_point == self.operating_point:
            return self.threshold
        chosen = self.thresholds.get(operating_point)
        if not isinstance(chosen, dict) or not _is_number(chosen.get("threshold")):
            raise InputFileError(self.path / "threshold.json", f"no {operating_point!r} threshold",
                                 f"retrain the model with this version of asgm, or leave out --operating_point (the model's own: {self.operating_point})")
        return float(chosen["threshold"])

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities from the network's outputs (the scale of :attr:`threshold`)."""
        return apply_calibration(self.calibration, raw)

    def check_dataset(self, dataset: Dataset) -> None:
        """Raise if ``dataset`` lacks one of the model's channels or has another patch size."""
        missing = [c for c in self.channels if c not in dataset.channels]
        if missing:
            raise InputFileError(dataset.path / "dataset.json",
                                 f"lacks channel(s) {missing} that the model {self.path.name} needs.\n"
                                 f"  dataset channels: {dataset.channels}\n  model channels:   {self.channels}",
                                 "build the dataset with the model's bands and OSM channels, or use a model trained on this dataset's channels")
        if int(dataset.meta["patch_size"]) != self.patch_size:
            raise InputFileError(dataset.path / "dataset.json", f"patch size {dataset.meta['patch_size']} px, but the model takes {self.patch_size} px",
                                 "use a dataset of the model's patch size (or scan a region with asgm.scan)")

    def predict(self, dataset: Dataset, batch_size: int = 256, progress: bool = True) -> np.ndarray:
        """Probability of mine for every patch of ``dataset`` (read in batches, so memory stays small)."""
        self.check_dataset(dataset)
        scale = float(dataset.meta["scale"])
        out = np.empty(len(dataset), dtype=np.float32)
        for start in progress_bar(range(0, len(dataset), batch_size), desc="predict", unit="batch", disable=not progress):
            x = normalize_patches(dataset.patches[start:start + batch_size], dataset.channels, scale, self.channels)
            out[start:start + len(x)] = predict_probabilities(self.model, x, batch_size, tta=bool(self.config.get("tta", False)))
        return self.calibrate(out)


def _is_number(value) -> bool:
    """A probability as a JSON number (``true``/``false`` are Python ints, and no threshold; NaN
    or 5.0 would predict no mine at all)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def load_trained_model(model_directory: str | Path) -> TrainedModel:
    """Read a model directory written by :func:`asgm.train.train_experiment`.

    Raises
    ------
    InputFileError
        A file is missing or unreadable.
    """
    path = Path(model_directory)
    for name in MODEL_FILES:
        if not (path / name).is_file():
            inside = sorted(p.parent.name for p in path.glob("*/model.keras"))
            fix = (f"point at one of the model directories inside it: {', '.join(inside[:5])}" if inside
                   else "train the model (python -m asgm.train …) or point at a complete model directory")
            raise InputFileError(path / name, "missing from the model directory", fix)
    config, thresholds, calibration = (read_json_object(path / name, "retrain the model") for name in ("config.json", "threshold.json", "calibration.json"))
    if not isinstance(config.get("channels"), list) or not isinstance(config.get("patch_size"), int):
        raise InputFileError(path / "config.json", "lacks the model's channels (a list) or patch_size", "retrain the model: config.json is written by asgm.train")
    if not _is_number(thresholds.get("threshold")):
        raise InputFileError(path / "threshold.json", f"threshold must be a probability between 0 and 1, not {thresholds.get('threshold')!r}", "retrain the model, or set it to a probability such as 0.5")
    needs = {"none": (), "platt": ("slope", "intercept"), "isotonic": ("x", "y")}
    method = calibration.get("method")
    if method not in needs or any(k not in calibration for k in needs[method]):
        raise InputFileError(path / "calibration.json", f"method {method!r} with keys {sorted(calibration)} is not a calibration this version reads",
                             'retrain the model, or write {"method": "none"} to use the network\'s raw output')
    try:
        model = keras.models.load_model(path / "model.keras", compile=False)
    except (ValueError, OSError) as exc:
        raise InputFileError(path / "model.keras", f"cannot be loaded ({exc})", "retrain the model with this version of asgm and Keras") from None
    return TrainedModel(path, model, config, thresholds, calibration)


def predict_dataset(model_directory: str | Path, input_directory: str | Path, output: str | Path, progress: bool = True,
                    operating_point: str | None = None) -> pd.DataFrame:
    """Write ``patch_id, probability, prediction`` for every patch of a dataset to ``output`` (CSV);
    ``prediction`` is 1 where the probability reaches the threshold of ``operating_point`` (None:
    the model's own)."""
    check_target(output, directory=False, what="predictions CSV")
    trained = load_trained_model(model_directory)
    threshold = trained.threshold_at(operating_point)
    dataset = read_dataset(input_directory)
    if dataset.imagery_is_constant():
        warnings.warn(f"{Path(input_directory) / 'patches.npy'}: every reflectance channel holds one value in every patch (an all-zero or "
                      "failed export?), so every patch gets the same probability from its imagery (only OSM channels, if the model has any, "
                      "can tell patches apart); check the dataset before trusting the predictions", AsgmWarning, stacklevel=2)
    probability = trained.predict(dataset, progress=progress)
    table = pd.DataFrame({"patch_id": dataset.index["patch_id"], "probability": probability,
                          "prediction": (probability >= threshold).astype(int)})
    table.attrs["threshold"] = threshold
    table.attrs["operating_point"] = operating_point or trained.operating_point
    table.attrs["thresholds"] = trained.thresholds
    with atomic_path(output) as tmp:
        table.to_csv(tmp, index=False)
    return table


def main(argv: list[str] | None = None) -> int:
    args = cli.predict_arguments(argv)
    try:
        table = predict_dataset(args.model_directory, args.input_directory, args.output, operating_point=args.operating_point)
    except AsgmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.output}: {len(table)} patches, {int(table['prediction'].sum())} predicted mines "
          f"(probability >= {table.attrs['threshold']:.3f}, the {table.attrs['operating_point']} threshold)")
    trust = threshold_trust(table.attrs["thresholds"], table.attrs["operating_point"])
    if trust:
        print(trust)
    return 0


def threshold_trust(thresholds: dict, operating_point: str) -> str | None:
    """How far the threshold can be trusted: the patches it was chosen on and the sensitivity and
    specificity there, with 95 % intervals (models trained before this was recorded: None)."""
    evidence = thresholds.get("evidence")
    key = "threshold" if operating_point == thresholds.get("operating_point", "f1") else "specificity" if operating_point == "specificity" else None
    if not isinstance(evidence, dict) or key not in evidence:
        return None
    sens, spec = evidence[key]["sensitivity"], evidence[key]["specificity"]
    source = "out-of-fold predictions of the training patches" if threshold_rule(thresholds)[1] == "out_of_fold" else "the validation patches"
    return (f"  the threshold was chosen on {evidence['patches']} patches ({evidence['mines']} mines; {source}): there it found "
            f"{sens[0]:.0%} of the mines [95 % interval {sens[1]:.0%}–{sens[2]:.0%}] at specificity {spec[0]:.0%} [{spec[1]:.0%}–{spec[2]:.0%}]. "
            "Expect less in a region unlike the training data.")


if __name__ == "__main__":
    sys.exit(main())
