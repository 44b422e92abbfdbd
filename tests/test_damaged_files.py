"""Every file of a dataset directory and of a model directory can be missing, empty, truncated, of the
wrong JSON type or short of a key: each case ends in an asgm error naming the file, never a raw
traceback, and changes nothing on disk."""

import json
import shutil

import pytest

from asgm import predict
from asgm.errors import AsgmError
from asgm.patches import read_dataset
from conftest import snapshot, write_toy_dataset


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DATASET_DAMAGE = {
    "patches.npy missing": ("patches.npy", lambda p: p.unlink()),
    "patches.npy empty": ("patches.npy", lambda p: p.write_bytes(b"")),
    "patches.npy truncated": ("patches.npy", truncate),
    "patches.npy pickled": ("patches.npy", lambda p: __import__("numpy").save(p, __import__("numpy").array([{"a": 1}], dtype=object))),
    "index.csv missing": ("index.csv", lambda p: p.unlink()),
    "index.csv empty": ("index.csv", lambda p: p.write_text("")),
    "index.csv truncated": ("index.csv", truncate),
    "index.csv without label": ("index.csv", lambda p: p.write_text("patch_id,lon,lat\n" + "x,0,0\n" * 3)),
    "dataset.json missing": ("dataset.json", lambda p: p.unlink()),
    "dataset.json empty": ("dataset.json", lambda p: p.write_text("")),
    "dataset.json truncated": ("dataset.json", truncate),
    "dataset.json a list": ("dataset.json", lambda p: p.write_text("[1, 2]")),
    "dataset.json channels not a list": ("dataset.json", lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "channels": 5}))),
    "dataset.json scale zero": ("dataset.json", lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "scale": 0}))),
    "dataset.json scale text": ("dataset.json", lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "scale": "ten"}))),
    "dataset.json without patch_size": ("dataset.json", lambda p: p.write_text(json.dumps({k: v for k, v in json.loads(p.read_text()).items() if k != "patch_size"}))),
}


@pytest.fixture(scope="module")
def clean_dataset(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("clean") / "toy", n=20)


@pytest.mark.parametrize("case", list(DATASET_DAMAGE))
def test_damaged_dataset_directories_get_a_clear_error(clean_dataset, tmp_path, case):
    name, damage = DATASET_DAMAGE[case]
    data = tmp_path / "toy"
    shutil.copytree(clean_dataset, data)
    damage(data / name)
    before = snapshot(tmp_path)
    with pytest.raises(AsgmError, match=name.replace(".", r"\.")):
        read_dataset(data)
    assert snapshot(tmp_path) == before


MODEL_DAMAGE = {
    "model.keras missing": ("model.keras", lambda p: p.unlink()),
    "model.keras corrupt": ("model.keras", lambda p: p.write_bytes(b"not a zip")),
    "model.keras truncated": ("model.keras", truncate),
    "config.json empty": ("config.json", lambda p: p.write_text("")),
    "config.json a list": ("config.json", lambda p: p.write_text("[]")),
    "config.json without channels": ("config.json", lambda p: p.write_text(json.dumps({k: v for k, v in json.loads(p.read_text()).items() if k != "channels"}))),
    "threshold.json truncated": ("threshold.json", truncate),
    "threshold.json without threshold": ("threshold.json", lambda p: p.write_text("{}")),
    "threshold.json threshold text": ("threshold.json", lambda p: p.write_text('{"threshold": "high"}')),
    # a threshold no probability reaches (or NaN) would silently predict no mine at all
    "threshold.json threshold NaN": ("threshold.json", lambda p: p.write_text('{"threshold": NaN}')),
    "threshold.json threshold 5": ("threshold.json", lambda p: p.write_text('{"threshold": 5.0}')),
    "calibration.json missing": ("calibration.json", lambda p: p.unlink()),
    "calibration.json unknown method": ("calibration.json", lambda p: p.write_text('{"method": "magic"}')),
    "calibration.json platt without slope": ("calibration.json", lambda p: p.write_text('{"method": "platt"}')),
}


@pytest.fixture(scope="module")
def clean_model(tmp_path_factory, clean_dataset):
    from asgm.config import TrainingConfig
    from asgm.train import train_experiment

    root = tmp_path_factory.mktemp("model")
    data = write_toy_dataset(root / "toy", n=80)
    config = TrainingConfig(architecture="thesis_cnn", epochs=1, batch_size=16, bootstrap=10, split=(0.6, 0.2, 0.2), ensemble=1)
    return train_experiment(data, root / "models", "m", config, progress=False), data


@pytest.mark.parametrize("case", list(MODEL_DAMAGE))
def test_damaged_model_directories_get_a_clear_error(clean_model, tmp_path, case, capsys):
    model_dir, data = clean_model
    name, damage = MODEL_DAMAGE[case]
    broken = tmp_path / "m"
    shutil.copytree(model_dir, broken)
    damage(broken / name)
    before = snapshot(tmp_path)
    with pytest.raises(AsgmError, match=name.replace(".", r"\.")):
        predict.load_trained_model(broken).predict(read_dataset(data), progress=False)
    assert predict.main(["--model_directory", str(broken), "--input_directory", str(data), "--output", str(tmp_path / "p.csv")]) == 2
    assert name in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_predict_says_what_stands_behind_its_threshold(clean_model, tmp_path, capsys):
    model_dir, data = clean_model
    evidence = json.loads((model_dir / "threshold.json").read_text())["evidence"]
    assert predict.main(["--model_directory", str(model_dir), "--input_directory", str(data), "--output", str(tmp_path / "p.csv")]) == 0
    out = capsys.readouterr().out
    sens, spec = evidence["threshold"]["sensitivity"], evidence["threshold"]["specificity"]
    assert f"chosen on {evidence['patches']} patches ({evidence['mines']} mines; the validation patches)" in out
    assert f"found {sens[0]:.0%} of the mines [95 % interval {sens[1]:.0%}–{sens[2]:.0%}] at specificity {spec[0]:.0%}" in out


def test_the_parent_of_model_directories_names_them(clean_model):
    model_dir, _ = clean_model
    with pytest.raises(AsgmError, match=f"(?s)model.keras: missing.*inside it: {model_dir.name}"):
        predict.load_trained_model(model_dir.parent)


def test_constant_imagery_is_refused_by_training_and_flagged_by_predict(clean_model, tmp_path):
    """An all-zero export: training stops naming patches.npy (nothing is written); predict still
    answers but warns that every patch gets the same probability."""
    import numpy as np

    from asgm.config import TrainingConfig
    from asgm.errors import AsgmWarning, InputFileError
    from asgm.train import train_experiment

    model_dir, data = clean_model
    zero = tmp_path / "zero"
    shutil.copytree(data, zero)
    np.save(zero / "patches.npy", np.zeros_like(np.load(zero / "patches.npy")))  # OSM too: every patch the same input
    with pytest.raises(InputFileError, match=r"(?s)patches\.npy.*holds the same value.*How to fix"):
        train_experiment(zero, tmp_path / "models", "m", TrainingConfig(epochs=1, ensemble=1), progress=False)
    assert not (tmp_path / "models" / "m").exists()
    with pytest.warns(AsgmWarning, match="same probability"):
        table = predict.predict_dataset(model_dir, zero, tmp_path / "p.csv", progress=False)
    assert table["probability"].nunique() == 1
    assert not read_dataset(data).imagery_is_constant()
