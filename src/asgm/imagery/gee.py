"""Sentinel-2 L1C from Google Earth Engine: the thesis's source.

The composite is ``COPERNICUS/S2_HARMONIZED`` linked with Cloud Score+
(``GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED``): a pixel is kept where ``cs_cdf >= clear_threshold``
(0.75 for training), and the median of the kept pixels over the date window is taken. Patches are
computed with ``ee.data.computePixels`` on each patch's own UTM grid (see :mod:`asgm.imagery.remote`).

Needs an Earth Engine account and a Google Cloud project with the Earth Engine API enabled
(README, "Running on real data").
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import ee
import geopandas as gpd
import numpy as np

from asgm.errors import AsgmError
from asgm.imagery.remote import RemoteSource
from asgm.regions import WGS84, PatchGrid

COLLECTION = "COPERNICUS/S2_HARMONIZED"
CLOUD_SCORE = "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED"
#: Environment variables read, in order, when the profile names no project.
PROJECT_ENV = ("EE_PROJECT", "GOOGLE_CLOUD_PROJECT")
#: Earth Engine's endpoint for many small automated requests (computePixels in a thread pool).
HIGH_VOLUME_URL = "https://earthengine-highvolume.googleapis.com"

SETUP_STEPS = (
    "1. sign up for Earth Engine (https://earthengine.google.com, noncommercial use is free) and create or pick a "
    "Google Cloud project with the Earth Engine API enabled; "
    "2. run `earthengine authenticate` (or `.venv/bin/python -c 'import ee; ee.Authenticate()'`) once on this machine; "
    "3. set imagery.project in the profile or export EE_PROJECT=<your-project-id>. "
    "No account? use the STAC source instead: make all PROFILE=bolivar IMAGERY=stac"
)

def resolve_project(project: str | None = None) -> str:
    """The Cloud project: ``project`` if given, else the first of ``$EE_PROJECT``, ``$GOOGLE_CLOUD_PROJECT``.

    Raises
    ------
    AsgmError
        No project anywhere, with the setup steps.
    """
    project = project or next((os.environ[v] for v in PROJECT_ENV if os.environ.get(v)), None)
    if not project:
        raise AsgmError(f"Earth Engine needs a Google Cloud project, and none is set (imagery.project, ${PROJECT_ENV[0]})\n  How to fix: {SETUP_STEPS}")
    return project


def initialize(project: str | None = None, high_volume: bool = True) -> str:
    """Start the Earth Engine client with the stored credentials; returns the project used.

    Raises
    ------
    AsgmError
        No project, no stored credentials, or Earth Engine unreachable — with the steps that fix it.
    """
    global _started
    project = resolve_project(project)
    # Initialising fetches Earth Engine's whole algorithm list: do it once per session and settings
    # (prepare_inputs checks access, then open_source needs the client).
    if ee.data.is_initialized() and _started == (project, high_volume):
        return project
    try:
        ee.Initialize(project=project, url=HIGH_VOLUME_URL if high_volume else None)
    except Exception as exc:  # noqa: BLE001 - EEException, google.auth errors, httplib2 network errors
        raise AsgmError(f"Earth Engine could not start with project {project!r}: {type(exc).__name__}: {exc}\n  How to fix: {SETUP_STEPS}") from None
    _started = (project, high_volume)
    return project


#: (project, high_volume) of the last successful initialize().
_started: tuple[str, bool] | None = None


def s2_composite(start: str, end: str, bands: Sequence[str], clear_threshold: float = 0.75, region: ee.Geometry | None = None) -> ee.Image:
    """The cloud-masked median composite of Sentinel-2 L1C over ``[start, end)``, bands in the given order.

    Pixels with no clear observation are 0 (the sources' nodata); values are L1C digital numbers
    (reflectance x 10000) as uint16.
    """
    s2 = ee.ImageCollection(COLLECTION).filterDate(start, end)
    if region is not None:
        s2 = s2.filterBounds(region)
    linked = s2.linkCollection(ee.ImageCollection(CLOUD_SCORE), ["cs_cdf"])
    clear = linked.map(lambda img: img.updateMask(img.select("cs_cdf").gte(clear_threshold)))
    return clear.select(list(bands)).median().unmask(0).toUint16()


def grid_request(image: ee.Image, grid: PatchGrid, bands: Sequence[str]) -> dict:
    """The ``ee.data.computePixels`` request for ``image`` on ``grid`` (a NumPy structured array back)."""
    t = grid.transform
    return {
        "expression": image,
        "fileFormat": "NUMPY_NDARRAY",
        "bandIds": list(bands),
        "grid": {
            "dimensions": {"width": grid.width, "height": grid.height},
            "affineTransform": {"scaleX": t.a, "shearX": t.b, "translateX": t.c, "shearY": t.d, "scaleY": t.e, "translateY": t.f},
            "crsCode": grid.crs.to_string(),
        },
    }


class EarthEngineSource(RemoteSource):
    """Patches of an Earth Engine image computed on each patch's UTM grid.

    Parameters
    ----------
    image
        The composite (see :func:`s2_composite`); Earth Engine must be initialised.
    bands
        Band names of ``image``, in output order.
    cache_dir, resolution, workers, progress, **retry
        See :class:`asgm.imagery.remote.RemoteSource`.
    """

    def __init__(self, image: ee.Image, bands: Sequence[str], cache_dir: str | Path, resolution: float = 10.0, workers: int = 8,
                 progress: bool = True, **retry):
        super().__init__(bands, cache_dir, resolution, workers, progress=progress, **retry)
        self.image = image
        self.fingerprint = "gee|" + hashlib.sha256(f"{image.serialize()}|{','.join(self.bands)}|{self.resolution}".encode()).hexdigest()[:16]

    def _fetch(self, grid: PatchGrid) -> np.ndarray:
        answer = ee.data.computePixels(grid_request(self.image, grid, self.bands))
        return np.stack([answer[b] for b in self.bands], axis=-1)

    def _is_retryable(self, exc: Exception) -> bool:
        # ee turns HTTP errors into EEException(message); the HttpError is still the exception's context.
        status = getattr(getattr(exc.__context__, "resp", None), "status", None)
        if status is not None:
            return int(status) == 429 or int(status) >= 500
        return super()._is_retryable(exc)


def interactive_map(image: ee.Image, points, boundary, bands: Sequence[str] = ("B4", "B3", "B2")):
    """A geemap map of the composite (true colour), the boundary and the sampling points by label."""
    import geemap

    outline = gpd.GeoDataFrame(geometry=[boundary], crs=WGS84)
    m = geemap.Map()
    m.add_layer(image, {"bands": list(bands), "min": 0, "max": 3000}, "Sentinel-2 composite")
    m.add_gdf(outline, layer_name="boundary", style={"color": "yellow", "fillOpacity": 0})
    for label, name, colour in ((1, "mines", "red"), (0, "non-mines", "cyan")):
        subset = points[points["label"] == label][["patch_id", "category", "geometry"]]
        if len(subset):
            m.add_gdf(subset, layer_name=name, style={"color": colour})
    m.zoom_to_gdf(outline)
    return m
