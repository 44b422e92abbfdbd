"""Monitoring every period vs scanning one, same run (issue 15's goal: four periods under 2× one scan).

Uses the demo profile's scan model (run ``make all`` first) and its SYNTHETIC history (generated if
missing; speed does not depend on what the pixels show). Two cold processes, one after the other:

1. **one period**: ``scan_region`` of the first period's composite alone, as notebook 05 scans one
   composite (loading the model, compiling the fast path and burning the OSM features included);
2. **monitoring**: ``run_monitoring`` of every period in a scratch project directory, so nothing is
   cached but the history and the model (its scans share the loaded model and the OSM features).

Prints each time, the monitoring's own breakdown, and the ratios of the monitoring's scans and of
its whole run (without writing the history) to the one period's scan, both with TensorFlow already
imported (a notebook kernel) and for the cold process (what `python -m asgm.monitor` waits).

Usage: python benchmarks/monitor_periods.py [--profile demo] [--demo_size_km 16]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def scratch_profile(profile: str, root: Path, demo_size_km: float | None = None):
    """The profile with its reports in ``root`` (empty) and its models and OSM features the project's;
    with ``demo_size_km``, the demo history of that central square (kept beside ``root``, shared by both runs)."""
    from asgm.config import load_profile

    cfg = load_profile(profile, root=ROOT)
    if demo_size_km:
        cfg = dataclasses.replace(cfg, monitoring=dataclasses.replace(cfg.monitoring, demo_size_km=demo_size_km),
                                  synthetic=dataclasses.replace(cfg.synthetic, output_dir=root.parent / "demo"))
    (root / "data").mkdir(parents=True)
    (root / "models").symlink_to(ROOT / "models", target_is_directory=True)
    (root / "data" / "contextual").symlink_to(ROOT / "data" / "contextual", target_is_directory=True)
    return dataclasses.replace(cfg, root=root)


def one_period(profile: str, root: Path, demo_size_km: float | None) -> dict:
    start = time.perf_counter()
    from asgm.predict import load_trained_model  # imports TensorFlow
    imports = time.perf_counter() - start
    from asgm.monitor import monitoring_model, period_rasters
    from asgm.scan import scan_region

    cfg = scratch_profile(profile, root, demo_size_km)
    rasters, _ = period_rasters(cfg, progress=False)
    start = time.perf_counter()
    model_dir = monitoring_model(cfg)
    uses_osm = any(c in cfg.osm.channels for c in load_trained_model(model_dir).channels)
    sc = cfg.scan
    scan_region(model_dir, next(iter(rasters.values())), root / "one", stride=sc.stride, tile_px=sc.tile_px,
                osm_features=cfg.osm_features_path if uses_osm else None, fast=sc.fast, scheduler="synchronous",
                workers=sc.workers, max_nodata_fraction=cfg.patches.max_nodata_fraction, progress=False)
    return {"imports": imports, "seconds": time.perf_counter() - start}


def monitoring(profile: str, root: Path, demo_size_km: float | None) -> dict:
    start = time.perf_counter()
    import asgm.predict  # noqa: F401  (imports TensorFlow)
    imports = time.perf_counter() - start
    from asgm.monitor import run_monitoring

    start = time.perf_counter()
    result = run_monitoring(scratch_profile(profile, root, demo_size_km), progress=False)
    return {"imports": imports, "seconds": time.perf_counter() - start, "steps": result.seconds, "periods": len(result.periods)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--demo_size_km", type=float, help="monitor the demo history of this central square (default: the profile's)")
    parser.add_argument("--child", choices=["one", "all"], help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps((one_period if args.child == "one" else monitoring)(args.profile, args.root, args.demo_size_km)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        # the first child writes the history (if missing) before its timing starts
        runs = {}
        for child in ("one", "all"):
            size = ["--demo_size_km", str(args.demo_size_km)] if args.demo_size_km else []
            out = subprocess.run([sys.executable, __file__, "--profile", args.profile, "--child", child, "--root", str(Path(tmp) / child), *size],
                                 check=True, capture_output=True, text=True).stdout
            runs[child] = json.loads(out.strip().splitlines()[-1])
    one, all_ = runs["one"], runs["all"]
    scans, n = all_["steps"]["scan"], all_["periods"]
    without_history = all_["seconds"] - all_["steps"]["rasters"]
    area = f"the central {args.demo_size_km:g} km" if args.demo_size_km else "the profile's area"
    print(f"SYNTHETIC {args.profile} history ({area}), {n} periods; the model of `make all`; two cold processes")
    print("| run | seconds, TensorFlow loaded | × one period's scan | seconds, cold process (+ importing TensorFlow) | × one period's scan |")
    print("|---|---|---|---|---|")
    for name, seconds, imports in [("one period's scan (notebook 05's way)", one["seconds"], one["imports"]),
                                   (f"monitoring: the {n} periods' scans", scans, all_["imports"]),
                                   ("monitoring: everything but writing the history", without_history, all_["imports"])]:
        print(f"| {name} | {seconds:.1f} | {seconds / one['seconds']:.2f} | {seconds + imports:.1f} | {(seconds + imports) / (one['seconds'] + one['imports']):.2f} |")
    print(f"monitoring's steps (s): {json.dumps({k: round(v, 1) for k, v in all_['steps'].items()})}; "
          f"importing TensorFlow: {one['imports']:.1f} s, {all_['imports']:.1f} s; goal: the scans under 2x one period's scan")


if __name__ == "__main__":
    main()
