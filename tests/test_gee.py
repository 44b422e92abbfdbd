"""The Earth Engine source, offline: Earth Engine's own algorithm list (shipped with earthengine-api
for its tests) stands in for the server's, and a fake replaces ``ee.data.computePixels``."""

import json
import threading

import ee
import geopandas as gpd
import numpy as np
import pytest
from ee import apitestcase
from shapely.geometry import box

from asgm.errors import AsgmError
from asgm.imagery import gee
from asgm.imagery.remote import export_composite

BANDS = ("B2", "B3", "B4", "B8", "B11", "B12")


def code(translate_x):
    """The value the fake answers for a grid whose left edge is ``translate_x``."""
    return int(translate_x) // 10 % 50000


class FakeComputePixels:
    """Answers like Earth Engine: a structured array per request. Each band's value encodes the
    grid's origin, so a test can tell which answer belongs to which request. ``failures`` maps a
    translateX to the errors raised (in turn) before that grid succeeds."""

    def __init__(self):
        self.requests = []
        self.failures = {}
        self.lock = threading.Lock()

    def __call__(self, params):
        grid = params["grid"]
        with self.lock:
            self.requests.append(params)
            pending = self.failures.get(grid["affineTransform"]["translateX"])
            if pending:
                raise pending.pop(0)
        w, h = grid["dimensions"]["width"], grid["dimensions"]["height"]
        out = np.zeros((h, w), dtype=[(b, "<u2") for b in params["bandIds"]])
        for i, b in enumerate(params["bandIds"]):
            out[b] = code(grid["affineTransform"]["translateX"]) + i
        return out


@pytest.fixture
def fake_ee(monkeypatch):
    ee.Reset()
    monkeypatch.setattr(ee.data, "_install_cloud_api_resource", lambda: None)
    monkeypatch.setattr(ee.data, "getAlgorithms", apitestcase.GetAlgorithms)
    monkeypatch.setattr(ee.data, "get_persistent_credentials", lambda: None)
    fake = FakeComputePixels()
    monkeypatch.setattr(ee.data, "computePixels", fake)
    gee.initialize("test-project")
    yield fake
    ee.Reset()


def points(lonlats):
    return gpd.GeoDataFrame({"patch_id": [f"p{i}" for i in range(len(lonlats))]},
                            geometry=gpd.points_from_xy(*zip(*lonlats)), crs=4326)


def source(tmp_path, **kw):
    image = gee.s2_composite("2023-01-01", "2024-01-01", BANDS, clear_threshold=0.75)
    return gee.EarthEngineSource(image, BANDS, tmp_path / "cache", workers=4, progress=False, **kw)


def test_request_names_collection_cloud_mask_bands_and_patch_grid(fake_ee, tmp_path):
    src = source(tmp_path)
    batch = src.read_patches(points([(-61.83, 7.33)]), 48)
    (request,) = fake_ee.requests
    expression = json.dumps(ee.serializer.encode(request["expression"]))
    for needed in ('"COPERNICUS/S2_HARMONIZED"', '"GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED"', '"cs_cdf"', "0.75",
                   '"2023-01-01"', '"2024-01-01"', "reduce.median", "Image.updateMask", "Image.linkCollection", "Image.gte"):
        assert needed in expression, needed
    assert request["bandIds"] == list(BANDS) and request["fileFormat"] == "NUMPY_NDARRAY"
    grid = batch.grids[0]
    assert request["grid"]["crsCode"] == "EPSG:32620" == grid.crs.to_string()
    t = request["grid"]["affineTransform"]
    assert (t["scaleX"], t["scaleY"], t["shearX"], t["shearY"]) == (10, -10, 0, 0)
    assert (t["translateX"], t["translateY"]) == (grid.transform.c, grid.transform.f)
    assert request["grid"]["dimensions"] == {"width": 48, "height": 48}
    # The point lies in the patch's centre pixel (48 // 2), on a grid aligned to 10 m.
    x, y = points([(-61.83, 7.33)]).to_crs(32620).geometry.iloc[0].coords[0]
    col, row = ~grid.transform @ (x, y)
    assert int(col) == 24 and int(row) == 24 and t["translateX"] % 10 == 0
    assert batch.data.shape == (1, 48, 48, 6) and batch.data.dtype == np.uint16
    assert batch.data[0, 0, 0].tolist() == [code(t["translateX"]) + i for i in range(6)]


def test_each_patch_on_the_utm_zone_of_its_point(fake_ee, tmp_path):
    batch = source(tmp_path).read_patches(points([(-61.83, 7.33), (-66.5, 6.0)]), 16)
    assert [g.crs.to_epsg() for g in batch.grids] == [32620, 32619]


def test_results_keep_input_order_despite_retries_and_threads(fake_ee, tmp_path):
    lonlats = [(-61.9 + 0.01 * i, 7.3) for i in range(12)]
    src = source(tmp_path)
    grids = [src.grid_for(lon, lat, 16) for lon, lat in lonlats]
    # The first points are slow to succeed: they finish last, and must still come back first.
    for g in grids[:3]:
        fake_ee.failures[g.transform.c] = [ee.EEException("Too many concurrent aggregations."), ee.EEException("Internal error.")]
    waits = []
    src.sleep = waits.append
    batch = src.read_patches(points(lonlats), 16)
    assert [int(p[0, 0, 0]) for p in batch.data] == [code(g.transform.c) for g in grids]
    assert len(fake_ee.requests) == 12 + 6 and len(waits) == 6
    assert all(w2 > w1 for w1, w2 in zip(sorted(waits)[::2], sorted(waits)[1::2])), "backoff grows"


def test_rerun_is_served_from_the_cache(fake_ee, tmp_path):
    pts = points([(-61.83, 7.33), (-61.80, 7.35)])
    first = source(tmp_path).read_patches(pts, 16)
    assert len(fake_ee.requests) == 2
    again = source(tmp_path).read_patches(pts, 16)
    assert len(fake_ee.requests) == 2 and np.array_equal(first.data, again.data)
    other = gee.EarthEngineSource(gee.s2_composite("2022-01-01", "2023-01-01", BANDS), BANDS, tmp_path / "cache", progress=False)
    other.read_patches(pts, 16)
    assert len(fake_ee.requests) == 4, "another date window is another composite, not a cache hit"


def test_permanent_error_stops_at_once_and_names_the_grid(fake_ee, tmp_path):
    src = source(tmp_path, max_attempts=5)
    grid = src.grid_for(-61.83, 7.33, 16)
    fake_ee.failures[grid.transform.c] = [ee.EEException("Image.select: Pattern 'B99' did not match any bands.")]
    with pytest.raises(AsgmError, match="EPSG:32620 16x16 px.*B99"):
        src.read_patches(points([(-61.83, 7.33)]), 16)
    assert len(fake_ee.requests) == 1


def test_retries_give_up_after_max_attempts(fake_ee, tmp_path):
    src = source(tmp_path, max_attempts=3)
    src.sleep = lambda s: None
    grid = src.grid_for(-61.83, 7.33, 16)
    fake_ee.failures[grid.transform.c] = [ee.EEException("Service unavailable")] * 5
    with pytest.raises(AsgmError, match="still failing after 3 attempts"):
        src.read_patches(points([(-61.83, 7.33)]), 16)


def test_export_writes_a_tiled_region_composite(fake_ee, tmp_path):
    import rasterio

    region = box(-61.84, 7.32, -61.82, 7.34)  # about 2.2 km square
    out = export_composite(source(tmp_path), region, tmp_path / "composite.tif", tile_px=64)
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 32620 and src.descriptions == BANDS and src.res == (10, 10)
        data = src.read()
        tile_origin = code(src.transform.c + 640)  # second tile column
        assert data[0, 0, 64] == tile_origin and data[5, 0, 64] == tile_origin + 5
    n = len(fake_ee.requests)
    assert n == 16  # 221 x 221 px in 64 px tiles
    export_composite(source(tmp_path), region, tmp_path / "again.tif", tile_px=64)
    assert len(fake_ee.requests) == n, "a second export is served from the cache"


def test_missing_credentials_say_how_to_authenticate(monkeypatch):
    ee.Reset()

    def no_credentials():
        raise ee.EEException("Please authorize access to your Earth Engine account by running\n\nearthengine authenticate")

    monkeypatch.setattr(ee.data, "get_persistent_credentials", no_credentials)
    with pytest.raises(AsgmError, match=r"(?s)could not start with project 'p'.*earthengine authenticate.*IMAGERY=stac"):
        gee.initialize("p")
    for var in gee.PROJECT_ENV:
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(AsgmError, match="needs a Google Cloud project.*EE_PROJECT"):
        gee.initialize(None)
    monkeypatch.setenv("EE_PROJECT", "from-env")
    assert gee.resolve_project(None) == "from-env"


def test_initialize_once_per_session(fake_ee, monkeypatch):
    calls = []
    real = ee.Initialize
    monkeypatch.setattr(ee, "Initialize", lambda *a, **k: calls.append(k["project"]) or real(*a, **k))
    gee.initialize("test-project")
    assert calls == [], "already initialised by the fixture with this project: Earth Engine is not started again"
    gee.initialize("other-project")
    assert calls == ["other-project"]
    ee.Reset()
    gee.initialize("other-project")
    assert calls == ["other-project", "other-project"], "after a reset it starts again"
