"""Monitoring: period settings, change classes, areas per zone, scar delineation, the SYNTHETIC
history and the alert file."""

import json
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from pyproj import Geod
from rasterio.transform import from_origin
from scipy import ndimage
from shapely.geometry import Polygon, box

from asgm.config import MonitoringConfig, SyntheticConfig, load_profile
from asgm.errors import AsgmError, AsgmWarning, ConfigError
from asgm.imagery.demo_history import generate_demo_history
from asgm.monitor import (CHANGE_CLASSES, alerts, change_classes, change_polygons, detection_windows, established_ground, mask_polygons,
                          window_products, zone_statistics)
from asgm.scar import SCAR_BANDS, Grid, scar_mask
from tests.conftest import LEFT, TOP, UTM20, ZONES_OSM, snapshot, write_raster

ROOT = Path(__file__).resolve().parents[1]
GRID = Grid(from_origin(630_000, 810_000, 10, 10), rasterio.crs.CRS.from_string(UTM20), (60, 60))


@pytest.fixture
def project(tmp_path):
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "demo.yaml", tmp_path / "configs" / "demo.yaml")
    return tmp_path


def set_periods(project, text):
    path = project / "configs" / "demo.yaml"
    yaml = path.read_text()
    start = yaml.index("  periods:")
    end = yaml.index("  model: null                   # null: the scan model")
    path.write_text(yaml[:start] + text + yaml[end:])


@pytest.mark.parametrize("periods, message", [
    ("  periods:\n    - {name: '2021'}\n", "a single period shows no change"),
    ("  periods:\n    - {name: '2021'}\n    - {name: '2021'}\n", r"periods\[1\].name.*more than one period"),
    ("  periods:\n    - {name: '../x'}\n    - {name: b}\n", r"periods\[0\].name.*not a plain name"),
    ("  periods:\n    - {name: a, date_start: 2022-01-01}\n    - {name: b, date_start: 2021-01-01}\n", r"periods\[1\].date_start.*not in time order"),
    ("  periods:\n    - {name: a, colour: red}\n    - {name: b}\n", r"periods\[0\].colour.*unknown key"),
    ("  periods: 2021\n", "monitoring.periods.*must be a list"),
    ("  periods:\n    - {name: a, date_start: banana}\n    - {name: b}\n", r"periods\[0\].date_start.*'banana' is not a date"),
    ("  periods:\n    - {name: a, date_start: 2022-01-01, date_end: 2021-01-01}\n    - {name: b}\n", r"periods\[0\].date_end.*not after date_start"),
    ("  periods:\n    - {name: a, date_start: 2021-01-01, date_end: 2022-07-01}\n    - {name: b, date_start: 2022-01-01, date_end: 2023-01-01}\n",
     r"periods\[1\].date_start.*periods overlap"),
    ("  periods:\n    - {name: alerts}\n    - {name: b}\n", r"periods\[0\].name.*'alerts' is the name of one of monitoring's outputs"),
    ("  periods:\n    - {name: a}\n    - {name: summary.csv}\n", r"periods\[1\].name.*'summary.csv' is the name of one of monitoring's outputs"),
    ("  periods:\n    - {name: a}\n    - {name: history.json}\n", r"periods\[1\].name.*'history.json' is the name"),
], ids=["one", "duplicate", "path", "order", "key", "type", "banana", "end-before-start", "overlap", "alerts", "summary", "history"])
def test_bad_periods_name_the_setting(project, periods, message):
    set_periods(project, periods)
    with pytest.raises(ConfigError, match=f"(?s)demo.yaml.*{message}.*How to fix"):
        load_profile("demo", root=project)


def remote_window(profile_text: str, source: str) -> str:
    """The demo profile turned into a gee or stac one with a 2023 window (no local composite)."""
    return (profile_text.replace("source: demo ", f"source: {source} ").replace("  path: data/demo/demo/s2_l1c_composite.tif\n", "")
            .replace("\n  date_start: 2024-01-01", "\n  date_start: 2023-01-01").replace("\n  date_end: 2025-01-01", "\n  date_end: 2024-01-01"))


@pytest.mark.parametrize("setting, value, message", [
    ("min_change_ha", ".nan", "monitoring.min_change_ha.*not a size"),
    ("demo_size_km", ".nan", "monitoring.demo_size_km.*not a positive size"),
])
def test_monitoring_numbers_that_are_not_numbers_are_refused(project, setting, value, message):
    path = project / "configs" / "demo.yaml"
    text = path.read_text()
    line = next(l for l in text.splitlines() if l.startswith(f"  {setting}:"))
    path.write_text(text.replace(line, f"  {setting}: {value}"))
    with pytest.raises(ConfigError, match=f"(?s){message}.*How to fix"):
        load_profile("demo", root=project)


def test_gee_periods_need_date_windows(project):
    path = project / "configs" / "demo.yaml"
    path.write_text(remote_window(path.read_text(), "gee"))
    set_periods(project, "  periods:\n    - {name: a, date_start: 2022-01-01, date_end: 2023-01-01}\n    - {name: b, date_start: 2023-01-01}\n")
    with pytest.raises(ConfigError, match=r"(?s)periods\[1\].date_start/date_end.*ISO dates"):
        load_profile("demo", root=project)


def test_stac_periods_are_exported_once_each_with_their_own_window(project, monkeypatch):
    """For gee/stac profiles each period's composite is exported over the scan boundary with the
    period's dates and cached: a rerun exports nothing (offline: the source and the export are fakes)."""
    import contextlib

    import asgm.imagery
    import asgm.imagery.remote
    from asgm.monitor import period_rasters

    path = project / "configs" / "demo.yaml"
    path.write_text(remote_window(path.read_text(), "stac"))
    boundary = project / "data" / "demo" / "demo" / "boundary.geojson"
    boundary.parent.mkdir(parents=True)
    gpd.GeoDataFrame(geometry=[box(-61.9, 7.3, -61.8, 7.4)], crs=4326).to_file(boundary)
    cfg = load_profile("demo", root=project)
    windows, exported = [], []

    @contextlib.contextmanager
    def fake_source(profile, progress=True):
        windows.append((profile.imagery.date_start, profile.imagery.date_end))
        yield "source"

    def fake_export(source, region, target):
        exported.append(Path(target).name)
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_bytes(b"tif")
        return Path(target)

    monkeypatch.setattr(asgm.imagery, "open_source", fake_source)
    monkeypatch.setattr(asgm.imagery.remote, "export_composite", fake_export)
    rasters, history = period_rasters(cfg, progress=False)
    assert history is None and list(rasters) == ["2021", "2022", "2023", "2024"]
    assert windows == [("2021-01-01", "2022-01-01"), ("2022-01-01", "2023-01-01"), ("2023-01-01", "2024-01-01"), ("2024-01-01", "2025-01-01")]
    assert exported == ["2021.tif", "2022.tif", "2023.tif", "2024.tif"]
    assert all(p.parent == cfg.cache_dir / "monitoring" / "demo" for p in rasters.values())
    period_rasters(cfg, progress=False)
    assert len(exported) == 4, "a rerun reuses the exported composites"


def test_shipped_periods_load():
    cfg = load_profile("demo", root=ROOT)
    assert [p.name for p in cfg.monitoring.periods] == ["2021", "2022", "2023", "2024"]
    assert cfg.monitoring.periods[0].date_start == "2021-01-01"


def square(mask, row, col, side):
    mask[row:row + side, col:col + side] = True
    return mask


def test_change_classes_on_hand_built_footprints():
    pixel_ha = GRID.pixel_ha  # 0.01 ha
    empty = np.zeros(GRID.shape, dtype=bool)
    before = square(square(square(empty.copy(), 2, 2, 8), 2, 30, 8), 40, 40, 10)  # A, B, C
    current = square(square(empty.copy(), 2, 2, 8), 2, 30, 16)  # A persists, B grows, C is gone
    current = square(current, 40, 5, 9)  # D is new
    classes, new = change_classes(current, before, before, pixel_ha, min_change_ha=0.5, tolerance_px=1)
    name = {i + 1: c for i, c in enumerate(CHANGE_CLASSES)}
    assert name[classes[5, 5]] == "persisting"
    assert name[classes[5, 35]] == "expanded" and name[classes[15, 40]] == "expanded"
    assert name[classes[45, 45]] == "receded"
    assert name[classes[44, 9]] == "new"
    assert not new[5, 5] and new[15, 40] and new[44, 9] and not new[45, 45]
    # the first period: everything is new; a small new patch is below the reporting size
    first, _ = change_classes(current, None, None, pixel_ha)
    assert set(np.unique(first)) == {0, 1 + CHANGE_CLASSES.index("new")}
    tiny = square(empty.copy(), 40, 5, 3)
    assert not change_classes(tiny, empty, empty, pixel_ha, min_change_ha=0.5)[0].any()
    # D was already there, mapped only weakly (possibly mine ground): not new, and A's growth into
    # a weakly mapped place is not new either
    weak = square(square(empty.copy(), 40, 5, 9), 2, 38, 8)
    classes, new = change_classes(current, before, before, pixel_ha, min_change_ha=0.5, tolerance_px=1, possible_before=weak)
    assert name[classes[44, 9]] == "persisting" and not new[44, 9]
    assert name[classes[15, 40]] == "expanded" and new[15, 40] and not new[5, 40]
    # a pit beside places that only looked possibly mine, never mapped: new, not expanded, and its
    # new ground is what lies beyond those places
    pit, hint = square(empty.copy(), 20, 20, 10), square(empty.copy(), 20, 20, 2)
    classes, new = change_classes(pit, empty, empty, pixel_ha, min_change_ha=0.5, tolerance_px=1, possible_before=hint)
    assert name[classes[25, 25]] == "new" and new.sum() == 100 - 9
    # the same pit beside scar mapped before has expanded
    classes, new = change_classes(pit, hint, hint, pixel_ha, min_change_ha=0.5, tolerance_px=1)
    assert name[classes[25, 25]] == "expanded" and new.sum() == 100 - 9
    # a new pit with a ragged edge (0.65 ha; an opening would leave 0.49 ha) beside one pixel mapped
    # before: its new ground is the whole compact patch, not what an opening of it leaves
    pit = square(empty.copy(), 20, 20, 9)
    rows, cols = np.nonzero(pit & ~ndimage.binary_erosion(pit))
    pit[rows[(rows + cols) % 2 == 1], cols[(rows + cols) % 2 == 1]] = False
    assert pit.sum() == 65 and ndimage.binary_opening(pit, np.ones((3, 3), dtype=bool)).sum() == 49
    speck = square(empty.copy(), 18, 18, 1)
    classes, new = change_classes(pit, speck, speck, pixel_ha, min_change_ha=0.5, tolerance_px=2)
    assert name[classes[24, 24]] == "expanded" and new.sum() == 64  # all but the pixel within the tolerance


def test_ground_open_before_is_not_new_mining():
    """A field that was bare before and is mapped as scar now (brighter this period, say) is not new
    mining; neither is a place the classifier called possibly mine before. A pit cut into forest
    beside a track that was open before is new, all but the track."""
    empty = np.zeros(GRID.shape, dtype=bool)
    field, pit = square(empty.copy(), 5, 5, 12), square(empty.copy(), 30, 30, 12)
    track = empty.copy()
    track[36, :] = True  # 1 px wide, across the scene and the pit
    earlier = {"B2": np.full(GRID.shape, 0.03), "B3": np.full(GRID.shape, 0.05), "B4": np.full(GRID.shape, 0.03), "B8": np.full(GRID.shape, 0.30)}
    for b, v in zip(("B2", "B3", "B4", "B8"), (0.09, 0.14, 0.23, 0.28)):  # bare ground: NDVI 0.1
        earlier[b] = np.where(field | track, v, earlier[b]).astype(np.float32)
    weak = square(empty.copy(), 50, 5, 8)  # the classifier's probability reached the hysteresis there
    probability = np.where(weak, 0.3, 0.0).astype(np.float32)
    established = established_ground(earlier, empty, probability, threshold=0.5, hysteresis=0.5)
    assert (established == (field | weak)).all()  # the 1 px track is no established ground
    assert (established_ground(earlier, weak, None, None) == (field | weak)).all()  # the rules: the scar itself

    current = field | pit | square(empty.copy(), 50, 5, 8)
    classes, new = change_classes(current, empty, empty, GRID.pixel_ha, min_change_ha=0.5, tolerance_px=1, possible_before=established)
    name = {i + 1: c for i, c in enumerate(CHANGE_CLASSES)}
    assert name[classes[10, 10]] == "persisting" and not new[field].any()
    assert name[classes[53, 8]] == "persisting" and not new[weak].any()
    assert name[classes[35, 35]] == "new" and new[pit].sum() == 144


def test_change_polygons_carry_area_first_period_and_confidence():
    empty = np.zeros(GRID.shape, dtype=bool)
    before = square(empty.copy(), 2, 2, 10)
    current = square(empty.copy(), 2, 2, 20)
    first_seen = np.full(GRID.shape, 255, dtype=np.uint8)
    first_seen[before] = 0
    first_seen[current & (first_seen == 255)] = 1
    classes, new = change_classes(current, before, before, GRID.pixel_ha, tolerance_px=0)
    confidence = np.where(current, 0.8, 0).astype(np.float32)
    gdf = change_polygons(classes, new, first_seen, confidence, GRID, ("2023", "2024"))
    assert list(gdf["change"]) == ["expanded"]
    row = gdf.iloc[0]
    assert row["area_ha"] == pytest.approx(4.0) and row["new_ha"] == pytest.approx(3.0)
    assert row["first_seen"] == "2023" and row["confidence"] == pytest.approx(0.8)
    assert gdf.geometry.iloc[0].area == pytest.approx(4.0e4)


def test_new_mining_is_judged_on_what_each_polygon_claims_is_new(tmp_path):
    """An expanded site is a correct new detection when its grown part is truly new, however large
    its old part; a false patch counts against precision, a missed site against recall."""
    from types import SimpleNamespace

    from asgm.monitor import evaluate_history, evaluation_summary

    empty = np.zeros(GRID.shape, dtype=bool)
    old_a, grown_a = square(empty.copy(), 2, 2, 20), square(empty.copy(), 2, 2, 20) | square(empty.copy(), 22, 2, 10)
    site_b, site_c, false = square(empty.copy(), 40, 40, 8), square(empty.copy(), 2, 40, 8), square(empty.copy(), 40, 10, 8)
    truth = {"2023": old_a, "2024": grown_a | site_b | site_c}  # A grows by 1 ha (a fifth of it), B and C open
    mapped = {"2023": old_a, "2024": grown_a | site_b | false}  # C missed, a false patch
    for name in truth:
        (tmp_path / name).mkdir()
        with rasterio.open(tmp_path / name / "scar.tif", "w", driver="GTiff", width=60, height=60, count=1, dtype="uint8",
                           crs=GRID.crs, transform=GRID.transform) as dst:
            dst.write(truth[name].astype(np.uint8), 1)
    opened = [mask_polygons(site, GRID).geometry.iloc[0] for site in (site_b, site_c)]
    gpd.GeoDataFrame({"state": ["new", "new"], "scar_ha": [0.64, 0.64]}, geometry=opened, crs=GRID.crs).to_file(tmp_path / "2024" / "sites.geojson")
    history = SimpleNamespace(scar=lambda p: tmp_path / p / "scar.tif", mine_polygons=lambda p: tmp_path / p / "sites.geojson")
    classes, new = change_classes(mapped["2024"], mapped["2023"], mapped["2023"], GRID.pixel_ha, min_change_ha=0.5)
    first_seen = np.where(mapped["2023"], 0, np.where(mapped["2024"], 1, 255)).astype(np.uint8)
    changes = {"2024": change_polygons(classes, new, first_seen, mapped["2024"].astype(np.float32), GRID, ("2023", "2024"))}
    assert sorted(changes["2024"]["change"]) == ["expanded", "new", "new"]
    table = evaluate_history(history, mapped, changes, {"2024": new}, GRID, min_change_ha=0.5)
    row = table.loc["2024"]
    assert row["new_polygons"] == 3 and row["new_precision"] == pytest.approx(2 / 3, abs=1e-3)  # A's growth and B right, the false patch wrong
    assert row["new_sites"] == 2 and row["new_recall"] == pytest.approx(0.5)  # B found, C missed
    assert table.loc["2023", "iou"] == 1.0 and table.loc["2024", "iou"] == pytest.approx(564 / 692, abs=1e-3)
    exact = evaluate_history(history, mapped, changes, {"2024": new}, GRID, min_change_ha=0.5, tolerance_px=0).loc["2024"]
    assert exact["new_precision"] == pytest.approx(2 / 3, abs=1e-3)  # no tolerance is no growth, not growth until it stops
    # Wilson's interval of 1 in 2: centre (k + z²/2) / (n + z²), half-width z·sqrt(k(n−k)/n + z²/4) / (n + z²)
    z = 1.959964
    half = z * np.sqrt(1 * 1 / 2 + z**2 / 4) / (2 + z**2)
    assert row["new_recall_low"] == pytest.approx(0.5 - half, abs=1e-3) and row["new_recall_high"] == pytest.approx(0.5 + half, abs=1e-3)
    assert row["new_precision_low"] < 2 / 3 < row["new_precision_high"]
    # the pooled row: pixels of both periods, the one change's sites and polygons
    total = table.loc["all"]
    assert total["iou"] == pytest.approx((400 + 564) / (400 + 692), abs=1e-3)
    assert (total["new_sites"], total["new_polygons"], total["new_recall"]) == (2, 3, 0.5)
    assert pd.isna(table.loc["2023", "new_recall"])
    shown = evaluation_summary(table)
    assert shown.loc["2024", "new-mining recall [95 %]"] == f"0.50 [{row['new_recall_low']:.2f}, {row['new_recall_high']:.2f}]" == "0.50 [0.10, 0.91]"
    assert shown.loc["2023", "new-mining recall [95 %]"] == "" and shown.loc["all", "new polygons"] == "3"


def test_zone_statistics_in_hectares_across_a_utm_zone_boundary():
    # A zone straddling the UTM zone 19/20 boundary (66° W) at 7° N, and scars on both sides.
    zone = box(-66.05, 7.0, -65.95, 7.1)
    scars = {"2023": gpd.GeoDataFrame(geometry=[box(-66.04, 7.01, -66.02, 7.03)], crs=4326),
             "2024": gpd.GeoDataFrame(geometry=[box(-66.04, 7.01, -66.02, 7.03), box(-65.99, 7.05, -65.97, 7.06)], crs=4326)}
    table = zone_statistics(scars, gpd.GeoDataFrame({"name": ["zone"]}, geometry=[zone], crs=4326))
    geod = Geod(ellps="WGS84")

    def hectares(geometry):
        return abs(geod.geometry_area_perimeter(geometry)[0]) / 1e4

    first, second = hectares(scars["2023"].geometry[0]), hectares(scars["2024"].geometry[1])
    rows = table.set_index("period")
    assert rows.loc["2023", "mining_ha"] == pytest.approx(first, rel=1e-3)
    assert rows.loc["2024", "mining_ha"] == pytest.approx(first + second, rel=1e-3)
    assert rows.loc["2024", "change_ha"] == pytest.approx(second, rel=1e-3)
    assert rows.loc["2024", "cumulative_ha"] == pytest.approx(first + second, rel=1e-3)
    assert np.isnan(rows.loc["2023", "change_ha"])


def scene(scar_side=20, river_rows=(0, 6)):
    """Reflectance of forest with a square mine scar (bare ground and a pond) and a river across."""
    shape = GRID.shape
    refl = {"B2": np.full(shape, 0.09), "B3": np.full(shape, 0.09), "B4": np.full(shape, 0.05), "B8": np.full(shape, 0.30)}
    mine = square(np.zeros(shape, dtype=bool), 25, 25, scar_side)
    pond = square(np.zeros(shape, dtype=bool), 30, 30, 5)
    river = np.zeros(shape, dtype=bool)
    river[river_rows[0]:river_rows[1]] = True
    for mask, values in ((mine, (0.17, 0.19, 0.29, 0.33)), (pond, (0.10, 0.12, 0.08, 0.06)), (river, (0.11, 0.12, 0.13, 0.08))):
        for b, v in zip(("B2", "B3", "B4", "B8"), values):
            refl[b] = np.where(mask, v, refl[b])
    return {b: v.astype(np.float32) for b, v in refl.items()}, mine


def detections_at(*corners, side=48):
    """Detected 48 px windows with their top-left pixel (row, col) on the test grid, in UTM."""
    geometry = [box(LEFT + 10 * c, TOP - 10 * (r + side), LEFT + 10 * (c + side), TOP - 10 * r) for r, c in corners]
    return gpd.GeoDataFrame({"max_confidence": [0.9] * len(geometry)}, geometry=geometry, crs=UTM20)


def test_detection_windows_cover_every_detection_with_context_and_never_overlap():
    grid = Grid(from_origin(LEFT, TOP, 10, 10), rasterio.crs.CRS.from_string(UTM20), (400, 400))
    far_apart = {"a": detections_at((10, 10)), "b": detections_at((300, 300))}  # periods a and b
    windows = detection_windows(far_apart, grid, margin_px=20)
    assert [(w.row_off, w.col_off, w.height, w.width) for w in windows] == [(0, 0, 78, 78), (280, 280, 88, 88)]  # clipped at the top-left edge
    assert len(detection_windows(far_apart, grid, margin_px=130)) == 1  # margins that meet merge the windows
    # an L of detections: the merged box of two reaches a third; windows still never overlap
    rng = np.random.default_rng(1)
    found = {"p": detections_at(*rng.integers(0, 352, (25, 2)))}
    windows = detection_windows(found, grid, margin_px=12)
    taken = np.zeros(grid.shape, dtype=int)
    for w in windows:
        taken[w.toslices()] += 1
    assert taken.max() == 1
    for r, c in ((int(TOP - g.bounds[3]) // 10, int(g.bounds[0] - LEFT) // 10) for g in found["p"].geometry):
        assert taken[max(r - 12, 0):r + 60, max(c - 12, 0):c + 60].all()  # the detection and its context lie in a window
    assert detection_windows({"p": detections_at()}, grid) == []


def test_scar_and_change_in_windows_equal_the_whole_raster(tmp_path):
    """Two periods of a 300 px scene (a river across, a mine that persists, one that opens far away):
    the products computed window by window around the detections are those of the whole raster."""
    grid = Grid(from_origin(LEFT, TOP, 10, 10), rasterio.crs.CRS.from_string(UTM20), (300, 300))
    forest = np.array([0.09, 0.09, 0.05, 0.30, 0.15, 0.08])
    rasters = {}
    for k, name in enumerate(("2023", "2024")):
        refl = np.broadcast_to(forest[:, None, None], (6, 300, 300)).copy()
        refl[:, 140:146, :] = np.array([0.11, 0.12, 0.13, 0.08, 0.05, 0.03])[:, None]  # the river
        sites = [(30, 30)] + ([(250, 250)] if k else [])
        for r, c in sites:
            refl[:, r:r + 20, c:c + 20] = np.array([0.17, 0.19, 0.29, 0.33, 0.35, 0.30])[:, None, None]  # bare ground
            refl[:, r + 5:r + 10, c + 5:c + 10] = np.array([0.10, 0.12, 0.08, 0.06, 0.04, 0.02])[:, None, None]  # a pond
        rasters[name] = write_raster(tmp_path / f"{name}.tif", (refl * 10_000).astype(np.uint16), bands=SCAR_BANDS)
    found = {"2023": detections_at((16, 16)), "2024": detections_at((16, 16), (236, 236), (120, 120))}  # the last one over the river
    settings = MonitoringConfig()
    whole = window_products(rasterio.windows.Window(0, 0, 300, 300), grid, rasters, found, None, settings, 10_000)
    windows = detection_windows(found, grid, margin_px=16)
    assert len(windows) == 3 and sum(w.width * w.height for w in windows) < 0.3 * 300 * 300
    parts = [window_products(w, grid, rasters, found, None, settings, 10_000) for w in windows]
    for name in rasters:
        mosaic = np.zeros(grid.shape, dtype=bool)
        for part in parts:
            mosaic[part.window.toslices()] = part.masks[name]
        assert np.array_equal(mosaic, whole.masks[name]) and mosaic.any()
        assert sum(p.scars[name]["area_ha"].sum() for p in parts) == pytest.approx(whole.scars[name]["area_ha"].sum())
    changed = {c: sum(p.changes["2024"].loc[p.changes["2024"]["change"] == c, "area_ha"].sum() for p in parts) for c in ("new", "persisting")}
    assert changed == pytest.approx({"new": 4.0, "persisting": 4.0})
    assert not whole.masks["2024"][140:146].any()  # the river stays out of the scar


def test_scar_is_the_bare_ground_and_ponds_inside_detections():
    refl, mine = scene()
    footprint = square(np.zeros(GRID.shape, dtype=bool), 2, 15, 45)  # a detected window over the mine and part of the river
    scar = scar_mask(refl, footprint)
    assert scar.sum() == mine.sum()  # 4 ha: the river, long and narrow, is left out
    assert (scar == mine).all()
    polygons = mask_polygons(scar, GRID)
    assert polygons["area_ha"].sum() == pytest.approx(4.0)
    # Outside detections nothing is scar, and clouds never are.
    assert not scar_mask(refl, np.zeros(GRID.shape, dtype=bool)).any()
    cloudy = dict(refl, B2=np.where(mine, 0.5, refl["B2"]).astype(np.float32))
    assert not (scar_mask(cloudy, footprint) & mine & (refl["B3"] > 0.15)).any()
    # A patch of bare ground mostly outside the detections (a farm the window only grazes) is left out.
    assert not scar_mask(refl, square(np.zeros(GRID.shape, dtype=bool), 25, 25, 8)).any()


def test_classifier_scar_leaves_out_rivers_even_where_the_classifier_calls_them_mine():
    from types import SimpleNamespace

    from asgm.scar import candidates, mine_probability

    refl, mine = scene()
    refl |= {"B11": refl["B8"], "B12": refl["B8"]}  # the classifier's features need them; any values do here
    water, _ = candidates(refl)
    river = water & ~mine
    assert (water & mine).sum() == 25 and river.sum() == 6 * 60  # the pond, and the river across
    # detections over the mine and over 15 px of the river: inside them the stretch of river
    # (6 x 15 px) is not long and narrow, over the whole raster it is
    footprint = square(square(np.zeros(GRID.shape, dtype=bool), 25, 25, 20), 0, 15, 15)
    calls_all_mine = SimpleNamespace(threshold=0.5, probability=lambda features, where: where.astype(np.float32))
    probability = mine_probability(refl, footprint, calls_all_mine)
    assert probability[mine].min() == 1 and probability[river].max() == 0  # so no river is "possibly mine before" either
    assert (scar_mask(refl, footprint, calls_all_mine) == mine).all()


def test_classifier_scar_grows_from_its_core_into_weaker_mine_ground():
    """Seed and grow: the pixels above the threshold (a 10 px core) take in the weaker pixels around
    them (a 2 px rim at 0.6 of the threshold) up to ``grow_px``, not a weak track running on from
    them beyond that, not a weak patch that touches no core, not a pixel below ``grow_fraction``."""
    from types import SimpleNamespace

    empty = np.zeros(GRID.shape, dtype=bool)
    core = square(empty.copy(), 20, 20, 10)
    rim = square(empty.copy(), 18, 18, 14) & ~core
    track = empty.copy()
    track[24, 32:55] = True
    apart = square(empty.copy(), 45, 5, 8)
    probability = np.select([core, rim | track | apart], [0.9, 0.3], 0.0).astype(np.float32)
    probability[18, 18] = 0.2  # below half the threshold
    classifier = SimpleNamespace(threshold=0.5)
    footprint = np.ones(GRID.shape, dtype=bool)
    scar = scar_mask({}, footprint, classifier, probability=probability, grow_px=3, grow_fraction=0.5)
    assert (scar[core | rim] == (core | rim)[core | rim]).sum() == (core | rim).sum() - 1 and not scar[18, 18]
    assert scar[24, 30:33].all() and not scar[24, 33:].any()  # 3 px from the core (rim, then track), no further
    assert not scar[apart].any()
    assert (scar_mask({}, footprint, classifier, probability=probability, grow_px=0) == core).all()
    assert not scar_mask({}, empty, classifier, probability=probability).any()  # nothing outside detections


def test_history_is_deterministic_and_mines_only_appear_grow_or_revegetate(tmp_path):
    cfg = SyntheticConfig(output_dir=tmp_path / "region", seed=5, size_km=3, n_mine_sites=12, mines_per_cluster=2, n_curated_negatives=10)
    a = generate_demo_history(cfg, ("p1", "p2", "p3"), 2, tmp_path / "a", progress=False)
    b = generate_demo_history(cfg, ("p1", "p2", "p3"), 2, tmp_path / "b", progress=False)
    for period in a.periods:
        for path in (a.composite(period), a.scar(period)):
            with rasterio.open(path) as x, rasterio.open(b.directory / path.relative_to(a.directory)) as y:
                assert np.array_equal(x.read(), y.read())
    with rasterio.open(a.composite("p1")) as first, rasterio.open(a.composite("p3")) as last:
        assert first.shape == (200, 200) and not np.array_equal(first.read(2), last.read(2))  # clouds and noise differ
    sites = {p: gpd.read_file(a.mine_polygons(p)).set_index("site_id") for p in a.periods}
    assert set(sites["p1"].index) <= set(sites["p2"].index) <= set(sites["p3"].index)
    assert (sites["p2"].loc[sites["p2"]["state"] == "new", "onset"] == "p2").all()
    meta = json.loads(a.metadata.read_text())
    assert meta["synthetic"] and set(meta["counts"]) == {"p1", "p2", "p3"}
    zones = gpd.read_file(a.zones)
    assert len(zones) == 3 and zones["name"].str.contains("SYNTHETIC").all()


def test_alerts_schema_sorted_with_zone_osm_and_thumbnail(tmp_path):
    data = np.full((12, 60, 60), 900, dtype=np.uint16)
    before = write_raster(tmp_path / "before.tif", data)
    data[:, 20:40, 20:40] = 2500
    after = write_raster(tmp_path / "after.tif", data)
    x0, y0 = 630_000, 810_000
    change = gpd.GeoDataFrame({"change": ["new", "persisting", "expanded"], "area_ha": [1.0, 3.0, 4.0], "new_ha": [1.0, 0.0, 2.0],
                               "confidence": [0.9, 0.8, 0.7], "first_seen": ["2024", "2023", "2023"]},
                              geometry=[box(x0 + 200, y0 - 400, x0 + 300, y0 - 300), box(x0, y0 - 100, x0 + 100, y0), box(x0 + 350, y0 - 550, x0 + 550, y0 - 350)],
                              crs=UTM20)
    zones = gpd.GeoDataFrame({"name": ["park"]}, geometry=[box(x0, y0 - 600, x0 + 320, y0)], crs=UTM20)
    features = gpd.GeoDataFrame({"waterway": ["river", None], "highway": [None, "track"], "name": ["Río", None]},
                                geometry=[Polygon([(x0, y0 - 590), (x0 + 600, y0 - 590), (x0 + 600, y0 - 580), (x0, y0 - 580)]).boundary,
                                          box(x0 + 240, y0 - 200, x0 + 250, y0 - 100).boundary], crs=UTM20)
    found = alerts(change, zones, features, before, after, tmp_path / "alerts", "2023", "2024")
    assert list(found["alert_id"]) == ["2024-001", "2024-002"] and list(found["change"]) == ["expanded", "new"]
    assert list(found["zones"]) == ["", "park"]
    assert found["nearest_osm"].iloc[0] == "waterway=river (Río)" and found["nearest_osm_m"].iloc[0] == pytest.approx(30)
    assert found["nearest_osm"].iloc[1] == "highway=track"
    for name in found["thumbnail"]:
        assert (tmp_path / "alerts" / name).stat().st_size > 1000


def write_products(stage: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (stage / name).parent.mkdir(parents=True, exist_ok=True)
        (stage / name).write_text(text)
    return stage


def test_a_run_publishes_its_products_as_one_set_and_touches_nothing_else(tmp_path):
    from asgm.monitor import publish

    out = tmp_path / "monitoring"
    first = {"summary.csv": "1", "zones.csv": "zones", "evaluation.csv": "e1", "2024/scar.geojson": "s1",
             "alerts/2024-001.png": "a1", "alerts/2024-002.png": "a2"}
    publish(write_products(tmp_path / "stage1", first), out, {"periods": ["2024"]})
    (out / "alerts" / "fieldtrip-001.png").write_text("my photo")  # the user's own file among the thumbnails
    (out / "2024" / "probability.tif").write_text("the scan's cache")  # not a product
    # a rerun without zones and with one alert: the earlier zones.csv and second thumbnail go, the user's file stays
    with pytest.warns(AsgmWarning, match=r"left 1 file\(s\) that asgm.monitor did not write in place \(fieldtrip-001.png"):
        publish(write_products(tmp_path / "stage2", {"summary.csv": "2", "evaluation.csv": "e2", "2024/scar.geojson": "s2",
                                                     "alerts/2024-001.png": "b1"}), out, {"periods": ["2024"]})
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "2024/probability.tif", "2024/scar.geojson", "alerts/2024-001.png", "alerts/fieldtrip-001.png", "evaluation.csv", "products.json", "summary.csv"]
    assert (out / "summary.csv").read_text() == "2" and (out / "alerts" / "fieldtrip-001.png").read_text() == "my photo"
    assert json.loads((out / "products.json").read_text())["files"] == ["2024/scar.geojson", "alerts/2024-001.png", "evaluation.csv", "summary.csv"]
    # a file nobody listed where this run's thumbnail goes: nothing moves, the previous set stays whole
    (out / "alerts" / "2024-001.png").unlink()
    (out / "alerts" / "2024-001.png").write_text("not ours any more")
    (out / "products.json").write_text(json.dumps({"files": ["evaluation.csv", "summary.csv", "2024/scar.geojson"]}))
    before = snapshot(out)
    with pytest.raises(AsgmError, match="(?s)alerts/2024-001.png exist.*not written by asgm.monitor.*nothing was published"):
        publish(write_products(tmp_path / "stage3", {"summary.csv": "3", "alerts/2024-001.png": "c1"}), out, {})
    assert snapshot(out) == before


def test_an_alerts_directory_of_the_users_own_files_is_never_taken_for_the_tools(tmp_path):
    from asgm.monitor import publish

    out = tmp_path / "monitoring"
    (out / "alerts").mkdir(parents=True)
    (out / "alerts" / "fieldtrip-001.png").write_text("photo 1")
    (out / "alerts" / "fieldtrip-002.png").write_text("photo 2")
    with pytest.warns(AsgmWarning, match="left 2 file"):
        publish(write_products(tmp_path / "stage", {"summary.csv": "1", "alerts/2024-001.png": "a"}), out, {})
    assert sorted(p.name for p in (out / "alerts").iterdir()) == ["2024-001.png", "fieldtrip-001.png", "fieldtrip-002.png"]
    # an earlier version's directory: its thumbnails.csv names its own thumbnails, which a rerun replaces
    old = tmp_path / "old"
    (old / "alerts").mkdir(parents=True)
    (old / "alerts" / "thumbnails.csv").write_text("alert_id,thumbnail\n2024-007,2024-007.png\n")
    (old / "alerts" / "2024-007.png").write_text("old alert")
    (old / "summary.csv").write_text("old")
    publish(write_products(tmp_path / "stage_old", {"summary.csv": "new", "alerts/2024-001.png": "a"}), old, {})
    assert sorted(p.name for p in (old / "alerts").iterdir()) == ["2024-001.png"] and (old / "summary.csv").read_text() == "new"


def test_cli_without_periods_is_a_clear_error(tmp_path, capsys):
    from asgm.monitor import main

    (tmp_path / "configs").mkdir()
    yaml = (ROOT / "configs" / "smoke.yaml").read_text()
    (tmp_path / "configs" / "smoke.yaml").write_text(yaml[: yaml.index("\nmonitoring:")] + "\n")
    assert main(["--profile", "smoke", "--root", str(tmp_path), "--no-progress"]) == 2
    assert "has no monitoring periods" in capsys.readouterr().err


@pytest.mark.parametrize("content, problem", [
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"NOMBRE": "Canaima"},
      "geometry": {"type": "Polygon", "coordinates": [[[-62, 6], [-61, 6], [-61, 7], [-62, 6]]]}}]}, "no 'name' property .*NOMBRE"),
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"name": "a town"},
      "geometry": {"type": "Point", "coordinates": [-62, 6]}}]}, "Point geometries; zones must be polygons"),
    ("not json at all", "not a readable vector file"),
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"name": "park"}, "geometry": None},
      {"type": "Feature", "properties": {"name": "town"}, "geometry": {"type": "Polygon", "coordinates": [[[-62, 6], [-61, 6], [-61, 7], [-62, 6]]]}}]},
     r"zone\(s\) \['park'\] have no geometry"),
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"name": "park"}, "geometry": {"type": "Polygon",
      "coordinates": [[[-62, 6], [-61, 6], [-61, 7], [-62, 6]]]}}] * 2}, r"zone name\(s\) \['park'\] are used by more than one zone"),
], ids=["no-name", "points", "garbage", "null-geometry", "duplicate-names"])
def test_a_bad_zones_file_is_named_before_any_period_is_scanned(tmp_path, monkeypatch, content, problem):
    """The zones are read right after the periods' composites are known, so a zones file without
    names (or of points) fails in seconds with its path, not after hours of scanning a real region."""
    import dataclasses

    import asgm.monitor as monitor
    import asgm.scan
    from asgm.errors import InputFileError

    zones = tmp_path / "zones.geojson"
    zones.write_text(content if isinstance(content, str) else json.dumps(content))
    cfg = load_profile("smoke", root=ROOT)
    cfg = dataclasses.replace(cfg, monitoring=dataclasses.replace(cfg.monitoring, zones=zones))
    composite = write_raster(tmp_path / "a.tif", np.full((6, 20, 20), 1000, dtype=np.uint16), bands=SCAR_BANDS)
    monkeypatch.setattr(monitor, "period_rasters", lambda cfg, progress: ({"a": composite, "b": composite}, None))
    monkeypatch.setattr(asgm.scan, "scan_region", lambda *a, **k: pytest.fail("scanned before the zones were read"))
    with pytest.raises(InputFileError, match=f"(?s){zones}: .*{problem}.*How to fix"):
        monitor.run_monitoring(cfg, progress=False)


@pytest.mark.parametrize("second, problem", [
    ({"left": LEFT + 10}, "is not on the pixel grid of the first period's composite"),
    ({"bands": ("B2", "B3", "B4", "B8")}, r"lacks band\(s\) \['B11', 'B12'\] needed to delineate scars"),
    ({"text": True}, "composite of period '2024' is not a raster GDAL can read"),
    ({"value": 0}, "composite of period '2024' holds no data"),
], ids=["shifted", "bands", "text-file", "no-data"])
def test_period_composites_are_checked_before_any_period_is_scanned(tmp_path, monkeypatch, second, problem):
    """Every period's composite must share the first one's grid and have the bands the scar needs;
    the last period failing that is named before the first period is scanned."""
    import asgm.monitor as monitor
    import asgm.scan
    from asgm.errors import InputFileError

    first = write_raster(tmp_path / "2023.tif", np.full((6, 20, 20), 1000, dtype=np.uint16), bands=SCAR_BANDS)
    bands = second.get("bands", SCAR_BANDS)
    last = write_raster(tmp_path / "2024.tif", np.full((len(bands), 20, 20), second.get("value", 1000), dtype=np.uint16), bands=bands,
                        left=second.get("left", LEFT))
    if second.get("text"):
        last.write_text("this is not a raster")
    cfg = load_profile("smoke", root=ROOT)
    monkeypatch.setattr(monitor, "period_rasters", lambda cfg, progress: ({"2023": first, "2024": last}, None))
    monkeypatch.setattr(asgm.scan, "scan_region", lambda *a, **k: pytest.fail("scanned before the composites were checked"))
    with pytest.raises(InputFileError, match=f"(?s){last}: {problem}.*How to fix"):
        monitor.run_monitoring(cfg, progress=False)


@pytest.mark.filterwarnings("ignore:.*had invalid outlines:asgm.AsgmWarning")  # asserted once below; the run reads the zones again
def test_self_intersecting_zones_are_repaired_and_zones_outside_the_region_named(tmp_path, monkeypatch):
    """A bow-tie zone is repaired (as the boundary is) with a warning, before any scan; a zone that
    the region does not reach is named, since its 0 ha would otherwise look like a result."""
    import dataclasses

    import asgm.monitor as monitor
    import asgm.scan

    zones = tmp_path / "zones.geojson"
    zones.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "bow tie"}, "geometry": {"type": "Polygon", "coordinates": [[[-61.9, 7.3], [-61.8, 7.4], [-61.8, 7.3], [-61.9, 7.4], [-61.9, 7.3]]]}},
        {"type": "Feature", "properties": {"name": "far away"}, "geometry": {"type": "Polygon", "coordinates": [[[10, 10], [11, 10], [11, 11], [10, 10]]]}}]}))
    with pytest.warns(AsgmWarning, match=r"zone\(s\) \['bow tie'\] had invalid outlines .* repaired"):
        repaired = monitor.read_zones(zones)
    assert repaired.geometry.is_valid.all() and repaired.geometry.iloc[0].area > 0.004  # both lobes kept
    cfg = load_profile("smoke", root=ROOT)
    cfg = dataclasses.replace(cfg, monitoring=dataclasses.replace(cfg.monitoring, zones=zones))
    composite = write_raster(tmp_path / "a.tif", np.full((6, 20, 20), 1000, dtype=np.uint16), bands=SCAR_BANDS)
    monkeypatch.setattr(monitor, "period_rasters", lambda cfg, progress: ({"a": composite, "b": composite}, None))
    monkeypatch.setattr(monitor, "monitoring_model", lambda cfg: (_ for _ in ()).throw(AsgmError("stop here")))  # no scan needed
    with pytest.warns(AsgmWarning, match=r"1 zone\(s\) lie entirely outside the monitored region.*\['far away'\]"), pytest.raises(AsgmError, match="stop here"):
        monitor.run_monitoring(cfg, progress=False)


def test_a_read_only_output_directory_is_named_before_any_scan(tmp_path, monkeypatch):
    import dataclasses
    import os

    import asgm.monitor as monitor

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")  # CI runs as root; the check below is what runs there
    cfg = load_profile("smoke", root=ROOT)
    reports = tmp_path / "reports"
    reports.mkdir()
    reports.chmod(0o500)
    cfg = dataclasses.replace(cfg, root=tmp_path)
    composite = write_raster(tmp_path / "a.tif", np.full((6, 20, 20), 1000, dtype=np.uint16), bands=SCAR_BANDS)
    monkeypatch.setattr(monitor, "period_rasters", lambda cfg, progress: ({"a": composite, "b": composite}, None))
    with pytest.raises(AsgmError, match="cannot write the monitoring products there"):
        monitor.run_monitoring(cfg, progress=False)


def test_writability_is_checked_with_the_directory_named(tmp_path, monkeypatch):
    """What the read-only case relies on, testable as root too: an OSError on the test write becomes an AsgmError naming the directory."""
    import tempfile

    from asgm.atomic import ensure_writable

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(AsgmError, match=f"{tmp_path / 'out'}: cannot write the products there \\(Permission denied\\).*How to fix"):
        ensure_writable(tmp_path / "out", "products")


def test_ctrl_c_says_in_one_line_that_the_run_can_be_resumed(monkeypatch, capsys):
    import asgm.monitor as monitor

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(monitor, "run_monitoring", interrupted)
    assert monitor.main(["--profile", "smoke", "--root", str(ROOT), "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "run the same command again to resume" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_prints_the_demo_evaluation_labelled_synthetic(monkeypatch, capsys):
    from types import SimpleNamespace

    import asgm.monitor as monitor

    evaluation = pd.DataFrame({"true_ha": [10.0, 12.0], "scar_ha": [11.0, 12.5], "area_error": [0.1, 0.042], "iou": [0.7, 0.72],
                               "new_sites": [pd.NA, 4], "new_recall": [np.nan, 0.75], "new_recall_low": [np.nan, 0.3], "new_recall_high": [np.nan, 0.95],
                               "new_polygons": [pd.NA, 3], "new_precision": [np.nan, 1.0], "new_precision_low": [np.nan, 0.44], "new_precision_high": [np.nan, 1.0]},
                              index=pd.Index(["2023", "2024"], name="period"))
    result = SimpleNamespace(summary=pd.DataFrame({"scar_ha": [11.0, 12.5]}), alerts=[], periods=("2023", "2024"), out_dir=Path("out"), evaluation=evaluation)
    monkeypatch.setattr(monitor, "run_monitoring", lambda cfg, progress: result)
    assert monitor.main(["--profile", "smoke", "--root", str(ROOT), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out and "0.75 [0.30, 0.95]" in out and "1.00 [0.44, 1.00]" in out and "+4%" in out
    result.evaluation = None  # real profiles: no truth, nothing printed about it
    monitor.main(["--profile", "smoke", "--root", str(ROOT), "--no-progress"])
    assert "SYNTHETIC" not in capsys.readouterr().out


SAND = (0.17, 0.21, 0.29, 0.33, 0.38, 0.32)   # B2 B3 B4 B8 B11 B12 of mine sand (L1C-like)
SOIL = (0.15, 0.16, 0.25, 0.29, 0.33, 0.26)   # a ploughed field: bare too, but darker and redder
FOREST = (0.09, 0.09, 0.05, 0.30, 0.16, 0.07)


def toy_scar_dataset(tmp_path, n=40, size=32):
    """Patches of forest with a bare square at the centre: mine sand in mine patches, ploughed soil
    in the others (both bare, so only the classifier can tell them apart)."""
    import pandas as pd

    from asgm.patches import Dataset
    from asgm.scar import SCAR_BANDS

    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2
    patches = np.zeros((n, size, size, 6), dtype=np.uint16)
    for i, label in enumerate(labels):
        values = np.array(FOREST)[None, None, :] * np.ones((size, size, 1))
        values[12:20, 12:20] = SAND if label else SOIL
        patches[i] = np.clip((values + rng.normal(0, 0.004, values.shape)) * 10000, 1, None).astype(np.uint16)
    index = pd.DataFrame({"patch_id": [f"p{i}" for i in range(n)], "label": labels})
    return Dataset(tmp_path, patches, index, {"channels": list(SCAR_BANDS), "scale": 10000, "patch_size": size, "build_key": "toy"})


def test_scar_classifier_learns_mine_ground_from_patch_labels_only(tmp_path):
    from asgm.scar import ScarClassifier, candidates, train_scar_classifier

    dataset = toy_scar_dataset(tmp_path)
    rows = np.arange(0, 30)
    classifier = train_scar_classifier(dataset, rows, groups=rows // 2)  # 15 spatial blocks
    # weak labels: every bare pixel of the 15 non-mine patches, the bare pixels within 8 px of the
    # centre of the 15 mine patches (the whole 8 x 8 square); patches 30-39 (a test split) unused
    assert classifier.info["pixels"] == 30 * 64 and classifier.info["patches"] == 30 and classifier.info["folds"] == 5
    assert 0 < classifier.threshold < 1
    classifier.save(tmp_path / "scar")
    loaded = ScarClassifier.load(tmp_path / "scar")
    # a scene with a 4 ha mine (sand) and a 4 ha ploughed field, both inside one detection
    scene = np.array(FOREST)[None, None, :] * np.ones((60, 60, 1))
    scene[5:25, 5:25] = SAND
    scene[35:55, 35:55] = SOIL
    rng = np.random.default_rng(1)
    reflectance = {b: (scene[..., i] + rng.normal(0, 0.004, (60, 60))).astype(np.float32) for i, b in enumerate(("B2", "B3", "B4", "B8", "B11", "B12"))}
    water, bare = candidates(reflectance)
    assert bare[5:25, 5:25].all() and bare[35:55, 35:55].all()  # both are bare: the rules alone cannot tell
    scar = scar_mask(reflectance, np.ones((60, 60), dtype=bool), loaded)
    assert mask_polygons(scar, GRID)["area_ha"].sum() == pytest.approx(4.0, rel=0.05)
    assert scar[5:25, 5:25].mean() > 0.95 and not scar[35:55, 35:55].any()


def test_osm_zones_are_the_named_protected_areas_and_indigenous_lands_and_are_kept(project):
    from asgm.monitor import monitoring_zones

    (project / "map.osm").write_text(ZONES_OSM)
    boundary = project / "boundary.geojson"
    gpd.GeoDataFrame(geometry=[box(-62, 7, -61.5, 7.5)], crs=4326).to_file(boundary)
    own = project / "own_zones.geojson"
    gpd.GeoDataFrame({"name": ["municipio"]}, geometry=[box(-61.95, 7.0, -61.55, 7.45)], crs=4326).to_file(own)
    path = project / "configs" / "demo.yaml"
    yaml = path.read_text().replace("  path: data/demo/demo/osm.osm", f"  path: {project / 'map.osm'}")
    yaml = yaml.replace("  boundary: data/demo/demo/boundary.geojson", f"  boundary: {boundary}")
    yaml = yaml.replace("  zones: null ", f"  osm_zones: true\n  zones: {own} ")
    path.write_text(yaml)
    cfg = load_profile("demo", root=project)
    assert cfg.monitoring.osm_zones

    zones = monitoring_zones(cfg)
    assert list(zones["name"]) == ["municipio", "Territorio Prueba", "Parque Nacional Prueba"]  # the unnamed area and the track are not zones
    assert list(zones["kind"].iloc[1:]) == ["indigenous territory", "protected area"]
    hectares = zones.to_crs("EPSG:6933").area / 1e4
    expected = [abs(Geod(ellps="WGS84").geometry_area_perimeter(g)[0]) / 1e4 for g in zones.geometry]
    assert np.allclose(hectares, expected, rtol=1e-3) and 5_000 < hectares[1] < 7_000  # 0.1° x 0.05° at 7° N: about 6,100 ha

    (project / "map.osm").unlink()  # the second run reads what the first kept, not the OSM source
    again = monitoring_zones(cfg)
    assert list(again["name"]) == list(zones["name"]) and (cfg.contextual_dir / "osm_zones.geojson").is_file()
