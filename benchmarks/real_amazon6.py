"""Accuracy on REAL data: ../shared/data/amazon-s2-6band (794 Sentinel-2 patches, 6 bands, Amazon).

Each training recipe (variant) is evaluated with ``asgm.crossval``:

- ``kfold``: spatial 5-fold cross-validation — whole spatial blocks per fold, validation carved by
  blocks from the training folds, so every patch gets one out-of-fold prediction;
- ``regions``: leave one of 6 geographic regions (k-means on the coordinates, whole blocks) out.

The folds depend only on ``--fold-seed``, so every variant and training seed sees the same folds
and the comparisons are paired patch by patch. Every patch is judged at its own fold's
validation-chosen thresholds (``balanced``: maximum expected sensitivity + specificity, the
model's own since 2026-12-07; ``F1``: maximum expected F1; ``spec``: validation specificity >= 0.95), and
every interval is a 95 % bootstrap over spatial blocks. Two levers need no extra training and are
derived from the trained folds: test-time augmentation (``+tta``: the fold models re-run on the 8
dihedral views, calibration and thresholds refitted on validation) and an ensemble over training
seeds (``xN``: the mean of N seeds' raw outputs, calibration and thresholds refitted on validation;
``--ensemble-of 3`` groups the seeds into ensembles of three — each one the default recipe, whose
members differ only in their seeds — and reports how far their operating points differ).
Every fold's calibration and thresholds are refitted from its raw outputs with today's rule
(:func:`asgm.train.calibrate_and_choose_thresholds`), so models cached under an older rule are
judged as a model trained today would be. With several seeds and variants, each variant is
compared with the first one seed by seed (:func:`asgm.evaluate.paired_difference`: the mean of the
per-seed differences, one block-bootstrap draw shared by all seeds).

Models are cached under models/benchmarks/real_amazon6/ (a rerun only trains what is missing).

Usage: python benchmarks/real_amazon6.py --evaluation regions --variants single recipe [--seeds 1] [--first-seed 0]
       [--ensemble-of N] [--tta] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from asgm import augment, evaluate
from asgm.calibrate import apply_calibration, expected_calibration_error
from asgm.config import AUGMENTATIONS, LabelsConfig, TrainingConfig
from asgm.crossval import CrossValidation, cross_validate
from asgm.labels import agreed, audit_labels, confident_learning_flags, read_reference
from asgm.models import normalize_patches, predict_probabilities
from asgm.patches import read_dataset
from asgm.plots import plot_cross_validation
from asgm.predict import load_trained_model
from asgm.train import calibrate_and_choose_thresholds

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ASGM_REFERENCE_DATA", ROOT.parent / "shared" / "data")) / "amazon-s2-6band"
#: Earth Genome's yearly mining footprints, the reference whose agreeing labels are the headline.
REFERENCE = DATA.parent / "reference" / "amw"

#: Variants: training settings that differ from TrainingConfig's defaults (the recommended recipe).
#: Every lever was measured on single models, so each variant but ``recipe`` trains one.
SINGLE = {"ensemble": 1}
VARIANTS = {
    "recipe": {},
    # the recipe before the ensemble of three (the default until 2026-12-02)
    "single": SINGLE,
    # the best recipe before issue 12 (bn_cnn_std of the earlier table)
    "previous": {**SINGLE, "learning_rate": 3e-4, "patience": 10, "lr_patience": None, "calibration": "none", "augment": ("dihedral",)},
    # the recipe before the gain augmentation (the default until 2026-12-01)
    "no_gain": {**SINGLE, "augment": ("dihedral",)},
    # a wider per-band gain: log-uniform in [1/1.5, 1.5] instead of [1/1.25, 1.25]
    "wide_gain": {**SINGLE, "gain_factor": 1.5},
    "no_schedule": {**SINGLE, "lr_patience": None},
    # the recipe before early stopping ignored the first quarter of the epochs (the default until 2026-12-07)
    "early_stopping": {**SINGLE, "early_stopping_from": 0.0},
    "eg_augment": {**SINGLE, "augment": AUGMENTATIONS},
    # validation (early stopping, calibration, thresholds) from whole areas of the training regions
    "area_validation": {**SINGLE, "split_areas": 10},
    # the ensemble's members each on a 70 % bootstrap sample (Earth Genome's bagging)
    "bagged3": {"bagging": 0.7},
    # the ensemble's members each early-stopping on their own spatial fold of the training regions;
    # calibration and thresholds on all their out-of-fold predictions (training.member_validation)
    "member_folds": {"member_validation": "folds"},
    # mine patches without 0.5 ha of open ground (water or bare) left out of training and validation
    "open_mines": {**SINGLE, "mine_min_open_ha": 0.5},
    "scan_cnn": {**SINGLE, "architecture": "scan_cnn"},
    # the scan model taught by one bn_cnn trained first on the same fold (knowledge distillation)
    "scan_distilled": {**SINGLE, "architecture": "scan_cnn", "teacher": "bn_cnn"},
    # label noise: confident learning on a 3-fold cross-validation of the training regions prunes the
    # training and validation patches it flags; thresholds from those out-of-fold predictions
    "prune": {**SINGLE, "label_noise": "prune", "thresholds_from": "out_of_fold"},
    # the upper bound a reference map gives: patches whose label Earth Genome's map contradicts
    # (asgm.labels' defaults) never trained or validated on (they stay in the test folds)
    "agreed": {**SINGLE, "train_on": "agreed"},
    # ... and also the mine patches near which the map has mining only after the image (labels.mine_mapped_later)
    "agreed_strict": {**SINGLE, "train_on": "agreed_strict"},
    # a noise-robust loss: targets 0.1 / 0.9 instead of 0 / 1
    "smoothing": {**SINGLE, "label_smoothing": 0.1},
    # a bounded loss: generalized cross-entropy with q = 0.7 (Zhang & Sabuncu 2018's choice)
    "gce": {**SINGLE, "gce_q": 0.7},
    "thesis_cnn": {**SINGLE, "architecture": "thesis_cnn", "standardize": False, "learning_rate": 3e-4, "patience": 10,
                   "lr_patience": None, "calibration": "none", "augment": ("dihedral",)},
}
DEFAULT_GAIN_FACTOR = augment.GAIN_FACTOR
SCHEMES = {"kfold": 5, "regions": 6}
REPORTED = ("roc_auc", "average_precision", "sensitivity", "specificity")


def reference_masks(dataset) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """The audit of the real set against Earth Genome's footprints (``asgm.labels``' defaults) and two
    masks by ``patch_id``: the labels that agree with it, and those that also agree with its dates
    (``labels.mine_mapped_later``)."""
    footprints = read_reference(REFERENCE)
    audit = audit_labels(dataset, footprints, progress=False)
    strict = agreed(audit_labels(dataset, footprints, LabelsConfig(mine_mapped_later=True), progress=False))
    return audit, agreed(audit), strict


def oof_from_folds(cv: CrossValidation, raw_by_fold: list[pd.DataFrame], config: TrainingConfig) -> CrossValidation:
    """Out-of-fold predictions from each fold's raw outputs over all patches (``patch_id, split,
    block, label, raw``): calibration and thresholds refitted on the fold's validation split."""
    parts = []
    for fold, frame in enumerate(raw_by_fold):
        val, test = frame[frame["split"] == "validation"], frame[frame["split"] == "test"]
        calibration, thresholds = calibrate_and_choose_thresholds(val["label"].to_numpy(), val["raw"].to_numpy(), config)
        parts.append(pd.DataFrame({"patch_id": test["patch_id"].to_numpy(), "fold": fold, "block": test["block"].to_numpy(),
                                   "label": test["label"].to_numpy(), "probability": apply_calibration(calibration, test["raw"]),
                                   "threshold_balanced": thresholds["balanced"]["threshold"], "threshold_f1": thresholds["f1"]["threshold"],
                                   "threshold_spec": thresholds["specificity"]["threshold"]}))
    return CrossValidation(cv.scheme, pd.concat(parts, ignore_index=True), cv.folds)


def fold_raw(cv: CrossValidation, tta: bool = False, dataset=None) -> list[pd.DataFrame]:
    """Each fold's raw (uncalibrated) outputs over every patch, from predictions.csv, or recomputed
    with test-time augmentation."""
    frames = []
    for model_dir in cv.folds["model_dir"]:
        pred = pd.read_csv(Path(model_dir) / "predictions.csv")
        if tta:
            trained = load_trained_model(model_dir)
            x = normalize_patches(dataset.patches, dataset.channels, float(dataset.meta["scale"]), trained.channels)
            pred["raw_probability"] = predict_probabilities(trained.model, x, tta=True)
        frames.append(pred.rename(columns={"raw_probability": "raw"}))
    return frames


def mean_raw(raws: list[list[pd.DataFrame]]) -> list[pd.DataFrame]:
    """Each fold's raw outputs averaged over several trainings (:func:`fold_raw` of each): an ensemble
    of them, as :func:`asgm.models.ensemble` averages its members."""
    return [frame.assign(raw=np.mean([r[i]["raw"].to_numpy() for r in raws], axis=0)) for i, frame in enumerate(raws[0])]


def row(name: str, cv: CrossValidation, seconds: float, n_boot: int, trusted: pd.Series) -> dict:
    """Metrics on all labels and (``agreed:`` keys) on the labels that agree with the reference."""
    p = cv.predictions
    out = {"variant": name, "patches": len(p), "train s/fold": seconds,
           "ECE": expected_calibration_error(p["label"], p["probability"])}
    for prefix, part_cv in (("", cv), ("agreed:", agreed_only(cv, trusted))):
        table = part_cv.metrics(n_boot)
        out[f"{prefix}patches"] = len(part_cv.predictions)
        for point in ("balanced", "f1", "spec"):
            for metric in REPORTED:
                for part in ("value", "ci_low", "ci_high"):
                    # balanced: NaN where a fold's thresholds predate it (out-of-fold thresholds of older models)
                    out[f"{prefix}{point}:{metric}:{part}"] = table.loc[(point, metric), part] if point in table.index else np.nan
    return out


def agreed_only(cv: CrossValidation, trusted: pd.Series) -> CrossValidation:
    """The out-of-fold predictions of the patches whose label agrees with the reference."""
    return CrossValidation(cv.scheme, cv.predictions[cv.predictions["patch_id"].map(trusted).to_numpy()], cv.folds)


def with_validation_thresholds(cv: CrossValidation) -> CrossValidation | None:
    """The same predictions judged at each fold's validation-chosen thresholds, for models whose
    operating thresholds came from out-of-fold predictions (None for the others)."""
    p = cv.predictions.copy()
    for fold, model_dir in zip(cv.folds["fold"], cv.folds["model_dir"]):
        chosen = json.loads((Path(model_dir) / "threshold.json").read_text()).get("validation")
        if chosen is None:
            return None
        p.loc[p["fold"] == fold, ["threshold_f1", "threshold_spec"]] = chosen["f1"]["threshold"], chosen["specificity"]["threshold"]
        if "threshold_balanced" in p:
            p.loc[p["fold"] == fold, "threshold_balanced"] = chosen.get("balanced", {}).get("threshold", np.nan)
    return CrossValidation(cv.scheme, p, cv.folds)


def label_issue_agreement(cv: CrossValidation, audit: pd.DataFrame) -> str:
    """Confident learning on these out-of-fold predictions against the reference audit: how many
    flags are reference conflicts (precision) and how many conflicts are flagged (recall)."""
    p = cv.predictions.join(audit.set_index("patch_id")["conflict"], on="patch_id")
    flags = confident_learning_flags(p["label"].to_numpy(), p["probability"].to_numpy())
    conflict = p["conflict"].fillna("").ne("").to_numpy()
    hits = int((flags & conflict).sum())
    precision, recall = evaluate.wilson_interval(hits, int(flags.sum())), evaluate.wilson_interval(hits, int(conflict.sum()))
    by_label = ", ".join(f"label {k}: {int((flags & conflict & (p['label'] == k).to_numpy()).sum())}/{int((flags & (p['label'] == k).to_numpy()).sum())} flags, "
                         f"{int((conflict & (p['label'] == k).to_numpy()).sum())} conflicts" for k in (0, 1))
    return (f"{int(flags.sum())} flagged, {int(conflict.sum())} reference conflicts, {hits} both: precision {precision[0]:.2f} [{precision[1]:.2f}, {precision[2]:.2f}], "
            f"recall {recall[0]:.2f} [{recall[1]:.2f}, {recall[2]:.2f}] ({by_label})")


def paired(cvs_a: dict[int, CrossValidation], cvs_b: dict[int, CrossValidation], n_boot: int, point: str = "spec") -> pd.DataFrame:
    """A − B on the same out-of-fold patches, paired by training seed (the same seed's runs of two
    variants; :func:`asgm.evaluate.paired_difference`), at ``point``'s thresholds (``spec`` or
    ``f1``), block-bootstrap interval."""
    runs = []
    for cvs in (cvs_a, cvs_b):
        seeded = {}
        for seed, cv in cvs.items():
            p = cv.predictions.sort_values("patch_id")
            seeded[seed] = evaluate.RunPredictions(p["patch_id"].to_numpy(), p["label"].to_numpy(), p["probability"].to_numpy(),
                                                   p["block"].to_numpy(), p[f"threshold_{point}"].to_numpy())
        runs.append(seeded)
    return evaluate.paired_difference(runs[0], runs[1], n_boot, metrics=REPORTED)


def difference_line(d: pd.DataFrame) -> str:
    return ", ".join(f"{m} {d.loc[m, 'mean']:+.3f} [{d.loc[m, 'ci_low']:+.3f}, {d.loc[m, 'ci_high']:+.3f}]" for m in REPORTED)


def cell(r: dict, point: str, metric: str) -> str:
    return f"{r[f'{point}:{metric}:value']:.3f} [{r[f'{point}:{metric}:ci_low']:.2f}, {r[f'{point}:{metric}:ci_high']:.2f}]"


def summarise(rows: list[dict]) -> str:
    lines = ["| variant | labels | patches | ROC-AUC | AP | sens @balanced | spec @balanced | sens @F1 | spec @F1 | sens @spec | spec @spec | ECE | train s/fold |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for prefix, labels in (("agreed:", "agreed"), ("", "all")):
            c = lambda point, metric: cell(r, f"{prefix}{point}", metric)  # noqa: E731
            lines.append(f"| {r['variant']} | {labels} | {r[f'{prefix}patches']} | {c('f1', 'roc_auc')} | {c('f1', 'average_precision')} | {c('balanced', 'sensitivity')} | {c('balanced', 'specificity')} | {c('f1', 'sensitivity')} | "
                         f"{c('f1', 'specificity')} | {c('spec', 'sensitivity')} | {c('spec', 'specificity')} | "
                         f"{r['ECE']:.3f} | {r['train s/fold']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluation", choices=list(SCHEMES), default="kfold")
    parser.add_argument("--variants", nargs="+", default=["single", "recipe"], choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per variant (the folds stay the same)")
    parser.add_argument("--first-seed", type=int, default=0, help="train seeds first-seed … first-seed + seeds - 1")
    parser.add_argument("--fold-seed", type=int, default=0)
    parser.add_argument("--ensemble-of", type=int, default=0, help="also group the seeds into ensembles of this many (their mean raw output; needs two groups or more)")
    parser.add_argument("--tta", action="store_true", help="also report each variant with test-time augmentation")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "benchmarks" / "real_amazon6")
    args = parser.parse_args()
    if not (DATA / "patches.npy").is_file():
        raise SystemExit(f"real data not found at {DATA}: this benchmark needs ../shared/data (or ASGM_REFERENCE_DATA)")
    dataset = read_dataset(DATA)
    audit, trusted, strict = reference_masks(dataset)
    print(f"reference: {REFERENCE} — {int((~trusted).sum())} of {len(trusted)} labels conflict with it (asgm.labels defaults)", flush=True)
    k = SCHEMES[args.evaluation]
    print(f"REAL data: {DATA} — {args.evaluation} ({k} groups), {args.seeds} training seed(s) per variant", flush=True)
    rows, results, by_seed = [], {}, {}
    for name in args.variants:
        runs = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            settings = dict(VARIANTS[name])
            augment.GAIN_FACTOR = settings.pop("gain_factor", DEFAULT_GAIN_FACTOR)  # a module constant, not a config key
            train_on = {"agreed": trusted, "agreed_strict": strict}.get(settings.pop("train_on", None))
            exclude = None if train_on is None else (~train_on).reindex(dataset.index["patch_id"]).to_numpy()
            config = dataclasses.replace(TrainingConfig(), seed=seed, bootstrap=200, **settings)
            start = time.perf_counter()
            cv = cross_validate(dataset, args.out / args.evaluation / name / f"seed{seed}", config, args.evaluation, k, args.fold_seed, progress=False,
                                exclude=exclude)
            trained = cv.folds["seconds"].mean()
            raw = fold_raw(cv)
            if config.thresholds_from == "validation":
                cv = oof_from_folds(cv, raw, config)
            runs.append((config, cv, raw))
            by_seed.setdefault(name, {})[seed] = cv
            label = name if args.seeds == 1 else f"{name} seed {seed}"
            rows.append(row(label, cv, trained, args.bootstrap, trusted))
            results[label] = cv
            validation = with_validation_thresholds(cv)
            if validation is not None:
                rows.append(row(f"{label} (validation thresholds)", validation, trained, args.bootstrap, trusted))
            print(f"  {label}: ROC-AUC {rows[-1]['f1:roc_auc:value']:.3f}, sens/spec @spec {rows[-1]['spec:sensitivity:value']:.3f}/"
                  f"{rows[-1]['spec:specificity:value']:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
            if args.tta:
                tta = oof_from_folds(cv, fold_raw(cv, tta=True, dataset=dataset), config)
                rows.append(row(f"{label} +tta", tta, trained, args.bootstrap, trusted))
                results[f"{label} +tta"] = tta
        config, first, _ = runs[0]
        raws = [raw for _, _, raw in runs]
        if args.seeds > 1:
            label = f"{name} x{args.seeds} seeds"
            results[label] = oof_from_folds(first, mean_raw(raws), config)
            rows.append(row(label, results[label], sum(r["train s/fold"] for r in rows if r["variant"].startswith(f"{name} seed")), args.bootstrap, trusted))
        size = args.ensemble_of
        if size > 1 and args.seeds >= 2 * size:  # one group would be the xN row again
            spread = []
            for g in range(0, args.seeds - size + 1, size):
                label = f"{name} ensemble of seeds {args.first_seed + g}-{args.first_seed + g + size - 1}"
                results[label] = oof_from_folds(first, mean_raw(raws[g:g + size]), config)
                rows.append(row(label, results[label], trained, args.bootstrap, trusted))
                spread.append(rows[-1])
            for point in ("balanced", "f1", "spec"):
                sens = [r[f"agreed:{point}:sensitivity:value"] for r in spread]
                spec = [r[f"agreed:{point}:specificity:value"] for r in spread]
                print(f"  {name}, {len(spread)} ensembles of {size}, agreed labels, {point} threshold: sensitivity "
                      f"{', '.join(f'{v:.3f}' for v in sens)} (spread {max(sens) - min(sens):.3f}), specificity "
                      f"{', '.join(f'{v:.3f}' for v in spec)} (spread {max(spec) - min(spec):.3f})", flush=True)
    out = args.out / args.evaluation
    pd.DataFrame(rows).to_csv(out / "results.csv", index=False)
    print(f"\n{args.evaluation}: out-of-fold metrics [95 % block-bootstrap interval] on the labels that agree with Earth Genome's map "
          "(the headline) and on all labels; thresholds chosen by each fold's model")
    print(summarise(rows))
    print(f"\nOn the {int(strict.sum())} labels that also agree with the reference's dates (a mine whose mining the reference maps only "
          "after the image left out, labels.mine_mapped_later), F1 threshold:")
    for name, cv in results.items():
        table = agreed_only(cv, strict).metrics(args.bootstrap)
        print(f"  {name}: " + ", ".join(f"{m} {table.loc[('f1', m), 'value']:.3f} [{table.loc[('f1', m), 'ci_low']:.2f}, {table.loc[('f1', m), 'ci_high']:.2f}]"
                                      for m in ("roc_auc", "sensitivity", "specificity")))
    print("\nConfident learning (cleanlab) on each variant's out-of-fold predictions, against the reference audit:")
    for name, cv in results.items():
        print(f"  {name}: {label_issue_agreement(cv, audit)}")
    names = list(results)
    if args.seeds == 1 and len(names) > 1:
        print(f"\nPaired differences against {names[0]} (the same patches whose labels agree with the reference, spec operating point):")
        for name in names[1:]:
            d = paired({0: agreed_only(results[name], trusted)}, {0: agreed_only(results[names[0]], trusted)}, args.bootstrap)
            print(f"  {name} − {names[0]}: {difference_line(d)}")
    if args.seeds > 1 and len(args.variants) > 1:
        base = args.variants[0]
        print(f"\nPaired differences against {base}, seed by seed (seeds {args.first_seed}–{args.first_seed + args.seeds - 1}; mean of the "
              "per-seed differences, joint block bootstrap), F1 threshold:")
        for name in args.variants[1:]:
            for labels, mask in (("agreed", trusted), ("date-agreeing", strict)):
                d = paired({s: agreed_only(cv, mask) for s, cv in by_seed[name].items()},
                           {s: agreed_only(cv, mask) for s, cv in by_seed[base].items()}, args.bootstrap, "f1")
                print(f"  {name} − {base}, {labels} labels: {difference_line(d)}")
    for name, cv in results.items():
        per_fold = cv.per_fold(args.bootstrap)
        if args.evaluation == "regions":
            print(f"\nPer region, {name}, agreed labels:")
            print(agreed_only(cv, trusted).per_fold(args.bootstrap).round(3).to_string())
            print(f"Per region, {name}, all labels:")
            print(per_fold.round(3).to_string())
        located = cv.predictions.join(dataset.index.set_index("patch_id")[["lon", "lat"]], on="patch_id") if "lon" not in cv.predictions else cv.predictions
        fig = plot_cross_validation(located, per_fold, f"{name}: {args.evaluation} on the REAL Amazon patches")
        fig.savefig(out / f"{name.replace(' ', '_')}.png", dpi=100, bbox_inches="tight")  # not committed: real locations
        plt.close(fig)
    print("\nGoal of issue 31, on the labels that agree with the reference (" + ("ROC-AUC >= 0.95, sensitivity >= 0.85 at specificity >= 0.95)"
          if args.evaluation == "kfold" else "pooled ROC-AUC >= 0.90, no region below 0.80)") + ":")
    for r in rows:
        auc_ok = r["agreed:f1:roc_auc:value"] >= (0.95 if args.evaluation == "kfold" else 0.90)
        if args.evaluation == "kfold":
            other = r["agreed:spec:sensitivity:value"] >= 0.85 and r["agreed:spec:specificity:value"] >= 0.95
        else:
            name = r["variant"]
            other = name in results and agreed_only(results[name], trusted).per_fold(args.bootstrap)["roc_auc"].min() >= 0.80
        print(f"  {r['variant']}: ROC-AUC {'met' if auc_ok else 'not met'}; {'operating point' if args.evaluation == 'kfold' else 'every region'} {'met' if other else 'not met'}")

if __name__ == "__main__":
    main()
