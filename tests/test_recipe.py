"""The training recipe's levers (augmentation, bagging, TTA, calibration), the CLI and its config
file, spatial cross-validation splitters, and the module graph."""

import ast
import dataclasses
import json
import warnings
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from asgm import train
from asgm.augment import affine_matrices, augment_batch, dihedral, warp
from asgm.calibrate import apply_calibration, fit_calibration
from asgm.config import AUGMENTATIONS, TrainingConfig
from asgm.crossval import cross_validate, fold_splits
from asgm.errors import AsgmError, AsgmWarning, ConfigError
from asgm.models import ensemble, fully_convolutional, predict_probabilities, scan_cnn
from asgm.patches import read_dataset
from asgm.predict import predict_dataset
from asgm.scar import open_ground_ha
from asgm.sampling import min_distance_between, spatial_folds, spatial_regions
from conftest import write_toy_dataset
from test_train import clustered_points

SRC = Path(__file__).resolve().parents[1] / "src" / "asgm"


# --- augmentation ------------------------------------------------------------------------------

def impulse(size=9, channels=2):
    x = np.zeros((1, size, size, channels), np.float32)
    x[0, 4, 5] = 1.0  # one pixel, one column right of the centre (4, 4)
    return x


def test_translation_moves_a_known_pixel():
    x = impulse()
    out = warp(x, affine_matrices(9, np.zeros(1), np.array([[2.0, 1.0]]), np.ones((1, 2))), np.array([False, True]))
    for c in range(2):
        assert np.argwhere(out[0, ..., c] > 0.5).tolist() == [[5, 7]]  # 1 row down, 2 columns right


def test_zoom_scales_about_the_centre():
    out = warp(impulse(), affine_matrices(9, np.zeros(1), np.zeros((1, 2)), np.full((1, 2), 2.0)), np.array([False, True]))
    assert out[0, 4, 6, 0] == pytest.approx(1.0) and out[0, 4, 6, 1] == 1.0  # offset 1 → offset 2


def test_quarter_rotation_equals_rot90():
    x = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)
    out = warp(x, affine_matrices(8, np.full(2, np.pi / 2), np.zeros((2, 2)), np.ones((2, 2))), np.zeros(3, bool))
    assert np.allclose(out, np.rot90(x, 1, axes=(1, 2)), atol=1e-5)


@pytest.mark.parametrize("transform", AUGMENTATIONS)
def test_each_transform_keeps_osm_channels_binary(transform):
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.random((6, 16, 16, 2)), rng.integers(0, 2, (6, 16, 16, 2))], axis=-1).astype(np.float32)
    binary = np.array([False, False, True, True])
    out = augment_batch(x, (transform,), binary, np.random.default_rng(2))
    assert out.shape == x.shape and out.dtype == np.float32
    assert set(np.unique(out[..., 2:])) <= {0.0, 1.0}
    if transform in ("gain", "contrast", "noise"):  # bands change, masks do not move
        assert np.array_equal(out[..., 2:], x[..., 2:]) and not np.allclose(out[..., :2], x[..., :2])
    else:
        assert not np.array_equal(out, x)
    assert np.array_equal(out, augment_batch(x, (transform,), binary, np.random.default_rng(2)))  # seeded


def test_unknown_transform_is_refused():
    with pytest.raises(AsgmError, match="unknown augmentation"):
        augment_batch(np.zeros((1, 4, 4, 1), np.float32), ("mixup",), np.zeros(1, bool), np.random.default_rng())


def test_bagging_draws_the_documented_sample():
    rows = train.bagging_sample(200, 0.7, seed=3)
    assert len(rows) == 140 and rows.min() >= 0 and rows.max() < 200
    assert len(np.unique(rows)) < 140  # drawn with replacement
    assert np.array_equal(rows, train.bagging_sample(200, 0.7, seed=3))
    assert not np.array_equal(rows, train.bagging_sample(200, 0.7, seed=4))
    assert np.array_equal(train.bagging_sample(5, None, seed=0), np.arange(5))


def test_tta_is_the_mean_over_the_eight_dihedral_views():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(inputs)))
    x = np.random.default_rng(0).random((5, 6, 6, 2)).astype(np.float32)
    views = [predict_probabilities(model, dihedral(x, t)) for t in range(8)]
    assert np.allclose(predict_probabilities(model, x, tta=True), np.mean(views, axis=0), atol=1e-6)
    assert not np.allclose(views[0], views[1])  # the model is not symmetric, so TTA changes something


# --- calibration -------------------------------------------------------------------------------

def test_calibration_maps_are_monotone_and_fit_what_they_see():
    rng = np.random.default_rng(0)
    p = rng.random(400)
    y = (rng.random(400) < p ** 3).astype(int)  # the model is overconfident about mines
    for method in ("platt", "isotonic"):
        cal = json.loads(json.dumps(fit_calibration(y, p, method)))  # survives JSON
        q = apply_calibration(cal, np.sort(p))
        assert np.all(np.diff(q) >= -1e-7)
        assert abs(apply_calibration(cal, p).mean() - y.mean()) < 0.02  # calibrated on average
    assert np.array_equal(apply_calibration({"method": "none"}, p), p.astype(np.float32))
    with pytest.raises(AsgmError, match="both|mines and non-mines"):
        fit_calibration(np.zeros(5), p[:5], "platt")


# --- the CLI and its config file ---------------------------------------------------------------

@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    """A model trained by the CLI from a YAML that sets keys that also have flags."""
    root = tmp_path_factory.mktemp("cli")
    data = write_toy_dataset(root / "toy", n=120)
    config = root / "recipe.yaml"
    config.write_text("architecture: thesis_cnn\nepochs: 2\nseed: 7\nclass_weights: true\nchannels: [B2, B4, highway]\n"
                      "batch_size: 16\npatience: 2\nbootstrap: 20\nsplit: [0.6, 0.2, 0.2]\ncalibration: platt\n"
                      "augment: [dihedral, rotate, noise]\nensemble: 1\n")
    assert train.main(["--input_directory", str(data), "--output_directory", str(root / "models"), "--experiment_name", "m",
                       "--config", str(config)]) == 0
    return data, root / "models" / "m", config


def test_cli_honours_the_config_file(cli_model):
    _, model_dir, _ = cli_model
    training = json.loads((model_dir / "config.json").read_text())["training"]
    assert (training["architecture"], training["epochs"], training["seed"], training["class_weights"]) == ("thesis_cnn", 2, 7, True)
    assert training["channels"] == ["B2", "B4", "highway"] and training["augment"] == ["dihedral", "rotate", "noise"]
    assert training["ensemble"] == 1 and TrainingConfig().ensemble == 3  # the file's value, not the default
    assert json.loads((model_dir / "config.json").read_text())["channels"] == ["B2", "B4", "highway"]


def test_cli_flags_override_the_file(cli_model, tmp_path):
    data, _, config = cli_model
    assert train.main(["--input_directory", str(data), "--output_directory", str(tmp_path), "--experiment_name", "m",
                       "--config", str(config), "--seed", "3", "--no-class_weights", "--epochs", "1"]) == 0
    training = json.loads((tmp_path / "m" / "config.json").read_text())["training"]
    assert (training["seed"], training["class_weights"], training["epochs"], training["architecture"]) == (3, False, 1, "thesis_cnn")


def test_cli_help_lists_every_key_with_its_default(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = capsys.readouterr().out
    for key, value in TrainingConfig().__dict__.items():
        shown = list(value) if isinstance(value, tuple) else value
        assert f"  {key}: {shown}" in text


def test_calibration_is_fitted_on_validation_only_and_applied_by_predict(cli_model, tmp_path):
    data, model_dir, _ = cli_model
    pred = pd.read_csv(model_dir / "predictions.csv")
    stored = json.loads((model_dir / "calibration.json").read_text())
    val = pred[pred["split"] == "validation"]
    refit = fit_calibration(val["label"], val["raw_probability"], "platt")
    assert stored["slope"] == pytest.approx(refit["slope"]) and stored["intercept"] == pytest.approx(refit["intercept"])
    assert stored["fitted_on"] == len(val)
    assert train.threshold_scores(model_dir)["patch_id"].tolist() == val["patch_id"].tolist()  # the thresholds' patches
    everything = fit_calibration(pred["label"], pred["raw_probability"], "platt")
    assert (everything["slope"], everything["intercept"]) != pytest.approx((stored["slope"], stored["intercept"]))
    assert np.allclose(pred["probability"], apply_calibration(stored, pred["raw_probability"]), atol=1e-6)
    table = predict_dataset(model_dir, data, tmp_path / "p.csv", progress=False)
    assert np.allclose(table["probability"], pred["probability"], atol=1e-5)  # predict applies the same map


def test_early_stopping_keeps_no_weights_from_the_ignored_first_epochs(tmp_path):
    """early_stopping_from: 0.5 of 8 epochs — the kept weights are from epoch 5 or later even when the
    validation PR-AUC peaks at once (an easy toy set), and training runs past them by the patience."""
    data = write_toy_dataset(tmp_path / "toy", n=96, signal=0.3)
    best = {}
    for share in (0.0, 0.5):
        config = TrainingConfig(architecture="thesis_cnn", ensemble=1, epochs=8, patience=1, lr_patience=None, bootstrap=20,
                                early_stopping_from=share)
        model_dir = train.train_experiment(data, tmp_path / "models", f"from_{share}", config, progress=False)
        best[share] = json.loads((model_dir / "metrics.json").read_text())["best_epochs"][0]
        epochs = len(pd.read_csv(model_dir / "history.csv"))
        assert epochs >= best[share] + (1 if best[share] < 8 else 0)
    assert best[0.5] >= 5 and best[0.0] < 5, best


def test_label_smoothing_reaches_the_loss():
    from asgm.models import build_model

    plain, smooth = (build_model("thesis_cnn", (16, 16, 3), label_smoothing=ls) for ls in (0.0, 0.1))
    assert plain.loss.get_config()["label_smoothing"] == 0.0 and smooth.loss.get_config()["label_smoothing"] == pytest.approx(0.1)
    y, p = np.array([[1.0]]), np.array([[0.999]])
    assert float(smooth.loss(y, p)) > 10 * float(plain.loss(y, p))  # a confident right answer still costs something


def test_generalized_cross_entropy_is_bounded_and_tends_to_cross_entropy():
    from asgm.backend import keras
    from asgm.models import GeneralizedCrossEntropy, build_model

    y, p = np.array([[1.0], [0.0], [1.0], [0.0]]), np.array([[0.9], [0.2], [1e-6], [0.999999]])
    cross_entropy = keras.losses.BinaryCrossentropy()
    assert float(GeneralizedCrossEntropy(1e-4)(y, p)) == pytest.approx(float(cross_entropy(y, p)), rel=1e-3)
    gce = GeneralizedCrossEntropy(0.7)
    wrong = float(gce(y[2:], p[2:]))  # two confidently wrong labels
    assert wrong <= 1 / 0.7 + 1e-6 and float(cross_entropy(y[2:], p[2:])) > 8 * wrong
    right = float(gce(y[:1], p[:1]))
    assert right == pytest.approx((1 - 0.9 ** 0.7) / 0.7, rel=1e-5)
    flat = np.array([1.0, 0.0, 1.0, 0.0])  # labels as training feeds them, beside (n, 1) outputs
    assert float(gce(flat, p)) == pytest.approx(float(gce(y, p)))
    model = build_model("thesis_cnn", (16, 16, 3), gce_q=0.7)
    assert isinstance(model.loss, GeneralizedCrossEntropy) and model.loss.q == pytest.approx(0.7)
    assert isinstance(build_model("thesis_cnn", (16, 16, 3)).loss, keras.losses.BinaryCrossentropy)


def test_config_rejects_bad_recipe_values(tmp_path):
    from asgm.config import load_training

    for text, key in (("augment: [dihedral, mixup]\n", "training.augment"), ("bagging: 1.5\n", "training.bagging"),
                      ("calibration: beta\n", "training.calibration"), ("lr_factor: 2\n", "training.lr_factor"),
                      ("mine_min_open_ha: -1\n", "training.mine_min_open_ha"), ("label_noise: forget\n", "training.label_noise"),
                      ("thresholds_from: test\n", "training.thresholds_from"), ("label_folds: 1\n", "training.label_folds"),
                      ("label_smoothing: 0.5\n", "training.label_smoothing"), ("gce_q: 1.5\n", "training.gce_q"),
                      ("member_validation: bags\n", "training.member_validation"), ("early_stopping_from: 1\n", "training.early_stopping_from"),
                      ("member_validation: folds\nensemble: 1\n", "training.member_validation"),
                      ("member_validation: folds\nthresholds_from: out_of_fold\n", "training.thresholds_from")):
        path = tmp_path / "t.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_training(path)
    path.write_text("lr_patience: null\nbagging: 0.7\n")
    t = load_training(path)
    assert t.lr_patience is None and t.bagging == 0.7  # null means "no schedule" here, not "default"


# --- spatial cross-validation ------------------------------------------------------------------

def assert_groups_far_apart(index, groups, column, distance):
    for g in np.unique(groups[column]):
        held = groups[column].to_numpy() == g
        d = min_distance_between(index.loc[~held, "lon"], index.loc[~held, "lat"], index.loc[held, "lon"], index.loc[held, "lat"])
        assert d >= distance, (g, d)


def test_spatial_folds_and_regions_never_touch_each_other():
    index = clustered_points(n_clusters=60, per_cluster=6, seed=2)
    folds = spatial_folds(index, 5, 679, seed=1)
    assert sorted(folds["fold"].unique()) == list(range(5))
    assert folds["fold"].value_counts().min() > 0.1 * len(index)
    assert_groups_far_apart(index, folds, "fold", 679)
    regions = spatial_regions(index, 6, 679, seed=0)
    assert sorted(regions["region"].unique()) == list(range(6))
    assert_groups_far_apart(index, regions, "region", 679)
    assert list(regions.groupby("region")["region_lon"].first()) == sorted(regions.groupby("region")["region_lon"].first())


def test_splitters_on_the_real_coordinates(reference_data):
    index = pd.read_csv(reference_data / "amazon-s2-6band" / "index.csv")
    distance = 480 * np.sqrt(2)
    assert_groups_far_apart(index, spatial_folds(index, 5, distance), "fold", distance)
    assert_groups_far_apart(index, spatial_regions(index, 6, distance), "region", distance)


def test_fold_splits_keep_validation_and_test_away_from_training(tmp_path):
    data = read_dataset(write_toy_dataset(tmp_path / "toy", n=160))
    config = TrainingConfig(split=(0.6, 0.2, 0.2))
    groups, splits = fold_splits(data, "kfold", 4, config)
    held_out = np.zeros(len(data.index), int)
    for fold, split in enumerate(splits):
        assert set(split["split"]) == {"train", "validation", "test"}
        assert np.array_equal(split["split"] == "test", groups["fold"] == fold)
        held_out += (split["split"] == "test").to_numpy()
        index = data.index
        train_rows = split["split"] == "train"
        for part in ("validation", "test"):
            rows = split["split"] == part
            assert min_distance_between(index.loc[train_rows, "lon"], index.loc[train_rows, "lat"],
                                        index.loc[rows, "lon"], index.loc[rows, "lat"]) >= train.default_min_distance(data)
    assert (held_out == 1).all()  # every patch is held out exactly once
    with pytest.raises(AsgmError, match="scheme"):
        fold_splits(data, "random", 4, config)
    # patches kept out of training (e.g. labels a reference contradicts) are still tested in their fold, on the same folds
    exclude = np.arange(len(data.index)) % 5 == 0
    same_groups, kept_out = fold_splits(data, "kfold", 4, config, exclude=exclude)
    assert same_groups.equals(groups)
    for plain, split in zip(splits, kept_out):
        used = split["split"].isin(["train", "validation"]).to_numpy()
        assert not (used & exclude).any()
        assert np.array_equal(split["split"] == "test", plain["split"] == "test")
        assert np.array_equal(split["split"][~exclude], plain["split"][~exclude])


@pytest.mark.slow
def test_pruning_label_issues_finds_planted_flips_and_beats_training_on_them(tmp_path):
    """30 % of the mines labelled non-mine: confident learning on a 3-fold cross-validation of the
    training and validation patches finds most flips, and the model trained without them is
    better on the true labels of the test patches than the one trained on every label."""
    from sklearn.metrics import log_loss

    data = write_toy_dataset(tmp_path / "toy", n=240, signal=0.02)
    index = pd.read_csv(data / "index.csv")
    truth = index["label"].to_numpy().copy()
    flipped = np.random.default_rng(0).choice(np.flatnonzero(truth == 1), 36, replace=False)
    index.loc[flipped, "label"] = 0
    index.to_csv(data / "index.csv", index=False)
    scores = {}
    for noise in (None, "prune"):
        config = TrainingConfig(ensemble=1, epochs=15, patience=5, bootstrap=50, label_noise=noise,
                                thresholds_from="out_of_fold" if noise else "validation")
        model_dir = train.train_experiment(data, tmp_path / "models", f"noise_{noise}", config, progress=False)
        pred = pd.read_csv(model_dir / "predictions.csv")
        test = (pred["split"] == "test").to_numpy()
        scores[noise] = log_loss(truth[test], pred["probability"][test])
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["noise_None", "noise_prune", "noise_prune_labelfold0",
                                                                       "noise_prune_labelfold1", "noise_prune_labelfold2"]
    planted = np.zeros(len(truth), bool)
    planted[flipped] = True
    seen = pred["out_of_fold"].notna().to_numpy()
    assert seen.sum() == (~test).sum()  # every training and validation patch got one out-of-fold probability, no test patch
    flags = pred["label_issue"].to_numpy()
    assert (flags & planted).sum() >= 0.5 * (planted & seen).sum() and (flags & planted).sum() >= 0.75 * flags.sum()
    assert (pred.loc[flags, "split"] == "excluded").all()
    assert scores["prune"] < 0.7 * scores[None], scores
    thresholds = json.loads((model_dir / "threshold.json").read_text())
    assert "out-of-fold" in thresholds["chosen_by"] and thresholds["chosen_on"] == "out_of_fold" and thresholds["evidence"]["patches"] == int((seen & ~flags).sum())
    assert "validation" in thresholds  # the validation split's own thresholds are kept beside
    assert len(train.threshold_scores(model_dir)) == thresholds["evidence"]["patches"]
    stamp = (tmp_path / "models" / "noise_prune_labelfold0" / "model.keras").stat().st_mtime_ns
    train.train_experiment(data, tmp_path / "models", "noise_prune", config, progress=False)
    assert (tmp_path / "models" / "noise_prune_labelfold0" / "model.keras").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_members_on_their_own_folds_validate_where_they_do_not_train(tmp_path, monkeypatch):
    """member_validation: folds — member i early-stops on spatial fold i of the training and
    validation patches and never trains on it; its outputs there are the out-of-fold evidence of
    the calibration and thresholds, and the test split is untouched."""
    data = write_toy_dataset(tmp_path / "toy", n=120)
    seen = []
    fit = train._fit_member
    monkeypatch.setattr(train, "_fit_member", lambda x, y, t, split, *a, **k: seen.append(split.copy()) or fit(x, y, t, split, *a, **k))
    config = TrainingConfig(ensemble=3, epochs=4, patience=2, bootstrap=50, member_validation="folds")
    model_dir = train.train_experiment(data, tmp_path / "models", "folds", config, progress=False)
    pred = pd.read_csv(model_dir / "predictions.csv")
    test = (pred["split"] == "test").to_numpy()
    folds = pred["member_fold"].to_numpy()
    assert ((folds == -1) == test).all() and sorted(set(folds[~test])) == [0, 1, 2]
    dataset = read_dataset(data)
    assert test.sum() == (train.split_dataset(dataset, config)["split"] == "test").sum()  # the same test split as shared validation
    assert_groups_far_apart(dataset.index.loc[~test], pred.loc[~test, ["member_fold"]], "member_fold", train.default_min_distance(dataset))
    assert len(seen) == 3
    for m, split in enumerate(seen):
        assert ((split == "validation") == (folds == m)).all()
        assert ((split == "train") == (~test & (folds != m))).all() and (split[test] == "test").all()
    # the out-of-fold probabilities come from the member that validated on each patch, calibrated
    x = train.normalize_patches(dataset.patches, dataset.channels, float(dataset.meta["scale"]), dataset.channels)
    model = keras.models.load_model(model_dir / "model.keras", compile=False)
    calibration = json.loads((model_dir / "calibration.json").read_text())
    for m in range(3):
        own = folds == m
        member = predict_probabilities(model.get_layer(f"member_{m}"), x[own])
        np.testing.assert_allclose(apply_calibration(calibration, member), pred.loc[own, "member_probability"], atol=1e-5)
    thresholds = json.loads((model_dir / "threshold.json").read_text())
    assert thresholds["chosen_on"] == "out_of_fold" and thresholds["evidence"]["patches"] == int((~test).sum())
    chosen_on = train.threshold_scores(model_dir)
    assert chosen_on["probability"].tolist() == pred.loc[~test, "member_probability"].tolist()
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["patches"]["validation"] == metrics["patches"]["train"] == int((~test).sum())


@pytest.mark.slow
def test_cross_validation_gives_every_patch_one_out_of_fold_prediction(tmp_path):
    data = write_toy_dataset(tmp_path / "toy", n=120)
    config = TrainingConfig(architecture="thesis_cnn", epochs=1, batch_size=16, bootstrap=20, split=(0.6, 0.2, 0.2), ensemble=1)
    cv = cross_validate(data, tmp_path / "cv", config, "kfold", 3, progress=False)
    assert len(cv.predictions) == 120 and cv.predictions["patch_id"].is_unique
    table = cv.metrics(n_boot=20)
    assert {"balanced", "f1", "spec"} == set(table.index.get_level_values(0))
    for fold, model_dir in zip(cv.folds["fold"], cv.folds["model_dir"]):  # each patch judged at its own fold's thresholds
        chosen = json.loads((Path(model_dir) / "threshold.json").read_text())
        rows = cv.predictions[cv.predictions["fold"] == fold]
        assert (rows["threshold_balanced"] == chosen["balanced"]["threshold"]).all() and (rows["threshold_f1"] == chosen["f1"]["threshold"]).all()
    assert (tmp_path / "cv" / "cv_predictions.csv").is_file()
    again = cross_validate(data, tmp_path / "cv", config, "kfold", 3, progress=False)  # resumes: nothing retrained
    assert (again.folds["seconds"] == 0).all()
    pd.testing.assert_frame_equal(again.predictions, cv.predictions)


# --- the scan's ensemble and the module graph -------------------------------------------------

def test_an_ensemble_of_fully_convolutional_members_stays_fully_convolutional():
    keras.utils.set_random_seed(0)
    members = [scan_cnn((48, 48, 3)) for _ in range(2)]
    model = ensemble(members)
    converted = fully_convolutional(model)
    assert converted is not None and converted[1] == 12
    region = np.random.default_rng(0).random((1, 72, 72, 3)).astype(np.float32)
    dense = np.asarray(converted[0](region))[0, ..., 0]
    windows = np.stack([region[0, r:r + 48, c:c + 48] for r in (0, 24) for c in (0, 24)])
    assert np.allclose(dense[::2, ::2].ravel(), predict_probabilities(model, windows), atol=1e-4)


def module_imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("asgm"):
            found |= {f"asgm.{a.name}" for a in node.names} if node.module == "asgm" else {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("asgm")}
    return found


def test_no_import_circle_in_the_library():
    modules = {f"asgm.{'.'.join(p.relative_to(SRC).with_suffix('').parts)}".removesuffix(".__init__"): p for p in SRC.rglob("*.py")}
    graph = {m: {i for i in module_imports(p, top_level_only=True) if i in modules and i != m} for m, p in modules.items()}
    state = {}

    def visit(m, stack):
        state[m] = "open"
        for n in graph[m]:
            assert state.get(n) != "open", f"import circle: {' → '.join(stack + [m, n])}"
            if n not in state:
                visit(n, stack + [m])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [])
    # metrics and thresholds depend on nothing that trains, not even lazily
    assert not {"asgm.train", "asgm.experiments", "asgm.crossval"} & module_imports(modules["asgm.evaluate"], top_level_only=False)


# --- mine patches without open ground ----------------------------------------------------------

def test_mines_without_open_ground_are_left_out_of_training_and_validation_only(tmp_path):
    data = write_toy_dataset(tmp_path / "toy", n=80, channels=("B2", "B3", "B4", "B8"))
    patches = np.load(data / "patches.npy")
    labels = pd.read_csv(data / "index.csv")["label"].to_numpy()
    patches[..., 3] = 3000  # B8 high everywhere: vegetation, no open ground
    shown = np.flatnonzero(labels == 1)[::2]
    patches[shown, :8, :8, 2], patches[shown, :8, :8, 3] = 1500, 500  # 64 px of bare ground: 0.64 ha at 10 m
    np.save(data / "patches.npy", patches)
    dataset = read_dataset(data)
    hectares = open_ground_ha(dataset)
    assert np.allclose(hectares[shown], 0.64) and np.allclose(np.delete(hectares, shown), 0)
    config = TrainingConfig(mine_min_open_ha=0.5, split=(0.6, 0.2, 0.2))
    split = train.split_dataset(dataset, config)["split"].to_numpy()
    plain = train.split_dataset(dataset, dataclasses.replace(config, mine_min_open_ha=None))["split"].to_numpy()
    hidden = (labels == 1) & (hectares < 0.5)
    assert np.array_equal(split == train.EXCLUDED, hidden & (plain != "test"))  # exactly the hidden mines outside the test
    assert np.array_equal(split[split != train.EXCLUDED], plain[split != train.EXCLUDED])  # nothing else moves
    assert (split == "test").sum() == (plain == "test").sum()  # the test keeps every patch


def test_training_warns_when_many_mines_show_no_open_ground(tmp_path):
    data = write_toy_dataset(tmp_path / "toy", n=40, channels=("B2", "B3", "B4", "B8"))
    patches = np.load(data / "patches.npy")
    patches[..., 3] = 3000  # vegetation everywhere: no mine shows open ground
    np.save(data / "patches.npy", patches)
    with pytest.warns(AsgmWarning, match=r"20 of 20 mine patches .* less than 0.5 ha of open ground"):
        train.warn_hidden_mines(read_dataset(data))
    patches[:, :8, :8, 3] = 500  # 0.64 ha of open ground in every patch
    np.save(data / "patches.npy", patches)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train.warn_hidden_mines(read_dataset(data))


def test_a_teacher_is_trained_on_the_same_split_and_its_probabilities_soften_the_training_targets(tmp_path, monkeypatch):
    data = write_toy_dataset(tmp_path / "toy", n=60)
    seen = []

    class Recording(train.AugmentedBatches):
        def __init__(self, x, y, *args, **kwargs):
            seen.append(np.array(y))
            super().__init__(x, y, *args, **kwargs)

    monkeypatch.setattr(train, "AugmentedBatches", Recording)
    config = TrainingConfig(epochs=1, batch_size=16, patience=1, bootstrap=20, split=(0.6, 0.2, 0.2), ensemble=1, teacher="thesis_cnn")
    student = train.train_experiment(data, tmp_path / "m", "student", config, progress=False)
    teacher = tmp_path / "m" / "student_teacher"
    assert json.loads((teacher / "config.json").read_text())["training"]["architecture"] == "thesis_cnn"
    assert json.loads((student / "config.json").read_text())["training"]["teacher"] == "thesis_cnn"
    taught, learned = pd.read_csv(teacher / "predictions.csv"), pd.read_csv(student / "predictions.csv")
    assert taught["split"].tolist() == learned["split"].tolist()  # the same split, so the teacher never saw the student's test
    rows = learned["split"] == "train"
    assert len(seen) == 2 and np.array_equal(seen[0], taught.loc[rows, "label"])  # the teacher learns the true labels
    expected = 0.5 * learned.loc[rows, "label"].to_numpy() + 0.5 * taught.loc[rows, "probability"].to_numpy()
    assert np.allclose(seen[1], expected, atol=1e-6)  # the student the mean of label and teacher


def test_an_unknown_teacher_is_refused_before_anything_is_written(tmp_path):
    data = write_toy_dataset(tmp_path / "toy", n=40)
    with pytest.raises(AsgmError, match=r"training.teacher"):
        train.train_experiment(data, tmp_path / "m", "x", TrainingConfig(ensemble=1, teacher="resnet"), progress=False)
    assert not (tmp_path / "m").exists()
