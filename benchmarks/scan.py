"""Region-scan speed: per-window prediction vs the fully convolutional fast path, same raster, same run.

Scans the demo region's composite (SYNTHETIC; speed does not depend on what the pixels show) with a
``scan_cnn`` of random weights on the 12 Sentinel-2 bands, in-process (no dask), at strides 24 and
12 px, once per window (``fast=False``: windows cut and batched through ``model.predict``-style calls)
and once fully convolutionally (``fast=True``; at 24 px with the strided last stage). Also times the batch-normalised ``bn_cnn`` (padded, so
per-window only) as the reference a padded network would cost. Prints km² per second, the speed-up
of the fast path over per-window prediction, and the projection for all of Bolívar (240,000 km²).

Usage: python benchmarks/scan.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

from asgm.config import S2_BANDS, load_profile
from asgm.imagery.demo import ensure_demo_region
from asgm.models import bn_cnn, scan_cnn
from asgm.scan import scan_region

ROOT = Path(__file__).resolve().parents[1]
BOLIVAR_KM2 = 240_000


def model_dir(path: Path, model) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    model.save(path / "model.keras")
    (path / "config.json").write_text(json.dumps({"channels": list(S2_BANDS), "patch_size": 48, "normalization": {"scale": 10000.0}, "training_key": "benchmark"}))
    (path / "threshold.json").write_text(json.dumps({"threshold": 0.5}))
    (path / "calibration.json").write_text(json.dumps({"method": "none"}))
    (path / "metrics.json").write_text("{}")
    (path / "predictions.csv").write_text("patch_id,probability\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="runs per case; the fastest is reported")
    parser.add_argument("--tile_px", type=int, default=1024, help="tile side in pixels (scan.tile_px)")
    args = parser.parse_args()
    region = ensure_demo_region(load_profile("demo", root=ROOT).synthetic)
    with rasterio.open(region.composite) as src:
        km2 = src.width * src.height * abs(src.res[0] * src.res[1]) / 1e6
        size = f"{src.width} x {src.height} px"
    stats = (np.full(12, 0.1, np.float32), np.full(12, 0.01, np.float32))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = {"scan_cnn": model_dir(tmp / "scan_cnn", scan_cnn((48, 48, 12), stats)), "bn_cnn": model_dir(tmp / "bn_cnn", bn_cnn((48, 48, 12), stats))}
        cases = [("bn_cnn", 24, False), ("scan_cnn", 24, False), ("scan_cnn", 24, True), ("scan_cnn", 12, False), ("scan_cnn", 12, True)]
        for name, stride, fast in cases:
            best = np.inf
            for repeat in range(args.repeats):
                out = tmp / f"{name}_{stride}_{fast}_{repeat}"
                start = time.perf_counter()
                result = scan_region(models[name], region.composite, out, stride=stride, fast=fast, tile_px=args.tile_px, progress=False)
                best = min(best, time.perf_counter() - start)
            assert result.fast == fast
            rows.append({"model": name, "stride": stride, "path": "fully convolutional" if fast else "per window",
                         "windows": result.shape[0] * result.shape[1], "seconds": best, "km2_per_s": km2 / best})
    print(f"SYNTHETIC demo composite {size} ({km2:.0f} km²), {os.cpu_count()} cores, {args.tile_px} px tiles, best of {args.repeats}")
    # Sharing work between overlapping windows can gain at most their overlap: (window / stride)².
    print("| model | stride | path | windows | seconds | km²/s | speed-up vs per window | bound (overlap) | Bolívar (240,000 km²) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        base = next(r for r in rows if r["model"] == "scan_cnn" and r["stride"] == row["stride"] and r["path"] == "per window")
        hours = BOLIVAR_KM2 / row["km2_per_s"] / 3600
        print(f"| {row['model']} | {row['stride']} px | {row['path']} | {row['windows']:,} | {row['seconds']:.2f} | {row['km2_per_s']:.1f} | "
              f"{base['seconds'] / row['seconds']:.1f}× | {(48 / row['stride']) ** 2:.0f}× | {hours:.1f} h |")


if __name__ == "__main__":
    main()
