"""Interactive maps (folium) that open without internet.

folium loads Leaflet, jQuery, Bootstrap and a marker plugin from CDNs and its basemap from
OpenStreetMap's tile servers; offline that is a blank page. The maps here need only Leaflet, which
ships with this package (``assets/leaflet``, BSD 2-Clause) and is inlined into the HTML, so one file
carries everything. The OpenStreetMap basemap is still used when it can be reached; when its tiles
fail, the map says so and shows the Sentinel-2 composite as its basemap.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio

from asgm.atomic import atomic_path
from asgm.config import OSM_CHANNELS
from asgm.errors import AsgmError
from asgm.plots import OSM_COLOURS, SYNTHETIC_LABEL, rgb_preview

DETECTION_COLOUR = "#ff2d2d"
TRUTH_COLOUR = "#00e5ff"

# Added to the map after every layer (a MacroElement renders among the map's children, so the
# variables it names exist). On the first failed basemap tile: put the true colour back if the
# user hid it, darken the empty background and say why the basemap is missing.
_OFFLINE_FALLBACK = """
{% macro script(this, kwargs) %}
(function () {
    var map = {{ this.map }}, tiles = {{ this.tiles }}, composite = {{ this.composite }}, warned = false;
    tiles.on("tileerror", function () {
        if (warned) { return; }
        warned = true;
        map.getContainer().style.background = "#202820";
        if (!map.hasLayer(composite)) { composite.addTo(map); }
        var note = L.control({position: "bottomleft"});
        note.onAdd = function () {
            var div = L.DomUtil.create("div", "asgm-offline-note");
            div.style.cssText = "background:white;padding:3px 8px;font:12px sans-serif";
            div.innerHTML = "Offline: no OpenStreetMap tiles &mdash; the Sentinel-2 composite is the basemap";
            return div;
        };
        note.addTo(map);
    });
})();
{% endmacro %}
"""


def _leaflet_inline() -> str:
    """Leaflet's CSS and JavaScript as inline ``<style>`` and ``<script>`` elements."""
    assets = resources.files("asgm") / "assets" / "leaflet"
    css = (assets / "leaflet.css").read_text(encoding="utf-8")
    js = (assets / "leaflet.js").read_text(encoding="utf-8")
    return f"<style>{css}</style>\n<script>{js}</script>"


def offline_map(bounds: tuple[float, float, float, float]):
    """A folium map fitted to ``bounds`` (left, bottom, right, top in degrees) whose HTML carries
    Leaflet inline and loads nothing else from the network except the OpenStreetMap tiles.

    Returns the map and its OpenStreetMap tile layer.
    """
    import folium

    left, bottom, right, top = bounds
    fmap = folium.Map(location=[(bottom + top) / 2, (left + right) / 2], tiles=None, control_scale=True)
    # Only Leaflet is used by the layers drawn here; folium's other defaults (jQuery, Bootstrap,
    # awesome-markers) would be fetched from CDNs for nothing.
    fmap.default_js, fmap.default_css = [], []
    fmap.get_root().header.add_child(folium.Element(_leaflet_inline()), name="leaflet_inline")
    tiles = folium.TileLayer("OpenStreetMap", name="OpenStreetMap (online)").add_to(fmap)
    fmap.fit_bounds([[bottom, left], [top, right]])
    return fmap, tiles


def add_offline_fallback(fmap, tiles, composite) -> None:
    """Show ``composite`` (an overlay) as the basemap when ``tiles`` cannot be loaded; call after
    every layer has been added."""
    from branca.element import MacroElement
    from jinja2 import Template

    fallback = MacroElement()
    fallback._name = "OfflineFallback"
    fallback._template = Template(_OFFLINE_FALLBACK)
    fallback.map, fallback.tiles, fallback.composite = fmap.get_name(), tiles.get_name(), composite.get_name()
    fallback.add_to(fmap)


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable: ``$CHROMIUM`` if set, else the first on the PATH."""
    candidates = [os.environ.get("CHROMIUM")] + ["chromium", "chromium-browser", "google-chrome"]
    return next((found for name in candidates if name and (found := shutil.which(name))), None)


def screenshot(html: str | Path, png: str | Path, size: tuple[int, int] = (1100, 850), offline: bool = True,
               wait_ms: int = 5000) -> Path:
    """Render ``html`` in headless Chromium and save a PNG screenshot (written atomically).

    ``offline`` makes every host name unresolvable, as on a machine without internet. ``wait_ms``
    is Chromium's virtual time budget: scripts and tile requests settle before the picture is taken.

    Raises
    ------
    AsgmError
        Chromium is not installed, or it failed.
    """
    chromium = find_chromium()
    if chromium is None:
        raise AsgmError("Chromium is needed for map screenshots\n"
                        "  How to fix: install it (Debian/Ubuntu: apt-get install chromium), or set CHROMIUM to its executable")
    png = Path(png)
    with tempfile.TemporaryDirectory() as profile, atomic_path(png) as tmp:
        args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}", f"--virtual-time-budget={wait_ms}",
                f"--screenshot={tmp}", Path(html).resolve().as_uri()]
        if offline:
            args.insert(1, "--host-resolver-rules=MAP * ~NOTFOUND")
        run = subprocess.run(args, capture_output=True, text=True, timeout=120)
        if run.returncode != 0 or not Path(tmp).is_file():
            raise AsgmError(f"Chromium could not render {html} (exit {run.returncode}): {run.stderr.strip()[-500:]}")
    return png


def _finish(fmap, tiles, composite, path: str | Path | None):
    """Add the layer control and the offline fallback (after every layer), and save atomically."""
    import folium

    folium.LayerControl(collapsed=False).add_to(fmap)
    add_offline_fallback(fmap, tiles, composite)
    if path is not None:
        with atomic_path(path) as tmp:
            fmap.save(str(tmp))
    return fmap


def scan_map(raster: str | Path, probability: str | Path, found: gpd.GeoDataFrame, features: gpd.GeoDataFrame | None = None,
             truth: gpd.GeoDataFrame | None = None, path: str | Path | None = None, synthetic: bool = False,
             max_pixels: int = 1200, show_probability: bool = False):
    """An interactive map of a region scan: true colour, probability raster, detections, ground
    truth and OSM channels as layers that can be toggled; saved as one self-contained HTML file
    when ``path`` is given (it opens offline, see the module's description)."""
    import folium
    from matplotlib import colormaps
    from rasterio.vrt import WarpedVRT

    rgb, (left, bottom, right, top), _ = rgb_preview(raster, max_pixels, crs="EPSG:4326")
    fmap, tiles = offline_map((left, bottom, right, top))
    composite = folium.raster_layers.ImageOverlay(rgb, bounds=[[bottom, left], [top, right]], name="Sentinel-2 true colour").add_to(fmap)
    with rasterio.open(probability) as src, WarpedVRT(src, crs="EPSG:4326", resampling=rasterio.enums.Resampling.nearest) as view:
        p = view.read(1)
        pb = view.bounds
    colours = colormaps["magma"](np.nan_to_num(p, nan=0.0))
    colours[..., 3] = np.where(np.isfinite(p), 0.15 + 0.75 * np.nan_to_num(p), 0.0)
    folium.raster_layers.ImageOverlay(colours, bounds=[[pb.bottom, pb.left], [pb.top, pb.right]], name="probability of mine",
                                      show=show_probability).add_to(fmap)
    if features is not None and len(features):
        for key in OSM_CHANNELS:
            sub = features[features[key].notna()] if key in features else features.iloc[:0]
            if len(sub):
                folium.GeoJson(sub[[key, "geometry"]].to_crs(4326), name=f"OSM {key}", show=False,
                               style_function=lambda _, c=OSM_COLOURS[key]: {"color": c, "weight": 1.5, "fillOpacity": 0.2}).add_to(fmap)
    if truth is not None and len(truth):
        folium.GeoJson(truth[["geometry"]].to_crs(4326), name="ground truth",
                       style_function=lambda _: {"color": TRUTH_COLOUR, "weight": 2, "fillOpacity": 0}).add_to(fmap)
    if len(found):
        folium.GeoJson(found.to_crs(4326), name="detections", style_function=lambda _: {"color": DETECTION_COLOUR, "weight": 2, "fillOpacity": 0.1},
                       tooltip=folium.GeoJsonTooltip(fields=["mean_confidence", "max_confidence", "area_ha", "windows"])).add_to(fmap)
    if synthetic:
        fmap.get_root().html.add_child(folium.Element(f'<div style="position:fixed;top:10px;left:60px;z-index:9999;background:white;padding:4px 8px;font:bold 14px sans-serif">{SYNTHETIC_LABEL}</div>'))
    return _finish(fmap, tiles, composite, path)


#: Colours of the change classes (new, expanded, persisting, receded).
CHANGE_COLOURS = {"new": "#ff2d2d", "expanded": "#ff9f1c", "persisting": "#ffe066", "receded": "#4dabf7"}


def monitoring_map(result, path: str | Path | None = None, synthetic: bool = False, max_pixels: int = 900):
    """An interactive map of :func:`asgm.monitor.run_monitoring`'s products: each period's true colour
    and scar as layers (the newest shown), the cumulative footprint since the first period, the
    newest period's change (new, expanded, persisting, receded) and the zones, with a popup per
    polygon. Saved as one self-contained HTML file when ``path`` is given (it opens offline)."""
    import folium

    from asgm.monitor import zone_names

    newest = result.periods[-1]
    previews = {name: rgb_preview(result.rasters[name], max_pixels, crs="EPSG:4326")[:2] for name in result.periods}
    fmap, tiles = offline_map(previews[newest][1])
    for name, (rgb, (l, b, r, t)) in previews.items():
        layer = folium.raster_layers.ImageOverlay(rgb, bounds=[[b, l], [t, r]], name=f"{name} true colour", show=name == newest).add_to(fmap)
        if name == newest:
            composite = layer
    if result.zones is not None and len(result.zones):
        folium.GeoJson(result.zones[["name", "geometry"]].to_crs(4326), name="zones",
                       style_function=lambda _: {"color": "#ffffff", "weight": 2, "dashArray": "6 4", "fillOpacity": 0},
                       tooltip=folium.GeoJsonTooltip(fields=["name"], labels=False)).add_to(fmap)
    for name in result.periods:
        scar = result.scars[name]
        if len(scar):
            folium.GeoJson(scar.assign(period=name).to_crs(4326), name=f"{name} mining scar", show=name == newest,
                           style_function=lambda _: {"color": "#ff2d2d", "weight": 1, "fillColor": "#ff2d2d", "fillOpacity": 0.45},
                           popup=folium.GeoJsonPopup(fields=["period", "area_ha", "confidence"], aliases=["period", "scar (ha)", "confidence"])).add_to(fmap)
    if len(result.cumulative):
        folium.GeoJson(result.cumulative.to_crs(4326), name=f"cumulative {result.periods[0]}–{newest}", show=False,
                       style_function=lambda _: {"color": "#c77dff", "weight": 1, "fillOpacity": 0.3},
                       popup=folium.GeoJsonPopup(fields=["area_ha", "first_seen"], aliases=["footprint (ha)", "first seen"])).add_to(fmap)
    change = result.changes[newest]
    if len(change):
        folium.GeoJson(change.assign(zones=zone_names(change, result.zones)).to_crs(4326), name=f"change {result.periods[-2]} → {newest}",
                       style_function=lambda f: {"color": CHANGE_COLOURS[f["properties"]["change"]], "weight": 2, "fillOpacity": 0.15},
                       popup=folium.GeoJsonPopup(fields=["change", "area_ha", "new_ha", "first_seen", "confidence", "zones"],
                                                 aliases=["change", "area (ha)", "new (ha)", "first seen", "confidence", "zones"])).add_to(fmap)
    legend = " ".join(f'<span style="color:{c}">&#9632;</span> {k}' for k, c in CHANGE_COLOURS.items())
    label = f"{SYNTHETIC_LABEL}<br>" if synthetic else ""
    fmap.get_root().html.add_child(folium.Element(
        f'<div style="position:fixed;top:10px;left:60px;z-index:9999;background:white;padding:4px 8px;font:13px sans-serif">'
        f'<b>{label}</b>Mining {result.periods[0]}–{newest}; change {result.periods[-2]} → {newest}: {legend}</div>'))
    return _finish(fmap, tiles, composite, path)

