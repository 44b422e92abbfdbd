"""Training and prediction throughput (patches/s) on this machine's CPU.

- Training: one epoch of ``model.fit`` over AugmentedBatches (batch 32, rotations/flips on) after a
  warm-up epoch, for each architecture; the baseline is the thesis CNN in the same run.
- Prediction: the batched path of ``asgm.predict`` (``model(x)`` on batches of 256) against the
  per-patch loop (``model.predict`` on one patch at a time) in the same run.

Inputs are random arrays of the real shapes (speed does not depend on the values).

Usage: python benchmarks/throughput.py [--channels 17] [--patches 1024]
"""

from __future__ import annotations

import argparse
import os
import time

import keras
import numpy as np

from asgm.models import build_model
from asgm.train import AugmentedBatches


def train_rate(architecture: str, x: np.ndarray, y: np.ndarray) -> float:
    model = build_model(architecture, x.shape[1:])
    batches = AugmentedBatches(x, y, np.ones(len(y)), 32, seed=0)
    model.fit(batches, epochs=1, verbose=0)  # warm-up: tracing and allocation
    start = time.perf_counter()
    model.fit(batches, epochs=1, verbose=0)
    return len(x) / (time.perf_counter() - start)


def predict_rates(architecture: str, x: np.ndarray, n_single: int) -> tuple[float, float]:
    model = build_model(architecture, x.shape[1:])
    model(x[:256], training=False)
    start = time.perf_counter()
    for i in range(0, len(x), 256):
        np.asarray(model(x[i:i + 256], training=False))
    batched = len(x) / (time.perf_counter() - start)
    model.predict(x[:1], verbose=0)
    start = time.perf_counter()
    for i in range(n_single):
        model.predict(x[i:i + 1], verbose=0)
    single = n_single / (time.perf_counter() - start)
    return batched, single


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=17)
    parser.add_argument("--patches", type=int, default=1024)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    print(f"CPU cores visible: {os.cpu_count()}; keras {keras.__version__}; {args.patches} random patches, {args.channels} channels")
    print("| task | patch size | architecture | patches/s | baseline | baseline patches/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    x = rng.random((args.patches, 48, 48, args.channels), dtype=np.float32)
    y = (rng.random(args.patches) < 0.5).astype(np.float32)
    rates = {a: train_rate(a, x, y) for a in ("thesis_cnn", "bn_cnn")}
    for a, r in rates.items():
        print(f"| train | 48 px | {a} | {r:.0f} | thesis_cnn | {rates['thesis_cnn']:.0f} | {r / rates['thesis_cnn']:.2f}x |", flush=True)
    for size, n in ((48, args.patches), (256, max(64, args.patches // 16))):
        xs = x[:n] if size == 48 else rng.random((n, size, size, args.channels), dtype=np.float32)
        for a in ("thesis_cnn", "bn_cnn"):
            batched, single = predict_rates(a, xs, n_single=min(100, n))
            print(f"| predict | {size} px | {a} | {batched:.0f} | per-patch model.predict | {single:.0f} | {batched / single:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
