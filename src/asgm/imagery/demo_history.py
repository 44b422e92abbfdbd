"""A SYNTHETIC history of the demo region: one composite per monitoring period of the same place.

The scene of :mod:`asgm.imagery.demo` (same seed, same layout) is the state at the last period.
Going back in time, mining sites are younger: half were there from the first period, the others
open in a later one at about a third of their final area and grow to it over two periods (so
neighbouring pits merge); a quarter of the oldest are abandoned and revegetate. Hard negatives
change too: rivers move their sandbars, clearings are cut, farms are ploughed. Every period has
its own haze, clouds, shadows and sensor noise. Nothing here is real.

The history covers the central ``size_km`` square of the demo region (``monitoring.demo_size_km``;
the whole region by default, so that the evaluation counts every site). Written under ``output_dir``:

- ``<period>/s2_l1c_composite.tif`` and ``<period>/landcover.tif`` as for the demo region;
- ``<period>/mine_scar.tif``: 1 where a pixel is mine ground (sand, tailings, ponds) of an active
  site, the pixel-level truth of the scar area;
- ``<period>/mine_polygons.geojson``: the sites present, with ``onset`` (first period), ``state``
  (new, expanding, active, revegetating) and their scar area in hectares;
- ``zones.geojson``: three SYNTHETIC zones (a protected area, an indigenous territory, a
  municipality) for the statistics per zone;
- ``history.json``: periods, parameters, counts.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.features import rasterize
from shapely import affinity
from shapely.geometry import Polygon

from asgm.atomic import atomic_path
from asgm.config import SyntheticConfig
from asgm.imagery.demo import (CLASSES, CRS_UTM, GENERATOR_VERSION, SYNTHETIC_NOTE, _Grid, _parameters, _render, _Scene, _write_geojson,
                               _write_rasters)
from asgm.progress import progress_bar

#: Bumped whenever the history's output changes, so cached histories are regenerated.
HISTORY_VERSION = 1
MINE_GROUND = ("mine_sand", "mine_tailings", "pond_turquoise", "pond_green", "pond_brown")


@dataclass(frozen=True)
class DemoHistory:
    """Paths of a generated history."""

    directory: Path
    periods: tuple[str, ...]

    def composite(self, period: str) -> Path:
        return self.directory / period / "s2_l1c_composite.tif"

    def landcover(self, period: str) -> Path:
        return self.directory / period / "landcover.tif"

    def scar(self, period: str) -> Path:
        return self.directory / period / "mine_scar.tif"

    def mine_polygons(self, period: str) -> Path:
        return self.directory / period / "mine_polygons.geojson"

    @property
    def zones(self) -> Path:
        return self.directory / "zones.geojson"

    @property
    def metadata(self) -> Path:
        return self.directory / "history.json"


def ensure_demo_history(cfg: SyntheticConfig, periods: tuple[str, ...], size_km: float, output_dir: str | Path,
                        progress: bool = True) -> DemoHistory:
    """The history for ``cfg`` and ``periods``, generated unless an identical one is on disk."""
    history = DemoHistory(Path(output_dir), tuple(periods))
    if history.metadata.is_file():
        meta = json.loads(history.metadata.read_text(encoding="utf-8"))
        if meta.get("parameters") == _history_parameters(cfg, periods, size_km):
            return history
    return generate_demo_history(cfg, periods, size_km, output_dir, progress)


def _history_parameters(cfg: SyntheticConfig, periods: tuple[str, ...], size_km: float) -> dict:
    return {"scene": _parameters(cfg), "generator_version": GENERATOR_VERSION, "history_version": HISTORY_VERSION,
            "periods": list(periods), "size_km": size_km}


def generate_demo_history(cfg: SyntheticConfig, periods: tuple[str, ...], size_km: float, output_dir: str | Path,
                          progress: bool = True) -> DemoHistory:
    """Generate the SYNTHETIC history (deterministic: same settings, same files; see the module).

    Parameters
    ----------
    cfg
        The demo region's settings (the scene at the last period).
    periods
        Period names, oldest first (at least two).
    size_km
        Side of the central square covered (at most the region's ``size_km``).
    output_dir
        Directory written (it appears atomically).
    """
    if len(periods) < 2:
        raise ValueError("a history needs at least two periods")
    scene = _Scene(_Grid.around(cfg.centre_lon, cfg.centre_lat, cfg.size_km), np.random.default_rng(cfg.seed), cfg)
    scene.lay_out()
    full = scene.grid
    side = int(round(min(size_km, cfg.size_km) * 1000 / 10))
    crop = _Grid(full.left + (full.width - side) // 2 * 10.0, full.top - (full.height - side) // 2 * 10.0, side, side)
    change = np.random.default_rng([cfg.seed, 1])
    plan = _plan(scene, len(periods), change)
    out = Path(output_dir)
    bar = progress_bar(total=len(periods), desc="synthetic history", unit="period", disable=not progress)
    with atomic_path(out, marker="history.json", what="demo history directory") as tmp:
        counts = {}
        for k, name in enumerate(periods):
            state = _state(scene, plan, k, crop)
            # The landscape's random fields (savanna, canopy gaps, overgrown patches) are drawn from the
            # same seed every period, so only what changed differs; atmosphere and noise differ per period.
            state.rng = np.random.default_rng([cfg.seed, 2])
            classes = state.burn()
            image = _render(classes, crop, np.random.default_rng([cfg.seed, 3, k]))
            sites = [m for m in state.mines if not crop.footprint.disjoint(m["site"])]
            scar = _scar(classes, crop, sites)
            directory = tmp / name
            directory.mkdir(parents=True)
            _write_rasters(directory, crop, image, classes)
            _write_mask(directory / "mine_scar.tif", crop, scar)
            properties = []
            for m in sites:
                pixels = rasterize([(m["site"], 1)], out_shape=scar.shape, transform=crop.transform, dtype=np.uint8).astype(bool)
                properties.append({"site_id": m["site_id"], "onset": periods[m["onset"]], "state": m["state"],
                                   "scar_ha": round(float((scar & pixels).sum()) * 0.01, 2), "synthetic": True})
            _write_geojson(directory / "mine_polygons.geojson", properties, [crop.to_wgs84(m["site"]) for m in sites])
            counts[name] = {"sites": len(sites), "new_sites": sum(m["state"] == "new" for m in sites), "scar_ha": round(float(scar.sum()) * 0.01, 2)}
            bar.update()
        _write_geojson(tmp / "zones.geojson", *_zones(crop))
        meta = {"synthetic": True, "note": SYNTHETIC_NOTE, "parameters": _history_parameters(cfg, periods, size_km),
                "crs": CRS_UTM.to_string(), "shape": [crop.height, crop.width], "counts": counts}
        (tmp / "history.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    bar.close()
    return DemoHistory(out, tuple(periods))


def _plan(scene: _Scene, n: int, rng: np.random.Generator) -> dict:
    """When each site opens, how it grows, when it is abandoned; which clearings, farms and sandbars
    exist in which period."""
    mines = []
    for _ in scene.mines:
        onset = 0 if rng.random() < 0.5 else int(rng.integers(1, n))
        grown = onset == 0 and rng.random() < 0.6  # already at full size in the first period
        abandoned = int(rng.integers(1, n)) if onset == 0 and rng.random() < 0.25 else None
        mines.append({"onset": onset, "grown": grown, "abandoned": abandoned})
    return {
        "mines": mines,
        "clearings": [int(rng.integers(0, n)) if rng.random() < 0.4 else 0 for _ in scene.clearings],
        "ploughed": [int(rng.integers(1, n)) if f["state"] != "ploughed" and rng.random() < 0.25 else None for f in scene.farms],
        "sandbars": [rng.random(n) < 0.65 for _ in scene.sandbars],
    }


def _state(scene: _Scene, plan: dict, k: int, crop: _Grid) -> _Scene:
    """The scene as it was in period ``k``."""
    state = copy.copy(scene)
    state.grid = crop
    state.mines = []
    for mine, p in zip(scene.mines, plan["mines"]):
        if k < p["onset"]:
            continue
        age = k - p["onset"]
        scale = 1.0 if p["grown"] else min(1.0, 0.55 + 0.25 * age)
        site = _shrunk(mine["site"], scale)
        regrowth = mine["regrowth"]
        state_name = "new" if age == 0 and p["onset"] > 0 else ("expanding" if scale < 1 or (age == 1 and p["onset"] > 0) else "active")
        if p["abandoned"] is not None and k >= p["abandoned"]:
            regrowth = min(0.9, max(regrowth, 0.3) + 0.25 * (k - p["abandoned"] + 1))
            state_name = "revegetating"
        state.mines.append(mine | {
            "site": site, "regrowth": regrowth, "onset": p["onset"], "state": state_name,
            "ponds": [(part, kind) for pond, kind in mine["ponds"] if not (part := pond.intersection(site)).is_empty],
            "tailings": [part for t in mine["tailings"] if not (part := t.intersection(site)).is_empty],
        })
    state.clearings = [c for c, onset in zip(scene.clearings, plan["clearings"]) if k >= onset]
    state.farms = [f | {"state": "ploughed"} if plough is not None and k >= plough else f for f, plough in zip(scene.farms, plan["ploughed"])]
    state.sandbars = [b for b, present in zip(scene.sandbars, plan["sandbars"]) if present[k]]
    return state


def _shrunk(site: Polygon, scale: float) -> Polygon:
    if scale >= 1:
        return site
    centre = site.representative_point()
    return affinity.scale(site, scale, scale, origin=centre).intersection(site)


def _scar(classes: np.ndarray, grid: _Grid, sites: list[dict]) -> np.ndarray:
    """Mine ground (sand, tailings, ponds) inside the active sites: the true scar, pixel by pixel."""
    if not sites:
        return np.zeros(classes.shape, dtype=bool)
    inside = rasterize([(m["site"], 1) for m in sites], out_shape=classes.shape, transform=grid.transform, dtype=np.uint8).astype(bool)
    return inside & np.isin(classes, [CLASSES[c] for c in MINE_GROUND])


def _write_mask(path: Path, grid: _Grid, mask: np.ndarray) -> None:
    profile = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": 1, "dtype": "uint8", "crs": CRS_UTM,
               "transform": grid.transform, "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(mask.astype(np.uint8), 1)
        dst.update_tags(SYNTHETIC="true", NOTE=SYNTHETIC_NOTE, MEANING="1: mine ground (sand, tailings, ponds) of an active site")


def _zones(grid: _Grid) -> tuple[list[dict], list]:
    """Three overlapping SYNTHETIC zones over the covered square, named like the real kinds."""
    x0, y0, s = grid.left, grid.bottom, grid.size_m
    park = Polygon([(x0, y0 + 0.45 * s), (x0 + 0.55 * s, y0 + s), (x0, y0 + s)])
    territory = Polygon([(x0 + 0.4 * s, y0), (x0 + s, y0), (x0 + s, y0 + 0.6 * s), (x0 + 0.7 * s, y0 + 0.45 * s)])
    municipality = Polygon([(x0, y0), (x0 + 0.5 * s, y0), (x0 + 0.5 * s, y0 + s), (x0, y0 + s)])
    names = [("Parque Nacional Sintético (SYNTHETIC)", "protected_area"), ("Territorio Indígena Sintético (SYNTHETIC)", "indigenous_territory"),
             ("Municipio Sintético (SYNTHETIC)", "municipality")]
    return [{"name": n, "kind": k, "synthetic": True} for n, k in names], [grid.to_wgs84(p) for p in (park, territory, municipality)]
