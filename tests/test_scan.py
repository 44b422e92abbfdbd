"""Region scan: the fast path's equivalence, tile seams, resumption, detections and their GeoJSON."""

import json

import geopandas as gpd
import keras
import numpy as np
import pytest
import rasterio
from shapely.geometry import box

from asgm import scan
from asgm.errors import InputFileError
from asgm.models import bn_cnn, fully_convolutional, scan_cnn
from conftest import LEFT, TOP, write_raster

BANDS = ("B2", "B3", "B4", "B8")
#: Standardisation for the random networks (reflectance around 0.2), so their outputs vary.
STATS = (np.full(4, 0.2, np.float32), np.full(4, 0.01, np.float32))


def randomize(model, seed=0):
    """Random weights and batch-norm statistics, so every layer matters."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.normal(1, 0.2, w.shape) if i == 0 else rng.uniform(0.5, 2, w.shape) if i == 3 else rng.normal(0, 0.2, w.shape)
                               for i, w in enumerate(weights)])
        elif weights and not isinstance(layer, keras.layers.Normalization):
            # Variance-preserving kernels (std 1/sqrt(fan-in)), small biases.
            gain = 10.0 if layer.name == "mine_probability" else 1.0  # spread the probabilities
            layer.set_weights([gain * rng.normal(0, 1 / np.sqrt(np.prod(w.shape[:-1])), w.shape) if w.ndim > 1 else rng.normal(0, 0.1, w.shape)
                               for w in weights])
    return model


def spread(model, raster, window=48, stride=12):
    """Rescale the last layer so the model's logits on the raster's windows have mean 0 and sd 2:
    probabilities then vary, and a misplaced window cannot go unnoticed."""
    last = model.get_layer("mine_probability")
    kernel, bias = last.get_weights()
    logits = np.log(np.clip(per_window(model, raster, window, stride), 1e-7, 1 - 1e-7))
    logits -= np.log1p(-np.exp(logits))
    scale = 2 / max(logits.std(), 1e-6)
    last.set_weights([kernel * scale, (bias - logits.mean()) * scale])
    return model


def model_dir(path, model, channels, threshold=0.5):
    """A model directory in the contract format around ``model``."""
    path.mkdir(parents=True, exist_ok=True)
    model.save(path / "model.keras")
    (path / "config.json").write_text(json.dumps({"channels": list(channels), "patch_size": model.input_shape[1],
                                                  "normalization": {"scale": 10000.0}, "training_key": "test"}))
    (path / "threshold.json").write_text(json.dumps({"threshold": threshold}))
    (path / "calibration.json").write_text(json.dumps({"method": "none"}))
    (path / "metrics.json").write_text("{}")
    (path / "predictions.csv").write_text("patch_id,probability\n")
    return path


@pytest.fixture
def scene(tmp_path):
    """A 300 x 260 px raster of noise with two bright 'pits'."""
    rng = np.random.default_rng(1)
    data = rng.integers(200, 3000, (4, 300, 260)).astype(np.uint16)
    data[:, 100:140, 60:100] = 6000
    data[:, 200:230, 180:240] = 6000
    return write_raster(tmp_path / "scene.tif", data, bands=BANDS)


def per_window(model, raster, window, stride):
    """The reference: every window cut from the raster and given to model.predict."""
    with rasterio.open(raster) as src:
        x = np.clip(np.moveaxis(src.read(), 0, -1).astype(np.float32) / 10000, 0, 1)
    rows, cols = (x.shape[0] - window) // stride + 1, (x.shape[1] - window) // stride + 1
    windows = np.stack([x[r * stride:r * stride + window, c * stride:c * stride + window] for r in range(rows) for c in range(cols)])
    return model.predict(windows, verbose=0).reshape(rows, cols)


@pytest.mark.parametrize("stride", [12, 24, 36])
def test_fast_path_equals_per_window_predict(scene, tmp_path, stride):
    model = spread(randomize(scan_cnn((48, 48, 4), statistics=STATS)), scene)
    directory = model_dir(tmp_path / "m", model, BANDS)
    result = scan.scan_region(directory, scene, tmp_path / f"out{stride}", stride=stride, tile_px=150, progress=False)
    assert result.fast
    with rasterio.open(result.probability) as src:
        fast = src.read(1)
    expected = per_window(model, scene, 48, stride)
    assert fast.shape == expected.shape == result.shape
    assert expected.std() > 0.1, "the random network must tell windows apart for the test to mean anything"
    assert np.abs(fast - expected).max() < 1e-4


def test_strided_last_stage_computes_only_the_kept_windows():
    from asgm.models import StridedConvPool

    model = randomize(scan_cnn((48, 48, 4), statistics=STATS))
    dense, dense_stride = fully_convolutional(model)
    x = np.random.default_rng(3).random((1, 150, 174, 4)).astype(np.float32)
    full = np.asarray(dense(x))[0, ..., 0]
    assert full.std() > 0.01
    for step in (2, 3):
        strided, stride = fully_convolutional(model, step=step)
        assert stride == step * dense_stride
        assert any(isinstance(layer, StridedConvPool) for layer in strided.layers)
        assert not any(isinstance(layer, keras.layers.Normalization) for layer in strided.layers)  # folded into the first convolution
        out = np.asarray(strided(x))[0, ..., 0]
        assert out.shape == full[::step, ::step].shape
        assert np.abs(out - full[::step, ::step]).max() < 1e-5


@pytest.mark.slow
def test_unsupported_networks_and_strides_fall_back_to_per_window(scene, tmp_path):
    assert fully_convolutional(bn_cnn((48, 48, 4))) is None  # padded convolutions
    padded = spread(randomize(bn_cnn((48, 48, 4), statistics=STATS)), scene)
    result = scan.scan_region(model_dir(tmp_path / "bn", padded, BANDS), scene, tmp_path / "bn_out", stride=24, tile_px=96, progress=False)
    assert not result.fast
    with rasterio.open(result.probability) as src:
        expected = per_window(padded, scene, 48, 24)
        assert expected.std() > 0.1 and np.abs(src.read(1) - expected).max() < 1e-4
    odd = spread(randomize(scan_cnn((48, 48, 4), statistics=STATS)), scene)
    result = scan.scan_region(model_dir(tmp_path / "odd", odd, BANDS), scene, tmp_path / "odd_out", stride=16, tile_px=112, progress=False)
    assert not result.fast, "16 px is not a multiple of the network's 12 px output stride"
    with rasterio.open(result.probability) as src:
        expected = per_window(odd, scene, 48, 16)
        assert expected.std() > 0.1 and np.abs(src.read(1) - expected).max() < 1e-4


def test_probability_raster_is_centred_on_the_windows(scene, tmp_path):
    model = randomize(scan_cnn((48, 48, 4), statistics=STATS))
    result = scan.scan_region(model_dir(tmp_path / "m", model, BANDS), scene, tmp_path / "out", stride=24, tile_px=120, progress=False)
    with rasterio.open(result.probability) as src:
        assert src.res == (240, 240) and src.crs.to_epsg() == 32620
        # Window (0, 0) spans raster pixels 0-47: its centre is 240 m from the corner, its pixel spans 120-360 m.
        assert src.transform.c == LEFT + 120 and src.transform.f == TOP - 120
        assert src.tags()["stride"] == "24" and src.tags()["window"] == "48"


class Tripwire:
    """Fails the n-th tile to stand in for an interrupted scan."""

    def __init__(self, n):
        self.n, self.calls, self.real = n, 0, scan.scan_tile

    def __call__(self, spec):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.real(spec)


def test_interrupted_scan_resumes_with_the_missing_tiles(scene, tmp_path, monkeypatch):
    model = randomize(scan_cnn((48, 48, 4), statistics=STATS))
    directory = model_dir(tmp_path / "m", model, BANDS)
    out = tmp_path / "out"
    tripwire = Tripwire(4)
    monkeypatch.setattr(scan, "scan_tile", tripwire)
    with pytest.raises(KeyboardInterrupt):
        scan.scan_region(directory, scene, out, stride=24, tile_px=120, progress=False)
    assert not (out / "probability.tif").exists(), "no half-written raster"
    assert len(list(out.glob("tiles-*/*.npy"))) == 3
    monkeypatch.setattr(scan, "scan_tile", tripwire.real)
    result = scan.scan_region(directory, scene, out, stride=24, tile_px=120, progress=False)
    assert result.tiles == 9 and result.computed == 6
    assert not list(out.glob("tiles-*")), "finished tiles are cleaned up once the raster is written"
    whole = scan.scan_region(directory, scene, tmp_path / "whole", stride=24, tile_px=5000, progress=False)
    with rasterio.open(result.probability) as a, rasterio.open(whole.probability) as b:
        assert np.allclose(a.read(1), b.read(1), atol=1e-5), "tiling and resuming change nothing"
    again = scan.scan_region(directory, scene, out, stride=24, tile_px=120, progress=False)
    assert again.computed == 0


def test_detection_across_a_tile_seam_is_found_once(tmp_path):
    # A bright square straddling the border between tiles (72 px tiles at stride 24 hold 2 windows a side: tiles change at window 2, pixel 48).
    data = np.full((4, 200, 200), 500, np.uint16)
    data[:, 20:90, 20:90] = 7000
    raster = write_raster(tmp_path / "seam.tif", data, bands=BANDS)
    inputs = keras.Input((48, 48, 4))
    x = keras.layers.Conv2D(1, 48, padding="valid", kernel_initializer=keras.initializers.Constant(1 / (48 * 48 * 4)))(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", kernel_initializer=keras.initializers.Constant(40.0),
                                 bias_initializer=keras.initializers.Constant(-14.0))(x)  # P > 0.5 where the mean reflectance > 0.35
    directory = model_dir(tmp_path / "bright", keras.Model(inputs, outputs), BANDS, threshold=0.5)
    result = scan.scan_region(directory, raster, tmp_path / "out", stride=24, tile_px=72, progress=False)
    assert result.fast and result.tiles == 16
    found = scan.detections(result.probability, 0.5)
    assert len(found) == 1, found
    assert found["windows"].iloc[0] >= 4 and found["max_confidence"].iloc[0] > 0.9
    assert found.geometry.iloc[0].intersects(box(LEFT + 200, TOP - 900, LEFT + 900, TOP - 200))


def test_detections_geojson_is_valid_and_isolated_windows_need_more(tmp_path):
    # A probability raster by hand: a cluster of 6 windows and one isolated window far away.
    p = np.full((40, 40), 0.1, np.float32)
    p[2:4, 2:5] = 0.8
    p[35, 35] = 0.8
    p[10, 10] = np.nan
    path = tmp_path / "probability.tif"
    with rasterio.open(path, "w", driver="GTiff", width=40, height=40, count=1, dtype="float32", crs="EPSG:32620",
                       transform=rasterio.transform.from_origin(LEFT, TOP, 240, 240), nodata=np.nan) as dst:
        dst.write(p, 1)
        dst.update_tags(stride=24, window=48)
    found = scan.detections(path, 0.5)
    assert len(found) == 2 and sorted(found["windows"]) == [1, 6]
    assert found.loc[found["windows"] == 1, "area_ha"].iloc[0] == pytest.approx(480 * 480 / 1e4)
    strict = scan.detections(path, 0.5, isolated_threshold=0.9, neighbours=5, isolation_m=3000)
    assert strict["windows"].tolist() == [6], "the lone window is 7.6 km from the cluster: it needs 0.9"
    written = scan.write_detections(found, tmp_path / "detections.geojson")
    doc = json.loads(written.read_text())
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 2
    back = gpd.read_file(written)
    assert back.crs.to_epsg() == 4326 and back.is_valid.all() and set(back.geom_type) == {"Polygon"}
    assert {"mean_confidence", "max_confidence", "area_ha", "windows"} <= set(back.columns)
    truth = gpd.GeoDataFrame(geometry=[box(LEFT + 480, TOP - 960, LEFT + 960, TOP - 480), box(LEFT + 9000, TOP - 100, LEFT + 9100, TOP)], crs=32620)
    scores = scan.evaluate_detections(found, truth)
    assert scores["precision"] == 0.5 and scores["recall"] == 0.5 and scores["true_polygons"] == 2


def test_missing_band_or_osm_is_refused(scene, tmp_path):
    model = scan_cnn((48, 48, 5))
    with pytest.raises(InputFileError, match="lacks band"):
        scan.scan_region(model_dir(tmp_path / "m5", model, (*BANDS, "B11")), scene, tmp_path / "o", progress=False)
    with pytest.raises(InputFileError, match="uses OSM channels"):
        scan.scan_region(model_dir(tmp_path / "osm", model, (*BANDS, "highway")), scene, tmp_path / "o", progress=False)


def test_dask_cluster_gives_the_same_raster(scene, tmp_path):
    from dask.distributed import LocalCluster

    model = randomize(scan_cnn((48, 48, 4), statistics=STATS))
    directory = model_dir(tmp_path / "m", model, BANDS)
    local = scan.scan_region(directory, scene, tmp_path / "sync", stride=24, tile_px=96, progress=False)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        remote = scan.scan_region(directory, scene, tmp_path / "dask", stride=24, tile_px=96, scheduler=cluster.scheduler_address, progress=False)
    assert remote.computed == remote.tiles == 12  # 11 x 9 windows in tiles of 3 x 3
    with rasterio.open(local.probability) as a, rasterio.open(remote.probability) as b:
        assert np.array_equal(a.read(1), b.read(1), equal_nan=True)


def test_windows_mostly_without_data_get_no_probability(tmp_path):
    data = np.random.default_rng(2).integers(200, 3000, (4, 120, 120)).astype(np.uint16)
    data[:, :50, :50] = 0  # no data in the top-left corner
    raster = write_raster(tmp_path / "edge.tif", data, bands=BANDS)
    model = randomize(scan_cnn((48, 48, 4), statistics=STATS))
    result = scan.scan_region(model_dir(tmp_path / "m", model, BANDS), raster, tmp_path / "out", stride=24, max_nodata_fraction=0.05, progress=False)
    with rasterio.open(result.probability) as src:
        p = src.read(1)
    # Window (0, 0) is all no data, (0, 1) starts at column 24 (26 of its 48 columns empty in 48 rows: 56 %),
    # (1, 1) covers rows 24-71, cols 24-71: 26 x 26 empty pixels (29 %); (2, 2) starts at 48 px: none empty.
    assert np.isnan(p[0, 0]) and np.isnan(p[0, 1]) and np.isnan(p[1, 1])
    assert np.isfinite(p[2, 2]) and np.isfinite(p[0, 2]) and np.isfinite(p[2, 0])


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_a_raster_without_crs_or_band_names_is_refused_before_any_work(tmp_path):
    keras.utils.set_random_seed(0)
    directory = model_dir(tmp_path / "m", scan_cnn((48, 48, len(BANDS))), BANDS)
    data = np.full((len(BANDS), 96, 96), 500, np.uint16)
    plain = tmp_path / "nocrs.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=96, height=96, count=len(BANDS), dtype="uint16") as dst:
        dst.write(data)
    with pytest.raises(InputFileError, match="no coordinate reference system"):
        scan.scan_region(directory, plain, tmp_path / "out", progress=False)
    named = tmp_path / "unnamed.tif"
    with rasterio.open(named, "w", driver="GTiff", width=96, height=96, count=len(BANDS), dtype="uint16", crs="EPSG:32620",
                       transform=rasterio.transform.from_origin(500000, 800000, 10, 10)) as dst:
        dst.write(data)
    with pytest.raises(InputFileError, match="raster_bands"):
        scan.scan_region(directory, named, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    result = scan.scan_region(directory, named, tmp_path / "out", raster_bands=BANDS, progress=False)
    assert result.shape == (3, 3)
