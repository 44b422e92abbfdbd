"""Pinned downloads against a local HTTP server on 127.0.0.1, and the Bolívar profile's reference data."""

import dataclasses
import re
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import ee
import pytest

from asgm.config import Download, load_profile
from asgm.downloads import fetch, fetch_all, sha256
from asgm.errors import AsgmError, ConfigError, InputFileError
from asgm.imagery import gee, prepare_inputs


@pytest.fixture
def http_files(tmp_path):
    """A directory served on 127.0.0.1; yields (directory, base URL, list of requested paths)."""
    served = tmp_path / "served"
    served.mkdir()
    requested = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):
            requested.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield served, f"http://127.0.0.1:{server.server_port}", requested
    server.shutdown()


def test_download_is_verified_and_cached(http_files, tmp_path):
    served, base, requested = http_files
    (served / "points.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    pin = sha256(served / "points.geojson")
    target = tmp_path / "data" / "points.geojson"
    download = Download(target, f"{base}/points.geojson", pin)
    assert fetch(download, progress=False) == target and sha256(target) == pin
    assert requested == ["/points.geojson"]
    fetch(download, progress=False)
    assert requested == ["/points.geojson"], "a verified cached copy is not downloaded again"
    target.write_text("corrupted")
    fetch(download, progress=False)
    assert sha256(target) == pin and len(requested) == 2, "a cached copy with the wrong checksum is fetched again"


def test_checksum_mismatch_is_an_error_and_keeps_nothing(http_files, tmp_path):
    served, base, _ = http_files
    (served / "boundary.geojson").write_text('{"type": "FeatureCollection", "features": [1]}')
    target = tmp_path / "data" / "boundary.geojson"
    with pytest.raises(InputFileError, match="(?s)does not match its pinned SHA-256.*changed upstream"):
        fetch(Download(target, f"{base}/boundary.geojson", "0" * 64), progress=False)
    assert not target.exists() and not any(target.parent.glob("*boundary*"))


def test_unreachable_url_says_what_to_do_offline(tmp_path):
    with pytest.raises(AsgmError, match="(?s)could not download.*place a copy of x.geojson.*ASGM_REFERENCE_DATA"):
        fetch(Download(tmp_path / "x.geojson", "http://127.0.0.1:9/x.geojson", "0" * 64), progress=False)


def test_mirror_copy_is_used_when_its_checksum_matches(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "a.geojson").write_text("{}")
    pin = sha256(mirror / "a.geojson")
    (target,) = fetch_all([Download(tmp_path / "data" / "a.geojson", "http://127.0.0.1:9/a.geojson", pin)], mirror=mirror, progress=False)
    assert target.read_text() == "{}"


def test_downloads_setting_is_validated(tmp_path):
    (tmp_path / "configs").mkdir()
    base = "region: {boundary: b.geojson, positives: p.geojson, negatives: n.geojson, downloads: %s}\nimagery: {source: local, path: x.tif}\nosm: {source: file, path: x.osm}\n"
    (tmp_path / "configs" / "bad.yaml").write_text(base % "{b.geojson: {url: 'http://x', sha256: nothex}}")
    with pytest.raises(ConfigError, match="not a SHA-256 digest"):
        load_profile("bad", root=tmp_path)
    (tmp_path / "configs" / "bad.yaml").write_text(base % "{b.geojson: {url: 'http://x'}}")
    with pytest.raises(ConfigError, match="needs exactly url and sha256"):
        load_profile("bad", root=tmp_path)


@pytest.fixture
def bolivar_root(tmp_path):
    """A project directory holding the real configs/bolivar.yaml."""
    from pathlib import Path

    (tmp_path / "configs").mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / "configs" / "bolivar.yaml", tmp_path / "configs")
    return tmp_path


def test_bolivar_reference_data_matches_the_pins(reference_data, bolivar_root):
    """The pinned checksums are those of the real files (the copies beside the project)."""
    profile = load_profile("bolivar", root=bolivar_root)
    paths = fetch_all(profile.region.downloads, mirror=reference_data / "reference", progress=False)
    assert [p.name for p in paths[:5]] == ["bolivar.geojson", "v2.1_bolivar_positives_cleaned.geojson",
                                           "v2.0_bolivar_negatives_cleaned.geojson", "random_negatives_bolivar.geojson", "test_region.geojson"]
    assert all(p.is_relative_to(bolivar_root / "data" / "reference" / "bolivar") for p in paths[:5])
    assert set(paths[:5]) == {profile.region.boundary, profile.region.positives, profile.region.negatives,
                              profile.region.random_negatives, profile.scan.boundary}
    # Earth Genome's yearly footprints, found in the mirror's reference/amw/: the label audit's reference
    assert {p.parent for p in paths[5:]} == {profile.labels.reference} and len(paths) == 14


def test_bolivar_without_network_or_credentials_stops_with_every_step(bolivar_root, monkeypatch, tmp_path):
    monkeypatch.setenv("ASGM_REFERENCE_DATA", str(tmp_path / "nowhere"))
    for var in gee.PROJECT_ENV:
        monkeypatch.delenv(var, raising=False)
    profile = load_profile("bolivar", root=bolivar_root)
    # Offline: every download fails (a closed port on 127.0.0.1 stands in for GitHub); no Earth Engine project.
    offline = dataclasses.replace(profile, region=dataclasses.replace(profile.region, downloads=tuple(
        dataclasses.replace(d, url=re.sub(r"^https://[^/]+", "http://127.0.0.1:9", d.url)) for d in profile.region.downloads)))
    with pytest.raises(AsgmError) as err:
        prepare_inputs(offline)
    message = str(err.value)
    assert "profile 'bolivar' cannot start" in message
    assert message.count("could not download") == 14
    assert "Earth Engine needs a Google Cloud project" in message and "earthengine authenticate" in message
    assert "IMAGERY=stac" in message


def test_bolivar_with_stac_needs_no_account(reference_data, bolivar_root, monkeypatch):
    monkeypatch.setenv("ASGM_IMAGERY_SOURCE", "stac")
    profile = load_profile("bolivar", root=bolivar_root)
    assert profile.name == "bolivar_stac" and profile.imagery.source == "stac"
    assert profile.reports_dir.name == "bolivar_stac"
    monkeypatch.setattr(ee, "Initialize", lambda *a, **k: pytest.fail("Earth Engine used by the stac source"))
    monkeypatch.setenv("ASGM_REFERENCE_DATA", str(reference_data))
    assert profile.imagery.stac_url.startswith("https://earth-search")
    unreachable = dataclasses.replace(profile, imagery=dataclasses.replace(profile.imagery, stac_url="http://127.0.0.1:9/v1"))
    with pytest.raises(AsgmError, match="(?s)cannot start.*cannot open the STAC catalogue http://127.0.0.1:9/v1") as err:
        prepare_inputs(unreachable)  # only the catalogue is missing: the reference data came from the mirror
    assert "could not download" not in str(err.value)
    assert (bolivar_root / "data" / "reference" / "bolivar" / "bolivar.geojson").is_file()


def test_the_bolivar_profile_pins_earth_genomes_footprints_as_published(reference_data):
    """Each yearly file of the label audit's reference is pinned with the checksum its copy was published with."""
    pins = {d.path.name: d.sha256 for d in load_profile("bolivar").region.downloads if d.path.parent.name == "amw"}
    published = dict(reversed(line.split()) for line in (reference_data / "reference" / "amw" / "SHA256SUMS").read_text().splitlines())
    assert pins == published
