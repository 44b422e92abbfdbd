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

from asgm.errors import AsgmError
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
    """Make sure the profile's inputs are there before any work starts: download its pinned
    reference files (cached under ``data/``), check access to Earth Engine or the STAC catalogue,
    and for the demo source generate the SYNTHETIC region (cached: nothing is redone when an
    identical one is on disk) and return it; otherwise return None.

    Raises
    ------
    AsgmError
        Everything that is missing at once (no network, a changed checksum, no Earth Engine
        credentials or project), each with what to set up.
    """
    problems = []
    if profile.region.downloads:
        from asgm.downloads import fetch_all

        try:
            fetch_all(profile.region.downloads)
        except AsgmError as exc:
            problems.append(str(exc))
    img = profile.imagery
    try:
        if img.source == "gee":
            from asgm.imagery import gee

            gee.initialize(img.project)
        elif img.source == "stac":
            _stac_source(profile).client()
    except AsgmError as exc:
        problems.append(str(exc))
    if problems:
        raise AsgmError(f"profile {profile.name!r} cannot start ({profile.source_file}):\n" + "\n".join(f"- {p}" for p in problems))
    if img.source == "demo":
        from asgm.imagery.demo import ensure_demo_region

        return ensure_demo_region(profile.synthetic)
    return None


def _stac_source(profile: Profile, progress: bool = True):
    from asgm.imagery.stac import StacSource

    img = profile.imagery
    return StacSource(img.stac_url, img.collection, img.date_start, img.date_end, img.bands, profile.cache_dir / "stac",
                      max_cloud_cover=img.max_cloud_cover, resolution=profile.patches.resolution_m, workers=img.workers, progress=progress)


def open_source(profile: Profile, progress: bool = True) -> ImagerySource:
    """Open the imagery source a profile asks for (``demo``/``local``: the raster at ``imagery.path``;
    ``gee``: Earth Engine, initialised with the profile's project; ``stac``: the STAC API).

    Raises
    ------
    AsgmError
        Missing input, or no access to the server (with the steps to set it up).
    """
    prepare_inputs(profile)  # also initialises Earth Engine
    img = profile.imagery
    if img.source == "gee":
        from asgm.imagery import gee

        composite = gee.s2_composite(img.date_start, img.date_end, img.bands, img.clear_threshold)
        return gee.EarthEngineSource(composite, img.bands, profile.cache_dir / "gee", profile.patches.resolution_m, img.workers, progress=progress)
    if img.source == "stac":
        return _stac_source(profile, progress)
    from asgm.imagery.local import LocalRasterSource

    return LocalRasterSource(img.path, img.bands, raster_bands=img.raster_bands, scale=img.scale)


__all__ = ["ImagerySource", "PatchBatch", "open_source", "prepare_inputs"]
