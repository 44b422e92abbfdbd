"""Every setting has a type and a range: bad values are refused naming the file, the key and the fix."""

import re
from pathlib import Path

import pytest
import yaml

from asgm.config import load_profile
from asgm.errors import ConfigError, InputFileError

ROOT = Path(__file__).resolve().parents[1]


def profile_with(tmp_path, change):
    """A copy of the smoke profile with ``change(raw)`` applied, in a project directory of its own."""
    (tmp_path / "configs").mkdir()
    raw = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())
    change(raw)
    (tmp_path / "configs" / "smoke.yaml").write_text(yaml.safe_dump(raw))
    return tmp_path


CASES = [
    ("imagery.scale", lambda r: r["imagery"].update(scale=0)),
    ("training.learning_rate", lambda r: r["training"].update(learning_rate=-1e-3)),
    ("training.seed", lambda r: r["training"].update(seed=-1)),
    ("training.split_seed", lambda r: r["training"].update(split_seed=-2)),
    ("training.split_seed", lambda r: r["training"].update(split_seed=1.5)),
    ("training.patience", lambda r: r["training"].update(patience=-2)),
    ("training.epochs", lambda r: r["training"].update(epochs=True)),
    ("training.min_distance_m", lambda r: r["training"].update(min_distance_m=-5)),
    ("sampling.min_distance_m", lambda r: r["sampling"].update(min_distance_m=-5)),
    ("imagery.bands", lambda r: r["imagery"].update(bands=[])),
    ("imagery.bands", lambda r: r["imagery"].update(bands=["B2", "B2"])),
    ("osm.channels", lambda r: r["osm"].update(channels=["highway", "highway"])),
    ("training.channels", lambda r: r["training"].update(channels=["B2", "B2"])),
    ("scan.threshold", lambda r: r["scan"].update(threshold=2.0)),
    ("scan.scheduler", lambda r: r["scan"].update(scheduler="threads")),
    ("experiments.scheduler", lambda r: r["experiments"].update(scheduler="processes")),
    ("experiments", lambda r: r["experiments"].update(workers=0)),
    ("experiments", lambda r: r["experiments"].update(ensemble=0)),
    ("training.augment", lambda r: r["training"].update(augment=["dihedral", "cutmix"])),
    ("training.calibration", lambda r: r["training"].update(calibration="temperature")),
    ("monitoring.new_hysteresis", lambda r: r["monitoring"].update(new_hysteresis=0)),
    ("monitoring.scar_grow_px", lambda r: r["monitoring"].update(scar_grow_px=-1)),
    ("monitoring.scar_grow_fraction", lambda r: r["monitoring"].update(scar_grow_fraction=1.5)),
    ("monitoring.min_change_ha", lambda r: r["monitoring"].update(min_change_ha=-0.5)),
    ("monitoring.demo_size_km", lambda r: r["monitoring"].update(demo_size_km=0)),
]


@pytest.mark.parametrize("key, change", CASES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(CASES)])
def test_out_of_range_settings_are_refused(tmp_path, key, change):
    root = profile_with(tmp_path, change)
    with pytest.raises(ConfigError, match=rf"(?s)smoke.yaml.*{re.escape(key)}"):
        load_profile("smoke", root=root)


def test_a_duplicated_section_is_refused(tmp_path):
    (tmp_path / "configs").mkdir()
    text = (ROOT / "configs" / "smoke.yaml").read_text() + "\ntraining:\n  epochs: 99\n"
    (tmp_path / "configs" / "smoke.yaml").write_text(text)
    with pytest.raises(InputFileError, match=r"(?s)smoke.yaml.*'training' appears twice"):
        load_profile("smoke", root=tmp_path)


def test_the_shipped_profiles_still_load():
    for name in ("demo", "smoke", "bolivar"):
        assert load_profile(name, root=ROOT).name == name
