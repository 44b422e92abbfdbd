"""Patch extraction + OSM rasterisation throughput on the demo region (patches/s, 1 process).

Compares, in one run and on the same points:
- ``asgm``: LocalRasterSource.read_patches + OsmRasterizer.rasterize (features spatially indexed,
  each patch burns only the features that touch it);
- ``baseline``: the same imagery reads, but every patch burns all features of each channel (what
  a straightforward loop over rasterio.features.rasterize does).

Usage: python benchmarks/patches.py [--profile demo] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rasterio.features import rasterize

from asgm.config import load_profile
from asgm.imagery import open_source, prepare_inputs
from asgm.osm import OsmRasterizer, load_osm_features
from asgm.regions import read_boundary
from asgm.sampling import sampling_points


def burn_everything(layers, grid):
    out = np.zeros((grid.height, grid.width, len(layers)), np.uint8)
    for c, geoms in enumerate(layers):
        if len(geoms):
            out[..., c] = rasterize(((g, 1) for g in geoms), out_shape=(grid.height, grid.width), transform=grid.transform, dtype=np.uint8)
    return out


def run(points, source, burn, size, chunk=64):
    start = time.perf_counter()
    n = 0
    for i in range(0, len(points), chunk):
        batch = source.read_patches(points.iloc[i : i + chunk], size)
        for grid in batch.grids:
            if grid is not None:
                burn(grid)
                n += 1
    return n, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cfg = load_profile(args.profile)
    prepare_inputs(cfg)
    features = load_osm_features(cfg, read_boundary(cfg.region.boundary))
    points = sampling_points(cfg)
    source = open_source(cfg)
    rasterizer = OsmRasterizer(features, source.crs, cfg.osm.channels)
    layers = [list(layer) for layer in rasterizer.layers]
    print(f"profile {cfg.name} (SYNTHETIC region), {len(points)} points, {len(features)} OSM features, best of {args.repeat}")
    print("| patch size | patches | asgm (patches/s) | baseline (patches/s) | speed-up |")
    print("|---|---|---|---|---|")
    for size in cfg.patches.sizes:
        best = {}
        for name, burn in (("asgm", rasterizer.rasterize), ("baseline", lambda g: burn_everything(layers, g))):
            times = [run(points, source, burn, size) for _ in range(args.repeat)]
            n = times[0][0]
            best[name] = n / min(t for _, t in times)
        print(f"| {size} px | {n} | {best['asgm']:.0f} | {best['baseline']:.0f} | {best['asgm'] / best['baseline']:.1f}x |")
    source.close()


if __name__ == "__main__":
    main()
