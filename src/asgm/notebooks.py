"""Run one of the project's notebooks under papermill with progress in the terminal.

``make all`` runs each notebook through ``python -m asgm.notebooks``: papermill executes it with a
profile's YAML as parameters, and whatever the notebook writes to stderr — the progress bars of
long steps (:mod:`asgm.progress`) and warnings — is passed on to the terminal as it happens, under a
line naming the notebook; printed results and tables stay in the executed notebook. papermill's
own ``--log-output`` would copy every output (tables, figures' reprs) into the terminal instead.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

from asgm.errors import AsgmError


def run_notebook(notebook: str | Path, output: str | Path, parameters_file: str | Path, kernel: str = "asgm",
                 cwd: str | Path | None = None, settings: dict[str, object] | None = None) -> None:
    """Execute ``notebook`` into ``output`` with the parameters of ``parameters_file`` (a YAML file),
    changed by ``settings`` (``{"section.key": value}``)."""
    import papermill
    from traitlets.config import Config

    with open(parameters_file, encoding="utf-8") as f:
        parameters = yaml.safe_load(f) or {}
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
        papermill.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=kernel, cwd=str(cwd) if cwd else None,
                                   progress_bar=False, stderr_file=sys.stderr, config=config)
    print(f"    {name} done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m asgm.notebooks", description=__doc__.split("\n\n")[0])
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
