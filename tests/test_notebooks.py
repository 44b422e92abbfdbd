"""Running notebooks and the HTML appendix of executed notebooks (asgm.notebooks)."""

import nbformat
import pytest

from asgm.errors import AsgmError
from asgm.notebooks import run_notebook, write_html_appendix


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


def test_executed_notebook_keeps_only_the_final_line_of_a_progress_bar(tmp_path):
    code = ("import time\nfrom asgm.progress import progress_bar\n"
            "for _ in progress_bar(range(4), desc='steps', mininterval=0):\n    time.sleep(0.4)\nprint('done')")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "in.ipynb")
    (tmp_path / "profile.yaml").write_text("{}\n")
    run_notebook(tmp_path / "in.ipynb", tmp_path / "out.ipynb", tmp_path / "profile.yaml", kernel="python3")
    cell = next(c for c in nbformat.read(tmp_path / "out.ipynb", as_version=4).cells if "progress_bar" in c.source)
    stderr = [o for o in cell.outputs if o.output_type == "stream" and o.name == "stderr"]
    assert len(stderr) == 1, "one output for the whole bar"
    assert stderr[0].text.count("steps:") == 1 and "4/4" in stderr[0].text, "only its final line"
    assert [o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout"] == ["done\n"]


def test_native_library_chatter_stays_out_of_the_executed_notebook(tmp_path, capfd, monkeypatch):
    """What a compiled library writes straight to file descriptor 2 (TensorFlow's start-up lines on
    CPUs where oneDNN is on) goes to the terminal, not into the notebook people read; Python's
    stderr (warnings, progress bars) stays in the notebook."""
    cells = ["import os, sys\nos.write(2, b'I0000 port.cc:153] oneDNN custom operations are on\\n')\nprint('a warning', file=sys.stderr)",
             "import time\ntime.sleep(2)"]  # time for a kernel that captures descriptor 2 to forward it
    monkeypatch.delenv("PYTEST_CURRENT_TEST")  # ipykernel never watches descriptor 2 under pytest
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "asgm", "display_name": "Python (asgm)", "language": "python"}
    nbformat.write(nb, tmp_path / "in.ipynb")
    (tmp_path / "profile.yaml").write_text("{}\n")
    run_notebook(tmp_path / "in.ipynb", tmp_path / "out.ipynb", tmp_path / "profile.yaml", kernel="asgm")  # the project's kernel (make setup)
    streams = [o.text for c in nbformat.read(tmp_path / "out.ipynb", as_version=4).cells for o in c.outputs if o.output_type == "stream"]
    assert streams == ["a warning\n"]
    assert "oneDNN custom operations are on" in capfd.readouterr().err
