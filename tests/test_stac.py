"""The STAC source on a local static catalogue of small COGs written by the test."""

from datetime import datetime, timezone

import geopandas as gpd
import numpy as np
import pystac
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import box, mapping

from asgm.errors import AsgmError
from asgm.imagery.stac import ASSETS, StacSource

UTM20 = "EPSG:32620"
LEFT, TOP = 630_000.0, 810_000.0
SIZE = 64  # pixels of 10 m per scene
BANDS = ("B2", "B4", "B8A", "B11")


def write_cog(path, data, res):
    with rasterio.open(path, "w", driver="COG", width=data.shape[1], height=data.shape[0], count=1, dtype="uint16",
                       crs=UTM20, transform=from_origin(LEFT, TOP, res, res), nodata=0) as dst:
        dst.write(data, 1)
    return path


def add_scene(catalog, root, name, when, value, baseline, scl_value=4, cloud_rows=0, collection="sentinel-2-l2a", offset_applied=None):
    """A scene whose every band is ``value`` (digital numbers as stored), its SCL ``scl_value``
    except ``cloud_rows`` top rows of 20 m pixels marked cloud (9)."""
    footprint = gpd.GeoSeries([box(LEFT, TOP - SIZE * 10, LEFT + SIZE * 10, TOP)], crs=UTM20).to_crs(4326).iloc[0]
    properties = {"s2:processing_baseline": baseline, "eo:cloud_cover": 10.0}
    if offset_applied is not None:
        properties["earthsearch:boa_offset_applied"] = offset_applied
    item = pystac.Item(name, mapping(footprint), list(footprint.bounds), when, properties, collection=collection)
    for band in BANDS:
        href = write_cog(root / f"{name}_{band}.tif", np.full((SIZE, SIZE), value, np.uint16), 10)
        item.add_asset(ASSETS[band], pystac.Asset(str(href), media_type=pystac.MediaType.COG, roles=["data"]))
    scl = np.full((SIZE // 2, SIZE // 2), scl_value, np.uint16)
    scl[:cloud_rows] = 9
    item.add_asset("scl", pystac.Asset(str(write_cog(root / f"{name}_scl.tif", scl, 20)), media_type=pystac.MediaType.COG))
    catalog.add_item(item)


@pytest.fixture
def catalogue(tmp_path):
    root = tmp_path / "stac"
    root.mkdir()
    catalog = pystac.Catalog("s2", "a tiny Sentinel-2 L2A catalogue")
    day = lambda m, d: datetime(2023, m, d, 14, tzinfo=timezone.utc)  # noqa: E731
    add_scene(catalog, root, "old_baseline", day(1, 5), 500, "03.01")              # no offset: 500
    add_scene(catalog, root, "new_baseline", day(2, 5), 1700, "05.09")             # offset removed: 700
    add_scene(catalog, root, "applied", day(3, 5), 900, "04.00", offset_applied=True)  # already removed: 900
    add_scene(catalog, root, "cloudy", day(4, 5), 8000, "05.09", cloud_rows=4)     # clear below the cloud: 7000
    add_scene(catalog, root, "after_window", datetime(2024, 1, 1, tzinfo=timezone.utc), 9999, "05.09")
    add_scene(catalog, root, "other_collection", day(5, 5), 9999, "05.09", collection="sentinel-2-l1c")
    catalog.normalize_hrefs(str(root))
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"


def source(catalogue, tmp_path, **kw):
    return StacSource(str(catalogue), "sentinel-2-l2a", "2023-01-01", "2024-01-01", BANDS, tmp_path / "cache", progress=False, workers=2, **kw)


def test_median_over_clear_scenes_with_the_offset_removed(catalogue, tmp_path):
    src = source(catalogue, tmp_path)
    grid = src.grid_for(*gpd.GeoSeries.from_xy([LEFT + 320], [TOP - 320], crs=UTM20).to_crs(4326).iloc[0].coords[0], 16)
    names = [i.id for i in src.items(tuple(gpd.GeoSeries([box(*grid.bounds)], crs=UTM20).to_crs(4326).total_bounds))]
    assert names == ["old_baseline", "new_baseline", "applied", "cloudy"], "window end is exclusive; other collections ignored"
    (pixels,) = src.fetch_grids([grid])
    assert pixels.shape == (16, 16, 4) and pixels.dtype == np.uint16
    # Clear everywhere in this patch: median of 500, 700, 900, 7000.
    assert np.all(pixels == 800)


def test_scl_clouds_are_masked_on_the_patch_grid(catalogue, tmp_path):
    src = source(catalogue, tmp_path)
    # A patch at the scene's top edge: its top 8 rows (4 SCL pixels of 20 m) are cloudy in one scene.
    x, y = LEFT + 320, TOP - 80
    lon, lat = gpd.GeoSeries.from_xy([x], [y], crs=UTM20).to_crs(4326).iloc[0].coords[0]
    grid = src.grid_for(lon, lat, 16)
    row_of_scene_top = int(round((grid.transform.f - TOP) / 10))
    (pixels,) = src.fetch_grids([grid])
    cloudy_rows = slice(max(row_of_scene_top, 0), row_of_scene_top + 8)
    below = slice(row_of_scene_top + 8, 16)
    assert np.all(pixels[cloudy_rows, :, 0] == 700), "median of 500, 700, 900 where the cloud is masked"
    assert np.all(pixels[below, :, 0] == 800)
    if row_of_scene_top > 0:
        assert np.all(pixels[:row_of_scene_top] == 0), "outside every scene: nodata"


def test_read_patches_and_cache(catalogue, tmp_path, monkeypatch):
    pts = gpd.GeoDataFrame({"patch_id": ["a", "b"]}, geometry=gpd.points_from_xy([LEFT + 200, LEFT + 400], [TOP - 300, TOP - 400]), crs=UTM20)
    batch = source(catalogue, tmp_path).read_patches(pts, 16)
    assert batch.data.shape == (2, 16, 16, 4) and [g.crs.to_epsg() for g in batch.grids] == [32620, 32620]
    assert np.all(batch.data == 800)
    # A rerun reads the cache and never opens the catalogue.
    monkeypatch.setattr(StacSource, "client", lambda self: pytest.fail("catalogue opened on a cached rerun"))
    again = source(catalogue, tmp_path).read_patches(pts, 16)
    assert np.array_equal(again.data, batch.data)


def test_a_patch_with_no_scene_is_nodata(catalogue, tmp_path):
    src = source(catalogue, tmp_path)
    (pixels,) = src.fetch_grids([src.grid_for(-60.0, 5.0, 8)])
    assert pixels.shape == (8, 8, 4) and not pixels.any()


def test_bad_catalogue_and_b10_are_refused(tmp_path):
    with pytest.raises(AsgmError, match="cannot open the STAC catalogue"):
        StacSource(str(tmp_path / "missing.json"), "c", "2023-01-01", "2024-01-01", BANDS, tmp_path, progress=False).client()
    with pytest.raises(AsgmError, match="no B10"):
        StacSource("x", "c", "2023-01-01", "2024-01-01", ("B2", "B10"), tmp_path)


def test_dataset_from_stac_with_osm_burned_on_each_patch_grid(catalogue, tmp_path):
    from shapely.geometry import LineString

    from asgm.config import PatchConfig
    from asgm.osm import OsmRasterizer
    from asgm.patches import build_dataset

    pts = gpd.GeoDataFrame({"patch_id": ["a", "b"], "label": [1, 0]},
                           geometry=gpd.points_from_xy([LEFT + 200, LEFT + 400], [TOP - 300, TOP - 400]), crs=UTM20).to_crs(4326)
    road = gpd.GeoDataFrame({"highway": ["track"]}, geometry=[LineString([(LEFT, TOP - 305), (LEFT + 640, TOP - 305)])], crs=UTM20)
    src = source(catalogue, tmp_path)
    assert src.crs is None
    ds = build_dataset(pts, src, OsmRasterizer(road, src.crs, ("highway",)), 16, tmp_path / "ds", PatchConfig(), progress=False)
    assert ds.channels == [*BANDS, "highway"] and ds.patches.shape == (2, 16, 16, 5)
    assert ds.index["crs"].tolist() == ["EPSG:32620", "EPSG:32620"]
    assert np.all(ds.patches[..., :4] == 800)
    # The road (y = TOP - 305) crosses patch a at its centre row, and misses patch b (centred 100 m lower).
    highway = np.asarray(ds.patches[..., 4])
    assert highway[0].sum(axis=1).tolist() == [16 if r == 8 else 0 for r in range(16)]
    assert highway[1].sum() == 0
