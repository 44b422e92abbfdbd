"""Monitoring's pixel work in windows around the detections vs over the whole raster, same run.

Writes two periods of a SYNTHETIC sparse region (forest, a meandering river, a few mine sites of a
few hectares each, one of them new in the second period) as tiled GeoTIFFs, with a 48 px detection
over every mine site and a few over the river, then runs the monitoring's pixel work
(:func:`asgm.monitor.window_products`: reading the bands, the scar classifier's 19 features,
rivers, scar, change, polygons) twice: in the windows of :func:`asgm.monitor.detection_windows`
(2.56 km of context) and over the whole raster as one window, the way it ran before. The scar
classifier is a stand-in that calls every candidate pixel mine ground (its features are computed
as for the real one; its gradient boosting runs only on candidate pixels inside detections, the
same in both). Prints seconds and peak memory of each, their ratios, and checks that both give the
same scar pixel for pixel.

Usage: python benchmarks/monitor_windows.py [--km 30] [--sites 12]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window
from shapely.geometry import box

from asgm.config import MonitoringConfig
from asgm.monitor import detection_windows, window_products
from asgm.scar import SCAR_BANDS, Grid

LEFT, TOP, CRS = 600_000.0, 800_000.0, "EPSG:32620"
FOREST = np.array([0.09, 0.09, 0.05, 0.30, 0.15, 0.08])
RIVER = np.array([0.11, 0.12, 0.13, 0.08, 0.05, 0.03])
BARE = np.array([0.17, 0.19, 0.29, 0.33, 0.35, 0.30])
POND = np.array([0.10, 0.12, 0.08, 0.06, 0.04, 0.02])


def write_periods(directory: Path, size: int, n_sites: int, seed: int = 0):
    """Two composites (uint16, reflectance × 10,000) and each period's detections."""
    rng = np.random.default_rng(seed)
    rows = np.arange(size)[:, None]
    river = np.abs(rows - (size / 2 + size / 8 * np.sin(np.arange(size)[None, :] / size * 6 * np.pi))) < 4
    sites = rng.integers(60, size - 110, (n_sites, 2))
    sites = sites[~river[sites[:, 0] + 20, sites[:, 1] + 20]]
    rasters, found = {}, {}
    for k, name in enumerate(("before", "after")):
        data = np.empty((6, size, size), dtype=np.uint16)
        for i in range(6):
            band = np.where(river, RIVER[i], FOREST[i]) + rng.normal(0, 0.004, (size, size))
            for j, (r, c) in enumerate(sites):
                if j == 0 and k == 0:
                    continue  # the first site opens in the second period
                band[r:r + 40, c:c + 40] = BARE[i]
                band[r + 10:r + 20, c + 10:c + 20] = POND[i]
            data[i] = np.clip(band * 10_000, 1, 65535).astype(np.uint16)
        path = directory / f"{name}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=6, dtype="uint16", crs=CRS, nodata=0,
                           transform=from_origin(LEFT, TOP, 10, 10), tiled=True, blockxsize=256, blockysize=256) as dst:
            dst.write(data)
            dst.descriptions = SCAR_BANDS
        rasters[name] = path
        corners = [(r - 4, c - 4) for j, (r, c) in enumerate(sites) if j or k]
        corners += [(int(size / 2 - 24 + size / 8 * np.sin(c / size * 6 * np.pi)), c) for c in (size // 5, size // 2)]
        geometry = [box(LEFT + 10 * c, TOP - 10 * (r + 48), LEFT + 10 * (c + 48), TOP - 10 * r) for r, c in corners]
        found[name] = gpd.GeoDataFrame({"max_confidence": np.full(len(geometry), 0.9)}, geometry=geometry, crs=CRS)
    return rasters, found


def measure(windows, grid, rasters, found, classifier):
    tracemalloc.start()
    start = time.perf_counter()
    parts = [window_products(w, grid, rasters, found, classifier, MonitoringConfig(), 10_000) for w in windows]
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    mask = np.zeros(grid.shape, dtype=bool)
    for p in parts:
        mask[p.window.toslices()] = p.masks["after"]
    return seconds, peak, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--km", type=float, default=30.0, help="side of the square region (km)")
    parser.add_argument("--sites", type=int, default=12, help="mine sites")
    args = parser.parse_args()
    size = int(args.km * 100)
    classifier = SimpleNamespace(threshold=0.5, probability=lambda features, where: where.astype(np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        rasters, found = write_periods(Path(tmp), size, args.sites)
        grid = Grid(from_origin(LEFT, TOP, 10, 10), rasterio.crs.CRS.from_string(CRS), (size, size))
        windows = detection_windows(found, grid)
        share = sum(w.width * w.height for w in windows) / size ** 2
        windowed = measure(windows, grid, rasters, found, classifier)
        whole = measure([Window(0, 0, size, size)], grid, rasters, found, classifier)
    same = np.array_equal(windowed[2], whole[2])
    print(f"SYNTHETIC sparse region {args.km:g} km x {args.km:g} km ({size} px square), 2 periods, "
          f"{len(found['after'])} detections, {len(windows)} windows covering {share:.1%} of the pixels")
    print("| pixel work | seconds | peak memory (MiB) |\n|---|---|---|")
    print(f"| whole raster (before) | {whole[0]:.1f} | {whole[1]:.0f} |")
    print(f"| windows around detections | {windowed[0]:.1f} | {windowed[1]:.0f} |")
    print(f"speed-up {whole[0] / windowed[0]:.1f}x, memory / {whole[1] / windowed[1]:.1f}; "
          f"same scar: {same} ({int(windowed[2].sum())} px)")


if __name__ == "__main__":
    main()
