import geopandas as gpd
from affine import Affine
import numpy as np
import pytest
from pyproj import CRS
from shapely.geometry import LineString, box

from asgm.errors import AsgmError, InputFileError
from asgm.imagery.local import LocalRasterSource
from asgm.osm import OsmRasterizer, features_from_file, summarize_features
from asgm.regions import PatchGrid
from conftest import LEFT, TOP, ZONES_OSM, write_raster

UTM20 = CRS.from_epsg(32620)


def features(*rows):
    """A features table like osmnx's: one column per key, geometry in EPSG:32620."""
    return gpd.GeoDataFrame([{k: v for k, v in tags.items()} for _, tags in rows], geometry=[g for g, _ in rows], crs=UTM20)


def grid(size=10):
    """A size x size grid at 10 m whose top-left corner is (LEFT, TOP)."""
    return PatchGrid(UTM20, Affine(10, 0, LEFT, 0, -10, TOP), size, size)


def test_polygon_burns_the_pixels_whose_centre_it_covers():
    # Pixels (rows 1-2, cols 2-4) span x in [LEFT+20, LEFT+50], y in [TOP-30, TOP-10].
    building = box(LEFT + 20, TOP - 30, LEFT + 50, TOP - 10)
    mask = OsmRasterizer(features((building, {"building": "yes"})), UTM20).rasterize(grid())
    expected = np.zeros((10, 10), np.uint8)
    expected[1:3, 2:5] = 1
    assert np.array_equal(mask[..., 2], expected)
    assert mask[..., [0, 1, 3, 4]].sum() == 0, "a building must burn only the building channel"


def test_line_burns_every_pixel_it_crosses():
    road = LineString([(LEFT + 5, TOP - 45), (LEFT + 95, TOP - 45)])  # along row 4
    mask = OsmRasterizer(features((road, {"highway": "track"})), UTM20).rasterize(grid())
    assert mask[4, :, 0].tolist() == [1] * 10 and mask[..., 0].sum() == 10


def test_features_outside_the_patch_burn_nothing():
    far = box(LEFT + 5000, TOP - 5000, LEFT + 5100, TOP - 4900)
    assert OsmRasterizer(features((far, {"landuse": "quarry"})), UTM20).rasterize(grid()).sum() == 0


def test_osm_and_imagery_grids_agree_to_the_pixel(tmp_path):
    """A bright roof and the OSM building traced on it must land on the same pixels of a patch."""
    data = np.full((12, 60, 60), 900, np.uint16)
    rows, cols = slice(21, 26), slice(33, 37)
    data[:, rows, cols] = 3000
    raster = write_raster(tmp_path / "roof.tif", data)
    roof = box(LEFT + 33 * 10, TOP - 26 * 10, LEFT + 37 * 10, TOP - 21 * 10)
    point = gpd.GeoDataFrame({"patch_id": ["p"]}, geometry=[roof.centroid], crs=UTM20).to_crs(4326)
    with LocalRasterSource(raster, ("B2", "B3", "B4")) as source:
        batch = source.read_patches(point, 16)
    mask = OsmRasterizer(features((roof.buffer(-0.5), {"building": "yes"})), UTM20, ("building",)).rasterize(batch.grids[0])
    bright = batch.data[0, ..., 0] == 3000
    assert bright.sum() == 20 and np.array_equal(mask[..., 0].astype(bool), bright)


def test_unknown_channel_is_refused():
    with pytest.raises(AsgmError, match="unknown OSM channel.*railway"):
        OsmRasterizer(features(), UTM20, ("highway", "railway"))


OSM_XML = """<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6">
  <node id="1" lat="7.300" lon="-61.850"/><node id="2" lat="7.310" lon="-61.840"/>
  <node id="3" lat="7.301" lon="-61.849"/><node id="4" lat="7.301" lon="-61.848"/><node id="5" lat="7.302" lon="-61.848"/>
  <node id="6" lat="7.500" lon="-61.500"/><node id="7" lat="7.510" lon="-61.500"/>
  <way id="10"><nd ref="1"/><nd ref="2"/><tag k="highway" v="track"/></way>
  <way id="11"><nd ref="3"/><nd ref="4"/><nd ref="5"/><nd ref="3"/><tag k="landuse" v="quarry"/></way>
  <way id="12"><nd ref="6"/><nd ref="7"/><tag k="waterway" v="river"/></way>
  <way id="13"><nd ref="1"/><nd ref="3"/><tag k="railway" v="rail"/></way>
</osm>
"""


def test_features_from_file_keeps_channel_keys_inside_the_boundary(tmp_path):
    path = tmp_path / "area.osm"
    path.write_text(OSM_XML)
    gdf = features_from_file(path, box(-61.86, 7.29, -61.83, 7.32))
    assert sorted(gdf["id"].tolist()) == [10, 11]  # river outside the boundary, railway not a channel
    assert set(gdf.geom_type) == {"LineString", "Polygon"}
    summary = summarize_features(gdf)
    assert summary.loc["landuse", "polygons"] == 1 and summary.loc["highway", "lines"] == 1
    assert summary.loc["building", "features"] == 0


def test_unreadable_osm_file_names_the_file(tmp_path):
    path = tmp_path / "broken.osm"
    path.write_text("<osm><way id='1'><nd ref='99'/>")
    with pytest.raises(InputFileError, match="broken.osm.*not a readable OSM XML"):
        features_from_file(path, box(-62, 7, -61, 8))
    with pytest.raises(InputFileError, match="OSM file not found"):
        features_from_file(tmp_path / "missing.osm", box(-62, 7, -61, 8))


def write_pbf(path, xml_path, replication_timestamp=None):
    """Convert an .osm XML file to an .osm.pbf extract with pyosmium (as osmium-tool would)."""
    import osmium

    header = osmium.io.Header()
    if replication_timestamp:
        header.set("osmosis_replication_timestamp", replication_timestamp)
    with osmium.SimpleWriter(str(path), header=header) as writer:
        for obj in osmium.FileProcessor(str(xml_path)):
            writer.add(obj)
    return path


def test_pbf_extract_gives_the_same_features_as_the_xml(tmp_path):
    from asgm.osm import features_from_pbf, pbf_snapshot_date

    xml = tmp_path / "area.osm"
    xml.write_text(OSM_XML)
    pbf = write_pbf(tmp_path / "area.osm.pbf", xml, "2024-03-01T20:21:02Z")
    boundary = box(-61.86, 7.29, -61.83, 7.32)
    gdf = features_from_pbf(pbf, boundary, working_dir=tmp_path / "quackosm")
    from_xml = features_from_file(xml, boundary)
    assert sorted(gdf["id"]) == sorted(from_xml["id"]) == [10, 11]  # river outside, railway not a channel
    assert set(gdf["element"]) == {"way"}
    by_id = gdf.set_index("id")
    assert by_id.loc[10, "highway"] == "track" and by_id.loc[11, "landuse"] == "quarry"
    assert by_id.loc[11].geometry.geom_type == "Polygon"
    assert by_id.loc[10].geometry.equals_exact(from_xml.set_index("id").loc[10].geometry, 1e-7)
    assert pbf_snapshot_date(pbf) == "2024-03-01"
    with pytest.raises(InputFileError, match="(?s)OSM extract not found.*geofabrik"):
        features_from_pbf(tmp_path / "missing.osm.pbf", boundary)


def test_zones_are_the_same_from_an_osm_file_and_a_pbf_extract(tmp_path):
    from asgm.osm import ZONE_TAGS, features_from_pbf, zones_from_osm

    xml = tmp_path / "zones.osm"
    xml.write_text(ZONES_OSM)
    pbf = write_pbf(tmp_path / "zones.osm.pbf", xml)
    boundary = box(-62, 7, -61.5, 7.5)
    from_xml = zones_from_osm(features_from_file(xml, boundary, tuple(ZONE_TAGS), ZONE_TAGS)).sort_values("osm_id")
    from_pbf = zones_from_osm(features_from_pbf(pbf, boundary, tuple(ZONE_TAGS), tmp_path / "quackosm", ZONE_TAGS)).sort_values("osm_id")
    assert list(from_pbf["osm_id"]) == list(from_xml["osm_id"]) == ["relation/30", "way/20"]
    assert list(from_pbf["name"]) == list(from_xml["name"]) == ["Territorio Prueba", "Parque Nacional Prueba"]
    assert list(from_pbf["kind"]) == ["indigenous territory", "protected area"]
    assert all(a.equals_exact(b, 1e-7) for a, b in zip(from_pbf.geometry.normalize(), from_xml.geometry.normalize()))


OVERPASS_JSON = {
    "version": 0.6, "generator": "Overpass API (recorded)", "osm3s": {"timestamp_osm_base": "2025-07-09T08:00:00Z"},
    "elements": [
        {"type": "node", "id": 1, "lat": 7.300, "lon": -61.850}, {"type": "node", "id": 2, "lat": 7.310, "lon": -61.840},
        {"type": "way", "id": 10, "nodes": [1, 2], "tags": {"highway": "track", "name": "Troncal 10"}},
    ],
}


@pytest.fixture
def overpass_server(monkeypatch):
    """An Overpass stand-in on 127.0.0.1 answering every query with a recorded response."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import osmnx as ox

    queries = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            queries.append(self.rfile.read(int(self.headers["Content-Length"])).decode())
            body = json.dumps(OVERPASS_JSON).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(ox.settings, "overpass_url", f"http://127.0.0.1:{server.server_port}/api")
    monkeypatch.setattr(ox.settings, "overpass_rate_limit", False)
    yield queries
    server.shutdown()


def test_overpass_query_is_cached_and_dated(overpass_server, tmp_path):
    from asgm.osm import features_from_overpass, read_features, save_features

    boundary = box(-61.86, 7.29, -61.83, 7.32)
    gdf, queried_at = features_from_overpass(boundary, cache_dir=tmp_path / "osmnx")
    assert len(overpass_server) == 1 and "highway" in overpass_server[0]
    assert gdf["id"].tolist() == [10] and gdf["highway"].tolist() == ["track"]
    again, queried_again = features_from_overpass(boundary, cache_dir=tmp_path / "osmnx")
    assert len(overpass_server) == 1, "a rerun is answered from osmnx's cache"
    assert queried_again == queried_at and again["id"].tolist() == [10]
    gdf.attrs["osm"] = {"source": "overpass", "queried_at": queried_at, "snapshot_date": queried_at[:10]}
    saved = read_features(save_features(gdf, tmp_path / "osm.gpkg"))
    assert saved.attrs["osm"] == {"source": "overpass", "queried_at": queried_at, "snapshot_date": queried_at[:10]}
