"""Monitoring over time: the region scan for each period, the mining scar inside detections, change
between periods, hectares per zone and alerts of new mining.

For each period of ``monitoring.periods`` the composite is scanned with one model (the scan's fast
path, finished tiles cached), detections are drawn as in notebook 05, and then:

- **scar** (:mod:`asgm.scar`): a detection marks 48 px windows (23 ha each), far more than the mine
  inside them; the scar is delineated at 10 m (bare ground and open water that a pixel classifier,
  trained on the scan model's labelled patches, calls mine ground) inside the detections of *every*
  period, so a mine that the patch model misses in one period's composite is still measured there.
- **change** (:func:`change_classes`): each scar patch of a period against everything mapped
  before it: ``new`` (nothing mapped there before), ``expanded`` (grew by at least
  ``min_change_ha``), ``persisting``; and what was mapped in the previous period and is gone:
  ``receded``. A tolerance of ``tolerance_px`` pixels absorbs the jitter of edges between periods,
  and "before" also holds the ground of :func:`established_ground`: every earlier pixel whose
  mine-ground probability reached ``new_hysteresis`` of the classifier's threshold (a mine mapped
  only weakly before is not new), and every earlier patch of open ground (a mine missed before, or
  a field or a pond that looks different this period, is not new mining).
- **windows** (:func:`detection_windows`): all pixel work happens in windows around the
  detections (with :data:`CONTEXT_PX` of context), read from the composites window by window, so a
  wall-to-wall region costs what its detections cost, not its area.
- **zones** (:func:`zone_statistics`): hectares per zone and period, computed in an equal-area CRS.
- **alerts** (:func:`alerts`): the newest period's new and expanded mining, largest first, with its
  zone, the nearest OSM river or road, and a before/after thumbnail.

Outputs go to ``reports/<profile>/monitoring/`` (GeoJSON in WGS 84, CSV, PNG); every file is
written atomically, and a rerun reuses each period's finished scan.
"""

from __future__ import annotations

import sys

from asgm import cli

if __name__ == "__main__":  # --help and bad flags answer before TensorFlow loads
    cli.check_early(cli.monitor_arguments)

# The imports below load TensorFlow (seconds), after the command line was checked (E402 on purpose).
import dataclasses
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
from rasterio.features import rasterize, shapes
from rasterio.windows import Window
from scipy import ndimage
from shapely.geometry import box, shape

from asgm.atomic import atomic_path, ensure_writable, plain_name, staging, write_text
from asgm.config import MONITORING_RUN_PRODUCTS as RUN_PRODUCTS
from asgm.errors import AsgmError, AsgmWarning, InputFileError, read_json_object
from asgm.evaluate import wilson_interval
from asgm.progress import progress_bar
from asgm.scar import (EIGHT, MAX_ELONGATION, MIN_PIXELS, Grid, candidates, ensure_scar_classifier, grown_by, kept_patches, mine_probability,
                       read_reflectance, scar_band_names, scar_mask)

#: Equal-area CRS for hectares (WGS 84 / NSIDC EASE-Grid 2.0 Global): areas stay right across UTM zones.
EQUAL_AREA = "EPSG:6933"
CHANGE_CLASSES = ("new", "expanded", "persisting", "receded")
#: The list of a run's products, beside them: what a rerun may replace or remove (nothing else).
PRODUCTS = "products.json"
#: The products of each period (in ``<period>/``) and of the run (beside the periods).
PERIOD_PRODUCTS = ("detections.geojson", "scar.geojson", "scar.tif", "change.geojson")
#: The thumbnails' index that versions before products.json wrote in ``alerts/``.
OLD_THUMBNAIL_INDEX = "thumbnails.csv"
#: Context (pixels, 2.56 km) read around each group of detections: rivers are judged and scar patches
#: measured over the detections plus this margin, so a river crossing a detection is still long and
#: narrow there (a 1 km wide river over 5 km is).
CONTEXT_PX = 256


def detection_windows(found: dict[str, gpd.GeoDataFrame], grid: Grid, margin_px: int = CONTEXT_PX) -> list[Window]:
    """Windows of the raster that hold every period's detections with ``margin_px`` of context,
    merged until none overlap (so each pixel belongs to one window), top-left first.

    Parameters
    ----------
    found
        Period → detections (any CRS).
    grid
        The composites' pixel grid.
    """
    inverse = ~grid.transform
    boxes = []
    for detections in found.values():
        for minx, miny, maxx, maxy in detections.to_crs(grid.crs).bounds.to_numpy():
            (c0, r0), (c1, r1) = inverse @ (minx, maxy), inverse @ (maxx, miny)
            boxes.append(box(min(c0, c1) - margin_px, min(r0, r1) - margin_px, max(c0, c1) + margin_px, max(r0, r1) + margin_px))
    while boxes:  # the bounding box of merged boxes can reach another box: merge until stable
        merged = gpd.GeoSeries(boxes).union_all()
        parts = [box(*part.bounds) for part in getattr(merged, "geoms", [merged])]
        if len(parts) == len(boxes):
            break
        boxes = parts
    rows, cols = grid.shape
    windows = []
    for c0, r0, c1, r1 in (b.bounds for b in boxes):
        c0, r0 = max(0, int(np.floor(c0))), max(0, int(np.floor(r0)))
        c1, r1 = min(cols, int(np.ceil(c1))), min(rows, int(np.ceil(r1)))
        if c1 > c0 and r1 > r0:
            windows.append(Window(c0, r0, c1 - c0, r1 - r0))
    return sorted(windows, key=lambda w: (w.row_off, w.col_off))


def window_grid(grid: Grid, window: Window) -> Grid:
    """The pixel grid of a window of ``grid``."""
    return Grid(rasterio.windows.transform(window, grid.transform), grid.crs, (int(window.height), int(window.width)))


def footprint_mask(found: gpd.GeoDataFrame, grid: Grid) -> np.ndarray:
    """Detections burned on ``grid`` (every pixel whose centre is inside one)."""
    return _burn(found.to_crs(grid.crs).geometry if len(found) else [], grid)


def mask_polygons(mask: np.ndarray, grid: Grid, maxima: dict[str, np.ndarray] | None = None, minima: dict[str, np.ndarray] | None = None,
                  areas: dict[str, np.ndarray] | None = None) -> gpd.GeoDataFrame:
    """Connected patches (8-connected) of a boolean raster as polygons with their area in hectares;
    each patch's maximum of each raster of ``maxima``, minimum of each of ``minima``, and hectares of
    each boolean raster of ``areas`` are added as columns of those names."""
    labels, n = ndimage.label(mask, structure=EIGHT)
    columns = ["area_ha", *(areas or {}), *(maxima or {}), *(minima or {})]
    if not n:
        return gpd.GeoDataFrame(columns=columns, geometry=[], crs=grid.crs)
    index = np.arange(1, n + 1)
    data = {name: np.round(ndimage.sum(raster, labels, index) * grid.pixel_ha, 3) for name, raster in {"area_ha": mask, **(areas or {})}.items()}
    for name, raster in (maxima or {}).items():
        data[name] = np.round(ndimage.maximum(raster, labels, index), 4)
    for name, raster in (minima or {}).items():
        data[name] = ndimage.minimum(raster, labels, index)
    parts: dict[int, list] = {}
    for geom, value in shapes(labels.astype(np.int32), mask=mask, transform=grid.transform, connectivity=8):
        parts.setdefault(int(value), []).append(shape(geom))
    geometry = [gpd.GeoSeries(parts[i]).union_all() for i in index]
    return gpd.GeoDataFrame(data, geometry=geometry, crs=grid.crs)


def _period_names(first_seen, periods: tuple[str, ...]) -> list[str | None]:
    """Period names of first-seen indices (255: never seen)."""
    return [periods[int(v)] if v < 255 else None for v in first_seen]


def confidence_raster(found: gpd.GeoDataFrame, grid: Grid) -> np.ndarray:
    """Each pixel's highest detection confidence (0 outside detections)."""
    out = np.zeros(grid.shape, dtype=np.float32)
    if len(found):
        order = found.sort_values("max_confidence")  # later shapes are burned on top: the highest wins
        rasterize(zip(order.to_crs(grid.crs).geometry, order["max_confidence"].astype(float)), out=out, transform=grid.transform)
    return out


def change_classes(current: np.ndarray, previous: np.ndarray | None, before: np.ndarray | None, pixel_ha: float,
                   min_change_ha: float = 0.5, tolerance_px: int = 2, possible_before: np.ndarray | None = None,
                   min_pixels: int = MIN_PIXELS, max_elongation: float = MAX_ELONGATION) -> tuple[np.ndarray, np.ndarray]:
    """Classify a period's scar against the previous period's (``previous``) and everything mapped
    before it (``before``, the cumulative footprint up to the previous period). ``possible_before``
    adds the earlier pixels that were possibly mine ground (mapped only weakly, below the scar's
    threshold): nothing there is new mining. A patch is ``expanded`` when it touches scar mapped
    before and has at least ``min_change_ha`` of new ground, ``new`` when it touches no mapped scar
    (beside places that only looked possibly mine, only its ground beyond them counts).

    Returns
    -------
    (classes, new)
        ``classes``: per pixel 0 (none) or 1 + the index in :data:`CHANGE_CLASSES` (the receded class
        marks what was in ``previous`` and is gone); every pixel of one current patch has the patch's
        class, except new patches smaller than ``min_change_ha`` (0: too small to report).
        ``new``: the pixels mapped for the first time (beyond the tolerance).
    """
    classes = np.zeros(current.shape, dtype=np.uint8)
    if before is None:
        classes[current] = 1 + CHANGE_CLASSES.index("new")
        return classes, current.copy()
    mapped_near = grown_by(before, tolerance_px)
    grown = mapped_near if possible_before is None else grown_by(before | possible_before, tolerance_px)
    # New pixels, cleaned of isolated edge pixels (jitter, mixed pixels) by an opening; a compact
    # patch of new ground (not long and narrow, at least the minimum mapping unit) is kept whole,
    # since the opening would also erode a thin new pit that is no edge jitter.
    outside = current & ~grown
    new = (ndimage.binary_opening(outside, EIGHT) | kept_patches(outside, outside, 0.0, min_pixels, max_elongation)) & current
    labels, n = ndimage.label(current, structure=EIGHT)
    if n:
        index = np.arange(1, n + 1)
        touches_before = ndimage.maximum(grown, labels, index).astype(bool)
        touches_mapped = ndimage.maximum(mapped_near, labels, index).astype(bool)
        new_ha = ndimage.sum(new, labels, index) * pixel_ha
        area_ha = ndimage.sum(current, labels, index) * pixel_ha
        # expanded: grown out of scar mapped before; a patch beside places that only looked possibly
        # mine is new (its new ground counted without those places)
        grown_kind = np.where(touches_mapped, 1 + CHANGE_CLASSES.index("expanded"), 1 + CHANGE_CLASSES.index("new"))
        kind = np.where(~touches_before, np.where(area_ha >= min_change_ha, 1 + CHANGE_CLASSES.index("new"), 0),
                        np.where(new_ha >= min_change_ha, grown_kind, 1 + CHANGE_CLASSES.index("persisting")))
        classes[current] = np.concatenate([[0], kind])[labels[current]]
        # A patch that is new as a whole is new everywhere; an expanded one only where it grew; new
        # patches smaller than min_change_ha are left out of the change products (flicker, noise).
        new &= np.isin(labels, index[(kind != 1 + CHANGE_CLASSES.index("persisting")) & (kind != 0)])
    if previous is not None:
        kept = grown_by(current, tolerance_px)
        gone = ndimage.binary_opening(previous & ~kept, EIGHT)
        labels, n = ndimage.label(gone, structure=EIGHT)
        if n:
            big = ndimage.sum(gone, labels, np.arange(1, n + 1)) * pixel_ha >= min_change_ha
            classes[np.isin(labels, np.flatnonzero(big) + 1) & (classes == 0)] = 1 + CHANGE_CLASSES.index("receded")
    return classes, new


def established_ground(reflectance: dict[str, np.ndarray], scar: np.ndarray, probability: np.ndarray | None, threshold: float | None,
                       hysteresis: float = 0.5, ndvi_max: float = 0.25) -> np.ndarray:
    """The pixels of one period where scar mapped in a later period is not new mining:

    - possibly mine ground already: the classifier's ``probability`` reached ``hysteresis`` ×
      ``threshold`` (a hysteresis in time: a mine mapped only weakly is not new when it is mapped
      later); without a classifier (``probability`` None), the period's ``scar``;
    - open ground already: water or bare ground (:func:`asgm.scar.candidates`) in compact patches of
      at least the mapping unit (a field, a pit, a pond; not a road, a track or a river). Mining
      turns forest and farmland into open ground; where the ground was open before, a scar mapped
      now is a mine missed before, or a field, a sandbar or a pond that looks different this period.
      The price: a mine dug into ground open in any earlier period (an old scar, a field ploughed
      once, ground bared by a fire) is not new mining (it is still scar).
    """
    possible = probability >= hysteresis * threshold if probability is not None else scar
    ground = np.logical_or(*candidates(reflectance, ndvi_max))
    return possible | kept_patches(ground, ground, 0.0, MIN_PIXELS, MAX_ELONGATION)


def change_polygons(classes: np.ndarray, new: np.ndarray, first_seen: np.ndarray, confidence: np.ndarray, grid: Grid,
                    periods: tuple[str, ...]) -> gpd.GeoDataFrame:
    """Polygons of :func:`change_classes`' output: ``change``, ``area_ha``, ``new_ha`` (mapped for
    the first time), ``first_seen`` (the earliest period of any of its pixels) and ``confidence``."""
    frames = []
    for i, name in enumerate(CHANGE_CLASSES):
        mask = classes == i + 1
        if not mask.any():
            continue
        gdf = mask_polygons(mask, grid, maxima={"confidence": confidence}, minima={"first_seen": first_seen}, areas={"new_ha": new})
        gdf["first_seen"] = _period_names(gdf["first_seen"], periods)
        gdf.insert(0, "change", name)
        frames.append(gdf)
    if not frames:
        return gpd.GeoDataFrame(columns=["change", "area_ha", "new_ha", "confidence", "first_seen"], geometry=[], crs=grid.crs)
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=grid.crs)


def zone_statistics(scars: dict[str, gpd.GeoDataFrame], zones: gpd.GeoDataFrame, name_column: str = "name") -> pd.DataFrame:
    """Hectares of scar per zone and period, the cumulative footprint and the change from the
    previous period, computed in an equal-area CRS (:data:`EQUAL_AREA`).

    Parameters
    ----------
    scars
        Period name → scar polygons (any CRS), oldest first.
    zones
        Named polygons (protected areas, indigenous territories, municipalities; they may overlap).

    Returns
    -------
    DataFrame
        One row per zone and period: ``zone``, ``period``, ``mining_ha``, ``cumulative_ha``, ``change_ha``.
    """
    if name_column not in zones:
        raise AsgmError(f"the zones have no {name_column!r} column (columns: {list(zones.columns)})\n"
                        f"  How to fix: give each zone a {name_column} property")
    zones = zones.to_crs(EQUAL_AREA)
    rows = []
    cumulative = None
    previous = {}
    for period, scar in scars.items():
        union = scar.to_crs(EQUAL_AREA).union_all() if len(scar) else None
        cumulative = union if cumulative is None else (cumulative if union is None else cumulative.union(union))
        for zone, geometry in zip(zones[name_column], zones.geometry):
            mining = union.intersection(geometry).area / 1e4 if union is not None else 0.0
            total = cumulative.intersection(geometry).area / 1e4 if cumulative is not None else 0.0
            rows.append({"zone": zone, "period": period, "mining_ha": round(mining, 3), "cumulative_ha": round(total, 3),
                         "change_ha": round(mining - previous[zone], 3) if zone in previous else np.nan})
            previous[zone] = mining
    return pd.DataFrame(rows)


@dataclass
class MonitoringResult:
    """What :func:`run_monitoring` wrote and measured (paths under ``out_dir``)."""

    out_dir: Path
    periods: tuple[str, ...]
    rasters: dict[str, Path]
    model_dir: Path
    threshold: float
    #: Per period: detections (windows above threshold), scar polygons, change polygons.
    detections: dict[str, gpd.GeoDataFrame]
    scars: dict[str, gpd.GeoDataFrame]
    changes: dict[str, gpd.GeoDataFrame]
    cumulative: gpd.GeoDataFrame
    summary: pd.DataFrame
    zones: gpd.GeoDataFrame | None
    zone_table: pd.DataFrame | None
    alerts: gpd.GeoDataFrame
    #: Against the demo's ground truth (None for real profiles).
    evaluation: pd.DataFrame | None
    seconds: dict[str, float]


def period_rasters(cfg, progress: bool = True):
    """The composite of each monitoring period: generated for the demo (a SYNTHETIC history, with
    its ground truth), ``raster`` for local profiles, exported for Earth Engine and STAC (cached under
    ``data/cache/monitoring/<profile>/``, resumable).

    Returns
    -------
    (rasters, history)
        Period name → GeoTIFF, and the demo history (None for real sources).
    """
    from asgm.imagery import open_source
    from asgm.imagery.demo_history import ensure_demo_history
    from asgm.imagery.remote import export_composite
    from asgm.regions import read_boundary

    periods = cfg.monitoring.periods
    if not periods:
        raise AsgmError(f"the profile {cfg.name!r} has no monitoring periods\n"
                        f"  How to fix: add a monitoring section with at least two periods to {cfg.source_file} (see configs/demo.yaml)")
    if cfg.imagery.source == "demo":
        history = ensure_demo_history(cfg.synthetic, tuple(p.name for p in periods), cfg.monitoring.demo_size_km or cfg.synthetic.size_km,
                                      Path(cfg.synthetic.output_dir) / "history", progress)
        return {p.name: history.composite(p.name) for p in periods}, history
    if cfg.imagery.source == "local":
        for p in periods:
            if not p.raster.is_file():
                raise InputFileError(p.raster, f"composite of monitoring period {p.name!r} not found", "give an existing GeoTIFF in monitoring.periods[].raster")
        return {p.name: p.raster for p in periods}, None
    rasters = {}
    boundary = read_boundary(cfg.scan.boundary or cfg.region.boundary)
    for p in periods:
        path = cfg.cache_dir / "monitoring" / cfg.name / f"{p.name}.tif"
        if not path.is_file():
            window = dataclasses.replace(cfg.imagery, date_start=p.date_start, date_end=p.date_end)
            with open_source(dataclasses.replace(cfg, imagery=window), progress) as source:
                export_composite(source, boundary, path)
        rasters[p.name] = path
    return rasters, None


def period_grid(rasters: dict[str, Path], raster_bands: tuple[str, ...] | None = None) -> Grid:
    """The pixel grid that every period's composite shares (checked before any scan).

    Raises
    ------
    InputFileError
        A composite is not a readable raster, holds no data, is on another grid than the first
        period's, or lacks a band the scar needs.
    """
    grid, first = None, next(iter(rasters.values()))
    for period, raster in rasters.items():
        try:
            src = rasterio.open(raster)
        except rasterio.errors.RasterioIOError as exc:
            raise InputFileError(raster, f"composite of period {period!r} is not a raster GDAL can read ({exc})",
                                 "give a GeoTIFF, COG or VRT (monitoring.periods[].raster), or delete a broken export to fetch it again") from None
        with src:
            scar_band_names(src, Path(raster), raster_bands)
            this = Grid(src.transform, src.crs, (src.height, src.width))
            # a decimated look at the first band: an all no-data composite would report every mine as receded
            sample = src.read(1, out_shape=(min(src.height, 512), min(src.width, 512)), masked=True)
            if sample.mask.all() or (src.nodata is None and not sample.any()):
                raise InputFileError(raster, f"composite of period {period!r} holds no data (every pixel is no-data)",
                                     "check the period's dates and the export (a window without clear scenes gives an empty composite)")
        if grid is not None and this != grid:
            raise InputFileError(raster, f"is not on the pixel grid of the first period's composite ({first})",
                                 "export every period over the same boundary and CRS (or warp them to one grid, e.g. gdalwarp -tap)")
        grid = this
    return grid


def monitoring_model(cfg) -> Path:
    """``monitoring.model``, else the model notebook 05 scanned with."""
    name = cfg.monitoring.model or cfg.scan.model
    candidates = [name] if name else ["s2_osm", "scan_cnn"]
    for candidate in candidates:
        path = cfg.models_dir / plain_name(candidate, "monitoring.model")
        if (path / "model.keras").is_file() and (name or _is_scan_cnn(path)):
            return path
    raise InputFileError(cfg.models_dir / candidates[-1], "no trained scan model",
                         "run notebook 05 (make scan) first, or name a trained model in monitoring.model")


def _is_scan_cnn(model_dir: Path) -> bool:
    import json

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return config.get("training", {}).get("architecture") == "scan_cnn"


@dataclass
class WindowProducts:
    """The pixel-level products of one window of :func:`detection_windows`, per period."""

    window: Window
    masks: dict[str, np.ndarray]
    news: dict[str, np.ndarray]
    scars: dict[str, gpd.GeoDataFrame]
    changes: dict[str, gpd.GeoDataFrame]
    cumulative: gpd.GeoDataFrame


def window_products(window: Window, grid: Grid, rasters: dict[str, Path], found: dict[str, gpd.GeoDataFrame], classifier,
                    settings, scale: float, raster_bands: tuple[str, ...] | None = None) -> WindowProducts:
    """Scar, change and cumulative footprint of every period inside one window.

    Parameters
    ----------
    window, grid
        The window (:func:`detection_windows`) and the composites' grid.
    rasters, found
        Period → composite and period → detections (in the grid's CRS), oldest first.
    classifier
        The scar's pixel classifier, or None for the rules (:func:`asgm.scar.scar_mask`).
    settings
        ``scar_ndvi``, ``scar_grow_px``, ``scar_grow_fraction``, ``new_hysteresis`` and ``min_change_ha``
        (a :class:`~asgm.config.MonitoringConfig`).
    """
    local = window_grid(grid, window)
    names = tuple(rasters)
    area = box(*rasterio.windows.bounds(window, grid.transform))
    found = {n: f.iloc[f.sindex.query(area, predicate="intersects")] if len(f) else f for n, f in found.items()}
    # Every period's scar is delineated inside every period's detections: a mine the patch model
    # misses in one composite (haze, a cloud edge) is still measured there, and the pixel classifier,
    # not the window, decides whether a place is mine ground in each period.
    examined = np.logical_or.reduce([footprint_mask(found[n], local) for n in names])
    confidences = {n: confidence_raster(found[n], local) for n in names}
    strongest = np.maximum.reduce(list(confidences.values()))
    masks, possible, scars = {}, {}, {}
    for name, raster in rasters.items():
        reflectance, _ = read_reflectance(raster, scale, raster_bands, window=window)
        probability = mine_probability(reflectance, examined, classifier, settings.scar_ndvi) if classifier else None
        masks[name] = scar_mask(reflectance, examined, classifier, ndvi_max=settings.scar_ndvi, probability=probability,
                                grow_px=settings.scar_grow_px, grow_fraction=settings.scar_grow_fraction)
        possible[name] = established_ground(reflectance, masks[name], probability, classifier.threshold if classifier else None,
                                            settings.new_hysteresis, settings.scar_ndvi)
        # the period's own detections' confidence; another period's where only that one detected the place
        confidences[name] = np.where(confidences[name] > 0, confidences[name], strongest)
        scars[name] = mask_polygons(masks[name], local, maxima={"confidence": confidences[name]})
    changes, news, first_seen, before, possible_before = {}, {}, np.full(local.shape, 255, dtype=np.uint8), None, None
    for k, name in enumerate(names):
        first_seen[masks[name] & (first_seen == 255)] = k
        previous = masks[names[k - 1]] if k else None
        classes, news[name] = change_classes(masks[name], previous, before, local.pixel_ha, settings.min_change_ha, possible_before=possible_before)
        changes[name] = change_polygons(classes, news[name], first_seen, np.maximum(confidences[name], confidences[names[k - 1]] if k else 0), local, names)
        before = masks[name] if before is None else before | masks[name]
        possible_before = possible[name] if possible_before is None else possible_before | possible[name]
    cumulative = mask_polygons(before, local, minima={"first_seen": first_seen})
    cumulative["first_seen"] = _period_names(cumulative["first_seen"], names)
    return WindowProducts(window, masks, news, scars, changes, cumulative)


def run_monitoring(cfg, progress: bool = True) -> MonitoringResult:
    """Scan every period, delineate scars, classify change, sum hectares per zone, write alerts
    (see the module's description). Each period's scan is reused when it is already on disk."""
    import time

    from asgm.predict import load_trained_model
    from asgm.scan import detections, scan_region, write_detections

    timer = {"start": time.perf_counter()}
    mo, sc = cfg.monitoring, cfg.scan
    rasters, history = period_rasters(cfg, progress)
    # bad inputs fail here, in seconds, not after hours of scanning
    raster_bands = cfg.imagery.raster_bands if cfg.imagery.source == "local" else None
    grid = period_grid(rasters, raster_bands)
    zones = monitoring_zones(cfg, history)
    if zones is not None:
        warn_zones_outside(zones, grid)
    out = ensure_writable(cfg.reports_dir / "monitoring", "monitoring products")
    timer["rasters"] = time.perf_counter()
    names = tuple(rasters)
    model_dir = monitoring_model(cfg)
    trained = load_trained_model(model_dir)
    threshold = next(t for t in (mo.threshold, sc.threshold, trained.threshold) if t is not None)
    isolated = mo.isolated_threshold if mo.isolated_threshold is not None else sc.isolated_threshold
    uses_osm = any(c in cfg.osm.channels for c in trained.channels)
    classifier = ensure_scar_classifier(model_dir, mo.scar_ndvi) if mo.scar_method == "classifier" else None
    settings = {"threshold": round(float(threshold), 4), "isolated_threshold": isolated, "model": model_dir.name, "scar_method": mo.scar_method,
                "scar_threshold": round(classifier.threshold, 4) if classifier else None,
                "scar_grow_px": mo.scar_grow_px if classifier else None, "scar_grow_fraction": mo.scar_grow_fraction if classifier else None,
                "new_hysteresis": mo.new_hysteresis if classifier else None}
    # A one-worker local cluster per period would load the model and burn OSM again for each period;
    # in this process they are loaded once and shared by every period.
    scheduler = "synchronous" if sc.scheduler == "local" and sc.workers == 1 else sc.scheduler
    found = {}
    for name, raster in rasters.items():
        result = scan_region(model_dir, raster, out / name, stride=sc.stride, tile_px=sc.tile_px,
                             osm_features=cfg.osm_features_path if uses_osm else None, fast=sc.fast, scheduler=scheduler,
                             workers=sc.workers, max_nodata_fraction=cfg.patches.max_nodata_fraction,
                             raster_bands=raster_bands, progress=progress)
        found[name] = detections(result.probability, threshold, isolated, sc.isolated_neighbours, sc.isolated_distance_m)
    timer["scan"] = time.perf_counter()
    # Every product is written to a staging directory and published as one set at the end: a run that
    # fails leaves the previous run's products whole, and a run without zones leaves no old zones.csv.
    with staging(out / "products") as stage:
        for name in names:
            write_detections(found[name].assign(period=name, **settings), stage / name / "detections.geojson")
        on_grid = {name: f.to_crs(grid.crs) for name, f in found.items()}
        windows = detection_windows(on_grid, grid)
        parts = [window_products(window, grid, rasters, on_grid, classifier, mo, cfg.imagery.scale, raster_bands)
                 for window in progress_bar(windows, desc="scar and change", unit="window", disable=not progress)]
        empty = np.zeros((1, 1), dtype=bool)
        scars = {name: _concat([p.scars[name] for p in parts], mask_polygons(empty, grid, maxima={"confidence": empty})) for name in names}
        changes = {name: _concat([p.changes[name] for p in parts], change_polygons(empty, empty, empty, empty, grid, names)) for name in names}
        cumulative = _concat([p.cumulative for p in parts], mask_polygons(empty, grid, minima={"first_seen": empty}))
        for name in names:
            write_detections(scars[name].assign(period=name, **settings), stage / name / "scar.geojson")
            _write_mask(stage / name / "scar.tif", [(p.window, p.masks[name]) for p in parts], grid)
            write_detections(changes[name].assign(period=name, **settings), stage / name / "change.geojson")
        write_detections(cumulative.assign(since=names[0], until=names[-1], **settings), stage / "cumulative.geojson")
        summary = pd.DataFrame({
            "detections": [len(found[n]) for n in names],
            "detected_ha": [round(found[n]["area_ha"].sum(), 1) for n in names],
            "scar_ha": [round(sum(int(p.masks[n].sum()) for p in parts) * grid.pixel_ha, 2) for n in names],
            "new_ha": [round(changes[n].loc[changes[n]["change"].isin(["new", "expanded"]), "new_ha"].sum(), 2) for n in names],
            "receded_ha": [round(changes[n].loc[changes[n]["change"] == "receded", "area_ha"].sum(), 2) for n in names],
        }, index=pd.Index(names, name="period"))
        _write_csv(summary, stage / "summary.csv")
        zone_table = None
        if zones is not None:
            zone_table = zone_statistics(scars, zones)
            _write_csv(zone_table, stage / "zones.csv", index=False)
        timer["products"] = time.perf_counter()
        features = None
        if cfg.osm_features_path.is_file():
            from asgm.osm import read_features

            features = read_features(cfg.osm_features_path)
        newest = alerts(changes[names[-1]], zones, features, rasters[names[-2]], rasters[names[-1]], stage / "alerts", names[-2], names[-1])
        write_detections(newest.assign(**settings), stage / "alerts.geojson")
        evaluation = None
        if history is not None:
            masks = {n: _mosaic([(p.window, p.masks[n]) for p in parts], grid) for n in names}
            news = {n: _mosaic([(p.window, p.news[n]) for p in parts], grid) for n in names}
            evaluation = evaluate_history(history, masks, changes, news, grid, mo.min_change_ha)
            _write_csv(evaluation, stage / "evaluation.csv")
        publish(stage, out, {"periods": list(names), "settings": settings})
    timer["alerts"] = time.perf_counter()
    steps = list(timer)
    seconds = {b: round(timer[b] - timer[a], 1) for a, b in zip(steps, steps[1:])}
    return MonitoringResult(out, names, rasters, model_dir, float(threshold), found, scars, changes, cumulative, summary,
                            zones, zone_table, newest, evaluation, seconds)


def read_zones(path: str | Path) -> gpd.GeoDataFrame:
    """A zones file (``monitoring.zones``): polygons with a ``name`` and a CRS.

    Raises
    ------
    InputFileError
        The file is missing or unreadable, or has no ``name`` property, no CRS or geometries that
        are not polygons.
    """
    fix = "give a GeoJSON (or any file GDAL reads) of polygons with a name property and a CRS in monitoring.zones, or null for none"
    if not Path(path).is_file():
        raise InputFileError(path, "zones file not found", fix)
    try:
        zones = gpd.read_file(path)
    except Exception as exc:  # GDAL's errors differ by driver; the file is what is wrong
        raise InputFileError(path, f"is not a readable vector file ({exc})", fix) from None
    if "name" not in zones:
        raise InputFileError(path, f"has no 'name' property (it has: {', '.join(c for c in zones.columns if c != 'geometry') or 'none'})", fix)
    if zones.crs is None and len(zones):
        raise InputFileError(path, "has no CRS", fix)
    kinds = set(zones.geom_type.dropna()) - {"Polygon", "MultiPolygon"}
    if kinds:
        raise InputFileError(path, f"has {', '.join(sorted(kinds))} geometries; zones must be polygons", fix)
    empty = zones.geometry.isna() | zones.geometry.is_empty
    if empty.any():
        raise InputFileError(path, f"zone(s) {zones.loc[empty, 'name'].tolist()[:5]} have no geometry", "give them their polygons, or remove them")
    repeated = zones["name"][zones["name"].duplicated()].unique().tolist()
    if repeated:
        raise InputFileError(path, f"zone name(s) {repeated[:5]} are used by more than one zone, so their hectares would be mixed",
                             "give every zone its own name, or merge the parts of one zone into one (multi)polygon")
    invalid = ~zones.geometry.is_valid
    if invalid.any():
        # as for the boundary: make_valid keeps every part of a self-intersecting outline
        warnings.warn(f"{path}: zone(s) {zones.loc[invalid, 'name'].tolist()[:5]} had invalid outlines (e.g. self-intersecting) and were "
                      "repaired with shapely.make_valid; check them, or fix the file (e.g. QGIS: Fix geometries)", AsgmWarning, stacklevel=2)
        zones.loc[invalid, "geometry"] = zones.geometry[invalid].make_valid()
    return zones


def warn_zones_outside(zones: gpd.GeoDataFrame, grid: Grid) -> None:
    """Warn about zones that the monitored region does not reach (their hectares are 0 by construction)."""
    region = gpd.GeoSeries([box(*rasterio.transform.array_bounds(grid.shape[0], grid.shape[1], grid.transform))], crs=grid.crs).to_crs(zones.crs).iloc[0]
    outside = ~zones.intersects(region)
    if outside.any():
        warnings.warn(f"{int(outside.sum())} zone(s) lie entirely outside the monitored region and get 0 ha: {zones.loc[outside, 'name'].tolist()[:5]}; "
                      "check the zones file (and its CRS) against the region", AsgmWarning, stacklevel=2)


def monitoring_zones(cfg, history=None) -> gpd.GeoDataFrame | None:
    """The zones to report hectares for: ``monitoring.zones`` (or the SYNTHETIC history's), plus
    OpenStreetMap's named protected areas and indigenous lands inside the scan boundary when
    ``monitoring.osm_zones`` is on (read once from the OSM source, then from ``osm_zones.geojson``);
    None when there are none."""
    from asgm.osm import ZONE_TAGS, load_osm_features, zones_from_osm
    from asgm.regions import WGS84, read_boundary

    mo, parts = cfg.monitoring, []
    path = mo.zones or (history.zones if history is not None else None)
    if path is not None:
        parts.append(read_zones(path))
    if mo.osm_zones:
        kept = cfg.contextual_dir / "osm_zones.geojson"
        if kept.is_file():
            parts.append(gpd.read_file(kept))
        else:
            found = zones_from_osm(load_osm_features(cfg, read_boundary(cfg.scan.boundary or cfg.region.boundary), ZONE_TAGS))
            with atomic_path(kept) as tmp:
                found.to_file(tmp, driver="GeoJSON", layer=kept.stem)
            parts.append(found)
    parts = [p.to_crs(WGS84) for p in parts if len(p)]
    return gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), crs=WGS84) if parts else None


def _write_mask(path: Path, parts: list[tuple[Window, np.ndarray]], grid: Grid) -> None:
    """A boolean raster on ``grid`` written window by window: 0 wherever no window was written
    (sparse tiles, so a wall-to-wall region's file stays small)."""
    profile = {"driver": "GTiff", "width": grid.shape[1], "height": grid.shape[0], "count": 1, "dtype": "uint8", "crs": grid.crs,
               "transform": grid.transform, "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate", "sparse_ok": True}
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        for window, mask in parts:
            dst.write(mask.astype(np.uint8), 1, window=window)


def _mosaic(parts: list[tuple[Window, np.ndarray]], grid: Grid) -> np.ndarray:
    """Windows' boolean rasters placed on the whole grid (False elsewhere)."""
    out = np.zeros(grid.shape, dtype=bool)
    for window, array in parts:
        out[window.toslices()] = array
    return out


def _concat(frames: list[gpd.GeoDataFrame], template: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The windows' polygons as one table (``template``, an empty table with the columns, if none)."""
    frames = [f for f in frames if len(f)]
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=template.crs) if frames else template


def _write_csv(table: pd.DataFrame, path: Path, index: bool = True) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=index)


def alerts(change: gpd.GeoDataFrame, zones: gpd.GeoDataFrame | None, features: gpd.GeoDataFrame | None, before_raster: Path,
           after_raster: Path, thumbnails: Path, before: str, after: str) -> gpd.GeoDataFrame:
    """The newest period's new and expanded mining, largest new area first (then most confident),
    each with the zones it touches, the nearest OSM river or road and a before/after thumbnail PNG."""
    from asgm.plots import save_before_after

    found = change[change["change"].isin(["new", "expanded"])].sort_values(["new_ha", "confidence"], ascending=False).reset_index(drop=True)
    found.insert(0, "alert_id", [f"{after}-{i + 1:03d}" for i in range(len(found))])
    found["zones"] = zone_names(found, zones)
    found["nearest_osm"], found["nearest_osm_m"] = "", np.nan
    if features is not None and len(found):
        lines = features[features["waterway"].notna() | features["highway"].notna()].to_crs(found.crs)
        if len(lines):
            hit, distance = lines.sindex.nearest(found.geometry, return_distance=True, return_all=False)
            nearest = lines.iloc[hit[1]]
            found["nearest_osm"] = [(f"waterway={w}" if isinstance(w, str) else f"highway={h}") + (f" ({n})" if isinstance(n, str) else "")
                                    for w, h, n in zip(nearest["waterway"], nearest["highway"], nearest.get("name", pd.Series([None] * len(nearest))))]
            found["nearest_osm_m"] = np.round(distance, 0)
    thumbnails.mkdir(parents=True, exist_ok=True)
    found["thumbnail"] = [save_before_after(before_raster, after_raster, g, thumbnails / f"{a}.png", before, after).name
                          for a, g in zip(found["alert_id"], found.geometry)]
    return found


def previous_products(out: Path) -> set[str]:
    """What an earlier run wrote in ``out`` (paths relative to it): the files its ``products.json``
    lists; for versions before that list, the fixed product names and the thumbnails its
    ``alerts/thumbnails.csv`` listed."""
    if (out / PRODUCTS).is_file():
        return set(read_json_object(out / PRODUCTS, f"delete {out / PRODUCTS}: a rerun rewrites it").get("files", []))
    ours = {name for name in RUN_PRODUCTS if (out / name).is_file()}
    ours |= {f"{d.name}/{name}" for d in out.iterdir() if d.is_dir() for name in PERIOD_PRODUCTS if (d / name).is_file()} if out.is_dir() else set()
    index = out / "alerts" / OLD_THUMBNAIL_INDEX
    if index.is_file():
        ours |= {f"alerts/{OLD_THUMBNAIL_INDEX}"} | {f"alerts/{name}" for name in pd.read_csv(index)["thumbnail"].astype(str)}
    return ours


def publish(stage: Path, out: Path, record: dict) -> list[str]:
    """Move a run's products from ``stage`` into ``out`` as one set, and list them in ``products.json``.

    The previous run's products that this run did not make (a ``zones.csv`` of a run with zones, an
    alert's thumbnail) are removed; every file of this run replaces its namesake. Files that no run
    wrote are never touched: a file of someone else's where this run would write stops the run before
    anything moves, and others in ``alerts/`` are left in place with a warning.

    Raises
    ------
    AsgmError
        A file that this tool did not write stands where a product goes.
    """
    new = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file())
    ours = previous_products(out)
    foreign = [name for name in new if (out / name).exists() and name not in ours and name.split("/")[0] == "alerts"]
    if foreign:
        raise AsgmError(f"{out}: {', '.join(foreign[:5])} exist(s) but were not written by asgm.monitor, and this run's alerts would replace "
                        "them; nothing was published and the previous products are unchanged. How to fix: move those files elsewhere and rerun "
                        "(the scans are kept)")
    for name in sorted(ours - set(new)):
        (out / name).unlink(missing_ok=True)
    for name in new:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / name, out / name)
    write_text(out / PRODUCTS, json.dumps({"files": new, **record}, indent=2, default=str))
    alerts_dir = out / "alerts"
    others = sorted(p.name for p in alerts_dir.iterdir() if f"alerts/{p.name}" not in new) if alerts_dir.is_dir() else []
    if others:
        warnings.warn(f"{alerts_dir}: left {len(others)} file(s) that asgm.monitor did not write in place ({', '.join(others[:5])}"
                      f"{' …' if len(others) > 5 else ''}); this run's thumbnails are those listed in {out / PRODUCTS}", AsgmWarning, stacklevel=2)
    return new


def zone_names(found: gpd.GeoDataFrame, zones: gpd.GeoDataFrame | None) -> list[str]:
    """For each polygon, the names of the zones it touches ("; "-separated, "" for none)."""
    if zones is None or not len(found):
        return [""] * len(found)
    local = zones.to_crs(found.crs)
    return ["; ".join(local.loc[local.intersects(g), "name"].astype(str)) for g in found.geometry]


def evaluate_history(history, masks: dict[str, np.ndarray], changes: dict[str, gpd.GeoDataFrame], news: dict[str, np.ndarray], grid: Grid,
                     min_change_ha: float, tolerance_px: int = 2) -> pd.DataFrame:
    """Scars and new mining against the SYNTHETIC history's truth, per period and pooled (``all``).

    ``iou`` and ``area_error`` compare the scar pixels with the true mine ground. For new mining
    (periods after the first): ``new_recall`` is the share of the ``new_sites`` that opened in the
    period with at least ``min_change_ha`` of mine ground (the reporting size) that a new or expanded
    polygon covers, ``new_recall_all`` the same over every opened site however small;
    ``new_precision`` is the share of the ``new_polygons`` (new or expanded) whose new pixels
    (``news``, from :func:`change_classes`: all of a new polygon, the grown part of an expanded one)
    lie mostly (half or more) on truly new mine ground (within ``tolerance_px``). A few sites open
    per period, so recall and precision come with 95 % Wilson intervals (``_low``, ``_high``); the
    ``all`` row pools the pixels of every period and the sites and polygons of every change."""
    rows, truth_before, pooled = [], None, {"intersection": 0, "union": 0, "truth": 0, "scar": 0}
    for name, mask in masks.items():
        with rasterio.open(history.scar(name)) as src:
            truth = src.read(1).astype(bool)
        pixels = {"intersection": int((mask & truth).sum()), "union": int((mask | truth).sum()), "truth": int(truth.sum()), "scar": int(mask.sum())}
        pooled = {k: pooled[k] + v for k, v in pixels.items()}
        row = {"period": name} | _area_scores(**pixels, pixel_ha=grid.pixel_ha)
        if truth_before is not None:
            true_new = grown_by(truth & ~grown_by(truth_before, tolerance_px), tolerance_px)
            change = changes[name]
            mapped = change[change["change"].isin(["new", "expanded"])]
            sites = gpd.read_file(history.mine_polygons(name)).to_crs(grid.crs)
            opened = sites[sites["state"] == "new"]
            new_area = _burn(mapped.geometry, grid)
            covered = np.array([bool(new_area[_burn([g], grid, all_touched=True)].any()) for g in opened.geometry], dtype=bool)
            reportable = (opened["scar_ha"] >= min_change_ha).to_numpy()
            correct = 0
            for g in mapped.geometry:
                inside = _burn([g], grid, all_touched=True)
                claimed = inside & news[name]
                correct += bool(true_new[claimed if claimed.any() else inside].mean() >= 0.5)
            row |= {"new_sites": int(reportable.sum()), "new_found": int(covered[reportable].sum()),
                    "new_sites_all": len(opened), "new_found_all": int(covered.sum()),
                    "new_polygons": len(mapped), "new_correct": correct}
        truth_before = truth if truth_before is None else truth_before | truth
        rows.append(row)
    table = pd.DataFrame(rows)
    counts = ["new_sites", "new_found", "new_sites_all", "new_found_all", "new_polygons", "new_correct"]
    total = {"period": "all"} | _area_scores(**pooled, pixel_ha=grid.pixel_ha)
    table = pd.concat([table, pd.DataFrame([total | {c: int(table[c].sum()) for c in counts if c in table}])], ignore_index=True)
    if "new_sites" in table:
        for rate, (hits, n) in {"new_recall": ("new_found", "new_sites"), "new_recall_all": ("new_found_all", "new_sites_all"),
                                "new_precision": ("new_correct", "new_polygons")}.items():
            table = table.join(pd.DataFrame([wilson_interval(k, m) for k, m in zip(table[hits], table[n])], columns=[rate, f"{rate}_low", f"{rate}_high"]))
        table = table.drop(columns=["new_found", "new_found_all", "new_correct"]).astype({c: "Int64" for c in ("new_sites", "new_sites_all", "new_polygons")})
    return table.set_index("period")


def evaluation_summary(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`evaluate_history`'s table for reading: area error and IoU, then each share of new
    mining as ``value [low, high]`` beside the count it is a share of."""
    def share(rate: str) -> pd.Series:
        return pd.Series([f"{v:.2f} [{lo:.2f}, {hi:.2f}]" if pd.notna(v) else "" for v, lo, hi in
                          zip(table[rate], table[f"{rate}_low"], table[f"{rate}_high"])], index=table.index)

    out = pd.DataFrame({"true ha": table["true_ha"], "mapped ha": table["scar_ha"],
                        "area error": [f"{v:+.0%}" for v in table["area_error"]], "pixel IoU": table["iou"]})
    if "new_recall" in table:
        out["new sites (≥ reporting size)"] = table["new_sites"].astype("Int64").astype("string").fillna("")
        out["new-mining recall [95 %]"] = share("new_recall")
        out["new polygons"] = table["new_polygons"].astype("Int64").astype("string").fillna("")
        out["new-mining precision [95 %]"] = share("new_precision")
    return out


def _area_scores(intersection: int, union: int, truth: int, scar: int, pixel_ha: float) -> dict[str, float]:
    return {"true_ha": round(truth * pixel_ha, 2), "scar_ha": round(scar * pixel_ha, 2),
            "area_error": round(scar / max(truth, 1) - 1, 3), "iou": round(intersection / max(union, 1), 3)}


def _burn(geometries, grid: Grid, all_touched: bool = False) -> np.ndarray:
    """Geometries (in the grid's CRS) as a boolean raster on ``grid``."""
    shapes_ = [(g, 1) for g in geometries]
    if not shapes_:
        return np.zeros(grid.shape, dtype=bool)
    return rasterize(shapes_, out_shape=grid.shape, transform=grid.transform, dtype=np.uint8, all_touched=all_touched).astype(bool)


def main(argv: list[str] | None = None) -> int:
    from asgm.config import load_profile

    args = cli.monitor_arguments(argv)

    try:
        result = run_monitoring(load_profile(args.profile, root=args.root), progress=not args.no_progress)
    except AsgmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: nothing new was published (the previous products are whole); run the same command again to resume "
              "(finished scans are kept)", file=sys.stderr)
        return 130
    print(result.summary.to_string())
    print(f"{len(result.alerts)} alert(s) of new mining in {result.periods[-1]} -> {result.out_dir / 'alerts.geojson'}")
    if result.evaluation is not None:
        print(f"\nAgainst the SYNTHETIC history's truth (says nothing about real mining) -> {result.out_dir / 'evaluation.csv'}")
        print(evaluation_summary(result.evaluation).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
