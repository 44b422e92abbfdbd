"""Keras architectures and the model's input contract.

Inputs are normalised as in ``dataset.json``: reflectance bands ``clip(x / scale, 0, 1)``, OSM
channels stay 0/1 (:func:`normalize_patches`). An optional per-band standardisation (mean and
variance of the training patches) sits inside the model, so a saved model carries it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from asgm.augment import dihedral_views
from asgm.backend import keras
from asgm.config import S2_BANDS
from asgm.errors import AsgmError

layers = keras.layers


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
    # in place, per channel (bands / scale clipped to 0-1, OSM channels as they are): no gathered
    # copies of the bands, which cost a region scan a quarter of its time
    band = np.array([c in S2_BANDS for c in select])
    out /= np.where(band, scale, 1.0).astype(np.float32)
    np.clip(out, np.where(band, 0.0, -np.inf).astype(np.float32), np.where(band, 1.0, np.inf).astype(np.float32), out=out)
    return out


def predict_probabilities(model: keras.Model, x: np.ndarray, batch_size: int = 256, tta: bool = False) -> np.ndarray:
    """Probabilities of mine for inputs (N, H, W, C), calling the model on batches (eagerly: no
    ``tf.function`` is traced per model, which matters when many models are evaluated in a row).
    With ``tta``, the mean over the 8 dihedral views of each patch (test-time augmentation)."""
    if not len(x):
        return np.zeros(0, np.float32)
    if tta:
        return np.mean([predict_probabilities(model, view, batch_size) for view in dihedral_views(x)], axis=0)
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
    x = _bn_blocks(x, widths, [2] * len(widths), [2] * len(widths), "same")
    return keras.Model(inputs, _pooled_head(x, dropout), name="bn_cnn")


def _bn_blocks(x, widths: Sequence[int], convs: Sequence[int], pools: Sequence[int], padding: str):
    """Blocks of n × (Conv2D 3×3 → BatchNorm → ReLU) followed by max-pooling."""
    for width, n, pool in zip(widths, convs, pools):
        for _ in range(n):
            x = layers.Conv2D(width, 3, padding=padding, use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(pool)(x)
    return x


def _pooled_head(x, dropout: float):
    """Global average pooling, dropout, Dense 64, dropout, and the sigmoid output."""
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    return layers.Dense(1, activation="sigmoid", name="mine_probability")(x)


def scan_cnn(shape: tuple[int, int, int], statistics=None, dropout: float = 0.4, widths: Sequence[int] = (32, 64, 128)) -> keras.Model:
    """A scan-friendly CNN: bn_cnn's blocks with *valid* convolutions and pooling that tiles its
    input exactly (2, 2, 3: the thesis's), so a window never sees zero padding and the network
    can slide over a whole region as one convolution (:func:`fully_convolutional`) with an output
    stride of 12 px. Blocks: 2, 2 and k × (Conv2D 3×3 valid → BatchNorm → ReLU), k chosen so the
    last pooling tiles (48 px → 1 × 1 feature map); then global average pooling, dropout,
    Dense 64 and a sigmoid.

    Raises
    ------
    AsgmError
        A patch size whose feature maps cannot be tiled by the pooling (48 and 256 px can).
    """
    size = shape[0]
    convs = [2, 2]
    after_two = ((size - 4) // 2 - 4) / 2
    if (size - 4) % 2 or ((size - 4) // 2 - 4) % 2 or after_two < 5:
        raise AsgmError(f"scan_cnn cannot tile a {size} px patch; use a size such as 48 or 256, or another architecture")
    third = next(k for k in range(1, int(after_two)) if (after_two - 2 * k) % 3 == 0 and after_two - 2 * k >= 3)
    convs.append(third)
    inputs, x = _input(shape, statistics)
    x = _bn_blocks(x, widths, convs, (2, 2, 3), "valid")
    return keras.Model(inputs, _pooled_head(x, dropout), name="scan_cnn")


ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {"thesis_cnn": thesis_cnn, "bn_cnn": bn_cnn, "scan_cnn": scan_cnn}


def fully_convolutional(model: keras.Model, step: int = 1) -> tuple[keras.Model, int] | None:
    """The same network as one convolution over inputs of any size, or None when it cannot be.

    Convolutions, batch normalisation, activations and standardisation are copied with their
    weights (batch normalisation and ReLU after a convolution folded into it); global average pooling over the last f × f feature map becomes average pooling f × f
    at stride 1; Flatten + Dense becomes a convolution with the Dense weights; dropout is dropped.
    On an input of H × W the output map's pixel (i, j) is the model's probability for the window
    whose top-left corner is (i × stride, j × stride). Returns None for networks whose windows
    cannot share computation exactly: padded ("same") convolutions see zeros at each window's
    border, and pooling that overlaps or does not tile breaks the alignment.

    An ensemble (:func:`ensemble`) is fully convolutional when all its members are: its map is the
    mean of the members' maps.

    ``step`` > 1 keeps only every ``step``-th output position in each direction (a scan at a stride
    of ``step`` × the output stride). The last convolution and the pooling after it are then
    computed only where a kept output needs them (:class:`StridedConvPool`) instead of everywhere;
    the earlier layers are shared between overlapping windows and stay dense. Networks with more than
    a pointwise head after their last pooling keep the dense last stage, subsampled.

    Returns
    -------
    (model, stride) or None
        ``stride``: input pixels between neighbouring output positions (``step`` included).
    """
    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if members:
        converted = [fully_convolutional(m, step) for m in members]
        if any(c is None for c in converted) or len({c[1] for c in converted}) != 1:
            return None
        inputs = keras.Input(shape=(None, None, model.input_shape[-1]), name="region")
        outputs = layers.Average()([c[0](inputs) for c in converted])
        return keras.Model(inputs, outputs, name=f"{model.name}_fully_convolutional"), converted[0][1]
    inputs = keras.Input(shape=(None, None, model.input_shape[-1]), name="region")
    x, stride, flat_from = inputs, 1, None
    pools = [i for i, layer in enumerate(model.layers) if isinstance(layer, layers.MaxPooling2D)]
    last_pool = pools[-1] if pools and step > 1 and _pointwise_after(model.layers[pools[-1] + 1:]) else None
    # A convolution not yet emitted: batch normalisation and ReLU that follow it are folded into
    # its weights (exact up to float rounding), so the scan runs one fused op per layer.
    pending: dict | None = None

    def flush(x):
        nonlocal pending
        if pending is not None:
            conv = layers.Conv2D(pending["filters"], pending["kernel"].shape[:2], activation=pending["activation"], name=pending["name"])
            x = conv(x)
            conv.set_weights([pending["kernel"], pending["bias"]])
            pending = None
        return x

    # Standardisation right before a valid convolution is folded into its weights (exact: no padding).
    standardize = None
    for position, layer in enumerate(model.layers[1:], start=1):
        config = layer.get_config()
        if isinstance(layer, layers.Dropout):
            continue
        following = model.layers[position + 1] if position + 1 < len(model.layers) else None
        if isinstance(layer, layers.Normalization) and not config.get("invert") and pending is None and _is_valid_conv(following):
            mean, variance = (np.asarray(keras.ops.convert_to_numpy(v), np.float32).reshape(-1) for v in (layer.mean, layer.variance))
            standardize = (mean, np.maximum(np.sqrt(variance), keras.backend.epsilon()))
            continue
        if position == last_pool and pending is not None and config["padding"] == "valid" and tuple(config["pool_size"]) == tuple(config["strides"]):
            pool = config["pool_size"][0]
            x = StridedConvPool(pending["kernel"], pending["bias"], pending["activation"], pool, step, name=f"{pending['name']}_strided")(x)
            pending, stride = None, stride * pool * step
            continue
        if _is_valid_conv(layer):
            x = flush(x)
            kernel, *bias = layer.get_weights()
            bias = bias[0] if bias else np.zeros(config["filters"], kernel.dtype)
            if standardize is not None:  # conv((x - m) / s) = conv'(x) with kernel / s and bias - Σ kernel · m / s
                mean, scale = standardize
                bias = bias - np.einsum("hwco,c->o", kernel, mean / scale)
                kernel, standardize = kernel / scale[None, None, :, None], None
            pending = {"filters": config["filters"], "kernel": kernel, "bias": bias, "activation": config["activation"], "name": f"{layer.name}_fused"}
        elif isinstance(layer, layers.BatchNormalization) and pending is not None and pending["activation"] == "linear":
            gamma = np.asarray(layer.gamma) if layer.scale else 1.0
            beta = np.asarray(layer.beta) if layer.center else 0.0
            factor = gamma / np.sqrt(np.asarray(layer.moving_variance) + layer.epsilon)
            pending["kernel"] = pending["kernel"] * factor
            pending["bias"] = (pending["bias"] - np.asarray(layer.moving_mean)) * factor + beta
        elif isinstance(layer, layers.Activation) and config["activation"] == "relu" and pending is not None and pending["activation"] == "linear":
            pending["activation"] = "relu"
        elif isinstance(layer, (layers.BatchNormalization, layers.Activation, layers.Normalization, layers.ReLU)):
            x = _copy_layer(layer, flush(x))
        elif isinstance(layer, layers.MaxPooling2D) and config["padding"] == "valid" and tuple(config["pool_size"]) == tuple(config["strides"]):
            x = _copy_layer(layer, flush(x))
            stride *= config["strides"][0]
        elif isinstance(layer, layers.GlobalAveragePooling2D) and not config.get("keepdims"):
            x = layers.AveragePooling2D(pool_size=tuple(layer.input.shape[1:3]), strides=1)(flush(x))
        elif isinstance(layer, layers.Flatten):
            x, flat_from = flush(x), tuple(layer.input.shape[1:])
        elif isinstance(layer, layers.Dense):
            x = flush(x)
            kernel, *bias = layer.get_weights()
            window = flat_from[:2] if flat_from else (1, 1)
            conv = layers.Conv2D(config["units"], window, activation=config["activation"], use_bias=config["use_bias"], name=f"{layer.name}_as_conv")
            x = conv(x)
            conv.set_weights([kernel.reshape(*window, -1, config["units"]), *bias])
            flat_from = None
        else:
            return None
    x = flush(x)
    if step > 1 and last_pool is None:
        x = x[:, ::step, ::step]
        stride *= step
    return keras.Model(inputs, x, name=f"{model.name}_fully_convolutional"), stride


def _is_valid_conv(layer) -> bool:
    if not isinstance(layer, layers.Conv2D):
        return False
    config = layer.get_config()
    return config["padding"] == "valid" and tuple(config["strides"]) == (1, 1) and tuple(config["dilation_rate"]) == (1, 1)


def _pointwise_after(tail: Sequence[layers.Layer]) -> bool:
    """Whether the layers after the last pooling act on each output position alone (global pooling
    of a 1 × 1 map, Dense after it, activations, dropout)."""
    for layer in tail:
        if isinstance(layer, layers.GlobalAveragePooling2D):
            if tuple(layer.input.shape[1:3]) != (1, 1):
                return False
        elif isinstance(layer, layers.Flatten):
            if tuple(layer.input.shape[1:3]) != (1, 1):
                return False
        elif not isinstance(layer, (layers.Dense, layers.Dropout, layers.Activation, layers.ReLU)):
            return False
    return True


class StridedConvPool(layers.Layer):
    """A valid convolution followed by ``pool`` × ``pool`` max-pooling, evaluated only at every
    ``step``-th pooled position: max over the pool's offsets (a, b) of the convolution at stride
    ``pool`` × ``step`` from (a, b). Equal to conv → pool → ``[::step, ::step]`` at a fraction of the
    convolution's work (1 / ``step``² of it)."""

    def __init__(self, kernel, bias, activation: str, pool: int, step: int, **kwargs):
        super().__init__(**kwargs)
        self.kernel, self.bias = np.asarray(kernel, np.float32), np.asarray(bias, np.float32)
        self.activation, self.pool, self.step = keras.activations.get(activation), pool, step

    def call(self, x):
        stride = self.pool * self.step
        parts = [keras.ops.conv(x[:, a:, b:], self.kernel, strides=stride, padding="valid") for a in range(self.pool) for b in range(self.pool)]
        # the last offset has the fewest positions; the others have at most one more
        rows, cols = keras.ops.shape(parts[-1])[1], keras.ops.shape(parts[-1])[2]
        stacked = keras.ops.stack([p[:, :rows, :cols] for p in parts], axis=0)
        return self.activation(keras.ops.max(stacked, axis=0) + self.bias)


def _copy_layer(layer: layers.Layer, x):
    clone = layer.__class__.from_config(layer.get_config())
    out = clone(x)
    clone.set_weights(layer.get_weights())
    return out


@keras.saving.register_keras_serializable(package="asgm")
class GeneralizedCrossEntropy(keras.losses.Loss):
    """Generalized cross-entropy (Zhang & Sabuncu 2018), ``(1 - p_y ** q) / q`` for the probability
    ``p_y`` the model gives the patch's label: cross-entropy as q → 0, the bounded mean absolute
    error at q = 1. Bounded, so a patch whose label is wrong cannot dominate the gradient the way
    cross-entropy lets it; soft targets (label smoothing) weigh the two classes' terms."""

    def __init__(self, q: float = 0.7, label_smoothing: float = 0.0, name: str = "generalized_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.q, self.label_smoothing = float(q), float(label_smoothing)

    def call(self, y_true, y_pred):
        # labels arrive as (n,) beside (n, 1) outputs: broadcasting them would pair every label with every output
        y = keras.ops.reshape(keras.ops.cast(y_true, y_pred.dtype), keras.ops.shape(y_pred)) * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        p = keras.ops.clip(y_pred, keras.config.epsilon(), 1 - keras.config.epsilon())
        loss = y * (1 - p ** self.q) + (1 - y) * (1 - (1 - p) ** self.q)
        return keras.ops.mean(loss / self.q, axis=-1)

    def get_config(self):
        return {**super().get_config(), "q": self.q, "label_smoothing": self.label_smoothing}


def build_model(architecture: str, shape: tuple[int, int, int], statistics=None, learning_rate: float = 3e-4,
                label_smoothing: float = 0.0, gce_q: float = 0.0) -> keras.Model:
    """A compiled model: Adam, binary cross-entropy (or its generalisation), PR-AUC and ROC-AUC as metrics.

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
    label_smoothing
        Targets pulled this far towards 0.5 (a loss that trusts each label less, as noisy labels deserve).
    gce_q
        Above 0: :class:`GeneralizedCrossEntropy` with this exponent instead of cross-entropy.
    """
    if architecture not in ARCHITECTURES:
        raise AsgmError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)} (training.architecture)")
    model = ARCHITECTURES[architecture](shape, statistics)
    loss = (GeneralizedCrossEntropy(gce_q, label_smoothing) if gce_q > 0
            else keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss,
                  metrics=[keras.metrics.AUC(curve="PR", name="pr_auc"), keras.metrics.AUC(name="roc_auc")])
    # Without a distribution strategy Keras creates Adam's slots while tracing the first train step,
    # and a tf.function that creates variables is traced twice; built here, it is traced once.
    model.optimizer.build(model.trainable_variables)
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
