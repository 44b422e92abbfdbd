"""Documentation that comes from the code, never by hand.

- ``docs/configuration.md``: every profile key, written from :mod:`asgm.config` itself (each
  section's docstring, each key's default and ``#:`` comment). ``python -m asgm.docs`` (``make
  docs``) rewrites it; ``tests/test_docs.py`` fails when it differs from what the code says.
- The README's figures: ``python -m asgm.docs figures`` (``make readme-figures``, after ``make
  all``) copies them from ``figures/demo/`` and records in ``figures/readme_figures.json`` the
  SHA-256 of the code that drew each; ``tests/test_docs.py`` fails when that code changed since.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import json
import shutil
import sys
from pathlib import Path

from asgm import config
from asgm.atomic import atomic_path, write_text
from asgm.errors import AsgmError

#: Profile sections (and nested entries) in the order the reference lists them, with their classes.
SECTIONS = (("region", config.RegionConfig), ("region.downloads", config.Download), ("imagery", config.ImageryConfig),
            ("osm", config.OsmConfig), ("sampling", config.SamplingConfig), ("patches", config.PatchConfig),
            ("synthetic", config.SyntheticConfig), ("labels", config.LabelsConfig), ("training", config.TrainingConfig),
            ("experiments", config.ExperimentsConfig), ("scan", config.ScanConfig), ("monitoring", config.MonitoringConfig),
            ("monitoring.periods[]", config.Period))
ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "configuration.md"
#: The README's figures: the file in figures/, the demo figure it is copied from, and the code that draws it.
README_FIGURES = {
    "figures/region_scan_map_demo.png": ("figures/demo/region_scan_map.png", ("src/asgm/webmap.py", "src/asgm/scan.py")),
    "figures/monitoring_periods_demo.png": ("figures/demo/monitoring_periods.png", ("src/asgm/plots.py", "src/asgm/monitor.py", "src/asgm/scar.py")),
    "figures/label_audit_demo.png": ("figures/demo/label_audit.png", ("src/asgm/plots.py", "src/asgm/labels.py", "src/asgm/imagery/demo.py")),
}
FIGURE_RECORD = ROOT / "figures" / "readme_figures.json"


def key_comments(cls: type) -> dict[str, str]:
    """The ``#:`` comment above each field of a dataclass, joined into one line."""
    lines, _ = inspect.getsourcelines(cls)
    comments, block = {}, []
    for node in ast.parse(inspect.cleandoc("".join(lines))).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above = [lines[i].strip() for i in range(node.lineno - 2, -1, -1)]
            block = []
            for text in above:
                if not text.startswith("#:"):
                    break
                block.insert(0, text[2:].strip())
            comments[node.target.id] = " ".join(block)
    return comments


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "(required)"
    if isinstance(value, tuple):
        value = list(value)
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return f"`{text}`".replace("|", "\\|")


def reference_markdown() -> str:
    """``docs/configuration.md``'s text."""
    out = ["# Configuration reference", "",
           "Every key of a profile (`configs/<profile>.yaml`), section by section, with its default and meaning, written from",
           "`src/asgm/config.py` by `make docs` (`tests/test_docs.py` fails when the two differ). A key left out of a profile",
           "takes its default.", ""]
    for section, cls in SECTIONS:
        comments = key_comments(cls)
        out += [f"## `{section}`", "", " ".join(inspect.cleandoc(cls.__doc__ or "").split()), "", "| key | default | meaning |", "|---|---|---|"]
        out += [f"| `{f.name}` | {_default(f)} | {comments.get(f.name, '').replace('|', '/')} |" for f in dataclasses.fields(cls)]
        out.append("")
    return "\n".join(out)


def code_digest(paths: tuple[str, ...]) -> str:
    """SHA-256 over the named source files (relative to the project)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update((ROOT / path).read_bytes())
    return digest.hexdigest()


def copy_readme_figures() -> list[Path]:
    """Copy the README's figures from the demo's ``figures/demo/`` and record the code that drew them.

    Raises
    ------
    AsgmError
        A demo figure is missing (run ``make all`` first).
    """
    missing = [source for source, _ in README_FIGURES.values() if not (ROOT / source).is_file()]
    if missing:
        raise AsgmError(f"{', '.join(missing)} not found. How to fix: run make all (the demo profile) first, then make readme-figures")
    for target, (source, _) in README_FIGURES.items():
        with atomic_path(ROOT / target) as tmp:
            shutil.copyfile(ROOT / source, tmp)
    write_text(FIGURE_RECORD, json.dumps({target: {"from": source, "code": list(code), "code_sha256": code_digest(code)}
                                          for target, (source, code) in README_FIGURES.items()}, indent=2) + "\n")
    return [ROOT / target for target in README_FIGURES]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        written = copy_readme_figures() if argv == ["figures"] else [write_text(REFERENCE, reference_markdown())]
    except AsgmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(str(p.relative_to(ROOT)) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
