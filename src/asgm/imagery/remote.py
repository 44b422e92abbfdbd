"""What the network sources (Earth Engine, STAC) share: pixels computed on a requested grid.

A :class:`RemoteSource` fetches each patch on its own grid — the UTM zone of its point, aligned
to the resolution, exactly the grid the OSM channels are burned on — with a thread pool, retries
with exponential backoff on rate limits and server errors, returns results in input order, and
keeps every answer in an on-disk cache so a rerun (or a resumed one) refetches nothing.
:func:`export_composite` writes a region's composite to a GeoTIFF tile by tile through the same path.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS
from rasterio.windows import Window
from shapely.geometry import MultiPolygon, Polygon, box

from asgm.atomic import atomic_path, write_array
from asgm.errors import AsgmError
from asgm.imagery import PatchBatch
from asgm.progress import progress_bar
from asgm.regions import WGS84, PatchGrid, utm_crs

#: Messages of transient failures: rate limits (HTTP 429), server errors (5xx), dropped connections.
TRANSIENT = re.compile(
    r"too many (concurrent|requests)|rate limit|quota exceeded|internal error|backend error|service unavailable|"
    r"temporarily unavailable|deadline exceeded|timed out|connection (reset|aborted|refused)|\b(429|500|502|503|504)\b",
    re.IGNORECASE,
)


class RemoteSource:
    """Base of the sources that compute pixels on a server; subclasses implement :meth:`_fetch`.

    Parameters
    ----------
    bands
        Band names, in output order.
    cache_dir
        Directory of cached answers (one ``.npy`` per grid).
    resolution
        Pixel size in metres of the patches' UTM grids.
    workers
        Concurrent requests.
    max_attempts
        Attempts per request before giving up (retryable errors only).
    backoff_s
        First wait after a retryable error; doubled at each further attempt (plus jitter).
    progress
        Show a progress bar while fetching.
    sleep
        Waits between attempts (tests pass a recorder instead of sleeping).
    """

    #: Value of pixels with no data (no clear observation in the window).
    nodata = 0
    scale = 10000.0
    data_dtype = np.dtype(np.uint16)
    #: Patches are on the UTM zone of their own point, not on one CRS.
    crs = None

    def __init__(self, bands: Sequence[str], cache_dir: str | Path, resolution: float = 10.0, workers: int = 8,
                 max_attempts: int = 6, backoff_s: float = 2.0, progress: bool = True, sleep: Callable[[float], None] = time.sleep):
        self.bands = tuple(bands)
        self.cache_dir = Path(cache_dir)
        self.resolution = float(resolution)
        self.workers = workers
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.progress = progress
        self.sleep = sleep

    # -- what a subclass provides ------------------------------------------------------------

    #: Identifies the pixels the source computes (collection, masking, window, bands); part of
    #: every cache key and of the dataset fingerprint.
    fingerprint: str = ""

    def _fetch(self, grid: PatchGrid) -> np.ndarray:
        """Compute the (H, W, C) uint16 pixels of ``grid`` (one request, no retry)."""
        raise NotImplementedError

    def _is_retryable(self, exc: Exception) -> bool:
        """Whether ``exc`` is transient (rate limit, server error, dropped connection)."""
        return isinstance(exc, (ConnectionError, TimeoutError)) or bool(TRANSIENT.search(str(exc)))

    # -- shared machinery ------------------------------------------------------------------

    def grid_for(self, lon: float, lat: float, size: int) -> PatchGrid:
        """The ``size`` x ``size`` grid centred on (lon, lat) in the point's UTM zone."""
        crs = utm_crs(lon, lat)
        x, y = gpd.GeoSeries.from_xy([lon], [lat], crs=WGS84).to_crs(crs).iloc[0].coords[0]
        return PatchGrid.centred_on(x, y, size, self.resolution, crs)

    def cache_path(self, grid: PatchGrid) -> Path:
        spec = {"source": self.fingerprint, "crs": grid.crs.to_string(), "transform": list(grid.transform)[:6],
                "width": grid.width, "height": grid.height}
        key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]
        return self.cache_dir / key[:2] / f"{key}.npy"

    def fetch_grids(self, grids: Sequence[PatchGrid], desc: str = "pixels", on_result: Callable[[int, np.ndarray], None] | None = None) -> list[np.ndarray] | None:
        """Pixels of every grid, in input order (cached answers are read, the rest fetched in parallel).

        With ``on_result``, each result is handed over as ``on_result(i, pixels)`` as soon as it is
        ready (in completion order, on the calling thread) and nothing is kept in memory; the
        return value is then None.

        Raises
        ------
        AsgmError
            A request failed with a non-retryable error, or kept failing after ``max_attempts``;
            the message names the grid. Answers fetched so far stay cached, so a rerun resumes.
        """
        results: list[np.ndarray | None] = [None] * len(grids)

        def deliver(i: int, pixels: np.ndarray) -> None:
            if on_result is None:
                results[i] = pixels
            else:
                on_result(i, pixels)

        todo = []
        for i, grid in enumerate(grids):
            cached = self.cache_path(grid)
            if cached.is_file():
                deliver(i, np.load(cached))
            else:
                todo.append(i)
        if todo:
            bar = progress_bar(total=len(todo), desc=desc, unit="request", disable=not self.progress, leave=False)
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                futures = {pool.submit(self._fetch_with_retry, grids[i]): i for i in todo}
                try:
                    for future in as_completed(futures):
                        deliver(futures[future], future.result())
                        bar.update()
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
                finally:
                    bar.close()
        return None if on_result is not None else results  # type: ignore[return-value]

    def _fetch_with_retry(self, grid: PatchGrid) -> np.ndarray:
        for attempt in range(1, self.max_attempts + 1):
            try:
                pixels = self._fetch(grid)
                break
            except Exception as exc:  # noqa: BLE001 - classified below, re-raised with context
                where = f"grid {grid.crs.to_string()} {grid.width}x{grid.height} px at ({grid.transform.c:.0f}, {grid.transform.f:.0f})"
                if not self._is_retryable(exc):
                    raise AsgmError(f"{type(self).__name__}: request for {where} failed: {exc}") from exc
                if attempt == self.max_attempts:
                    raise AsgmError(f"{type(self).__name__}: request for {where} still failing after {attempt} attempts: {exc}\n"
                                    "  How to fix: the server is busy or down; rerun later (fetched pixels are cached), "
                                    "or lower imagery.workers") from exc
                self.sleep(self.backoff_s * 2 ** (attempt - 1) * (1 + random.random() / 4))
        expected = (grid.height, grid.width, len(self.bands))
        if pixels.shape != expected:
            raise AsgmError(f"{type(self).__name__}: answer of shape {pixels.shape} for a grid of {expected}")
        pixels = pixels.astype(self.data_dtype, copy=False)
        write_array(self.cache_path(grid), pixels)
        return pixels

    def read_patches(self, points: gpd.GeoDataFrame, size: int) -> PatchBatch:
        """A ``size`` x ``size`` patch centred on each point, on the point's UTM grid, in input order."""
        pts = points.geometry.to_crs(WGS84)
        grids = [self.grid_for(p.x, p.y, size) for p in pts]
        pixels = self.fetch_grids(grids, desc=f"{type(self).__name__} {size}px")
        data = np.stack(pixels) if pixels else np.zeros((0, size, size, len(self.bands)), self.data_dtype)
        return PatchBatch(data, list(grids), [None] * len(grids), self.bands)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def region_tiles(boundary: Polygon | MultiPolygon, crs: CRS, resolution: float, tile_px: int) -> tuple[Affine, int, int, list[tuple[int, int, PatchGrid]]]:
    """Cut the boundary's bounding box (in ``crs``, aligned to ``resolution``) into tiles.

    Returns
    -------
    transform, width, height, tiles
        The whole raster's grid, and ``(row_off, col_off, grid)`` of each tile that touches the boundary.
    """
    projected = gpd.GeoSeries([boundary], crs=WGS84).to_crs(crs).iloc[0]
    minx, miny, maxx, maxy = projected.bounds
    left, top = math.floor(minx / resolution) * resolution, math.ceil(maxy / resolution) * resolution
    width = math.ceil((maxx - left) / resolution)
    height = math.ceil((top - miny) / resolution)
    transform = Affine(resolution, 0, left, 0, -resolution, top)
    tiles = []
    for row in range(0, height, tile_px):
        for col in range(0, width, tile_px):
            w, h = min(tile_px, width - col), min(tile_px, height - row)
            grid = PatchGrid(CRS.from_user_input(crs), transform @ Affine.translation(col, row), w, h)
            if projected.intersects(box(*grid.bounds)):
                tiles.append((row, col, grid))
    return transform, width, height, tiles


def export_composite(source: RemoteSource, boundary: Polygon | MultiPolygon, path: str | Path, crs: CRS | None = None, tile_px: int = 512) -> Path:
    """Write the source's composite over ``boundary`` to a tiled, compressed GeoTIFF.

    The raster is on one UTM grid (default: the zone of the boundary's centre) with the source's
    bands as named bands; tiles outside the boundary stay nodata (0). Each tile is one cached
    request, so an interrupted export resumes; the file appears only when complete.

    Returns
    -------
    Path
        The GeoTIFF, readable by the ``local`` source and the region scan.
    """
    path = Path(path)
    centre = boundary.centroid
    crs = CRS.from_user_input(crs) if crs is not None else utm_crs(centre.x, centre.y)
    transform, width, height, tiles = region_tiles(boundary, crs, source.resolution, tile_px)
    if not tiles:
        raise AsgmError("export_composite: the boundary is empty")
    profile = {"driver": "GTiff", "width": width, "height": height, "count": len(source.bands), "dtype": "uint16",
               "crs": crs, "transform": transform, "nodata": 0, "tiled": True, "blockxsize": 256, "blockysize": 256,
               "compress": "deflate", "predictor": 2, "BIGTIFF": "IF_SAFER"}
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.descriptions = source.bands

        def write(i: int, pixels: np.ndarray) -> None:
            row, col, grid = tiles[i]
            dst.write(np.moveaxis(pixels, -1, 0), window=Window(col, row, grid.width, grid.height))

        source.fetch_grids([grid for _, _, grid in tiles], desc=f"export {path.name}", on_result=write)
    return path
