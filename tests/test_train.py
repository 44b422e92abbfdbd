"""Spatial split, augmentation, normalisation, training, the model directory and the CLIs."""

import dataclasses
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from asgm import predict, train
from asgm.backend import keras
from asgm.augment import dihedral
from asgm.config import TrainingConfig, load_training
from asgm.errors import AsgmError, ConfigError, InputFileError
from asgm.evaluate import balanced_threshold, expected_f_beta_threshold, f_beta_threshold
from asgm.models import normalize_patches
from asgm.patches import read_dataset
from asgm.sampling import min_distance_between, spatial_blocks, spatial_split
from conftest import write_toy_dataset

FAST = TrainingConfig(epochs=3, batch_size=16, patience=2, bootstrap=50, split=(0.6, 0.2, 0.2), ensemble=1)


def clustered_points(n_clusters=40, per_cluster=8, seed=0):
    """Clusters of points a few hundred metres apart, clusters kilometres apart (as real labels are)."""
    rng = np.random.default_rng(seed)
    centres = np.column_stack([rng.uniform(-62, -60, n_clusters), rng.uniform(6, 8, n_clusters)])
    pts = np.repeat(centres, per_cluster, axis=0) + rng.normal(0, 0.003, (n_clusters * per_cluster, 2))
    return pd.DataFrame({"lon": pts[:, 0], "lat": pts[:, 1], "label": rng.integers(0, 2, len(pts))})


def assert_held_out_far(index, split, distance):
    train = split["split"] == "train"
    for part in ("validation", "test"):
        held = split["split"] == part
        d = min_distance_between(index.loc[train, "lon"], index.loc[train, "lat"], index.loc[held, "lon"], index.loc[held, "lat"])
        assert d >= distance, (part, d)


def test_blocks_separate_points_by_the_distance():
    lon = np.array([0.0, 0.004, 0.008, 0.1])  # ~445 m steps at the equator, then far away
    assert list(spatial_blocks(lon, np.zeros(4), 500)) == [0, 0, 0, 1]
    assert len(set(spatial_blocks(lon, np.zeros(4), 400))) == 4


def test_split_keeps_held_out_patches_away_from_training():
    index = clustered_points()
    split = spatial_split(index, 679, seed=3)
    assert_held_out_far(index, split, 679)
    shares = split["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.7, abs=0.08)
    assert shares["test"] == pytest.approx(0.15, abs=0.08)
    assert not spatial_split(index, 679, seed=4)["split"].equals(split["split"])
    assert spatial_split(index, 679, seed=3).equals(split)


def test_trainings_that_differ_in_seed_share_their_split(tmp_path):
    """The split is drawn with ``split_seed`` (0), not ``seed``: two trainings with different seeds
    hold out the same patches (their test metrics compare and their thresholds share evidence);
    ``split_seed: null`` lets the seed move it, as before the setting existed."""
    dataset = read_dataset(write_toy_dataset(tmp_path / "toy", n=120))
    splits = {seed: train.split_dataset(dataset, dataclasses.replace(FAST, seed=seed)) for seed in (0, 1)}
    assert splits[0].equals(splits[1])
    following = {seed: train.split_dataset(dataset, dataclasses.replace(FAST, seed=seed, split_seed=None)) for seed in (0, 1)}
    assert following[0].equals(splits[0])
    assert not following[1]["split"].equals(splits[1]["split"])
    assert train.split_dataset(dataset, dataclasses.replace(FAST, seed=0, split_seed=1)).equals(following[1])


def test_split_by_areas_holds_out_whole_areas_far_from_training():
    """With ``areas`` the held-out splits are whole areas: their patches lie far beyond the minimum
    distance from training (tens of km for clusters spread over 2 degrees), while a block split
    leaves held-out clusters next to training ones."""
    index = clustered_points(n_clusters=60)
    by_area = spatial_split(index, 679, seed=0, areas=10)
    by_block = spatial_split(index, 679, seed=0)
    assert_held_out_far(index, by_area, 679)
    assert set(by_area["split"]) == {"train", "validation", "test"}
    assert by_area["block"].equals(by_block["block"])  # blocks (for the bootstrap) are unchanged
    far = {}
    for name, split in (("area", by_area), ("block", by_block)):
        train = split["split"] == "train"
        held = (split["split"] != "train").to_numpy()
        distances = [min_distance_between(index.loc[train, "lon"], index.loc[train, "lat"], [lon], [lat])
                     for lon, lat in index.loc[held, ["lon", "lat"]].to_numpy()]
        far[name] = np.median(distances)
    assert far["area"] > 2 * far["block"], far
    assert spatial_split(index, 679, seed=0, areas=10).equals(by_area)


def test_split_distance_guarantee_on_real_coordinates(reference_data):
    """On the real Amazon patches (which cluster, and repeat sites at two dates) no validation or test
    patch comes within one patch diagonal (679 m, > the 480 m patch width) of a training patch."""
    index = pd.read_csv(reference_data / "amazon-s2-6band" / "index.csv")
    for seed in range(3):
        split = spatial_split(index, 480 * np.sqrt(2), seed=seed)
        assert_held_out_far(index, split, 480 * np.sqrt(2))
        counts = split.groupby("split").size() / len(index)
        assert counts["train"] == pytest.approx(0.7, abs=0.03)
        for part in ("validation", "test"):
            assert index.loc[split["split"] == part, "label"].mean() == pytest.approx(index["label"].mean(), abs=0.05)


def test_dihedral_transforms_are_exact_symmetries():
    x = np.random.default_rng(0).integers(0, 2, (8, 5, 5, 2)).astype(np.float32)
    x[:] = x[0]
    out = dihedral(x, np.arange(8))
    assert np.array_equal(out[0], x[0])
    assert len({o.tobytes() for o in out}) == 8  # a random mask has no symmetry: all 8 differ
    assert set(np.unique(out)) <= {0.0, 1.0}
    assert np.array_equal(out[4], x[0][:, ::-1])


def test_class_weights_balance_the_loss():
    w = train.class_weights(np.array([1] * 10 + [0] * 30))
    assert w == {0: 40 / 60, 1: 40 / 20}
    assert 10 * w[1] == pytest.approx(30 * w[0])


def test_normalisation_scales_bands_and_keeps_masks():
    patches = np.array([[[[20000, 500, 1]]]], np.uint16)
    x = normalize_patches(patches, ["B2", "B3", "highway"], 10000)
    assert np.allclose(x, [[[[1.0, 0.05, 1.0]]]]) and x.dtype == np.float32
    assert np.allclose(normalize_patches(patches, ["B2", "B3", "highway"], 10000, ["highway", "B3"]), [[[[1.0, 0.05]]]])
    with pytest.raises(AsgmError, match=r"\['B4'\].*model needs"):
        normalize_patches(patches, ["B2", "B3", "highway"], 10000, ["B4"])


def test_training_config_from_profile_and_overrides(tmp_path):
    t = load_training("configs/demo.yaml", class_weights=True, seed=3)
    assert t.class_weights is True and t.seed == 3
    bare = tmp_path / "t.yaml"
    bare.write_text("epochs: 5\naugment: 'false'\nchannels: B2, B3\n")
    t = load_training(bare)
    assert (t.epochs, t.augment, t.channels) == (5, (), ("B2", "B3"))
    bare.write_text("split: [0.5, 0.5, 0.5]\n")
    with pytest.raises(ConfigError, match=r"(?s)training.split.*summing to 1"):
        load_training(bare)
    bare.write_text("channels: [B2, roads]\n")
    with pytest.raises(ConfigError, match="unknown channel"):
        load_training(bare)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small model trained through the CLI, shared by the tests below."""
    root = tmp_path_factory.mktemp("train")
    data = write_toy_dataset(root / "toy", n=120)
    config = root / "fast.yaml"
    config.write_text("epochs: 4\nbatch_size: 16\npatience: 3\nbootstrap: 50\nsplit: [0.6, 0.2, 0.2]\nensemble: 1\n")
    code = train.main(["--input_directory", str(data), "--output_directory", str(root / "models"),
                       "--experiment_name", "toy", "--config", str(config), "--class_weights", "--seed", "1"])
    assert code == 0
    return data, root / "models" / "toy"


def test_model_directory_follows_the_contract(trained):
    data, model_dir = trained
    for name in (*train.MODEL_FILES, "history.csv", "figures/learning_curves.png", "figures/test_curves.png", "figures/confusion_matrix.png"):
        assert (model_dir / name).is_file(), name
    config = json.loads((model_dir / "config.json").read_text())
    assert config["channels"] == ["B2", "B3", "B4", "B8", "highway"] and config["patch_size"] == 16
    assert config["training"]["class_weights"] is True and config["training"]["seed"] == 1
    ids = config["split"]["patch_ids"]
    assert sorted(sum(ids.values(), [])) == sorted(pd.read_csv(data / "index.csv")["patch_id"])
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["synthetic"] is True
    for name in ("precision", "sensitivity", "specificity", "f1", "average_precision", "roc_auc", "tp", "fp", "tn", "fn"):
        v = metrics["test"][name]
        assert v["ci_low"] <= v["value"] <= v["ci_high"], name


def test_threshold_is_chosen_on_validation_only(trained):
    _, model_dir = trained
    pred = pd.read_csv(model_dir / "predictions.csv")
    threshold = json.loads((model_dir / "threshold.json").read_text())
    val = pred[pred["split"] == "validation"]
    assert threshold["threshold"] == threshold["balanced"]["threshold"] == pytest.approx(balanced_threshold(val["probability"]))
    assert threshold["operating_point"] == "balanced" and threshold["f1"]["threshold"] == pytest.approx(expected_f_beta_threshold(val["probability"])[0])
    assert threshold["f1"]["labels_threshold"] == pytest.approx(f_beta_threshold(val["label"], val["probability"])[0])
    assert "expected sensitivity + specificity" in threshold["chosen_by"] and threshold["rule"] == "expected" and threshold["chosen_on"] == "validation"
    test = pred[pred["split"] == "test"]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["test"]["tp"]["value"] == ((test["probability"] >= threshold["threshold"]) & (test["label"] == 1)).sum()
    assert metrics["patches"]["test"] == len(test)


def test_thresholds_maximise_the_expected_f1_of_probabilities_and_the_labels_f1_of_mere_scores():
    """Calibrated probabilities: the plug-in rule (the labels' maximum kept beside it); uncalibrated
    scores (``calibration: none``) are no probabilities, so the labels' maximum decides, unless the caller
    says the scores were calibrated before (the out-of-fold path)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    raw = np.clip(0.35 * y + rng.normal(0.3, 0.2, 120), 0.01, 0.99)
    calibration, platt = train.calibrate_and_choose_thresholds(y, raw, TrainingConfig(operating_point="f1"))
    p = train.apply_calibration(calibration, raw)
    assert platt["threshold"] == platt["f1"]["threshold"] == pytest.approx(expected_f_beta_threshold(p)[0])
    assert platt["balanced"]["threshold"] == pytest.approx(balanced_threshold(p)) and platt["operating_point"] == "f1"
    assert platt["balanced"]["labels_validation_balanced_accuracy"] >= platt["balanced"]["validation_balanced_accuracy"]
    assert platt["f0_5"]["threshold"] == pytest.approx(expected_f_beta_threshold(p, 0.5)[0])
    assert platt["f1"]["labels_threshold"] == pytest.approx(f_beta_threshold(y, p)[0]) != pytest.approx(platt["threshold"])
    assert platt["f1"]["validation_f1"] <= platt["f1"]["labels_validation_f1"]
    _, plain = train.calibrate_and_choose_thresholds(y, raw, TrainingConfig(calibration="none", operating_point="f1"))
    assert plain["threshold"] == pytest.approx(f_beta_threshold(y, raw)[0]) and "expected" not in plain["chosen_by"] and plain["rule"] == "labels"
    _, before = train.calibrate_and_choose_thresholds(y, raw, TrainingConfig(calibration="none", operating_point="f1"), calibrated=True)
    assert before["threshold"] == pytest.approx(expected_f_beta_threshold(raw)[0])


def test_rerun_with_same_settings_does_not_retrain(trained):
    data, model_dir = trained
    before = (model_dir / "model.keras").stat().st_mtime_ns
    config = json.loads((model_dir / "config.json").read_text())["training"]
    config = TrainingConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    assert train.train_experiment(data, model_dir.parent, "toy", config) == model_dir
    assert (model_dir / "model.keras").stat().st_mtime_ns == before


def test_a_setting_added_later_keeps_older_models_valid_while_off():
    """A model saved before ``gce_q`` existed was trained exactly as one with ``gce_q: 0`` is: its
    key must not change (or every cached model retrains), while switching the setting on must —
    and so must a default that turned one on (``early_stopping_from: 0.25``)."""
    def old_key(config):
        before = {k: v for k, v in dataclasses.asdict(config).items() if k not in train.ADDED_SETTINGS_OFF and k != "split_seed"}
        settings = json.dumps(before, sort_keys=True, default=str)
        return hashlib.sha256(f"fp|{settings}||keras {keras.__version__}|format {train.MODEL_FORMAT}".encode()).hexdigest()[:16]

    off = dataclasses.replace(TrainingConfig(), **train.ADDED_SETTINGS_OFF)
    assert train._training_key("fp", off) == old_key(off)
    assert train._training_key("fp", dataclasses.replace(off, gce_q=0.7)) != old_key(off)
    assert train._training_key("fp", TrainingConfig()) != old_key(off)  # today's defaults stop later than those models did
    # split_seed: a model whose split was drawn with its seed (before the setting, or split_seed == seed) keeps its key
    seed1 = dataclasses.replace(off, seed=1)
    assert train._training_key("fp", dataclasses.replace(seed1, split_seed=None)) == old_key(seed1)
    assert train._training_key("fp", dataclasses.replace(seed1, split_seed=1)) == old_key(seed1)
    assert train._training_key("fp", seed1) != old_key(seed1)  # seed 1 on split 0: another split, another model
    assert train._training_key("fp", off) == train._training_key("fp", dataclasses.replace(off, split_seed=None))


def test_predict_cli_round_trip(trained, tmp_path):
    data, model_dir = trained
    out = tmp_path / "pred.csv"
    assert predict.main(["--model_directory", str(model_dir), "--input_directory", str(data), "--output", str(out)]) == 0
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["patch_id", "probability", "prediction"]
    saved = pd.read_csv(model_dir / "predictions.csv")
    assert np.allclose(pred["probability"], saved["probability"], atol=1e-5)
    threshold = json.loads((model_dir / "threshold.json").read_text())["threshold"]
    assert (pred["prediction"] == (pred["probability"] >= threshold)).all()


def test_predict_applies_the_operating_point_asked_for(trained, tmp_path, capsys):
    import shutil

    data, model_dir = trained
    thresholds = json.loads((model_dir / "threshold.json").read_text())
    from asgm.cli import OPERATING_POINTS

    for point in OPERATING_POINTS:
        out = tmp_path / f"{point}.csv"
        assert predict.main(["--model_directory", str(model_dir), "--input_directory", str(data), "--output", str(out), "--operating_point", point]) == 0
        threshold = thresholds[point]["threshold"]
        pred = pd.read_csv(out)
        assert (pred["prediction"] == (pred["probability"] >= threshold)).all()
        assert f"(probability >= {threshold:.3f}, the {point} threshold)" in capsys.readouterr().out
    # Without --operating_point the model's own decides (balanced by default), and the line says which.
    assert predict.main(["--model_directory", str(model_dir), "--input_directory", str(data), "--output", str(tmp_path / "own.csv")]) == 0
    assert f"(probability >= {thresholds['balanced']['threshold']:.3f}, the balanced threshold)" in capsys.readouterr().out
    # A model directory without that threshold (an older asgm, whose threshold was F1's) is named, and nothing is written.
    old = shutil.copytree(model_dir, tmp_path / "old_model")
    (old / "threshold.json").write_text(json.dumps({"threshold": 0.3}))
    assert predict.main(["--model_directory", str(old), "--input_directory", str(data), "--output", str(tmp_path / "f1.csv"), "--operating_point", "f1"]) == 0
    assert "(probability >= 0.300, the f1 threshold)" in capsys.readouterr().out
    assert predict.main(["--model_directory", str(old), "--input_directory", str(data), "--output", str(tmp_path / "x.csv"), "--operating_point", "f0_5"]) == 2
    assert "threshold.json" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()


def test_model_picks_its_channels_by_name_from_a_wider_dataset(trained, tmp_path):
    data, model_dir = trained
    wider = write_toy_dataset(tmp_path / "wider", n=120, channels=("B1", "B2", "B3", "B4", "B8", "highway", "waterway"))
    model = predict.load_trained_model(model_dir)
    probability = model.predict(read_dataset(wider), progress=False)
    ds = read_dataset(data)
    same = np.ascontiguousarray(np.asarray(read_dataset(wider).patches)[..., [1, 2, 3, 4, 5]])
    raw = np.asarray(model.model(normalize_patches(same, ds.channels, 10000))).ravel()
    assert np.allclose(probability, model.calibrate(raw), atol=1e-6)


def test_channel_mismatch_names_both_lists(trained, tmp_path, capsys):
    _, model_dir = trained
    other = write_toy_dataset(tmp_path / "s2only", n=20, channels=("B2", "B3", "B4", "B8"))
    with pytest.raises(InputFileError, match=r"(?s)\['highway'\].*dataset channels: \['B2', 'B3', 'B4', 'B8'\].*model channels:   \['B2', 'B3', 'B4', 'B8', 'highway'\]"):
        predict.load_trained_model(model_dir).check_dataset(read_dataset(other))
    assert predict.main(["--model_directory", str(model_dir), "--input_directory", str(other), "--output", str(tmp_path / "x.csv")]) == 2
    assert "model channels" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_training_refuses_a_split_without_both_classes(tmp_path):
    data = write_toy_dataset(tmp_path / "tiny", n=3)
    with pytest.raises(AsgmError, match="needs mines and non-mines"):
        train.train_experiment(data, tmp_path / "m", "x", FAST, progress=False)
    assert not (tmp_path / "m" / "x").exists()


@pytest.mark.slow
def test_training_on_a_toy_signal_learns_it(tmp_path):
    """A strong, simple signal (mines brighter in red) must be found: ROC-AUC well above chance."""
    data = write_toy_dataset(tmp_path / "toy", n=160, signal=0.1)
    config = TrainingConfig(epochs=6, batch_size=16, patience=6, bootstrap=50, standardize=True, architecture="bn_cnn", ensemble=1)
    metrics = train.read_metrics(train.train_experiment(data, tmp_path / "m", "learn", config, progress=False))
    assert metrics["test"]["roc_auc"]["value"] > 0.9, metrics["test"]["roc_auc"]


def test_freed_memory_is_kept_on_glibc_and_the_switch_turns_it_off(monkeypatch):
    import ctypes
    import sys

    from asgm import memory

    try:
        glibc = sys.platform.startswith("linux") and hasattr(ctypes.CDLL("libc.so.6"), "mallopt")
    except OSError:
        glibc = False
    assert memory.keep_freed_memory() is glibc
    monkeypatch.setenv(memory.ENVIRONMENT_VARIABLE, "0")
    assert memory.keep_freed_memory() is False
