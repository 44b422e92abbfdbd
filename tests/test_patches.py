import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import LineString

from asgm.config import OSM_CHANNELS, S2_BANDS, PatchConfig
from asgm.errors import InputFileError
from asgm.imagery.local import LocalRasterSource
from asgm.osm import OsmRasterizer
from asgm.patches import build_dataset, read_dataset
from conftest import LEFT, TOP, write_raster

QC = PatchConfig(sizes=(16,), max_nodata_fraction=0.05, max_cloud_fraction=0.2, chunk_size=3)


def points_at(pixels, labels=None):
    """Sampling points at the centres of (row, col) pixels of the test rasters."""
    xy = [(LEFT + (c + 0.5) * 10, TOP - (r + 0.5) * 10) for r, c in pixels]
    labels = labels or [i % 2 for i in range(len(pixels))]
    gdf = gpd.GeoDataFrame({"patch_id": [f"p{i}" for i in range(len(pixels))], "label": labels, "category": "mine"},
                           geometry=gpd.points_from_xy(*zip(*xy)), crs=32620)
    return gdf.to_crs(4326)


@pytest.fixture
def scene(tmp_path):
    """A 100 px raster with a no-data corner, a cloud and a track; returns the source and rasterizer."""
    rng = np.random.default_rng(1)
    data = (900 + rng.normal(0, 30, (12, 100, 100))).astype(np.uint16)
    data[:, :30, :30] = 0  # no data (top-left)
    data[S2_BANDS.index("B2"), 60:80, 60:80] = 4000  # a cloud, bright in blue
    raster = write_raster(tmp_path / "scene.tif", data)
    track = gpd.GeoDataFrame({"highway": ["track"]}, geometry=[LineString([(LEFT, TOP - 455), (LEFT + 1000, TOP - 455)])], crs=32620)
    source = LocalRasterSource(raster, S2_BANDS)
    return source, OsmRasterizer(track, source.crs, OSM_CHANNELS)


def test_round_trip_and_drop_reasons(scene, tmp_path):
    source, rasterizer = scene
    pts = points_at([(45, 45), (33, 33), (15, 15), (70, 70), (2, 50), (45, 80)])
    ds = build_dataset(pts, source, rasterizer, 16, tmp_path / "ds", QC, metadata={"synthetic": True}, progress=False)
    assert ds.patches.shape == (2, 16, 16, 17) and ds.index["patch_id"].tolist() == ["p0", "p5"]
    dropped = pd.read_csv(tmp_path / "ds" / "dropped.csv").set_index("patch_id")["reason"].to_dict()
    assert dropped == {"p1": "nodata above 5%", "p2": "black (no data at all)", "p3": "cloud above 20%", "p4": "crosses the raster edge"}
    assert ds.meta["dropped"] == {r: 1 for r in dropped.values()}
    assert ds.channels == list(S2_BANDS) + list(OSM_CHANNELS) and ds.meta["synthetic"] is True
    # The track along row 45 crosses both kept patches through their centre row (8).
    assert ds.patches[0, 8, :, 12].tolist() == [1] * 16 and ds.patches[0, ..., 12].sum() == 16
    with LocalRasterSource(source.path, S2_BANDS) as again:
        direct = again.read_patches(pts.iloc[[0]], 16).data[0]
    assert np.array_equal(ds.patches[0, ..., :12], direct)
    back = read_dataset(tmp_path / "ds", mmap=False)
    assert np.array_equal(back.patches, ds.patches) and back.index.equals(ds.index)


def test_rerun_reuses_an_up_to_date_dataset(scene, tmp_path):
    source, rasterizer = scene
    pts = points_at([(45, 45), (55, 50)])
    first = build_dataset(pts, source, rasterizer, 16, tmp_path / "ds", QC, progress=False)
    stamp = (tmp_path / "ds" / "patches.npy").stat().st_mtime_ns
    build_dataset(pts, source, rasterizer, 16, tmp_path / "ds", QC, progress=False)
    assert (tmp_path / "ds" / "patches.npy").stat().st_mtime_ns == stamp
    changed = build_dataset(pts.iloc[:1], source, rasterizer, 16, tmp_path / "ds", QC, progress=False)
    assert len(changed) == 1 and len(first) == 2


def test_interrupted_build_leaves_nothing_behind(scene, tmp_path):
    source, rasterizer = scene

    class Failing:
        def __getattr__(self, name):
            return getattr(source, name)

        def read_patches(self, points, size):
            if points["patch_id"].iloc[0] != "p0":
                raise KeyboardInterrupt
            return source.read_patches(points, size)

    with pytest.raises(KeyboardInterrupt):
        build_dataset(points_at([(45, 45)] * 2 + [(50, 50)] * 5), Failing(), rasterizer, 16, tmp_path / "ds", QC, progress=False)
    assert list(tmp_path.iterdir()) == [tmp_path / "scene.tif"]


def write_dataset(path, n=4, size=8, channels=("B2", "B3", "B4"), rows=None, meta=None):
    path.mkdir()
    np.save(path / "patches.npy", np.zeros((n, size, size, len(channels)), np.int16))
    pd.DataFrame({"patch_id": [f"p{i}" for i in range(rows if rows is not None else n)], "lon": 0.0, "lat": 0.0, "label": 0}).to_csv(path / "index.csv", index=False)
    (path / "dataset.json").write_text(json.dumps(meta or {"channels": list(channels), "scale": 10000, "patch_size": size}))
    return path


@pytest.mark.parametrize(
    "kwargs, file, message",
    [
        ({"rows": 3}, "index.csv", "has 3 rows but patches.npy holds 4"),
        ({"meta": {"channels": ["B2", "B3"], "scale": 10000, "patch_size": 8}}, "patches.npy", r"has shape \(4, 8, 8, 3\), expected \(N, 8, 8, 2\)"),
        ({"meta": {"channels": ["B2", "B3", "NDVI"], "scale": 10000, "patch_size": 8}}, "dataset.json", r"unknown channel name\(s\) \['NDVI'\]"),
        ({"meta": {"channels": ["B2", "B3", "B4"], "patch_size": 8}}, "dataset.json", r"lacks key\(s\) \['scale'\]"),
    ],
    ids=["row-count", "shape", "channel-name", "missing-key"],
)
def test_a_dataset_whose_files_disagree_is_refused(tmp_path, kwargs, file, message):
    path = write_dataset(tmp_path / "ds", **kwargs)
    with pytest.raises(InputFileError, match=f"{file}: {message}"):
        read_dataset(path)


def test_missing_dataset_file(tmp_path):
    path = write_dataset(tmp_path / "ds")
    (path / "index.csv").unlink()
    with pytest.raises(InputFileError, match="index.csv: missing from the dataset directory"):
        read_dataset(path)
    with pytest.raises(InputFileError, match="nowhere: is not a directory"):
        read_dataset(tmp_path / "nowhere")


def test_adding_a_patch_size_does_not_rebuild_existing_datasets(scene, tmp_path):
    source, rasterizer = scene
    pts = points_at([(45, 45)])
    build_dataset(pts, source, rasterizer, 16, tmp_path / "ds", QC, progress=False)
    stamp = (tmp_path / "ds" / "patches.npy").stat().st_mtime_ns
    build_dataset(pts, source, rasterizer, 16, tmp_path / "ds", PatchConfig(sizes=(16, 32), chunk_size=7), progress=False)
    assert (tmp_path / "ds" / "patches.npy").stat().st_mtime_ns == stamp
    build_dataset(pts, source, rasterizer, 16, tmp_path / "ds", PatchConfig(sizes=(16,), max_cloud_fraction=0.5), progress=False)
    assert (tmp_path / "ds" / "patches.npy").stat().st_mtime_ns != stamp, "a quality setting changed: rebuild"
