"""Documentation that cannot drift from the code: every profile key documented (from the code's own
comments), and the README's figures drawn by the current code and present where the README points."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from asgm import config, docs

ROOT = Path(__file__).resolve().parents[1]


def test_every_profile_key_is_documented_with_its_default_and_meaning():
    assert {cls for _, cls in docs.SECTIONS} >= set(config.SECTIONS.values())
    for section, cls in docs.SECTIONS:
        comments = docs.key_comments(cls)
        undocumented = [f.name for f in dataclasses.fields(cls) if not comments.get(f.name)]
        assert not undocumented, f"{section}: add a #: comment above {undocumented} in src/asgm/config.py, then run make docs"


def test_the_configuration_reference_is_what_the_code_says():
    assert (ROOT / "docs" / "configuration.md").read_text() == docs.reference_markdown(), "run make docs"


def test_the_readmes_figures_exist_and_were_drawn_by_the_current_code():
    shown = set(re.findall(r"\]\((figures/[^)]+\.png)\)", (ROOT / "README.md").read_text()))
    assert shown and shown <= set(docs.README_FIGURES), f"the README shows figures make readme-figures does not make: {shown - set(docs.README_FIGURES)}"
    record = json.loads(docs.FIGURE_RECORD.read_text())
    for figure in shown:
        assert (ROOT / figure).stat().st_size > 20_000, f"{figure} is missing or empty: run make all, then make readme-figures"
        code = docs.README_FIGURES[figure][1]
        assert record[figure]["code_sha256"] == docs.code_digest(code), (
            f"{figure} was drawn before the last change to {', '.join(code)}: run make all, then make readme-figures")


def test_the_readme_is_a_manual_not_a_lab_log():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 330
    assert not re.search(r"\b2026-\d\d-\d\d\b", text), "dated measurements belong in benchmarks/README.md"
    for link in re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)", text):
        assert (ROOT / link).is_file(), f"the README links to {link}, which does not exist"
