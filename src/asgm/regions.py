"""Boundaries, UTM zones and the pixel grids of patches."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import pyogrio
import shapely
from affine import Affine
from pyproj import CRS
from shapely.geometry import MultiPolygon, Polygon, box

from asgm.errors import AsgmWarning, InputFileError

WGS84 = CRS.from_epsg(4326)


@dataclass(frozen=True)
class PatchGrid:
    """The pixel grid of one patch: CRS, affine transform (top-left origin) and size in pixels.

    Imagery and OSM channels of a patch are read and burned on exactly this grid.
    """

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid's CRS."""
        left, top = self.transform @ (0, 0)
        right, bottom = self.transform @ (self.width, self.height)
        return left, bottom, right, top

    @property
    def footprint(self) -> Polygon:
        return box(*self.bounds)

    @classmethod
    def centred_on(cls, x: float, y: float, size: int, resolution: float, crs: CRS) -> PatchGrid:
        """A ``size`` x ``size`` grid aligned to multiples of ``resolution``, whose pixel ``size // 2``
        (row and column) contains the point (x, y)."""
        col = math.floor(x / resolution)
        row = math.floor(y / resolution)
        left = (col - size // 2) * resolution
        top = (row + 1 + size // 2) * resolution
        return cls(crs, Affine(resolution, 0, left, 0, -resolution, top), size, size)


def patch_grids(index, patch_size: int, resolution: float) -> list[PatchGrid]:
    """The pixel grid of each patch of a dataset index (columns ``crs, x_centre, y_centre``: the
    centre of the patch's grid, as :func:`asgm.patches.build_dataset` records it)."""
    half = patch_size * resolution / 2
    return [PatchGrid(CRS.from_user_input(crs), Affine(resolution, 0, x - half, 0, -resolution, y + half), patch_size, patch_size)
            for crs, x, y in zip(index["crs"], index["x_centre"], index["y_centre"])]


def utm_crs(lon: float, lat: float) -> CRS:
    """The WGS 84 / UTM CRS of the zone containing (lon, lat), e.g. EPSG:32620 for El Callao."""
    zone = min(int((lon + 180) // 6) + 1, 60)
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def read_geojson(path: str | Path, geometry_types: tuple[str, ...], what: str) -> gpd.GeoDataFrame:
    """Read a vector file into EPSG:4326, checking it is readable, non-empty and of the right geometry.

    Parameters
    ----------
    path
        GeoJSON (or any vector format GDAL reads).
    geometry_types
        Accepted geometry types, e.g. ``("Point",)``.
    what
        What the file should hold, for error messages ("mine sampling points").

    Returns
    -------
    GeoDataFrame
        In EPSG:4326, index reset.

    Raises
    ------
    InputFileError
        Missing, unreadable, empty, wrong geometry type, or coordinates that are not lon/lat.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, f"file not found (expected {what})", "check the path in the profile (configs/*.yaml)")
    try:
        gdf = gpd.read_file(path)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, ValueError) as exc:
        raise InputFileError(path, f"not a readable GeoJSON ({exc})", "validate the file, e.g. with geojson.io or ogrinfo") from None
    if gdf.empty or gdf.geometry.isna().all():
        raise InputFileError(path, f"contains no features (expected {what})", "add features or point the profile at the right file")
    missing = gdf.geometry.isna() | gdf.geometry.is_empty
    if missing.any():
        rows = list(gdf.index[missing][:10])
        raise InputFileError(path, f"features {rows} have no geometry", "remove them or give them coordinates")
    wrong = ~gdf.geom_type.isin(geometry_types)
    if wrong.any():
        rows = list(gdf.index[wrong][:10])
        raise InputFileError(
            path,
            f"features {rows} are {sorted(set(gdf.geom_type[wrong]))}, expected {' or '.join(geometry_types)} ({what})",
            "keep only features of the expected geometry type",
        )
    if gdf.crs is None:
        gdf = gdf.set_crs(WGS84)
    if gdf.crs.is_geographic:
        minx, miny, maxx, maxy = gdf.total_bounds
        if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
            raise InputFileError(
                path,
                f"coordinates {gdf.total_bounds.round(1).tolist()} are not longitude/latitude although the file declares {gdf.crs.to_string()}",
                "the file is probably in a projected CRS (e.g. UTM) without saying so: reproject it to EPSG:4326",
            )
    return gdf.to_crs(WGS84).reset_index(drop=True)


def read_boundary(path: str | Path) -> Polygon | MultiPolygon:
    """Read a boundary file and return its features dissolved into one (multi)polygon in EPSG:4326."""
    gdf = read_geojson(path, ("Polygon", "MultiPolygon"), "the study-area boundary polygon")
    invalid = ~gdf.geometry.is_valid
    if invalid.any():
        # make_valid keeps every lobe of a self-intersecting polygon (buffer(0) can drop all but one)
        before = _area_km2(gdf.geometry)
        gdf.loc[invalid, "geometry"] = gdf.geometry[invalid].make_valid().apply(_polygonal_part)
        warnings.warn(f"{path}: {int(invalid.sum())} boundary feature(s) were invalid (e.g. self-intersecting) and were repaired with "
                      f"shapely.make_valid: {before:,.1f} km² before, {_area_km2(gdf.geometry):,.1f} km² after. Check the repaired "
                      "outline, or fix the file (e.g. QGIS: Fix geometries).", AsgmWarning, stacklevel=2)
    return gdf.geometry.union_all()


def _polygonal_part(geom):
    """The polygons of a geometry (a repaired outline can hold stray lines or points)."""
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in getattr(geom, "geoms", [geom]) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts)


def _area_km2(geometry: gpd.GeoSeries) -> float:
    """Area in km² in an equal-area projection (Lambert azimuthal centred on the geometry)."""
    centre = geometry.union_all().centroid
    return float(geometry.to_crs(f"+proj=laea +lat_0={centre.y} +lon_0={centre.x} +datum=WGS84").area.sum() / 1e6)
