"""The mining scar, pixel by pixel, inside the region scan's detections.

A detection marks 48 px windows (23 ha each), far more than the mine inside them, so its area says
little. Inside detections the scar is delineated at 10 m in three steps:

1. **Candidates**: open water (NDWI > 0) and bare ground (NDVI below ``ndvi_max``), cloud-free.
   Everything vegetated is out.
2. **Mine ground among them**, by a per-pixel classifier (:class:`ScarClassifier`, gradient boosting
   on the six bands B2 B3 B4 B8 B11 B12, NDVI, NDWI and their neighbourhoods: local means, texture,
   the share of water and of bare ground around the pixel). There are no pixel labels in the
   training data, only patch labels, so the patch labels are used as weak pixel labels: the
   candidate pixels near the centre of a mine patch are mine ground, every candidate pixel of a
   non-mine patch is not (the curated negatives hold exactly the look-alikes: sandbars, ploughed
   fields, clearings, rivers, roads, fish ponds). It trains on the scan model's training and
   validation patches in seconds; its probability threshold is the maximum-F1 one on out-of-fold
   predictions (folds of whole spatial blocks), never on the test patches or the scene being
   mapped. Patches mostly outside the detections (a river, a road running on), long and narrow
   ones (tracks, streams) and those under the minimum mapping unit (0.1 ha) are dropped, and so
   is all water of a long, narrow water body (a river or a stream, judged over the raster read: the
   detections and kilometres of context around them, see :func:`asgm.monitor.detection_windows`):
   turbid river water looks like a mine pond pixel by pixel. The price: a pond that touches a
   river is lost with it, and dredging in the channel is not mapped.
3. **Seed and grow**: the scar patches kept grow by up to :data:`GROW_PX` pixels into candidate
   pixels that reach :data:`GROW_FRACTION` of the threshold (a mine's edges and its hazy parts).

Without a classifier, :func:`scar_mask` falls back to rules: candidate patches that lie mostly
inside detections, are not long and narrow, and (for bare ground) lie within 50 m of a pond
(alluvial gold mining works with water).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage

from asgm.atomic import atomic_path
from asgm.errors import InputFileError

#: Bands the scar needs: the six that real 6-band datasets and every imagery source have.
SCAR_BANDS = ("B2", "B3", "B4", "B8", "B11", "B12")
EIGHT = np.ones((3, 3), dtype=bool)
#: Bumped when the classifier's features or training change, so cached classifiers are retrained.
CLASSIFIER_VERSION = 3
#: The minimum mapping unit in pixels (0.1 ha at 10 m).
MIN_PIXELS = 10
#: A patch larger than this many discs of its widest point's radius is long and narrow.
MAX_ELONGATION = 5.0
#: The scar grows by up to this many pixels (30 m) into pixels that reach this fraction of the
#: classifier's threshold (see :func:`scar_mask`).
GROW_PX = 3
GROW_FRACTION = 0.5


@dataclass(frozen=True)
class Grid:
    """A raster's pixel grid."""

    transform: rasterio.Affine
    crs: rasterio.crs.CRS
    shape: tuple[int, int]

    @property
    def pixel_ha(self) -> float:
        return abs(self.transform.a * self.transform.e) / 1e4


def scar_band_names(src, raster: Path, raster_bands: tuple[str, ...] | None = None, bands: tuple[str, ...] = SCAR_BANDS) -> list[str]:
    """The band names of an open raster (``raster_bands`` when given, else its band descriptions).

    Raises
    ------
    InputFileError
        One of ``bands`` is not among them.
    """
    names = list(raster_bands) if raster_bands else list(src.descriptions)
    missing = [b for b in bands if b not in names]
    if missing:
        raise InputFileError(raster, f"lacks band(s) {missing} needed to delineate scars; it has {names}",
                             f"give a raster with named bands {' '.join(bands)} (or name them with imagery.raster_bands)")
    return names


def read_reflectance(raster: str | Path, scale: float, raster_bands: tuple[str, ...] | None = None,
                     bands: tuple[str, ...] = SCAR_BANDS, window: rasterio.windows.Window | None = None) -> tuple[dict[str, np.ndarray], Grid]:
    """Named bands of a raster (or of a ``window`` of it) as reflectance (value / ``scale``; no data
    → NaN), and the grid of what was read."""
    raster = Path(raster)
    with rasterio.open(raster) as src:
        names = scar_band_names(src, raster, raster_bands, bands)
        nodata = src.nodata if src.nodata is not None else 0
        out = {}
        for b in bands:
            values = src.read(names.index(b) + 1, window=window).astype(np.float32)
            out[b] = np.where(values == nodata, np.nan, values / scale)
        return out, Grid(src.transform if window is None else src.window_transform(window), src.crs, values.shape)


def candidates(reflectance: dict[str, np.ndarray], ndvi_max: float = 0.25, cloud_blue: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Cloud-free open water (NDWI > 0) and bare ground (NDVI < ``ndvi_max``, not water)."""
    b2, b3, b4, b8 = (reflectance[b] for b in ("B2", "B3", "B4", "B8"))
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (b8 - b4) / (b8 + b4)
        ndwi = (b3 - b8) / (b3 + b8)
    clear = np.isfinite(ndvi) & (b2 < cloud_blue)
    water = clear & (ndwi > 0)
    return water, clear & ~water & (ndvi < ndvi_max)


def open_ground_ha(dataset, ndvi_max: float = 0.25) -> np.ndarray:
    """Per patch of ``dataset``: hectares of open ground (cloud-free water or bare ground,
    :func:`candidates`), the only ground on which mining shows in an image.

    Raises
    ------
    InputFileError
        The dataset lacks one of the bands B2 B3 B4 B8.
    """
    channels = list(dataset.channels)
    missing = [b for b in ("B2", "B3", "B4", "B8") if b not in channels]
    if missing:
        raise InputFileError(dataset.path / "dataset.json", f"has no band(s) {missing}, which open ground is judged on",
                             "build the dataset with the bands B2 B3 B4 B8, or set training.mine_min_open_ha to null")
    scale = float(dataset.meta["scale"])
    pixel_ha = float(dataset.meta.get("resolution_m", 10.0)) ** 2 / 1e4
    out = np.empty(len(dataset.patches))
    for row in range(len(out)):
        patch = np.asarray(dataset.patches[row], dtype=np.float32)
        water, bare = candidates({b: patch[..., channels.index(b)] / scale for b in ("B2", "B3", "B4", "B8")}, ndvi_max)
        out[row] = (water | bare).sum() * pixel_ha
    return out


def pixel_features(reflectance: dict[str, np.ndarray], water: np.ndarray, bare: np.ndarray) -> np.ndarray:
    """(H, W, 19) features of each pixel: the six bands, NDVI, NDWI, their means and B4's over 5 and
    11 px, B4's local spread, and the share of ``water`` and of ``bare`` ground (:func:`candidates`)
    within 11 and 21 px."""
    b = {k: np.nan_to_num(reflectance[k]) for k in SCAR_BANDS}
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = np.nan_to_num((b["B8"] - b["B4"]) / (b["B8"] + b["B4"]))
        ndwi = np.nan_to_num((b["B3"] - b["B8"]) / (b["B3"] + b["B8"]))
    features = [b[k] for k in SCAR_BANDS] + [ndvi, ndwi]
    for size in (5, 11):
        features += [ndimage.uniform_filter(x, size) for x in (ndvi, ndwi, b["B4"])]
    mean = ndimage.uniform_filter(b["B4"], 5)
    features.append(np.sqrt(np.maximum(ndimage.uniform_filter(b["B4"] ** 2, 5) - mean ** 2, 0)))
    for size in (11, 21):
        features += [ndimage.uniform_filter(water.astype(np.float32), size), ndimage.uniform_filter(bare.astype(np.float32), size)]
    return np.stack(features, axis=-1).astype(np.float32)


@dataclass
class ScarClassifier:
    """Probability that a candidate pixel is mine ground, and the threshold chosen out of fold."""

    model: object
    threshold: float
    info: dict

    def probability(self, features: np.ndarray, where: np.ndarray) -> np.ndarray:
        """Probabilities at the pixels of ``where`` (0 elsewhere)."""
        out = np.zeros(where.shape, dtype=np.float32)
        if where.any():
            out[where] = self.model.predict_proba(features[where])[:, 1]
        return out

    def save(self, directory: Path) -> None:
        import joblib

        with atomic_path(directory, marker="scar_classifier.json", what="scar classifier directory") as tmp:
            tmp.mkdir(parents=True)
            joblib.dump(self.model, tmp / "model.joblib")
            (tmp / "scar_classifier.json").write_text(json.dumps({"threshold": self.threshold, **self.info}, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> ScarClassifier:
        import joblib

        info = json.loads((directory / "scar_classifier.json").read_text(encoding="utf-8"))
        return cls(joblib.load(directory / "model.joblib"), float(info.pop("threshold")), info)


def weak_pixel_labels(dataset, rows: np.ndarray, centre_px: float = 8.0, per_patch: int | None = None, ndvi_max: float = 0.25,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features and weak labels of candidate pixels of the patches ``rows``: 1 within ``centre_px``
    of a mine patch's centre (about the size of a typical pit), 0 anywhere in a non-mine patch;
    at most ``per_patch`` pixels each (None: all). Also returns each pixel's position in ``rows``."""
    rng = np.random.default_rng(seed)
    channels = list(dataset.channels)
    scale = float(dataset.meta["scale"])
    size = dataset.patches.shape[1]
    yy, xx = np.mgrid[:size, :size]
    centre = (yy - (size - 1) / 2) ** 2 + (xx - (size - 1) / 2) ** 2 <= centre_px ** 2
    labels = dataset.index["label"].to_numpy()
    xs, ys, positions = [], [], []
    for position, row in enumerate(rows):
        patch = np.asarray(dataset.patches[row], dtype=np.float32)
        reflectance = {b: patch[..., channels.index(b)] / scale for b in SCAR_BANDS}
        water, bare = candidates(reflectance, ndvi_max)
        chosen = (water | bare) & (centre if labels[row] == 1 else True)
        pick = np.flatnonzero(chosen.ravel())
        if per_patch is not None and len(pick) > per_patch:
            pick = rng.choice(pick, per_patch, replace=False)
        xs.append(pixel_features(reflectance, water, bare).reshape(-1, 19)[pick])
        ys.append(np.full(len(pick), labels[row], dtype=np.int8))
        positions.append(np.full(len(pick), position))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(positions)


def train_scar_classifier(dataset, rows: np.ndarray, groups: np.ndarray, ndvi_max: float = 0.25, folds: int = 5, seed: int = 0) -> ScarClassifier:
    """Fit the pixel classifier on the weak labels of the patches ``rows`` (the scan model's training
    and validation patches, never its test patches). Its threshold is the maximum-F1 one on
    out-of-fold predictions: ``folds`` folds of whole spatial blocks (``groups``, one per row), so
    every pixel is scored by a classifier that saw no patch of its block."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import GroupKFold

    from asgm.evaluate import f_beta_threshold

    missing = [b for b in SCAR_BANDS if b not in dataset.channels]
    if missing:
        raise InputFileError(dataset.path / "dataset.json", f"has no band(s) {missing}, which the scar classifier needs",
                             f"build the dataset with the bands {' '.join(SCAR_BANDS)}")
    x, y, position = weak_pixel_labels(dataset, rows, ndvi_max=ndvi_max, seed=seed)
    block = np.asarray(groups)[position]
    out_of_fold = np.full(len(y), np.nan)
    n_folds = min(folds, len(np.unique(block)))
    if n_folds >= 2 and len(set(y.tolist())) == 2:
        for fit, held in GroupKFold(n_splits=n_folds).split(x, y, block):
            if len(set(y[fit].tolist())) == 2:
                out_of_fold[held] = HistGradientBoostingClassifier(max_iter=200, random_state=seed).fit(x[fit], y[fit]).predict_proba(x[held])[:, 1]
    scored = np.isfinite(out_of_fold)
    threshold = f_beta_threshold(y[scored], out_of_fold[scored])[0] if scored.any() and len(set(y[scored].tolist())) == 2 else 0.5
    model = HistGradientBoostingClassifier(max_iter=200, random_state=seed).fit(x, y)
    info = {"version": CLASSIFIER_VERSION, "dataset": str(dataset.path), "fingerprint": dataset.fingerprint, "ndvi_max": ndvi_max,
            "pixels": int(len(y)), "mine_share": round(float(y.mean()), 3), "patches": int(len(rows)), "folds": int(n_folds),
            "threshold_chosen_on": f"out-of-fold predictions, {n_folds} folds of whole spatial blocks"}
    return ScarClassifier(model, float(threshold), info)


def ensure_scar_classifier(model_dir: Path, ndvi_max: float = 0.25) -> ScarClassifier:
    """The scar classifier of a scan model: trained on the model's own training and validation
    patches (never its test patches), its threshold chosen out of fold by spatial block; cached in
    ``model_dir/scar_classifier/``."""
    import pandas as pd

    from asgm.patches import read_dataset

    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    directory = Path(model_dir) / "scar_classifier"
    if (directory / "scar_classifier.json").is_file():
        cached = ScarClassifier.load(directory)
        if (cached.info.get("version"), cached.info.get("training_key"), cached.info.get("ndvi_max")) == (CLASSIFIER_VERSION, config.get("training_key"), ndvi_max):
            return cached
    dataset = read_dataset(config["dataset"]["path"])
    predictions = pd.read_csv(Path(model_dir) / "predictions.csv")
    used = predictions[predictions["split"].isin(["train", "validation"])]
    rows = dataset.rows(used["patch_id"])
    classifier = train_scar_classifier(dataset, rows, used["block"].to_numpy(), ndvi_max)
    classifier.info["training_key"] = config.get("training_key")
    classifier.save(directory)
    return classifier


def mine_probability(reflectance: dict[str, np.ndarray], footprint: np.ndarray, classifier: ScarClassifier, ndvi_max: float = 0.25,
                     max_elongation: float = MAX_ELONGATION) -> np.ndarray:
    """The classifier's probability of mine ground at each candidate pixel inside ``footprint`` (0
    elsewhere, and 0 on :func:`rivers`)."""
    water, bare = candidates(reflectance, ndvi_max)
    return classifier.probability(pixel_features(reflectance, water, bare), (water | bare) & footprint & ~rivers(water, max_elongation))


def rivers(water: np.ndarray, max_elongation: float = MAX_ELONGATION) -> np.ndarray:
    """The water of water bodies that are long and narrow over the whole of ``water``: rivers and
    streams. Turbid river water looks like a mine pond pixel by pixel (on the demo it was 43 % of the
    false scar), and inside one detected window a stretch of river is not long and narrow, so this is
    judged on the raster read (the monitoring reads kilometres of context around detections). The
    price: in-channel dredging and a pond joined to a river are not mine ground."""
    return water & ~kept_patches(water, np.ones_like(water), 0.0, 1, max_elongation)


def scar_mask(reflectance: dict[str, np.ndarray], footprint: np.ndarray, classifier: ScarClassifier | None = None, ndvi_max: float = 0.25,
              inside_share: float = 0.5, min_pixels: int = MIN_PIXELS, max_elongation: float = MAX_ELONGATION, pond_distance_px: int = 5,
              probability: np.ndarray | None = None, grow_px: int = GROW_PX, grow_fraction: float = GROW_FRACTION) -> np.ndarray:
    """Pixels of mining scar inside detection footprints (see the module's description).

    Parameters
    ----------
    reflectance
        The bands of :data:`SCAR_BANDS` as reflectance (B2 B3 B4 B8 suffice without a classifier).
    footprint
        Boolean raster: the detected windows.
    classifier
        The pixel classifier (:func:`ensure_scar_classifier`); None: the rules below.
    inside_share
        A connected patch counts only when at least this share of it lies inside the footprint.
    min_pixels
        Smaller patches are dropped: the minimum mapping unit (10 px = 0.1 ha at 10 m).
    max_elongation
        Patches larger than this many discs of their widest point's radius are long and narrow
        (streams, tracks, riverbanks) and dropped; with a classifier, water bodies of that shape
        over the raster read are :func:`rivers` and never scar.
    pond_distance_px
        Without a classifier, bare ground counts only within this many pixels of a kept pond.
    probability
        The classifier's :func:`mine_probability` on the same inputs, when already computed.
    grow_px, grow_fraction
        With a classifier, the scar (its patches kept as above) grows by up to ``grow_px`` pixels
        into pixels whose probability reaches ``grow_fraction`` of the threshold (0 px: no growth).
    """
    if classifier is not None:
        if probability is None:
            probability = mine_probability(reflectance, footprint, classifier, ndvi_max, max_elongation)
        scar = kept_patches(probability >= classifier.threshold, footprint, inside_share, min_pixels, max_elongation)
        # Seed and grow, as burned-area mapping does: a mine's edges and the parts of it under haze
        # score lower than its core, but next to the core they are the same mine. The growth is
        # bounded so that it does not run along a road or a stream that scores weakly.
        return grown_by(scar, grow_px, within=probability >= grow_fraction * classifier.threshold) & footprint
    water, bare = candidates(reflectance, ndvi_max)
    ponds = kept_patches(water, footprint, inside_share, min_pixels, max_elongation)
    ground = kept_patches(bare, footprint, inside_share, min_pixels, max_elongation)
    near = grown_by(ponds, pond_distance_px)
    return (ponds | patches_touching(ground, near)) & footprint


def grown_by(mask: np.ndarray, pixels: int, within: np.ndarray | None = None) -> np.ndarray:
    """``mask`` grown by ``pixels`` pixels, only into ``within`` when given (0: itself; scipy's 0
    iterations would grow it until it stops)."""
    return ndimage.binary_dilation(mask, EIGHT, iterations=pixels, mask=within) if pixels else mask


def patches_touching(cover: np.ndarray, near: np.ndarray) -> np.ndarray:
    """The connected patches of ``cover`` that have at least one pixel in ``near``."""
    labels, _ = ndimage.label(cover, structure=EIGHT)
    touched = np.unique(labels[near & cover])
    return np.isin(labels, touched[touched > 0])


def kept_patches(cover: np.ndarray, footprint: np.ndarray, inside_share: float, min_pixels: int, max_elongation: float | None = None) -> np.ndarray:
    """The connected patches of ``cover`` that lie mostly inside ``footprint``, are not tiny and
    (with ``max_elongation``) not long and narrow."""
    labels, n = ndimage.label(cover, structure=EIGHT)
    if not n:
        return np.zeros(cover.shape, dtype=bool)
    size = np.bincount(labels.ravel(), minlength=n + 1)
    inside = np.bincount(labels.ravel(), weights=footprint.ravel(), minlength=n + 1)
    keep = (inside >= inside_share * size) & (size >= min_pixels)
    if max_elongation is not None:
        # area against the disc of its widest point: about 1 for a pond or a pit, large for a
        # stream, a road or a riverbank (the raster's edge counts as the patch's edge)
        radius = ndimage.maximum(ndimage.distance_transform_edt(np.pad(cover, 1))[1:-1, 1:-1], labels, np.arange(n + 1))
        keep &= size <= max_elongation * np.pi * np.maximum(radius, 1) ** 2
    keep[0] = False
    return keep[labels]
