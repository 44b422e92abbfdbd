"""Which threshold rule holds the operating point on regions a model was not trained on?

Offline, on models already trained by ``real_cli.py`` (the command-line tools with their defaults,
six held-out regions) and ``real_amazon6.py --evaluation regions`` (single models, shared splits):
for each model the thresholds are chosen again by each rule on its validation patches (where the
saved ones were chosen: every model here has ``member_validation: shared`` and ``thresholds_from:
validation``), and the held-out region's patches are judged at them.
Two figures per rule:

- the spread of the pooled sensitivity and specificity (agreed labels) over trainings that differ in
  ``--seed`` (what a user sees when training twice);
- for one model, the standard deviation of that pooled sensitivity and specificity when the
  validation patches are resampled by spatial block and calibration and threshold refitted (how
  much the rule follows the few validation patches near it; 100 replicates).

Rules: ``f1`` (maximum F1 expected from the calibrated probabilities, the plug-in rule),
``f1_labels`` (the validation labels' maximum F1), ``balanced`` (maximum expected sensitivity +
specificity: every patch whose calibrated probability exceeds the mean calibrated probability,
i.e. where the likelihood of a mine outweighs that of a non-mine, whatever the share of mines among
the validation patches), ``balanced_labels`` (Youden's J on the validation labels), ``f0_5``.

Usage: python benchmarks/operating_rules.py [--replicates 100]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from asgm.calibrate import apply_calibration, fit_calibration
from asgm.evaluate import balanced_threshold, expected_f_beta_threshold, f_beta_threshold, youden_threshold
from asgm.patches import read_dataset
from real_amazon6 import DATA, ROOT, reference_masks  # a sibling script: run as python benchmarks/operating_rules.py

MODELS = ROOT / "models" / "benchmarks"


RULES = {
    "f1": lambda y, p: expected_f_beta_threshold(p)[0],
    "f1_labels": lambda y, p: f_beta_threshold(y, p)[0],
    "balanced": lambda y, p: balanced_threshold(p),
    "balanced_labels": lambda y, p: youden_threshold(y, p)[0],
    "f0_5": lambda y, p: expected_f_beta_threshold(p, 0.5)[0],
}


def model_scores(model_dir: Path, kind: str, labels: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(validation: label, raw, block), (held out: patch_id, label, raw), calibration of one model."""
    predictions = pd.read_csv(model_dir / "predictions.csv")
    calibration = json.loads((model_dir / "calibration.json").read_text())
    validation = predictions[predictions["split"] == "validation"][["label", "raw_probability", "block"]].rename(columns={"raw_probability": "raw"})
    if kind == "cli":
        held = pd.read_csv(model_dir / "held_out_predictions.csv")[["patch_id", "probability"]]
        # asgm.predict writes calibrated probabilities; undo the (monotone) Platt map to get the raw ones
        p = np.clip(held["probability"].to_numpy(float), 1e-6, 1 - 1e-6)
        raw = 1 / (1 + np.exp(-(np.log(p / (1 - p)) - calibration["intercept"]) / calibration["slope"]))
        held = held.assign(raw=raw)
    else:
        held = predictions[predictions["split"] == "test"].rename(columns={"raw_probability": "raw"})
    held = held.assign(label=held["patch_id"].map(labels).to_numpy())[["patch_id", "label", "raw"]]
    return validation.reset_index(drop=True), held.reset_index(drop=True), calibration


def decisions(validation: pd.DataFrame, held: pd.DataFrame, rule, calibration: dict | None = None) -> np.ndarray:
    """Held-out calls of one model: calibration (given, or refitted on ``validation``) and the rule's threshold."""
    calibration = calibration or fit_calibration(validation["label"], validation["raw"], "platt")
    p_val = apply_calibration(calibration, validation["raw"].to_numpy())
    threshold = rule(validation["label"].to_numpy().astype(int), p_val)
    return apply_calibration(calibration, held["raw"].to_numpy()) >= threshold


def pooled(models: list, rule, mask: pd.Series, rng: np.random.Generator | None = None) -> tuple[float, float]:
    """Sensitivity and specificity over the held-out patches of ``models`` (one per region) that ``mask`` keeps."""
    calls, truth = [], []
    for validation, held, calibration in models:
        if rng is not None:  # resample the validation patches by spatial block, refit calibration
            blocks = validation["block"].unique()
            picked = rng.choice(blocks, len(blocks))
            validation = pd.concat([validation[validation["block"] == b] for b in picked])
            if validation["label"].nunique() < 2:
                return np.nan, np.nan
            calibration = None
        keep = held["patch_id"].map(mask).to_numpy()
        calls.append(decisions(validation, held, rule, calibration)[keep])
        truth.append(held["label"].to_numpy()[keep])
    c, y = np.concatenate(calls), np.concatenate(truth)
    return float(c[y == 1].mean()), float(1 - c[y == 0].mean())


def collections(labels: pd.Series) -> dict[str, dict[str, list]]:
    """The sets of trainings compared: {title: {training: [model per held-out region]}} (complete ones only)."""
    cli = MODELS / "real_cli"
    sets = {
        "CLI, audited, split drawn with --seed (before)": ("audited", ["seed0", "seed1_split_follows_seed"]),
        "CLI, audited, split_seed 0": ("audited", ["seed0", "seed1", "seed2"]),
        "CLI, raw labels, split drawn with --seed, early stopping from epoch 1": ("raw", ["seed0_early_stopping", "seed1_early_stopping"]),
        "CLI, raw labels, split drawn with --seed": ("raw", ["seed0", "seed1_split_follows_seed"]),
        "CLI, raw labels, split_seed 0": ("raw", ["seed0", "seed1", "seed2"]),
    }
    out = {}
    for title, (path, names) in sets.items():
        runs = {n: [cli / path / f"region{r}" / n for r in range(6)] for n in names}
        runs = {n: [model_scores(d, "cli", labels) for d in dirs] for n, dirs in runs.items()
                if all((d / "held_out_predictions.csv").is_file() for d in dirs)}
        if len(runs) > 1:
            out[title] = runs
    for variant, seeds, title in (("late_stopping", range(3), "leave one region out, one bn_cnn, shared splits"),
                                  ("single", range(9), "the same, early stopping from epoch 1")):
        runs = {f"seed{s}": [MODELS / "real_amazon6_seeds" / "regions" / variant / f"seed{s}" / f"fold{f}" for f in range(6)] for s in seeds}
        out[title] = {n: [model_scores(d, "loro", labels) for d in dirs] for n, dirs in runs.items()
                      if all((d / "predictions.csv").is_file() for d in dirs)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicates", type=int, default=100, help="validation resamplings per model")
    args = parser.parse_args()
    if not (DATA / "patches.npy").is_file():
        raise SystemExit(f"real data not found at {DATA}: this benchmark needs ../shared/data (or ASGM_REFERENCE_DATA)")
    dataset = read_dataset(DATA)
    _, agreed, _ = reference_masks(dataset)
    labels = dataset.index.set_index("patch_id")["label"]
    for title, runs in collections(labels).items():
        print(f"\n{title} ({', '.join(runs)}), agreed labels, pooled over six held-out regions:")
        print("  rule             sensitivity per training (spread)    specificity per training (spread)   resampled sd sens / spec")
        for name, rule in RULES.items():
            points = [pooled(models, rule, agreed) for models in runs.values()]
            sens, spec = [p[0] for p in points], [p[1] for p in points]
            rng = np.random.default_rng(0)
            first = next(iter(runs.values()))
            resampled = np.array([pooled(first, rule, agreed, rng) for _ in range(args.replicates)])
            print(f"  {name:16s} {' / '.join(f'{v:.3f}' for v in sens):26s} ({max(sens) - min(sens):.3f})   "
                  f"{' / '.join(f'{v:.3f}' for v in spec):26s} ({max(spec) - min(spec):.3f})   "
                  f"{np.nanstd(resampled[:, 0]):.3f} / {np.nanstd(resampled[:, 1]):.3f}", flush=True)


if __name__ == "__main__":
    main()
