"""The operating point out of region as a user gets it: the command-line tools with their defaults.

``benchmarks/real_amazon6.py`` trains every seed on the same folds and the same validation splits,
so it measures how far the operating point moves with the initial weights alone. This benchmark
runs the tools exactly as a user does (``--seed`` moves the initial weights and the augmentation;
the train / validation / test split inside the training regions has its own ``training.split_seed``,
and ``--config benchmarks/recipes/split_follows_seed.yaml`` lets the seed move it too, the recipe
before 2026-12-07), on each of the six regions of ``real_amazon6.py``'s
leave-one-region-out (``asgm.crossval.fold_splits``, same seed):

1. the patches of the other five regions (those ``real_amazon6.py`` trains and validates on) are
   written as a dataset directory, and the held-out region's as another;
2. with ``--audited``, the training directory first goes through
   ``python -m asgm.labels --input_directory D --reference REF --output_directory AUDITED``
   (no other flag; REF is Earth Genome's footprints in ``../shared/data/reference/amw``);
3. ``python -m asgm.train --input_directory D --output_directory M --experiment_name seedS --seed S``
   (the default recipe: an ensemble of three, its split, calibration and thresholds);
4. ``python -m asgm.predict`` on the held-out region (default operating point).

The held-out predictions of the six regions are pooled per seed: ROC-AUC, and sensitivity and
specificity at each model's saved threshold, on all labels, on the labels that agree with the
reference (the headline) and on those that also agree with its dates, with 95 % intervals from a
bootstrap over spatial blocks; then the spread of the operating point over the seeds.

Everything is written under ``--out`` (git-ignored; the real patches are never committed) and a
rerun reuses what is there: finished trainings, audits and predictions.

A candidate default is measured the same way with ``--config FILE`` (a mapping of training keys,
passed to ``asgm.train --config``; its models are named ``seed<S>_<file stem>``).

Usage: python benchmarks/real_cli.py [--seeds 0 1] [--audited] [--config FILE] [--regions 0 1 2 3 4 5] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from asgm.atomic import atomic_path
from asgm.crossval import fold_splits
from asgm.evaluate import block_bootstrap
from asgm.patches import Dataset, read_dataset, write_subset
from real_amazon6 import DATA, REFERENCE, ROOT, reference_masks  # a sibling script: run as python benchmarks/real_cli.py

REGIONS = 6


def subset_directory(dataset: Dataset, rows: np.ndarray, path: Path) -> Path:
    """The patches ``rows`` of ``dataset`` as a dataset directory (kept when already written)."""
    if not (path / "dataset.json").is_file():
        with atomic_path(path, marker="dataset.json", what="dataset directory") as tmp:
            tmp.mkdir()
            write_subset(dataset, rows, tmp, meta={"subset_of": str(dataset.path)})
    return path


def run(*args: str) -> None:
    """One of the project's command-line tools, as a user runs it."""
    print("  $ python -m " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", *args], check=True)


def region_predictions(dataset: Dataset, region: int, split: pd.DataFrame, seed: int, audited: bool, out: Path,
                       config: Path | None = None) -> pd.DataFrame:
    """Train on the other regions with the CLI and predict the held-out one; its predictions with
    the saved threshold."""
    base = out / "data" / f"region{region}"
    training = subset_directory(dataset, np.flatnonzero(split["split"].isin(["train", "validation"]).to_numpy()), base / "training")
    held_out = subset_directory(dataset, np.flatnonzero((split["split"] == "test").to_numpy()), base / "held_out")
    if audited:
        audited_dir = base / "training_audited"
        run("asgm.labels", "--input_directory", str(training), "--reference", str(REFERENCE), "--output_directory", str(audited_dir))
        training = audited_dir
    models = out / ("audited" if audited else "raw") / f"region{region}"
    name = f"seed{seed}" + (f"_{config.stem}" if config else "")
    run("asgm.train", "--input_directory", str(training), "--output_directory", str(models), "--experiment_name", name, "--seed", str(seed),
        *(["--config", str(config)] if config else []))
    model_dir = models / name
    output = model_dir / "held_out_predictions.csv"
    if not output.is_file():
        run("asgm.predict", "--model_directory", str(model_dir), "--input_directory", str(held_out), "--output", str(output))
    threshold = json.loads((model_dir / "threshold.json").read_text())["threshold"]
    return pd.read_csv(output).assign(region=region, seed=seed, threshold=threshold)


def pooled(p: pd.DataFrame, n_boot: int) -> dict:
    table = block_bootstrap(p["label"].to_numpy(), p["probability"].to_numpy(), p["block"].to_numpy(), p["threshold"].to_numpy(), n_boot)
    return {m: tuple(table.loc[m, ["value", "ci_low", "ci_high"]]) for m in ("roc_auc", "sensitivity", "specificity")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="asgm.train --seed values (one training per region each)")
    parser.add_argument("--audited", action="store_true", help="audit each training directory with asgm.labels first")
    parser.add_argument("--regions", type=int, nargs="+", default=list(range(REGIONS)), help="held-out regions to run (all six for the pooled figures)")
    parser.add_argument("--config", type=Path, help="a candidate recipe: YAML of training keys passed to asgm.train --config")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "benchmarks" / "real_cli")
    args = parser.parse_args()
    if not (DATA / "patches.npy").is_file():
        raise SystemExit(f"real data not found at {DATA}: this benchmark needs ../shared/data (or ASGM_REFERENCE_DATA)")
    dataset = read_dataset(DATA)
    groups, splits = fold_splits(dataset, "regions", REGIONS, seed=0)
    _, trusted, strict = reference_masks(dataset)
    labels = {"all": pd.Series(True, index=dataset.index["patch_id"]), "agreed": trusted, "date-agreeing": strict}
    blocks = pd.Series(groups["block"].to_numpy(), index=dataset.index["patch_id"])
    kind = "audited with asgm.labels, then trained" if args.audited else "trained on the raw labels"
    recipe = f"--config {args.config} ({args.config.read_text().strip()!r}), defaults otherwise" if args.config else "asgm.train's defaults"
    print(f"REAL data: {DATA}; leave one of {REGIONS} regions out, {kind} with {recipe}, seeds {args.seeds}", flush=True)
    frames = [region_predictions(dataset, r, splits[r], s, args.audited, args.out, args.config) for s in args.seeds for r in args.regions]
    p = pd.concat(frames, ignore_index=True)
    p["block"] = p["patch_id"].map(blocks)
    if "label" not in p:
        p["label"] = p["patch_id"].map(dataset.index.set_index("patch_id")["label"])
    p.to_csv(args.out / f"predictions_{'audited' if args.audited else 'raw'}{'_' + args.config.stem if args.config else ''}.csv", index=False)
    regions = "pooled" if sorted(args.regions) == list(range(REGIONS)) else f"regions {args.regions} only"
    print(f"\nHeld-out predictions ({regions}), at each model's saved threshold (threshold.json), 95 % block-bootstrap intervals:")
    points = {}
    for name, mask in labels.items():
        for seed in args.seeds:
            part = p[(p["seed"] == seed) & p["patch_id"].map(mask).to_numpy()]
            m = pooled(part, args.bootstrap)
            points[name, seed] = m
            print(f"  seed {seed}, {name} labels ({len(part)}): " + ", ".join(f"{k} {v[0]:.3f} [{v[1]:.2f}, {v[2]:.2f}]" for k, v in m.items()))
    if len(args.seeds) > 1:
        print("\nSpread of the operating point over the seeds (max − min):")
        for name in labels:
            sens = [points[name, s]["sensitivity"][0] for s in args.seeds]
            spec = [points[name, s]["specificity"][0] for s in args.seeds]
            print(f"  {name} labels: sensitivity {', '.join(f'{v:.3f}' for v in sens)} (spread {max(sens) - min(sens):.3f}); "
                  f"specificity {', '.join(f'{v:.3f}' for v in spec)} (spread {max(spec) - min(spec):.3f})")
    print("\nPer region, agreed labels (ROC-AUC; sensitivity / specificity at the saved threshold):")
    for (region, seed), part in p[p["patch_id"].map(labels["agreed"]).to_numpy()].groupby(["region", "seed"]):
        m = pooled(part, 200)
        print(f"  region {region}, seed {seed}: {m['roc_auc'][0]:.3f}; {m['sensitivity'][0]:.3f} / {m['specificity'][0]:.3f} "
              f"(threshold {part['threshold'].iloc[0]:.3f})")


if __name__ == "__main__":
    main()
