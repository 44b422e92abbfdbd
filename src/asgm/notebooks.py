"""Run one of the project's notebooks under papermill with progress in the terminal.

``make all`` runs each notebook through ``python -m asgm.notebooks``: papermill executes it with a
profile's YAML as parameters, and whatever the notebook writes to stderr — the progress bars of
long steps (:mod:`asgm.progress`) and warnings — is passed on to the terminal as it happens, under a
line naming the notebook; printed results and tables stay in the executed notebook. papermill's
own ``--log-output`` would copy every output (tables, figures' reprs) into the terminal instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

from asgm.atomic import atomic_path
from asgm.errors import AsgmError


def run_notebook(notebook: str | Path, output: str | Path, parameters_file: str | Path, kernel: str = "asgm",
                 cwd: str | Path | None = None, settings: dict[str, object] | None = None) -> None:
    """Execute ``notebook`` into ``output`` with the parameters of ``parameters_file`` (a YAML file),
    changed by ``settings`` (``{"section.key": value}``)."""
    import papermill
    from traitlets.config import Config

    with open(parameters_file, encoding="utf-8") as f:
        parameters = yaml.safe_load(f) or {}
    # YAML reads 2023-01-01 as a date; notebook parameters travel as JSON, so dates go as ISO text
    # (what the profile loader makes of them anyway).
    parameters = json.loads(json.dumps(parameters, default=str))
    for key, value in (settings or {}).items():
        section, _, name = key.partition(".")
        if not name or not isinstance(parameters.get(section, {}), dict):
            raise AsgmError(f"--set {key}: give section.key, e.g. experiments.seeds=[0, 1, 2]")
        parameters.setdefault(section, {})[name] = value
    name = Path(notebook).stem
    print(f"==> {name} ({Path(parameters_file).name})", file=sys.stderr, flush=True)
    start = time.perf_counter()
    # The kernel talks over IPC sockets in a private temporary directory, not over TCP on localhost
    # (which other users of the machine could read, and which ipykernel warns about).
    with tempfile.TemporaryDirectory(prefix="asgm-kernel-") as sockets:
        config = Config({"KernelManager": {"transport": "ipc", "ip": str(Path(sockets) / "kernel")}})
        # coalesce_streams (nbclient): a progress bar's updates become one output and only its final
        # line is kept in the executed notebook, which people read. capture_fd_output off: what
        # compiled libraries write straight to file descriptor 2 (TensorFlow's start-up lines, which
        # TF_CPP_MIN_LOG_LEVEL does not silence where oneDNN is on) goes to the terminal, not into
        # the notebook; Python's stderr (warnings, progress bars) still does.
        papermill.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=kernel, cwd=str(cwd) if cwd else None,
                                   progress_bar=False, stderr_file=sys.stderr, config=config, coalesce_streams=True,
                                   extra_arguments=["--IPKernelApp.capture_fd_output=False"])
    print(f"    {name} done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)


def write_html_appendix(reports_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """The executed notebooks of ``reports_dir`` as HTML pages (images embedded) plus ``index.html``,
    a table of contents that links every notebook's sections; returns the index."""
    import html
    import re

    import nbformat
    from nbconvert import HTMLExporter

    reports_dir = Path(reports_dir)
    out_dir = Path(out_dir) if out_dir else reports_dir / "html"
    notebooks = sorted(p for p in reports_dir.glob("[0-9]*.ipynb") if ".partial" not in p.name)
    if not notebooks:
        raise AsgmError(f"no executed notebooks in {reports_dir}\n  How to fix: run `make all` (or `make all PROFILE=...`) first")
    exporter = HTMLExporter(template_name="lab")
    contents = []
    for path in notebooks:
        body, _ = exporter.from_notebook_node(nbformat.read(path, as_version=4))
        with atomic_path(out_dir / f"{path.stem}.html") as tmp:
            tmp.write_text(body, encoding="utf-8")
        headings = [(level, anchor, html.unescape(re.sub(r"<[^>]+>", "", inner)).replace("¶", "").strip())
                    for level, anchor, inner in re.findall(r'<h([123]) id="([^"]+)">(.*?)</h\1>', body, flags=re.S)]
        name = headings[0][2] if headings and headings[0][0] == "1" else path.stem
        sections = [f'<li class="h{level}"><a href="{path.stem}.html#{anchor}">{html.escape(text)}</a></li>'
                    for level, anchor, text in headings if level != "1" and text != "Parameters"]
        contents.append(f'<h2><a href="{path.stem}.html">{html.escape(name)}</a></h2>\n<ul>\n' + "\n".join(sections) + "\n</ul>")
    title = f"asgm-detector: executed notebooks ({reports_dir.name})"
    page = (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font:15px/1.5 sans-serif;max-width:52em;margin:2em auto}li.h3{margin-left:1.5em}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>\n" + "\n".join(contents) + "\n</body></html>\n")
    index = out_dir / "index.html"
    with atomic_path(index) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return index


def main(argv: list[str] | None = None) -> None:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["html"]:
        appendix = argparse.ArgumentParser(prog="python -m asgm.notebooks html", description="The executed notebooks as an HTML appendix with a table of contents.")
        appendix.add_argument("reports_dir", type=Path, help="reports/<profile>")
        index = write_html_appendix(appendix.parse_args(argv[1:]).reports_dir)
        print(f"HTML appendix -> {index}")
        return
    parser = argparse.ArgumentParser(prog="python -m asgm.notebooks", description=__doc__.split("\n\n")[0],
                                     epilog="`python -m asgm.notebooks html reports/<profile>` writes the executed notebooks as an HTML appendix.")
    parser.add_argument("notebook", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("-f", "--parameters_file", type=Path, required=True, help="a profile's YAML (configs/<profile>.yaml)")
    parser.add_argument("--kernel", default="asgm")
    parser.add_argument("--cwd", type=Path, default=None, help="working directory of the notebook (default: its own)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change one setting of the profile (VALUE is YAML), e.g. --set 'experiments.seeds=[0, 1, 2]'")
    args = parser.parse_args(argv)
    settings = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r}: give SECTION.KEY=VALUE")
        settings[key.strip()] = yaml.safe_load(value)
    run_notebook(args.notebook, args.output, args.parameters_file, args.kernel, args.cwd or args.notebook.parent, settings)


if __name__ == "__main__":
    main()
