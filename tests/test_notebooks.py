"""The HTML appendix of executed notebooks (asgm.notebooks)."""

import nbformat
import pytest

from asgm.errors import AsgmError
from asgm.notebooks import write_html_appendix


def test_html_appendix_links_every_section_of_every_notebook(tmp_path):
    for name, title in (("01_first", "01 · First"), ("02_second", "02 · Second")):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {title}\n\ntext"), nbformat.v4.new_markdown_cell("## Parameters"),
                                             nbformat.v4.new_markdown_cell("## 1 · Results"), nbformat.v4.new_markdown_cell("### A figure")])
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "03_failed.partial.ipynb")  # a failed run is not part of the appendix
    index = write_html_appendix(tmp_path)
    text = index.read_text()
    assert (tmp_path / "html" / "01_first.html").is_file() and not (tmp_path / "html" / "03_failed.partial.html").exists()
    assert '<a href="01_first.html">01 · First</a>' in text and '<a href="02_second.html">02 · Second</a>' in text
    assert 'href="02_second.html#1-%C2%B7-Results"' in text and 'class="h3"><a href="02_second.html#A-figure"' in text
    assert "Parameters" not in text
    anchor = 'id="1-%C2%B7-Results"'
    assert anchor in (tmp_path / "html" / "02_second.html").read_text(), "the index links an anchor the page has"


def test_html_appendix_without_executed_notebooks_says_what_to_run(tmp_path):
    with pytest.raises(AsgmError, match="make all"):
        write_html_appendix(tmp_path)
