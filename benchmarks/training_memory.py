"""Training CPU time with and without asgm.memory's malloc settings (glibc, Linux).

Each setting runs in its own process (``ASGM_MALLOC_TUNING=0`` keeps glibc's defaults; the settings
apply when a process starts): ``bn_cnn`` trained for ``--epochs`` epochs through the training path of
``asgm.train`` (AugmentedBatches, batch 32, flips and gain on, a validation set) on random patches of
the real shape, after a warm-up epoch. Reported per process: wall time, user and kernel (system) CPU
seconds and minor page faults; the baseline is glibc's defaults in the same run. CPU seconds are the
figure to compare when other work shares the cores; wall time when the machine is otherwise idle.

Usage: python benchmarks/training_memory.py [--patches 800] [--epochs 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = """
import json, resource, sys, time
import numpy as np
from asgm.models import build_model
from asgm.train import AugmentedBatches
n, epochs = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
x = rng.random((n, 48, 48, 6), dtype=np.float32)
y = (x[:, 20:28, 20:28, 2].mean(axis=(1, 2)) > 0.5).astype(np.float32)
model = build_model("bn_cnn", x.shape[1:])
batches = AugmentedBatches(x, y, np.ones(n), 32, seed=0, transforms=("dihedral", "gain"))
validation = (x[: n // 6], y[: n // 6])
model.fit(batches, epochs=1, verbose=0, validation_data=validation)  # warm-up: tracing and first allocations
before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
model.fit(batches, epochs=epochs, verbose=0, validation_data=validation)
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": time.perf_counter() - start, "user": after.ru_utime - before.ru_utime,
                  "system": after.ru_stime - before.ru_stime, "faults": after.ru_minflt - before.ru_minflt}))
"""


def run(tuned: bool, patches: int, epochs: int) -> dict:
    env = os.environ | {"ASGM_MALLOC_TUNING": "1" if tuned else "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(patches), str(epochs)], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patches", type=int, default=800)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"bn_cnn, {args.patches} random 48 px patches, {args.epochs} epochs, {os.cpu_count()} cores; best of {args.repeats} by CPU time")
    results = {}
    for tuned in (False, True):
        runs = [run(tuned, args.patches, args.epochs) for _ in range(args.repeats)]
        results[tuned] = min(runs, key=lambda r: r["user"] + r["system"])
    print("| malloc | wall (s) | user CPU (s) | kernel CPU (s) | kernel share | minor page faults |")
    print("|---|---|---|---|---|---|")
    for tuned, r in results.items():
        cpu = r["user"] + r["system"]
        print(f"| {'asgm.memory' if tuned else 'glibc defaults (baseline)'} | {r['wall']:.1f} | {r['user']:.1f} | {r['system']:.1f} | "
              f"{r['system'] / cpu:.0%} | {r['faults']:,} |")
    base, new = results[False], results[True]
    print(f"CPU time: {(base['user'] + base['system']) / (new['user'] + new['system']):.2f}x less; wall: {base['wall'] / new['wall']:.2f}x faster")


if __name__ == "__main__":
    main()
