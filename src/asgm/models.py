"""Keras architectures and the model's input contract.

Inputs are normalised as in ``dataset.json``: reflectance bands ``clip(x / scale, 0, 1)``, OSM
channels stay 0/1 (:func:`normalize_patches`). An optional per-band standardisation (mean and
variance of the training patches) sits inside the model, so a saved model carries it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np
from keras import layers

from asgm.config import S2_BANDS
from asgm.errors import AsgmError


def normalize_patches(patches: np.ndarray, channels: Sequence[str], scale: float, select: Sequence[str] | None = None) -> np.ndarray:
    """Model input from dataset patches.

    Parameters
    ----------
    patches
        (N, H, W, C) as stored (e.g. uint16 reflectance × ``scale`` and 0/1 OSM channels).
    channels
        Names of the C channels.
    scale
        Stored values per unit reflectance.
    select
        Channels to keep, in this order (default: all).

    Returns
    -------
    numpy.ndarray
        float32 (N, H, W, len(select)): bands in 0–1, OSM channels 0/1.

    Raises
    ------
    AsgmError
        A selected channel is not in ``channels``.
    """
    channels = list(channels)
    select = list(select) if select is not None else channels
    missing = [c for c in select if c not in channels]
    if missing:
        raise AsgmError(f"channel(s) {missing} are not in the data; it has {channels}, the model needs {select}. "
                        "Use a dataset built with these channels, or train a model on the dataset's channels.")
    picks = [channels.index(c) for c in select]
    out = np.asarray(patches[..., picks], dtype=np.float32)
    bands = [i for i, c in enumerate(select) if c in S2_BANDS]
    out[..., bands] = np.clip(out[..., bands] / scale, 0.0, 1.0)
    return out


def predict_probabilities(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Probabilities of mine for inputs (N, H, W, C), calling the model on batches (eagerly: no
    ``tf.function`` is traced per model, which matters when many models are evaluated in a row)."""
    if not len(x):
        return np.zeros(0, np.float32)
    return np.concatenate([np.asarray(model(x[i:i + batch_size], training=False)).ravel() for i in range(0, len(x), batch_size)])


def band_statistics(x: np.ndarray, channels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and variance of normalised inputs (N, H, W, C) for standardisation;
    OSM channels get mean 0 and variance 1 so they pass unchanged."""
    mean = x.mean(axis=(0, 1, 2), dtype=np.float64)
    var = x.var(axis=(0, 1, 2), dtype=np.float64)
    osm = [i for i, c in enumerate(channels) if c not in S2_BANDS]
    mean[osm], var[osm] = 0.0, 1.0
    return mean.astype(np.float32), np.maximum(var, 1e-8).astype(np.float32)


def _input(shape: tuple[int, int, int], statistics: tuple[np.ndarray, np.ndarray] | None):
    inputs = keras.Input(shape=shape, name="patch")
    x = inputs if statistics is None else layers.Normalization(mean=statistics[0], variance=statistics[1], name="standardize")(inputs)
    return inputs, x


def thesis_cnn(shape: tuple[int, int, int], statistics=None, dropout: float = 0.3) -> keras.Model:
    """The thesis CNN: three blocks of 3 × Conv2D(32, 3×3, same, ReLU) with max-pooling 2, 2, 3;
    Flatten → Dense 64 → Dense 64 → Dense 32 (each with dropout) → Dense 1 sigmoid."""
    inputs, x = _input(shape, statistics)
    for pool in (2, 2, 3):
        for _ in range(3):
            x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(pool)(x)
    x = layers.Flatten()(x)
    for units in (64, 64, 32):
        x = layers.Dense(units, activation="relu")(x)
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(1, activation="sigmoid", name="mine_probability")(x)
    return keras.Model(inputs, outputs, name="thesis_cnn")


def bn_cnn(shape: tuple[int, int, int], statistics=None, dropout: float = 0.4, widths: Sequence[int] = (48, 96, 192)) -> keras.Model:
    """A wider, batch-normalised CNN in the spirit of Earth Genome's current model (~0.6 M
    parameters): per block 2 × (Conv2D 3×3 → BatchNorm → ReLU) and max-pooling 2, then global
    average pooling, dropout, Dense 64 and a sigmoid. Global pooling makes it size-agnostic."""
    inputs, x = _input(shape, statistics)
    for width in widths:
        for _ in range(2):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(1, activation="sigmoid", name="mine_probability")(x)
    return keras.Model(inputs, outputs, name="bn_cnn")


ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {"thesis_cnn": thesis_cnn, "bn_cnn": bn_cnn}


def build_model(architecture: str, shape: tuple[int, int, int], statistics=None, learning_rate: float = 3e-4) -> keras.Model:
    """A compiled model: Adam, binary cross-entropy, PR-AUC and ROC-AUC as metrics.

    Parameters
    ----------
    architecture
        A key of :data:`ARCHITECTURES`.
    shape
        Input (H, W, C).
    statistics
        Per-channel (mean, variance) for in-model standardisation, or None.
    learning_rate
        Adam's learning rate.
    """
    if architecture not in ARCHITECTURES:
        raise AsgmError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)} (training.architecture)")
    model = ARCHITECTURES[architecture](shape, statistics)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy",
                  metrics=[keras.metrics.AUC(curve="PR", name="pr_auc"), keras.metrics.AUC(name="roc_auc")])
    return model


def ensemble(members: Sequence[keras.Model]) -> keras.Model:
    """One model whose output is the mean of the members' probabilities (one member: itself)."""
    if len(members) == 1:
        return members[0]
    inputs = keras.Input(shape=members[0].input_shape[1:], name="patch")
    for i, member in enumerate(members):
        member.name = f"member_{i}"
    outputs = layers.Average(name="mine_probability")([m(inputs) for m in members])
    return keras.Model(inputs, outputs, name="ensemble")
