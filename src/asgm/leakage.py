"""OSM leakage audit: OSM tags that nearly give the label away, and the score without them.

OSM is mapped by people, sometimes from the very mines the labels mark (``landuse=quarry`` drawn
over a pit). A model may then learn "a quarry polygon here" instead of "mining in the imagery",
which works in the training region and fails wherever mappers have not been. The audit counts,
for every ``key=value`` of the OSM channels, the mines and non-mines whose patch it touches,
flags the tags found (nearly) only on mines and the mining-related ones, and measures how the
trained model scores when those tags are erased from the held-out patches.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from asgm.config import OSM_CHANNELS
from asgm.models import normalize_patches, predict_probabilities
from asgm.osm import OsmRasterizer
from asgm.patches import Dataset
from asgm.regions import patch_grids

#: Tags that say "mining" whatever their counts (among the keys of the OSM channels).
MINING_TAGS = ("landuse=quarry", "landuse=mining", "landuse=mine")


def tagged_features(features: gpd.GeoDataFrame, channels: Sequence[str] = OSM_CHANNELS) -> gpd.GeoDataFrame:
    """One row per feature and ``key=value`` tag of the channel keys (a feature with two keys gives two rows)."""
    parts = [gpd.GeoDataFrame({"tag": key + "=" + features.loc[features[key].notna(), key].astype(str)},
                              geometry=features.loc[features[key].notna()].geometry, crs=features.crs)
             for key in channels if key in features]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else gpd.GeoDataFrame({"tag": []}, geometry=[], crs=features.crs)


def tag_presence(features: gpd.GeoDataFrame, index: pd.DataFrame, patch_size: int, resolution_m: float,
                 channels: Sequence[str] = OSM_CHANNELS) -> pd.DataFrame:
    """Which ``key=value`` tags touch each patch.

    Parameters
    ----------
    features
        OSM features (as saved by notebook 01) with one column per channel key.
    index
        Dataset index with ``patch_id, crs, x_centre, y_centre``.
    patch_size, resolution_m
        The dataset's patch side (px) and pixel size (m).

    Returns
    -------
    pandas.DataFrame
        Boolean, one row per patch (indexed by ``patch_id``), one column per tag.
    """
    tags = tagged_features(features, channels)
    grids = patch_grids(index, patch_size, resolution_m)
    pairs = []
    for crs, rows in index.groupby("crs").indices.items():
        footprints = gpd.GeoDataFrame({"row": rows}, geometry=[grids[r].footprint for r in rows], crs=crs)
        joined = gpd.sjoin(footprints, tags.to_crs(crs), predicate="intersects", how="inner")
        pairs.append(joined[["row", "tag"]])
    found = pd.concat(pairs, ignore_index=True) if pairs else pd.DataFrame(columns=["row", "tag"])
    presence = pd.crosstab(found["row"], found["tag"]).reindex(range(len(index)), fill_value=0) > 0
    presence.index = index["patch_id"].to_numpy()
    return presence.rename_axis(index="patch_id", columns="tag")


def tag_audit(presence: pd.DataFrame, labels: Sequence[int], min_patches: int = 5, decisive: float = 0.9) -> pd.DataFrame:
    """Share of mines and of non-mines whose patch holds each tag, and the tags that nearly decide the label.

    A tag is flagged when it is mining-related (:data:`MINING_TAGS`), or when it touches at least
    ``min_patches`` patches and at least ``decisive`` of them are mines. (Tags found mostly on
    non-mines are context — towns, rivers — and shown but not flagged: the risk is the mappers
    having traced the mines themselves.)

    Returns
    -------
    pandas.DataFrame
        One row per tag: ``patches, mines, non_mines, share_of_mines, share_of_non_mines,
        mine_fraction`` (mines / patches holding the tag) and ``flag`` (the reason, or "");
        flagged tags first, then by mine fraction.
    """
    y = np.asarray(labels).astype(int)
    mines, non_mines = presence[y == 1].sum(), presence[y == 0].sum()
    table = pd.DataFrame({"patches": mines + non_mines, "mines": mines, "non_mines": non_mines,
                          "share_of_mines": mines / max((y == 1).sum(), 1), "share_of_non_mines": non_mines / max((y == 0).sum(), 1)})
    table["mine_fraction"] = table["mines"] / table["patches"].clip(lower=1)
    table["flag"] = ""
    table.loc[(table["patches"] >= min_patches) & (table["mine_fraction"] >= decisive), "flag"] = f"≥ {decisive:.0%} of its patches are mines"
    table.loc[table.index.isin(MINING_TAGS), "flag"] = "mining-related tag"
    table["flagged"] = table["flag"] != ""
    return table.sort_values(["flagged", "mine_fraction", "patches"], ascending=False).drop(columns="flagged").rename_axis("tag")


def erase_tags(features: gpd.GeoDataFrame, tags: Sequence[str], channels: Sequence[str] = OSM_CHANNELS) -> gpd.GeoDataFrame:
    """The features with the given ``key=value`` tags removed (features left without any channel key are dropped)."""
    out = features.copy()
    for tag in tags:
        key, value = tag.split("=", 1)
        if key in out:
            out.loc[out[key].astype(str) == value, key] = None
    keys = [c for c in channels if c in out]
    return out[out[keys].notna().any(axis=1)] if keys else out.iloc[:0]


def predictions_with_osm(model, model_channels: Sequence[str], dataset: Dataset, features: gpd.GeoDataFrame, rows: np.ndarray,
                         batch_size: int = 256) -> np.ndarray:
    """Probabilities for ``rows`` of ``dataset`` with their OSM channels burned again from ``features``
    (e.g. after :func:`erase_tags`), on each patch's own grid; the imagery is unchanged."""
    rows = np.asarray(rows)
    patches = np.array(dataset.patches[rows])
    osm = [c for c in dataset.osm_channels if c in model_channels]
    index = dataset.index.iloc[rows].reset_index(drop=True)
    grids = patch_grids(index, int(dataset.meta["patch_size"]), float(dataset.meta.get("resolution_m", 10.0)))
    if osm:
        slots = [dataset.channels.index(c) for c in osm]
        for crs, members in index.groupby("crs").indices.items():
            rasterizer = OsmRasterizer(features, crs, tuple(osm))
            for r in members:
                patches[r][..., slots] = rasterizer.rasterize(grids[r])
    x = normalize_patches(patches, dataset.channels, float(dataset.meta["scale"]), model_channels)
    return predict_probabilities(model, x, batch_size)


def imagery_dates(index: pd.DataFrame) -> tuple[str, str] | None:
    """Earliest start and latest end of the imagery dates of a dataset index (``date_start``,
    ``date_end`` columns), or None when the index has no dates."""
    if not {"date_start", "date_end"} <= set(index.columns):
        return None
    return str(pd.to_datetime(index["date_start"]).min().date()), str(pd.to_datetime(index["date_end"]).max().date())


def score_without_tags(model_dirs: dict[int, str | Path], dataset: Dataset, features: gpd.GeoDataFrame, tags: Sequence[str],
                       n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """How the trained models score on their test patches when ``tags`` are erased from the OSM
    channels, against the same patches burned from all of ``features``: a paired difference
    (without − with) per metric, as :func:`asgm.evaluate.paired_difference` returns it.

    Parameters
    ----------
    model_dirs
        Model directory per seed (runs of one experiment).
    dataset
        The dataset the models were trained on.
    features
        The OSM features the dataset's channels were burned from.
    tags
        ``key=value`` tags to erase (e.g. the flagged rows of :func:`tag_audit`).
    """
    from asgm.evaluate import RunPredictions, paired_difference, read_run
    from asgm.predict import load_trained_model

    erased = erase_tags(features, tags)
    with_tags, without_tags = {}, {}
    for s, model_dir in model_dirs.items():
        run = read_run(model_dir)
        trained = load_trained_model(model_dir)
        trained.check_dataset(dataset)
        rows = dataset.rows(run.patch_id)
        for out, feats in ((with_tags, features), (without_tags, erased)):
            p = predictions_with_osm(trained.model, trained.channels, dataset, feats, rows)
            out[s] = RunPredictions(run.patch_id, run.y, p, run.blocks, run.threshold)
    return paired_difference(without_tags, with_tags, n_boot, seed)
