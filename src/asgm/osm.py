"""OpenStreetMap context: features for a boundary (local file or Overpass) and their rasterisation.

Each OSM channel is a binary mask of the features carrying that key (any value), burned on exactly
the pixel grid of an imagery patch: lines burn every pixel they pass through, polygons the pixels
whose centre lies inside.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import geopandas as gpd
import numpy as np
import osmnx as ox
import pandas as pd
import shapely
from pyproj import CRS
from rasterio.features import rasterize
from shapely.geometry import MultiPolygon, Polygon, box

from asgm.atomic import atomic_path
from asgm.config import OSM_CHANNELS, Profile
from asgm.errors import AsgmError, InputFileError
from asgm.regions import WGS84, PatchGrid


def features_from_file(path: str | Path, boundary: Polygon | MultiPolygon, channels: tuple[str, ...] = OSM_CHANNELS) -> gpd.GeoDataFrame:
    """Read OSM features with any of the ``channels`` keys from a local ``.osm`` XML file, clipped to ``boundary``.

    Raises
    ------
    InputFileError
        Missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "OSM file not found", "check osm.path in the profile, or set osm.source: overpass")
    try:
        gdf = ox.features_from_xml(path, polygon=boundary, tags={key: True for key in channels})
    except ox._errors.InsufficientResponseError:
        gdf = gpd.GeoDataFrame(geometry=[], crs=WGS84)
    except Exception as exc:  # osmnx raises ParseError, KeyError, ValueError on malformed XML
        raise InputFileError(path, f"not a readable OSM XML file ({type(exc).__name__}: {exc})", "export it again (e.g. osmium cat in.pbf -o out.osm)") from None
    return tidy_features(gdf, channels)


def features_from_overpass(boundary: Polygon | MultiPolygon, channels: tuple[str, ...] = OSM_CHANNELS) -> gpd.GeoDataFrame:
    """Download OSM features with any of the ``channels`` keys inside ``boundary`` from the Overpass API (osmnx)."""
    try:
        gdf = ox.features_from_polygon(boundary, tags={key: True for key in channels})
    except ox._errors.InsufficientResponseError:
        gdf = gpd.GeoDataFrame(geometry=[], crs=WGS84)
    return tidy_features(gdf, channels)


def tidy_features(gdf: gpd.GeoDataFrame, channels: tuple[str, ...]) -> gpd.GeoDataFrame:
    """Keep element type, id, name, the channel keys and geometry (columns a GeoPackage can store)."""
    gdf = gdf.reset_index() if {"element", "id"} <= set(gdf.index.names or []) else gdf
    columns = [c for c in ("element", "id", "name", *channels) if c in gdf.columns]
    out = gpd.GeoDataFrame(gdf[columns].copy(), geometry=gdf.geometry.to_numpy(), crs=gdf.crs or WGS84)
    for key in channels:
        if key not in out.columns:
            out[key] = pd.Series(pd.NA, index=out.index, dtype="object")
    return out.to_crs(WGS84)


def load_osm_features(profile: Profile, boundary: Polygon | MultiPolygon) -> gpd.GeoDataFrame:
    """OSM features for the profile's boundary from the source it names (``file`` or ``overpass``)."""
    if profile.osm.source == "file":
        return features_from_file(profile.osm.path, boundary, profile.osm.channels)
    return features_from_overpass(boundary, profile.osm.channels)


def save_features(gdf: gpd.GeoDataFrame, path: str | Path) -> Path:
    """Write features to a GeoPackage atomically."""
    with atomic_path(path) as tmp:
        gdf.to_file(tmp, driver="GPKG", layer="osm_features")
    return Path(path)


def read_features(path: str | Path) -> gpd.GeoDataFrame:
    """Read features saved by :func:`save_features`."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "OSM features not found", "run notebook 01_osm_features (make osm) first")
    return gpd.read_file(path, layer="osm_features")


def summarize_features(gdf: gpd.GeoDataFrame, channels: tuple[str, ...] = OSM_CHANNELS) -> pd.DataFrame:
    """One row per channel: feature count, line length (km), polygon area (km²) and the commonest values."""
    metric = gdf.to_crs(gdf.estimate_utm_crs()) if len(gdf) else gdf
    rows = []
    for key in channels:
        has = metric[key].notna() if key in metric else pd.Series(False, index=metric.index)
        sub = metric[has]
        lines = sub.geom_type.isin(["LineString", "MultiLineString"])
        polys = sub.geom_type.isin(["Polygon", "MultiPolygon"])
        top = sub[key].value_counts().head(4) if len(sub) else pd.Series(dtype=int)
        rows.append(
            {
                "channel": key,
                "features": int(has.sum()),
                "lines": int(lines.sum()),
                "polygons": int(polys.sum()),
                "length_km": round(float(sub[lines].length.sum()) / 1000, 2),
                "area_km2": round(float(sub[polys].area.sum()) / 1e6, 3),
                "commonest_values": ", ".join(f"{v} ({n})" for v, n in top.items()),
            }
        )
    return pd.DataFrame(rows).set_index("channel")


class OsmRasterizer:
    """Burns OSM channels onto patch grids.

    The features are reprojected once to the imagery's CRS and spatially indexed, so each patch
    only rasterises the features that touch it.

    Parameters
    ----------
    features
        OSM features (any CRS) with one column per channel key.
    crs
        CRS of the patch grids (the imagery raster's).
    channels
        Channel keys, in output order.
    """

    def __init__(self, features: gpd.GeoDataFrame, crs: CRS, channels: tuple[str, ...] = OSM_CHANNELS):
        unknown = [c for c in channels if c not in OSM_CHANNELS]
        if unknown:
            raise AsgmError(f"unknown OSM channel(s) {unknown}; use names from {', '.join(OSM_CHANNELS)}")
        self.channels = tuple(channels)
        projected = features.to_crs(crs)
        #: Per channel, the geometries carrying its key, in the patches' CRS.
        self.layers: list[gpd.GeoSeries] = []
        for key in self.channels:
            layer = projected[projected[key].notna()] if key in projected else projected.iloc[:0]
            layer = layer[~layer.geometry.is_empty & layer.geometry.notna()]
            self.layers.append(layer.geometry.reset_index(drop=True))
        digest = hashlib.sha256(str(CRS.from_user_input(crs)).encode())
        for layer in self.layers:
            digest.update(b"".join(shapely.to_wkb(layer.to_numpy())))
            digest.update(b"|")
        #: Changes whenever the burned masks could change.
        self.fingerprint = digest.hexdigest()[:16]

    def rasterize(self, grid: PatchGrid) -> np.ndarray:
        """Return the (H, W, C) uint8 mask of every channel on ``grid`` (1 where a feature lies)."""
        out = np.zeros((grid.height, grid.width, len(self.channels)), dtype=np.uint8)
        window = box(*grid.bounds)
        for c, geoms in enumerate(self.layers):
            hits = geoms.sindex.query(window, predicate="intersects")
            if len(hits):
                out[..., c] = rasterize(
                    ((g, 1) for g in geoms.iloc[hits]),
                    out_shape=(grid.height, grid.width),
                    transform=grid.transform,
                    fill=0,
                    dtype=np.uint8,
                )
        return out
