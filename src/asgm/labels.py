"""Labels you can trust: a dataset's labels audited against a reference map of mining footprints,
and label errors found without one (confident learning).

``python -m asgm.labels --input_directory DATASET --reference PATH --output_directory OUT``
audits every patch of a dataset directory against the reference and writes ``OUT``, an audited
dataset directory in the usual format (conflicting patches dropped or relabelled, the original
label kept in ``label_original``) holding also ``label_audit.csv`` (every patch with its figures and
flag) and ``label_audit.png`` (the conflicts beside agreeing patches).

The reference (``--reference``) is a folder of polygon files, one per year like Earth Genome's
yearly mining footprints (``mining_YYYYQQ_simplified.geojson``: the area first mapped as mining in
that year), or one polygon file. Every feature needs a ``year`` property (``2021``, or Earth
Genome's ``202100``; ``202502`` is 2025 Q2) or a ``date`` (``YYYY-MM-DD``). Mining counts for a
patch when its period starts before the end of the patch's image window, so mining first mapped
the year after the image is no conflict.

For each patch, in the patch's own UTM zone:

- ``cover``: the share of the patch mapped as mining by the end of its image window;
- ``first_year``: the first year the reference maps mining in the patch (any year);
- ``distance_m``: the distance from the patch to the nearest reference mining of any year (0 when
  it touches; empty when none lies within :data:`SEARCH_M`); ``distance_by_date_m`` the same for
  mining mapped by the end of the image window.

A non-mine patch conflicts when ``cover`` exceeds ``labels.negative_max_cover``
(``non_mine_in_reference``); a mine patch when ``distance_m`` exceeds ``labels.mine_max_distance_m``
(``mine_not_in_reference``) and, with ``labels.mine_mapped_later``, also when only
``distance_by_date_m`` does (``mine_mapped_after_image``: the reference maps the mining only after
the image, which may show little or none of it).
"""

from __future__ import annotations

import sys

from asgm import cli

if __name__ == "__main__":  # --help and bad flags answer before the geospatial libraries load
    cli.check_early(cli.labels_arguments)

# The imports below take a second or two, after the command line was checked (E402 on purpose).
import dataclasses
import hashlib
import json
import re
from datetime import date
from pathlib import Path

import geopandas as gpd
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS
from shapely.geometry import box

from asgm.atomic import atomic_path, check_target
from asgm.config import LabelsConfig, validate_labels
from asgm.errors import AsgmError, InputFileError
from asgm.patches import Dataset, read_dataset, write_subset
from asgm.plots import plot_label_audit, save_figure
from asgm.progress import progress_bar
from asgm.regions import WGS84, patch_grids, read_geojson, utm_crs

#: Vector files of a reference folder.
REFERENCE_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp")
#: Farthest reference mining looked for around a patch (m); farther is reported as none.
SEARCH_M = 5000.0
#: Values of ``label_audit.csv``'s ``conflict`` column.
NON_MINE_IN_REFERENCE, MINE_NOT_IN_REFERENCE = "non_mine_in_reference", "mine_not_in_reference"
#: With ``labels.mine_mapped_later``: a mine patch near which the reference maps mining only after its image.
MINE_MAPPED_AFTER_IMAGE = "mine_mapped_after_image"
CONFLICTS = (NON_MINE_IN_REFERENCE, MINE_NOT_IN_REFERENCE, MINE_MAPPED_AFTER_IMAGE)
AUDIT_FILE, GALLERY_FILE = "label_audit.csv", "label_audit.png"
#: Version of the audited directory's contents; bump it when they change, so older ones are redone.
AUDIT_FORMAT = 1


def _period(value, path: Path) -> tuple[int, pd.Timestamp]:
    """(calendar year, start of the period) of a feature's ``year`` or ``date`` value."""
    text = str(value).strip()
    if re.fullmatch(r"\d{4}(\.0)?", text):
        year = int(float(text))
        return year, pd.Timestamp(year, 1, 1)
    if re.fullmatch(r"\d{6}(\.0)?", text):  # Earth Genome's YYYYQQ: 00 the whole year, 01-04 a quarter
        year, quarter = divmod(int(float(text)), 100)
        if quarter <= 4:
            return year, pd.Timestamp(year, 3 * max(quarter, 1) - 2, 1)
    try:
        day = pd.Timestamp(date.fromisoformat(text[:10]))
    except ValueError:
        raise InputFileError(path, f"year or date {value!r} is neither a year (2021, or Earth Genome's 202100 / 202502) nor a date (YYYY-MM-DD)",
                             "give every feature a year or date property in one of these forms") from None
    return day.year, day


def reference_files(path: str | Path) -> list[Path]:
    """The polygon files of a reference: those of a folder, or the one file.

    Raises
    ------
    InputFileError
        The path does not exist, or a folder holds no polygon file.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "does not exist (expected the reference mining footprints: a folder of yearly polygon files or one polygon file)",
                             "give the folder of Earth Genome's mining_YYYYQQ_simplified.geojson files, or a polygon file with a year or date property")
    files = sorted(f for f in path.iterdir() if f.suffix.lower() in REFERENCE_SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise InputFileError(path, f"holds no polygon file ({', '.join(REFERENCE_SUFFIXES)})", "point at the folder of the yearly footprint files, or at one file")
    return files


def read_reference(path: str | Path) -> gpd.GeoDataFrame:
    """Reference mining footprints: a folder of polygon files, or one polygon file.

    Returns
    -------
    GeoDataFrame
        ``geometry`` (WGS 84, repaired with ``make_valid``), ``year`` (calendar year), ``start``
        (when the feature's period begins) and ``file`` (the file's name).

    Raises
    ------
    InputFileError
        A path that does not exist, a folder without polygon files, an empty or unreadable file, a
        feature without a year or date, or coordinates that are not longitude/latitude.
    """
    files = reference_files(path)
    frames = []
    for file in progress_bar(files, desc="reference", unit="file", disable=len(files) < 3, leave=False):
        gdf = read_geojson(file, ("Polygon", "MultiPolygon"), "reference mining footprints (polygons with a year or date)")
        column = next((c for c in gdf.columns if c.lower() in ("year", "date")), None)
        if column is None:
            raise InputFileError(file, f"has no year or date property (properties: {[c for c in gdf.columns if c != 'geometry']})",
                                 "give every feature a year (2021, or Earth Genome's 202100) or a date (YYYY-MM-DD)")
        if gdf[column].isna().any():
            rows = list(gdf.index[gdf[column].isna()][:5])
            raise InputFileError(file, f"features {rows} have no {column}", f"give every feature a {column}, or remove those features")
        periods = {value: _period(value, file) for value in gdf[column].unique()}
        gdf = gpd.GeoDataFrame({"year": [periods[v][0] for v in gdf[column]], "start": [periods[v][1] for v in gdf[column]], "file": file.name},
                               geometry=gdf.geometry.make_valid(), crs=WGS84)
        frames.append(gdf)
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=WGS84)


def reference_fingerprint(path: str | Path) -> str:
    """SHA-256 over the reference's files (names and contents), so an audit is redone when it changes."""
    digest = hashlib.sha256()
    for file in reference_files(path):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def image_window_ends(dataset: Dataset, date_end: str | None = None) -> pd.Series:
    """The end of each patch's image window: ``date_end`` if given, else the index's ``date_end``
    column, else ``dataset.json``'s ``imagery_window``.

    Raises
    ------
    AsgmError
        The dataset records no window and none is given.
    """
    index = dataset.index
    if date_end is None and "date_end" in index.columns:
        ends = pd.to_datetime(index["date_end"], errors="coerce")
        if ends.isna().any():
            bad = index.loc[ends.isna(), "patch_id"].tolist()[:5]
            raise InputFileError(dataset.path / "index.csv", f"date_end is missing or not a date for patch_id {bad}", "give YYYY-MM-DD for every patch")
        return ends.reset_index(drop=True)
    window = dataset.meta.get("imagery_window")
    if date_end is None and isinstance(window, list) and len(window) == 2 and window[1]:
        date_end = window[1]
    if date_end is None:
        raise AsgmError(f"{dataset.path}: the dataset does not record its images' date window (no date_end column in index.csv, no imagery_window "
                        "in dataset.json), so the audit cannot tell mining mapped before the image from mining mapped after it. "
                        "How to fix: give the end of the window, e.g. --image_date_end 2022-01-01 (labels.image_date_end)")
    return pd.Series(pd.Timestamp(date_end), index=range(len(index)))


def patch_footprints(dataset: Dataset) -> tuple[pd.Series, pd.Series]:
    """Each patch's square and the UTM CRS it is in (one CRS per patch): the grid the dataset
    recorded (``crs, x_centre, y_centre``), else a square centred on the point in its own zone."""
    index, size = dataset.index, int(dataset.meta["patch_size"])
    resolution = float(dataset.meta.get("resolution_m", 10.0))
    if {"crs", "x_centre", "y_centre"} <= set(index.columns):
        grids = patch_grids(index, size, resolution)
        return pd.Series([g.footprint for g in grids]), pd.Series([g.crs for g in grids])
    half = size * resolution / 2
    crss = pd.Series([utm_crs(lon, lat) for lon, lat in zip(index["lon"], index["lat"])])
    squares = pd.Series([None] * len(index), dtype=object)
    for _, rows in crss.groupby(crss.map(CRS.to_string)):  # one projection per UTM zone
        points = gpd.GeoSeries(gpd.points_from_xy(index["lon"].iloc[rows.index], index["lat"].iloc[rows.index]), crs=WGS84).to_crs(rows.iloc[0])
        squares[rows.index] = [box(x - half, y - half, x + half, y + half) for x, y in zip(points.x, points.y)]
    return squares, crss


def audit_labels(dataset: Dataset, reference: gpd.GeoDataFrame, config: LabelsConfig | None = None, progress: bool = True) -> pd.DataFrame:
    """Every patch against the reference: ``patch_id, label, category (if any), date_end, cover,
    cover_any_year, first_year, distance_m, distance_by_date_m, conflict`` (see the module's docstring)."""
    config = config or LabelsConfig()
    index = dataset.index.reset_index(drop=True)
    ends = image_window_ends(dataset, config.image_date_end)
    squares, crss = patch_footprints(dataset)
    n = len(index)
    cover, cover_any = np.zeros(n), np.zeros(n)
    first_year, distance, distance_by_date = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    tree = reference.sindex
    bar = progress_bar(total=n, desc="label audit", unit="patch", disable=not progress)
    for crs_text, rows in pd.Series(range(n)).groupby(crss.map(lambda c: CRS(c).to_string())):
        rows = rows.to_numpy()
        crs = CRS(crs_text)
        local = gpd.GeoSeries(squares.iloc[rows].to_numpy(), crs=crs)
        near = np.unique(tree.query(local.buffer(SEARCH_M).to_crs(WGS84).to_numpy(), predicate="intersects")[1])
        ref = reference.iloc[near].to_crs(crs).reset_index(drop=True)
        for i, row in enumerate(rows):
            square = local.iloc[i]
            close = ref.iloc[ref.sindex.query(square, predicate="dwithin", distance=SEARCH_M)]
            if close.empty:
                bar.update(1)
                continue
            gap = close.distance(square).to_numpy()
            counted = (close["start"] < ends.iloc[row]).to_numpy()
            distance[row] = gap.min()
            distance_by_date[row] = gap[counted].min() if counted.any() else np.nan
            touching = gap == 0
            if touching.any():
                cover_any[row] = shapely.union_all(close.geometry[touching].to_numpy()).intersection(square).area / square.area
                first_year[row] = close["year"][touching].min()
            if (touching & counted).any():
                cover[row] = shapely.union_all(close.geometry[touching & counted].to_numpy()).intersection(square).area / square.area
            bar.update(1)
    bar.close()
    label = index["label"].to_numpy().astype(int)
    tolerance = config.mine_max_distance_m
    conflict = np.select([(label == 0) & (cover > config.negative_max_cover),
                          (label == 1) & ~(distance <= tolerance),
                          (label == 1) & ~(distance_by_date <= tolerance) & config.mine_mapped_later],
                         [NON_MINE_IN_REFERENCE, MINE_NOT_IN_REFERENCE, MINE_MAPPED_AFTER_IMAGE], "")
    audit = pd.DataFrame({"patch_id": index["patch_id"], "label": label})
    if "category" in index.columns:
        audit["category"] = index["category"]
    return audit.assign(date_end=ends.dt.strftime("%Y-%m-%d").to_numpy(), cover=cover.round(4), cover_any_year=cover_any.round(4),
                        first_year=pd.array(first_year, dtype="Int64"), distance_m=distance.round(1),
                        distance_by_date_m=distance_by_date.round(1), conflict=conflict)


def agreed(audit: pd.DataFrame) -> pd.Series:
    """Whether each patch's label agrees with the reference (no conflict), by ``patch_id``: the
    trusted labels that models are judged on beside all labels."""
    return audit.set_index("patch_id")["conflict"].fillna("").eq("")


def confident_learning_flags(labels: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """Patches whose label confident learning (Northcutt et al. 2021, ``cleanlab``) finds unlikely,
    from out-of-sample probabilities of the mine class (e.g. the out-of-fold predictions of
    :func:`asgm.crossval.cross_validate`): a boolean mask.

    Raises
    ------
    AsgmError
        Labels and probabilities disagree in length, hold one class only, or probabilities are not in [0, 1].
    """
    from cleanlab.filter import find_label_issues

    labels, probability = np.asarray(labels).astype(int), np.asarray(probability, float)
    if labels.shape != probability.shape or labels.ndim != 1:
        raise AsgmError(f"confident learning needs one probability per label: {labels.shape} labels, {probability.shape} probabilities")
    if set(np.unique(labels)) != {0, 1}:
        raise AsgmError(f"confident learning needs mines and non-mines; the labels hold {sorted(set(labels.tolist()))} only")
    if not np.isfinite(probability).all() or probability.min() < 0 or probability.max() > 1:
        raise AsgmError("confident learning needs probabilities in [0, 1]; some are outside or not numbers")
    return find_label_issues(labels, np.column_stack([1 - probability, probability]), n_jobs=1)


def apply_audit(dataset: Dataset, audit: pd.DataFrame, action: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Rows kept and the audited index: conflicts dropped (``drop``) or given the reference's label
    (``relabel``); ``label_original`` and ``label_conflict`` columns added."""
    conflict = audit["conflict"].fillna("").to_numpy()
    index = dataset.index.reset_index(drop=True).assign(label_original=dataset.index["label"].to_numpy(), label_conflict=conflict)
    if action == "drop":
        keep = np.flatnonzero(conflict == "")
        return keep, index.iloc[keep].reset_index(drop=True)
    return np.arange(len(index)), index.assign(label=np.where(conflict != "", 1 - index["label"], index["label"]))


def audit_dataset(input_directory: str | Path, reference: str | Path, output_directory: str | Path, config: LabelsConfig | None = None,
                  progress: bool = True) -> Path:
    """Audit a dataset directory against a reference and write the audited dataset directory.

    A rerun with the same dataset, reference and settings finds the finished directory and does
    nothing; a directory that is not a dataset directory is never replaced.

    Returns
    -------
    pathlib.Path
        ``output_directory``, holding ``patches.npy``, ``index.csv``, ``dataset.json``,
        ``label_audit.csv`` and ``label_audit.png``.
    """
    config = config or LabelsConfig()
    validate_labels(config, None)
    out = Path(output_directory)
    dataset = read_dataset(input_directory)
    if out.resolve().is_relative_to(dataset.path.resolve()):
        raise AsgmError(f"--output_directory {out} is {'the input dataset' if out.resolve() == dataset.path.resolve() else 'inside the input dataset'}: "
                        "the audit writes a new dataset directory and never changes its input. "
                        "How to fix: give another directory, e.g. " + str(dataset.path.with_name(dataset.path.name + "_audited")))
    check_target(out, directory=True, marker="dataset.json", what="dataset directory")
    settings = dataclasses.asdict(config) | {"reference": None}
    key = hashlib.sha256(json.dumps([dataset.fingerprint, reference_fingerprint(reference), settings, AUDIT_FORMAT]).encode()).hexdigest()[:16]
    if (out / "dataset.json").is_file() and (out / AUDIT_FILE).is_file():
        if read_dataset(out).meta.get("label_audit", {}).get("key") == key:
            return out
    footprints = read_reference(reference)
    audit = audit_labels(dataset, footprints, config, progress)
    keep, index = apply_audit(dataset, audit, config.action)
    counts = audit["conflict"].value_counts().drop("", errors="ignore").to_dict()
    audit_meta = {"key": key, "source": str(dataset.path), "reference": str(reference), **settings,
                  "conflicts": {kind: int(counts.get(kind, 0)) for kind in CONFLICTS if kind != MINE_MAPPED_AFTER_IMAGE or config.mine_mapped_later},
                  "patches_in": len(dataset), "patches_out": len(keep)}
    shown = gallery_patches(audit)
    outlines = reference_outlines(dataset, footprints, shown, config.image_date_end)
    with atomic_path(out, marker="dataset.json", what="dataset directory") as tmp:
        tmp.mkdir()
        write_subset(dataset, keep, tmp, index, {"label_audit": audit_meta})
        audit.to_csv(tmp / AUDIT_FILE, index=False)
        fig = plot_label_audit(dataset, audit, shown, outlines)
        save_figure(fig, tmp / GALLERY_FILE)
        plt.close(fig)
    return out


def gallery_patches(audit: pd.DataFrame, per_row: int = 6) -> dict[str, list[int]]:
    """Rows of the audit to show, per kind: the non-mines most covered by reference mining, the
    mines farthest from any, and agreeing mines and non-mines drawn at random (fixed seed)."""
    conflict = audit["conflict"].fillna("")
    rng = np.random.default_rng(0)
    farthest = audit["distance_m"].fillna(np.inf)
    kinds = {
        NON_MINE_IN_REFERENCE: audit.index[conflict == NON_MINE_IN_REFERENCE][np.argsort(-audit["cover"][conflict == NON_MINE_IN_REFERENCE].to_numpy(), kind="stable")],
        MINE_NOT_IN_REFERENCE: audit.index[conflict == MINE_NOT_IN_REFERENCE][np.argsort(-farthest[conflict == MINE_NOT_IN_REFERENCE].to_numpy(), kind="stable")],
        MINE_MAPPED_AFTER_IMAGE: rng.permutation(audit.index[conflict == MINE_MAPPED_AFTER_IMAGE]),
        "agreeing mines": rng.permutation(audit.index[(conflict == "") & (audit["label"] == 1)]),
        "agreeing non-mines": rng.permutation(audit.index[(conflict == "") & (audit["label"] == 0)]),
    }
    return {kind: [int(i) for i in rows[:per_row]] for kind, rows in kinds.items() if len(rows) or kind != MINE_MAPPED_AFTER_IMAGE}


def reference_outlines(dataset: Dataset, reference: gpd.GeoDataFrame, shown: dict[str, list[int]], date_end: str | None = None) -> dict[int, list]:
    """Reference mining mapped by the image's date inside each shown patch, in the patch's pixel
    coordinates (column, row from the top left), as shapely geometries."""
    rows = sorted({r for kind in shown.values() for r in kind})
    if not rows:
        return {}
    squares, crss = patch_footprints(dataset)
    ends = image_window_ends(dataset, date_end)
    resolution = float(dataset.meta.get("resolution_m", 10.0))
    outlines = {}
    for row in rows:
        square = squares.iloc[row]
        wgs = gpd.GeoSeries([square], crs=crss.iloc[row]).to_crs(WGS84).iloc[0]
        near = reference.iloc[reference.sindex.query(wgs, predicate="intersects")]
        near = near[near["start"] < ends.iloc[row]]
        if near.empty:
            outlines[row] = []
            continue
        left, _, _, top = square.bounds
        local = shapely.union_all(near.to_crs(crss.iloc[row]).geometry.to_numpy()).intersection(square)
        pixels = shapely.transform(local, lambda xy: np.column_stack([(xy[:, 0] - left) / resolution, (top - xy[:, 1]) / resolution]))
        outlines[row] = [g for g in getattr(pixels, "geoms", [pixels]) if g.geom_type == "Polygon" and not g.is_empty]
    return outlines


def audit_summary(audit: pd.DataFrame) -> pd.DataFrame:
    """Patches, conflicts and their share per label (and category, when the audit has one)."""
    keys = ["label"] + (["category"] if "category" in audit.columns else [])
    grouped = audit.assign(conflicting=audit["conflict"].fillna("").ne("")).groupby(keys)
    return pd.DataFrame({"patches": grouped.size(), "conflicts": grouped["conflicting"].sum(),
                         "share": grouped["conflicting"].mean().round(3)})


def main(argv: list[str] | None = None) -> int:
    try:
        args, config = cli.labels_arguments(argv)
        out = audit_dataset(args.input_directory, args.reference, args.output_directory, config)
    except AsgmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    audit = pd.read_csv(out / AUDIT_FILE, keep_default_na=False)
    meta = read_dataset(out).meta["label_audit"]
    n0, n1 = int((audit["label"] == 0).sum()), int((audit["label"] == 1).sum())
    c = meta["conflicts"]
    later = f", {c[MINE_MAPPED_AFTER_IMAGE]} more only after the image's date" if config.mine_mapped_later else ""
    print(f"{out}: {c[NON_MINE_IN_REFERENCE]} of {n0} non-mines lie on reference mining (> {config.negative_max_cover:.0%} of the patch by the image's date), "
          f"{c[MINE_NOT_IN_REFERENCE]} of {n1} mines have no reference mining within {config.mine_max_distance_m:g} m in any year{later}; "
          f"{config.action}: {meta['patches_out']} of {meta['patches_in']} patches kept" + (f", {sum(c.values())} relabelled" if config.action == "relabel" else "")
          + f". Figures per patch: {out / AUDIT_FILE}; gallery: {out / GALLERY_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
