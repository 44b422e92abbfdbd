"""Results analysis: the experiment grid and its caching, the tables, paired comparisons,
explanations on tiny models, and the OSM leakage audit."""

import dataclasses
import json
import shutil
from pathlib import Path

import geopandas as gpd
import keras
import numpy as np
import pandas as pd
import pytest
from pyproj import Transformer
from shapely.geometry import LineString, Point

from asgm import evaluate, experiments, explain, leakage, osm
from asgm.config import EXPERIMENT_GROUPS, TrainingConfig, load_profile
from asgm.errors import AsgmError, ConfigError, InputFileError
from asgm.models import bn_cnn, ensemble, predict_probabilities
from asgm.patches import read_dataset
from asgm.train import EXCLUDED, train_experiment
from conftest import write_toy_dataset

ROOT = Path(__file__).resolve().parents[1]
FAST = TrainingConfig(epochs=2, batch_size=16, patience=2, bootstrap=20, split=(0.6, 0.2, 0.2), ensemble=1)
TO_UTM = Transformer.from_crs(4326, 32620, always_xy=True)


# --- the grid -----------------------------------------------------------------------------------

def test_grid_follows_the_profile_groups():
    profile = load_profile("demo", root=ROOT, experiments={"groups": list(EXPERIMENT_GROUPS)})  # the whole grid (GRID=full)
    grid = {e.name: e for e in experiments.experiment_grid(profile)}
    osm = profile.osm.channels
    assert {"s2_osm", "s2_only"} <= set(grid)
    assert grid["s2_osm"].reference == "s2_only" and len(grid["s2_only"].channels) == len(profile.imagery.bands)
    for c in osm:
        assert grid[f"s2_plus_{c}"].channels == profile.imagery.bands + (c,)
        assert c not in grid[f"s2_osm_minus_{c}"].channels and grid[f"s2_osm_minus_{c}"].reference == "s2_osm"
    # the patch-size pair shares one split, spaced for the largest patch
    assert grid["s2_osm_256px"].min_distance_m == grid["s2_osm_48px"].min_distance_m == pytest.approx(256 * 10 * 2 ** 0.5)
    assert grid["s2_osm_256px"].reference == "s2_osm_48px"
    assert grid["s2_osm_curated_negatives"].train_negatives == ("curated_negative",)
    assert grid["s2_osm_class_weights"].class_weights and not grid["s2_osm"].class_weights
    assert all(e.reference in grid for e in grid.values() if e.reference)

    only_osm = dataclasses.replace(profile, experiments=dataclasses.replace(profile.experiments, groups=("osm",)))
    assert [e.name for e in experiments.experiment_grid(only_osm)] == ["s2_osm", "s2_only"]
    no_osm = dataclasses.replace(profile, osm=dataclasses.replace(profile.osm, channels=()))
    names = [e.name for e in experiments.experiment_grid(no_osm)]
    assert names[0] == "s2_only" and not any("plus" in n or "minus" in n for n in names)


def test_grid_runs_train_the_grids_ensemble_size():
    base = TrainingConfig(ensemble=3, epochs=40)
    run = experiments.Experiment("s2_only", "osm", 48, ("B2",))
    assert run.training(base, seed=1, ensemble=1).ensemble == 1
    assert run.training(base, seed=1).ensemble == 3, "null: the training section's"
    assert run.training(base, seed=1, epochs=5).epochs == 5 and run.training(base, seed=2).seed == 2
    assert load_profile("bolivar", root=ROOT).experiments.ensemble == 1 and load_profile("bolivar", root=ROOT).training.ensemble == 3


def test_unknown_experiment_group_is_refused():
    with pytest.raises(ConfigError, match="unknown group"):
        load_profile("demo", root=ROOT, experiments={"groups": ["osm", "colour"]})


def toy_grid(channels):
    bands = tuple(c for c in channels if c.startswith("B"))
    return [experiments.Experiment("s2_osm", "osm", 16, tuple(channels), reference="s2_only"),
            experiments.Experiment("s2_only", "osm", 16, bands)]


@pytest.mark.slow
def test_run_grid_trains_only_what_is_missing_reuses_and_runs_on_a_dask_cluster(tmp_path):
    """One grid, trained once, then: a rerun trains nothing; of two lost runs (an interrupted
    session), the one trained the same way elsewhere (notebook 03) is copied, the one trained
    differently there is trained again; and two dask worker processes (one core each) train the same runs.
    The cluster's models are close to, not bit-identical with, the in-process ones: TensorFlow
    trained in a dask worker differs from run to run (benchmarks/grid.py measures how much on real
    patches); the in-process grid is bit-reproducible."""
    data = write_toy_dataset(tmp_path / "toy", n=60)
    grid = toy_grid(read_dataset(data).channels)
    first = experiments.run_grid(grid, {16: data}, FAST, (0,), tmp_path / "grid", progress=False)
    assert (first["status"] == "trained").all() and len(first) == 2
    stamps = {d: (Path(d) / "model.keras").stat().st_mtime_ns for d in first["model_dir"]}

    second = experiments.run_grid(grid, {16: data}, FAST, (0,), tmp_path / "grid", progress=False)
    assert (second["status"] == "cached").all()
    assert stamps == {d: (Path(d) / "model.keras").stat().st_mtime_ns for d in second["model_dir"]}

    # notebook 03's directory: s2_osm trained the same way, s2_only with other settings
    elsewhere = tmp_path / "nb03"
    for name in ("s2_osm", "s2_only"):
        shutil.copytree(tmp_path / "grid" / name / "seed0", elsewhere / name)
    stored = json.loads((elsewhere / "s2_only" / "config.json").read_text())
    stored["training"]["epochs"], stored["training_key"] = 1, "trained with 1 epoch"
    (elsewhere / "s2_only" / "config.json").write_text(json.dumps(stored))
    # both runs lost from the grid: s2_osm entirely, s2_only half-written (an interrupted session)
    shutil.rmtree(tmp_path / "grid" / "s2_osm" / "seed0")
    (tmp_path / "grid" / "s2_only" / "seed0" / "metrics.json").unlink()
    third = experiments.run_grid(grid, {16: data}, FAST, (0,), tmp_path / "grid", progress=False, reuse=elsewhere)
    assert third.set_index("experiment")["status"].to_dict() == {"s2_osm": "reused", "s2_only": "trained"}, "s2_only was trained differently"
    assert (tmp_path / "grid" / "s2_osm" / "seed0" / "predictions.csv").read_bytes() == (elsewhere / "s2_osm" / "predictions.csv").read_bytes()
    assert experiments.run_grid(grid, {16: data}, FAST, (0,), tmp_path / "grid", progress=False)["status"].eq("cached").all()

    there = experiments.run_grid(grid, {16: data}, FAST, (0,), tmp_path / "there", progress=False, scheduler="local", workers=2)
    assert there["status"].tolist() == ["trained", "trained"]
    for a, b in zip(third["model_dir"], there["model_dir"]):
        pa, pb = (pd.read_csv(Path(d) / "predictions.csv") for d in (a, b))
        assert pa["patch_id"].tolist() == pb["patch_id"].tolist()
        np.testing.assert_allclose(pa["probability"], pb["probability"], atol=0.05)


def test_run_grid_skips_impossible_runs_with_the_reason(tmp_path):
    data = write_toy_dataset(tmp_path / "toy", n=40)
    grid = [experiments.Experiment("far", "patch_size", 16, ("B2", "B4"), min_distance_m=1e6),
            experiments.Experiment("big", "patch_size", 256, ("B2", "B4"))]
    runs = experiments.run_grid(grid, {16: data}, FAST, (0,), tmp_path / "grid", progress=False)
    assert runs["status"].tolist() == ["skipped", "skipped"]
    assert "1 spatial block(s)" in runs["reason"][0]
    assert "no 256 px dataset" in runs["reason"][1]
    table = experiments.grid_table(runs, n_boot=10)
    assert table["reason"].str.len().gt(0).all() and (table["n_seeds"] == 0).all()


def test_training_on_one_kind_of_negative_keeps_the_test_split_whole(tmp_path):
    data = write_toy_dataset(tmp_path / "toy", n=80)
    index = pd.read_csv(data / "index.csv")
    index["category"] = np.where(index["label"] == 1, "mine", np.where(np.arange(len(index)) % 4 == 0, "curated_negative", "random_negative"))
    index.to_csv(data / "index.csv", index=False)
    model_dir = train_experiment(data, tmp_path / "m", "curated", dataclasses.replace(FAST, train_negatives=("curated_negative",)), progress=False)
    pred = pd.read_csv(model_dir / "predictions.csv").merge(index[["patch_id", "category"]], on="patch_id")
    excluded = pred["split"] == EXCLUDED
    assert excluded.any() and (pred.loc[excluded, "category"] == "random_negative").all()
    assert set(pred.loc[pred["split"].isin(["train", "validation"]) & (pred["label"] == 0), "category"]) == {"curated_negative"}
    assert "random_negative" in set(pred.loc[pred["split"] == "test", "category"])
    with pytest.raises(AsgmError, match="quarry_negative"):
        train_experiment(data, tmp_path / "m", "bad", dataclasses.replace(FAST, train_negatives=("quarry_negative",)), progress=False)


# --- tables and comparisons (built from predictions, no training) ---------------------------------

def write_run(model_dir: Path, y, p, blocks, threshold=0.5):
    model_dir.mkdir(parents=True)
    pd.DataFrame({"patch_id": [f"p{i}" for i in range(len(y))], "split": "test", "block": blocks, "probability": p,
                  "label": y}).to_csv(model_dir / "predictions.csv", index=False)
    (model_dir / "metrics.json").write_text(json.dumps({"test": {"threshold": threshold}}))
    return model_dir


def fake_runs(tmp_path, quality: dict[str, float], seeds=(0, 1, 2), n=120, n_blocks=30):
    """Runs whose probabilities separate the classes with the given strength (0: chance)."""
    rows = []
    for name, strength in quality.items():
        for s in seeds:
            rng = np.random.default_rng(s)  # the same labels and blocks for every experiment of a seed
            y = rng.integers(0, 2, n)
            blocks = rng.integers(0, n_blocks, n)
            noise = np.random.default_rng([s, len(name)]).random(n)
            p = np.clip((1 - strength) * noise + strength * y, 0, 1)
            rows.append({"experiment": name, "group": "osm", "reference": None, "seed": s, "status": "cached", "reason": "",
                         "model_dir": write_run(tmp_path / name / f"seed{s}", y, p, blocks)})
    return pd.DataFrame(rows)


def test_grid_table_reports_mean_spread_and_interval(tmp_path):
    runs = fake_runs(tmp_path, {"good": 0.3, "chance": 0.0})
    runs.loc[len(runs)] = {"experiment": "lost", "group": "osm", "reference": None, "seed": 0, "status": "skipped",
                           "reason": "no split", "model_dir": tmp_path / "none"}
    table = experiments.grid_table(runs, n_boot=200).set_index(["experiment", "metric"])
    per_seed = [evaluate.binary_metrics(r.y, r.p, r.threshold)["roc_auc"]
                for r in experiments.collect_runs(runs)["good"].values()]
    good = table.loc[("good", "roc_auc")]
    assert good["mean"] == pytest.approx(np.mean(per_seed)) and good["sd"] == pytest.approx(np.std(per_seed, ddof=1))
    assert good["ci_low"] <= good["mean"] <= good["ci_high"] and good["ci_high"] - good["ci_low"] > 0
    assert good["n_seeds"] == 3 and good["test_blocks"] == 30
    assert table.loc[("chance", "roc_auc"), "ci_high"] < good["ci_low"]
    assert table.loc[("lost", ""), "reason"] == "no split"


def test_paired_difference_detects_a_real_gap_and_nothing_else(tmp_path):
    runs = fake_runs(tmp_path, {"good": 0.3, "same": 0.3, "chance": 0.0})
    collected = experiments.collect_runs(runs)
    gap = evaluate.paired_difference(collected["good"], collected["chance"], n_boot=200)
    assert gap.loc["roc_auc", "ci_low"] > 0 and gap.loc["roc_auc", "supported"]
    identical = evaluate.paired_difference(collected["good"], collected["good"], n_boot=50)
    assert (identical.loc["roc_auc", ["mean", "ci_low", "ci_high"]] == 0).all() and not identical.loc["roc_auc", "supported"]
    noise = evaluate.paired_difference(collected["good"], collected["same"], n_boot=200)
    assert not noise.loc["roc_auc", "supported"]
    assert "includes 0" in evaluate.describe_difference({**noise.loc["roc_auc"], "metric": "roc_auc", "experiment": "good", "reference": "same"})
    assert "higher" in evaluate.describe_difference({**gap.loc["roc_auc"], "metric": "roc_auc", "experiment": "good", "reference": "chance"})


def test_a_gap_on_too_few_blocks_is_not_claimed(tmp_path):
    runs = fake_runs(tmp_path, {"good": 0.3, "chance": 0.0}, seeds=(0,), n_blocks=3)
    collected = experiments.collect_runs(runs)
    gap = evaluate.paired_difference(collected["good"], collected["chance"], n_boot=100)
    assert gap.loc["roc_auc", "test_blocks"] == 3 and not gap.loc["roc_auc", "supported"]
    assert "too few" in evaluate.describe_difference({**gap.loc["roc_auc"], "metric": "roc_auc", "experiment": "good", "reference": "chance"})


def test_grid_comparisons_pair_each_experiment_with_its_reference(tmp_path):
    runs = fake_runs(tmp_path, {"s2_osm": 0.3, "s2_only": 0.1})
    grid = [experiments.Experiment("s2_osm", "osm", 16, ("B2", "highway"), reference="s2_only", question="Does OSM help?"),
            experiments.Experiment("s2_only", "osm", 16, ("B2",)), experiments.Experiment("s2_plus_x", "single_osm", 16, ("B2",), reference="s2_only")]
    comparisons = experiments.grid_comparisons(runs, grid, n_boot=50)
    assert set(comparisons["experiment"]) == {"s2_osm"} and set(comparisons["reference"]) == {"s2_only"}
    assert set(comparisons["metric"]) == set(evaluate.GRID_METRICS)


def test_joint_block_weights_draw_a_shared_block_once():
    rng = np.random.default_rng(0)
    a, b = np.array([1, 1, 2, 5]), np.array([2, 5, 5, 9])
    for _ in range(20):
        wa, wb = evaluate.joint_block_weights([a, b], rng)
        assert wa[2] == wb[0] and wa[3] == wb[1] == wb[2]  # the same block, the same weight in both runs
        assert wa[0] == wa[1]
        assert wa[0] + wa[2] + wa[3] + wb[3] == 4  # four distinct blocks, four draws


def test_category_breakdown_per_kind_of_point():
    y = np.array([1] * 10 + [0] * 20)
    predicted = np.array([True] * 8 + [False] * 2 + [True] * 5 + [False] * 15)
    category = np.array(["mine"] * 10 + ["sandbar"] * 10 + ["forest"] * 10)
    table = evaluate.category_breakdown(y, predicted, category, np.arange(30) // 2, n_boot=200)
    assert table.loc["mine", "correct"] == pytest.approx(0.8)
    assert table.loc["sandbar", "correct"] == pytest.approx(0.5) and table.loc["forest", "correct"] == pytest.approx(1.0)
    assert table.loc["sandbar", "ci_low"] < 0.5 < table.loc["sandbar", "ci_high"]
    assert table.loc["forest", ["ci_low", "ci_high"]].tolist() == [1.0, 1.0]
    assert table.loc["mine", "blocks"] == 5


# --- explanations on tiny hand-built models --------------------------------------------------------

def brightness_model(size=16, channels=2, weights=(1.0, 0.0)):
    """P(mine) = sigmoid(4 · mean of the weighted channels − 1): a 1×1 convolution, ReLU, global average."""
    inputs = keras.Input((size, size, channels))
    x = keras.layers.Conv2D(1, 1, use_bias=False, name="conv")(inputs)
    x = keras.layers.Activation("relu", name="conv_relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("conv").set_weights([np.asarray(weights, np.float32).reshape(1, 1, channels, 1)])
    model.layers[-1].set_weights([np.array([[4.0]], np.float32), np.array([-1.0], np.float32)])
    return model


def bright_square(n=3, size=16, at=(2, 10)):
    x = np.zeros((n, size, size, 2), np.float32)
    r, c = at
    x[:, r:r + 4, c:c + 4, 0] = 1.0
    x[..., 1] = np.random.default_rng(0).random((n, size, size))
    return x


def test_grad_cam_points_at_the_evidence():
    model = brightness_model()
    assert explain.last_conv_layer(model) == "conv_relu"
    cam = explain.grad_cam(model, bright_square())
    assert cam.shape == (3, 16, 16) and cam.min() >= 0 and cam.max() == pytest.approx(1.0)
    assert cam[:, 2:6, 10:14].mean() > 0.5 and cam[:, 10:, :6].max() < 0.1


def test_occlusion_drops_the_score_only_over_the_evidence():
    model = brightness_model()
    x = bright_square()
    sensitivity = explain.occlusion_sensitivity(model, x, fill=np.zeros(2, np.float32), windows=(4,), stride=2)
    assert sensitivity.shape == (3, 16, 16)
    assert sensitivity[:, 2:6, 10:14].mean() > 0.01
    assert np.abs(sensitivity[:, 10:, :6]).max() < 1e-6  # nothing there to occlude
    with pytest.raises(AsgmError, match="must fit"):
        explain.occlusion_sensitivity(model, x, np.zeros(2), windows=(4, 32))


def test_occlusion_at_several_sizes_shows_evidence_too_large_for_a_small_window():
    """A detector that needs one bright pixel anywhere (max pooling) and a bright square filling most
    of the patch: no small square can hide it all, so a single small window maps no evidence; a
    larger window shows the square and nothing beyond it. A small square of evidence keeps the
    small window's sharp map."""
    inputs = keras.Input((16, 16, 2))
    x = keras.layers.Conv2D(1, 1, use_bias=False, name="conv")(inputs)
    x = keras.layers.GlobalMaxPooling2D()(keras.layers.Activation("relu")(x))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    model.get_layer("conv").set_weights([np.array([1.0, 0.0], np.float32).reshape(1, 1, 2, 1)])
    model.layers[-1].set_weights([np.array([[4.0]], np.float32), np.array([-1.0], np.float32)])
    x = bright_square(size=16, at=(3, 3))
    x[:, 3:13, 3:13, 0] = 1.0  # a 10 px square
    small = explain.occlusion_sensitivity(model, x, np.zeros(2, np.float32), windows=(4,), stride=2)
    assert np.abs(small).max() < 1e-6
    scales = explain.occlusion_sensitivity(model, x, np.zeros(2, np.float32), windows=(4, 8, 12), stride=2)
    assert scales[:, 3:13, 3:13].min() > 0.05
    assert np.abs(scales[:, :2, :]).max() < 1e-6 and np.abs(scales[:, 14:, :]).max() < 1e-6
    pit = bright_square(size=16, at=(2, 10))
    sharp = explain.occlusion_sensitivity(model, pit, np.zeros(2, np.float32), windows=(4,), stride=2)
    np.testing.assert_allclose(explain.occlusion_sensitivity(model, pit, np.zeros(2, np.float32), windows=(12, 4, 8), stride=2), sharp)


def test_occlusion_fill_is_forest_and_empties_osm():
    # half the pixels forest (dark red, bright near infrared), half bright bare sand
    x = np.zeros((4, 8, 8, 3), np.float32)
    x[:, :4, :, 0], x[:, :4, :, 1] = 0.03, 0.35  # forest: NDVI 0.84
    x[:, 4:, :, 0], x[:, 4:, :, 1] = 0.30, 0.33  # sand: NDVI 0.05
    x[..., 2] = 1.0
    assert explain.occlusion_fill(x, ["B4", "B8", "highway"]).tolist() == pytest.approx([0.03, 0.35, 0.0], abs=1e-6)
    # without NDVI: the per-band median of every pixel
    assert explain.occlusion_fill(x[..., :1], ["B2"]).tolist() == pytest.approx([0.165], abs=1e-6)


@pytest.mark.slow
def test_explanations_of_a_trained_model_point_at_the_planted_evidence():
    """A CNN trained on patches where only a bright square (at a random place) makes a mine: for
    held-out mines, Grad-CAM's and occlusion's peaks fall inside the square; the same check on the
    map shifted or flipped fails."""
    from asgm.models import band_statistics, build_model

    rng = np.random.default_rng(0)
    n, size = 400, 24
    x = np.zeros((n, size, size, 2), np.float32)
    x[..., 0] = 0.03 + rng.normal(0, 0.01, (n, size, size))  # forest-dark red
    x[..., 1] = 0.35 + rng.normal(0, 0.02, (n, size, size))  # forest-bright near infrared
    y = np.arange(n) % 2
    corners = rng.integers(2, size - 8, (n, 2))
    for i in np.flatnonzero(y):
        r, c = corners[i]
        x[i, r:r + 6, c:c + 6] = (0.30, 0.33)  # bare sand
    keras.utils.set_random_seed(0)
    model = build_model("bn_cnn", x.shape[1:], band_statistics(x[:300], ["B4", "B8"]), learning_rate=1e-3)  # the default architecture
    model.fit(x[:300], y[:300], epochs=40, batch_size=32, verbose=0)  # long enough for batch normalisation's running statistics
    test = [i for i in range(300, n) if y[i]][:8]
    assert (model.predict(x[test], verbose=0)[:, 0] > 0.9).all()
    cam = explain.grad_cam(model, x[test])
    occlusion = explain.occlusion_sensitivity(model, x[test], explain.occlusion_fill(x[300:], ["B4", "B8"]), windows=(6,), stride=2)

    def peaks_inside(maps) -> float:
        hits = []
        for m, i in zip(maps, test):
            r, c = np.unravel_index(np.argmax(m), m.shape)
            top, left = corners[i]
            hits.append(top - 1 <= r <= top + 6 and left - 1 <= c <= left + 6)
        return float(np.mean(hits))

    assert peaks_inside(cam) >= 0.75 and peaks_inside(occlusion) >= 0.75
    assert occlusion.max(axis=(1, 2)).min() > 0.3  # occluding the sand with forest takes the mine away
    assert peaks_inside(np.flip(cam, axis=(1, 2))) <= 0.25 and peaks_inside(np.roll(occlusion, 10, axis=2)) <= 0.25


def test_permutation_importance_finds_the_channel_the_model_uses():
    rng = np.random.default_rng(1)
    y = np.arange(80) % 2
    x = np.zeros((80, 8, 8, 2), np.float32)
    x[..., 0] = (0.2 + 0.5 * y)[:, None, None] + rng.normal(0, 0.05, (80, 8, 8))
    x[..., 1] = rng.random((80, 8, 8))
    model = brightness_model(size=8)
    table = explain.permutation_importance(model, x, y, np.arange(80) // 4, {"used": [0], "ignored": [1]}, n_repeats=3, n_boot=100)
    assert table.index[0] == "used" and table.loc["used", "roc_auc_drop"] > 0.3 and table.loc["used", "ci_low"] > 0
    assert table.loc["ignored", "roc_auc_drop"] == pytest.approx(0.0, abs=1e-9)


def test_channel_groups_and_explaining_an_ensemble():
    assert explain.channel_groups(["B2", "B4", "highway", "waterway"]) == {"Sentinel-2 bands": [0, 1], "highway": [2], "waterway": [3]}
    assert explain.channel_groups(["B2", "B3", "B4", "B8", "B11", "B12"]) == {
        "visible (B2, B3, B4)": [0, 1, 2], "near infrared (B8)": [3], "short-wave infrared (B11, B12)": [4, 5]}
    cnn = bn_cnn((16, 16, 3), widths=(4, 4, 4))
    assert isinstance(cnn.get_layer(explain.last_conv_layer(cnn)), keras.layers.Activation)
    assert explain.grad_cam(cnn, np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)).shape == (2, 16, 16)
    members = [bn_cnn((16, 16, 3), widths=(4, 4, 4)), bn_cnn((16, 16, 3), widths=(4, 4, 4))]
    with pytest.raises(AsgmError, match="member_0"):
        explain.last_conv_layer(ensemble(members))
    # an ensemble (the default recipe trains three) is explained by its members' mean map
    x = np.random.default_rng(1).random((3, 16, 16, 3)).astype(np.float32)
    maps = [explain.grad_cam(m, x) for m in members]
    mean = np.mean(maps, axis=0)
    peak = mean.reshape(3, -1).max(axis=1)[:, None, None]
    expected = np.divide(mean, peak, out=np.zeros_like(mean), where=peak > 0)
    assert np.allclose(explain.grad_cam(ensemble(members), x), expected, atol=1e-6)


def test_pick_examples_orders_by_confidence():
    y = np.array([1, 1, 0, 0, 1, 0])
    p = np.array([0.9, 0.6, 0.8, 0.1, 0.2, 0.7])
    picked = explain.pick_examples(y, p, 0.5, per_kind=2)
    assert picked["true positive"].tolist() == [0, 1]
    assert picked["false positive"].tolist() == [2, 5]
    assert picked["false negative"].tolist() == [4] and picked["true negative"].tolist() == [3]


# --- OSM leakage audit ------------------------------------------------------------------------------

def osm_scene(tmp_path, n=20):
    """Points 1 km apart on a line; mines (odd) each under a mapped quarry, a road crossing all of them,
    and an OSM-only dataset whose landuse channel is what a model would read."""
    lon = -61.9 + 0.009 * np.arange(n)
    lat = np.full(n, 7.3)
    labels = np.arange(n) % 2
    x, y = TO_UTM.transform(lon, lat)
    index = pd.DataFrame({"patch_id": [f"p{i}" for i in range(n)], "lon": lon, "lat": lat, "label": labels,
                          "crs": "EPSG:32620", "x_centre": x, "y_centre": y})
    quarries = [Point(lo, la).buffer(0.0008) for lo, la, lab in zip(lon, lat, labels) if lab]
    road = LineString([(lon[0] - 0.01, 7.3002), (lon[-1] + 0.01, 7.3002)])
    features = gpd.GeoDataFrame({"highway": [None] * len(quarries) + ["primary"], "landuse": ["quarry"] * len(quarries) + [None]},
                                geometry=quarries + [road], crs=4326)
    for key in ("building", "aeroway", "waterway"):
        features[key] = None
    path = tmp_path / "osm_ds"
    path.mkdir()
    from asgm.osm import OsmRasterizer
    from asgm.regions import patch_grids
    rasterizer = OsmRasterizer(features, "EPSG:32620", ("landuse",))
    patches = np.stack([rasterizer.rasterize(g) for g in patch_grids(index, 16, 10.0)])
    np.save(path / "patches.npy", patches)
    index.to_csv(path / "index.csv", index=False)
    (path / "dataset.json").write_text(json.dumps({"channels": ["landuse"], "scale": 10000, "patch_size": 16, "resolution_m": 10}))
    return read_dataset(path), features


def test_tag_audit_flags_the_tag_that_gives_mines_away(tmp_path):
    dataset, features = osm_scene(tmp_path)
    assert dataset.patches[1].any() and not dataset.patches[0].any()  # quarries burned on mines only
    presence = leakage.tag_presence(features, dataset.index, 16, 10.0)
    assert presence["landuse=quarry"].tolist() == (dataset.index["label"] == 1).tolist()
    assert presence["highway=primary"].all()
    audit = leakage.tag_audit(presence, dataset.index["label"])
    assert audit.loc["landuse=quarry", "flag"] == "mining-related tag" and audit.index[0] == "landuse=quarry"
    assert audit.loc["landuse=quarry", ["share_of_mines", "share_of_non_mines", "mine_fraction"]].tolist() == [1.0, 0.0, 1.0]
    assert audit.loc["highway=primary", "flag"] == "" and audit.loc["highway=primary", "mine_fraction"] == 0.5
    presence.columns = ["landuse=pit" if c == "landuse=quarry" else c for c in presence.columns]
    assert leakage.tag_audit(presence, dataset.index["label"]).loc["landuse=pit", "flag"].startswith("≥ 90%")


def test_erasing_a_leaky_tag_changes_what_the_model_sees(tmp_path):
    dataset, features = osm_scene(tmp_path)
    erased = leakage.erase_tags(features, ["landuse=quarry"])
    assert erased["landuse"].isna().all() and len(erased) == 1  # the quarries had no other key
    model = brightness_model(channels=1, weights=(1.0,))
    rows = np.arange(len(dataset))
    with_tags = leakage.predictions_with_osm(model, ["landuse"], dataset, features, rows)
    stored = predict_probabilities(model, np.asarray(dataset.patches, np.float32))
    assert with_tags == pytest.approx(stored)  # burning again reproduces the dataset's channel
    without = leakage.predictions_with_osm(model, ["landuse"], dataset, erased, rows)
    labels = dataset.index["label"].to_numpy()
    assert (with_tags[labels == 1] > without[labels == 1] + 0.05).all()
    assert without == pytest.approx(np.full(len(rows), without[0]))  # nothing left to tell mines apart


def test_osm_snapshot_date_and_imagery_dates(tmp_path):
    stamped = tmp_path / "a.osm"
    stamped.write_text('<osm version="0.6">\n<node id="1" lat="7" lon="-61" timestamp="2023-05-01T10:00:00Z"/>\n'
                       '<node id="2" lat="7" lon="-61" timestamp="2024-02-03T10:00:00Z"/>\n</osm>\n')
    assert osm.osm_snapshot_date(stamped) == "2024-02-03"
    overpass = tmp_path / "b.osm"
    overpass.write_text('<osm version="0.6">\n<meta osm_base="2025-07-09T08:00:00Z"/>\n</osm>\n')
    assert osm.osm_snapshot_date(overpass) == "2025-07-09"
    bare = tmp_path / "c.osm"
    bare.write_text('<osm version="0.6">\n<node id="1" lat="7" lon="-61"/>\n</osm>\n')
    assert osm.osm_snapshot_date(bare) is None
    index = pd.DataFrame({"date_start": ["2020-01-01", "2021-01-01"], "date_end": ["2020-12-31", "2023-12-31"]})
    assert leakage.imagery_dates(index) == ("2020-01-01", "2023-12-31")
    assert leakage.imagery_dates(index.drop(columns="date_end")) is None


def test_point_kinds_use_the_finest_description():
    from asgm.patches import point_kinds

    index = pd.DataFrame({"label": [1, 0, 0, 0], "category": ["mine", "curated_negative", "random_negative", None],
                          "kind": ["mine", "sandbar", None, None]})
    assert point_kinds(index).tolist() == ["mine", "sandbar", "random_negative", "non-mine"]
    assert point_kinds(index[["label"]]).tolist() == ["mine", "non-mine", "non-mine", "non-mine"]


def test_dataset_rows_follow_the_given_patch_ids(tmp_path):
    dataset = read_dataset(write_toy_dataset(tmp_path / "toy", n=10))
    assert dataset.rows(["p7", "p2", "p9"]).tolist() == [7, 2, 9]
    with pytest.raises(InputFileError, match="missing"):
        dataset.rows(["p3", "missing"])
