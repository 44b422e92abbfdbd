"""The interactive map opened in a real browser (headless Chromium) with the network off."""

from __future__ import annotations

import re

import geopandas as gpd
import matplotlib.image
import numpy as np
import pytest
import rasterio
from shapely.geometry import box

from asgm.webmap import DETECTION_COLOUR, TRUTH_COLOUR, find_chromium, scan_map, screenshot
from conftest import LEFT, TOP, write_raster

pytestmark = pytest.mark.skipif(find_chromium() is None, reason="Chromium not installed (Debian: apt-get install chromium)")

SIDE = 200  # px at 10 m: a 2 km scene
# Boxes as fractions of the scene (x0, y0, x1, y1 from the top-left corner).
DETECTION = (0.60, 0.55, 0.85, 0.80)
TRUTH = (0.15, 0.15, 0.35, 0.35)
HOT = (0.10, 0.60, 0.40, 0.90)  # where the probability raster is high


def scene_box(fractions):
    x0, y0, x1, y1 = fractions
    return box(LEFT + x0 * SIDE * 10, TOP - y1 * SIDE * 10, LEFT + x1 * SIDE * 10, TOP - y0 * SIDE * 10)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A forest (left) and bare-soil (right) scene, its probability raster, one detection, one truth polygon."""
    tmp = tmp_path_factory.mktemp("map")
    rng = np.random.default_rng(0)
    data = np.full((12, SIDE, SIDE), 900.0) + rng.normal(0, 15, (12, SIDE, SIDE))
    data[:, :, SIDE // 2:] += 1500
    raster = write_raster(tmp / "scene.tif", data.astype(np.uint16))
    p = np.full((SIDE // 4, SIDE // 4), 0.05, np.float32)
    x0, y0, x1, y1 = (int(f * SIDE // 4) for f in HOT)
    p[y0:y1, x0:x1] = 0.95
    probability = tmp / "probability.tif"
    with rasterio.open(probability, "w", driver="GTiff", width=p.shape[1], height=p.shape[0], count=1, dtype="float32",
                       crs="EPSG:32620", transform=rasterio.transform.from_origin(LEFT, TOP, 40, 40), nodata=np.nan) as dst:
        dst.write(p, 1)
    found = gpd.GeoDataFrame({"mean_confidence": [0.9], "max_confidence": [0.95], "area_ha": [62.5], "windows": [9]},
                             geometry=[scene_box(DETECTION)], crs=32620)
    truth = gpd.GeoDataFrame(geometry=[scene_box(TRUTH)], crs=32620)
    return tmp, raster, probability, found, truth


def colour_mask(image: np.ndarray, hex_colour: str, tolerance: float = 0.12) -> np.ndarray:
    rgb = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return (np.abs(image[..., :3] - rgb) < tolerance).all(-1)


def longest_run(flags: np.ndarray) -> tuple[int, int]:
    """First and last index of the longest run of True."""
    edges = np.flatnonzero(np.diff(np.r_[0, flags.astype(int), 0]))
    starts, ends = edges[::2], edges[1::2]
    i = np.argmax(ends - starts)
    return starts[i], ends[i] - 1


def composite_extent(image: np.ndarray) -> tuple[int, int, int, int]:
    """Screen box (x0, y0, x1, y1) of the composite: the longest runs of rows and columns mostly
    unlike the background (controls and notes are short runs at the edges)."""
    background = image[image.shape[0] // 2, 2, :3]
    differs = (np.abs(image[..., :3] - background) > 0.06).any(-1)
    y0, y1 = longest_run(differs.mean(1) > 0.3)
    x0, x1 = longest_run(differs.mean(0) > 0.3)
    return x0, y0, x1, y1


def expected_centre(extent, fractions) -> np.ndarray:
    x0, y0, x1, y1 = extent
    return np.array([x0 + (fractions[0] + fractions[2]) / 2 * (x1 - x0), y0 + (fractions[1] + fractions[3]) / 2 * (y1 - y0)])


def render(scene, name: str, **kwargs) -> tuple[str, np.ndarray]:
    tmp, raster, probability, found, truth = scene
    html = tmp / f"{name}.html"
    scan_map(raster, probability, found, None, truth, html, **kwargs)
    return html.read_text(), matplotlib.image.imread(screenshot(html, tmp / f"{name}.png"))


def test_map_is_drawn_offline_with_every_overlay_in_place(scene):
    text, image = render(scene, "default")
    assert not re.search(r'<(script|link)[^>]+(src|href)="https?://', text), "the map must not load scripts or styles from the network"
    extent = composite_extent(image)
    assert extent[2] - extent[0] > 300 and extent[3] - extent[1] > 300, f"true colour not drawn: {extent}"
    x0, y0, x1, y1 = extent
    left, right = image[y0 + 20:y1 - 20, x0 + 20:(x0 + x1) // 2 - 20, :3], image[y0 + 20:y1 - 20, (x0 + x1) // 2 + 20:x1 - 20, :3]
    assert right.mean() > left.mean() + 0.2, "the bright half of the scene must be drawn brighter"
    side = (x1 - x0 + y1 - y0) / 2
    for colour, fractions, what in ((DETECTION_COLOUR, DETECTION, "detection"), (TRUTH_COLOUR, TRUTH, "ground truth")):
        ys, xs = np.nonzero(colour_mask(image, colour))
        assert len(xs) > 100, f"{what} outline not drawn"
        assert np.linalg.norm([xs.mean(), ys.mean()] - expected_centre(extent, fractions)) < 0.05 * side, f"{what} drawn in the wrong place"
    assert "Offline: no OpenStreetMap tiles" in text  # the fallback note exists; drawn only when tiles fail
    with_probability = render(scene, "probability", show_probability=True)[1]
    hot_centre = expected_centre(extent, HOT).astype(int)
    cool_centre = expected_centre(extent, (0.6, 0.1, 0.9, 0.4)).astype(int)
    change = np.abs(with_probability[..., :3] - image[..., :3]).sum(-1)
    hot, cool = change[hot_centre[1], hot_centre[0]], change[cool_centre[1], cool_centre[0]]
    assert hot > 1.0 and hot > cool + 0.5, f"probability layer not drawn where it is high ({hot:.2f} vs {cool:.2f})"


def test_a_map_that_loads_leaflet_from_a_cdn_is_blank_offline(scene, tmp_path):
    """The check above can fail: folium's default page, offline, draws none of the overlays."""
    import folium

    html = tmp_path / "cdn.html"
    _, raster, probability, found, truth = scene
    fmap = folium.Map(location=[7.3, -61.8], zoom_start=12)
    folium.GeoJson(found.to_crs(4326), style_function=lambda _: {"color": DETECTION_COLOUR}).add_to(fmap)
    fmap.save(str(html))
    image = matplotlib.image.imread(screenshot(html, tmp_path / "cdn.png"))
    assert colour_mask(image, DETECTION_COLOUR).sum() == 0
