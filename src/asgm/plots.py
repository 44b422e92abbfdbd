"""Every figure of the pipeline. Functions return the matplotlib Figure; :func:`save_figure` writes it."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import rasterio
from matplotlib.colors import ListedColormap, PowerNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from asgm.atomic import atomic_path
from asgm.config import OSM_CHANNELS
from asgm.evaluate import expected_f_beta_curve, threshold_rule
from asgm.patches import Dataset

OSM_COLOURS = {"highway": "#f4d03f", "landuse": "#e67e22", "building": "#e74c3c", "aeroway": "#9b59b6", "waterway": "#3498db"}
CATEGORY_COLOURS = {"mine": "#d62728", "curated_negative": "#1f77b4", "random_negative": "#7f7f7f"}
SYNTHETIC_LABEL = "SYNTHETIC demo data — not a real place"


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` as PNG atomically and return the path."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    return Path(path)


def stretch(image: np.ndarray, low: float = 2, high: float = 98, valid: np.ndarray | None = None, limits: np.ndarray | None = None) -> np.ndarray:
    """Scale each channel of (..., C) to 0–1 between its ``low`` and ``high`` percentiles over the
    ``valid`` pixels, or between given ``limits`` (2, C)."""
    if limits is None:
        values = image[valid] if valid is not None else image.reshape(-1, image.shape[-1])
        limits = np.percentile(values, [low, high], axis=0) if len(values) else np.array([[0.0], [1.0]])
    lo, hi = limits
    return np.clip((image - lo) / np.maximum(hi - lo, 1e-9), 0, 1).astype(np.float32)


def rgb_bands(patches: np.ndarray, channels: list[str]) -> np.ndarray:
    """The (..., 3) B4, B3, B2 channels of patches (the first channel as grey if they are missing)."""
    if all(b in channels for b in ("B4", "B3", "B2")):
        return patches[..., [channels.index(b) for b in ("B4", "B3", "B2")]].astype(np.float32)
    return np.repeat(patches[..., :1].astype(np.float32), 3, axis=-1)


def rgb_preview(raster: str | Path, max_pixels: int, crs=None):
    """True colour (B4, B3, B2) of a raster, decimated to at most ``max_pixels`` a side, optionally
    warped to ``crs``; returns (rgb 0–1, (left, bottom, right, top), its CRS)."""
    from rasterio.vrt import WarpedVRT

    with rasterio.open(raster) as src, (WarpedVRT(src, crs=crs) if crs else src) as view:
        step = max(1, int(np.ceil(max(view.width, view.height) / max_pixels)))
        names = list(src.descriptions)
        idx = [names.index(b) + 1 for b in ("B4", "B3", "B2")] if all(b in names for b in ("B4", "B3", "B2")) else [1, 1, 1]
        rgb = view.read(idx, out_shape=(3, view.height // step, view.width // step)).transpose(1, 2, 0).astype(np.float32)
        bounds, out_crs = tuple(view.bounds), view.crs
    return stretch(rgb, valid=rgb.sum(-1) > 0), bounds, out_crs


def plot_region_overview(raster: str | Path, layers: dict[str, gpd.GeoDataFrame], title: str, synthetic: bool = False, max_pixels: int = 1500) -> Figure:
    """True-colour view of a region raster with vector layers (name -> GeoDataFrame) drawn on top."""
    rgb, (left, bottom, right, top), crs = rgb_preview(raster, max_pixels)
    fig, ax = plt.subplots(figsize=(9, 9))
    ax.imshow(rgb, extent=(left, right, bottom, top))
    styles = iter([dict(facecolor="none", edgecolor="#ff2d2d", linewidth=1.2), dict(color="#ffd700", markersize=14, marker="^"),
                   dict(color="#00e5ff", markersize=10, marker="o"), dict(color="white", markersize=6, marker=".")])
    handles = []
    for name, gdf in layers.items():
        style = next(styles)
        gdf.to_crs(crs).plot(ax=ax, **style)
        handles.append(Patch(facecolor="none", edgecolor=style["edgecolor"], label=name) if "edgecolor" in style
                       else Line2D([], [], linestyle="", marker=style["marker"], color=style["color"], label=name))
    ax.legend(handles=handles, loc="lower right", framealpha=0.85)
    ax.set_title(title + (f"\n{SYNTHETIC_LABEL}" if synthetic else ""))
    ax.set_xlabel(f"easting (m, {crs.to_string()})")
    ax.set_ylabel("northing (m)")
    return fig


def plot_osm_features(features: gpd.GeoDataFrame, boundary: gpd.GeoSeries, channels: tuple[str, ...] = OSM_CHANNELS, title: str = "OSM features", synthetic: bool = False) -> Figure:
    """Map of the OSM features, one colour per channel, over the boundary."""
    crs = boundary.estimate_utm_crs()
    fig, ax = plt.subplots(figsize=(9, 9))
    boundary.to_crs(crs).boundary.plot(ax=ax, color="black", linewidth=1)
    projected = features.to_crs(crs) if len(features) else features
    handles = []
    for key in channels:
        sub = projected[projected[key].notna()] if len(projected) else projected
        if len(sub):
            sub.plot(ax=ax, color=OSM_COLOURS[key], edgecolor=OSM_COLOURS[key], linewidth=1.2, alpha=0.85)
        handles.append(Patch(color=OSM_COLOURS[key], label=f"{key} ({len(sub)})"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title(title + (f"\n{SYNTHETIC_LABEL}" if synthetic else ""))
    ax.set_axis_off()
    return fig


def plot_sampling_points(points: gpd.GeoDataFrame, boundary: gpd.GeoSeries, title: str = "Sampling points", synthetic: bool = False) -> Figure:
    """Map of sampling points coloured by category."""
    crs = boundary.estimate_utm_crs()
    fig, ax = plt.subplots(figsize=(8, 8))
    boundary.to_crs(crs).boundary.plot(ax=ax, color="black", linewidth=1)
    projected = points.to_crs(crs)
    for category, colour in CATEGORY_COLOURS.items():
        sub = projected[projected["category"] == category]
        if len(sub):
            sub.plot(ax=ax, color=colour, markersize=14, label=f"{category} ({len(sub)})")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title(title + (f"\n{SYNTHETIC_LABEL}" if synthetic else ""))
    ax.set_axis_off()
    return fig


def plot_patch_grid(dataset: Dataset, per_class: int = 6, seed: int = 0) -> Figure:
    """Preview grid: true colour with OSM channels outlined, positives on the top rows, negatives below."""
    rng = np.random.default_rng(seed)
    index = dataset.index
    picks = []
    for label in (1, 0):
        rows = np.flatnonzero(index["label"].to_numpy() == label)
        picks.append(rng.choice(rows, size=min(per_class, len(rows)), replace=False) if len(rows) else [])
    ncols = max(per_class, 1)
    fig, axes = plt.subplots(2, ncols, figsize=(2.3 * ncols, 6.2), squeeze=False)
    osm = dataset.osm_channels
    cmap_cache = {key: ListedColormap(["none", OSM_COLOURS[key]]) for key in osm}
    shown = np.concatenate([np.asarray(p, dtype=int) for p in picks])
    rgb = rgb_bands(np.asarray(dataset.patches[np.sort(shown)]), dataset.channels) if len(shown) else np.zeros((0, 1, 1, 3))
    limits = np.percentile(rgb[rgb.sum(-1) > 0], [2, 98], axis=0) if rgb.size else None  # one stretch for all patches
    for r, rows in enumerate(picks):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_axis_off()
            if c >= len(rows):
                continue
            i = int(rows[c])
            patch = np.asarray(dataset.patches[i])
            ax.imshow(stretch(rgb_bands(patch, dataset.channels), limits=limits))
            for key in osm:
                mask = patch[..., dataset.channels.index(key)]
                if mask.any():
                    ax.imshow(np.ma.masked_equal(mask, 0), cmap=cmap_cache[key], alpha=0.55, interpolation="nearest", vmin=0, vmax=1)
            kind = index["kind"].iloc[i] if "kind" in index and isinstance(index["kind"].iloc[i], str) else index.get("category", index["label"]).iloc[i]
            ax.set_title(f"{index['patch_id'].iloc[i]}\n{kind}", fontsize=7)
    handles = [Patch(color=OSM_COLOURS[k], label=k) for k in osm]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    size = dataset.meta["patch_size"]
    synthetic = f" — {SYNTHETIC_LABEL}" if dataset.meta.get("synthetic") else ""
    fig.suptitle(f"{size} px patches: mines (top), non-mines (bottom); OSM channels in colour{synthetic}", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.94), h_pad=2.0)
    return fig


def _suptitle(fig: Figure, title: str) -> None:
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()


def plot_learning_curves(history: pd.DataFrame, title: str = "") -> Figure:
    """Training and validation loss and PR-AUC per epoch (one line per ensemble member)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for member, h in history.groupby("member") if "member" in history else [(0, history)]:
        suffix = f" (member {member})" if history.get("member", pd.Series([0])).nunique() > 1 else ""
        for ax, metric in zip(axes, ("loss", "pr_auc")):
            ax.plot(h["epoch"], h[metric], color="#1f77b4", alpha=0.8, label=f"train{suffix}")
            ax.plot(h["epoch"], h[f"val_{metric}"], color="#d62728", alpha=0.8, label=f"validation{suffix}")
    for ax, label in zip(axes, ("binary cross-entropy", "PR-AUC")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    axes[0].legend(unique.values(), unique.keys(), fontsize=8)
    _suptitle(fig, f"Learning curves — {title}")
    return fig


def plot_test_curves(y: np.ndarray, p: np.ndarray, threshold: float, title: str = "") -> Figure:
    """Precision–recall and ROC curves of the test split, with the validation-chosen operating point."""
    from asgm.evaluate import binary_metrics, curves

    c, m = curves(y, p), binary_metrics(y, p, threshold)
    fig, (ax_pr, ax_roc) = plt.subplots(1, 2, figsize=(10, 4.2))
    ax_pr.plot(c["recall"], c["precision"], color="#1f77b4", label=f"AP {m['average_precision']:.3f}")
    ax_pr.axhline(np.mean(y), color="grey", linestyle=":", label=f"no skill ({np.mean(y):.2f})")
    ax_pr.plot(m["sensitivity"], m["precision"], "o", color="#d62728", label=f"threshold {threshold:.2f} (from validation)")
    ax_pr.set(xlabel="recall (sensitivity)", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title="Precision–recall (test)")
    ax_roc.plot(c["fpr"], c["tpr"], color="#1f77b4", label=f"ROC-AUC {m['roc_auc']:.3f}")
    ax_roc.plot([0, 1], [0, 1], color="grey", linestyle=":", label="no skill")
    ax_roc.plot(1 - m["specificity"], m["sensitivity"], "o", color="#d62728", label=f"threshold {threshold:.2f}")
    ax_roc.set(xlabel="false-positive rate (1 − specificity)", ylabel="sensitivity", xlim=(-0.02, 1), ylim=(0, 1.02), title="ROC (test)")
    for ax in (ax_pr, ax_roc):
        ax.legend(fontsize=8, loc="lower left" if ax is ax_pr else "lower right")
        ax.grid(alpha=0.3)
    _suptitle(fig, f"{title} — {len(y)} test patches ({int(np.sum(y))} mines)")
    return fig


def plot_reliability(y: np.ndarray, raw: np.ndarray, calibrated: np.ndarray, method: str, title: str = "", bins: int = 10) -> Figure:
    """Reliability diagram of the test split: the share of mines among patches in each probability
    bin against the bin's mean probability, before and after the calibration fitted on validation
    (on the diagonal: a probability means what it says), with each bin's patch count beneath."""
    from asgm.calibrate import expected_calibration_error

    y = np.asarray(y, float)
    fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(5.2, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    edges = np.linspace(0, 1, bins + 1)
    for p, name, colour, offset in ((raw, "network output", "#ff7f0e", -0.012), (calibrated, f"{method}-calibrated", "#1f77b4", 0.012)):
        p = np.asarray(p, float)
        which = np.minimum((p * bins).astype(int), bins - 1)
        used = [b for b in range(bins) if (which == b).any()]
        ax.plot([p[which == b].mean() for b in used], [y[which == b].mean() for b in used], "o-", color=colour,
                label=f"{name} (ECE {expected_calibration_error(y, p, bins):.3f})")
        ax_n.bar((edges[:-1] + edges[1:]) / 2 + offset, np.bincount(which, minlength=bins), width=0.024, color=colour)
    ax.set(ylabel="share of mines", xlim=(0, 1), ylim=(-0.02, 1.02), title="Reliability (test split)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    ax_n.set(xlabel="predicted probability of mine", ylabel="patches")
    _suptitle(fig, title)
    return fig


def plot_cross_validation(predictions: pd.DataFrame, per_fold: pd.DataFrame, title: str = "") -> Figure:
    """Where each held-out fold or region lies (points by fold, lon/lat) and how the model did on it:
    ROC-AUC and sensitivity at the strict operating point per fold, with 95 % block-bootstrap intervals."""
    folds = sorted(predictions["fold"].unique())
    colours = plt.get_cmap("tab10")
    fig, (ax_map, ax_bar) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.3, 1]})
    for i, fold in enumerate(folds):
        part = predictions[predictions["fold"] == fold]
        ax_map.scatter(part["lon"], part["lat"], s=8, color=colours(i % 10), label=f"{fold}")
        ax_map.annotate(str(fold), (part["lon"].mean(), part["lat"].mean()), fontsize=12, weight="bold", ha="center",
                        bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8})
    ax_map.set(xlabel="longitude", ylabel="latitude", title="held-out groups")
    ax_map.set_aspect("equal", adjustable="datalim")
    ax_map.grid(alpha=0.3)
    x = np.arange(len(per_fold))
    for offset, metric, label in ((-0.18, "roc_auc", "ROC-AUC"), (0.18, "sensitivity", "sensitivity @ strict threshold")):
        values = per_fold[metric].to_numpy(float)
        errors = np.vstack([values - per_fold[f"{metric}_low"].to_numpy(float), per_fold[f"{metric}_high"].to_numpy(float) - values])
        ax_bar.bar(x + offset, values, width=0.34, yerr=errors, capsize=3, label=label)
    ax_bar.set_xticks(x, [str(f) for f in per_fold.index])
    ax_bar.set(xlabel="held-out fold / region", ylim=(0, 1.05), title="accuracy on each held-out group (95 % CI)")
    ax_bar.legend(fontsize=8, loc="lower left")
    ax_bar.grid(alpha=0.3, axis="y")
    _suptitle(fig, title)
    return fig


def plot_confusion_matrix(table: pd.DataFrame, title: str = "") -> Figure:
    """Test confusion matrix from a bootstrap table (counts with 95 % block-bootstrap intervals)."""
    cells = np.array([["tn", "fp"], ["fn", "tp"]])
    counts = np.vectorize(lambda k: table.loc[k, "value"])(cells)
    fig, ax = plt.subplots(figsize=(4.6, 4))
    ax.imshow(counts, cmap="Blues")
    for (r, c), key in np.ndenumerate(cells):
        row = table.loc[key]
        colour = "white" if counts[r, c] > counts.max() / 2 else "black"
        ax.text(c, r, f"{key.upper()}\n{row['value']:.0f}\n[{row['ci_low']:.0f}, {row['ci_high']:.0f}]", ha="center", va="center", color=colour)
    ax.set_xticks([0, 1], ["non-mine", "mine"])
    ax.set_yticks([0, 1], ["non-mine", "mine"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    _suptitle(fig, f"Confusion matrix (test) — {title}\n95 % block-bootstrap intervals")
    return fig


def plot_threshold_choice(y: np.ndarray, p: np.ndarray, thresholds: dict, title: str = "") -> Figure:
    """F1, precision and recall against the threshold on the patches it was chosen on (the validation
    split, or out-of-fold predictions: :func:`asgm.train.threshold_scores`), the F1 expected from the
    probabilities themselves (what the plug-in rule maximises, see :func:`asgm.evaluate.expected_f_beta_threshold`),
    and the chosen thresholds, the model's own drawn solid."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    precision, recall, t = precision_recall_curve(y, p)
    precision, recall = precision[:-1], recall[:-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.plot(t, precision, label="precision", color="#2ca02c")
    ax.plot(t, recall, label="recall (sensitivity)", color="#ff7f0e")
    fpr, _, roc_t = roc_curve(y, p)
    ax.plot(roc_t[1:], 1 - fpr[1:], label="specificity", color="#8c564b")
    ax.plot(t, f1, label="F1", color="#1f77b4", linewidth=2)
    expected = threshold_rule(thresholds)[0] == "expected"
    if expected:
        ax.plot(*expected_f_beta_curve(p), label="expected F1 (from the probabilities)", color="#1f77b4", linestyle=":", linewidth=2)
    kind = "expected " if expected else ""
    styles = {"balanced": ("#000000", f"max {kind}sensitivity + specificity"), "f1": ("#1f77b4", f"max {kind}F1"),
              "f0_5": ("#9467bd", f"max {kind}F0.5"), "specificity": ("#d62728", "specificity ≥ {:.2f}")}
    model_point = thresholds.get("operating_point", "f1")
    for key, (colour, label) in styles.items():
        if key in thresholds:
            value = thresholds[key]["threshold"]
            own = " (the model's)" if key == model_point else ""
            ax.axvline(value, color=colour, linestyle="-" if own else "--", linewidth=2 if own else 1,
                       label=f"{label.format(thresholds[key].get('min_specificity', 0))}{own}: {value:.2f}")
    on_validation = threshold_rule(thresholds)[1] == "validation"
    ax.set(xlabel="threshold (probability of mine)", ylabel="score on validation" if on_validation else "score on out-of-fold predictions",
           xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(alpha=0.3)
    where = "the validation split" if on_validation else "the out-of-fold predictions of the training patches"
    _suptitle(fig, f"Threshold choice on {where} — {title}")
    return fig


def plot_metric_intervals(tables: dict[str, pd.DataFrame], metrics: tuple[str, ...] = ("roc_auc", "average_precision", "sensitivity", "specificity", "f1"), title: str = "") -> Figure:
    """Each experiment's test metrics as points with 95 % block-bootstrap intervals, one panel per metric."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(3 * len(metrics), 0.5 * len(tables) + 1.6), sharey=True)
    names = list(tables)
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        for i, name in enumerate(names):
            row = tables[name].loc[metric]
            ax.errorbar(row["value"], i, xerr=[[row["value"] - row["ci_low"]], [row["ci_high"] - row["value"]]], fmt="o", color="#1f77b4", capsize=3)
        ax.set_title(metric.replace("_", " "), fontsize=9)
        ax.set_xlim(-0.02, 1.02)
        ax.grid(alpha=0.3, axis="x")
    np.atleast_1d(axes)[0].set_yticks(range(len(names)), names)
    np.atleast_1d(axes)[0].invert_yaxis()
    _suptitle(fig, f"Test metrics with 95 % block-bootstrap intervals — {title}")
    return fig


SPLIT_COLOURS = {"train": "#7f7f7f", "validation": "#1f77b4", "test": "#d62728"}


def plot_split(index: pd.DataFrame, split: pd.DataFrame, title: str = "Spatially blocked split", synthetic: bool = False) -> Figure:
    """Points coloured by split (train / validation / test); mines as triangles, non-mines as dots."""
    fig, ax = plt.subplots(figsize=(7.5, 7))
    for part, colour in SPLIT_COLOURS.items():
        for label, marker in ((1, "^"), (0, "o")):
            sel = (split["split"] == part) & (index["label"] == label)
            if sel.any():
                ax.scatter(index.loc[sel, "lon"], index.loc[sel, "lat"], s=22, marker=marker, color=colour, alpha=0.8,
                           label=f"{part}, {'mine' if label else 'non-mine'} ({int(sel.sum())})")
    ax.set_aspect(1 / np.cos(np.radians(index["lat"].mean())))
    ax.set(xlabel="longitude", ylabel="latitude")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(title + (f"\n{SYNTHETIC_LABEL}" if synthetic else ""))
    return fig


GROUP_COLOURS = {"osm": "#1f77b4", "single_osm": "#2ca02c", "leave_one_out": "#ff7f0e", "patch_size": "#9467bd",
                 "negatives": "#8c564b", "class_weights": "#e377c2"}


def plot_grid_results(table: pd.DataFrame, metrics: tuple[str, ...] = ("roc_auc", "average_precision", "sensitivity", "specificity"),
                      title: str = "") -> Figure:
    """Each experiment's mean test metric over seeds with its 95 % block-bootstrap interval, coloured by group."""
    done = table[table["metric"] != ""]
    names = list(dict.fromkeys(done["experiment"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.1 * len(metrics), 0.36 * len(names) + 1.8), sharey=True, squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        rows = done[done["metric"] == metric].set_index("experiment")
        for i, name in enumerate(names):
            r = rows.loc[name]
            ax.errorbar(r["mean"], i, xerr=[[r["mean"] - r["ci_low"]], [r["ci_high"] - r["mean"]]], fmt="o", capsize=3,
                        color=GROUP_COLOURS.get(r["group"], "#333333"))
        ax.set_title(metric.replace("_", " "), fontsize=9)
        ax.set_xlim(-0.02, 1.02)
        ax.grid(alpha=0.3, axis="x")
    axes[0, 0].set_yticks(range(len(names)), names, fontsize=8)
    axes[0, 0].invert_yaxis()
    groups = list(dict.fromkeys(done["group"]))
    fig.legend(handles=[Line2D([], [], marker="o", linestyle="", color=GROUP_COLOURS.get(g, "#333333"), label=g) for g in groups],
               loc="lower center", ncol=len(groups), fontsize=8, frameon=False)
    fig.suptitle(f"Experiment grid: mean over seeds with 95 % block-bootstrap intervals — {title}", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    return fig


def plot_paired_differences(comparisons: pd.DataFrame, metric: str = "roc_auc", title: str = "") -> Figure:
    """Forest plot of paired differences (experiment − reference) of one metric; filled markers where
    the 95 % interval excludes 0."""
    rows = comparisons[comparisons["metric"] == metric].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7.5, 0.38 * len(rows) + 1.6))
    for i, r in rows.iterrows():
        colour = "#d62728" if r["supported"] else "#7f7f7f"
        ax.errorbar(r["mean"], i, xerr=[[r["mean"] - r["ci_low"]], [r["ci_high"] - r["mean"]]], fmt="o", capsize=3, color=colour,
                    markerfacecolor=colour if r["supported"] else "white")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [f"{r.experiment} − {r.reference}" for r in rows.itertuples()], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"difference in {metric.replace('_', ' ')} (paired by seed and test patch)")
    ax.grid(alpha=0.3, axis="x")
    ax.set_title(f"Paired differences with 95 % intervals (red: interval excludes 0)\n{title}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_overlaid_curves(runs: dict[str, tuple[np.ndarray, np.ndarray]], title: str = "") -> Figure:
    """Test precision–recall and ROC curves of several experiments on one pair of axes."""
    from asgm.evaluate import curves

    fig, (ax_pr, ax_roc) = plt.subplots(1, 2, figsize=(12, 4.8))
    colours = plt.cm.tab20(np.linspace(0, 1, max(len(runs), 2)))
    for colour, (name, (y, p)) in zip(colours, runs.items()):
        c = curves(y, p)
        ax_pr.plot(c["recall"], c["precision"], color=colour, linewidth=1.2, label=name)
        ax_roc.plot(c["fpr"], c["tpr"], color=colour, linewidth=1.2, label=name)
    ax_roc.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax_pr.set(xlabel="recall (sensitivity)", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title="Precision–recall (test)")
    ax_roc.set(xlabel="false-positive rate", ylabel="sensitivity", xlim=(-0.02, 1), ylim=(0, 1.02), title="ROC (test)")
    for ax in (ax_pr, ax_roc):
        ax.grid(alpha=0.3)
    ax_roc.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    _suptitle(fig, title)
    return fig


def _show_patch(ax, patch: np.ndarray, channels: list[str], limits: np.ndarray | None, osm: bool = True) -> None:
    ax.imshow(stretch(rgb_bands(patch, channels), limits=limits))
    for key in [c for c in channels if c in OSM_CHANNELS] if osm else []:
        mask = patch[..., channels.index(key)]
        if mask.any():
            ax.imshow(np.ma.masked_equal(mask, 0), cmap=ListedColormap(["none", OSM_COLOURS[key]]), alpha=0.5, interpolation="nearest", vmin=0, vmax=1)
    ax.set_axis_off()


def plot_gallery(patches: np.ndarray, channels: list[str], captions: list[str], title: str, ncols: int = 6) -> Figure:
    """Patches in true colour with their OSM channels in colour, each with a caption (probability, place, …)."""
    n = max(len(patches), 1)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.3 * ncols, 3.0 * nrows + 0.6), squeeze=False)
    rgb = rgb_bands(np.asarray(patches), channels)
    valid = rgb.sum(-1) > 0
    limits = np.percentile(rgb[valid], [2, 98], axis=0) if valid.any() else None
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, patch, caption in zip(axes.ravel(), patches, captions):
        _show_patch(ax, np.asarray(patch), channels, limits)
        ax.set_title(caption, fontsize=7)
    if not len(patches):
        axes[0, 0].text(0.5, 0.5, "none", ha="center", va="center", transform=axes[0, 0].transAxes)
    osm = [c for c in channels if c in OSM_CHANNELS]
    if osm:
        fig.legend(handles=[Patch(color=OSM_COLOURS[k], label=k) for k in osm], loc="lower center", ncol=len(osm), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05 if osm else 0, 1, 0.95))
    return fig


def plot_label_audit(dataset: Dataset, audit: pd.DataFrame, shown: dict[str, list[int]], outlines: dict[int, list]) -> Figure:
    """The label audit's gallery: one row per kind (``shown``: rows of ``audit``), each patch in true
    colour with the reference's mining by its image date outlined in red, and its figures."""
    channels = dataset.channels
    ncols = max([len(r) for r in shown.values()] + [1])
    heights = [1.0 if picked else 0.22 for picked in shown.values()]  # a kind with no patch gets one line
    fig = plt.figure(figsize=(2.2 * ncols, 2.9 * sum(heights) + 0.4), layout="constrained")
    rows_of_figure = np.atleast_1d(fig.subfigures(len(shown), 1, height_ratios=heights))
    rows = sorted({r for kind in shown.values() for r in kind})
    rgb = rgb_bands(np.asarray(dataset.patches[rows]), channels) if rows else np.zeros((0, 1, 1, 3))
    valid = rgb.sum(-1) > 0
    limits = np.percentile(rgb[valid], [2, 98], axis=0) if valid.any() else None
    titles = {"non_mine_in_reference": "labelled NO MINE, on reference mining", "mine_not_in_reference": "labelled MINE, no reference mining near",
              "mine_mapped_after_image": "labelled MINE, reference mining only after the image"}
    for subfigure, (kind, picked) in zip(rows_of_figure, shown.items()):
        subfigure.suptitle(f"{titles.get(kind, kind)} ({len(picked)} shown)" if picked else f"{titles.get(kind, kind)}: none",
                           x=0.005, ha="left", fontsize=9, fontweight="bold")
        if not picked:
            continue
        axes_row = np.atleast_1d(subfigure.subplots(1, ncols))
        for ax in axes_row:
            ax.set_axis_off()
        for ax, row in zip(axes_row, picked):
            a = audit.iloc[row]
            _show_patch(ax, np.asarray(dataset.patches[row]), channels, limits, osm=False)
            for polygon in outlines.get(row, []):
                for ring in (polygon.exterior, *polygon.interiors):
                    x, y = np.asarray(ring.coords).T
                    ax.plot(x - 0.5, y - 0.5, color="red", linewidth=1.0)
            size = dataset.patches.shape[1]
            ax.set_xlim(-0.5, size - 0.5)
            ax.set_ylim(size - 0.5, -0.5)
            year = "" if pd.isna(a["first_year"]) else f", first {int(a['first_year'])}"
            far = "none ≤ 5 km" if pd.isna(a["distance_m"]) else f"{a['distance_m']:.0f} m"
            ax.text(0.5, -0.02, f"{a['patch_id']}\ncover {a['cover']:.0%}{year}\nnearest {far}", transform=ax.transAxes, ha="center", va="top", fontsize=6.5)
    fig.suptitle("Labels against the reference map (red: reference mining mapped by the image's date)", fontsize=10)
    return fig


def plot_explanations(patches: np.ndarray, channels: list[str], cam: np.ndarray, occlusion: np.ndarray, captions: list[str], title: str) -> Figure:
    """Per patch (one row each): true colour with OSM, Grad-CAM over the image, and occlusion
    sensitivity (red: occluding the pixel with forest lowers the mine probability). Constrained
    layout keeps every caption, title and the colourbar clear of the images."""
    n = len(patches)
    fig, axes = plt.subplots(max(n, 1), 3, figsize=(8.2, 2.6 * max(n, 1) + 0.8), squeeze=False, layout="constrained")
    rgb = rgb_bands(np.asarray(patches), channels)
    valid = rgb.sum(-1) > 0
    limits = np.percentile(rgb[valid], [2, 98], axis=0) if valid.any() else None
    bound = max(float(np.abs(occlusion).max()), 1e-6) if n else 1.0
    for ax in axes.ravel():
        ax.set_axis_off()
    image = None
    for i in range(n):
        _show_patch(axes[i, 0], np.asarray(patches[i]), channels, limits)
        axes[i, 0].set_title(captions[i], fontsize=7, loc="left")
        _show_patch(axes[i, 1], np.asarray(patches[i]), channels, limits, osm=False)
        axes[i, 1].imshow(cam[i], cmap="inferno", alpha=0.55, vmin=0, vmax=1)
        axes[i, 1].set_title("Grad-CAM: where the last\nconvolutions saw mine", fontsize=7)
        image = axes[i, 2].imshow(occlusion[i], cmap="RdBu_r", vmin=-bound, vmax=bound)
        axes[i, 2].set_title("occlusion with forest:\ndrop in P(mine)", fontsize=7)
    if image is not None:
        fig.colorbar(image, ax=axes[:, 2], location="right", shrink=min(0.9, 0.35 + 0.15 * n), label="drop in P(mine) (red: supports mine)")
    fig.suptitle(title, fontsize=9)
    return fig


def plot_channel_importance(table: pd.DataFrame, title: str = "") -> Figure:
    """Drop in test ROC-AUC when each channel group is shuffled across patches, with 95 % block-bootstrap intervals."""
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(table) + 1.5))
    for i, (name, r) in enumerate(table.iterrows()):
        colour = "#1f77b4" if name in ("Sentinel-2 bands",) or name not in OSM_COLOURS else OSM_COLOURS[name]
        ax.barh(i, r["roc_auc_drop"], color=colour, alpha=0.85)
        ax.errorbar(r["roc_auc_drop"], i, xerr=[[r["roc_auc_drop"] - r["ci_low"]], [r["ci_high"] - r["roc_auc_drop"]]], fmt="none", color="black", capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(table)), table.index, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("drop in test ROC-AUC when the group is shuffled")
    ax.grid(alpha=0.3, axis="x")
    ax.set_title(f"Channel-group importance (permutation) — {title}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_tag_audit(audit: pd.DataFrame, title: str = "", label_top: int = 12) -> Figure:
    """Share of mines vs share of non-mines whose patch holds each OSM tag; flagged tags in red and
    named, with the ``label_top`` commonest others."""
    fig, ax = plt.subplots(figsize=(6.8, 6))
    flagged = audit["flag"] != ""
    ax.scatter(audit.loc[~flagged, "share_of_non_mines"], audit.loc[~flagged, "share_of_mines"], s=18 + audit.loc[~flagged, "patches"], color="#7f7f7f", alpha=0.6, label="tag")
    ax.scatter(audit.loc[flagged, "share_of_non_mines"], audit.loc[flagged, "share_of_mines"], s=18 + audit.loc[flagged, "patches"], color="#d62728", alpha=0.8, label="flagged tag")
    visible = audit[(audit[["share_of_mines", "share_of_non_mines"]].max(axis=1) >= 0.02)]
    labelled = pd.concat([audit[flagged], visible.sort_values("patches", ascending=False).head(label_top)])
    for tag, r in labelled[~labelled.index.duplicated()].iterrows():
        ax.annotate(tag, (r["share_of_non_mines"], r["share_of_mines"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    top = max(float(audit[["share_of_mines", "share_of_non_mines"]].max().max()) if len(audit) else 0, 0.05) * 1.1
    ax.plot([0, top], [0, top], color="grey", linestyle=":", label="as common on both")
    ax.set(xlim=(-0.01, top), ylim=(-0.01, top), xlabel="share of non-mine patches holding the tag", ylabel="share of mine patches holding the tag")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    ax.set_title(f"OSM tags on mines vs non-mines — {title}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_category_breakdown(table: pd.DataFrame, title: str = "") -> Figure:
    """Share classified correctly per category (sensitivity for mines, specificity for the rest) with 95 % intervals."""
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(table) + 1.5))
    for i, (name, r) in enumerate(table.iterrows()):
        colour = CATEGORY_COLOURS.get(name, "#d62728" if int(r["label"]) == 1 else "#1f77b4")
        ax.errorbar(r["correct"], i, xerr=[[r["correct"] - r["ci_low"]], [r["ci_high"] - r["correct"]]], fmt="o", capsize=3, color=colour)
    ax.set_yticks(range(len(table)), [f"{name} (n={int(r['patches'])}, {int(r['blocks'])} blocks)" for name, r in table.iterrows()], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("share classified correctly (test)")
    ax.grid(alpha=0.3, axis="x")
    ax.set_title(f"Per category, with 95 % block-bootstrap intervals — {title}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_scan(raster: str | Path, probability: str | Path, found: gpd.GeoDataFrame, truth: gpd.GeoDataFrame | None = None,
              threshold: float | None = None, title: str = "Region scan", synthetic: bool = False, max_pixels: int = 1500) -> Figure:
    """Two panels: the probability raster, and true colour with detections (and ground truth)."""
    rgb, (left, bottom, right, top), _ = rgb_preview(raster, max_pixels)
    with rasterio.open(probability) as src:
        p = src.read(1)
        p_extent = (src.bounds.left, src.bounds.right, src.bounds.bottom, src.bounds.top)
        crs = src.crs
    fig, axes = plt.subplots(1, 2, figsize=(16, 8), sharex=True, sharey=True)
    axes[0].imshow(rgb, extent=(left, right, bottom, top), alpha=0.5)
    # A power scale, so the low probabilities around a low validation threshold stay visible.
    shown = axes[0].imshow(np.ma.masked_invalid(p), extent=p_extent, cmap="magma", norm=PowerNorm(0.4, vmin=0, vmax=1), alpha=0.85)
    fig.colorbar(shown, ax=axes[0], shrink=0.7, label="probability of mine (per window)")
    axes[0].set_title("probability raster" + (f" (threshold {threshold:.2f})" if threshold is not None else ""))
    axes[1].imshow(rgb, extent=(left, right, bottom, top))
    handles = []
    if truth is not None and len(truth):
        truth.to_crs(crs).plot(ax=axes[1], facecolor="none", edgecolor="#00e5ff", linewidth=1.2)
        handles.append(Patch(facecolor="none", edgecolor="#00e5ff", label=f"ground truth ({len(truth)})"))
    if len(found):
        found.to_crs(crs).plot(ax=axes[1], facecolor="none", edgecolor="#ff2d2d", linewidth=1.6)
    handles.append(Patch(facecolor="none", edgecolor="#ff2d2d", label=f"detections ({len(found)})"))
    axes[1].legend(handles=handles, loc="lower right", framealpha=0.85)
    axes[1].set_title("true colour with detections")
    for ax in axes:
        ax.set_xlabel(f"easting (m, {crs.to_string()})")
    axes[0].set_ylabel("northing (m)")
    fig.suptitle(title + (f"\n{SYNTHETIC_LABEL}" if synthetic else ""))
    return fig


def true_colour_crop(raster: str | Path, bounds: tuple[float, float, float, float]) -> np.ndarray:
    """B4, B3, B2 of a raster over ``bounds`` (left, bottom, right, top in its CRS) as (H, W, 3)
    float32, zero where the bounds reach past the raster."""
    with rasterio.open(raster) as src:
        names = list(src.descriptions)
        window = rasterio.windows.from_bounds(*bounds, transform=src.transform).round_offsets().round_lengths()
        crop = src.read([names.index(b) + 1 for b in ("B4", "B3", "B2")], window=window, boundless=True, fill_value=0)
    return crop.transpose(1, 2, 0).astype(np.float32)


def save_before_after(before_raster: str | Path, after_raster: str | Path, geometry, path: str | Path, before: str, after: str,
                      margin_m: float = 300.0) -> Path:
    """A small PNG: true colour of ``geometry``'s surroundings in two periods, side by side, the
    polygon outlined, both stretched alike (so a change of colour is a change on the ground)."""
    x0, y0, x1, y1 = geometry.bounds
    window_bounds = (x0 - margin_m, y0 - margin_m, x1 + margin_m, y1 + margin_m)
    crops = [true_colour_crop(raster, window_bounds) for raster in (before_raster, after_raster)]
    both = np.concatenate([c.reshape(-1, 3) for c in crops])
    limits = np.percentile(both[both.sum(-1) > 0], [2, 98], axis=0) if (both.sum(-1) > 0).any() else None
    fig, axes = plt.subplots(1, 2, figsize=(4.4, 2.4))
    extent = (window_bounds[0], window_bounds[2], window_bounds[1], window_bounds[3])
    for ax, crop, label in zip(axes, crops, (before, after)):
        ax.imshow(stretch(crop, limits=limits) if limits is not None else crop, extent=extent)
        gpd.GeoSeries([geometry]).boundary.plot(ax=ax, color="#ff2d2d", linewidth=1.0)
        ax.set_title(label, fontsize=9)
        ax.set_axis_off()
    fig.tight_layout(pad=0.3)
    save_figure(fig, path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_monitoring(rasters: dict[str, Path], scars: dict[str, gpd.GeoDataFrame], focus, truth: dict[str, gpd.GeoDataFrame] | None = None,
                    synthetic: bool = False, focus_m: float = 1500.0, max_pixels: int = 700) -> Figure:
    """Each period in true colour with its mapped scar (red; the true mine ground in cyan when
    given): the whole area on top, a ``focus_m`` square around ``focus`` (a point) below."""
    periods = list(rasters)
    fig, axes = plt.subplots(2, len(periods), figsize=(3.3 * len(periods), 7.0), squeeze=False)
    half = focus_m / 2
    for col, name in enumerate(periods):
        rgb, (left, bottom, right, top), crs = rgb_preview(rasters[name], max_pixels)
        for row, ax in enumerate(axes[:, col]):
            if row == 0:
                ax.imshow(rgb, extent=(left, right, bottom, top))
                ax.set_xlim(left, right)
                ax.set_ylim(bottom, top)
                ax.add_patch(plt.Rectangle((focus.x - half, focus.y - half), focus_m, focus_m, fill=False, color="white", linewidth=1))
            else:
                crop = true_colour_crop(rasters[name], (focus.x - half, focus.y - half, focus.x + half, focus.y + half))
                ax.imshow(stretch(crop, valid=crop.sum(-1) > 0), extent=(focus.x - half, focus.x + half, focus.y - half, focus.y + half))
                ax.set_xlim(focus.x - half, focus.x + half)
                ax.set_ylim(focus.y - half, focus.y + half)
            if truth is not None and len(truth[name]):
                truth[name].to_crs(crs).boundary.plot(ax=ax, color="#00e5ff", linewidth=0.6 if row == 0 else 1.2)
            if len(scars[name]):
                scars[name].to_crs(crs).plot(ax=ax, facecolor="none" if row else "#ff2d2d", edgecolor="#ff2d2d", linewidth=0.6 if row == 0 else 1.4)
            if row == 0:  # the scars and truth may reach past the raster
                ax.set_xlim(left, right)
                ax.set_ylim(bottom, top)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel("")
            ax.set_ylabel("")
        axes[0, col].set_title(f"{name}: {scars[name]['area_ha'].sum():.0f} ha mapped" if "area_ha" in scars[name] else name)
    handles = [Patch(facecolor="none", edgecolor="#ff2d2d", label="mapped scar")]
    if truth is not None:
        handles.append(Patch(facecolor="none", edgecolor="#00e5ff", label="true mine sites"))
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False)
    fig.suptitle("Mining scar per period (top: whole area; bottom: the white square)" + (f"\n{SYNTHETIC_LABEL}" if synthetic else ""))
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def plot_zone_hectares(table: pd.DataFrame, synthetic: bool = False) -> Figure:
    """Hectares of mining scar per zone and period (bars), with the cumulative footprint (line)."""
    zones = list(dict.fromkeys(table["zone"]))
    periods = list(dict.fromkeys(table["period"]))
    fig, axes = plt.subplots(1, len(zones), figsize=(3.6 * len(zones), 3.4), squeeze=False, sharey=True)
    for ax, zone in zip(axes[0], zones):
        rows = table[table["zone"] == zone].set_index("period").loc[periods]
        ax.bar(periods, rows["mining_ha"], color="#d62728", label="mapped in the period")
        ax.plot(periods, rows["cumulative_ha"], color="black", marker="o", label="cumulative since the first period")
        ax.set_title(zone, fontsize=9)
        ax.set_xlabel("period")
    axes[0, 0].set_ylabel("mining scar (ha)")
    axes[0, 0].legend(fontsize=8, loc="upper left")
    fig.suptitle("Mining per zone" + (f" — {SYNTHETIC_LABEL}" if synthetic else ""))
    fig.tight_layout()
    return fig
