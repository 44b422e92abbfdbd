"""Sentinel-2 L2A from a STAC catalogue (Earth Search by default): no account needed.

Scenes of the date window that touch a patch are found with pystac-client (an API's item search,
or a walk through a static catalogue), read on the patch's own UTM grid with odc-stac, masked with
the scene classification (SCL: no data, saturated, cloud shadow, clouds and cirrus are dropped),
and reduced to the per-pixel median. Scenes of processing baseline 04.00 or later carry a +1000
offset in their digital numbers (``BOA_ADD_OFFSET``); it is removed unless the catalogue says
it already was (``earthsearch:boa_offset_applied``), so every scene is on the same scale.

L2A is surface reflectance (atmospherically corrected); the thesis's L1C is top of atmosphere.
L2A has no B10 (cirrus), which the project's band list does not use. A model trained on one
product should not be applied to the other.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pystac
from odc.geo.geobox import GeoBox
from odc.stac import load as stac_load
from pystac_client import Client
from pystac_client.exceptions import APIError

from asgm.errors import AsgmError, ConfigError
from asgm.imagery.remote import RemoteSource
from asgm.regions import WGS84, PatchGrid

#: Earth Search's asset key of each band (band names like ``B02`` are tried as well).
ASSETS = {"B1": "coastal", "B2": "blue", "B3": "green", "B4": "red", "B5": "rededge1", "B6": "rededge2", "B7": "rededge3",
          "B8": "nir", "B8A": "nir08", "B9": "nir09", "B11": "swir16", "B12": "swir22"}
SCL_ASSET = "scl"
#: Scene classes masked out: no data, saturated/defective, cloud shadow, cloud (medium, high), cirrus.
SCL_MASKED = (0, 1, 3, 8, 9, 10)
#: Added to L2A digital numbers from processing baseline 04.00 (25 January 2022).
BOA_ADD_OFFSET = 1000
BASELINE_04_DATE = datetime(2022, 1, 25, tzinfo=timezone.utc)


def band_asset(band: str, item: pystac.Item) -> str:
    """The asset key of ``band`` in ``item`` (Earth Search's common names, else ``B02``-style)."""
    for key in (ASSETS.get(band), f"B{int(band[1:]):02d}" if band[1:].isdigit() else band, band):
        if key in item.assets:
            return key
    raise AsgmError(f"STAC item {item.id} has no asset for band {band} (assets: {', '.join(item.assets)})")


def needs_offset(item: pystac.Item) -> bool:
    """Whether the item's digital numbers still carry the baseline-04.00 offset."""
    if item.properties.get("earthsearch:boa_offset_applied") is True:
        return False
    baseline = item.properties.get("s2:processing_baseline")
    if baseline is not None:
        return float(baseline) >= 4.0
    return item.datetime is not None and item.datetime >= BASELINE_04_DATE


class StacSource(RemoteSource):
    """Median L2A composites of each patch's grid from a STAC API or static catalogue.

    Parameters
    ----------
    url
        STAC API root (e.g. Earth Search) or a static catalogue's ``catalog.json``.
    collection
        Sentinel-2 L2A collection id.
    date_start, date_end
        Composite window, ISO dates, end exclusive.
    bands
        Band names in output order (no B10: L2A lacks it).
    cache_dir, resolution, workers, progress, **retry
        See :class:`asgm.imagery.remote.RemoteSource`.
    max_cloud_cover
        Scenes with ``eo:cloud_cover`` above this (%) are skipped.
    """

    def __init__(self, url: str, collection: str, date_start: str, date_end: str, bands: Sequence[str], cache_dir: str | Path,
                 max_cloud_cover: float = 80.0, resolution: float = 10.0, workers: int = 8, progress: bool = True, **retry):
        if "B10" in bands:
            raise ConfigError("imagery.bands", "Sentinel-2 L2A has no B10", "drop B10 from the band list for the stac source")
        super().__init__(bands, cache_dir, resolution, workers, progress=progress, **retry)
        self.url, self.collection = str(url), collection
        self.start = datetime.fromisoformat(str(date_start)).replace(tzinfo=timezone.utc)
        self.end = datetime.fromisoformat(str(date_end)).replace(tzinfo=timezone.utc)
        self.max_cloud_cover = max_cloud_cover
        self.fingerprint = (f"stac|{self.url}|{collection}|{self.start.date()}/{self.end.date()}|cloud<={max_cloud_cover}|"
                            f"scl-{','.join(map(str, SCL_MASKED))}|{','.join(self.bands)}|{self.resolution}")
        self._lock = threading.Lock()
        self._client: Client | None = None
        self._static_items: list[pystac.Item] | None = None

    def client(self) -> Client:
        """The catalogue, opened once.

        Raises
        ------
        AsgmError
            The catalogue cannot be reached or read.
        """
        with self._lock:
            if self._client is None:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # a static catalogue has no conformance classes
                        self._client = Client.open(self.url)
                except Exception as exc:  # noqa: BLE001 - requests, APIError, JSON and file errors
                    raise AsgmError(f"cannot open the STAC catalogue {self.url}: {type(exc).__name__}: {exc}\n"
                                    "  How to fix: check imagery.stac_url and the network (Earth Search needs internet, no account)") from None
            return self._client

    def items(self, bbox: tuple[float, float, float, float]) -> list[pystac.Item]:
        """Scenes of the collection and window touching ``bbox`` (lon/lat), cloud cover at most the limit."""
        client = self.client()
        if client.conforms_to("ITEM_SEARCH"):
            search = client.search(collections=[self.collection], bbox=bbox, datetime=[self.start, self.end],
                                   query={"eo:cloud_cover": {"lte": self.max_cloud_cover}})
            candidates = list(search.items())
        else:
            with self._lock:
                if self._static_items is None:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        self._static_items = list(client.get_items(recursive=True))
            candidates = [i for i in self._static_items if _touches(i, bbox)]
        return sorted((i for i in candidates if i.collection_id == self.collection and self.start <= i.datetime < self.end
                       and i.properties.get("eo:cloud_cover", 0) <= self.max_cloud_cover), key=lambda i: (i.datetime, i.id))

    def _fetch(self, grid: PatchGrid) -> np.ndarray:
        from pyproj import Transformer

        left, bottom, right, top = grid.bounds
        xs, ys = Transformer.from_crs(grid.crs, WGS84, always_xy=True).transform([left, right, left, right], [bottom, bottom, top, top])
        items = self.items((min(xs), min(ys), max(xs), max(ys)))
        out = np.zeros((grid.height, grid.width, len(self.bands)), np.uint16)
        if not items:
            return out
        geobox = GeoBox((grid.height, grid.width), grid.transform, grid.crs)
        stacks = []
        for offset in (0, BOA_ADD_OFFSET):
            group = [i for i in items if needs_offset(i) == bool(offset)]
            if group:
                assets = [band_asset(b, group[0]) for b in self.bands]
                ds = stac_load(group, bands=[*assets, SCL_ASSET], geobox=geobox, groupby="solar_day", resampling="nearest", dtype="uint16")
                values = np.stack([ds[a].to_numpy() for a in assets], axis=-1).astype(np.float32)  # (t, y, x, c)
                values[(values == 0) | np.isin(ds[SCL_ASSET].to_numpy(), SCL_MASKED)[..., None]] = np.nan
                stacks.append(values - offset)
        values = np.concatenate(stacks)
        clear = np.isfinite(values).any(axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-masked pixels: nan
            median = np.nanmedian(values, axis=0)
        out[clear] = np.clip(np.rint(median[clear]), 1, np.iinfo(np.uint16).max)
        return out

    def _is_retryable(self, exc: Exception) -> bool:
        status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)
        if isinstance(exc, APIError) and status is not None:
            return int(status) == 429 or int(status) >= 500
        return super()._is_retryable(exc)


def _touches(item: pystac.Item, bbox: tuple[float, float, float, float]) -> bool:
    if item.bbox is None:
        return True
    left, bottom, right, top = item.bbox[:4] if len(item.bbox) == 4 else (item.bbox[0], item.bbox[1], item.bbox[3], item.bbox[4])
    return not (right < bbox[0] or left > bbox[2] or top < bbox[1] or bottom > bbox[3])
