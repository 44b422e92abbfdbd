"""Patch extraction, stacking with OSM channels, quality filter, and the dataset directory.

A dataset directory holds ``patches.npy`` (N, H, W, C), ``index.csv`` (one row per patch: at least
``patch_id, lon, lat, label``), ``dataset.json`` (``channels``, ``scale``, ``patch_size``,
``resolution_m``, …) and ``dropped.csv`` (points that gave no patch, with the reason).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime, timezone
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from asgm.atomic import atomic_path
from asgm.config import OSM_CHANNELS, S2_BANDS, PatchConfig
from asgm.errors import InputFileError, read_json_object
from asgm.imagery import ImagerySource
from asgm.osm import OsmRasterizer
from asgm.progress import progress_bar

INDEX_COLUMNS = ("patch_id", "lon", "lat", "label")
META_KEYS = ("channels", "scale", "patch_size")
#: Points carried into the index besides the required columns, when present (``label_noise``: the
#: demo's planted label errors).
EXTRA_COLUMNS = ("category", "kind", "source_row", "label_noise")


@dataclass
class Dataset:
    """A dataset directory read back: patches (memory-mapped), index and metadata."""

    path: Path
    patches: np.ndarray
    index: pd.DataFrame
    meta: dict

    @property
    def channels(self) -> list[str]:
        return list(self.meta["channels"])

    @property
    def band_channels(self) -> list[str]:
        """Channels that are reflectance (scaled by ``meta['scale']``)."""
        return [c for c in self.channels if c in S2_BANDS]

    @property
    def osm_channels(self) -> list[str]:
        return [c for c in self.channels if c in OSM_CHANNELS]

    def __len__(self) -> int:
        return len(self.index)

    def imagery_is_constant(self, sample: int = 512) -> bool:
        """Whether every reflectance channel holds one value over (a spread sample of) the patches:
        an all-zero or failed export, which no model can learn from or tell apart."""
        bands = [self.channels.index(c) for c in self.band_channels]
        if not bands or not len(self):
            return False
        rows = np.unique(np.linspace(0, len(self) - 1, min(sample, len(self))).astype(int))
        values = np.asarray(self.patches[rows][..., bands])
        return bool((values.min(axis=(0, 1, 2)) == values.max(axis=(0, 1, 2))).all())

    def rows(self, patch_ids) -> np.ndarray:
        """Row numbers (into ``patches`` and ``index``) of the given patch ids, in their order.

        Raises
        ------
        InputFileError
            An id is not in the dataset (e.g. a model trained on another dataset).
        """
        rows = pd.Index(self.index["patch_id"]).get_indexer_for(np.asarray(patch_ids))
        if (rows < 0).any():
            missing = np.asarray(patch_ids)[rows < 0]
            raise InputFileError(self.path / "index.csv", f"has no patch_id {list(missing[:5])}{' …' if len(missing) > 5 else ''}",
                                 "use the dataset the model was trained on")
        return rows

    @cached_property
    def fingerprint(self) -> str:
        """Identifies the contents: the build key of a dataset this package built, else a hash of
        ``index.csv`` and ``patches.npy`` (read once per Dataset object)."""
        if "build_key" in self.meta:
            return self.meta["build_key"]
        h = hashlib.sha256((self.path / "index.csv").read_bytes())
        with open(self.path / "patches.npy", "rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                h.update(chunk)
        return h.hexdigest()[:16]


def point_kinds(index: pd.DataFrame) -> pd.Series:
    """The finest description of each point the index has: ``kind`` (e.g. sandbar, farm), else
    ``category`` (e.g. curated_negative, natural_change), else mine / non-mine."""
    fallback = index["label"].map({1: "mine", 0: "non-mine"})
    if "category" in index:
        fallback = index["category"].where(index["category"].notna(), fallback)
    return (index["kind"].where(index["kind"].notna(), fallback) if "kind" in index else fallback).astype(str)


def quality_check(patch: np.ndarray, bands: tuple[str, ...], nodata: float, scale: float, qc: PatchConfig) -> tuple[str | None, float, float]:
    """Decide whether an imagery patch (H, W, bands) is usable.

    Returns
    -------
    reason, nodata_fraction, cloud_fraction
        ``reason`` is None for a good patch, else why it is dropped.
    """
    empty = np.all(patch == nodata, axis=-1)
    nodata_fraction = float(empty.mean())
    cloud_fraction = 0.0
    if "B2" in bands and not empty.all():
        blue = patch[..., bands.index("B2")][~empty].astype(np.float32) / scale
        cloud_fraction = float((blue >= qc.cloud_blue_reflectance).mean())
    if nodata_fraction == 1.0:
        return "black (no data at all)", nodata_fraction, cloud_fraction
    if nodata_fraction > qc.max_nodata_fraction:
        return f"nodata above {qc.max_nodata_fraction:.0%}", nodata_fraction, cloud_fraction
    if cloud_fraction > qc.max_cloud_fraction:
        return f"cloud above {qc.max_cloud_fraction:.0%}", nodata_fraction, cloud_fraction
    return None, nodata_fraction, cloud_fraction


def build_dataset(
    points: gpd.GeoDataFrame,
    source: ImagerySource,
    rasterizer: OsmRasterizer | None,
    patch_size: int,
    out_dir: str | Path,
    qc: PatchConfig,
    metadata: dict | None = None,
    progress: bool = True,
) -> Dataset:
    """Extract, filter and stack one patch per point, and write a dataset directory.

    Imagery is read through ``source``; the OSM channels are burned on each patch's own grid.
    Patches are written to a memory-mapped file chunk by chunk, so memory stays bounded.
    The directory appears atomically; if it already exists and was built from the same inputs
    (points, source, OSM features, size, quality settings) it is returned as is.

    Parameters
    ----------
    points
        Sampling points with ``patch_id``, ``label`` (and optionally ``category``, ``kind``).
    source
        Imagery source; its ``bands`` come first in the channel order.
    rasterizer
        OSM channels burner, or None for an imagery-only dataset.
    patch_size
        Patch side in pixels.
    out_dir
        Dataset directory to write.
    qc
        Quality-filter thresholds and chunk size.
    metadata
        Extra entries for ``dataset.json`` (e.g. ``{"synthetic": True}``).

    Returns
    -------
    Dataset
        The written dataset; ``dataset.meta["dropped"]`` counts dropped points by reason.
    """
    out_dir = Path(out_dir)
    osm_channels = rasterizer.channels if rasterizer else ()
    channels = list(source.bands) + list(osm_channels)
    key = _build_key(points, source, rasterizer, patch_size, qc)
    if (out_dir / "dataset.json").is_file():
        existing = read_dataset(out_dir)
        if existing.meta.get("build_key") == key:
            return existing

    n = len(points)
    dtype = np.result_type(source.data_dtype, np.uint8)
    rows, dropped = [], []
    with atomic_path(out_dir, marker="dataset.json", what="dataset directory") as tmp:
        tmp.mkdir()
        buffer = np.lib.format.open_memmap(tmp / "all.npy", mode="w+", dtype=dtype, shape=(n, patch_size, patch_size, len(channels)))
        kept = 0
        bar = progress_bar(total=n, desc=f"{patch_size}px patches", unit="patch", disable=not progress)
        for start in range(0, n, qc.chunk_size):
            chunk = points.iloc[start : start + qc.chunk_size]
            batch = source.read_patches(chunk, patch_size)
            for i, (_, point) in enumerate(chunk.iterrows()):
                reason, nodata_fraction, cloud_fraction = batch.dropped[i], np.nan, np.nan
                if reason is None:
                    reason, nodata_fraction, cloud_fraction = quality_check(batch.data[i], source.bands, source.nodata, source.scale, qc)
                if reason is not None:
                    dropped.append({"patch_id": point["patch_id"], "label": point["label"], "reason": reason,
                                    "nodata_fraction": nodata_fraction, "cloud_fraction": cloud_fraction})
                    continue
                grid = batch.grids[i]
                buffer[kept, ..., : len(source.bands)] = batch.data[i]
                if rasterizer is not None:
                    buffer[kept, ..., len(source.bands) :] = rasterizer.rasterize(grid)
                cx, cy = grid.transform @ (patch_size / 2, patch_size / 2)
                rows.append({
                    "patch_id": point["patch_id"], "lon": point.geometry.x, "lat": point.geometry.y, "label": int(point["label"]),
                    **{c: point[c] for c in EXTRA_COLUMNS if c in point.index},
                    "crs": grid.crs.to_string(), "x_centre": cx, "y_centre": cy,
                    "nodata_fraction": round(nodata_fraction, 4), "cloud_fraction": round(cloud_fraction, 4),
                })
                kept += 1
            bar.update(len(chunk))
        bar.close()
        buffer.flush()
        _save_first_rows(buffer, kept, tmp / "patches.npy")
        del buffer
        (tmp / "all.npy").unlink()
        index = pd.DataFrame(rows, columns=_index_columns(points))
        index.to_csv(tmp / "index.csv", index=False, float_format="%.7f")
        dropped_df = pd.DataFrame(dropped, columns=["patch_id", "label", "reason", "nodata_fraction", "cloud_fraction"])
        dropped_df.to_csv(tmp / "dropped.csv", index=False)
        meta = {
            "channels": channels,
            "bands": list(source.bands),
            "osm_channels": list(osm_channels),
            "scale": source.scale,
            "patch_size": patch_size,
            "resolution_m": qc.resolution_m,
            "dtype": np.dtype(dtype).name,
            "n_patches": kept,
            "n_positive": int(index["label"].sum()) if kept else 0,
            "dropped": dropped_df["reason"].value_counts().to_dict(),
            "label_meaning": {"1": "artisanal gold mining at the patch centre", "0": "no mining at the patch centre"},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "build_key": key,
            **(metadata or {}),
        }
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    return read_dataset(out_dir)


def _index_columns(points: gpd.GeoDataFrame) -> list[str]:
    extra = [c for c in EXTRA_COLUMNS if c in points.columns]
    return [*INDEX_COLUMNS, *extra, "crs", "x_centre", "y_centre", "nodata_fraction", "cloud_fraction"]


def _save_first_rows(buffer: np.ndarray, n: int, path: Path, chunk: int = 256) -> None:
    """Save ``buffer[:n]`` as .npy without holding it all in memory."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=buffer.dtype, shape=(n, *buffer.shape[1:]))
    for start in range(0, n, chunk):
        out[start : start + chunk] = buffer[start : min(start + chunk, n)]
    out.flush()
    del out


def _build_key(points: gpd.GeoDataFrame, source: ImagerySource, rasterizer: OsmRasterizer | None, patch_size: int, qc: PatchConfig) -> str:
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(points[["patch_id", "label"]], index=False).to_numpy().tobytes())
    h.update(np.round(points.get_coordinates().to_numpy(), 7).tobytes())
    quality = [qc.resolution_m, qc.max_nodata_fraction, qc.max_cloud_fraction, qc.cloud_blue_reflectance]  # not sizes: adding one must not rebuild the others
    h.update(json.dumps([source.fingerprint, rasterizer.fingerprint if rasterizer else None, patch_size, quality]).encode())
    return h.hexdigest()[:16]


def read_dataset(path: str | Path, mmap: bool = True) -> Dataset:
    """Read and validate a dataset directory.

    Parameters
    ----------
    path
        Directory with ``patches.npy``, ``index.csv`` and ``dataset.json``.
    mmap
        Memory-map the patches instead of loading them.

    Raises
    ------
    InputFileError
        A file is missing, unreadable, or disagrees with the others (count, size, channels).
    """
    path = Path(path)
    meta_path, index_path, patches_path = path / "dataset.json", path / "index.csv", path / "patches.npy"
    if not path.is_dir():
        raise InputFileError(path, "is not a directory", "point at a dataset directory (patches.npy, index.csv, dataset.json) written by notebook 02 / make patches")
    for f in (meta_path, index_path, patches_path):
        if not f.is_file():
            raise InputFileError(f, "missing from the dataset directory", "rebuild the dataset (notebook 02 / make patches) or point at a complete one")
    meta = read_json_object(meta_path, "rebuild the dataset, or fix dataset.json: an object with channels, scale and patch_size")
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise InputFileError(meta_path, f"lacks key(s) {missing}", "add them: channels (list of names), scale (e.g. 10000), patch_size (pixels)")
    if not isinstance(meta["channels"], list) or not all(isinstance(c, str) for c in meta["channels"]) or not meta["channels"]:
        raise InputFileError(meta_path, f"channels must be a list of channel names, not {meta['channels']!r}", 'give e.g. "channels": ["B2", "B3", "B4", "B8", "B11", "B12"]')
    if isinstance(meta["scale"], bool) or not isinstance(meta["scale"], (int, float)) or not meta["scale"] > 0:
        raise InputFileError(meta_path, f"scale must be a positive number, not {meta['scale']!r}", "give the stored values per unit reflectance, e.g. 10000")
    if isinstance(meta["patch_size"], bool) or not isinstance(meta["patch_size"], int) or meta["patch_size"] < 1:
        raise InputFileError(meta_path, f"patch_size must be a positive whole number of pixels, not {meta['patch_size']!r}", "give e.g. 48")
    unknown = [c for c in meta["channels"] if c not in S2_BANDS and c not in OSM_CHANNELS]
    if unknown:
        raise InputFileError(meta_path, f"unknown channel name(s) {unknown}", f"use Sentinel-2 band names ({', '.join(S2_BANDS)}) or OSM channels ({', '.join(OSM_CHANNELS)})")
    try:
        patches = np.load(patches_path, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError):
        raise InputFileError(patches_path, "is not a readable .npy array of numbers (empty, truncated, or holding Python objects)", "rebuild the dataset") from None
    if not isinstance(patches, np.ndarray) or not np.issubdtype(patches.dtype, np.number):
        raise InputFileError(patches_path, "does not hold a numeric array", "rebuild the dataset")
    try:
        index = pd.read_csv(index_path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputFileError(index_path, f"is not a readable CSV ({str(exc).splitlines()[0]})", "rebuild the dataset, or restore index.csv") from None
    missing_cols = [c for c in INDEX_COLUMNS if c not in index.columns]
    if missing_cols:
        raise InputFileError(index_path, f"lacks column(s) {missing_cols}", f"the index needs at least {', '.join(INDEX_COLUMNS)}")
    size = meta["patch_size"]
    expected = f"(N, {size}, {size}, {len(meta['channels'])}) from dataset.json"
    if patches.ndim != 4 or patches.shape[1:] != (size, size, len(meta["channels"])):
        raise InputFileError(patches_path, f"has shape {patches.shape}, expected {expected}", "rebuild the dataset, or fix patch_size/channels in dataset.json")
    if len(index) != patches.shape[0]:
        raise InputFileError(index_path, f"has {len(index)} rows but patches.npy holds {patches.shape[0]} patches", "the files come from different runs: rebuild the dataset")
    if index["patch_id"].duplicated().any():
        raise InputFileError(index_path, f"duplicate patch_id(s) {index.loc[index['patch_id'].duplicated(), 'patch_id'].tolist()[:5]}", "give every patch its own id")
    if not index["label"].isin([0, 1]).all():
        raise InputFileError(index_path, f"labels must be 0 or 1, found {sorted(index['label'].unique().tolist())}", "fix the label column")
    if not np.isfinite(index[["lon", "lat"]].to_numpy(float)).all() or not index["lon"].between(-180, 180).all() or not index["lat"].between(-90, 90).all():
        bad = index.loc[~(index["lon"].between(-180, 180) & index["lat"].between(-90, 90)), "patch_id"].tolist()
        raise InputFileError(index_path, f"{len(bad)} row(s) with missing or out-of-range lon/lat, e.g. patch_id {bad[:5]}",
                             "give WGS 84 longitude (-180 to 180) and latitude (-90 to 90) for every patch")
    if np.issubdtype(patches.dtype, np.floating):
        # chunked, so a memory-mapped dataset is never loaded whole
        finite = np.concatenate([np.isfinite(patches[i:i + 256]).all(axis=(1, 2, 3)) for i in range(0, len(patches), 256)]) if len(patches) else np.ones(0, bool)
        if not finite.all():
            bad = index.loc[~finite, "patch_id"].tolist()
            raise InputFileError(patches_path, f"{len(bad)} patch(es) hold NaN or infinite values, e.g. patch_id {bad[:5]}",
                                 "rebuild those patches, or remove their rows from patches.npy and index.csv")
    return Dataset(path, patches, index, meta)


def write_subset(dataset: Dataset, rows: np.ndarray, directory: Path, index: pd.DataFrame | None = None, meta: dict | None = None) -> None:
    """Write the patches ``rows`` of ``dataset`` into ``directory`` (made by the caller, e.g. inside
    :func:`asgm.atomic.atomic_path`) as a dataset directory: ``patches.npy`` copied in chunks (a
    memory-mapped dataset is never loaded whole), ``index.csv`` (``index``, by default the rows' own)
    and ``dataset.json`` (the dataset's, with ``meta`` added and the counts of the subset; without
    the build key, which names the built contents, not these)."""
    rows = np.asarray(rows)
    index = dataset.index.iloc[rows].reset_index(drop=True) if index is None else index
    stored = np.lib.format.open_memmap(directory / "patches.npy", mode="w+", dtype=dataset.patches.dtype, shape=(len(rows), *dataset.patches.shape[1:]))
    for start in range(0, len(rows), 256):
        stored[start:start + 256] = dataset.patches[rows[start:start + 256]]
    stored.flush()
    del stored
    index.to_csv(directory / "index.csv", index=False, float_format="%.7f")
    meta = {k: v for k, v in dataset.meta.items() if k != "build_key"} | (meta or {}) | {
        "n_patches": len(rows), "n_positive": int(index["label"].sum())}
    (directory / "dataset.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")


def summarize_datasets(datasets: dict[int, Dataset]) -> pd.DataFrame:
    """One row per dataset: patches kept (mines / non-mines) and points dropped, by reason."""
    rows = []
    for size, ds in datasets.items():
        row = {"patch_size": size, "patches": len(ds), "mines": int(ds.index["label"].sum()),
               "non_mines": int((ds.index["label"] == 0).sum()), "directory": ds.path.name}
        row.update({f"dropped: {reason}": n for reason, n in ds.meta.get("dropped", {}).items()})
        rows.append(row)
    return pd.DataFrame(rows).set_index("patch_size").fillna(0)
