"""Shared fixtures: small rasters, OSM files and demo regions that the tests build themselves."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

matplotlib.use("Agg")

# Under pytest-xdist (make test) the workers already fill the cores: one TensorFlow thread per worker
# (and per subprocess it starts) instead of a pool per core in each, which only oversubscribes them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

from asgm.config import S2_BANDS, SyntheticConfig  # noqa: E402
from asgm.imagery.demo import generate_demo_region  # noqa: E402


def pytest_collection_modifyitems(items):
    """Tests marked ``slow`` run first: with ``make test``'s one-at-a-time scheduling
    (``--maxschedchunk 1``) pytest-xdist then spreads them over the workers from the start, instead
    of leaving one worker to finish a long test alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


UTM20 = "EPSG:32620"
#: Top-left corner of the small test rasters (near El Callao), in EPSG:32620.
LEFT, TOP = 630_000.0, 810_000.0


def write_raster(path: Path, data: np.ndarray, bands=S2_BANDS, left=LEFT, top=TOP, nodata=0, descriptions=True) -> Path:
    """Write a (C, H, W) uint16 GeoTIFF at 10 m on the EPSG:32620 grid."""
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype, crs=UTM20, transform=from_origin(left, top, 10, 10), nodata=nodata) as dst:
        dst.write(data)
        if descriptions:
            dst.descriptions = tuple(bands)
    return path


@pytest.fixture
def forest_raster(tmp_path):
    """A 100 x 100 px 12-band raster of forest-like values, with band index encoded in each band."""
    rng = np.random.default_rng(0)
    data = (rng.normal(0, 20, (12, 100, 100)) + np.arange(1, 13)[:, None, None] * 100 + 800).astype(np.uint16)
    return write_raster(tmp_path / "forest.tif", data)


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """A small SYNTHETIC demo region (2.5 km), generated once for the session."""
    cfg = SyntheticConfig(output_dir=tmp_path_factory.mktemp("demo") / "region", seed=5, size_km=2.5, n_mine_sites=6, n_curated_negatives=10)
    return cfg, generate_demo_region(cfg, progress=False)


@pytest.fixture
def reference_data() -> Path:
    """The real data beside the project (../shared/data or $ASGM_REFERENCE_DATA); skips when absent."""
    root = Path(os.environ.get("ASGM_REFERENCE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not (root / "amazon-s2-6band" / "patches.npy").is_file():
        pytest.skip(f"real reference data not found at {root} (set ASGM_REFERENCE_DATA)")
    return root


def write_toy_dataset(path: Path, n: int = 96, size: int = 16, channels=("B2", "B3", "B4", "B8", "highway"), seed: int = 0, signal: float = 0.08) -> Path:
    """A dataset directory in the contract format with a learnable signal: mines are brighter in
    B4 and carry more 'highway' pixels. Points sit on a 1 km grid, so each is its own spatial block."""
    import json

    import pandas as pd

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    bands = [c for c in channels if c in S2_BANDS]
    patches = np.zeros((n, size, size, len(channels)), np.uint16)
    for i, c in enumerate(channels):
        if c in bands:
            values = rng.normal(0.05, 0.01, (n, size, size)) + (signal * labels[:, None, None] if c == "B4" else 0)
            patches[..., i] = np.clip(values * 10000, 1, 10000).astype(np.uint16)
        else:
            patches[..., i] = rng.random((n, size, size)) < np.where(labels, 0.3, 0.05)[:, None, None]
    side = int(np.ceil(np.sqrt(n)))
    index = pd.DataFrame({"patch_id": [f"p{i}" for i in range(n)], "lon": -61.9 + 0.009 * (np.arange(n) % side),
                          "lat": 7.2 + 0.009 * (np.arange(n) // side), "label": labels})
    path.mkdir(parents=True, exist_ok=True)
    np.save(path / "patches.npy", patches)
    index.to_csv(path / "index.csv", index=False)
    (path / "dataset.json").write_text(json.dumps({"channels": list(channels), "scale": 10000, "patch_size": size,
                                                   "resolution_m": 10, "synthetic": True}))
    return path


@pytest.fixture
def toy_dataset(tmp_path) -> Path:
    return write_toy_dataset(tmp_path / "toy")


def snapshot(root: Path) -> dict:
    """Every file (its bytes) and directory (None) under ``root``: equal snapshots mean nothing changed."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


#: An .osm file with a national park (a closed way), an indigenous territory (a boundary relation),
#: an unnamed protected area and a track: two zones.
ZONES_OSM = """<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6">
  <node id="1" lat="7.30" lon="-61.90"/><node id="2" lat="7.30" lon="-61.80"/><node id="3" lat="7.40" lon="-61.80"/><node id="4" lat="7.40" lon="-61.90"/>
  <node id="5" lat="7.20" lon="-61.70"/><node id="6" lat="7.20" lon="-61.60"/><node id="7" lat="7.25" lon="-61.60"/><node id="8" lat="7.25" lon="-61.70"/>
  <node id="9" lat="7.10" lon="-61.90"/><node id="10" lat="7.10" lon="-61.89"/><node id="11" lat="7.11" lon="-61.89"/>
  <node id="12" lat="7.32" lon="-61.88"/><node id="13" lat="7.33" lon="-61.87"/>
  <way id="20"><nd ref="1"/><nd ref="2"/><nd ref="3"/><nd ref="4"/><nd ref="1"/><tag k="boundary" v="national_park"/><tag k="name" v="Parque Nacional Prueba"/></way>
  <way id="21"><nd ref="5"/><nd ref="6"/><nd ref="7"/></way>
  <way id="22"><nd ref="7"/><nd ref="8"/><nd ref="5"/></way>
  <relation id="30"><member type="way" ref="21" role="outer"/><member type="way" ref="22" role="outer"/>
    <tag k="type" v="boundary"/><tag k="boundary" v="aboriginal_lands"/><tag k="name" v="Territorio Prueba"/></relation>
  <way id="23"><nd ref="9"/><nd ref="10"/><nd ref="11"/><nd ref="9"/><tag k="boundary" v="protected_area"/></way>
  <way id="24"><nd ref="12"/><nd ref="13"/><tag k="highway" v="track"/></way>
</osm>
"""
