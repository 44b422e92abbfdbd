"""Results analysis on REAL data: ../shared/data/amazon-s2-6band (794 Sentinel-2 patches, 6 bands).

For the default model (bn_cnn with per-band standardisation), trained once per seed with the
spatially blocked split (the same runs as ``real_amazon6.py``'s ``bn_cnn_std``, shared cache):

- channel-group importance: the drop in test ROC-AUC when a spectral group (visible, NIR, SWIR)
  or a single band is shuffled across the test patches;
- per-category breakdown: share of test patches classified correctly for the mines and for each
  kind of hard negative (``natural_change``, ``human_activity``), all seeds pooled;
- error galleries (most confident false positives and false negatives) and Grad-CAM / occlusion
  for true positives, false positives and false negatives, written as PNGs to
  ``benchmarks/output/real_analysis/`` — git-ignored, because they show the real imagery, which
  may not be redistributed.

Intervals are 95 % block-bootstrap intervals over the test split's spatial blocks.

Usage: python benchmarks/real_analysis.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pandas as pd

from asgm import evaluate, explain, plots
from asgm.config import TrainingConfig
from asgm.models import normalize_patches
from asgm.patches import point_kinds, read_dataset
from asgm.predict import load_trained_model
from asgm.train import train_experiment

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ASGM_REFERENCE_DATA", ROOT.parent / "shared" / "data")) / "amazon-s2-6band"
MODELS = ROOT / "models" / "benchmarks" / "real_amazon6"
OUTPUT = ROOT / "benchmarks" / "output" / "real_analysis"
CONFIG = TrainingConfig(architecture="bn_cnn", standardize=True, ensemble=1)  # single models, as in its results table


def importance_of_seed(model_dir: Path, dataset, seed: int) -> pd.DataFrame:
    run = evaluate.read_run(model_dir)
    trained = load_trained_model(model_dir)
    x = normalize_patches(dataset.patches[dataset.rows(run.patch_id)], dataset.channels, float(dataset.meta["scale"]), trained.channels)
    groups = explain.channel_groups(trained.channels)
    groups |= {band: [i] for i, band in enumerate(trained.channels) if [i] not in groups.values()}  # single bands too
    return explain.permutation_importance(trained.model, x, run.y, run.blocks, groups, n_repeats=5, n_boot=500, seed=seed).assign(seed=seed)


def figures_of_seed(model_dir: Path, dataset, kinds: pd.Series) -> list[Path]:
    """Galleries and explanations of one run (real imagery: written outside git)."""
    run = evaluate.read_run(model_dir)
    trained = load_trained_model(model_dir)
    rows = dataset.rows(run.patch_id)
    x = normalize_patches(dataset.patches[rows], dataset.channels, float(dataset.meta["scale"]), trained.channels)
    examples = explain.pick_examples(run.y, run.p, run.threshold, per_kind=12)
    index = dataset.index.iloc[rows].reset_index(drop=True)

    def captions(picked):
        return [f"{index['patch_id'][r]}\n{kinds[index['patch_id'][r]]}  P={run.p[r]:.2f}\n{index['lon'][r]:.3f}, {index['lat'][r]:.3f}" for r in picked]

    written = []
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for kind in ("false positive", "false negative"):
        picked = examples[kind]
        fig = plots.plot_gallery(dataset.patches[rows[picked]], dataset.channels, captions(picked),
                                 f"REAL data: {kind}s of bn_cnn_std ({model_dir.name}), threshold {run.threshold:.2f}")
        written.append(plots.save_figure(fig, OUTPUT / f"gallery_{kind.replace(' ', '_')}s.png"))
    fill = explain.occlusion_fill(x, trained.channels)
    for kind in ("true positive", "false positive", "false negative"):
        picked = examples[kind][:4]
        if len(picked):
            fig = plots.plot_explanations(dataset.patches[rows[picked]], dataset.channels, explain.grad_cam(trained.model, x[picked]),
                                          explain.occlusion_sensitivity(trained.model, x[picked], fill), captions(picked),
                                          f"REAL data: {kind}s — bn_cnn_std ({model_dir.name})")
            written.append(plots.save_figure(fig, OUTPUT / f"explain_{kind.replace(' ', '_')}s.png"))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    if not (DATA / "patches.npy").is_file():
        raise SystemExit(f"real data not found at {DATA}: this benchmark needs ../shared/data (or ASGM_REFERENCE_DATA)")
    dataset = read_dataset(DATA)
    kinds = point_kinds(dataset.index).set_axis(dataset.index["patch_id"])
    print(f"REAL data: {DATA} — bn_cnn_std, {args.seeds} seeds")
    model_dirs = {s: train_experiment(dataset, MODELS, f"bn_cnn_std_seed{s}", dataclasses.replace(CONFIG, seed=s), progress=False)
                  for s in range(args.seeds)}

    importance = pd.concat([importance_of_seed(d, dataset, s) for s, d in model_dirs.items()])
    summary = importance.groupby(level="group", sort=False).agg(drop=("roc_auc_drop", "mean"), sd=("roc_auc_drop", "std"),
                                                                ci_low=("ci_low", "mean"), ci_high=("ci_high", "mean"))
    print("\nChannel-group importance: drop in test ROC-AUC when the group is shuffled "
          "(mean ± sd over seeds [mean of the seeds' 95 % block-bootstrap intervals])")
    print("| group | ROC-AUC drop |\n|---|---|")
    for group, r in summary.sort_values("drop", ascending=False).iterrows():
        print(f"| {group} | {r['drop']:.3f} ± {r['sd']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] |")

    runs = {s: evaluate.read_run(d) for s, d in model_dirs.items()}
    pooled = pd.concat([pd.DataFrame({"y": r.y, "predicted": r.p >= r.threshold, "p": r.p, "block": r.blocks,
                                      "category": kinds.loc[r.patch_id].to_numpy()}) for r in runs.values()], ignore_index=True)
    breakdown = evaluate.category_breakdown(pooled["y"], pooled["predicted"], pooled["category"], pooled["block"], pooled["p"], n_boot=1000)
    print(f"\nPer category (test patches of {args.seeds} seeds pooled, F1 threshold from validation):")
    print("| category | label | test patches | blocks | classified correctly | mean P(mine) |\n|---|---|---|---|---|---|")
    for category, r in breakdown.iterrows():
        print(f"| {category} | {int(r['label'])} | {int(r['patches'])} | {int(r['blocks'])} | {r['correct']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] | {r['mean_probability']:.3f} |")

    written = figures_of_seed(model_dirs[0], dataset, kinds)
    print("\nfigures (real imagery, not committed):", *[str(p.relative_to(ROOT)) for p in written], sep="\n  ")


if __name__ == "__main__":
    main()
