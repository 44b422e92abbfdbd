"""Training-time augmentation and test-time augmentation (TTA) of patches.

Augmentation is a set of named transforms (``training.augment``), applied in this order:

- ``dihedral``: one of the 8 symmetries of the square (quarter turns and a flip); exact, no
  interpolation;
- ``rotate``: a free rotation (any angle), ``translate``: a shift of up to ±10 % of the patch per
  axis, ``zoom``: a scale of up to ±10 % per axis — composed into one affine map per patch, with
  reflected borders (Earth Genome's ``RandomRotation(1.0)``, ``RandomTranslation(0.1)`` and
  ``RandomZoom(0.1)`` with ``fill_mode="reflect"``). Reflectance bands are interpolated bilinearly;
  OSM channels with the nearest neighbour, so they stay 0/1;
- ``gain``: each band of a patch multiplied by its own factor, log-uniform in [1/1.25, 1.25]: a
  region's haze, season, soil moisture and processing shift its reflectance band by band, and a
  model that leans on absolute values learns the regions it was trained on (bands only);
- ``contrast``: each band of a patch scaled about its mean by a factor in [0.9, 1.1] (Keras's
  ``RandomContrast(0.1)``), bands only;
- ``noise``: Gaussian noise of σ 0.01 reflectance on the bands.

Inputs are the model's inputs (:func:`asgm.models.normalize_patches`): bands as reflectance 0–1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from asgm.config import AUGMENTATIONS as TRANSFORMS  # the names training.augment may give, in the order they are applied
from asgm.errors import AsgmError

TRANSLATE_FRACTION = 0.1
ZOOM_FRACTION = 0.1
GAIN_FACTOR = 1.25
CONTRAST_FACTOR = 0.1
NOISE_SIGMA = 0.01


def dihedral(x: np.ndarray, transform: np.ndarray | int) -> np.ndarray:
    """Apply to each patch of (N, H, W, C) one of the 8 symmetries of the square: ``transform % 4``
    quarter turns, then a left-right flip when ``transform >= 4`` (one int: the same for all)."""
    transform = np.broadcast_to(np.asarray(transform), (len(x),))
    out = np.empty_like(x)
    for t in np.unique(transform):
        rows = transform == t
        turned = np.rot90(x[rows], k=int(t) % 4, axes=(1, 2))
        out[rows] = turned[:, :, ::-1] if t >= 4 else turned
    return out


def affine_matrices(size: int, angle: np.ndarray, shift: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Per patch, the 8 numbers of ``keras.ops.image.affine_transform`` that map an output pixel
    (x: column, y: row) to the input point it samples, for a patch turned by ``angle`` (radians,
    counter-clockwise on the screen), shifted by ``shift`` (N, 2: columns, rows; positive: content
    moves right / down) and scaled by ``scale`` (N, 2; > 1 enlarges the content) about its centre."""
    centre = (size - 1) / 2
    cos, sin = np.cos(angle), np.sin(angle)
    # input = R⁻¹ · S⁻¹ · (output − centre − shift) + centre
    a0, a1 = cos / scale[:, 0], -sin / scale[:, 1]
    b0, b1 = sin / scale[:, 0], cos / scale[:, 1]
    ox, oy = -centre - shift[:, 0], -centre - shift[:, 1]
    a2 = a0 * ox + a1 * oy + centre
    b2 = b0 * ox + b1 * oy + centre
    zeros = np.zeros_like(a0)
    return np.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1).astype(np.float32)


def warp(x: np.ndarray, matrices: np.ndarray, binary: np.ndarray) -> np.ndarray:
    """Resample each patch of (N, H, W, C) through its affine map (:func:`affine_matrices`) with
    reflected borders: channels where ``binary`` is True by nearest neighbour, the others bilinearly."""
    from keras import ops

    out = np.empty_like(x)
    for mask, method in ((~binary, "bilinear"), (binary, "nearest")):
        if mask.any():
            out[..., mask] = np.asarray(ops.image.affine_transform(x[..., mask], matrices, interpolation=method, fill_mode="reflect"))
    return out


def augment_batch(x: np.ndarray, transforms: Sequence[str], binary: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A randomly augmented copy of a batch of model inputs (N, H, W, C).

    Parameters
    ----------
    x
        Model inputs: bands as reflectance 0–1, OSM channels 0/1.
    transforms
        Names from :data:`TRANSFORMS` (applied in that order, whatever the order given).
    binary
        (C,) True for the 0/1 (OSM) channels: nearest-neighbour resampling, no contrast or noise.
    rng
        Source of every random draw (the same seed gives the same batch).
    """
    unknown = sorted(set(transforms) - set(TRANSFORMS))
    if unknown:
        raise AsgmError(f"unknown augmentation(s) {unknown}; choose from {', '.join(TRANSFORMS)} (training.augment)")
    n, size = len(x), x.shape[1]
    binary = np.asarray(binary, bool)
    if "dihedral" in transforms:
        x = dihedral(x, rng.integers(0, 8, n))
    if {"rotate", "translate", "zoom"} & set(transforms):
        angle = rng.uniform(-np.pi, np.pi, n) if "rotate" in transforms else np.zeros(n)
        shift = rng.uniform(-TRANSLATE_FRACTION, TRANSLATE_FRACTION, (n, 2)) * size if "translate" in transforms else np.zeros((n, 2))
        scale = 1 + rng.uniform(-ZOOM_FRACTION, ZOOM_FRACTION, (n, 2)) if "zoom" in transforms else np.ones((n, 2))
        x = warp(x, affine_matrices(size, angle, shift, scale), binary)
    else:
        x = x.copy()
    bands = ~binary
    if "gain" in transforms and bands.any():
        log_gain = rng.uniform(-np.log(GAIN_FACTOR), np.log(GAIN_FACTOR), (n, 1, 1, int(bands.sum())))
        x[..., bands] *= np.exp(log_gain).astype(np.float32)
    if "contrast" in transforms and bands.any():
        factor = rng.uniform(1 - CONTRAST_FACTOR, 1 + CONTRAST_FACTOR, (n, 1, 1, 1)).astype(np.float32)
        mean = x[..., bands].mean(axis=(1, 2), keepdims=True)
        x[..., bands] = (x[..., bands] - mean) * factor + mean
    if "noise" in transforms and bands.any():
        x[..., bands] += rng.normal(0, NOISE_SIGMA, x[..., bands].shape).astype(np.float32)
    return x


def dihedral_views(x: np.ndarray):
    """The 8 dihedral views of a batch (N, H, W, C), for test-time augmentation: the mean of a
    model's probabilities over them is the TTA prediction."""
    for t in range(8):
        yield dihedral(x, t)
