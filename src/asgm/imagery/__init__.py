"""Imagery sources behind one small interface.

A source turns points into patches: given sampling points and a patch size it returns an
(N, H, W, C) array plus the pixel grid of each patch (the grid OSM channels are burned on).
Sources are interchangeable; the profile's ``imagery.source`` picks one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import geopandas as gpd
import numpy as np

from asgm.regions import PatchGrid

if TYPE_CHECKING:
    from asgm.config import Profile


@dataclass
class PatchBatch:
    """Patches read for a batch of points, in input order.

    ``data[i]`` is all zeros and ``grids[i]`` is None where ``dropped[i]`` gives the reason the
    source could not read point ``i``.
    """

    data: np.ndarray
    grids: list[PatchGrid | None]
    dropped: list[str | None]
    bands: tuple[str, ...]


class ImagerySource(Protocol):
    bands: tuple[str, ...]
    #: Value of pixels with no data.
    nodata: float
    #: Raster values per unit reflectance.
    scale: float
    #: dtype of the patches it returns.
    data_dtype: np.dtype
    #: Changes whenever the imagery would change (used to decide whether a dataset is up to date).
    fingerprint: str

    def read_patches(self, points: gpd.GeoDataFrame, size: int) -> PatchBatch: ...

    def close(self) -> None: ...


def prepare_inputs(profile: Profile):
    """Make sure the profile's inputs exist: for the demo source, generate the SYNTHETIC region
    (cached: nothing is redone when an identical one is on disk) and return it; otherwise None."""
    if profile.imagery.source == "demo":
        from asgm.imagery.demo import ensure_demo_region

        return ensure_demo_region(profile.synthetic)
    return None


def open_source(profile: Profile) -> ImagerySource:
    """Open the imagery source a profile asks for."""
    from asgm.imagery.local import LocalRasterSource

    prepare_inputs(profile)
    img = profile.imagery
    return LocalRasterSource(img.path, img.bands, raster_bands=img.raster_bands, scale=img.scale)


__all__ = ["ImagerySource", "PatchBatch", "open_source", "prepare_inputs"]
