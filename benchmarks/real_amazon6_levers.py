"""Two levers measured on REAL data and not adopted, kept so their figures in benchmarks/README.md can
be reproduced: ``benchmarks/real_amazon6.py`` with two more variants, neither of them a library setting.

- ``indices``: ``bn_cnn`` with five normalised differences and the bare-soil index beside the
  standardised bands (NDVI, NDWI, MNDWI, NIR/SWIR1, SWIR1/SWIR2, BSI of the shared set's channels
  B2, B3, B4, B8, B11, B12). Ratios of bands cancel a gain common to all bands (haze, illumination),
  the shift that the gain augmentation showed matters between regions, and a CNN cannot divide.
- ``small_loss``: small-loss selection (Co-teaching's single-network form, Han et al. 2018): in each
  training batch the share r(t) of patches with the largest cross-entropy is left out of the
  gradient, r ramping from 0 to ``FORGET`` (the measured share of conflicting labels, 107 of 794,
  rounded up) over the first ``RAMP_EPOCHS`` epochs. Issue 31's third reference-free candidate,
  beside pruning by confident learning and a bounded loss.

``single`` is the default recipe as one model, with the key of the models cached before the
balanced operating point became the default (``operating_point: f1``), so the `single` caches of
``real_amazon6.py`` can be linked in; every threshold is re-chosen from raw outputs, so the figures
do not depend on it.

Usage: python benchmarks/real_amazon6_levers.py --evaluation regions --variants single indices small_loss
       [--seeds 2] [--first-seed 0] [--out DIR]
"""

from __future__ import annotations

import real_amazon6 as bench

from asgm import models, train
from asgm.backend import keras

layers, ops = keras.layers, keras.ops
#: (a, b) → (a − b) / (a + b), channels B2 B3 B4 B8 B11 B12: NDVI, NDWI, MNDWI, NIR/SWIR1, SWIR1/SWIR2
PAIRS = [(3, 2), (1, 3), (1, 4), (3, 4), (4, 5)]
FORGET, RAMP_EPOCHS = 0.15, 10


@keras.saving.register_keras_serializable(package="scratch")
class SpectralIndices(layers.Layer):
    """Normalised differences and the bare-soil index of reflectance inputs (N, H, W, 6)."""

    def call(self, x):
        out = [(x[..., a] - x[..., b]) / (x[..., a] + x[..., b] + 1e-3) for a, b in PAIRS]
        soil, green = x[..., 4] + x[..., 2], x[..., 3] + x[..., 0]
        out.append((soil - green) / (soil + green + 1e-3))
        return ops.stack(out, axis=-1)


def bn_cnn_indices(shape, statistics=None, dropout=0.4, widths=(48, 96, 192)):
    """``bn_cnn`` whose first block sees the standardised bands and their spectral indices."""
    inputs, x = models._input(shape, statistics)
    x = layers.Concatenate()([x, SpectralIndices()(inputs)])
    x = models._bn_blocks(x, widths, [2] * len(widths), [2] * len(widths), "same")
    return keras.Model(inputs, models._pooled_head(x, dropout), name="bn_cnn_idx")


class SmallLossCrossEntropy(keras.losses.Loss):
    """Binary cross-entropy over the batch's (1 − r) share of patches with the smallest loss."""

    def __init__(self, ramp_calls: float, **kwargs):
        super().__init__(name="small_loss_cross_entropy", **kwargs)
        self.calls = keras.Variable(0.0, trainable=False, dtype="float32")
        self.ramp_calls = float(ramp_calls)

    def call(self, y_true, y_pred):
        y = ops.reshape(ops.cast(y_true, y_pred.dtype), ops.shape(y_pred))
        loss = keras.losses.binary_crossentropy(y, y_pred)
        n = ops.cast(ops.shape(loss)[0], "float32")
        rate = FORGET * ops.minimum(1.0, self.calls / self.ramp_calls)
        self.calls.assign_add(1.0)
        keep = ops.maximum(1.0, n - ops.floor(rate * n))
        largest_kept = ops.take(ops.sort(loss), ops.cast(keep, "int32") - 1)
        return loss * ops.cast(loss <= largest_kept, loss.dtype) * n / keep


def build_model(architecture, shape, statistics=None, learning_rate=3e-4, label_smoothing=0.0, gce_q=0.0):
    """``asgm.models.build_model``, with small-loss selection for the ``bn_cnn_small_loss`` network."""
    model = models.build_model(architecture, shape, statistics, learning_rate, label_smoothing, gce_q)
    if architecture == "bn_cnn_small_loss":
        # ~560 training patches: ~18 batches an epoch, and ~3 validation batches that call the loss too
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=SmallLossCrossEntropy(RAMP_EPOCHS * 21),
                      metrics=[keras.metrics.AUC(curve="PR", name="pr_auc"), keras.metrics.AUC(name="roc_auc")])
        model.optimizer.build(model.trainable_variables)
    return model


models.ARCHITECTURES["bn_cnn_idx"] = bn_cnn_indices
models.ARCHITECTURES["bn_cnn_small_loss"] = models.bn_cnn
train.build_model = build_model
bench.VARIANTS["single"] = {**bench.SINGLE, "operating_point": "f1"}
bench.VARIANTS["indices"] = {**bench.SINGLE, "operating_point": "f1", "architecture": "bn_cnn_idx"}
bench.VARIANTS["small_loss"] = {**bench.SINGLE, "operating_point": "f1", "architecture": "bn_cnn_small_loss"}

if __name__ == "__main__":
    bench.main()
