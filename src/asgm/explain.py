"""Why the model says "mine": Grad-CAM, occlusion sensitivity and channel-group importance.

All functions take model inputs as :func:`asgm.models.normalize_patches` returns them (the
channels the model was trained on, in its order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from asgm.backend import keras, tf
from asgm.config import OSM_CHANNELS, S2_BANDS
from asgm.errors import AsgmError
from asgm.evaluate import block_weights
from asgm.models import predict_probabilities
from asgm.progress import progress_bar

#: Spectral groups of Sentinel-2 bands, for channel-group importance on band-only models.
SPECTRAL_GROUPS = {
    "visible (B2, B3, B4)": ("B2", "B3", "B4"),
    "red edge (B5, B6, B7, B8A)": ("B5", "B6", "B7", "B8A"),
    "near infrared (B8)": ("B8",),
    "short-wave infrared (B11, B12)": ("B11", "B12"),
    "aerosol / water vapour (B1, B9)": ("B1", "B9"),
}
#: Layers with 4-D outputs that are not feature maps of a convolution.
_NOT_FEATURE_MAPS = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.Dropout, keras.layers.InputLayer)


def last_conv_layer(model: keras.Model) -> str:
    """Name of the last layer whose output is a feature map (after the last convolution's
    activation, before pooling): the layer Grad-CAM explains.

    Raises
    ------
    AsgmError
        The model has no such layer (e.g. an ensemble, whose members are nested models).
    """
    for layer in reversed(model.layers):
        if isinstance(layer, keras.Model):
            break
        if len(layer.output.shape) == 4 and not isinstance(layer, _NOT_FEATURE_MAPS) and layer.name != "standardize":
            return layer.name
    raise AsgmError(f"model {model.name!r} has no convolutional feature map at its top level; for an ensemble, "
                    "explain one member: model.get_layer('member_0')")


def grad_cam(model: keras.Model, x: np.ndarray, layer: str | None = None) -> np.ndarray:
    """Grad-CAM maps of the mine score (Selvaraju et al. 2017).

    The feature maps of ``layer`` are weighted by the spatial mean of the score's gradient, summed,
    passed through ReLU, upsampled bilinearly to the input size and scaled to 0–1 per patch.

    Parameters
    ----------
    model
        A CNN, or an ensemble (:func:`asgm.models.ensemble`: the mean of its members' maps, each
        scaled to 0–1, then scaled again).
    x
        Model inputs (N, H, W, C).
    layer
        Layer to explain; default :func:`last_conv_layer` (of each member, for an ensemble).

    Returns
    -------
    numpy.ndarray
        (N, H, W) in 0–1; all zeros where no location raises the score.
    """
    members = [m for m in model.layers if isinstance(m, keras.Model)]
    if members and layer is None:
        return _unit_peak(np.mean([grad_cam(member, x) for member in members], axis=0))
    layer = layer or last_conv_layer(model)
    grad_model = keras.Model(model.inputs, [model.get_layer(layer).output, model.outputs[0]])
    inputs = tf.convert_to_tensor(np.asarray(x, np.float32))
    with tf.GradientTape() as tape:
        maps, score = grad_model(inputs, training=False)
        # the log-odds has the same gradient direction as the probability but does not vanish
        # where the sigmoid saturates
        logit = tf.math.log(score + 1e-7) - tf.math.log(1 - score + 1e-7)
    gradients = tape.gradient(logit, maps)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1, keepdims=True))
    return _unit_peak(tf.image.resize(cam, x.shape[1:3], method="bilinear")[..., 0].numpy())


def _unit_peak(cam: np.ndarray) -> np.ndarray:
    """Maps (N, H, W) scaled so each patch's peak is 1 (all zeros stay zeros)."""
    peak = cam.reshape(len(cam), -1).max(axis=1)
    return np.where(peak[:, None, None] > 0, cam / np.maximum(peak, 1e-12)[:, None, None], 0.0).astype(np.float32)


#: NDVI above which a pixel counts as closed vegetation (forest) for the occluder.
FOREST_NDVI = 0.6


def occlusion_fill(x: np.ndarray, channels: Sequence[str]) -> np.ndarray:
    """Value each channel is occluded with: forest. For bands, the median of the pixels of ``x``
    with NDVI above :data:`FOREST_NDVI` (closed canopy, the Amazon's background and no class's
    evidence: occluding a pit with it asks "would this still be a mine if this were forest?"); OSM
    channels 0 (nothing mapped).

    The mean over every pixel, the usual grey occluder, is a blend of sand, water and vegetation
    whose reflectance resembles bare ground: occluding a mine with it could raise P(mine). Without
    B4 and B8 (no NDVI), or without forest pixels, the per-band median of all pixels is used.
    """
    x = np.asarray(x, np.float32)
    pixels = x.reshape(-1, x.shape[-1])
    if {"B4", "B8"} <= set(channels):
        red, nir = pixels[:, list(channels).index("B4")], pixels[:, list(channels).index("B8")]
        forest = (nir - red) / np.maximum(nir + red, 1e-6) > FOREST_NDVI
        if forest.any():
            pixels = pixels[forest]
    fill = np.median(pixels, axis=0).astype(np.float32)
    fill[[i for i, c in enumerate(channels) if c in OSM_CHANNELS]] = 0.0
    return fill


def occlusion_sensitivity(model: keras.Model, x: np.ndarray, fill: np.ndarray, windows: Sequence[int] = (8, 16, 24), stride: int = 4,
                          min_drop: float = 0.1, batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """How much the mine probability drops when a square is occluded (Zeiler & Fergus 2014),
    averaged over the squares covering each pixel, with the smallest square (of ``windows``) that
    moves the probability by at least ``min_drop`` somewhere in the patch (else the one that moves it most).

    Several sizes because one cannot show both a pit and a mine that fills the patch: hiding 8 px of
    a 25 px pit leaves the rest of it to keep P(mine) at 1, so a small square alone draws large mines
    as no evidence at all, while large squares alone blur a small pit into the patch's centre.

    Parameters
    ----------
    model
        Any model (ensembles too).
    x
        Model inputs (N, H, W, C).
    fill
        Per-channel occluder value (see :func:`occlusion_fill`).
    windows, stride
        Occluder sides (smallest first) and step in pixels.
    min_drop
        Drop in probability that makes a square size informative.

    Returns
    -------
    numpy.ndarray
        (N, H, W): probability of the patch minus probability with the pixel occluded (positive
        where the pixel supports "mine").
    """
    n, h, w, _ = x.shape
    if not windows or any(not 1 <= window <= min(h, w) for window in windows) or stride < 1:
        raise AsgmError(f"occlusion windows {list(windows)} px and stride {stride} px must fit the {h} x {w} px patches")
    windows = sorted(windows)
    squares = [(r, c, window, scale) for scale, window in enumerate(windows)
               for r in range(0, h - window + 1, stride) for c in range(0, w - window + 1, stride)]
    base = predict_probabilities(model, x, batch_size)
    out = np.zeros((n, h, w), np.float32)
    for i in progress_bar(range(n), desc="occlusion", unit="patch", disable=not progress):
        occluded = np.repeat(np.asarray(x[i:i + 1], np.float32), len(squares), axis=0)
        for k, (r, c, window, _) in enumerate(squares):
            occluded[k, r:r + window, c:c + window] = fill
        drop = base[i] - predict_probabilities(model, occluded, batch_size)
        total, count = np.zeros((len(windows), h, w), np.float32), np.zeros((len(windows), h, w), np.float32)
        for k, (r, c, window, scale) in enumerate(squares):
            total[scale, r:r + window, c:c + window] += drop[k]
            count[scale, r:r + window, c:c + window] += 1
        maps = total / np.maximum(count, 1)
        strongest = np.abs(maps).max(axis=(1, 2))
        informative = np.flatnonzero(strongest >= min_drop)
        out[i] = maps[informative[0] if len(informative) else int(np.argmax(strongest))]
    return out


def channel_groups(channels: Sequence[str]) -> dict[str, list[int]]:
    """Default groups for channel importance: all Sentinel-2 bands together, each OSM channel on its
    own; a band-only model gets the spectral groups (:data:`SPECTRAL_GROUPS`) it has."""
    channels = list(channels)
    bands = [i for i, c in enumerate(channels) if c in S2_BANDS]
    osm = {c: [i] for i, c in enumerate(channels) if c in OSM_CHANNELS}
    if osm:
        return {"Sentinel-2 bands": bands, **osm} if bands else osm
    groups = {name: [channels.index(b) for b in members if b in channels] for name, members in SPECTRAL_GROUPS.items()}
    return {name: idx for name, idx in groups.items() if idx}


def permutation_importance(model: keras.Model, x: np.ndarray, y: np.ndarray, blocks: np.ndarray, groups: dict[str, list[int]],
                           n_repeats: int = 5, n_boot: int = 200, seed: int = 0, level: float = 0.95,
                           progress: bool = False) -> pd.DataFrame:
    """Importance of channel groups: the drop in ROC-AUC and average precision when a group's
    channels are shuffled across patches (each patch gets another patch's channels of that group,
    so their distribution is kept but their link to the label is broken).

    (scikit-learn's ``permutation_importance`` permutes columns of a 2-D table; here whole channels
    of image patches are permuted together, so it is done directly.)

    Parameters
    ----------
    model
        The model.
    x, y, blocks
        Held-out inputs (N, H, W, C), labels and spatial blocks (for the intervals).
    groups
        Group name → channel indices into ``x`` (see :func:`channel_groups`).
    n_repeats
        Shuffles per group (their mean is reported).
    n_boot
        Block-bootstrap replicates of the interval of the drop.

    Returns
    -------
    pandas.DataFrame
        One row per group: ``channels`` (count), ``roc_auc_drop``, its ``ci_low`` / ``ci_high``,
        ``sd_repeats`` (spread over shuffles) and ``ap_drop``; sorted by ROC-AUC drop.
    """
    y = np.asarray(y).astype(int)
    if len(np.unique(y)) < 2:
        raise AsgmError("permutation importance needs mines and non-mines among the patches")
    rng = np.random.default_rng(seed)
    base = predict_probabilities(model, x)
    rows = {}
    for name, idx in progress_bar(groups.items(), desc="channel groups", unit="group", disable=not progress):
        shuffled = []
        for _ in range(n_repeats):
            xp = np.array(x, np.float32, copy=True)
            xp[..., idx] = np.asarray(x)[rng.permutation(len(x))][..., idx]
            shuffled.append(predict_probabilities(model, xp))
        auc_drops = [roc_auc_score(y, base) - roc_auc_score(y, s) for s in shuffled]
        boot_rng = np.random.default_rng([seed, len(rows)])
        reps = []
        for _ in range(n_boot):
            w = block_weights(np.asarray(blocks), boot_rng)
            if len(np.unique(y[w > 0])) == 2:
                reps.append(roc_auc_score(y, base, sample_weight=w) - np.mean([roc_auc_score(y, s, sample_weight=w) for s in shuffled]))
        alpha = (1 - level) / 2
        rows[name] = {"channels": len(idx), "roc_auc_drop": float(np.mean(auc_drops)),
                      "ci_low": float(np.quantile(reps, alpha)) if reps else np.nan,
                      "ci_high": float(np.quantile(reps, 1 - alpha)) if reps else np.nan,
                      "sd_repeats": float(np.std(auc_drops)),
                      "ap_drop": float(average_precision_score(y, base) - np.mean([average_precision_score(y, s) for s in shuffled]))}
    return pd.DataFrame(rows).T.rename_axis("group").sort_values("roc_auc_drop", ascending=False)


def pick_examples(y: np.ndarray, p: np.ndarray, threshold: float, per_kind: int = 4) -> dict[str, np.ndarray]:
    """Row numbers of the most confident true positives, false positives and false negatives
    (and true negatives): the cases worth explaining."""
    y, p = np.asarray(y).astype(int), np.asarray(p, float)
    predicted = p >= threshold
    kinds = {"true positive": (y == 1) & predicted, "false positive": (y == 0) & predicted,
             "false negative": (y == 1) & ~predicted, "true negative": (y == 0) & ~predicted}
    out = {}
    for kind, sel in kinds.items():
        rows = np.flatnonzero(sel)
        confidence = p[rows] if kind in ("true positive", "false positive") else -p[rows]
        out[kind] = rows[np.argsort(-confidence, kind="stable")][:per_kind]
    return out
