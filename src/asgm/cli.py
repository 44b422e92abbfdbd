"""The command lines' arguments, parsed and checked before the library loads TensorFlow.

``--help`` answers at once and a bad flag or settings file is refused before any work: each CLI
module (``asgm.train``, ``asgm.predict``, ``asgm.monitor``, ``asgm.labels``) calls its parser here
at the top of its file when run with ``python -m``, before its own heavy imports, and again in its
``main`` (which is also what tests and other code call).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

from asgm.config import LabelsConfig, TrainingConfig, load_training, training_config, validate_labels
from asgm.errors import AsgmError, ConfigError

#: The thresholds of ``threshold.json`` that may decide a prediction (``--operating_point``).
OPERATING_POINTS = ("balanced", "f1", "f0_5", "specificity")


def check_early(parse: Callable, argv: list[str] | None = None) -> None:
    """Parse the command line with ``parse`` for its checks only: ``--help`` and bad arguments end
    the process here (exit 0, or 2 with the error), before the caller's heavy imports."""
    try:
        parse(sys.argv[1:] if argv is None else argv)
    except AsgmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def _training_defaults() -> str:
    """Every training key with its default (the recommended recipe), for ``--help``."""
    lines = ["training keys (set them in the --config YAML; the flags above override the file) and their defaults:"]
    for f in dataclasses.fields(TrainingConfig):
        value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        lines.append(f"  {f.name}: {list(value) if isinstance(value, tuple) else value}")
    return "\n".join(lines)


def train_arguments(argv: list[str] | None = None) -> tuple[argparse.Namespace, TrainingConfig]:
    """``python -m asgm.train``'s arguments and the training settings they and ``--config`` give.

    Raises
    ------
    ConfigError
        A bad flag (named as the flag) or a bad key of the config file (named with the file).
    """
    parser = argparse.ArgumentParser(prog="python -m asgm.train", description="Training with a spatially blocked split, and the model directory.",
                                     epilog=_training_defaults(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input_directory", required=True, type=Path, help="dataset directory (patches.npy, index.csv, dataset.json)")
    parser.add_argument("--output_directory", required=True, type=Path, help="where the model directory is written")
    parser.add_argument("--experiment_name", required=True, help="name of the model directory inside --output_directory")
    parser.add_argument("--config", type=Path, help="YAML: a profile (its training section) or a mapping of training keys")
    parser.add_argument("--class_weights", action=argparse.BooleanOptionalAction, default=None, help="weight classes by n / (2 n_c)")
    parser.add_argument("--seed", type=int, help="seed of the initial weights and augmentation (the split has its own, training.split_seed)")
    parser.add_argument("--architecture", help="bn_cnn, scan_cnn or thesis_cnn")
    parser.add_argument("--channels", help="comma-separated channels to train on (default: all of the dataset's)")
    parser.add_argument("--epochs", type=int, help="maximum epochs")
    parser.add_argument("--ensemble", type=int, help="members of the ensemble")
    parser.add_argument("--force", action="store_true", help="retrain even if a finished model directory matches")
    args = parser.parse_args(argv)
    overrides = {"class_weights": args.class_weights, "seed": args.seed, "architecture": args.architecture,
                 "channels": args.channels, "epochs": args.epochs, "ensemble": args.ensemble}
    flags = {k: v for k, v in overrides.items() if v is not None}
    try:
        training_config(flags)  # a bad flag is the flag's fault, not the file's
    except ConfigError as exc:
        raise ConfigError(exc.setting.replace("training.", "--", 1), exc.problem, exc.fix.replace("training.", "--")) from None
    return args, load_training(args.config, **flags) if args.config else training_config(flags)


def predict_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """``python -m asgm.predict``'s arguments."""
    parser = argparse.ArgumentParser(prog="python -m asgm.predict", description="Apply a trained model directory to a dataset directory.")
    parser.add_argument("--model_directory", required=True, type=Path, help="a model directory written by asgm.train")
    parser.add_argument("--input_directory", required=True, type=Path, help="dataset directory (patches.npy, index.csv, dataset.json)")
    parser.add_argument("--output", required=True, type=Path, help="CSV to write")
    parser.add_argument("--operating_point", choices=OPERATING_POINTS, default=None,
                        help="which validation threshold decides `prediction` (default: the model's own, threshold.json's threshold; "
                             "training.operating_point, balanced unless set): balanced (maximum expected sensitivity + specificity), "
                             "f1 (maximum expected F1), f0_5 (maximum expected F0.5: "
                             "fewer false alarms, more misses) or specificity (validation specificity >= training.min_specificity)")
    return parser.parse_args(argv)


def monitor_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """``python -m asgm.monitor``'s arguments."""
    parser = argparse.ArgumentParser(prog="python -m asgm.monitor", description="Monitoring over time: the region scan for each period, the mining "
                                     "scar inside detections, change between periods, hectares per zone and alerts of new mining.",
                                     epilog="Outputs: reports/<profile>/monitoring/ (per period: detections, scar, change; cumulative.geojson, "
                                            "summary.csv, zones.csv, alerts.geojson with alerts/*.png). Run notebooks 01-05 (make scan) first.")
    parser.add_argument("--profile", default="demo", help="configs/<profile>.yaml (default: demo)")
    parser.add_argument("--root", default=None, help="project directory (default: found from the working directory)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def labels_arguments(argv: list[str] | None = None) -> tuple[argparse.Namespace, LabelsConfig]:
    """``python -m asgm.labels``'s arguments and the audit's settings.

    Raises
    ------
    ConfigError
        A flag out of range, named as the flag.
    """
    defaults = LabelsConfig()
    parser = argparse.ArgumentParser(prog="python -m asgm.labels", description="Audit a dataset's labels against a reference map of mining "
                                     "footprints and write the audited dataset directory (docs/labels.md).")
    parser.add_argument("--input_directory", required=True, type=Path, help="dataset directory (patches.npy, index.csv, dataset.json)")
    parser.add_argument("--reference", required=True, type=Path, help="folder of yearly footprint files, or one polygon file with a year or date property")
    parser.add_argument("--output_directory", required=True, type=Path, help="the audited dataset directory to write")
    parser.add_argument("--action", choices=("drop", "relabel"), default=defaults.action, help=f"what happens to conflicting patches (default {defaults.action})")
    parser.add_argument("--negative_max_cover", type=float, default=defaults.negative_max_cover,
                        help=f"a non-mine conflicts above this share of reference mining (default {defaults.negative_max_cover})")
    parser.add_argument("--mine_max_distance_m", type=float, default=defaults.mine_max_distance_m,
                        help=f"a mine conflicts when no reference mining lies within this distance (default {defaults.mine_max_distance_m:g} m: none touches the patch)")
    parser.add_argument("--mine_mapped_later", action=argparse.BooleanOptionalAction, default=defaults.mine_mapped_later,
                        help="also a conflict: a mine patch near which the reference maps mining only after the image's window "
                             f"(default {'on' if defaults.mine_mapped_later else 'off'})")
    parser.add_argument("--image_date_end", help="end of the images' window (YYYY-MM-DD, exclusive) when the dataset does not record it")
    args = parser.parse_args(argv)
    config = LabelsConfig(negative_max_cover=args.negative_max_cover, mine_max_distance_m=args.mine_max_distance_m,
                          mine_mapped_later=args.mine_mapped_later, action=args.action, image_date_end=args.image_date_end)
    validate_labels(config, None, "--")
    return args, config
