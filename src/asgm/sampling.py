"""Sampling locations: read and validate labelled points, draw random negatives."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from shapely import contains_xy
from shapely.geometry import MultiPolygon, Polygon

from asgm.atomic import atomic_path
from asgm.config import Profile
from asgm.errors import AsgmError, AsgmWarning, InputFileError
from asgm.regions import WGS84, read_boundary, read_geojson, utm_crs

#: Category of each sampling-point set, and its label (1 = mine).
CATEGORIES = {"mine": 1, "curated_negative": 0, "random_negative": 0}


def read_points(path: str | Path, category: str, boundary: Polygon | MultiPolygon | None = None, outside: str = "error") -> gpd.GeoDataFrame:
    """Read labelled sampling points.

    Parameters
    ----------
    path
        GeoJSON of Point features in WGS 84.
    category
        ``mine``, ``curated_negative`` or ``random_negative``; sets ``label``.
    boundary
        If given, points must lie inside it.
    outside
        ``error``: a point outside the boundary is an error; ``drop``: such points are left out with
        a warning that names them (``source_row`` keeps the row numbers of the file).

    Returns
    -------
    GeoDataFrame
        Columns ``patch_id`` (``<category>_<row>``), ``label``, ``category``, ``source_row``, the
        file's ``kind`` and ``label_noise`` columns if any, and the point geometry (EPSG:4326).

    Raises
    ------
    InputFileError
        Unreadable file, no points, non-point geometry, not lon/lat, or (``outside="error"``) points
        outside the boundary.
    """
    if category not in CATEGORIES:
        raise AsgmError(f"unknown sampling category {category!r}; use one of {', '.join(CATEGORIES)}")
    gdf = read_geojson(path, ("Point",), f"{category} sampling points")
    inside = np.ones(len(gdf), bool)
    if boundary is not None:
        inside = contains_xy(boundary, gdf.geometry.x.to_numpy(), gdf.geometry.y.to_numpy())
        if not inside.all():
            bad = np.flatnonzero(~inside)
            sample = ", ".join(f"#{r} ({gdf.geometry.x[r]:.5f}, {gdf.geometry.y[r]:.5f})" for r in bad[:5])
            problem = f"{len(bad)} of {len(gdf)} points lie outside the boundary: {sample}{' …' if len(bad) > 5 else ''}"
            if outside != "drop":
                raise InputFileError(path, problem, "remove those points, use the boundary they belong to (region.boundary), "
                                     "or set region.points_outside_boundary: drop")
            warnings.warn(f"{path}: {problem}; dropped (region.points_outside_boundary: drop)", AsgmWarning, stacklevel=2)
    rows = np.flatnonzero(inside)
    gdf = gdf.iloc[rows]
    out = gpd.GeoDataFrame(
        {
            "patch_id": [f"{category}_{i:04d}" for i in rows],
            "label": CATEGORIES[category],
            "category": category,
            "source_row": rows,
        },
        geometry=gdf.geometry.to_numpy(),
        crs=WGS84,
    )
    if "kind" in gdf.columns:
        out.insert(3, "kind", gdf["kind"].to_numpy())
    if "label_noise" in gdf.columns:  # the demo marks its planted label errors
        out["label_noise"] = gdf["label_noise"].fillna(False).astype(bool).to_numpy()
    return out


def random_negatives(
    boundary: Polygon | MultiPolygon,
    n: int,
    avoid: gpd.GeoDataFrame,
    min_distance_m: float,
    seed: int,
    max_tries: int = 200,
) -> gpd.GeoDataFrame:
    """Draw ``n`` random points inside ``boundary``, each at least ``min_distance_m`` from every point
    in ``avoid`` (the positives) and from each other.

    Distances are measured in the UTM zone of the boundary's centroid. Candidates are drawn in
    batches and accepted greedily in draw order, so the result depends only on ``seed``.

    Returns
    -------
    GeoDataFrame
        Points with ``patch_id``, ``label`` 0, ``category`` ``random_negative`` (EPSG:4326).

    Raises
    ------
    AsgmError
        When ``n`` points cannot be placed (area too small for the distance): lower the count or the
        distance.
    """
    centroid = boundary.centroid
    crs = utm_crs(centroid.x, centroid.y)
    area = gpd.GeoSeries([boundary], crs=WGS84).to_crs(crs).iloc[0]
    avoid_points = avoid.to_crs(crs).geometry
    avoid_tree = cKDTree(np.column_stack([avoid_points.x, avoid_points.y])) if len(avoid_points) else None
    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = area.bounds
    accepted: list[tuple[float, float]] = []
    # A grid of cells of side min_distance/sqrt(2) holds at most one accepted point each: checking the
    # 5x5 neighbouring cells is enough to enforce the mutual distance in O(1) per candidate.
    cell = min_distance_m / math.sqrt(2) if min_distance_m > 0 else 1.0
    occupied: dict[tuple[int, int], tuple[float, float]] = {}
    for _ in range(max_tries if n > 0 else 0):
        xy = rng.uniform((minx, miny), (maxx, maxy), size=(max(4 * n, 256), 2))
        xy = xy[contains_xy(area, xy[:, 0], xy[:, 1])]
        if avoid_tree is not None:
            xy = xy[avoid_tree.query(xy, distance_upper_bound=min_distance_m)[0] >= min_distance_m]
        for x, y in xy:
            key = (int(x // cell), int(y // cell))
            near = (occupied.get((key[0] + i, key[1] + j)) for i in range(-2, 3) for j in range(-2, 3))
            if all(p is None or math.hypot(p[0] - x, p[1] - y) >= min_distance_m for p in near):
                occupied[key] = (x, y)
                accepted.append((x, y))
                if len(accepted) == n:
                    break
        if len(accepted) == n:
            break
    if len(accepted) < n:
        raise AsgmError(
            f"only {len(accepted)} of {n} random negatives fit inside the boundary at {min_distance_m:.0f} m from "
            "every positive and from each other; lower sampling.random_negatives or sampling.min_distance_m"
        )
    xy = np.array(accepted).reshape(-1, 2)
    pts = gpd.GeoSeries(gpd.points_from_xy(xy[:, 0], xy[:, 1]), crs=crs).to_crs(WGS84)
    return gpd.GeoDataFrame(
        {
            "patch_id": [f"random_negative_{i:04d}" for i in range(n)],
            "label": 0,
            "category": "random_negative",
            "source_row": np.arange(n),
        },
        geometry=pts.to_numpy(),
        crs=WGS84,
    )


def combine(*point_sets: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Stack point sets into one table with ``lon``/``lat`` columns; patch ids must be unique."""
    points = gpd.GeoDataFrame(pd.concat(point_sets, ignore_index=True), crs=WGS84)
    points["lon"] = points.geometry.x.round(7)
    points["lat"] = points.geometry.y.round(7)
    dup = points["patch_id"].duplicated()
    if dup.any():
        raise AsgmError(f"duplicate patch ids {points.loc[dup, 'patch_id'].tolist()[:5]}: give each point set its own category")
    return points


def sampling_points(profile: Profile) -> gpd.GeoDataFrame:
    """All sampling points of a profile: mines, curated negatives and random negatives.

    Random negatives come from ``region.random_negatives`` when the profile names a file, otherwise
    they are drawn inside the boundary (``sampling`` section). The table is also written to
    ``profile.sampling_points_path`` (GeoJSON).
    """
    boundary = read_boundary(profile.region.boundary)
    outside = profile.region.points_outside_boundary
    positives = read_points(profile.region.positives, "mine", boundary, outside)
    curated = read_points(profile.region.negatives, "curated_negative", boundary, outside)
    if profile.region.random_negatives is not None:
        randoms = read_points(profile.region.random_negatives, "random_negative", boundary, outside)
    else:
        spacing = profile.sampling.min_distance_m
        if spacing is None:
            spacing = math.sqrt(2) * profile.patches.sizes[0] * profile.patches.resolution_m
        randoms = random_negatives(boundary, profile.sampling.random_negatives, positives, spacing, profile.sampling.seed)
    points = combine(positives, curated, randoms)
    with atomic_path(profile.sampling_points_path) as tmp:
        points.to_file(tmp, driver="GeoJSON", layer=profile.sampling_points_path.stem)
    return points


#: Mean Earth radius (m), for distances between points given in longitude and latitude.
EARTH_RADIUS_M = 6_371_008.8
SPLITS = ("train", "validation", "test")
#: The split of patches kept out of training and validation (the test split keeps every patch).
EXCLUDED = "excluded"


def _earth_xyz(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Points on a sphere (m): straight-line distances equal great-circle distances to within
    1e-6 at patch scales, anywhere on Earth and across UTM zones."""
    lon, lat = np.radians(np.asarray(lon, float)), np.radians(np.asarray(lat, float))
    return EARTH_RADIUS_M * np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])


def spatial_blocks(lon: np.ndarray, lat: np.ndarray, min_distance_m: float) -> np.ndarray:
    """Group points so that any two points in different groups are at least ``min_distance_m`` apart.

    Groups are the connected components of the graph linking points closer than ``min_distance_m``
    (single linkage), so a chain of nearby points forms one block.

    Returns
    -------
    numpy.ndarray
        Block number of each point (0 … n_blocks − 1).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    xyz = _earth_xyz(lon, lat)
    pairs = cKDTree(xyz).query_pairs(min_distance_m * (1 - 1e-9), output_type="ndarray")
    n = len(xyz)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def min_distance_between(lon_a, lat_a, lon_b, lat_b) -> float:
    """Smallest distance (m) from any point of set A to any point of set B."""
    if len(lon_a) == 0 or len(lon_b) == 0:
        return math.inf
    return float(cKDTree(_earth_xyz(lon_a, lat_a)).query(_earth_xyz(lon_b, lat_b))[0].min())


def spatial_split(index: pd.DataFrame, min_distance_m: float, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0,
                  areas: int | None = None) -> pd.DataFrame:
    """Split patches into train / validation / test by spatial blocks.

    Blocks from :func:`spatial_blocks` are shuffled (seeded) and each goes, whole, to the split
    furthest below its target share of mines and non-mines. No validation or test point is then
    closer than ``min_distance_m`` to a training point; with ``min_distance_m`` at least the patch
    diagonal, no held-out patch overlaps a training patch.

    Parameters
    ----------
    index
        Dataset index with ``lon``, ``lat`` and ``label``.
    min_distance_m
        Minimum distance between points of different splits.
    fractions
        Target shares of train, validation and test (by patches, per class).
    seed
        Seed of the block order.
    areas
        Split by geographic areas instead of blocks: the points are grouped into this many areas
        (k-means on their positions, whole blocks each, as :func:`spatial_regions`) and each area
        goes whole to one split, so validation and test lie in places the training set does not
        reach (fewer areas when there are fewer blocks). None: each block on its own.

    Returns
    -------
    pandas.DataFrame
        ``split`` (train / validation / test) and ``block`` of each row, on ``index``'s index.
    """
    fractions = np.asarray(fractions, float)
    if fractions.shape != (3,) or (fractions < 0).any() or not math.isclose(fractions.sum(), 1.0, abs_tol=1e-6):
        raise AsgmError(f"split fractions {fractions.tolist()} must be three non-negative shares summing to 1 (train, validation, test)")
    lon, lat = index["lon"].to_numpy(float), index["lat"].to_numpy(float)
    blocks = spatial_blocks(lon, lat, min_distance_m)
    units = blocks if areas is None else _block_regions(lon, lat, blocks, min(areas, int(blocks.max()) + 1), seed)
    assignment = _balanced_groups(units, index["label"].to_numpy().astype(int), fractions, seed)
    return pd.DataFrame({"split": np.asarray(SPLITS)[assignment], "block": blocks}, index=index.index)


def spatial_folds(index: pd.DataFrame, k: int, min_distance_m: float, seed: int = 0) -> pd.DataFrame:
    """Assign whole spatial blocks to ``k`` folds, balancing mines and non-mines across folds.

    Blocks come from :func:`spatial_blocks`, so a point of one fold is at least ``min_distance_m``
    from every point of the other folds: holding one fold out and training on the rest never lets a
    held-out patch overlap a training patch.

    Returns
    -------
    pandas.DataFrame
        ``fold`` (0 … k − 1) and ``block`` of each row, on ``index``'s index.

    Raises
    ------
    AsgmError
        ``k`` < 2 or more folds than spatial blocks.
    """
    blocks = _blocks_for_groups(index, k, min_distance_m, "folds")
    return pd.DataFrame({"fold": _balanced_groups(blocks, index["label"].to_numpy().astype(int), np.full(k, 1 / k), seed),
                         "block": blocks}, index=index.index)


def held_out_splits(index: pd.DataFrame, folds: np.ndarray, min_distance_m: float, shares: tuple[float, float], seed: int = 0,
                    areas: int | None = None) -> list[pd.Series]:
    """For each group of ``folds`` (one group number per row; negative: in no group and never
    used), a split holding that group out as ``test`` and dividing the other groups' patches into
    ``train`` and ``validation`` by spatial blocks (:func:`spatial_split` with the ``shares`` of
    train and validation); rows in no group are ``excluded``. Series on ``index``'s index."""
    folds = np.asarray(folds)
    train, validation = shares
    fractions = (train / (train + validation), validation / (train + validation), 0.0)
    splits = []
    for fold in sorted(set(folds[folds >= 0].tolist())):
        held = folds == fold
        rest = (folds >= 0) & ~held
        split = pd.Series(np.where(held, "test", EXCLUDED), index=index.index, dtype=object)
        split[rest] = spatial_split(index.loc[rest], min_distance_m, fractions, seed, areas)["split"]
        splits.append(split)
    return splits


def spatial_regions(index: pd.DataFrame, n_regions: int, min_distance_m: float, seed: int = 0) -> pd.DataFrame:
    """Group points into ``n_regions`` large geographic regions (k-means on their positions on the
    sphere), each made of whole spatial blocks, for leave-one-region-out evaluation.

    A block (points linked closer than ``min_distance_m``) goes whole to the region of most of its
    points, so no point of one region is within ``min_distance_m`` of another region's.

    Returns
    -------
    pandas.DataFrame
        ``region`` (0 … n − 1, numbered west to east by centre), ``block``, and the region's centre
        ``region_lon`` / ``region_lat``, on ``index``'s index.
    """
    lon, lat = index["lon"].to_numpy(float), index["lat"].to_numpy(float)
    blocks = _blocks_for_groups(index, n_regions, min_distance_m, "regions")
    region = _block_regions(lon, lat, blocks, n_regions, seed)
    centres = pd.DataFrame({"lon": lon, "lat": lat, "region": region}).groupby("region")[["lon", "lat"]].mean()
    order = {r: i for i, r in enumerate(centres.sort_values("lon").index)}
    region = np.array([order[r] for r in region])
    centres = centres.rename(index=order).sort_index()
    return pd.DataFrame({"region": region, "block": blocks, "region_lon": centres["lon"].to_numpy()[region],
                         "region_lat": centres["lat"].to_numpy()[region]}, index=index.index)


def _block_regions(lon: np.ndarray, lat: np.ndarray, blocks: np.ndarray, n_regions: int, seed: int) -> np.ndarray:
    """Region of each point: k-means on the positions on the sphere, each block whole to the region
    of most of its points (numbers 0 … n − 1, possibly with gaps)."""
    from sklearn.cluster import KMeans

    labels = KMeans(n_regions, n_init=10, random_state=seed).fit_predict(_earth_xyz(lon, lat) / EARTH_RADIUS_M)
    counts = np.zeros((blocks.max() + 1, n_regions))
    np.add.at(counts, (blocks, labels), 1)
    return counts.argmax(axis=1)[blocks]


def _blocks_for_groups(index: pd.DataFrame, groups: int, min_distance_m: float, what: str) -> np.ndarray:
    """Spatial blocks of ``index``'s points, checked to allow ``groups`` groups of whole blocks."""
    blocks = spatial_blocks(index["lon"].to_numpy(float), index["lat"].to_numpy(float), min_distance_m)
    if groups < 2 or groups > blocks.max() + 1:
        raise AsgmError(f"{groups} {what} for {blocks.max() + 1} spatial blocks: give at least 2 {what} and at most one per block")
    return blocks


def _balanced_groups(blocks: np.ndarray, labels: np.ndarray, shares: np.ndarray, seed: int) -> np.ndarray:
    """Group of each point: whole blocks, in a seeded order with large blocks first, each to the group
    furthest below its share of mines and non-mines."""
    counts = np.zeros((blocks.max() + 1, 2))
    np.add.at(counts, (blocks, labels), 1)
    targets = shares[:, None] * counts.sum(axis=0)[None, :]
    filled = np.zeros_like(targets)
    order = np.random.default_rng(seed).permutation(len(counts))
    order = order[np.argsort(-counts[order].sum(axis=1), kind="stable")]
    assignment = np.empty(len(counts), dtype=int)
    for b in order:
        deficit = ((targets - filled) / np.maximum(targets, 1) * counts[b]).sum(axis=1)
        deficit[shares == 0] = -np.inf
        group = int(np.argmax(deficit))
        assignment[b] = group
        filled[group] += counts[b]
    return assignment[blocks]
