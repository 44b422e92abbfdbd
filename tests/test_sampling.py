import json

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box

from asgm.errors import AsgmError, InputFileError
from asgm.regions import PatchGrid, read_boundary, utm_crs
from asgm.sampling import combine, random_negatives, read_points

BOUNDARY = box(-61.88, 7.28, -61.78, 7.38)  # about 11 km x 11 km near El Callao


def geojson(path, features):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": props, "geometry": geom} for geom, props in features]}))
    return path


def points_file(path, coords):
    return geojson(path, [({"type": "Point", "coordinates": c}, {"kind": "mine"}) for c in coords])


def metres(gdf):
    return np.column_stack([gdf.to_crs(32620).geometry.x, gdf.to_crs(32620).geometry.y])


def test_random_negatives_keep_their_distance(tmp_path):
    positives = read_points(points_file(tmp_path / "p.geojson", [(-61.83, 7.33), (-61.84, 7.34), (-61.82, 7.31)]), "mine", BOUNDARY)
    negatives = random_negatives(BOUNDARY, 60, positives, 679.0, seed=1)
    assert len(negatives) == 60 and (negatives["label"] == 0).all()
    assert negatives.within(BOUNDARY).all()
    neg, pos = metres(negatives), metres(positives)
    to_positives = np.linalg.norm(neg[:, None] - pos[None], axis=-1)
    between = np.linalg.norm(neg[:, None] - neg[None], axis=-1) + np.eye(len(neg)) * 1e9
    assert to_positives.min() >= 679.0 and between.min() >= 679.0
    again = random_negatives(BOUNDARY, 60, positives, 679.0, seed=1)
    assert np.array_equal(metres(again), neg), "same seed, same points"
    assert not np.array_equal(metres(random_negatives(BOUNDARY, 60, positives, 679.0, seed=2)), neg)


def test_too_many_random_negatives_is_a_clear_error():
    empty = gpd.GeoDataFrame(geometry=[], crs=4326)
    with pytest.raises(AsgmError, match="only .* of 5000 random negatives fit.*lower sampling.random_negatives"):
        random_negatives(BOUNDARY, 5000, empty, 679.0, seed=0, max_tries=5)


def test_read_points_labels_and_ids(tmp_path):
    pts = read_points(points_file(tmp_path / "p.geojson", [(-61.83, 7.33), (-61.84, 7.34)]), "curated_negative")
    assert pts["patch_id"].tolist() == ["curated_negative_0000", "curated_negative_0001"]
    assert (pts["label"] == 0).all() and pts["kind"].tolist() == ["mine", "mine"]
    mines = read_points(points_file(tmp_path / "m.geojson", [(-61.8, 7.3)]), "mine")
    combined = combine(mines, pts)
    assert combined["label"].tolist() == [1, 0, 0] and {"lon", "lat"} <= set(combined.columns)


def test_points_outside_the_boundary_are_named(tmp_path):
    path = points_file(tmp_path / "mines.geojson", [(-61.83, 7.33), (-60.0, 7.33)])
    with pytest.raises(InputFileError, match=r"mines.geojson.*1 of 2 points lie outside the boundary: #1 \(-60.00000"):
        read_points(path, "mine", BOUNDARY)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not a readable GeoJSON"),
        ('{"type": "FeatureCollection", "features": []}', "contains no features"),
        (json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {"type": "LineString", "coordinates": [[-61.8, 7.3], [-61.7, 7.3]]}}]}), "expected Point"),
        (json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [630000, 810000]}}]}), "not longitude/latitude.*reproject it to EPSG:4326"),
    ],
    ids=["invalid-json", "empty", "wrong-geometry", "projected-coordinates"],
)
def test_bad_point_files_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "bad.geojson"
    path.write_text(content)
    with pytest.raises(InputFileError, match=f"(?s)bad.geojson.*{message}"):
        read_points(path, "mine")


def test_missing_file_and_bad_boundary(tmp_path):
    with pytest.raises(InputFileError, match="file not found"):
        read_points(tmp_path / "nope.geojson", "mine")
    path = points_file(tmp_path / "points.geojson", [(-61.83, 7.33)])
    with pytest.raises(InputFileError, match="expected Polygon or MultiPolygon"):
        read_boundary(path)


def test_patch_grid_puts_the_point_in_the_centre_pixel():
    grid = PatchGrid.centred_on(630_005.0, 810_003.0, 48, 10.0, utm_crs(-61.83, 7.33))
    col, row = ~grid.transform @ (630_005.0, 810_003.0)
    assert (int(col), int(row)) == (24, 24)
    assert grid.transform.c % 10 == 0 and grid.transform.f % 10 == 0
    assert utm_crs(-61.83, 7.33).to_epsg() == 32620 and utm_crs(-45.9, -1.4).to_epsg() == 32723
