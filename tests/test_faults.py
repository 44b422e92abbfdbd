"""Fault tests: each long step is killed (SIGKILL, no clean-up) in a subprocess at several points,
then rerun; the previous outputs must be intact, no temporary may remain, and the result must equal
an uninterrupted run's."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio

from asgm import scan, train
from asgm.models import scan_cnn
from conftest import LEFT, TOP, write_raster, write_toy_dataset
from test_scan import BANDS, STATS, model_dir, randomize

pytestmark = pytest.mark.slow
KILLED = -9


def run_killed(body: str, module: str, function: str, after: int, cwd: Path, signal_name: str = "SIGKILL") -> int:
    """Run ``body`` in a fresh Python with ``module.function`` (``function`` may be ``Class.method``)
    replaced by a wrapper that sends the process ``signal_name`` on call number ``after + 1`` (SIGKILL:
    no clean-up at all; SIGINT: Ctrl-C, a KeyboardInterrupt); return the exit code."""
    owner, _, attribute = function.rpartition(".")
    code = textwrap.dedent(f"""
        import functools, importlib, os, signal
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a parent (e.g. a pytest-xdist worker) may ignore SIGINT
        owner = functools.reduce(getattr, {owner.split(".") if owner else []!r}, importlib.import_module({module!r}))
        real = getattr(owner, {attribute!r})
        calls = [0]
        def tripwire(*args, **kwargs):
            calls[0] += 1
            if calls[0] > {after}:
                os.kill(os.getpid(), signal.{signal_name})
            return real(*args, **kwargs)
        setattr(owner, {attribute!r}, tripwire)
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True).returncode


def hidden(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*"))


TRAIN = """
from asgm import train
train.main(["--input_directory", "toy", "--output_directory", "models", "--experiment_name", "run", "--config", "fast.yaml"])
"""


@pytest.fixture(scope="module")
def training_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    write_toy_dataset(root / "toy", n=80)
    (root / "fast.yaml").write_text("architecture: thesis_cnn\nepochs: 2\nbatch_size: 16\npatience: 2\nbootstrap: 10\nsplit: [0.6, 0.2, 0.2]\nensemble: 1\n")
    # the uninterrupted run, in this process (a subprocess would spend most of its time importing TensorFlow)
    assert train.main(["--input_directory", str(root / "toy"), "--output_directory", str(root / "clean"), "--experiment_name", "run",
                       "--config", str(root / "fast.yaml")]) == 0
    return root


def test_training_killed_during_the_fit_and_the_directory_write_and_by_ctrl_c_then_rerun(training_setup, tmp_path):
    """SIGKILL during the fit, SIGKILL while the model directory is written, and Ctrl-C (SIGINT)
    during the fit, one after another: no half-written model directory, an earlier model untouched,
    Ctrl-C removes its own temporaries at once, the finished rerun those the kills left, and it
    trains the uninterrupted model."""
    root = tmp_path
    for name in ("toy", "fast.yaml"):
        src = training_setup / name
        (root / name).symlink_to(src, target_is_directory=src.is_dir())
    previous = root / "models" / "earlier"
    previous.mkdir(parents=True)
    (previous / "config.json").write_text('{"kept": true}')
    for module, function, after in (("asgm.train", "AugmentedBatches.__getitem__", 3),  # during the fit
                                    ("asgm.plots", "plot_confusion_matrix", 0)):  # while the model directory is written
        assert run_killed(TRAIN, module, function, after, root) == KILLED
        assert not (root / "models" / "run").exists(), f"no half-written model directory (killed in {function})"
        assert (previous / "config.json").read_text() == '{"kept": true}'
    left_by_kills = hidden(root / "models")
    assert run_killed(TRAIN, "asgm.train", "AugmentedBatches.__getitem__", 3, root, "SIGINT") not in (0, KILLED)
    assert not (root / "models" / "run").exists() and hidden(root / "models") == left_by_kills, "Ctrl-C cleans up its own temporaries"
    rerun = subprocess.run([sys.executable, "-c", TRAIN], cwd=root, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert hidden(root / "models") == [], "the killed runs' temporaries are gone"
    assert (previous / "config.json").read_text() == '{"kept": true}'
    a = pd.read_csv(root / "models" / "run" / "predictions.csv")
    b = pd.read_csv(training_setup / "clean" / "run" / "predictions.csv")
    assert a["split"].equals(b["split"])
    assert np.allclose(a["probability"], b["probability"], atol=1e-5), "the rerun trains the same model"


SCAN_PATH = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"  # the scan's test helpers
SCAN = """
import keras, numpy as np
from asgm import scan
from asgm.models import scan_cnn
from test_scan import model_dir, randomize, STATS, BANDS
directory = model_dir(__import__("pathlib").Path("m"), randomize(scan_cnn((48, 48, 4), statistics=STATS)), BANDS)
scan.scan_region(directory, "scene.tif", "{out}", stride=24, tile_px=120, progress=False)
"""


@pytest.fixture(scope="module")
def scan_setup(tmp_path_factory):
    """A scene and its uninterrupted scan, shared by the scan's fault tests."""
    root = tmp_path_factory.mktemp("scan")
    data = np.random.default_rng(1).integers(200, 3000, (4, 300, 260)).astype(np.uint16)
    write_raster(root / "scene.tif", data, bands=("B2", "B3", "B4", "B8"))
    # the uninterrupted scan, in this process (as SCAN does in a subprocess)
    directory = model_dir(root / "m", randomize(scan_cnn((48, 48, 4), statistics=STATS)), BANDS)
    scan.scan_region(directory, root / "scene.tif", root / "clean", stride=24, tile_px=120, progress=False)
    return root


def same_as_clean(out: Path, scan_setup: Path) -> bool:
    with rasterio.open(out / "probability.tif") as a, rasterio.open(scan_setup / "clean" / "probability.tif") as b:
        return np.array_equal(a.read(1), b.read(1), equal_nan=True)


def test_scan_killed_and_interrupted_then_rerun(scan_setup, tmp_path):
    """Killed before its first tile is written, stopped by Ctrl-C (SIGINT) after 2 tiles (no
    temporary left, finished tiles kept), killed again after 5 more (each run resumes from what the
    last left), then finished: bit-identical to an uninterrupted scan."""
    (tmp_path / "scene.tif").symlink_to(scan_setup / "scene.tif")
    for after, signal_name, tiles in ((0, "SIGKILL", 0), (2, "SIGINT", 2), (5, "SIGKILL", 7)):
        code = run_killed(SCAN_PATH + SCAN.format(out="out"), "asgm.scan", "scan_tile", after, tmp_path, signal_name)
        assert code == KILLED if signal_name == "SIGKILL" else code not in (0, KILLED)
        assert not (tmp_path / "out" / "probability.tif").exists()
        assert len(list((tmp_path / "out").glob("tiles-*/*.npy"))) == tiles, f"finished tiles are kept ({signal_name} after {after})"
        if signal_name == "SIGINT":
            assert hidden(tmp_path / "out") == [], "Ctrl-C leaves no temporary behind"
    rerun = subprocess.run([sys.executable, "-c", SCAN_PATH + SCAN.format(out="out")], cwd=tmp_path, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert same_as_clean(tmp_path / "out", scan_setup), "bit-identical to an uninterrupted scan"
    assert hidden(tmp_path / "out") == []


BUILD = f"""
import geopandas as gpd
from asgm.config import S2_BANDS, PatchConfig
from asgm.imagery.local import LocalRasterSource
from asgm.patches import build_dataset
pixels = [(r, c) for r in range(12, 90, 11) for c in range(12, 90, 11)]
xy = [({LEFT} + (c + 0.5) * 10, {TOP} - (r + 0.5) * 10) for r, c in pixels]
pts = gpd.GeoDataFrame({{"patch_id": [f"p{{i}}" for i in range(len(xy))], "label": [i % 2 for i in range(len(xy))]}},
                       geometry=gpd.points_from_xy(*zip(*xy)), crs=32620).to_crs(4326)
build_dataset(pts, LocalRasterSource("scene.tif", S2_BANDS), None, 16, "{{out}}", PatchConfig(sizes=(16,), chunk_size=4), progress=False)
"""


def test_dataset_build_killed_then_rerun(tmp_path):
    rng = np.random.default_rng(2)
    write_raster(tmp_path / "scene.tif", (900 + rng.normal(0, 30, (12, 100, 100))).astype(np.uint16))
    clean = subprocess.run([sys.executable, "-c", BUILD.replace("{out}", "clean")], cwd=tmp_path, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    assert run_killed(BUILD.replace("{out}", "ds"), "asgm.patches", "quality_check", 20, tmp_path) == KILLED
    assert not (tmp_path / "ds").exists() and hidden(tmp_path)
    rerun = subprocess.run([sys.executable, "-c", BUILD.replace("{out}", "ds")], cwd=tmp_path, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert hidden(tmp_path) == []
    for name in ("patches.npy", "index.csv"):
        assert (tmp_path / "ds" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name


OSM = """
from shapely.geometry import box
from asgm.osm import features_from_file, save_features
save_features(features_from_file("map.osm", box(-61.86, 7.29, -61.83, 7.32)), "{out}/osm.gpkg")
"""


def test_osm_extraction_killed_while_writing_then_rerun(tmp_path):
    from test_osm import OSM_XML

    from asgm.osm import read_features

    (tmp_path / "map.osm").write_text(OSM_XML)
    for out in ("clean", "out"):
        (tmp_path / out).mkdir()
    (tmp_path / "out" / "osm.gpkg").write_text("an older extraction")  # the previous output must survive the kill
    assert subprocess.run([sys.executable, "-c", OSM.replace("{out}", "clean")], cwd=tmp_path).returncode == 0
    assert run_killed(OSM.replace("{out}", "out"), "geopandas", "GeoDataFrame.to_file", 0, tmp_path) == KILLED
    assert (tmp_path / "out" / "osm.gpkg").read_text() == "an older extraction"
    assert subprocess.run([sys.executable, "-c", OSM.replace("{out}", "out")], cwd=tmp_path).returncode == 0
    assert hidden(tmp_path / "out") == []
    a, b = read_features(tmp_path / "out" / "osm.gpkg"), read_features(tmp_path / "clean" / "osm.gpkg")
    assert a.drop(columns="geometry").equals(b.drop(columns="geometry")) and a.geometry.equals(b.geometry)
