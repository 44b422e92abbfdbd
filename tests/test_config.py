import shutil
from pathlib import Path

import pytest

from asgm.config import find_root, load_profile
from asgm.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path):
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "demo.yaml", tmp_path / "configs" / "demo.yaml")
    return tmp_path


def edit(project, old, new):
    path = project / "configs" / "demo.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


@pytest.mark.parametrize("name", ["demo", "smoke"])
def test_shipped_profiles_load(name):
    cfg = load_profile(name, root=ROOT)
    assert cfg.channels[:12] == ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8A", "B8", "B9", "B11", "B12")
    assert cfg.channels[12:] == ("highway", "landuse", "building", "aeroway", "waterway")
    assert cfg.imagery.path.is_absolute() and cfg.imagery.path.is_relative_to(ROOT)


def test_sections_passed_in_override_the_file(project):
    cfg = load_profile("demo", root=project, patches={"sizes": [64]}, osm=None)
    assert cfg.patches.sizes == (64,) and cfg.osm.channels[0] == "highway"


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("bands: [B1, B2,", "bands: [B13, B2,", r"imagery.bands.*unknown band\(s\) \['B13'\]"),
        ("channels: [highway,", "channels: [railway,", r"osm.channels.*unknown OSM channel\(s\) \['railway'\]"),
        ("  seed: 7", "  seeed: 7", "sampling.seeed.*unknown key"),
        ("  sizes: [48, 256]", "  sizes: [48, big]", "patches.sizes.*invalid value"),
        ("source: demo ", "source: planet ", "imagery.source.*unknown source 'planet'"),
    ],
    ids=["band", "osm-channel", "key", "value", "source"],
)
def test_bad_settings_name_the_setting(project, old, new, message):
    edit(project, old, new)
    with pytest.raises(ConfigError, match=f"(?s)demo.yaml.*{message}.*How to fix"):
        load_profile("demo", root=project)


def test_missing_profile(tmp_path):
    with pytest.raises(ConfigError, match="no configs/nope.yaml"):
        find_root("nope", tmp_path)
