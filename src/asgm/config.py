"""Typed, validated profiles. The only module that reads YAML.

A profile is ``configs/<name>.yaml``: one section per pipeline stage. Papermill injects the same
sections into each notebook's parameters cell (``papermill -f configs/<name>.yaml``); the notebook
passes them to :func:`load_profile`, so a value given with ``-p`` overrides the file.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from asgm.atomic import plain_name
from asgm.errors import AsgmError, ConfigError, InputFileError

#: Sentinel-2 L1C bands in Earth Genome's order (B8A before B8).
S2_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8A", "B8", "B9", "B11", "B12")
#: OSM channels, in stacking order.
OSM_CHANNELS = ("highway", "landuse", "building", "aeroway", "waterway")

IMAGERY_SOURCES = ("demo", "local", "gee", "stac")
#: Names of ``training.augment`` (see :mod:`asgm.augment`) and ``training.calibration`` (:mod:`asgm.calibrate`).
AUGMENTATIONS = ("dihedral", "rotate", "translate", "zoom", "gain", "contrast", "noise")
CALIBRATIONS = ("none", "platt", "isotonic")
#: The rules that may choose a model's threshold (``training.operating_point``).
OPERATING_RULES = ("balanced", "f1")
OSM_SOURCES = ("file", "pbf", "overpass")
#: Environment variable that replaces the profile's ``imagery.source`` (``make all IMAGERY=stac``).
IMAGERY_SOURCE_ENV = "ASGM_IMAGERY_SOURCE"


@dataclass(frozen=True)
class Download:
    """A file fetched at run time, pinned by its SHA-256 (see :mod:`asgm.downloads`)."""

    #: Where the file is kept (relative to the project).
    path: Path
    #: Where it is downloaded from.
    url: str
    #: Its SHA-256 (64 hex digits): a file with another checksum is refused.
    sha256: str


@dataclass(frozen=True)
class SyntheticConfig:
    """Settings of the generated demo region (see :mod:`asgm.imagery.demo`)."""

    #: Directory the demo region is written to.
    output_dir: Path
    #: Seed of the layout, the rendering and the sampling points (same seed, same files).
    seed: int = 42
    #: Side of the square region (km).
    size_km: float = 10.0
    #: Longitude of the region's centre (WGS 84).
    centre_lon: float = -61.83
    #: Latitude of the region's centre (WGS 84).
    centre_lat: float = 7.33
    #: Mining sites (one mine point each, before the planted label errors).
    n_mine_sites: int = 60
    #: Mine sites per cluster (sites of a cluster lie within a few hundred metres along one river,
    #: so a cluster usually ends up in one spatial block).
    mines_per_cluster: int = 10
    #: Curated non-mine points (hard negatives included) besides the planted label errors.
    n_curated_negatives: int = 90


@dataclass(frozen=True)
class RegionConfig:
    """Boundary and labelled sampling points (GeoJSON, WGS 84)."""

    #: The study area's outline (polygons).
    boundary: Path
    #: Mine points (label 1).
    positives: Path
    #: Curated non-mine points (label 0), optionally with a ``kind`` property.
    negatives: Path
    #: A file of random negatives (as in the thesis); when absent they are drawn by ``sampling``.
    random_negatives: Path | None = None
    #: What to do with sampling points outside the boundary: ``error`` (default) or ``drop`` them
    #: with a warning naming each (the thesis's Bolívar points include some just over the border).
    points_outside_boundary: str = "error"
    #: Files fetched when missing (``path: {url, sha256}``), e.g. the public reference data.
    downloads: tuple[Download, ...] = ()


@dataclass(frozen=True)
class ImageryConfig:
    """Where the Sentinel-2 pixels come from: ``demo`` (synthetic), ``local`` (a raster file),
    ``gee`` (Earth Engine, L1C) or ``stac`` (a STAC API such as Earth Search, L2A, no account)."""

    #: ``demo``, ``local``, ``gee`` or ``stac``.
    source: str
    #: Sentinel-2 bands to read, in this order (any subset of ``B1 … B12`` in Earth Genome's order).
    bands: tuple[str, ...] = S2_BANDS
    #: The GeoTIFF/COG/VRT to read (for ``demo``: where the synthetic composite is written; for
    #: ``gee``/``stac``: where a region composite is exported, optional).
    path: Path | None = None
    #: Names of the raster's bands in file order, for rasters without band descriptions.
    raster_bands: tuple[str, ...] | None = None
    #: Raster values per unit reflectance (Sentinel-2 digital numbers: 10000).
    scale: float = 10000.0
    #: Composite window (``gee``/``stac``), ISO dates; the end is exclusive. Recorded in each
    #: dataset, where the label audit compares it with the reference's dates (for ``demo`` and
    #: ``local`` only that).
    date_start: str | None = None
    #: End of the window (exclusive).
    date_end: str | None = None
    #: ``gee``: Cloud Score+ ``cs_cdf`` a pixel needs to be kept (0.75 for training).
    clear_threshold: float = 0.75
    #: ``gee``: Google Cloud project with the Earth Engine API enabled; null: $EE_PROJECT or
    #: $GOOGLE_CLOUD_PROJECT.
    project: str | None = None
    #: ``stac``: the STAC API (or a static catalogue's catalog.json) and its Sentinel-2 L2A collection.
    stac_url: str = "https://earth-search.aws.element84.com/v1"
    #: ``stac``: the collection to search.
    collection: str = "sentinel-2-c1-l2a"
    #: ``stac``: scenes cloudier than this (``eo:cloud_cover``, %) are not searched.
    max_cloud_cover: float = 80.0
    #: ``gee``/``stac``: concurrent requests.
    workers: int = 8


@dataclass(frozen=True)
class OsmConfig:
    #: ``file`` (an .osm XML file), ``pbf`` (an .osm.pbf extract, QuackOSM) or ``overpass``.
    source: str
    #: OSM keys burned as 0/1 channels (any of highway, landuse, building, aeroway, waterway; [] for none).
    channels: tuple[str, ...] = OSM_CHANNELS
    #: Local ``.osm`` XML file (``source: file``) or ``.osm.pbf`` extract (``source: pbf``).
    path: Path | None = None


@dataclass(frozen=True)
class SamplingConfig:
    #: How many random negatives to draw inside the boundary (when no file is given).
    random_negatives: int = 0
    #: Minimum distance of a random negative to every positive and to each other; default: the
    #: diagonal of the first patch size, so a random negative's patch never overlaps a mine's.
    min_distance_m: float | None = None
    #: Seed of the random negatives.
    seed: int = 0


@dataclass(frozen=True)
class PatchConfig:
    #: Patch sides in pixels; one dataset directory per size (the first one trains the models).
    sizes: tuple[int, ...] = (48,)
    #: Pixel size in metres.
    resolution_m: float = 10.0
    #: Patches with more nodata pixels than this fraction are dropped.
    max_nodata_fraction: float = 0.05
    #: Patches with more cloudy pixels than this fraction are dropped.
    max_cloud_fraction: float = 0.2
    #: A pixel is cloudy when its blue (B2) reflectance is at least this (clouds are bright in blue,
    #: bare soil and sand are not). Ignored when B2 is not among the bands.
    cloud_blue_reflectance: float = 0.2
    #: Patches read per step (memory is bounded by chunk_size x patch size).
    chunk_size: int = 64


@dataclass(frozen=True)
class TrainingConfig:
    """How a model is trained and evaluated (see :mod:`asgm.train`). The defaults are the project's
    recommended recipe, measured on real Sentinel-2 patches (``benchmarks/README.md``)."""

    #: A key of ``asgm.models.ARCHITECTURES``: ``bn_cnn`` (batch-normalised CNN, the default),
    #: ``scan_cnn`` (the one the region scan runs fully convolutionally) or ``thesis_cnn`` (the
    #: thesis's CNN, for the thesis's own comparison).
    architecture: str = "bn_cnn"
    #: Channels the model sees, in order; null: all of the dataset's.
    channels: tuple[str, ...] | None = None
    #: Maximum epochs (early stopping usually ends training sooner).
    epochs: int = 60
    #: Patches per training step.
    batch_size: int = 32
    #: Adam's initial learning rate.
    learning_rate: float = 1e-3
    #: Epochs without a better validation PR-AUC before training stops (best weights are kept).
    patience: int = 12
    #: Early stopping ignores this share of the ``epochs`` (0.25 of 60: the first 15): the weights
    #: kept are the best of the later epochs, and training runs at least that long plus
    #: ``patience``. On about a hundred noisy validation patches the PR-AUC of the first epochs can
    #: peak by chance: on the real benchmark six of 54 single models were kept from epoch 1–6 and
    #: ranked their unseen region 0.13 ROC-AUC worse, two of them inverted (benchmarks/README.md).
    #: Models whose best epoch comes later are unchanged; 0: from the first epoch (before 2026-12-07).
    early_stopping_from: float = 0.25
    #: Epochs without a better validation PR-AUC before the learning rate is multiplied by
    #: ``lr_factor`` (Earth Genome: 20 epochs, 0.33); null: a constant learning rate.
    lr_patience: int | None = 6
    #: Factor the learning rate is multiplied by (see ``lr_patience``).
    lr_factor: float = 0.33
    #: Weight each class by n / (2 n_c) in the loss.
    class_weights: bool = False
    #: Named random transforms of training patches (``asgm.augment.TRANSFORMS``): ``dihedral``
    #: (90° rotations and flips), ``rotate``, ``translate``, ``zoom`` (reflected borders; OSM
    #: channels resampled by nearest neighbour), ``gain`` (each band scaled by up to ±25 %, as
    #: atmosphere, season and sensor shift a region's reflectance), ``contrast``, ``noise``; [] for none.
    #: The default adds ``gain`` to the rotations and flips: it lifted every held-out region's
    #: ROC-AUC on the real benchmark, and leaving it out cost 0.031 [0.006, 0.054] on the labels that
    #: agree with Earth Genome's map, over three seeds (benchmarks/README.md).
    augment: tuple[str, ...] = ("dihedral", "gain")
    #: Standardise each band with the training patches' mean and variance (inside the model).
    standardize: bool = True
    #: Members of the ensemble (their mean probability is the prediction, calibrated as one model);
    #: 1: a single model. Three members (different initial weights and augmentation) lifted
    #: leave-one-region-out ROC-AUC on the real benchmark by 0.022 [0.004, 0.041] for 3x the
    #: training time (benchmarks/README.md); Earth Genome's production detector averages six.
    ensemble: int = 3
    #: Each member trains on a bootstrap sample (drawn with replacement) of this share of the
    #: training patches (Earth Genome: 0.7); null: every member sees every training patch.
    bagging: float | None = None
    #: Test-time augmentation: a patch's probability is the mean over its 8 dihedral views.
    tta: bool = False
    #: Probability calibration fitted on the validation split: ``platt``, ``isotonic`` or ``none``.
    calibration: str = "platt"
    #: Shares of train, validation and test patches.
    split: tuple[float, ...] = (0.7, 0.15, 0.15)
    #: Minimum distance between patches of different splits; null: the patch diagonal, so no
    #: held-out patch overlaps a training patch.
    min_distance_m: float | None = None
    #: Validation and test made of whole geographic areas: the patches grouped into this many areas
    #: (k-means on their positions) and each area goes whole to one split, so early stopping,
    #: calibration and thresholds are chosen, and the test measured, on places training does not
    #: reach; null: single spatial blocks (patches within ``min_distance_m`` of each other). Not the
    #: default: on the real benchmark, early stopping on one or two areas' noisy PR-AUC kept
    #: undertrained weights (leave-one-region-out ROC-AUC -0.27; benchmarks/README.md).
    split_areas: int | None = None
    #: Seed of the initial weights, the augmentation and the bootstrap (and of the split when
    #: ``split_seed`` is null).
    seed: int = 0
    #: Seed of the spatial split into train / validation / test (and of the folds that
    #: ``member_validation: folds`` and ``label_noise`` deal): which patches a model learns from,
    #: stops on, is calibrated on and is tested on. Fixed, so trainings that differ only in
    #: ``seed`` share their test patches (their test metrics compare) and their thresholds'
    #: evidence; null: ``seed`` moves the split too (the default until 2026-12-07).
    split_seed: int | None = 0
    #: Replicates of the block bootstrap behind every confidence interval.
    bootstrap: int = 1000
    #: Which validation threshold is the model's (``threshold.json``'s ``threshold``, the one
    #: ``asgm.predict`` and the region scan apply unless told otherwise): ``balanced`` (maximum
    #: expected sensitivity + specificity: a patch is a mine where its calibrated probability
    #: exceeds the validation share of mines) or ``f1`` (maximum expected F1). Both are saved, with
    #: F0.5 and the strict one. F1's threshold falls as the share of mines among the validation
    #: patches rises (a label audit that drops non-mines raises it): out of region on the audited
    #: CLI path F1 called half of the new regions' non-mines mines (specificity 0.46-0.49), the balanced
    #: rule 0.64-0.69 at sensitivity 0.70-0.75 (benchmarks/README.md). ``f1``: the default until 2026-12-07.
    operating_point: str = "balanced"
    #: Specificity of the second, stricter operating point (threshold chosen on validation).
    min_specificity: float = 0.95
    #: Categories (index column ``category``) of the non-mines kept in the training and validation
    #: splits; null: all. The test split always keeps every patch, so models trained on different
    #: negatives are compared on the same test patches.
    train_negatives: tuple[str, ...] | None = None
    #: Mine patches with less open ground than this (cloud-free water or bare ground, hectares;
    #: ``asgm.scar.open_ground_ha``) are left out of training and validation: where no open ground
    #: shows, the image shows little or none of the mining (a date before it, a misplaced point,
    #: cloud, a very small pit), and a forest patch labelled mine teaches the model that forest is a
    #: mine. The test split keeps every patch; null: keep all.
    mine_min_open_ha: float | None = None
    #: Knowledge distillation (Hinton et al. 2015): an architecture (e.g. ``bn_cnn``) of which one
    #: model is trained first on the same split with every other setting the same (saved beside
    #: the model as ``<experiment>_teacher``); the model then learns, on its training patches, the
    #: mean of the true label and the teacher's calibrated probability. Validation, calibration,
    #: thresholds and the test keep the true labels. Null: no teacher.
    teacher: str | None = None
    #: Binary cross-entropy against targets pulled this far towards 0.5 (label smoothing, a loss
    #: that trusts each label less); 0: the plain loss.
    label_smoothing: float = 0.0
    #: Generalized cross-entropy (Zhang & Sabuncu 2018) with this exponent q instead of
    #: cross-entropy: the loss ``(1 - p ** q) / q`` of the probability p given to the patch's label
    #: is bounded, so a patch whose label is wrong weighs less in training; 0: cross-entropy.
    gce_q: float = 0.0
    #: Label noise: ``prune`` finds the training and validation patches whose label is unlikely
    #: (confident learning, ``cleanlab``, on out-of-fold predictions of a spatial
    #: ``label_folds``-fold cross-validation of one model of the recipe over them) and leaves them
    #: out of training and validation (the test keeps them); null: train on every label.
    label_noise: str | None = None
    #: Folds of that cross-validation (also the evidence of ``thresholds_from: out_of_fold``).
    label_folds: int = 3
    #: Where the thresholds are chosen: ``validation`` (the validation split) or ``out_of_fold``
    #: (the out-of-fold predictions of every training and validation patch whose label is kept:
    #: about five times the evidence, so two trainings agree more on the operating point).
    thresholds_from: str = "validation"
    #: Which patches each member of the ensemble early-stops on: ``shared`` (the validation split,
    #: the same for every member; calibration and thresholds on it) or ``folds`` (the training and
    #: validation patches dealt into ``ensemble`` spatial folds; member i validates on fold i and
    #: trains on the others, so every one of those patches gets one out-of-fold prediction, and
    #: calibration and thresholds are fitted on all of them: about six times the evidence, and
    #: members that differ in their data as well as their initial weights). Not the default: out of
    #: region it ranked worse and one calibration did not fit members on different output scales
    #: (benchmarks/README.md).
    member_validation: str = "shared"

    @property
    def split_rng_seed(self) -> int:
        """The seed the split and the folds are drawn with: ``split_seed``, or ``seed`` when it is null."""
        return self.seed if self.split_seed is None else self.split_seed


#: Experiment groups of the results-analysis grid (see :func:`asgm.experiments.experiment_grid`).
EXPERIMENT_GROUPS = ("osm", "single_osm", "leave_one_out", "patch_size", "negatives", "class_weights")


@dataclass(frozen=True)
class ExperimentsConfig:
    """The experiment grid of notebook 04: which ablations to train, and how often."""

    #: Groups to run: ``osm`` (S2 only vs S2 + all OSM channels), ``single_osm`` (S2 + each OSM
    #: channel), ``leave_one_out`` (S2 + OSM minus each channel), ``patch_size`` (each of
    #: ``patches.sizes``), ``negatives`` (curated vs random negatives for training), ``class_weights``.
    groups: tuple[str, ...] = EXPERIMENT_GROUPS
    #: Each experiment is trained once per seed; the seed moves the split, the initial weights and
    #: the augmentation, and experiments with the same seed share their split (paired comparisons).
    seeds: tuple[int, ...] = (0, 1, 2)
    #: Maximum epochs of the grid's runs; null: the training section's.
    epochs: int | None = None
    #: Models per run; null: the training section's. One by default: the grid compares inputs
    #: (channels, patch sizes, negatives) paired by seed, and its seeds already give the spread, so
    #: an ensemble per run would triple its cost for comparisons that do not need it.
    ensemble: int | None = 1
    #: Replicates of the block bootstrap behind the grid's intervals.
    bootstrap: int = 1000
    #: Where the runs train, as ``scan.scheduler``: ``synchronous`` (in the notebook's process),
    #: ``local`` (a dask LocalCluster of ``workers`` processes sharing the cores) or ``tcp://host:8786``.
    scheduler: str = "synchronous"
    #: Worker processes of the local cluster.
    workers: int = 1


@dataclass(frozen=True)
class ScanConfig:
    """The region scan of notebook 05 (see :mod:`asgm.scan`)."""

    #: Experiment (model directory under ``models/<profile>/``) to scan with; null: a ``scan_cnn``
    #: trained like notebook 03's S2 + OSM model (the architecture with the fast path).
    model: str | None = None
    #: Region raster; null: ``imagery.path``. For ``gee``/``stac`` it is exported (when missing)
    #: over ``boundary``.
    raster: Path | None = None
    #: Area to export and scan for ``gee``/``stac`` profiles; null: ``region.boundary``.
    boundary: Path | None = None
    #: Pixels between windows (24: Earth Genome's).
    stride: int = 24
    #: Side of a tile in pixels (rounded down to whole windows); memory per tile grows with its
    #: square (about 0.5 GB at 1024 px for scan_cnn), larger tiles waste less on their overlap.
    tile_px: int = 1024
    #: Use the fully convolutional path when the model and stride allow it.
    fast: bool = True
    #: Detection threshold; null: the model's (chosen on validation).
    threshold: float | None = None
    #: Earth Genome's stricter threshold for isolated detections (null: no such rule): a window
    #: whose ``isolated_neighbours``-th nearest detection is farther than ``isolated_distance_m``.
    isolated_threshold: float | None = None
    #: How many detections must lie within ``isolated_distance_m`` of a window for it not to be isolated.
    isolated_neighbours: int = 5
    #: Radius (m) of that neighbourhood.
    isolated_distance_m: float = 3000.0
    #: ``synchronous`` (in the notebook's process), ``local`` (a dask LocalCluster) or a dask
    #: scheduler address (``tcp://host:8786``) to spread tiles over more machines.
    scheduler: str = "local"
    #: Worker processes of the local cluster.
    workers: int = 1


@dataclass(frozen=True)
class Period:
    """One monitoring period: a name (used in file names) and its composite's date window."""

    #: The period's name (its directory and the ``period`` column of the products).
    name: str
    #: Start of the composite's window (ISO date).
    date_start: str | None = None
    #: Exclusive, as ``imagery.date_end``.
    date_end: str | None = None
    #: The period's composite for ``local`` profiles (named bands, as ``imagery.path``).
    raster: Path | None = None


@dataclass(frozen=True)
class MonitoringConfig:
    """Monitoring over time of notebook 06 (see :mod:`asgm.monitor`)."""

    #: Oldest first; yearly and quarterly both work (``{name: 2023q1, date_start: 2023-01-01, date_end: 2023-04-01}``).
    periods: tuple[Period, ...] = ()
    #: Experiment (model directory under ``models/<profile>/``); null: the scan model of notebook 05.
    model: str | None = None
    #: GeoJSON of named polygons (a ``name`` property): protected areas, indigenous territories,
    #: municipalities; null: no zones (the demo uses its SYNTHETIC zones).
    zones: Path | None = None
    #: Also report the named protected areas and indigenous lands that OpenStreetMap has inside the
    #: scan boundary (``boundary=protected_area|national_park|aboriginal_lands``,
    #: ``leisure=nature_reserve``), read from the profile's OSM source and kept in ``osm_zones.geojson``.
    osm_zones: bool = False
    #: Detection threshold and Earth Genome's isolated-detection threshold; null: as ``scan``.
    threshold: float | None = None
    #: Earth Genome's stricter threshold for isolated detections; null: as ``scan``.
    isolated_threshold: float | None = None
    #: Scar inside detections: ``classifier`` (a pixel classifier trained on the scan model's patches
    #: with their labels as weak pixel labels) or ``rules`` (water, and bare ground beside it; see :mod:`asgm.scar`).
    scar_method: str = "classifier"
    #: Bare ground is below this NDVI (scar candidates).
    scar_ndvi: float = 0.25
    #: The classifier's scar grows by up to this many pixels into pixels whose probability reaches
    #: ``scar_grow_fraction`` of its threshold (a mine's edges and hazy parts); 0: no growth.
    scar_grow_px: int = 3
    #: ... into pixels whose probability reaches this fraction of the scar threshold.
    scar_grow_fraction: float = 0.5
    #: Changes smaller than this are not new, expanded or receded mining (jitter of edges).
    min_change_ha: float = 0.5
    #: A pixel is new mining only if, in every earlier period, the pixel classifier's probability
    #: of mine ground there was below this fraction of its threshold (a hysteresis in time: a mine
    #: mapped only weakly before is not new again); 1: no hysteresis.
    new_hysteresis: float = 0.5
    #: Demo only: side of the central square of the demo region that gets a history; null: the
    #: whole region (every mine site, so that the evaluation counts as many as the demo has).
    demo_size_km: float | None = None


#: What :mod:`asgm.labels` does with a patch whose label the reference contradicts.
LABEL_ACTIONS = ("drop", "relabel")


@dataclass(frozen=True)
class LabelsConfig:
    """The label audit against a reference map of mining footprints (see :mod:`asgm.labels`)."""

    #: Reference mining footprints: a folder of yearly polygon files like Earth Genome's
    #: (``mining_YYYYQQ_*.geojson``) or one polygon file, each feature with a ``year`` (``2021``,
    #: or Earth Genome's ``202100``, ``202502`` for 2025 Q2) or ``date`` property; null: no audit.
    reference: Path | None = None
    #: A non-mine patch conflicts with the reference when more than this share of it was mapped
    #: as mining by the end of its image's date window.
    negative_max_cover: float = 0.25
    #: A mine patch conflicts with the reference when no reference mining of any year lies within
    #: this distance of the patch (0: none touches the patch).
    mine_max_distance_m: float = 0.0
    #: Also a conflict: a mine patch near which the reference maps mining only after the image's
    #: window (the image may show little or none of it). On the real benchmark 108 of 386 mine
    #: patches are such, with a median of 0.46 ha of open ground against 5.8 ha for the others.
    mine_mapped_later: bool = False
    #: What happens to conflicting patches: ``drop`` (left out of the audited dataset) or
    #: ``relabel`` (their label set to the reference's; the original kept in ``label_original``).
    action: str = "drop"
    #: End of the images' date window (exclusive, ``YYYY-MM-DD``) when the dataset does not record
    #: it (an index column ``date_end``, or ``imagery_window`` in ``dataset.json``).
    image_date_end: str | None = None


@dataclass(frozen=True)
class Profile:
    name: str
    root: Path
    source_file: Path
    region: RegionConfig
    imagery: ImageryConfig
    osm: OsmConfig
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    patches: PatchConfig = field(default_factory=PatchConfig)
    synthetic: SyntheticConfig | None = None
    training: TrainingConfig = field(default_factory=TrainingConfig)
    experiments: ExperimentsConfig = field(default_factory=ExperimentsConfig)
    scan: ScanConfig = field(default_factory=ScanConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    labels: LabelsConfig = field(default_factory=LabelsConfig)

    @property
    def cache_dir(self) -> Path:
        """Downloaded responses (Earth Engine pixels, STAC composites, Overpass) kept between runs."""
        return self.root / "data" / "cache"

    @property
    def contextual_dir(self) -> Path:
        return self.root / "data" / "contextual" / self.name

    @property
    def osm_features_path(self) -> Path:
        return self.contextual_dir / "osm.gpkg"

    @property
    def sampling_points_path(self) -> Path:
        return self.root / "data" / "training_data" / f"{self.name}_sampling_points.geojson"

    def dataset_dir(self, patch_size: int) -> Path:
        return self.root / "data" / "training_data" / f"{self.name}_{patch_size}px"

    def training_dataset_dir(self, patch_size: int) -> Path:
        """The dataset that models learn from and are judged on: the one audited against
        ``labels.reference`` (notebook 02) when the profile names a reference, else :meth:`dataset_dir`."""
        plain = self.dataset_dir(patch_size)
        return plain if self.labels.reference is None else plain.with_name(f"{plain.name}_audited")

    @property
    def models_dir(self) -> Path:
        return self.root / "models" / self.name

    @property
    def figures_dir(self) -> Path:
        return self.root / "figures" / self.name

    @property
    def reports_dir(self) -> Path:
        """Executed notebooks and result tables."""
        return self.root / "reports" / self.name

    @property
    def channels(self) -> tuple[str, ...]:
        """Dataset channels: imagery bands, then OSM channels."""
        return self.imagery.bands + self.osm.channels


SECTIONS = {
    "region": RegionConfig,
    "imagery": ImageryConfig,
    "osm": OsmConfig,
    "sampling": SamplingConfig,
    "patches": PatchConfig,
    "synthetic": SyntheticConfig,
    "training": TrainingConfig,
    "experiments": ExperimentsConfig,
    "scan": ScanConfig,
    "monitoring": MonitoringConfig,
    "labels": LabelsConfig,
}


def find_root(profile: str, start: Path | None = None) -> Path:
    """Return the project directory holding ``configs/<profile>.yaml``, searching upward from ``start``."""
    start = (start or Path.cwd()).resolve()
    for directory in (start, *start.parents):
        if (directory / "configs" / f"{profile}.yaml").is_file():
            return directory
    raise ConfigError(
        "profile",
        f"no configs/{profile}.yaml in {start} or any parent directory",
        "run from inside the project, or pass root= the project directory; "
        "available profiles are the YAML files in configs/",
    )


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last,
    so a duplicated section would silently replace the first)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _read_mapping(path: Path, missing: str, missing_fix: str, mapping_fix: str) -> dict:
    """A YAML file that must hold a mapping; errors name the file and the fix."""
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except FileNotFoundError:
        raise InputFileError(path, missing, missing_fix) from None
    except yaml.YAMLError as exc:
        raise InputFileError(path, f"not valid YAML ({exc})", "fix the YAML syntax at the line shown") from None
    if not isinstance(raw, dict):
        raise InputFileError(path, "must be a mapping of key: value", mapping_fix)
    return raw


def load_profile(profile: str = "demo", root: str | Path | None = None, **sections: Any) -> Profile:
    """Read and validate ``configs/<profile>.yaml``.

    Parameters
    ----------
    profile
        Profile name (file stem in ``configs/``).
    root
        Project directory; default: searched upward from the working directory.
    **sections
        Sections that replace the file's (papermill-injected parameters); ``None`` values are ignored.

    Returns
    -------
    Profile
        Paths resolved against ``root``.

    Raises
    ------
    ConfigError
        Unknown section or key, missing required key, or invalid value.
    """
    plain_name(profile, "profile")
    root = Path(root).resolve() if root else find_root(profile)
    path = root / "configs" / f"{profile}.yaml"
    raw = _read_mapping(path, "profile not found", "create it, or pick one of the files in configs/",
                        "a profile must be a mapping of sections; see configs/demo.yaml for the layout")
    raw.update({k: v for k, v in sections.items() if v is not None})
    name = plain_name(raw.pop("profile", profile), f"profile name (in {path})")
    override = os.environ.get(IMAGERY_SOURCE_ENV)
    if override and isinstance(raw.get("imagery"), dict):
        # Outputs of a chosen imagery source go to their own directories (bolivar_stac, …).
        raw["imagery"] = {**raw["imagery"], "source": override}
        name = f"{name}_{override}"
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise ConfigError(", ".join(sorted(unknown)), "unknown section", f"use only: profile, {', '.join(SECTIONS)}", path)
    built = {key: _build(SECTIONS[key], raw[key], key, root, path) for key in raw}
    for required in ("region", "imagery", "osm"):
        if required not in built:
            raise ConfigError(required, "section missing", "add it (see configs/demo.yaml)", path)
    prof = Profile(name=name, root=root, source_file=path, **built)
    _validate(prof)
    return prof


def _build(cls: type, values: Any, section: str, root: Path, source: Path) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(section, "must be a mapping of key: value", "indent its keys under the section name", source)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(f"{section}.{sorted(unknown)[0]}", "unknown key", f"valid keys: {', '.join(fields)}", source)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _coerce(value, hints[name], f"{section}.{name}", root, source)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(section, str(exc), "add the missing key", source) from None


def _coerce(value: Any, hint: Any, setting: str, root: Path, source: Path) -> Any:
    if value is None:
        return None
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    try:
        if hint is Path:
            return (root / str(value)).resolve()
        if args and args[0] is Download:
            return _downloads(value, setting, root, source)
        if args and args[0] is Period:
            if not isinstance(value, list):
                raise ConfigError(setting, "must be a list of periods", "give e.g. [{name: '2023', date_start: 2023-01-01, date_end: 2024-01-01}, ...]", source)
            return tuple(_build(Period, v, f"{setting}[{i}]", root, source) for i, v in enumerate(value))
        if typing.get_origin(hint) is tuple:
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",")]
            return tuple(args[0](v) for v in value)
        if hint is bool:
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
        if hint in (int, float) and isinstance(value, bool):
            raise ValueError(value)  # YAML's true/false would pass as 1/0
        if hint is float:
            return float(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        return hint(value)
    except (TypeError, ValueError):
        raise ConfigError(setting, f"invalid value {value!r}", f"give a {getattr(hint, '__name__', hint)}", source) from None


def _downloads(value: Any, setting: str, root: Path, source: Path) -> tuple[Download, ...]:
    fix = "give a mapping of path: {url: https://…, sha256: <64 hex digits>}"
    if not isinstance(value, dict):
        raise ConfigError(setting, "must be a mapping of local path to {url, sha256}", fix, source)
    out = []
    for path, spec in value.items():
        if not isinstance(spec, dict) or set(spec) != {"url", "sha256"}:
            raise ConfigError(f"{setting}.{path}", "needs exactly url and sha256", fix, source)
        sha = str(spec["sha256"]).lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ConfigError(f"{setting}.{path}.sha256", f"not a SHA-256 digest: {spec['sha256']!r}", "give the 64 hex digits of `sha256sum FILE`", source)
        out.append(Download((root / str(path)).resolve(), str(spec["url"]), sha))
    return tuple(out)


def _validate(prof: Profile) -> None:
    src = prof.source_file
    unknown_bands = [b for b in prof.imagery.bands if b not in S2_BANDS]
    if unknown_bands:
        raise ConfigError("imagery.bands", f"unknown band(s) {unknown_bands}", f"use names from {', '.join(S2_BANDS)}", src)
    unknown_osm = [c for c in prof.osm.channels if c not in OSM_CHANNELS]
    if unknown_osm:
        raise ConfigError("osm.channels", f"unknown OSM channel(s) {unknown_osm}", f"use names from {', '.join(OSM_CHANNELS)} (or [] for none)", src)
    if prof.imagery.source not in IMAGERY_SOURCES:
        raise ConfigError("imagery.source", f"unknown source {prof.imagery.source!r}", f"use one of {', '.join(IMAGERY_SOURCES)}", src)
    if prof.imagery.path is None and prof.imagery.source in ("demo", "local"):
        raise ConfigError("imagery.path", "missing", "give the GeoTIFF/COG/VRT to read", src)
    if prof.imagery.source in ("gee", "stac"):
        _validate_window(prof.imagery, src)
    if prof.imagery.source == "demo" and prof.synthetic is None:
        raise ConfigError("synthetic", "imagery.source is 'demo' but there is no synthetic section", "add one (see configs/demo.yaml)", src)
    if prof.region.points_outside_boundary not in ("error", "drop"):
        raise ConfigError("region.points_outside_boundary", f"invalid value {prof.region.points_outside_boundary!r}", "use error or drop", src)
    if prof.osm.source not in OSM_SOURCES:
        raise ConfigError("osm.source", f"unknown source {prof.osm.source!r}", f"use one of {', '.join(OSM_SOURCES)}", src)
    if prof.osm.source in ("file", "pbf") and prof.osm.path is None:
        raise ConfigError("osm.path", f"missing for source {prof.osm.source!r}", "give the .osm XML file (file) or the .osm.pbf extract (pbf)", src)
    bad_sizes = [s for s in prof.patches.sizes if s < 8]
    if bad_sizes or not prof.patches.sizes:
        raise ConfigError("patches.sizes", f"invalid patch sizes {list(prof.patches.sizes)}", "give sizes in pixels, e.g. [48, 256]", src)
    for name in ("max_nodata_fraction", "max_cloud_fraction"):
        if not 0 <= getattr(prof.patches, name) <= 1:
            raise ConfigError(f"patches.{name}", "must be between 0 and 1", "give a fraction", src)
    _validate_training(prof.training, src)
    _validate_experiments(prof.experiments, src)
    if not prof.imagery.bands:
        raise ConfigError("imagery.bands", "empty", "list the bands to read, e.g. [B2, B3, B4, B8, B11, B12]", src)
    for setting, names in (("imagery.bands", prof.imagery.bands), ("osm.channels", prof.osm.channels)):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ConfigError(setting, f"lists {duplicated} more than once", "give each name once", src)
    if prof.imagery.scale <= 0:
        raise ConfigError("imagery.scale", f"{prof.imagery.scale} is not positive", "give the raster values per unit reflectance, e.g. 10000", src)
    if prof.sampling.min_distance_m is not None and prof.sampling.min_distance_m <= 0:
        raise ConfigError("sampling.min_distance_m", "must be positive", "give metres, or null for the patch diagonal", src)
    sc = prof.scan
    if sc.stride < 1 or sc.tile_px < 1 or sc.workers < 1:
        raise ConfigError("scan", "stride, tile_px and workers must be at least 1", "give positive whole numbers", src)
    for name in ("threshold", "isolated_threshold"):
        value = getattr(sc, name)
        if value is not None and not 0 <= value <= 1:
            raise ConfigError(f"scan.{name}", f"{value} is not a probability", "give a value between 0 and 1, or null", src)
    _validate_scheduler("scan", sc.scheduler, src)
    _validate_monitoring(prof, src)
    validate_labels(prof.labels, src)


#: What monitoring writes beside the periods' directories (``reports/<profile>/monitoring/``) and
#: beside the demo history's: no period may be named like one of them.
MONITORING_RUN_PRODUCTS = ("cumulative.geojson", "summary.csv", "zones.csv", "alerts.geojson", "evaluation.csv")
MONITORING_OUTPUTS = (*MONITORING_RUN_PRODUCTS, "alerts", "products", "products.json", "history.json", "zones.geojson")


def _iso_date(value, setting: str, src: Path) -> datetime.date | None:
    """A period's date (None when not given), or a ConfigError naming the setting."""
    if value is None:
        return None
    try:
        return datetime.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(setting, f"{value!r} is not a date", "give YYYY-MM-DD, e.g. 2023-01-01", src) from None


def _validate_monitoring(prof: Profile, src: Path) -> None:
    mo = prof.monitoring
    names = [p.name for p in mo.periods]
    previous_end = None
    for i, period in enumerate(mo.periods):
        setting = f"monitoring.periods[{i}]"
        try:
            plain_name(period.name, f"{setting}.name")
        except AsgmError:
            raise ConfigError(f"{setting}.name", f"{period.name!r} is not a plain name: it names the period's files and directories",
                              "give a name such as 2023 or 2023q1 (no leading dot, no / or \\)", src) from None
        if period.name.lower() in MONITORING_OUTPUTS:
            raise ConfigError(f"{setting}.name", f"{period.name!r} is the name of one of monitoring's outputs ({', '.join(MONITORING_OUTPUTS)})",
                              "give the period another name, such as 2023 or 2023q1", src)
        if period.name in names[:i]:
            raise ConfigError(f"{setting}.name", f"{period.name!r} is used by more than one period", "give each period its own name", src)
        if prof.imagery.source in ("gee", "stac"):
            _validate_window(dataclasses.replace(prof.imagery, date_start=period.date_start, date_end=period.date_end), src, setting)
        if prof.imagery.source == "local" and period.raster is None:
            raise ConfigError(f"{setting}.raster", "missing for a local profile", "give the period's composite (named bands, as imagery.path)", src)
        start, end = _iso_date(period.date_start, f"{setting}.date_start", src), _iso_date(period.date_end, f"{setting}.date_end", src)
        if start and end and end <= start:
            raise ConfigError(f"{setting}.date_end", f"{end} is not after date_start {start}", "give the window's end (exclusive) after its start", src)
        if start and previous_end and start < previous_end:
            raise ConfigError(f"{setting}.date_start", f"{start} is before the previous period's end {previous_end}: periods overlap or are not in time order",
                              "list the periods oldest first, each starting where the previous one ends or later", src)
        previous_end = end or start or previous_end
    if mo.periods and len(mo.periods) < 2:
        raise ConfigError("monitoring.periods", "a single period shows no change", "give at least two periods, oldest first (or none to skip monitoring)", src)
    for name in ("threshold", "isolated_threshold"):
        value = getattr(mo, name)
        if value is not None and not 0 <= value <= 1:
            raise ConfigError(f"monitoring.{name}", f"{value} is not a probability", "give a value between 0 and 1, or null", src)
    if mo.scar_method not in ("classifier", "rules"):
        raise ConfigError("monitoring.scar_method", f"unknown method {mo.scar_method!r}", "use classifier or rules", src)
    if not -1 <= mo.scar_ndvi <= 1:
        raise ConfigError("monitoring.scar_ndvi", f"{mo.scar_ndvi} is not an NDVI", "give a value between -1 and 1, e.g. 0.25", src)
    if mo.scar_grow_px < 0:
        raise ConfigError("monitoring.scar_grow_px", f"{mo.scar_grow_px} is negative", "give a number of pixels, e.g. 3 (0: no growth)", src)
    if not 0 < mo.scar_grow_fraction <= 1:
        raise ConfigError("monitoring.scar_grow_fraction", f"{mo.scar_grow_fraction} is not a fraction of the scar threshold", "give a value in (0, 1], e.g. 0.5", src)
    if not 0 < mo.new_hysteresis <= 1:
        raise ConfigError("monitoring.new_hysteresis", f"{mo.new_hysteresis} is not a fraction of the scar threshold", "give a value in (0, 1], e.g. 0.5", src)
    if not 0 <= mo.min_change_ha < math.inf:  # also refuses NaN, which would remove every change
        raise ConfigError("monitoring.min_change_ha", f"{mo.min_change_ha} is not a size", "give hectares, e.g. 0.5", src)
    if mo.demo_size_km is not None and not 0 < mo.demo_size_km < math.inf:
        raise ConfigError("monitoring.demo_size_km", f"{mo.demo_size_km} is not a positive size", "give kilometres, e.g. 10, or null for the whole demo region", src)


def _validate_scheduler(section: str, scheduler: str, src: Path) -> None:
    if scheduler not in ("synchronous", "local") and not scheduler.startswith(("tcp://", "tls://", "inproc://")):
        raise ConfigError(f"{section}.scheduler", f"unknown scheduler {scheduler!r}", "use synchronous, local, or a dask scheduler address such as tcp://host:8786", src)


def _validate_window(img: ImageryConfig, src: Path, section: str = "imagery") -> None:
    from datetime import date

    try:
        start, end = date.fromisoformat(str(img.date_start)), date.fromisoformat(str(img.date_end))
    except ValueError:
        raise ConfigError(f"{section}.date_start/date_end", f"need ISO dates for source {img.source!r}, got {img.date_start!r} and {img.date_end!r}",
                          "give the composite window, e.g. date_start: 2023-01-01, date_end: 2024-01-01", src) from None
    if end <= start:
        raise ConfigError(f"{section}.date_end", f"{end} is not after {start}", "give a window of at least a day (the end is exclusive)", src)
    if not 0 <= img.clear_threshold <= 1:
        raise ConfigError("imagery.clear_threshold", "must be between 0 and 1", "give a Cloud Score+ cs_cdf value, e.g. 0.75", src)
    if img.workers < 1:
        raise ConfigError("imagery.workers", "must be at least 1", "give a positive whole number", src)


def _validate_experiments(e: ExperimentsConfig, src: Path) -> None:
    unknown = [g for g in e.groups if g not in EXPERIMENT_GROUPS]
    if unknown:
        raise ConfigError("experiments.groups", f"unknown group(s) {unknown}", f"use names from {', '.join(EXPERIMENT_GROUPS)}", src)
    if not e.seeds:
        raise ConfigError("experiments.seeds", "empty", "give at least one seed, e.g. [0, 1, 2]", src)
    if any(v is not None and v < 1 for v in (e.epochs, e.ensemble)) or e.bootstrap < 1 or e.workers < 1:
        raise ConfigError("experiments", "epochs, ensemble, bootstrap and workers must be at least 1", "give positive whole numbers (or null for epochs and ensemble)", src)
    _validate_scheduler("experiments", e.scheduler, src)


def _validate_training(t: TrainingConfig, src: Path | None) -> None:
    unknown = [c for c in t.channels or () if c not in S2_BANDS and c not in OSM_CHANNELS]
    if unknown:
        raise ConfigError("training.channels", f"unknown channel(s) {unknown}", f"use names from {', '.join(S2_BANDS + OSM_CHANNELS)}, or null for all", src)
    if len(t.split) != 3 or min(t.split) < 0 or abs(sum(t.split) - 1) > 1e-6 or t.split[0] == 0:
        raise ConfigError("training.split", f"invalid shares {list(t.split)}", "give [train, validation, test] shares summing to 1, e.g. [0.7, 0.15, 0.15]", src)
    duplicated = sorted({c for c in t.channels or () if t.channels.count(c) > 1})
    if duplicated:
        raise ConfigError("training.channels", f"lists {duplicated} more than once", "give each channel once", src)
    if t.split_areas is not None and t.split_areas < 3:
        raise ConfigError("training.split_areas", "must be at least 3 (one area each for train, validation and test)",
                          "give e.g. 10, or null to split by spatial blocks", src)
    if t.min_distance_m is not None and t.min_distance_m <= 0:
        raise ConfigError("training.min_distance_m", "must be positive", "give metres, or null for the patch diagonal", src)
    for name in ("epochs", "batch_size", "ensemble", "bootstrap"):
        if getattr(t, name) < 1:
            raise ConfigError(f"training.{name}", "must be at least 1", "give a positive whole number", src)
    if not 0 < t.min_specificity < 1:
        raise ConfigError("training.min_specificity", "must be between 0 and 1", "give a fraction, e.g. 0.95", src)
    unknown = [a for a in t.augment if a not in AUGMENTATIONS]
    if unknown:
        raise ConfigError("training.augment", f"unknown transform(s) {unknown}", f"use names from {', '.join(AUGMENTATIONS)}, or [] for none", src)
    if t.bagging is not None and not 0 < t.bagging <= 1:
        raise ConfigError("training.bagging", f"{t.bagging} is not a share in (0, 1]", "give e.g. 0.7, or null to train every member on every patch", src)
    if t.mine_min_open_ha is not None and t.mine_min_open_ha < 0:
        raise ConfigError("training.mine_min_open_ha", f"{t.mine_min_open_ha} is negative", "give hectares, e.g. 0.5, or null to keep every mine patch", src)
    if t.calibration not in CALIBRATIONS:
        raise ConfigError("training.calibration", f"unknown method {t.calibration!r}", f"choose one of {', '.join(CALIBRATIONS)}", src)
    if t.learning_rate <= 0 or not 0 < t.lr_factor < 1:
        raise ConfigError("training.learning_rate" if t.learning_rate <= 0 else "training.lr_factor", "out of range",
                          "give a positive learning rate and a factor between 0 and 1, e.g. 0.001 and 0.33", src)
    if t.label_noise not in (None, "prune"):
        raise ConfigError("training.label_noise", f"unknown handling {t.label_noise!r}", "give prune, or null to train on every label", src)
    if t.thresholds_from not in ("validation", "out_of_fold"):
        raise ConfigError("training.thresholds_from", f"unknown evidence {t.thresholds_from!r}", "give validation or out_of_fold", src)
    if t.operating_point not in OPERATING_RULES:
        raise ConfigError("training.operating_point", f"unknown operating point {t.operating_point!r}", f"give {' or '.join(OPERATING_RULES)}", src)
    if not 0 <= t.early_stopping_from < 1:
        raise ConfigError("training.early_stopping_from", f"{t.early_stopping_from} is not a share in [0, 1)",
                          "give e.g. 0.25 (the first quarter of the epochs), or 0 to stop from the first epoch", src)
    if t.member_validation not in ("shared", "folds"):
        raise ConfigError("training.member_validation", f"unknown choice {t.member_validation!r}", "give shared or folds", src)
    if t.member_validation == "folds" and t.ensemble < 2:
        raise ConfigError("training.member_validation", f"folds needs an ensemble of at least 2 members (training.ensemble is {t.ensemble})",
                          "give training.ensemble: 3, or member_validation: shared", src)
    if t.member_validation == "folds" and t.thresholds_from == "out_of_fold":
        raise ConfigError("training.thresholds_from", "member_validation: folds already chooses the thresholds on out-of-fold predictions",
                          "give thresholds_from: validation with member_validation: folds (or member_validation: shared)", src)
    if not 0 <= t.label_smoothing < 0.5:
        raise ConfigError("training.label_smoothing", f"{t.label_smoothing} is not in [0, 0.5)", "give e.g. 0.1, or 0 for the plain loss", src)
    if not 0 <= t.gce_q <= 1:
        raise ConfigError("training.gce_q", f"{t.gce_q} is not in [0, 1]", "give e.g. 0.7, or 0 for cross-entropy", src)
    for name in ("seed", "split_seed"):
        if getattr(t, name) is not None and getattr(t, name) < 0:
            raise ConfigError(f"training.{name}", f"{getattr(t, name)} is negative", "give a whole number from 0 up, e.g. 0"
                              + (", or null to draw the split with training.seed" if name == "split_seed" else ""), src)
    if t.label_folds < 2:
        raise ConfigError("training.label_folds", "must be at least 2", "give e.g. 3", src)
    for name in ("patience", "lr_patience"):
        if getattr(t, name) is not None and getattr(t, name) < 1:
            raise ConfigError(f"training.{name}", "must be at least 1", "give a positive whole number of epochs", src)


def validate_labels(c: LabelsConfig, src: Path | None, section: str = "labels.") -> None:
    """Raise a :class:`ConfigError` (``section`` + key) for a label-audit setting out of range."""
    if not 0 <= c.negative_max_cover < 1:  # also refuses NaN
        raise ConfigError(f"{section}negative_max_cover", f"{c.negative_max_cover} is not a share in [0, 1)", "give e.g. 0.25", src)
    if not 0 <= c.mine_max_distance_m < math.inf:
        raise ConfigError(f"{section}mine_max_distance_m", f"{c.mine_max_distance_m} is not a distance", "give metres, e.g. 0", src)
    if c.action not in LABEL_ACTIONS:
        raise ConfigError(f"{section}action", f"unknown action {c.action!r}", f"choose one of {', '.join(LABEL_ACTIONS)}", src)
    if c.image_date_end is not None:
        try:
            datetime.date.fromisoformat(str(c.image_date_end))
        except ValueError:
            raise ConfigError(f"{section}image_date_end", f"{c.image_date_end!r} is not a date", "give YYYY-MM-DD, e.g. 2022-01-01", src) from None


def load_training(path: str | Path, **overrides: Any) -> TrainingConfig:
    """Training settings from a YAML file: a profile (its ``training`` section) or a bare mapping of
    training keys. ``overrides`` (non-None) replace the file's values.

    Raises
    ------
    InputFileError, ConfigError
        Unreadable file, unknown key or invalid value.
    """
    path = Path(path)
    raw = _read_mapping(path, "training config not found", "give an existing YAML file, e.g. configs/demo.yaml",
                        "give a profile or a mapping of training keys (see TrainingConfig)")
    values = raw.get("training", {} if "profile" in raw or "region" in raw else raw) or {}
    if not isinstance(values, dict):
        raise ConfigError("training", "must be a mapping of key: value", "indent the training keys under `training:`", path)
    # a flag the user did not give (None) leaves the file's value
    return training_config({**values, **{k: v for k, v in overrides.items() if v is not None}}, path)


def training_config(values: dict[str, Any], source: Path | None = None) -> TrainingConfig:
    """Validated training settings from a mapping (``None`` values keep the defaults)."""
    # null keeps the default, except where null means something (a constant learning rate, no bagging, …)
    optional = {name for name, hint in typing.get_type_hints(TrainingConfig).items() if type(None) in typing.get_args(hint)}
    values = {k: v for k, v in values.items() if v is not None or k in optional}
    augment = values.get("augment")
    if isinstance(augment, bool) or (isinstance(augment, str) and augment.lower() in ("true", "false")):
        # the older form: true = rotations and flips
        values["augment"] = ["dihedral"] if str(augment).lower() == "true" else []
    t = _build(TrainingConfig, values, "training", source.parent if source else Path.cwd(), source)
    _validate_training(t, source)
    return t
