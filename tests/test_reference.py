"""Checks on the real data beside the project (../shared/data); skipped when it is absent."""

import numpy as np
import pytest

from asgm.config import PatchConfig
from asgm.errors import InputFileError
from asgm.patches import quality_check, read_dataset
from asgm.regions import read_boundary
from asgm.sampling import random_negatives, read_points


def test_real_amazon_dataset_reads_in_the_contract_format(reference_data):
    ds = read_dataset(reference_data / "amazon-s2-6band")
    assert ds.patches.shape == (794, 48, 48, 6) and ds.band_channels == ["B2", "B3", "B4", "B8", "B11", "B12"]
    assert ds.index["label"].value_counts().to_dict() == {0: 408, 1: 386}
    assert ds.osm_channels == []


def test_quality_filter_runs_on_real_patches(reference_data):
    """The 6-band real patches go through the same filter as ours; cloudy ones are flagged, clear ones kept."""
    ds = read_dataset(reference_data / "amazon-s2-6band")
    reasons = [quality_check(np.asarray(p), tuple(ds.channels), 0, ds.meta["scale"], PatchConfig())[0] for p in ds.patches]
    flagged = [r for r in reasons if r is not None]
    assert set(flagged) <= {"cloud above 20%", "black (no data at all)", "nodata above 5%"}
    assert 0 < len(flagged) < 0.1 * len(ds), len(flagged)


def test_real_bolivar_points(reference_data):
    ref = reference_data / "reference"
    bolivar = read_boundary(ref / "bolivar.geojson")
    # Some of the thesis's mine points lie just outside GADM's Bolívar polygon: strict by default, droppable on request.
    with pytest.raises(InputFileError, match="points lie outside the boundary"):
        read_points(ref / "v2.1_bolivar_positives_cleaned.geojson", "mine", bolivar)
    with pytest.warns(UserWarning, match="dropped"):
        mines = read_points(ref / "v2.1_bolivar_positives_cleaned.geojson", "mine", bolivar, outside="drop")
    assert 100 < len(mines) < 156 and mines["source_row"].is_unique
    assert len(read_points(ref / "random_negatives_bolivar.geojson", "random_negative", bolivar)) == 780
    negatives = random_negatives(bolivar, 200, mines, 679.0, seed=0)
    d = np.linalg.norm(
        np.column_stack([negatives.to_crs(32620).geometry.x, negatives.to_crs(32620).geometry.y])[:, None]
        - np.column_stack([mines.to_crs(32620).geometry.x, mines.to_crs(32620).geometry.y])[None], axis=-1)
    assert d.min() >= 679.0
