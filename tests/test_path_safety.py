"""Nothing lost: outputs never replace what the command did not create, names cannot point elsewhere,
and temporaries of a killed run are cleaned up by the next one."""

import os
import subprocess
import sys

import pytest

from asgm import predict, train
from asgm.atomic import atomic_path, plain_name
from asgm.config import load_profile
from asgm.errors import AsgmError
from conftest import snapshot, write_toy_dataset


@pytest.mark.parametrize("name", ["", ".", "..", "../elsewhere", "a/b", ".hidden", "a\\b"])
def test_names_used_as_paths_must_be_plain(name):
    with pytest.raises(AsgmError, match="not a plain name"):
        plain_name(name, "experiment_name")


def test_a_file_never_replaces_a_directory(tmp_path):
    keep = tmp_path / "results"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    with pytest.raises(AsgmError, match="is a directory"):
        with atomic_path(keep, what="CSV") as tmp:
            tmp.write_text("a,b\n")
    assert snapshot(tmp_path) == before


def test_a_directory_replaces_only_its_own_kind(tmp_path):
    other = tmp_path / "out"
    other.mkdir()
    (other / "thesis.tex").write_text("chapter")
    before = snapshot(tmp_path)
    with pytest.raises(AsgmError, match="not a model directory"):
        with atomic_path(other, marker="config.json", what="model directory") as tmp:
            tmp.mkdir()
            (tmp / "config.json").write_text("{}")
    assert snapshot(tmp_path) == before
    (other / "thesis.tex").unlink()
    (other / "config.json").write_text("{}")  # an earlier model directory: replaced
    with atomic_path(other, marker="config.json", what="model directory") as tmp:
        tmp.mkdir()
        (tmp / "config.json").write_text('{"new": 1}')
    assert (other / "config.json").read_text() == '{"new": 1}'


def test_cli_refuses_to_destroy_directories(tmp_path, capsys):
    data = write_toy_dataset(tmp_path / "toy", n=40)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "notes.md").write_text("keep me")
    before = snapshot(tmp_path)
    for name in (".", "..", "../elsewhere"):
        code = train.main(["--input_directory", str(data), "--output_directory", str(tmp_path / "models"), "--experiment_name", name])
        assert code == 2 and "not a plain name" in capsys.readouterr().err
    assert predict.main(["--model_directory", str(tmp_path / "models"), "--input_directory", str(data), "--output", str(data)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_profile_names_cannot_leave_the_project():
    with pytest.raises(AsgmError, match="not a plain name"):
        load_profile("../demo")


def test_a_killed_writer_leaves_nothing_for_long(tmp_path):
    target = tmp_path / "model"
    code = ("import os, sys; from asgm.atomic import atomic_path\n"
            f"with atomic_path({str(target)!r}) as tmp:\n"
            "    tmp.mkdir(); (tmp / 'half').write_text('x'); os.kill(os.getpid(), 9)\n")
    subprocess.run([sys.executable, "-c", code], check=False)
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".model.")]
    assert len(leftovers) == 1 and not target.exists()
    with atomic_path(target) as tmp:  # the next run removes the dead writer's temporary
        tmp.mkdir()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    live = tmp_path / f".other.{os.getpid()}.x.partial"
    live.mkdir()
    with atomic_path(tmp_path / "other") as tmp:  # a live writer's temporary is left alone
        tmp.mkdir()
    assert live.exists()


def test_nan_patches_and_bad_coordinates_are_refused_with_their_ids(tmp_path):
    import numpy as np
    import pandas as pd

    from asgm.errors import InputFileError
    from asgm.patches import read_dataset

    data = write_toy_dataset(tmp_path / "toy", n=20)
    patches = np.load(data / "patches.npy").astype(np.float32)
    patches[3, 0, 0, 0] = np.nan
    np.save(data / "patches.npy", patches)
    pid = pd.read_csv(data / "index.csv")["patch_id"][3]
    with pytest.raises(InputFileError, match=rf"(?s)patches.npy.*1 patch\(es\) hold NaN.*{pid}"):
        read_dataset(data)
    np.save(data / "patches.npy", np.nan_to_num(patches))
    index = pd.read_csv(data / "index.csv")
    index.loc[2, "lat"] = 95.0
    index.to_csv(data / "index.csv", index=False)
    with pytest.raises(InputFileError, match=r"index.csv.*out-of-range lon/lat"):
        read_dataset(data)


def test_a_self_intersecting_boundary_keeps_both_lobes(tmp_path):
    import json

    from shapely import Point

    from asgm.regions import read_boundary

    # a bow tie: two triangles meeting at (1, 1); buffer(0) keeps only one of them
    ring = [[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]
    path = tmp_path / "bowtie.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    with pytest.warns(UserWarning, match=r"(?s)bowtie.geojson.*invalid.*make_valid.*km² before.*km² after"):
        geom = read_boundary(path)
    assert geom.is_valid and geom.area == pytest.approx(2.0)  # both 1-degree² triangles
    assert geom.contains(Point(0.2, 1.0)) and geom.contains(Point(1.8, 1.0))


def test_a_bad_flag_is_blamed_on_the_flag_and_one_class_data_on_the_dataset(tmp_path, capsys):
    import pandas as pd

    data = write_toy_dataset(tmp_path / "toy", n=30)
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 3\n")
    assert train.main(["--input_directory", str(data), "--output_directory", str(tmp_path / "m"), "--experiment_name", "x",
                       "--config", str(config), "--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert "--epochs" in err and "c.yaml" not in err
    index = pd.read_csv(data / "index.csv")
    index["label"] = 1
    index.to_csv(data / "index.csv", index=False)
    assert train.main(["--input_directory", str(data), "--output_directory", str(tmp_path / "m"), "--experiment_name", "x"]) == 2
    err = capsys.readouterr().err
    assert "one class only" in err and "seed" not in err.split("How to fix")[0]
    assert not (tmp_path / "m").exists()


def test_a_constant_dataset_is_refused_before_training(tmp_path, capsys):
    import numpy as np

    data = write_toy_dataset(tmp_path / "toy", n=40)
    np.save(data / "patches.npy", np.zeros_like(np.load(data / "patches.npy")))
    assert train.main(["--input_directory", str(data), "--output_directory", str(tmp_path / "m"), "--experiment_name", "x"]) == 2
    assert "same value" in capsys.readouterr().err and not (tmp_path / "m").exists()
