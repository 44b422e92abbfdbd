"""OpenStreetMap context: features for a boundary (an ``.osm`` file, an ``.osm.pbf`` extract or
Overpass) and their rasterisation.

Each OSM channel is a binary mask of the features carrying that key (any value), burned on exactly
the pixel grid of an imagery patch: lines burn every pixel they pass through, polygons the pixels
whose centre lies inside.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from pathlib import Path

import geopandas as gpd
import numpy as np
import osmnx as ox
import pandas as pd
import pyogrio
import requests
import shapely
from pyproj import CRS
from rasterio.features import rasterize
from shapely.geometry import MultiPolygon, Polygon, box

from asgm.atomic import atomic_path
from asgm.config import OSM_CHANNELS, Profile
from asgm.errors import AsgmError, InputFileError
from asgm.regions import WGS84, PatchGrid


#: OSM tags of the zones monitoring can report hectares for: protected areas and indigenous lands.
ZONE_TAGS = {"boundary": ["protected_area", "national_park", "aboriginal_lands"], "leisure": ["nature_reserve"]}


def features_from_file(path: str | Path, boundary: Polygon | MultiPolygon, channels: tuple[str, ...] = OSM_CHANNELS,
                       tags: dict | None = None) -> gpd.GeoDataFrame:
    """Read OSM features with any of the ``channels`` keys (or osmnx-style ``tags``) from a local
    ``.osm`` XML file, clipped to ``boundary``.

    Raises
    ------
    InputFileError
        Missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "OSM file not found", "check osm.path in the profile, or set osm.source: overpass")
    try:
        gdf = ox.features_from_xml(path, polygon=boundary, tags=tags or {key: True for key in channels})
    except ox._errors.InsufficientResponseError:
        gdf = gpd.GeoDataFrame(geometry=[], crs=WGS84)
    except Exception as exc:  # osmnx raises ParseError, KeyError, ValueError on malformed XML
        raise InputFileError(path, f"not a readable OSM XML file ({type(exc).__name__}: {exc})", "export it again; for a .osm.pbf extract set osm.source: pbf") from None
    return tidy_features(gdf, channels)


def features_from_pbf(path: str | Path, boundary: Polygon | MultiPolygon, channels: tuple[str, ...] = OSM_CHANNELS,
                      working_dir: str | Path = "data/cache/quackosm", tags: dict | None = None) -> gpd.GeoDataFrame:
    """Read OSM features with any of the ``channels`` keys from a local ``.osm.pbf`` extract (e.g.
    Geofabrik's Venezuela), clipped to ``boundary``, with QuackOSM (DuckDB; fast on country extracts).

    QuackOSM caches its GeoParquet result in ``working_dir``, so a rerun on the same extract, tags
    and boundary reads it back.

    Raises
    ------
    InputFileError
        Missing or unreadable file.
    """
    import quackosm

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "OSM extract not found", "download one, e.g. https://download.geofabrik.de/south-america/venezuela-latest.osm.pbf, and set osm.path")
    _install_duckdb_spatial()
    try:
        # with ``tags`` (zones) every tag is kept, so that the features keep their names
        gdf = quackosm.convert_pbf_to_geodataframe(path, tags_filter=tags or {key: True for key in channels}, geometry_filter=boundary,
                                                   keep_all_tags=tags is not None, explode_tags=True,
                                                   working_directory=working_dir, verbosity_mode="silent")
    except Exception as exc:  # noqa: BLE001 - DuckDB/QuackOSM raise their own errors on a bad file
        raise InputFileError(path, f"not a readable .osm.pbf extract ({type(exc).__name__}: {exc})", "download the extract again") from None
    element_id = gdf.index.to_series().str.split("/", n=1, expand=True) if len(gdf) else pd.DataFrame(columns=[0, 1])
    gdf = gdf.assign(element=element_id[0].to_numpy(), id=pd.to_numeric(element_id[1]).to_numpy()).reset_index(drop=True)
    return tidy_features(gdf, channels)


def _install_duckdb_spatial() -> None:
    """Install DuckDB's spatial extension (which QuackOSM loads) from the ``duckdb-ext-spatial``
    wheel, so nothing is downloaded from extensions.duckdb.org (a no-op once installed)."""
    import duckdb
    import duckdb_ext

    platform = duckdb.sql("PRAGMA platform").fetchall()[0][0]
    for root in duckdb_ext.__path__:
        binary = Path(root) / "extensions" / f"v{duckdb.__version__}" / platform / "spatial.duckdb_extension"
        if binary.is_file():
            with duckdb.connect() as con:
                con.install_extension(str(binary))
            return


def features_from_overpass(boundary: Polygon | MultiPolygon, channels: tuple[str, ...] = OSM_CHANNELS,
                           cache_dir: str | Path | None = None, tags: dict | None = None) -> tuple[gpd.GeoDataFrame, str]:
    """Download OSM features with any of the ``channels`` keys inside ``boundary`` from the Overpass
    API (osmnx), keeping osmnx's response cache in ``cache_dir``.

    Returns
    -------
    features, queried_at
        The features, and when Overpass answered (UTC, ISO): the time of the newest cached response,
        so a rerun served from the cache reports the date of the data it reuses.
    """
    settings = {"use_cache": True, "cache_folder": str(cache_dir) if cache_dir else ox.settings.cache_folder}
    saved = {k: getattr(ox.settings, k) for k in settings}
    for key, value in settings.items():
        setattr(ox.settings, key, value)
    try:
        gdf = ox.features_from_polygon(boundary, tags=tags or {key: True for key in channels})
    except ox._errors.InsufficientResponseError:
        gdf = gpd.GeoDataFrame(geometry=[], crs=WGS84)
    except requests.exceptions.RequestException as exc:
        raise AsgmError(f"the Overpass API ({ox.settings.overpass_url}) cannot be reached: {type(exc).__name__}\n"
                        "  How to fix: connect to the internet, or use a local extract: osm.source: pbf with osm.path pointing to a "
                        "Geofabrik .osm.pbf (e.g. https://download.geofabrik.de/south-america/venezuela-latest.osm.pbf)") from None
    finally:
        for key, value in saved.items():
            setattr(ox.settings, key, value)
    responses = list(Path(settings["cache_folder"]).glob("*.json"))
    stamp = max((f.stat().st_mtime for f in responses), default=datetime.now(timezone.utc).timestamp())
    return tidy_features(gdf, channels), datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="seconds")


def tidy_features(gdf: gpd.GeoDataFrame, channels: tuple[str, ...]) -> gpd.GeoDataFrame:
    """Keep element type, id, name, the channel keys and geometry (columns a GeoPackage can store)."""
    gdf = gdf.reset_index() if {"element", "id"} <= set(gdf.index.names or []) else gdf
    columns = [c for c in ("element", "id", "name", *channels) if c in gdf.columns]
    out = gpd.GeoDataFrame(gdf[columns].copy(), geometry=gdf.geometry.to_numpy(), crs=gdf.crs or WGS84)
    for key in channels:
        if key not in out.columns:
            out[key] = pd.Series(pd.NA, index=out.index, dtype="object")
    return out.to_crs(WGS84)


def load_osm_features(profile: Profile, boundary: Polygon | MultiPolygon, tags: dict | None = None) -> gpd.GeoDataFrame:
    """OSM features for the profile's boundary from the source it names (``file``, ``pbf`` or
    ``overpass``): those with the profile's channel keys, or with osmnx-style ``tags`` (their keys
    become the columns). ``gdf.attrs["osm"]`` says where they came from and the date of the data
    (``snapshot_date``), which :func:`save_features` stores in the GeoPackage."""
    osm = profile.osm
    channels = tuple(tags) if tags else osm.channels
    if osm.source == "file":
        gdf = features_from_file(osm.path, boundary, channels, tags)
        meta = {"source": "file", "path": osm.path.name, "snapshot_date": osm_snapshot_date(osm.path)}
    elif osm.source == "pbf":
        gdf = features_from_pbf(osm.path, boundary, channels, profile.cache_dir / "quackosm", tags)
        meta = {"source": "pbf", "path": osm.path.name, "snapshot_date": pbf_snapshot_date(osm.path)}
    else:
        gdf, queried_at = features_from_overpass(boundary, channels, profile.cache_dir / "osmnx" / profile.name, tags)
        meta = {"source": "overpass", "overpass_url": ox.settings.overpass_url, "queried_at": queried_at, "snapshot_date": queried_at[:10]}
    gdf.attrs["osm"] = {**meta, "osmnx": ox.__version__}
    return gdf


def zones_from_osm(features: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Named protected areas and indigenous lands among features loaded with :data:`ZONE_TAGS`:
    columns ``name``, ``kind`` (``indigenous territory`` or ``protected area``), ``osm_id`` and the
    polygon (unnamed ones are dropped: a zone is reported by its name)."""
    # an empty answer has none of these columns
    polygons = features[features.geom_type.isin(["Polygon", "MultiPolygon"])].reindex(columns=["element", "id", "name", "boundary", "geometry"])
    named = polygons[polygons["name"].notna() & (polygons["name"].astype(str).str.strip() != "")]
    return gpd.GeoDataFrame({"name": named["name"].astype(str).to_numpy(),
                             "kind": np.where(named["boundary"].eq("aboriginal_lands"), "indigenous territory", "protected area"),
                             "osm_id": (named["element"].astype(str) + "/" + named["id"].astype(str)).to_numpy()},
                            geometry=named.geometry.to_numpy(), crs=features.crs or WGS84)


def osm_snapshot_date(path: str | Path) -> str | None:
    """Date of an ``.osm`` XML file's data: the Overpass ``osm_base`` stamp, or else the newest element
    ``timestamp``; None when the file carries neither (e.g. the synthetic demo file)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "OSM file not found", "check osm.path in the profile")
    text = path.read_text(encoding="utf-8", errors="replace")
    base = re.search(r'osm_base="([^"]+)"', text)
    if base:
        return base.group(1)[:10]
    stamps = re.findall(r'timestamp="(\d{4}-\d{2}-\d{2})', text)
    return max(stamps) if stamps else None


def pbf_snapshot_date(path: str | Path) -> str | None:
    """Date of an ``.osm.pbf`` extract's data: its header's replication timestamp (Geofabrik sets it), or None."""
    import osmium

    reader = osmium.io.Reader(str(path), osmium.osm.osm_entity_bits.NOTHING)
    try:
        stamp = reader.header().get("osmosis_replication_timestamp")
    finally:
        reader.close()
    return stamp[:10] if stamp else None


def save_features(gdf: gpd.GeoDataFrame, path: str | Path) -> Path:
    """Write features to a GeoPackage atomically, with ``gdf.attrs["osm"]`` (source, dates) as the
    layer's metadata."""
    metadata = {k: str(v) for k, v in gdf.attrs.get("osm", {}).items() if v is not None}
    with atomic_path(path) as tmp:
        gdf.to_file(tmp, driver="GPKG", layer="osm_features", metadata=metadata or None)
    return Path(path)


def read_features(path: str | Path) -> gpd.GeoDataFrame:
    """Read features saved by :func:`save_features` (their metadata in ``attrs["osm"]``)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "OSM features not found", "run notebook 01_osm_features (make osm) first")
    gdf = gpd.read_file(path, layer="osm_features")
    gdf.attrs["osm"] = pyogrio.read_info(path, layer="osm_features").get("layer_metadata") or {}
    return gdf


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

    The features are reprojected once per CRS of the grids and spatially indexed, so each patch
    only rasterises the features that touch it.

    Parameters
    ----------
    features
        OSM features (any CRS) with one column per channel key.
    crs
        CRS of the patch grids (the imagery raster's); None when each patch has its own UTM zone
        (the Earth Engine and STAC sources): grids in any CRS are burned correctly either way.
    channels
        Channel keys, in output order.
    """

    def __init__(self, features: gpd.GeoDataFrame, crs: CRS | None, channels: tuple[str, ...] = OSM_CHANNELS):
        unknown = [c for c in channels if c not in OSM_CHANNELS]
        if unknown:
            raise AsgmError(f"unknown OSM channel(s) {unknown}; use names from {', '.join(OSM_CHANNELS)}")
        self.channels = tuple(channels)
        self._features = features
        self._by_crs: dict[str, list[gpd.GeoSeries]] = {}
        crs = CRS.from_user_input(crs) if crs is not None else WGS84
        #: Per channel, the geometries carrying its key, in ``crs``.
        self.layers = self._layers(crs)
        digest = hashlib.sha256(str(crs).encode())
        for layer in self.layers:
            digest.update(b"".join(shapely.to_wkb(layer.to_numpy())))
            digest.update(b"|")
        #: Changes whenever the burned masks could change.
        self.fingerprint = digest.hexdigest()[:16]

    def _layers(self, crs: CRS) -> list[gpd.GeoSeries]:
        key = crs.to_string()
        if key not in self._by_crs:
            projected = self._features.to_crs(crs)
            layers = []
            for channel in self.channels:
                layer = projected[projected[channel].notna()] if channel in projected else projected.iloc[:0]
                layer = layer[~layer.geometry.is_empty & layer.geometry.notna()]
                layers.append(layer.geometry.reset_index(drop=True))
            self._by_crs[key] = layers
        return self._by_crs[key]

    def rasterize(self, grid: PatchGrid) -> np.ndarray:
        """Return the (H, W, C) uint8 mask of every channel on ``grid`` (1 where a feature lies)."""
        out = np.zeros((grid.height, grid.width, len(self.channels)), dtype=np.uint8)
        window = box(*grid.bounds)
        for c, geoms in enumerate(self._layers(grid.crs)):
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
