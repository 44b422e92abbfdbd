"""The label audit against a reference map (asgm.labels), on hand-built patches and polygons whose
answers are known, and confident learning on a toy set with planted label flips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import Polygon, box

from asgm.config import LabelsConfig
from asgm.errors import AsgmError, InputFileError
from asgm.labels import (MINE_MAPPED_AFTER_IMAGE, MINE_NOT_IN_REFERENCE, NON_MINE_IN_REFERENCE, agreed, audit_dataset, audit_labels, confident_learning_flags,
                         read_reference)
from asgm.patches import read_dataset
from asgm.regions import WGS84, utm_crs
from conftest import snapshot

HALF = 240.0  # half of a 48 px patch at 10 m


def write_patches(path: Path, rows: list[dict], size: int = 48, meta: dict | None = None) -> Path:
    """A dataset directory whose patches hold their row number in every pixel (to check which rows
    an audited copy keeps)."""
    path.mkdir(parents=True)
    patches = np.broadcast_to(np.arange(len(rows), dtype=np.int16)[:, None, None, None] + 100, (len(rows), size, size, 3)).copy()
    np.save(path / "patches.npy", patches)
    pd.DataFrame(rows).to_csv(path / "index.csv", index=False)
    (path / "dataset.json").write_text(json.dumps({"channels": ["B2", "B3", "B4"], "scale": 10000, "patch_size": size, "resolution_m": 10, **(meta or {})}))
    return path


def square(lon: float, lat: float, half: float = HALF, crs=None):
    """The patch square around (lon, lat) in its UTM zone (or ``crs``), and that CRS."""
    crs = crs or utm_crs(lon, lat)
    x, y = gpd.GeoSeries(gpd.points_from_xy([lon], [lat]), crs=WGS84).to_crs(crs).iloc[0].coords[0]
    return box(x - half, y - half, x + half, y + half), crs


def to_wgs84(geometry, crs) -> Polygon:
    return gpd.GeoSeries([geometry.segmentize(10)], crs=crs).to_crs(WGS84).iloc[0]


def write_reference(path: Path, features: list[tuple[object, object]], key: str = "year") -> Path:
    """A GeoJSON in WGS 84 of (geometry, year-or-date) features."""
    gdf = gpd.GeoDataFrame({key: [v for _, v in features]}, geometry=[g for g, _ in features], crs=WGS84)
    path.parent.mkdir(parents=True, exist_ok=True)
    gdf.to_file(path, driver="GeoJSON")
    return path


def test_cover_is_measured_in_each_patchs_own_utm_zone_beside_a_zone_boundary(tmp_path):
    # zone 20 ends at 60° W: one patch just west of it, one just east; the reference is in WGS 84
    west, east = (-60.005, 5.0), (-59.995, 5.0)  # 550 m either side, 1.1 km apart
    west_square, west_crs = square(*west)
    east_square, east_crs = square(*east)
    assert west_crs != east_crs
    # the western half of the west patch, the northern quarter of the east patch, drawn in metres of their own zones
    wl, wb, wr, wt = west_square.bounds
    el, eb, er, et = east_square.bounds
    reference = write_reference(tmp_path / "ref.geojson", [(to_wgs84(box(wl - 500, wb - 500, (wl + wr) / 2, wt + 500), west_crs), 2020),
                                                         (to_wgs84(box(el, et - HALF / 2, er, et), east_crs), 2020)])
    data = write_patches(tmp_path / "ds", [{"patch_id": "west", "lon": west[0], "lat": west[1], "label": 0, "date_end": "2021-12-31"},
                                           {"patch_id": "east", "lon": east[0], "lat": east[1], "label": 0, "date_end": "2021-12-31"}])
    audit = audit_labels(read_dataset(data), read_reference(reference), progress=False).set_index("patch_id")
    assert audit.loc["west", "cover"] == pytest.approx(0.5, abs=0.005)
    assert audit.loc["east", "cover"] == pytest.approx(0.25, abs=0.005)
    assert audit.loc["west", "conflict"] == NON_MINE_IN_REFERENCE and audit.loc["east", "conflict"] == ""  # 0.25 is not above 0.25


def test_cover_uses_the_grid_the_dataset_recorded(tmp_path):
    # a patch whose grid (crs, x_centre, y_centre) is recorded: its square is that grid, not one around lon/lat
    crs = utm_crs(-61.8, 7.3)
    grid_square = box(630_000, 810_000, 630_480, 810_480)
    centre = gpd.GeoSeries([grid_square.centroid], crs=crs).to_crs(WGS84).iloc[0]
    reference = write_reference(tmp_path / "ref.geojson", [(to_wgs84(box(630_000, 810_000, 630_120, 810_480), crs), 2019)])
    data = write_patches(tmp_path / "ds", [{"patch_id": "a", "lon": centre.x + 0.01, "lat": centre.y, "label": 0, "crs": crs.to_string(),
                                            "x_centre": 630_240.0, "y_centre": 810_240.0}], meta={"imagery_window": ["2021-01-01", "2022-01-01"]})
    audit = audit_labels(read_dataset(data), read_reference(reference), progress=False)
    assert audit["cover"].iloc[0] == pytest.approx(0.25, abs=0.005)


def test_mining_mapped_after_the_image_is_not_a_conflict(tmp_path):
    lon, lat = -61.8, 7.3
    patch, crs = square(lon, lat)
    whole = to_wgs84(patch.buffer(200), crs)
    later = write_reference(tmp_path / "later" / "mining_202200_simplified.geojson", [(whole, 202200)])
    earlier = write_reference(tmp_path / "earlier" / "mining_202100_simplified.geojson", [(whole, 202100)])
    quarter = write_reference(tmp_path / "quarter.geojson", [(whole, "2021-10-01")], key="date")
    data = write_patches(tmp_path / "ds", [{"patch_id": "n", "lon": lon, "lat": lat, "label": 0, "date_end": "2021-12-31"},
                                           {"patch_id": "m", "lon": lon, "lat": lat, "label": 1, "date_end": "2021-12-31"}])
    dataset = read_dataset(data)
    after = audit_labels(dataset, read_reference(later.parent), progress=False).iloc[0]
    assert (after["cover"], after["cover_any_year"], after["first_year"], after["conflict"]) == (0.0, 1.0, 2022, "")
    # a mine whose mining the reference maps only the year after its image: kept unless asked
    mine = audit_labels(dataset, read_reference(later.parent), progress=False).iloc[1]
    assert (mine["distance_m"], np.isnan(mine["distance_by_date_m"]), mine["conflict"]) == (0.0, True, "")
    strict = audit_labels(dataset, read_reference(later.parent), LabelsConfig(mine_mapped_later=True), progress=False)
    assert strict["conflict"].tolist() == ["", MINE_MAPPED_AFTER_IMAGE]
    assert audit_labels(dataset, read_reference(earlier.parent), LabelsConfig(mine_mapped_later=True), progress=False)["conflict"].iloc[1] == ""
    before = audit_labels(dataset, read_reference(earlier.parent), progress=False).iloc[0]
    assert (before["cover"], before["first_year"], before["conflict"]) == (1.0, 2021, NON_MINE_IN_REFERENCE)
    assert audit_labels(dataset, read_reference(quarter), progress=False)["conflict"].iloc[0] == NON_MINE_IN_REFERENCE
    # Earth Genome's 2025 Q3 (202503) starts on 1 July: after an image window that ends on 30 June
    q3 = write_reference(tmp_path / "q3.geojson", [(whole, 202503)])
    mid = write_patches(tmp_path / "mid", [{"patch_id": "n", "lon": lon, "lat": lat, "label": 0, "date_end": "2025-06-30"}])
    assert audit_labels(read_dataset(mid), read_reference(q3), progress=False)["cover"].iloc[0] == 0.0


def test_a_mine_far_from_any_reference_mining_is_flagged_with_its_distance(tmp_path):
    lon, lat = -61.8, 7.3
    patch, crs = square(lon, lat)
    left, bottom, right, top = patch.bounds
    far = to_wgs84(box(right + 1000, bottom, right + 1400, top), crs)  # 1 km east of the patch
    reference = write_reference(tmp_path / "ref.geojson", [(far, 2018)])
    data = write_patches(tmp_path / "ds", [{"patch_id": "m", "lon": lon, "lat": lat, "label": 1, "date_end": "2021-12-31"},
                                           {"patch_id": "lonely", "lon": lon + 1, "lat": lat, "label": 1, "date_end": "2021-12-31"}])
    audit = audit_labels(read_dataset(data), read_reference(reference), progress=False).set_index("patch_id")
    assert audit.loc["m", "distance_m"] == pytest.approx(1000, abs=2)
    assert audit.loc["m", "conflict"] == MINE_NOT_IN_REFERENCE
    assert np.isnan(audit.loc["lonely", "distance_m"]) and audit.loc["lonely", "conflict"] == MINE_NOT_IN_REFERENCE
    tolerant = audit_labels(read_dataset(data), read_reference(reference), LabelsConfig(mine_max_distance_m=1500), progress=False).set_index("patch_id")
    assert tolerant.loc["m", "conflict"] == "" and tolerant.loc["lonely", "conflict"] == MINE_NOT_IN_REFERENCE


@pytest.fixture
def conflicting(tmp_path):
    """Four patches: an agreeing mine, an agreeing non-mine, a non-mine on mining, a mine far from any."""
    rows, features = [], []
    for i, (pid, label, on_mining) in enumerate([("mine_ok", 1, True), ("forest", 0, False), ("pond", 0, True), ("road", 1, False)]):
        lon, lat = -61.8 + 0.1 * i, 7.3
        rows.append({"patch_id": pid, "lon": lon, "lat": lat, "label": label, "category": "x", "date_end": "2021-12-31"})
        if on_mining:
            patch, crs = square(lon, lat)
            features.append((to_wgs84(patch.buffer(100), crs), 2019))
    return write_patches(tmp_path / "ds", rows), write_reference(tmp_path / "ref" / "mining_201900_simplified.geojson", features).parent


@pytest.mark.parametrize("action", ["drop", "relabel"])
def test_the_audited_directory_drops_or_relabels_the_conflicts_and_reads_back(tmp_path, conflicting, action):
    data, reference = conflicting
    before = snapshot(data)
    out = audit_dataset(data, reference, tmp_path / "audited", LabelsConfig(action=action), progress=False)
    audited = read_dataset(out)
    audit = pd.read_csv(out / "label_audit.csv", keep_default_na=False).set_index("patch_id")
    assert audit["conflict"].to_dict() == {"mine_ok": "", "forest": "", "pond": NON_MINE_IN_REFERENCE, "road": MINE_NOT_IN_REFERENCE}
    index = audited.index.set_index("patch_id")
    if action == "drop":
        assert list(index.index) == ["mine_ok", "forest"]
        assert audited.patches[:, 0, 0, 0].tolist() == [100, 101]  # rows 0 and 1 of the input, in order
    else:
        assert index["label"].to_dict() == {"mine_ok": 1, "forest": 0, "pond": 1, "road": 0}
        assert audited.patches[:, 0, 0, 0].tolist() == [100, 101, 102, 103]
    assert index["label_original"].to_dict() == {k: v for k, v in {"mine_ok": 1, "forest": 0, "pond": 0, "road": 1}.items() if k in index.index}
    assert audited.meta["label_audit"]["conflicts"] == {NON_MINE_IN_REFERENCE: 1, MINE_NOT_IN_REFERENCE: 1}
    assert (out / "label_audit.png").stat().st_size > 10_000
    assert snapshot(data) == before  # the input is never touched
    assert agreed(audit.reset_index()).to_dict() == {"mine_ok": True, "forest": True, "pond": False, "road": False}


def test_a_rerun_reuses_the_audit_and_other_directories_are_never_replaced(tmp_path, conflicting):
    data, reference = conflicting
    out = audit_dataset(data, reference, tmp_path / "audited", progress=False)
    stamp = (out / "patches.npy").stat().st_mtime_ns
    audit_dataset(data, reference, out, progress=False)
    assert (out / "patches.npy").stat().st_mtime_ns == stamp
    mine = tmp_path / "my_notes"
    mine.mkdir()
    (mine / "notes.txt").write_text("field trip")
    with pytest.raises(AsgmError, match="my_notes"):
        audit_dataset(data, reference, mine, progress=False)
    assert (mine / "notes.txt").read_text() == "field trip" and len(list(mine.iterdir())) == 1
    before = sorted(p.name for p in data.iterdir())
    with pytest.raises(AsgmError, match="is the input dataset.*never changes its input"):
        audit_dataset(data, reference, data, progress=False)
    with pytest.raises(AsgmError, match="inside the input dataset"):
        audit_dataset(data, reference, data / "audited", progress=False)
    assert sorted(p.name for p in data.iterdir()) == before


def test_a_dataset_without_image_dates_needs_one(tmp_path, conflicting):
    data, reference = conflicting
    index = pd.read_csv(data / "index.csv").drop(columns="date_end")
    plain = write_patches(tmp_path / "plain", index.to_dict("records"))
    with pytest.raises(AsgmError, match="--image_date_end"):
        audit_dataset(plain, reference, tmp_path / "out", progress=False)
    out = audit_dataset(plain, reference, tmp_path / "out", LabelsConfig(image_date_end="2022-01-01"), progress=False)
    assert read_dataset(out).meta["label_audit"]["conflicts"][NON_MINE_IN_REFERENCE] == 1


@pytest.mark.parametrize("case, expected", [
    ("missing", "does not exist"),
    ("empty_folder", "holds no polygon file"),
    ("no_year", "has no year or date property"),
    ("null_year", "have no year"),
    ("bad_year", "neither a year"),
    ("empty_file", "no features"),
    ("projected_without_crs", "not longitude/latitude"),
    ("points", "expected Polygon or MultiPolygon"),
])
def test_a_bad_reference_is_named_with_the_fix(tmp_path, case, expected):
    poly = box(-61.8, 7.3, -61.79, 7.31)
    path = tmp_path / "ref.geojson"
    if case == "missing":
        path = tmp_path / "nowhere"
    elif case == "empty_folder":
        path = tmp_path / "folder"
        path.mkdir()
        (path / "README.md").write_text("no polygons here")
    elif case == "no_year":
        write_reference(path, [(poly, 1)], key="name")
    elif case == "null_year":
        write_reference(path, [(poly, 2020), (poly, None)])
    elif case == "bad_year":
        write_reference(path, [(poly, "last spring")])
    elif case == "empty_file":
        path.write_text('{"type": "FeatureCollection", "features": []}')
    elif case == "projected_without_crs":
        path.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"year": 2020},
                                    "geometry": {"type": "Polygon", "coordinates": [[[630000, 810000], [630480, 810000], [630480, 810480], [630000, 810000]]]}}]}))
    elif case == "points":
        path.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"year": 2020},
                                    "geometry": {"type": "Point", "coordinates": [-61.8, 7.3]}}]}))
    with pytest.raises(InputFileError, match=expected) as error:
        read_reference(path)
    assert "How to fix" in str(error.value)


def test_cli_audits_with_its_defaults_and_refuses_bad_input_with_exit_2(tmp_path, conflicting):
    data, reference = conflicting
    run = subprocess.run([sys.executable, "-m", "asgm.labels", "--input_directory", str(data), "--reference", str(reference),
                          "--output_directory", str(tmp_path / "audited")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "1 of 2 non-mines" in run.stdout and "1 of 2 mines" in run.stdout and "2 of 4 patches kept" in run.stdout
    bad = subprocess.run([sys.executable, "-m", "asgm.labels", "--input_directory", str(data), "--reference", str(tmp_path / "nowhere"),
                          "--output_directory", str(tmp_path / "other")], capture_output=True, text=True)
    assert bad.returncode == 2 and "nowhere" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "other").exists()
    negative = subprocess.run([sys.executable, "-m", "asgm.labels", "--input_directory", str(data), "--reference", str(reference),
                               "--output_directory", str(tmp_path / "other"), "--negative_max_cover", "nan"], capture_output=True, text=True)
    assert negative.returncode == 2 and "--negative_max_cover" in negative.stderr


def test_confident_learning_finds_planted_label_flips():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    rng = np.random.default_rng(0)
    n = 600
    truth = np.arange(n) % 2
    features = rng.normal(0, 1, (n, 2)) + 2.5 * truth[:, None]
    noisy = truth.copy()
    flipped = rng.choice(n, 40, replace=False)
    noisy[flipped] = 1 - noisy[flipped]
    probability = cross_val_predict(LogisticRegression(), features, noisy, cv=5, method="predict_proba")[:, 1]
    flags = confident_learning_flags(noisy, probability)
    found = flags[flipped].mean()
    precision = (flags & (noisy != truth)).sum() / flags.sum()
    assert found >= 0.8 and precision >= 0.8, (found, precision)
    with pytest.raises(AsgmError, match="one probability per label"):
        confident_learning_flags(noisy, probability[:-1])
    with pytest.raises(AsgmError, match="mines and non-mines"):
        confident_learning_flags(np.zeros(n), probability)
