"""Region scan: a trained model slid over a whole region → a probability raster and detections.

A window of the model's patch size moves over the region raster at ``stride`` pixels. Each window's
probability of mine becomes one pixel of the probability raster (a GeoTIFF whose pixels are
``stride`` × ``stride`` blocks centred on the window centres); windows at or above the threshold
are dissolved into detection polygons (GeoJSON, with mean and max confidence and area in hectares).

The region is processed tile by tile (a tile is about ``tile_px`` × ``tile_px`` pixels: whole windows,
read with the overlap of one window), so memory stays bounded whatever the region's size. Tiles are
tasks on a dask.distributed cluster (a local one, or a scheduler address) or run in-process; each
finished tile is written to disk at once, so an interrupted scan resumes with the missing tiles.

Fast path: a network without padding inside the window (``scan_cnn``) runs as one convolution over
the tile (:func:`asgm.models.fully_convolutional`), so overlapping windows share their work; it gives
the per-window probabilities to within float rounding for strides that are multiples of its output
stride (12 px). Other networks or strides fall back to predicting each window.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from affine import Affine
from rasterio.windows import Window
from scipy.spatial import cKDTree

from asgm.atomic import atomic_path, write_array
from asgm.cluster import run_tasks
from asgm.config import OSM_CHANNELS, S2_BANDS
from asgm.errors import AsgmError, InputFileError
from asgm.regions import WGS84, PatchGrid


@dataclass(frozen=True)
class TileSpec:
    """Everything a worker needs to scan one tile (plain values, so it travels to any machine)."""

    model_dir: str
    raster: str
    bands: tuple[str, ...]
    band_indexes: tuple[int, ...]
    osm_features: str | None
    osm_channels: tuple[str, ...]
    scale: float
    nodata: float
    row: int  # first window (row, col) of the tile, in window units
    col: int
    rows: int  # windows in the tile
    cols: int
    stride: int
    window: int
    fast: bool
    max_nodata_fraction: float
    part: str  # .npy written when the tile is done


@dataclass(frozen=True)
class ScanResult:
    probability: Path
    #: (rows, cols) of the probability raster: windows per column and per row.
    shape: tuple[int, int]
    #: Whether the fully convolutional path was used (else per-window prediction).
    fast: bool
    stride: int
    window: int
    tiles: int
    #: Tiles computed in this call (the rest were already on disk).
    computed: int


def window_grid(raster_transform: Affine, width: int, height: int, window: int, stride: int) -> tuple[Affine, int, int]:
    """The probability raster's grid: one pixel per window, a ``stride`` × ``stride`` block centred
    on the window's centre. Returns (transform, rows, cols)."""
    if width < window or height < window:
        raise AsgmError(f"the region raster ({width} x {height} px) is smaller than one {window} px window")
    rows, cols = (height - window) // stride + 1, (width - window) // stride + 1
    offset = (window - stride) / 2
    return raster_transform @ Affine.translation(offset, offset) @ Affine.scale(stride), rows, cols


def scan_region(model_dir: str | Path, raster: str | Path, out_dir: str | Path, stride: int = 24, tile_px: int = 1024,
                osm_features: str | Path | None = None, fast: bool = True, scheduler: str = "synchronous", workers: int = 1,
                max_nodata_fraction: float = 0.05, raster_bands: tuple[str, ...] | None = None, progress: bool = True) -> ScanResult:
    """Slide a trained model over a region raster and write ``out_dir/probability.tif``.

    Parameters
    ----------
    model_dir
        A model directory (``asgm.train``); its channels, patch size and normalisation are used.
    raster
        GeoTIFF/COG/VRT with the model's bands as named bands (reflectance × scale).
    out_dir
        Output directory; finished tiles are kept in ``out_dir/tiles-<key>/`` until the raster is written.
    stride
        Pixels between neighbouring windows (24: Earth Genome's).
    tile_px
        Tile side in pixels, rounded down to whole windows (at least one window per tile); memory
        per tile grows with its square.
    osm_features
        GeoPackage of OSM features (notebook 01) when the model uses OSM channels; they are burned on
        each tile's pixel grid, as on the training patches.
    fast
        Use the fully convolutional path when the model and stride allow it.
    scheduler
        ``synchronous`` (in this process), ``local`` (a dask.distributed LocalCluster of ``workers``
        processes) or a scheduler address (``tcp://host:8786``).
    max_nodata_fraction
        Windows with more no-data pixels get no probability (NaN).
    raster_bands
        Names of the raster's bands in file order, for rasters without band descriptions
        (``imagery.raster_bands``).

    Raises
    ------
    InputFileError
        The raster has no CRS, lacks a band the model needs (or band names), or OSM features are
        needed and missing. Checked before any tile is scanned.
    """
    if not (Path(model_dir) / "model.keras").is_file():
        raise InputFileError(Path(model_dir) / "model.keras", "missing", "train the model first (notebook 03 or python -m asgm.train)")
    trained, converted = _load(str(model_dir), stride)
    window = trained.patch_size
    bands = tuple(c for c in trained.channels if c in S2_BANDS)
    osm = tuple(c for c in trained.channels if c in OSM_CHANNELS)
    if osm and osm_features is None:
        raise InputFileError(Path(model_dir) / "config.json", f"the model uses OSM channels {list(osm)} but no OSM features were given",
                             "pass the profile's osm.gpkg (notebook 01) as osm_features, or scan with a model trained without OSM")
    raster = Path(raster)
    with rasterio.open(raster) as src:
        if src.crs is None:
            raise InputFileError(raster, "has no coordinate reference system, so detections could not be placed on a map",
                                 "assign the CRS it was made in, e.g. gdal_edit.py -a_srs EPSG:32620 FILE")
        names = list(raster_bands) if raster_bands else list(src.descriptions)
        if len(names) != src.count:
            raise InputFileError(raster, f"has {src.count} bands but {len(names)} names were given ({names})", "give one name per band in file order (imagery.raster_bands)")
        missing = [b for b in bands if b not in names]
        if missing:
            raise InputFileError(raster, f"lacks band(s) {missing} that the model needs; it has {names}",
                                 "scan a raster with the model's bands (named band descriptions, or name them in file order with imagery.raster_bands)")
        transform, rows, cols = window_grid(src.transform, src.width, src.height, window, stride)
        profile = {"driver": "GTiff", "width": cols, "height": rows, "count": 1, "dtype": "float32", "crs": src.crs,
                   "transform": transform, "nodata": np.nan, "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
        nodata = src.nodata if src.nodata is not None else 0
    scale = float(trained.config["normalization"]["scale"])
    tile_windows = max(1, (tile_px - window) // stride + 1)
    # Identifies the inputs and settings: finished tiles and the raster are reused only when all match.
    osm_stamp = [str(osm_features), *_file_stamp(Path(osm_features))] if osm else None
    key = hashlib.sha256(json.dumps([str(Path(model_dir).resolve()), trained.config.get("training_key"), str(raster.resolve()), *_file_stamp(raster),
                                     osm_stamp, stride, tile_windows, fast, max_nodata_fraction]).encode()).hexdigest()[:12]
    out_dir = Path(out_dir)
    probability = out_dir / "probability.tif"
    uses_fast = fast and converted is not None
    tiles = [(r, c) for r in range(0, rows, tile_windows) for c in range(0, cols, tile_windows)]
    if probability.is_file():
        with rasterio.open(probability) as done:
            if done.tags().get("scan_key") == key:
                return ScanResult(probability, (rows, cols), uses_fast, stride, window, len(tiles), 0)
    parts = out_dir / f"tiles-{key}"
    parts.mkdir(parents=True, exist_ok=True)
    specs = [TileSpec(str(model_dir), str(raster), bands, tuple(names.index(b) + 1 for b in bands), str(osm_features) if osm else None, osm,
                      scale, float(nodata), r, c, min(tile_windows, rows - r), min(tile_windows, cols - c), stride, window, fast,
                      max_nodata_fraction, str(parts / f"tile_{r:06d}_{c:06d}.npy")) for r, c in tiles]
    todo = [s for s in specs if not Path(s.part).is_file()]
    for _ in run_tasks(scan_tile, todo, scheduler, workers, progress, desc="scan tiles", unit="tile"):
        pass
    with atomic_path(probability) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        for s in specs:
            dst.write(np.load(s.part)[None], window=Window(s.col, s.row, s.cols, s.rows))
        dst.update_tags(scan_key=key, model=str(model_dir), raster=str(raster), stride=stride, window=window, fast_path=str(uses_fast))
    shutil.rmtree(parts)
    return ScanResult(probability, (rows, cols), uses_fast, stride, window, len(specs), len(todo))


def _file_stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


#: Per process: loaded models and OSM rasterisers, reused by every tile a worker scans.
_MODELS: dict[str, tuple] = {}
_RASTERIZERS: dict[tuple, object] = {}


def _load(model_dir: str, stride: int):
    """The trained model and its fast path at ``stride`` (a compiled network whose output pixels are
    the windows ``stride`` px apart; None when the network or the stride has none), loaded once per
    process, model file and stride."""
    key = f"{model_dir}|{(Path(model_dir) / 'model.keras').stat().st_mtime_ns}|{stride}"
    if key not in _MODELS:
        import tensorflow as tf

        from asgm.models import fully_convolutional
        from asgm.predict import load_trained_model

        trained = load_trained_model(model_dir)
        converted = fully_convolutional(trained.model)
        if converted is not None and stride % converted[1] == 0:
            # Only the kept windows' last stage is computed (a strided last stage, see fully_convolutional).
            step = stride // converted[1]
            fcn, fcn_stride = fully_convolutional(trained.model, step=step) if step > 1 else converted
            # One graph for every tile shape (edge tiles are smaller), instead of op-by-op eager calls.
            converted = (tf.function(lambda x: fcn(x, training=False), reduce_retracing=True), fcn_stride)
        else:
            converted = None
        _MODELS[key] = (trained, converted)
    return _MODELS[key]


def tile_inputs(spec: TileSpec, model_channels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The model's normalised input (H, W, C; ``model_channels`` in order) over the tile's pixels
    (its windows and their overlap), and the raw bands (for the no-data check)."""
    from asgm.models import normalize_patches
    from asgm.osm import OsmRasterizer, read_features

    height = (spec.rows - 1) * spec.stride + spec.window
    width = (spec.cols - 1) * spec.stride + spec.window
    pixels = Window(spec.col * spec.stride, spec.row * spec.stride, width, height)
    with rasterio.open(spec.raster) as src:
        data = np.moveaxis(src.read(list(spec.band_indexes), window=pixels), 0, -1)
        grid = PatchGrid(src.crs, src.window_transform(pixels), width, height)
    channels = list(spec.bands)
    if spec.osm_channels:
        key = (spec.osm_features, spec.osm_channels)
        if key not in _RASTERIZERS:
            _RASTERIZERS[key] = OsmRasterizer(read_features(spec.osm_features), grid.crs, spec.osm_channels)
        data = np.concatenate([data, _RASTERIZERS[key].rasterize(grid).astype(data.dtype)], axis=-1)
        channels += list(spec.osm_channels)
    return normalize_patches(data, channels, spec.scale, model_channels), data[..., : len(spec.bands)]


def scan_tile(spec: TileSpec) -> str:
    """Probabilities of the tile's windows (rows × cols, NaN where a window is mostly no data),
    written atomically to ``spec.part``; returns its path."""
    from asgm.models import predict_probabilities

    trained, converted = _load(spec.model_dir, spec.stride)
    x, bands = tile_inputs(spec, trained.channels)
    if spec.fast and converted is not None:
        probability = np.asarray(converted[0](x[None]))[0, : spec.rows, : spec.cols, 0]
    else:
        views = window_views(x, spec.window, spec.stride, spec.rows, spec.cols)
        n, batch = spec.rows * spec.cols, 256
        probability = np.concatenate([predict_probabilities(trained.model, views[np.unravel_index(np.arange(i, min(i + batch, n)), (spec.rows, spec.cols))])
                                      for i in range(0, n, batch)]).reshape(spec.rows, spec.cols)
    probability = np.where(nodata_fraction(bands, spec) > spec.max_nodata_fraction, np.nan, trained.calibrate(probability)).astype(np.float32)
    write_array(spec.part, probability)
    return spec.part


def window_views(x: np.ndarray, window: int, stride: int, rows: int, cols: int) -> np.ndarray:
    """The windows of ``x`` (H, W, C) at ``stride`` as a (rows, cols, window, window, C) view (no copy)."""
    views = np.lib.stride_tricks.sliding_window_view(x, (window, window), axis=(0, 1))[::stride, ::stride][:rows, :cols]
    return np.moveaxis(views, 2, -1)


def nodata_fraction(bands: np.ndarray, spec: TileSpec) -> np.ndarray:
    """Share of no-data pixels (every band at nodata) in each window of the tile, from an integral image."""
    empty = np.all(bands == spec.nodata, axis=-1)
    integral = np.pad(empty.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    top = np.arange(spec.rows)[:, None] * spec.stride
    left = np.arange(spec.cols)[None, :] * spec.stride
    w = spec.window
    counts = integral[top + w, left + w] - integral[top, left + w] - integral[top + w, left] + integral[top, left]
    return counts / (w * w)


def detections(probability: str | Path, threshold: float, isolated_threshold: float | None = None,
               neighbours: int = 5, isolation_m: float = 3000.0) -> gpd.GeoDataFrame:
    """Windows at or above ``threshold`` in a probability raster written by :func:`scan_region`, as
    the union of their footprints (window × window pixels each), one row per polygon.

    Earth Genome's rule for isolated detections is optional: a window whose ``neighbours``-th
    nearest detected window is farther than ``isolation_m`` needs ``isolated_threshold`` instead.

    Returns
    -------
    GeoDataFrame
        ``windows``, ``mean_confidence``, ``max_confidence``, ``area_ha`` and the polygon, in the
        raster's CRS.
    """
    with rasterio.open(probability) as src:
        p = src.read(1)
        transform, crs = src.transform, src.crs
        tags = src.tags()
    # A probability pixel is stride raster pixels wide; a window covers `window` raster pixels.
    side = int(tags["window"]) * transform.a / int(tags["stride"])
    rows, cols = np.nonzero(np.nan_to_num(p, nan=-1.0) >= threshold)
    xs, ys = rasterio.transform.xy(transform, rows, cols)
    xs, ys, conf = np.asarray(xs, float), np.asarray(ys, float), p[rows, cols]
    if isolated_threshold is not None and len(xs) > 0:
        k = min(neighbours + 1, len(xs))
        dist = cKDTree(np.column_stack([xs, ys])).query(np.column_stack([xs, ys]), k=k)[0]
        kth = dist[:, -1] if len(xs) > neighbours else np.full(len(xs), np.inf)
        keep = (kth <= isolation_m) | (conf >= isolated_threshold)
        xs, ys, conf = xs[keep], ys[keep], conf[keep]
    columns = ["windows", "mean_confidence", "max_confidence", "area_ha"]
    if not len(xs):
        return gpd.GeoDataFrame(columns=columns, geometry=[], crs=crs)
    half = side / 2
    boxes = shapely.box(xs - half, ys - half, xs + half, ys + half)
    merged = gpd.GeoSeries([shapely.union_all(boxes)], crs=crs).explode(index_parts=False).reset_index(drop=True)
    centres = gpd.GeoDataFrame({"confidence": conf}, geometry=gpd.points_from_xy(xs, ys), crs=crs)
    joined = gpd.sjoin(centres, gpd.GeoDataFrame(geometry=merged), predicate="within")
    stats = joined.groupby("index_right")["confidence"].agg(["size", "mean", "max"])
    out = gpd.GeoDataFrame({"windows": stats["size"].astype(int), "mean_confidence": stats["mean"].round(4),
                            "max_confidence": stats["max"].round(4)}, geometry=merged.loc[stats.index].to_numpy(), crs=crs)
    out["area_ha"] = (out.area / 1e4).round(2)
    return out[columns + ["geometry"]].reset_index(drop=True)


def write_detections(found: gpd.GeoDataFrame, path: str | Path) -> Path:
    """Write detections as GeoJSON (WGS 84, as the format requires), atomically."""
    with atomic_path(path) as tmp:
        found.to_crs(WGS84).to_file(tmp, driver="GeoJSON", layer=Path(path).stem)  # not the temporary's name
    return Path(path)


def evaluate_detections(found: gpd.GeoDataFrame, truth: gpd.GeoDataFrame) -> dict:
    """Polygon-level agreement of detections with ground-truth mine polygons.

    Returns
    -------
    dict
        ``precision``: share of detections touching a true polygon; ``recall``: share of true
        polygons touched by a detection; counts; mapped and true area (ha) and their overlap.
    """
    truth = truth.to_crs(found.crs) if len(found) else truth
    crs = truth.crs if truth.crs and truth.crs.is_projected else truth.estimate_utm_crs()
    found, truth = found.to_crs(crs), truth.to_crs(crs)
    hit = found.geometry.apply(lambda g: bool(truth.sindex.query(g, predicate="intersects").size)) if len(found) else pd.Series(dtype=bool)
    found_any = truth.geometry.apply(lambda g: bool(found.sindex.query(g, predicate="intersects").size)) if len(found) else pd.Series(False, index=truth.index)
    overlap = shapely.intersection(shapely.union_all(found.geometry.to_numpy()), shapely.union_all(truth.geometry.to_numpy())).area if len(found) else 0.0
    return {
        "detections": int(len(found)), "true_polygons": int(len(truth)),
        "precision": float(hit.mean()) if len(found) else math.nan, "recall": float(found_any.mean()) if len(truth) else math.nan,
        "mapped_ha": float(found.area.sum() / 1e4), "true_ha": float(truth.area.sum() / 1e4), "overlap_ha": float(overlap / 1e4),
    }
