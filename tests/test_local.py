import geopandas as gpd
import numpy as np
import pytest

from asgm.config import S2_BANDS
from asgm.errors import InputFileError
from asgm.imagery.local import LocalRasterSource
from conftest import LEFT, TOP, write_raster


def point(x, y):
    return gpd.GeoDataFrame({"patch_id": ["a"]}, geometry=gpd.points_from_xy([x], [y]), crs=32620).to_crs(4326)


def test_patch_is_centred_on_the_point_pixel(forest_raster):
    with LocalRasterSource(forest_raster, ("B4", "B2")) as source:
        batch = source.read_patches(point(LEFT + 505, TOP - 305), 48)  # pixel row 30, col 50
    grid = batch.grids[0]
    assert (grid.transform.c, grid.transform.f) == (LEFT + 260, TOP - 60)
    assert batch.data.shape == (1, 48, 48, 2)
    # Bands come in the requested order: B4 (file band 4) before B2 (file band 2).
    assert abs(batch.data[0, ..., 0].mean() - 1200) < 10 and abs(batch.data[0, ..., 1].mean() - 1000) < 10


def test_edge_patch_is_dropped_not_read(forest_raster):
    with LocalRasterSource(forest_raster, S2_BANDS) as source:
        batch = source.read_patches(point(LEFT + 55, TOP - 505), 48)
    assert batch.dropped == ["crosses the raster edge"] and batch.grids == [None]


def test_point_outside_the_raster_is_an_error(forest_raster):
    with LocalRasterSource(forest_raster, S2_BANDS) as source, pytest.raises(InputFileError, match=r"forest.tif: 1 point\(s\) lie outside this raster: \['a'\]"):
        source.read_patches(point(LEFT - 5000, TOP), 48)


def test_raster_without_needed_bands(tmp_path):
    path = write_raster(tmp_path / "rgb.tif", np.ones((3, 20, 20), np.uint16), bands=("B4", "B3", "B2"))
    with pytest.raises(InputFileError, match=r"rgb.tif: lacks band\(s\) \['B8', 'B11'\]; it has \['B4', 'B3', 'B2'\]"):
        LocalRasterSource(path, ("B2", "B8", "B11"))


def test_unnamed_bands_need_raster_bands(tmp_path):
    path = write_raster(tmp_path / "plain.tif", np.ones((3, 20, 20), np.uint16), descriptions=False)
    with pytest.raises(InputFileError, match="bands have no names.*"):
        LocalRasterSource(path, ("B2",))
    assert LocalRasterSource(path, ("B2",), raster_bands=("B4", "B3", "B2")).indexes == [3]
    with pytest.raises(InputFileError, match="has 3 bands but imagery.raster_bands names 2"):
        LocalRasterSource(path, ("B2",), raster_bands=("B3", "B2"))


def test_missing_or_unreadable_raster(tmp_path):
    with pytest.raises(InputFileError, match="raster not found"):
        LocalRasterSource(tmp_path / "none.tif", S2_BANDS)
    (tmp_path / "junk.tif").write_text("not a raster")
    with pytest.raises(InputFileError, match="junk.tif: not a readable raster"):
        LocalRasterSource(tmp_path / "junk.tif", S2_BANDS)
