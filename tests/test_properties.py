"""Property-based tests: random training YAML and randomly damaged dataset directories only ever give
a valid result or an asgm error, never a raw traceback."""

import json
import shutil

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgm.config import TrainingConfig, load_training
from asgm.errors import AsgmError
from asgm.patches import Dataset, read_dataset
from conftest import write_toy_dataset

KEYS = [f.name for f in TrainingConfig.__dataclass_fields__.values()] + ["unknown_key"]
VALUES = st.recursive(st.none() | st.booleans() | st.integers(-5, 300) | st.floats(allow_nan=True) | st.text(max_size=12),
                      lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6))
def test_random_training_yaml_gives_a_config_or_an_asgm_error(tmp_path, mapping):
    path = tmp_path / "training.yaml"
    path.write_text(yaml.safe_dump(mapping))
    try:
        config = load_training(path)
    except AsgmError:
        return
    assert isinstance(config, TrainingConfig)
    assert config.epochs >= 1 and config.learning_rate > 0 and set(config.augment) <= {"dihedral", "rotate", "translate", "zoom", "gain", "contrast", "noise"}


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["patches.npy", "index.csv", "dataset.json"]), st.integers(0, 4000), st.binary(max_size=64),
       st.dictionaries(st.sampled_from(["channels", "scale", "patch_size", "dtype"]), VALUES, max_size=2))
def test_randomly_damaged_dataset_gives_a_dataset_or_an_asgm_error(tmp_path_factory, name, cut, junk, meta_changes):
    clean = tmp_path_factory.getbasetemp() / "property_clean"
    if not clean.exists():
        write_toy_dataset(clean, n=12)
    data = tmp_path_factory.mktemp("damaged")
    shutil.copytree(clean, data, dirs_exist_ok=True)
    target = data / name
    content = target.read_bytes()
    target.write_bytes(content[:cut] + junk)
    if meta_changes and name != "dataset.json":
        meta = json.loads((data / "dataset.json").read_text())
        (data / "dataset.json").write_text(json.dumps({**meta, **meta_changes}))
    try:
        dataset = read_dataset(data)
    except AsgmError:
        return
    assert isinstance(dataset, Dataset) and len(dataset) == len(dataset.index)
