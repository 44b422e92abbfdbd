import json

import geopandas as gpd
import numpy as np
import rasterio
from scipy import ndimage

from asgm.config import S2_BANDS, SyntheticConfig
from asgm.imagery.demo import CLASSES, NEGATIVE_CLEARANCE_M, ensure_demo_region, generate_demo_region


def read(path):
    with rasterio.open(path) as src:
        return src.read(), src.descriptions, src.tags(), src.crs, src.nodata


def test_same_seed_gives_identical_outputs(tiny_demo, tmp_path):
    cfg, first = tiny_demo
    again = generate_demo_region(cfg.__class__(**{**cfg.__dict__, "output_dir": tmp_path / "again"}), progress=False)
    assert np.array_equal(read(first.composite)[0], read(again.composite)[0])
    for name in ("osm", "positives", "negatives", "mine_polygons", "boundary"):
        assert getattr(first, name).read_text() == getattr(again, name).read_text(), name


def test_other_seed_gives_another_region(tiny_demo, tmp_path):
    cfg, first = tiny_demo
    other = generate_demo_region(cfg.__class__(**{**cfg.__dict__, "output_dir": tmp_path / "other", "seed": cfg.seed + 1}), progress=False)
    assert not np.array_equal(read(first.composite)[0], read(other.composite)[0])


def test_composite_is_a_labelled_l1c_like_raster(tiny_demo):
    _, region = tiny_demo
    data, names, tags, crs, nodata = read(region.composite)
    assert names == S2_BANDS and data.dtype == np.uint16 and nodata == 0
    assert crs.to_epsg() == 32620 and tags["SYNTHETIC"] == "true"
    assert (data == 0).all(axis=0).any(), "the swath-edge wedge of no data is missing"
    assert json.loads(region.metadata.read_text())["synthetic"] is True
    assert "SYNTHETIC" in region.osm.read_text()[:300]


def test_spectra_behave_like_real_covers(tiny_demo):
    """Vegetation has a high NDVI, water a negative one, bare mining sand is bright in SWIR."""
    _, region = tiny_demo
    data = read(region.composite)[0].astype(float)
    with rasterio.open(region.landcover) as src:
        cover = src.read(1)
    b = {n: data[i] for i, n in enumerate(S2_BANDS)}
    ndvi = (b["B8"] - b["B4"]) / (b["B8"] + b["B4"] + 1e-9)
    core = lambda name: (cover == CLASSES[name]) & (np.abs(np.gradient(cover.astype(float))[0]) == 0)  # noqa: E731
    assert np.median(ndvi[core("forest")]) > 0.6
    assert np.median(ndvi[core("river_turbid")]) < 0.0
    assert np.median(b["B11"][core("mine_sand")]) > 1.8 * np.median(b["B11"][core("forest")])


def test_points_and_ground_truth_agree(tiny_demo):
    cfg, region = tiny_demo
    mines = gpd.read_file(region.mine_polygons).to_crs(32620)
    positives = gpd.read_file(region.positives).to_crs(32620)
    negatives = gpd.read_file(region.negatives).to_crs(32620)
    planted_negatives, planted_positives = negatives["label_noise"].astype(bool), positives["label_noise"].astype(bool)
    assert len(mines) == cfg.n_mine_sites == len(positives) - planted_positives.sum() + planted_negatives.sum()
    assert positives[~planted_positives].within(mines.union_all()).all()
    clean = negatives[~planted_negatives]
    assert (clean.distance(mines.union_all()) >= NEGATIVE_CLEARANCE_M - 1e-6).all()
    assert len(clean) == cfg.n_curated_negatives and clean["kind"].nunique() > 3
    # the planted label errors: old mine ground labelled "no mine" (on a site), mine points far from any site
    assert planted_negatives.sum() == 1 and negatives[planted_negatives].within(mines.union_all()).all()
    assert (negatives.loc[planted_negatives, "kind"] == "old_mine_ground").all()
    assert (positives[planted_positives].distance(mines.union_all()) >= NEGATIVE_CLEARANCE_M - 1e-6).all()


def test_the_label_audit_finds_exactly_the_planted_label_errors(tmp_path_factory):
    """On a 6 km demo region (both kinds of label error), its reference map as the reference: the
    audit flags the planted errors and nothing else."""
    import json

    import pandas as pd

    from asgm.config import LabelsConfig
    from asgm.labels import audit_labels, read_reference
    from asgm.patches import read_dataset

    cfg = SyntheticConfig(output_dir=tmp_path_factory.mktemp("demo6") / "region", seed=11, size_km=6, n_mine_sites=30,
                          mines_per_cluster=5, n_curated_negatives=30)
    region = generate_demo_region(cfg, progress=False)
    points = pd.concat([gpd.read_file(region.positives).assign(label=1), gpd.read_file(region.negatives).assign(label=0)], ignore_index=True)
    data = tmp_path_factory.mktemp("points")
    pd.DataFrame({"patch_id": [f"p{i}" for i in range(len(points))], "lon": points.geometry.x, "lat": points.geometry.y,
                  "label": points["label"]}).to_csv(data / "index.csv", index=False)
    np.save(data / "patches.npy", np.zeros((len(points), 48, 48, 1), np.int16))
    (data / "dataset.json").write_text(json.dumps({"channels": ["B4"], "scale": 10000, "patch_size": 48, "resolution_m": 10,
                                                   "imagery_window": ["2024-01-01", "2025-01-01"]}))
    planted = points["label_noise"].astype(bool).to_numpy()
    assert planted[points["label"] == 1].sum() >= 1 and planted[points["label"] == 0].sum() >= 1
    audit = audit_labels(read_dataset(data), read_reference(region.reference), LabelsConfig(mine_mapped_later=True), progress=False)
    assert np.array_equal(audit["conflict"].ne("").to_numpy(), planted)
    assert set(audit.loc[planted, "conflict"]) == {"non_mine_in_reference", "mine_mapped_after_image"}


def test_ensure_reuses_an_identical_region(tiny_demo):
    cfg, region = tiny_demo
    before = region.composite.stat().st_mtime_ns
    ensure_demo_region(cfg, progress=False)
    assert region.composite.stat().st_mtime_ns == before


#: Demo covers and the group of real pixels (NDVI / NDWI) whose range they must fall in.
REAL_GROUPS = {"forest": "dense vegetation", "savanna": "sparse vegetation", "bare_soil": "bare ground",
               "mine_sand": "bare ground", "sandbar": "bare ground", "river_turbid": "water"}


def test_spectra_are_calibrated_to_real_sentinel2_patches(tiny_demo, reference_data):
    """Each large cover's median surface reflectance (composite minus the modelled path radiance) lies
    within the 10-90 % range of the matching real pixels, in every band the real patches carry."""
    from asgm.imagery.demo import PATH_RADIANCE

    real = np.load(reference_data / "amazon-s2-6band" / "patches.npy").astype(np.float32).reshape(-1, 6)
    names = json.loads((reference_data / "amazon-s2-6band" / "dataset.json").read_text())["channels"]
    r = dict(zip(names, real.T))
    ndvi = (r["B8"] - r["B4"]) / (r["B8"] + r["B4"] + 1e-6)
    ndwi = (r["B3"] - r["B8"]) / (r["B3"] + r["B8"] + 1e-6)
    groups = {"dense vegetation": ndvi > 0.6, "sparse vegetation": (ndvi > 0.3) & (ndvi < 0.6),
              "bare ground": (ndvi > 0) & (ndvi < 0.2) & (ndwi < 0), "water": ndwi > 0.1}
    _, region = tiny_demo
    data = read(region.composite)[0].astype(float)
    with rasterio.open(region.landcover) as src:
        cover = src.read(1)
    bands = [S2_BANDS.index(n) for n in names]
    checked = 0
    for name, group in REAL_GROUPS.items():
        core = ndimage.binary_erosion(cover == CLASSES[name], iterations=2)
        if core.sum() < 30:
            continue
        surface = np.median(data[bands][:, core], axis=1) - PATH_RADIANCE[bands]
        low, high = np.percentile(real[groups[group]], [10, 90], axis=0)
        outside = [f"{n} {v:.0f} not in [{lo:.0f}, {hi:.0f}]" for n, v, lo, hi in zip(names, surface, low, high) if not lo <= v <= hi]
        assert not outside, f"{name} vs real {group}: {outside}"
        checked += 1
    assert checked >= 4
