"""Imagery from a local raster (GeoTIFF, COG or VRT), read on the raster's native grid."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from asgm.errors import InputFileError
from asgm.imagery import PatchBatch
from asgm.regions import PatchGrid


class LocalRasterSource:
    """Patches cut from one local raster whose bands are named (descriptions or ``raster_bands``).

    Parameters
    ----------
    path
        GeoTIFF, COG or VRT with reflectance x ``scale`` values.
    bands
        Band names to return, in this order.
    raster_bands
        Names of the raster's bands in file order, when the file carries no band descriptions.
    scale
        Raster values per unit reflectance.

    Raises
    ------
    InputFileError
        Unreadable raster, unnamed bands, or bands missing from the raster.
    """

    def __init__(self, path: str | Path, bands: tuple[str, ...], raster_bands: tuple[str, ...] | None = None, scale: float = 10000.0):
        self.path = Path(path)
        if not self.path.exists():
            raise InputFileError(self.path, "raster not found", "check imagery.path in the profile (for the demo profile, run notebook 01 first)")
        try:
            self._src = rasterio.open(self.path)
        except rasterio.errors.RasterioIOError as exc:
            raise InputFileError(self.path, f"not a readable raster ({exc})", "give a GeoTIFF, COG or VRT") from None
        names = tuple(raster_bands) if raster_bands else self._src.descriptions
        if raster_bands and len(raster_bands) != self._src.count:
            raise InputFileError(self.path, f"has {self._src.count} bands but imagery.raster_bands names {len(raster_bands)}", "name every band of the raster, in file order")
        if not any(names):
            raise InputFileError(self.path, "bands have no names (descriptions)", "set imagery.raster_bands to the raster's band names in file order")
        missing = [b for b in bands if b not in names]
        if missing:
            raise InputFileError(self.path, f"lacks band(s) {missing}; it has {[n for n in names if n]}", "use a raster with those bands or drop them from imagery.bands")
        self.bands = tuple(bands)
        self.indexes = [names.index(b) + 1 for b in bands]
        self.crs = self._src.crs
        self.nodata = self._src.nodata if self._src.nodata is not None else 0
        self.scale = scale
        self.data_dtype = np.dtype(self._src.dtypes[0])
        stat = self.path.stat()
        self.fingerprint = f"{self.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{','.join(self.bands)}"

    def read_patches(self, points: gpd.GeoDataFrame, size: int) -> PatchBatch:
        """Read a ``size`` x ``size`` patch centred on each point (the point lies in pixel ``size // 2``).

        Patches that would cross the raster's edge are not read and are reported in ``dropped``.

        Raises
        ------
        InputFileError
            A point lies outside the raster.
        """
        src = self._src
        pts = points.geometry.to_crs(self.crs)
        rows, cols = rasterio.transform.rowcol(src.transform, pts.x.to_numpy(), pts.y.to_numpy())
        rows, cols = np.asarray(rows), np.asarray(cols)
        outside = (rows < 0) | (cols < 0) | (rows >= src.height) | (cols >= src.width)
        if outside.any():
            ids = points["patch_id"].to_numpy()[outside] if "patch_id" in points else np.flatnonzero(outside)
            raise InputFileError(
                self.path,
                f"{outside.sum()} point(s) lie outside this raster: {list(ids[:5])}{' …' if outside.sum() > 5 else ''}",
                "use a raster that covers every sampling point, or remove those points",
            )
        data = np.zeros((len(pts), size, size, len(self.bands)), dtype=src.dtypes[0])
        grids: list[PatchGrid | None] = []
        dropped: list[str | None] = []
        for i, (row, col) in enumerate(zip(rows, cols)):
            window = Window(col - size // 2, row - size // 2, size, size)
            if window.col_off < 0 or window.row_off < 0 or window.col_off + size > src.width or window.row_off + size > src.height:
                grids.append(None)
                dropped.append("crosses the raster edge")
                continue
            data[i] = np.moveaxis(src.read(self.indexes, window=window), 0, -1)
            grids.append(PatchGrid(self.crs, window_transform(window, src.transform), size, size))
            dropped.append(None)
        return PatchBatch(data, grids, dropped, self.bands)

    def close(self) -> None:
        self._src.close()

    def __enter__(self) -> LocalRasterSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
